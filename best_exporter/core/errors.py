"""Which export failures come from the filesystem, for every front-end.

A front-end survives a failed export whose cause is the filesystem (logs it,
keeps the previous best and tries again at the next evaluation), and lets every
other error through: those are the user's model or configuration.
"""

import tensorflow as tf

#: Export failures that come from the filesystem, not from the user's model or
#: configuration, whatever raised them.
TRANSIENT_EXPORT_ERRORS = (
    OSError,
    tf.errors.NotFoundError,
    tf.errors.UnavailableError,
    tf.errors.ResourceExhaustedError,
    tf.errors.DataLossError,
    tf.errors.AbortedError,
    tf.errors.DeadlineExceededError,
    tf.errors.PermissionDeniedError,
    tf.errors.UnknownError,
)

#: Errors of these classes come from the filesystem when no graph op raised them:
#: two writers exporting into one directory in the same second collide with
#: AlreadyExists (the publishing rename onto the other's version) or
#: FailedPrecondition (a rename onto a non-empty directory); object stores report
#: Internal and Cancelled. Raised by an op of the model's graph they are the
#: model's errors (an uninitialized variable), and propagate.
FILESYSTEM_EXPORT_ERRORS = (
    tf.errors.AlreadyExistsError,
    tf.errors.FailedPreconditionError,
    tf.errors.InternalError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


def is_filesystem_error(error: BaseException) -> bool:
    """Whether an export error is the filesystem's (survived), not the configuration's.

    Args:
      error: what the export raised.

    Returns:
      True for `TRANSIENT_EXPORT_ERRORS`, for `FILESYSTEM_EXPORT_ERRORS` that no
      graph op raised, and for SavedModelBuilder's complaint about a temp
      directory another writer is filling.
    """
    if isinstance(error, TRANSIENT_EXPORT_ERRORS):
        return True
    if isinstance(error, FILESYSTEM_EXPORT_ERRORS):
        return error.op is None
    # SavedModelBuilder reports a temp dir that another writer is filling (two
    # writers exporting in the same second) with a bare AssertionError.
    return isinstance(error, AssertionError) and "already exists, and isn't empty" in str(error)
