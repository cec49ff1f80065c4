"""The framework-neutral core: decide, record, publish, retain, read history.

Every module here works on plain values and on the filesystem seam
(`storage.py`), never on a framework's objects: the front-ends
(`best_exporter.estimator`, `best_exporter.keras`) translate their framework's
hooks into calls to this package, and the `best-exporter` command reads what
it wrote. Nothing here imports `tf.estimator` or Keras.
"""
