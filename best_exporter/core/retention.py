"""Which exports to delete, and deleting them without ever leaving half a version.

The decisions are pure functions over version numbers. `prune_export_dir` applies
them, touching only 10-digit version directories and `temp-<timestamp>`
directories of one export base directory. A symlink or a regular file named like
one is somebody else's: never followed, never deleted; and symlinks inside a
version are removed as links, so deleting a version never reaches outside the
export directory.
"""

import numbers
import os
from typing import Any, Collection, Iterable, List, Optional, Union

import numpy as np
import tensorflow as tf

from best_exporter.core import layout, publish
from best_exporter.core.log import logger


def checked_exports_to_keep(exports_to_keep: Any) -> Optional[int]:
    """Checks the `exports_to_keep` argument of a front-end.

    Raises:
      ValueError: unless it is a positive integer or None.
    """
    if exports_to_keep is None:
        return None
    if isinstance(exports_to_keep, (bool, np.bool_)) or not isinstance(
        exports_to_keep, numbers.Integral
    ):
        raise ValueError(
            "`exports_to_keep` must be a positive integer, or None to keep all exports. "
            f"Received: exports_to_keep={exports_to_keep!r}"
        )
    if exports_to_keep <= 0:
        raise ValueError(
            "`exports_to_keep`, if provided, must be a positive number. " f"Got {exports_to_keep}"
        )
    return int(exports_to_keep)


def versions_to_delete(
    versions: Iterable[int], exports_to_keep: Optional[int], protected: Collection[int] = ()
) -> List[int]:
    """Returns the versions beyond the newest `exports_to_keep`, oldest first.

    Args:
      versions: the version numbers on disk.
      exports_to_keep: how many of the newest to keep; None keeps all.
      protected: versions never to delete, e.g. the one just written, even when
        a clock running ahead elsewhere has written higher version numbers.

    Returns:
      The versions to delete.
    """
    if exports_to_keep is None:
        return []
    newest_first = sorted(set(versions), reverse=True)
    kept = set(newest_first[:exports_to_keep]) | set(protected)
    return sorted(v for v in newest_first if v not in kept)


def stale_temp_dirs(temp_timestamps: Iterable[int], newest_version: Optional[int]) -> List[int]:
    """Returns the `temp-<timestamp>` dirs that no running export can still own.

    Exports of one exporter run one at a time and take increasing timestamps, so
    a temp dir older than the newest version was left by an export that crashed
    or was killed; a newer one may still be being written.

    Args:
      temp_timestamps: the timestamps of the `temp-*` directories on disk.
      newest_version: the highest version number on disk, or None.

    Returns:
      The stale timestamps, oldest first.
    """
    if newest_version is None:
        return []
    return sorted(t for t in temp_timestamps if t < newest_version)


def prune_export_dir(
    export_dir_base: Union[str, bytes],
    exports_to_keep: Optional[int],
    protected: Collection[int] = (),
    just_written: Optional[int] = None,
) -> List[str]:
    """Deletes old versions and stale temp dirs of one export base directory.

    A version is first renamed to `temp-<version>` and then deleted, so that a
    kill in the middle leaves a temp dir (cleaned next time), never a version
    directory with half a SavedModel that TensorFlow Serving would try to load.
    Where a rename is a copy per object (gs://, s3://), the version is deleted in
    place with `saved_model.pb` first instead (`publish.withdraw_version`).
    Failures are logged and skipped: retention must never stop the evaluator.

    Args:
      export_dir_base: the exporter's export path.
      exports_to_keep: how many of the newest versions to keep; None keeps all.
      protected: versions never to delete.
      just_written: the version the caller just exported, if any; protected too,
        and a warning is logged if a higher version exists, which TensorFlow
        Serving would serve instead.

    Returns:
      The directories deleted.
    """
    base = layout.as_path(export_dir_base)
    try:
        listing = layout.list_export_dir(base)
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot list %s to delete old exports: %s", base, e)
        return []
    newest = max(listing.versions, default=None)
    if just_written is not None:
        protected = {*protected, just_written}
        if newest is not None and just_written < newest:
            logger.warning(
                "Export %s has a higher version than the export just written (%d): a clock "
                "elsewhere runs ahead, and TensorFlow Serving will serve that version",
                listing.versions[newest],
                just_written,
            )
    for path in listing.foreign:
        logger.debug("Leaving %s alone: named like an export, but not a directory", path)
    deleted = []
    for timestamp in stale_temp_dirs(listing.temp_dirs, newest):
        path = listing.temp_dirs[timestamp]
        if _delete_tree(path):
            logger.info("Removed %s, left behind by an interrupted export", path)
            deleted.append(path)
    for version in versions_to_delete(listing.versions, exports_to_keep, protected):
        path = listing.versions[version]
        if _retire_version(base, path, version):
            logger.info("Deleted old export %s (keeping the newest %d)", path, exports_to_keep)
            deleted.append(path)
    return deleted


