"""Keep only the best models, in TensorFlow Serving's export layout.

Estimator (TensorFlow 2.13-2.15):  from best_exporter import BestExporter
Keras (TensorFlow 2.13 and later): from best_exporter.keras import BestExportCallback

On TensorFlow 2.16+, which has no tf.estimator, `BestExporter` raises an
ImportError that names best_exporter.keras; the rest works. The names below are
imported on first use, so that the `best-exporter` command answers `--help` and
`--version` without loading TensorFlow.
"""

import importlib
from typing import TYPE_CHECKING, Any

from best_exporter.version import __version__

if TYPE_CHECKING:
    from best_exporter.core.compare import (
        MetricComparator,
        higher_is_better,
        loss_smaller,
        lower_is_better,
    )
    from best_exporter.core.records import ExportRecord, read_export_records
    from best_exporter.estimator.exporter import BestExporter

# Public name -> the module that defines it.
_EXPORTS = {
    "BestExporter": "best_exporter.estimator.exporter",
    "ExportRecord": "best_exporter.core.records",
    "MetricComparator": "best_exporter.core.compare",
    "higher_is_better": "best_exporter.core.compare",
    "loss_smaller": "best_exporter.core.compare",
    "lower_is_better": "best_exporter.core.compare",
    "read_export_records": "best_exporter.core.records",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'best_exporter' has no attribute {name!r}")
    # Raises ImportError for a TensorFlow older than 2.13; best_exporter.estimator.exporter raises
    # one naming best_exporter.keras on a TensorFlow without tf.estimator (2.16+).
    importlib.import_module("best_exporter._compat")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted([*globals(), *_EXPORTS])
