"""Making a version directory appear whole, and disappear without leaving half of it.

TensorFlow Serving loads the highest 10-digit version directory as soon as it can
load it, which is once `saved_model.pb` (or `.pbtxt`) exists. On a local disk or
HDFS, Estimator publishes each export with one atomic directory rename of
`temp-<timestamp>`, and that is kept.

On object stores (`gs://`, `s3://`) a directory rename is a copy and a delete per
object, in listing order, so `saved_model.pb` lands before `variables/` and a kill
in the middle leaves a loadable half model. There the export is written into a
staging directory beside the versions, `temp-publish-<32 hex digits>` (a name
Serving ignores), and its objects are moved into the version directory one by
one: the record `assets.extra/eval_result.json` first, `saved_model.pb` last.
So a version directory is, at any moment:

* complete, if it has `saved_model.pb`;
* begun by this library and not finished, if it has the record but no
  `saved_model.pb` (a killed publish, or a killed deletion, which removes
  `saved_model.pb` first and the record last); `remove_unfinished` deletes it;
* somebody else's, otherwise: never touched.

All names written here have a fixed length after a fixed prefix, so none is a
prefix of a sibling's: tensorflow-io's S3 renames and deletes objects by key
prefix, and would otherwise catch `<name>X` along with `<name>`.

A front-end that writes the SavedModel itself (Keras has no
`export_saved_model` that stages and numbers versions) publishes through
`publish_saved_model`, the same protocol with a writer of its own.
"""

import os
import re
import time
import uuid
from typing import Any, Callable, Iterable, List, Mapping, Optional, Union

import tensorflow as tf

from best_exporter.core import layout, records
from best_exporter.core.log import logger

# Filesystems whose directory rename is a copy and a delete per object.
OBJECT_STORE_SCHEMES = frozenset({"gs", "s3"})

_STAGING_NAME = re.compile(r"temp-publish-[0-9a-f]{32}")
_SAVED_MODEL_NAMES = ("saved_model.pb", "saved_model.pbtxt")
_RECORD = f"assets.extra/{layout.RECORD_ASSET_NAME}"


def renames_directories_atomically(path: Union[str, bytes]) -> bool:
    """Whether a directory rename under `path` makes the whole directory appear at once.

    Args:
      path: a local path or a URL such as `gs://bucket/dir`.

    Returns:
      False for the object stores of `OBJECT_STORE_SCHEMES`, True otherwise.
    """
    text = layout.as_path(path)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme not in OBJECT_STORE_SCHEMES


def staging_dir_name() -> str:
    """A new name for a staging directory, `temp-publish-<32 hex digits>`."""
    return f"temp-publish-{uuid.uuid4().hex}"


def is_staging_dir_name(name: str) -> bool:
    """Whether `name` (possibly with a GCS listing's trailing `/`) names a staging directory."""
    return _STAGING_NAME.fullmatch(name.rstrip("/")) is not None


def publish_version(
    export_dir_base: Union[str, bytes],
    write: Callable[[str], Any],
    atomic: Optional[bool] = None,
) -> Any:
    """Writes an export with `write` and makes it appear as a version directory.

    Args:
      export_dir_base: the exporter's export path.
      write: writes the export under the directory it is given as a 10-digit
        version directory and returns that directory, as
        `Estimator.export_saved_model` does.
      atomic: whether directory renames under `export_dir_base` are atomic;
        None decides by its scheme (`renames_directories_atomically`).

    Returns:
      What `write` returned where renames are atomic; elsewhere the version
      directory, as bytes like `Estimator.export_saved_model`'s.

    Raises:
      Whatever `write` or the filesystem raise; the staging directory and a
      partly moved version are removed first.
    """
    base = layout.as_path(export_dir_base)
    if atomic is None:
        atomic = renames_directories_atomically(base)
    if atomic:
        return write(base)  # As it is: a mocked estimator may return anything.
    staging = os.path.join(base, staging_dir_name())
    target = None
    try:
        staged = layout.as_path(write(staging))
        target = _free_version_dir(base, int(os.path.basename(staged.rstrip("/"))))
        _move_files(staged, target)
    except Exception:
        if target is not None and tf.io.gfile.exists(target):
            withdraw_version(target)
        raise
    finally:
        _remove_quietly(staging)
    return tf.compat.as_bytes(target)


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


