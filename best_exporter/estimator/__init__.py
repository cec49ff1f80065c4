"""The Estimator front-end: `BestExporter` for `tf.estimator.EvalSpec(exporters=...)`.

Needs `tf.estimator` (TensorFlow 2.13-2.15); importing it on a newer TensorFlow
raises an ImportError that names `best_exporter.keras`.
"""

from best_exporter.estimator.exporter import BestExporter

__all__ = ["BestExporter"]
