"""Which TensorFlow this is, and what of best_exporter it supports.

`best_exporter.BestExporter` extends `tf.estimator`, which exists on TensorFlow
2.13 to 2.15 only (tensorflow-estimator 2.15 is its last release; TensorFlow 2.16
removed it). `best_exporter.keras` and the core work on TensorFlow 2.13 and later.
"""

import tensorflow as tf

ESTIMATOR_TENSORFLOW = ">=2.13,<2.16"
MINIMUM_TENSORFLOW = (2, 13)


def _major_minor(version: str) -> tuple:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def check_tensorflow_version(version: str = tf.__version__) -> None:
    """Raises ImportError for a TensorFlow older than any front-end supports.

    Args:
      version: a TensorFlow version string such as `'2.15.1'`.

    Raises:
      ImportError: for TensorFlow < 2.13 (untested) or an unparsable version.
    """
    if _major_minor(version) >= MINIMUM_TENSORFLOW:
        return
    raise ImportError(
        f"best_exporter supports TensorFlow 2.13 and later and found TensorFlow {version}: "
        f"pip install 'tensorflow{ESTIMATOR_TENSORFLOW}' for BestExporter (tf.estimator), or "
        "the newest tensorflow for best_exporter.keras"
    )


def has_estimator(version: str = tf.__version__) -> bool:
    """Whether this TensorFlow has `tf.estimator`: 2.13 to 2.15."""
    return (2, 13) <= _major_minor(version) < (2, 16)


def require_estimator(version: str = tf.__version__) -> None:
    """Raises ImportError, pointing to the Keras front-end, unless `tf.estimator` exists.

    Args:
      version: a TensorFlow version string such as `'2.16.1'`.

    Raises:
      ImportError: on a TensorFlow without `tf.estimator` (2.16 and later).
    """
    if has_estimator(version):
        return
    raise ImportError(
        "best_exporter.BestExporter extends tf.estimator, which TensorFlow 2.16 removed "
        f"(tensorflow-estimator 2.15 is its last release); found TensorFlow {version}. "
        "Keras users continue the same export directory with "
        "`from best_exporter.keras import BestExportCallback`; for BestExporter, install a "
        "TensorFlow that has tf.estimator: "
        f"pip install 'tensorflow{ESTIMATOR_TENSORFLOW}'."
    )


check_tensorflow_version()
