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

    Attributes:
      versions: version number -> path of each version directory.
      temp_dirs: timestamp -> path of each `temp-<timestamp>` directory.
    """

    versions: Dict[int, str] = dataclasses.field(default_factory=dict)
    temp_dirs: Dict[int, str] = dataclasses.field(default_factory=dict)


def list_export_dir(export_dir_base: Union[str, bytes]) -> ExportDirListing:
    """Lists the version and temp directories of `export_dir_base`.

    Args:
      export_dir_base: the exporter's export path, e.g. `model_dir/export/best`.

    Returns:
      The listing; empty if the directory does not exist yet.

    Raises:
      tf.errors.OpError: if the directory exists but cannot be listed.
    """
    base = as_path(export_dir_base)
    if not tf.io.gfile.isdir(base):
        return ExportDirListing()
    listing = ExportDirListing()
    for name in tf.io.gfile.listdir(base):
        path = os.path.join(base, name.rstrip("/"))
        version = parse_version(name)
        if version is not None:
            listing.versions[version] = path
            continue
        temp = parse_temp_version(name)
        if temp is not None:
            listing.temp_dirs[temp] = path
    return listing
