"""Tests of best_exporter._compat: what each TensorFlow supports, and clear errors otherwise."""

import os
import subprocess
import sys

import pytest

from best_exporter import _compat


@pytest.mark.parametrize("version", ["2.16.1", "2.16.0", "2.17.0rc0", "2.21.0", "3.0.0"])
def test_tensorflow_without_estimator_raises_import_error_naming_the_keras_front_end(
    version: str,
) -> None:
    assert not _compat.has_estimator(version)
    with pytest.raises(ImportError) as raised:
        _compat.require_estimator(version)
    message = str(raised.value)
    assert "tf.estimator, which TensorFlow 2.16 removed" in message
    assert f"found TensorFlow {version}" in message
    assert "from best_exporter.keras import BestExportCallback" in message
    assert "tensorflow>=2.13,<2.16" in message


@pytest.mark.parametrize("version", ["2.16.1", "2.21.0", "3.0.0"])
def test_tensorflow_2_16_and_later_is_supported_by_the_package(version: str) -> None:
    assert _compat.check_tensorflow_version(version) is None


@pytest.mark.parametrize("version", ["2.12.1", "1.15.5", "not-a-version", ""])
def test_untested_or_unparsable_tensorflow_raises_import_error(version: str) -> None:
    with pytest.raises(ImportError, match=r"supports TensorFlow 2\.13 and later and found"):
        _compat.check_tensorflow_version(version)


@pytest.mark.parametrize("version", ["2.13.0", "2.14.1", "2.15.0", "2.15.1", "2.15.0-rc1"])
def test_tensorflow_with_estimator_passes_both_checks(version: str) -> None:
    assert _compat.check_tensorflow_version(version) is None
    assert _compat.has_estimator(version)
    assert _compat.require_estimator(version) is None


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


# A fresh interpreter each: the checks run when best_exporter is first imported. The
# version is faked on TensorFlow 2.13-2.15 and real on 2.16+.
AS_IF_2_16 = "import tensorflow as tf\nif tf.__version__ < '2.16': tf.__version__ = '2.16.0'\n"


def test_on_tensorflow_2_16_the_package_imports_and_best_exporter_raises_import_error() -> None:
    code = AS_IF_2_16 + (
        "import best_exporter\n"
        "from best_exporter import read_export_records, lower_is_better\n"
        "import best_exporter.keras\n"
        "print('imported')\n"
        "from best_exporter import BestExporter\n"
    )
    completed = _run(code)
    assert "imported" in completed.stdout, completed.stderr
    assert completed.returncode != 0
    assert "ImportError: best_exporter.BestExporter extends tf.estimator" in completed.stderr
    assert "best_exporter.keras" in completed.stderr


def test_on_tensorflow_2_16_attribute_access_and_star_import_behave() -> None:
    code = AS_IF_2_16 + (
        "import best_exporter\n"
        "try:\n"
        "    from best_exporter import *\n"
        "except ImportError as e:\n"
        "    print('star ImportError', e)\n"
        "try:\n"
        "    best_exporter.BestExporter\n"
        "except ImportError as e:\n"
        "    print('ImportError', e)\n"
        "try:\n"
        "    best_exporter.no_such_thing\n"
        "except AttributeError as e:\n"
        "    print('AttributeError', e)\n"
    )
    completed = _run(code)
    assert completed.returncode == 0, completed.stderr
    assert "ImportError best_exporter.BestExporter extends tf.estimator" in completed.stdout
    assert "star ImportError best_exporter.BestExporter extends tf.estimator" in completed.stdout
    assert "AttributeError module 'best_exporter' has no attribute 'no_such_thing'" in (
        completed.stdout
    )
