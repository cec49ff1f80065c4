"""Tests of best_exporter._compat: the import fails clearly on a TensorFlow without tf.estimator."""

import os
import subprocess
import sys

import pytest

from best_exporter import _compat


@pytest.mark.parametrize("version", ["2.16.1", "2.16.0", "2.17.0rc0", "3.0.0"])
def test_tensorflow_without_estimator_raises_import_error_naming_the_range(version: str) -> None:
    with pytest.raises(ImportError) as raised:
        _compat.check_tensorflow_version(version)
    message = str(raised.value)
    assert ">=2.13,<2.16" in message
    assert f"found TensorFlow {version}" in message
    assert "tf.estimator" in message and "removed" in message


@pytest.mark.parametrize("version", ["2.12.1", "1.15.5", "not-a-version", ""])
def test_untested_or_unparsable_tensorflow_raises_import_error(version: str) -> None:
    with pytest.raises(ImportError, match=r"supports TensorFlow >=2\.13,<2\.16"):
        _compat.check_tensorflow_version(version)


@pytest.mark.parametrize("version", ["2.13.0", "2.14.1", "2.15.0", "2.15.1", "2.15.0-rc1"])
def test_supported_tensorflow_passes(version: str) -> None:
    assert _compat.check_tensorflow_version(version) is None


def test_importing_the_package_on_tensorflow_2_16_fails_with_the_import_error() -> None:
    # A fresh interpreter: the check runs once, when best_exporter's API is first imported.
    code = (
        "import tensorflow as tf; tf.__version__ = '2.16.0'; "
        "import best_exporter; from best_exporter import BestExporter"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert completed.returncode != 0
    assert "ImportError: best_exporter supports TensorFlow >=2.13,<2.16" in completed.stderr
    assert "found TensorFlow 2.16.0" in completed.stderr
    assert "removed" in completed.stderr
