"""Fixtures shared by all test modules."""

import os
import uuid

# Quieter TensorFlow C++ logs in test output; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


@pytest.fixture
def ram_dir():
    """A fresh directory on TensorFlow's in-memory filesystem, removed afterwards.

    A stray `open()`, `os.path` or `shutil` call in the library fails on it.
    """
    path = f"ram://test-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(path)
    yield path
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


@pytest.fixture(params=["local", "ram"])
def any_dir(request, tmp_path):
    """A model directory on local disk and, in a second run, on `ram://`."""
    if request.param == "local":
        yield str(tmp_path)
        return
    yield request.getfixturevalue("ram_dir")