def publish_saved_model(
    export_dir_base: Union[str, bytes],
    write_saved_model: Callable[[str], Any],
    record: Mapping[str, Any],
    clock: Callable[[], float] = time.time,
    atomic: Optional[bool] = None,
) -> str:
    """Writes a SavedModel and its record as the next version, through `publish_version`.

    The version number comes from `next_version` over what is in
    `export_dir_base`. Where directory renames are atomic the SavedModel and
    the record are written into `temp-<version>`, checked complete and renamed
    to `<version>`; on object stores they are written into the staging
    directory and moved in by `publish_version`, record first and
    `saved_model.pb` last. Either way TensorFlow Serving never sees a version
    without its record or its whole model.

    Args:
      export_dir_base: the export directory, e.g. `model_dir/export/best_exporter`.
      write_saved_model: writes the SavedModel to the directory it is given
        (which does not exist yet).
      record: the record of the export, from `records.make_record`.
      clock: returns the time in seconds, for the version number.
      atomic: as for `publish_version`; None decides by the scheme.

    Returns:
      The path of the published version directory.

    Raises:
      IncompleteExportError: if `write_saved_model` returned without writing
        `saved_model.pb`. Nothing is published.
      Exception: whatever `write_saved_model` or the filesystem raises; what
        was written is removed where possible.
    """
    base = layout.as_path(export_dir_base)
    tf.io.gfile.makedirs(base)
    listing = layout.list_export_dir(base)
    version = next_version(clock(), [*listing.versions, *listing.temp_dirs])

    def write(directory: str) -> str:
        final = os.path.join(directory, str(version))
        # A staging directory is out of Serving's sight already: written in place,
        # as a rename inside it would be another copy per object.
        staged = final if directory != base else os.path.join(base, f"temp-{version}")
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
            if staged != final:
                tf.io.gfile.rename(staged, final)
        except BaseException:
            if staged != final:
                _remove_quietly(staged)
            raise
        return final

    return layout.as_path(publish_version(base, write, atomic))


def _free_version_dir(base: str, version: int) -> str:
    # Estimator picked the version in the staging directory, where it is always
    # free; two exports within one second would take the same one.
    while tf.io.gfile.exists(os.path.join(base, str(version))):
        version += 1
    return os.path.join(base, str(version))


def _publish_order(relative: str) -> tuple:
    if relative == _RECORD:
        return (0, relative)  # First: marks the version as this library's.
    if relative in _SAVED_MODEL_NAMES:
        return (2, relative)  # Last: makes the version loadable.
    return (1, relative)


def _move_files(source: str, target: str) -> None:
    """Moves the files of `source` into `target`, record first, `saved_model.pb` last."""
    files = sorted(_relative_files(source), key=_publish_order)
    needs_directories = renames_directories_atomically(target)  # Object stores have none.
    made = set()
    for relative in files:
        destination = os.path.join(target, relative)
        parent = os.path.dirname(destination)
        if needs_directories and parent not in made:
            tf.io.gfile.makedirs(parent)
            made.add(parent)
        # tensorflow-io's S3 rename takes every key with the source as prefix: a
        # file named like the start of another (`vocab`, `vocab.txt`) is copied.
        prefix_of_another = any(o != relative and o.startswith(relative) for o in files)
        _move_file(os.path.join(source, relative), destination, copy=prefix_of_another)


