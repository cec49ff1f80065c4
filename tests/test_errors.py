"""Tests of best_exporter.errors: which export failures both front-ends survive."""

import pytest
import tensorflow as tf

from best_exporter.core import errors


class _Op:
    """Stands for the graph op that raised an error."""

    name = "model/dense/MatMul"


@pytest.mark.parametrize(
    "error, survived",
    [
        (OSError("disk full"), True),
        (tf.errors.UnavailableError(None, None, "bucket unreachable"), True),
        (tf.errors.PermissionDeniedError(None, None, "read-only"), True),
        (tf.errors.AlreadyExistsError(None, None, "version taken"), True),
        (tf.errors.FailedPreconditionError(None, None, "rename onto a non-empty dir"), True),
        (tf.errors.FailedPreconditionError(None, _Op(), "uninitialized variable"), False),
        (tf.errors.InternalError(None, _Op(), "a kernel failed"), False),
        (AssertionError("Export directory /e/temp-1 already exists, and isn't empty"), True),
        (AssertionError("anything else"), False),
        (ValueError("bad serving signature"), False),
    ],
)
def test_only_the_filesystem_s_errors_are_survived(error: BaseException, survived: bool) -> None:
    assert errors.is_filesystem_error(error) is survived
