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
    try:
        tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:
        # ram:// rmtree raises NotFoundError after deleting everything when sibling
        # names share a prefix (`assets` and `assets.extra` in every SavedModel).
        pass


@pytest.fixture(params=["local", "ram"])
def any_dir(request, tmp_path):
    """A model directory on local disk and, in a second run, on `ram://`."""
    if request.param == "local":
        yield str(tmp_path)
        return
    yield request.getfixturevalue("ram_dir")


def _move_tree(rename, source: str, destination: str, overwrite: bool = False) -> None:
    """Renames a directory tree file by file, as local, GCS, S3 and HDFS renames do at once."""
    for directory, _, files in list(tf.io.gfile.walk(source)):
        relative = os.path.relpath(directory, source)
        target = destination if relative == "." else os.path.join(destination, relative)
        tf.io.gfile.makedirs(target)
        for name in files:
            rename(os.path.join(directory, name), os.path.join(target, name), overwrite)
    tf.io.gfile.rmtree(source)


@pytest.fixture(autouse=True)
def ram_renames_move_trees(monkeypatch):
    """Makes directory renames on `ram://` move the directory's contents.

    TensorFlow's in-memory filesystem renames only the directory entry of a
    directory and orphans its files, unlike every filesystem a model_dir lives on.
    Estimator publishes each export by renaming `temp-<ts>` to its version, so
    without this no export on `ram://` would have any content. Other paths are
    renamed by TensorFlow as usual.
    """
    original = tf.io.gfile.rename

    def rename(source, destination, overwrite=False):
        source = tf.compat.as_str(source)
        destination = tf.compat.as_str(destination)
        if source.startswith("ram://") and tf.io.gfile.isdir(source):
            _move_tree(original, source, destination, overwrite)
        else:
            original(source, destination, overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    monkeypatch.setattr(tf.compat.v1.gfile, "Rename", rename)
