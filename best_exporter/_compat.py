"""Fails the import early, and clearly, on a TensorFlow without `tf.estimator`."""

import tensorflow as tf

SUPPORTED_TENSORFLOW = ">=2.13,<2.16"


def _major_minor(version: str) -> tuple:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def check_tensorflow_version(version: str = tf.__version__) -> None:
    """Raises ImportError unless `version` is a TensorFlow with `tf.estimator`.

    Args:
      version: a TensorFlow version string such as `'2.15.1'`.

    Raises:
      ImportError: for TensorFlow < 2.13 (untested) or >= 2.16 (no `tf.estimator`).
    """
    if (2, 13) <= _major_minor(version) < (2, 16):
        return
    raise ImportError(
        f"best_exporter supports TensorFlow {SUPPORTED_TENSORFLOW} (2.13 to 2.15) and found "
        f"TensorFlow {version}. It extends tf.estimator, which TensorFlow 2.16 removed "
        "(tensorflow-estimator 2.15 is its last release). Install a supported version: "
        f"pip install 'tensorflow{SUPPORTED_TENSORFLOW}'"
    )


check_tensorflow_version()
