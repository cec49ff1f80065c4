"""A drop-in, restart-safe replacement for `tf.estimator.BestExporter`.

from best_exporter import BestExporter
"""

from best_exporter import _compat  # noqa: F401  Raises ImportError on an unsupported TensorFlow.
from best_exporter.compare import (
    MetricComparator,
    higher_is_better,
    loss_smaller,
    lower_is_better,
)
from best_exporter.exporter import BestExporter
from best_exporter.records import ExportRecord, read_export_records
from best_exporter.version import __version__

__all__ = [
    "BestExporter",
    "ExportRecord",
    "MetricComparator",
    "__version__",
    "higher_is_better",
    "loss_smaller",
    "lower_is_better",
    "read_export_records",
]
