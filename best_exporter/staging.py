"""Writing a new version for a front-end that makes the SavedModel itself.

`Estimator.export_saved_model` stages, numbers and renames its versions itself.
A Keras model has no such method, so `BestExportCallback` goes through
`publish_new_version`, which does the same: the SavedModel and its record are
written into `temp-<version>`, checked complete, and only then renamed to
`<version>`, so TensorFlow Serving never sees a version without its record or
its `saved_model.pb`. What a killed write leaves behind is a `temp-*` directory
that retention removes later.
"""

import os
import time
from typing import Callable, Iterable, Mapping, Union

import tensorflow as tf

from best_exporter import layout, records
from best_exporter.log import logger

#: Export failures that come from the filesystem, not from the user's model or
#: configuration: the front-end logs them and goes on with the next evaluation.
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


class IncompleteExportError(ValueError):
    """The export function wrote no SavedModel: a configuration error, nothing was published."""


def next_version(now: float, taken: Iterable[int]) -> int:
    """The version number for a new export: the clock, but above every number taken.

    Estimator waits for the next second when the clock's version exists; a
    front-end that may export several times a second takes the next free number
    instead, so versions keep increasing in the order the models were exported.

    Args:
      now: the time in seconds since the epoch.
      taken: the numbers of the versions and `temp-*` directories on disk.

    Returns:
      The new version number.
    """
    return max([int(now), *(t + 1 for t in taken)])


def publish_new_version(
    export_dir_base: Union[str, bytes],
    write_saved_model: Callable[[str], None],
    record: Mapping[str, object],
    clock: Callable[[], float] = time.time,
) -> str:
    """Writes a SavedModel and its record as the next version of `export_dir_base`.

    Args:
      export_dir_base: the export directory, e.g. `model_dir/export/best_exporter`.
      write_saved_model: writes the SavedModel to the directory it is given
        (which does not exist yet).
      record: the record of the export, from `records.make_record`.
      clock: returns the time in seconds, for the version number.

    Returns:
      The path of the published version directory.

    Raises:
      IncompleteExportError: if `write_saved_model` returned without writing
        `saved_model.pb`. The staged directory is removed.
      Exception: whatever `write_saved_model` or the filesystem raises; the
        staged directory is removed where possible.
    """
    base = layout.as_path(export_dir_base)
    tf.io.gfile.makedirs(base)
    listing = layout.list_export_dir(base)
    version = next_version(clock(), [*listing.versions, *listing.temp_dirs])
    staged = os.path.join(base, f"temp-{version}")
    final = os.path.join(base, str(version))
    try:
        write_saved_model(staged)
        record_file = layout.record_path(staged)
        tf.io.gfile.makedirs(os.path.dirname(record_file))
        with tf.io.gfile.GFile(record_file, "w") as f:
            f.write(records.dumps_record(record))
        missing = layout.missing_export_parts(staged)
        if missing:
            raise IncompleteExportError(
                f"the export function returned without writing {', '.join(missing)} "
                f"to {staged}; it must write a SavedModel to the path it is given"
            )
        tf.io.gfile.rename(staged, final)
    except BaseException:
        _remove_staged(staged)
        raise
    return final


def _remove_staged(staged: str) -> None:
    try:
        if tf.io.gfile.exists(staged):
            tf.io.gfile.rmtree(staged)
    except (tf.errors.OpError, OSError) as e:
        # Left for retention, which removes temp dirs older than the newest version.
        logger.warning("Cannot remove the unfinished export %s: %s", staged, e)
