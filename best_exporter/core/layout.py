"""The layout of an export directory, and listing it.

`Estimator.export_saved_model` writes each SavedModel to `temp-<timestamp>`
under the export base directory and renames it to `<timestamp>`, a 10-digit
version number that TensorFlow Serving serves the highest of. Everything else in
the directory is somebody else's and is left alone.
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional, Union

import tensorflow as tf

_VERSION_NAME = re.compile(r"\d{10}")
_TEMP_NAME = re.compile(r"temp-(\d{10})")

#: Where each export keeps its record, relative to its `assets.extra` directory.
RECORD_ASSET_NAME = "eval_result.json"


def as_path(path: Union[str, bytes]) -> str:
    """Returns `path` as a str; the evaluator passes export paths as bytes."""
    return path.decode("utf-8") if isinstance(path, bytes) else path


def parse_version(name: str) -> Optional[int]:
    """Returns the version number a directory name stands for, or None.

    Args:
      name: a directory entry, possibly with the trailing `/` of a GCS listing.

    Returns:
      The number, for exactly 10 digits, else None.
    """
    name = name.rstrip("/")
    return int(name) if _VERSION_NAME.fullmatch(name) else None


def parse_temp_version(name: str) -> Optional[int]:
    """Returns the timestamp of a `temp-<timestamp>` directory name, or None."""
    match = _TEMP_NAME.fullmatch(name.rstrip("/"))
    return int(match.group(1)) if match else None


def event_file_glob(model_dir: str, event_file_pattern: str) -> str:
    """The glob of the eval event files for `tf.io.gfile.glob`.

    Args:
      model_dir: the estimator's model directory, taken literally: glob
        metacharacters in it (`[`, `*`, `?`) are escaped.
      event_file_pattern: a glob relative to `model_dir`, or an absolute one
        (`/logs/eval/*`, or with a URL scheme such as `gs://other/eval/*`),
        used as it is.

    Returns:
      The glob.
    """
    if _URL_SCHEME.match(event_file_pattern) or event_file_pattern.startswith("/"):
        return event_file_pattern
    # `[x]` matches x literally, in TensorFlow's fnmatch-style globs on every
    # filesystem; a backslash escape is not understood by all of them.
    escaped = re.sub(r"([\[*?])", r"[\1]", model_dir)
    return os.path.join(escaped, event_file_pattern)


def record_path(version_dir: str) -> str:
    """The path of the record inside an export's version directory."""
    return os.path.join(version_dir, "assets.extra", RECORD_ASSET_NAME)


def has_saved_model(version_dir: str) -> bool:
    """Whether a version directory holds the SavedModel proto that Serving loads.

    Raises:
      tf.errors.OpError: if the filesystem cannot tell (anything but "not found").
    """
    return any(
        tf.io.gfile.exists(os.path.join(version_dir, name))
        for name in ("saved_model.pb", "saved_model.pbtxt")
    )


def missing_export_parts(version_dir: str) -> List[str]:
    """Names what a version written by this library lacks: its SavedModel or its record.

    Args:
      version_dir: a version directory.

    Returns:
      The missing parts' names; empty for a complete export.
    """
    missing = []
    if not has_saved_model(version_dir):
        missing.append("saved_model.pb")
    if not tf.io.gfile.exists(record_path(version_dir)):
        missing.append(f"assets.extra/{RECORD_ASSET_NAME}")
    return missing


@dataclasses.dataclass(frozen=True)
class ExportDirListing:
    """The entries of an export base directory that the exporter cares about.

    Only real directories count: a symlink or a regular file named like a version
    or a temp dir is somebody else's (a model pinned elsewhere, a note), so it is
    neither valued, protected, followed nor deleted.

    Attributes:
      versions: version number -> path of each version directory.
      temp_dirs: timestamp -> path of each `temp-<timestamp>` directory.
      foreign: the paths of the entries named like a version or temp dir that
        are not real directories, left alone.
    """

    versions: Dict[int, str] = dataclasses.field(default_factory=dict)
    temp_dirs: Dict[int, str] = dataclasses.field(default_factory=dict)
    foreign: List[str] = dataclasses.field(default_factory=list)


def list_export_dir(export_dir_base: Union[str, bytes]) -> ExportDirListing:
    """Lists the version and temp directories of `export_dir_base`.

    "Not there" and "could not look" are kept apart: only a NotFoundError means
    there is no export directory (yet). Any other error propagates, so that no
    caller mistakes a filesystem that failed to answer for an empty directory.

    Args:
      export_dir_base: the exporter's export path, e.g. `model_dir/export/best`.

    Returns:
      The listing; empty if the directory does not exist yet.

    Raises:
      tf.errors.OpError: if the directory, or an entry named like a version,
        cannot be looked at (anything but "not found").
      OSError: likewise, from a Python filesystem plugin.
    """
    base = as_path(export_dir_base)
    try:
        names = tf.io.gfile.listdir(base)
    except tf.errors.NotFoundError:
        # listdir says NotFound for a filesystem scheme that is not registered
        # too (gs:// without its plugin); exists() raises Unimplemented for it.
        tf.io.gfile.exists(base)
        return ExportDirListing()
    listing = ExportDirListing()
    for name in names:
        path = os.path.join(base, name.rstrip("/"))
        version = parse_version(name)
        temp = parse_temp_version(name) if version is None else None
        if version is None and temp is None:
            continue
        kind = _entry_kind(path, listed_as_directory=name.endswith("/"))
        if kind is None:
            continue  # Deleted since it was listed.
        if kind != "directory":
            listing.foreign.append(path)
        elif version is not None:
            listing.versions[version] = path
        else:
            listing.temp_dirs[temp] = path  # type: ignore[index]
    return listing


def is_own_directory(path: str) -> bool:
    """Whether `path` is a real directory, not a symlink or a file: safe to delete.

    Raises:
      tf.errors.OpError: if the filesystem cannot tell (anything but "not found").
    """
    return _entry_kind(path, listed_as_directory=False) == "directory"


def is_local_path(path: str) -> bool:
    """Whether `path` is on the local filesystem (no URL scheme, or `file://`)."""
    scheme = _URL_SCHEME.match(path)
    return scheme is None or scheme.group(1).lower() == "file"


def local_symlinks(path: str) -> List[str]:
    """The symlinks inside a local directory tree, found without following any.

    Object stores have no symlinks; on a local filesystem `tf.io.gfile.rmtree`
    follows a symlinked directory and empties its target, so the caller removes
    the links themselves first.

    Args:
      path: a directory; for a remote path the answer is empty.

    Returns:
      The paths of the symlinks, files or directories, at any depth.
    """
    if not is_local_path(path):
        return []
    local = _local(path)
    links = []
    for directory, subdirs, files in os.walk(local, followlinks=False):
        for name in subdirs + files:
            if os.path.islink(os.path.join(directory, name)):
                links.append(os.path.join(directory, name))
    return links


_URL_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.lower().startswith("file://") else path


def _entry_kind(path: str, listed_as_directory: bool) -> Optional[str]:
    """'directory', 'symlink' or 'file' for an entry, or None if it is gone.

    `tf.io.gfile` follows symlinks and has no lstat, so symlinks are recognised
    with `os.path.islink` on local paths; object stores have none.
    """
    if is_local_path(path) and os.path.islink(_local(path)):
        return "symlink"
    if listed_as_directory:
        return "directory"  # GCS lists directories as `name/`: no need to ask.
    try:
        is_directory = tf.io.gfile.stat(path).is_directory
    except tf.errors.NotFoundError:
        return None
    return "directory" if is_directory else "file"