def _move_file(source: str, destination: str, copy: bool) -> None:
    try:
        if copy:
            tf.io.gfile.copy(source, destination, overwrite=True)
        else:
            tf.io.gfile.rename(source, destination, overwrite=True)
    except tf.errors.FailedPreconditionError:
        # tensorflow-io's S3 can neither rename nor copy an empty object.
        if tf.io.gfile.stat(source).length != 0:
            raise
        with tf.io.gfile.GFile(destination, "wb") as f:
            f.write(b"")  # Without a write, tensorflow-io's S3 uploads nothing.
    # The staging directory is deleted as a whole afterwards.


def _relative_files(directory: str) -> List[str]:
    files = []
    for parent, _, names in tf.io.gfile.walk(directory):
        relative_parent = os.path.relpath(parent.rstrip("/"), directory.rstrip("/"))
        for name in names:
            name = name.rstrip("/")
            files.append(name if relative_parent == "." else f"{relative_parent}/{name}")
    return files


def withdraw_version(version_dir: str) -> bool:
    """Deletes a version directory object by object: `saved_model.pb` first, the record last.

    Used where a directory rename is not atomic. A kill in the middle leaves a
    directory that cannot be loaded and that `remove_unfinished` recognises.

    Args:
      version_dir: a version directory.

    Returns:
      Whether it is gone; failures are logged as warnings.
    """
    try:
        files = sorted(_relative_files(version_dir), key=_publish_order, reverse=True)
        for relative in files:
            if relative == _RECORD:
                continue
            _remove_file(os.path.join(version_dir, relative))
        if _RECORD in files:
            _remove_file(os.path.join(version_dir, _RECORD))
        if tf.io.gfile.exists(version_dir):
            tf.io.gfile.rmtree(version_dir)  # Empty directories, directory markers.
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot delete export %s: %s", version_dir, e)
        return False
    return True


def _remove_file(path: str) -> None:
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass  # Gone already: the goal is met.


def remove_unfinished(export_dir_base: Union[str, bytes]) -> List[str]:
    """Removes what killed publishes and deletions of this library left behind.

    That is every staging directory, and every 10-digit version directory
    without `saved_model.pb` that has this library's record. A version without
    either, written by somebody else, is left alone. Call it when no publish of
    this exporter is running, i.e. before the first export of a process.

    Args:
      export_dir_base: the exporter's export path.

    Returns:
      The directories removed. Failures are logged as warnings, never raised.
    """
    base = layout.as_path(export_dir_base)
    try:
        if not tf.io.gfile.isdir(base):
            return []
        names = [name.rstrip("/") for name in tf.io.gfile.listdir(base)]
        # Our own version directories only: never a symlink or a file named like one.
        versions = layout.list_export_dir(base).versions.values()
        # One listing instead of a request per version.
        loadable = {
            os.path.dirname(path)
            for name in _SAVED_MODEL_NAMES
            for path in tf.io.gfile.glob(os.path.join(base, "*", name))
        }
        unfinished = [
            path
            for path in versions
            if path not in loadable and tf.io.gfile.exists(layout.record_path(path))
        ]
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot look for unfinished exports in %s: %s", base, e)
        return []
    removed = []
    for name in names:
        if is_staging_dir_name(name) and _remove_quietly(os.path.join(base, name)):
            logger.info(
                "Removed %s, left behind by an interrupted export", os.path.join(base, name)
            )
            removed.append(os.path.join(base, name))
    for path in unfinished:
        if withdraw_version(path):
            logger.warning(
                "Removed %s: an export or deletion of it was interrupted (it has a record but "
                "no saved_model.pb), so it holds no whole model",
                path,
            )
            removed.append(path)
    return removed


def _remove_quietly(directory: str) -> bool:
    try:
        if tf.io.gfile.exists(directory):
            tf.io.gfile.rmtree(directory)
    except tf.errors.NotFoundError:
        pass
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot delete %s: %s", directory, e)
        return False
    return True