def prune_protecting_paths(
    export_dir_base: Union[str, bytes],
    exports_to_keep: Optional[int],
    protected_paths: Iterable[Optional[str]],
    just_written: Optional[str] = None,
    protected_versions: Collection[int] = (),
) -> List[str]:
    """`prune_export_dir` for a front-end that knows its exports by path.

    Args:
      export_dir_base: the export directory.
      exports_to_keep: how many of the newest versions to keep; None keeps all.
      protected_paths: version directories never to delete (e.g. the best's);
        None entries and paths that are not versions are ignored.
      just_written: the version directory just exported, if any.
      protected_versions: version numbers never to delete besides, e.g. those
        `restore.Restored.unmatched` names.

    Returns:
      The directories deleted.
    """
    protected = [_version_of(path) for path in protected_paths if path]
    return prune_export_dir(
        export_dir_base,
        exports_to_keep,
        [v for v in protected if v is not None] + sorted(protected_versions),
        just_written=_version_of(just_written) if just_written else None,
    )


def _version_of(path: str) -> Optional[int]:
    return layout.parse_version(os.path.basename(path.rstrip("/")))


def discard_version(export_dir_base: Union[str, bytes], version_dir: str) -> bool:
    """Deletes one version directory, first taking it out of TensorFlow Serving's sight.

    Args:
      export_dir_base: the exporter's export path.
      version_dir: a 10-digit version directory in it.

    Returns:
      Whether it was deleted; failures are logged.
    """
    version = layout.parse_version(os.path.basename(version_dir))
    if version is None:
        raise ValueError(f"Not a version directory: {version_dir!r}")
    return _retire_version(layout.as_path(export_dir_base), version_dir, version)


def _retire_version(base: str, path: str, version: int) -> bool:
    if not publish.renames_directories_atomically(base):
        # A rename would be a copy per object: delete in place, saved_model.pb first.
        return publish.withdraw_version(path)
    graveyard = os.path.join(base, f"temp-{version}")
    try:
        if not layout.is_own_directory(path):
            logger.warning("Not deleting %s: it is not a directory of this exporter", path)
            return False
        if tf.io.gfile.exists(graveyard):
            if not layout.is_own_directory(graveyard):
                logger.warning(
                    "Cannot delete old export %s: %s is in the way and is not a directory of "
                    "this exporter",
                    path,
                    graveyard,
                )
                return False
            if not _delete_tree(graveyard):
                return False
        tf.io.gfile.rename(path, graveyard)
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot delete old export %s: %s", path, e)
        return False
    return _delete_tree(graveyard)


def _delete_tree(path: str) -> bool:
    try:
        # rmtree follows a symlinked directory and empties its target: unlink
        # the links first, so nothing outside the export directory is touched.
        for link in layout.local_symlinks(path):
            tf.io.gfile.remove(link)
        tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:
        pass  # Somebody else deleted it: the goal is met.
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot delete %s: %s", path, e)
        return False
    return True
