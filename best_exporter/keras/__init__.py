"""The Keras front-end: `BestExportCallback` for `Model.fit`, continuing an Estimator's exports.

Works with `tf.keras` on TensorFlow 2.13-2.15 and with Keras 3 on TensorFlow
2.16 and later.
"""

from best_exporter.keras.callback import (
    BestExportCallback,
    ExportFn,
    default_export_fn,
    infer_higher_is_better,
)

__all__ = ["BestExportCallback", "ExportFn", "default_export_fn", "infer_higher_is_better"]
