"""Tests of publish.publish_saved_model: a version a front-end writes itself (Keras) appears
whole or not at all, on atomic filesystems and (with `atomic=False`, as on gs:// and s3://)
through publish.py's staging protocol with the record first and `saved_model.pb` last.
"""

import datetime
import os
from typing import List

import pytest
import tensorflow as tf

from best_exporter.core import errors, layout, publish, records

NOW = 1_764_072_000.5


def _record(step: int = 7) -> dict:
    return records.make_record(
        {"global_step": step, "loss": 0.25}, None, "best_exporter", datetime.datetime.now()
    )


def _write_saved_model(path: str) -> None:
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, path)


@pytest.mark.parametrize(
    "taken, expected",
    [
        ([], 1_764_072_000),
        ([1_700_000_000], 1_764_072_000),
        ([1_764_072_000], 1_764_072_001),
        ([1_764_072_000, 1_764_072_005], 1_764_072_006),  # A clock that ran ahead elsewhere.
        ([1_764_071_999], 1_764_072_000),
    ],
)
def test_next_version_is_the_clock_above_every_number_taken(taken: List[int], expected: int):
    assert publish.next_version(NOW, taken) == expected


@pytest.mark.parametrize("atomic", [True, False])
def test_published_version_holds_the_saved_model_and_its_record(tmp_path, atomic: bool) -> None:
    base = str(tmp_path / "export")
    written_to: List[str] = []

    def write(path: str) -> None:
        written_to.append(os.path.relpath(path, base))
        assert not os.path.exists(path)
        _write_saved_model(path)

    path = publish.publish_saved_model(base, write, _record(), clock=lambda: NOW, atomic=atomic)

    assert path == os.path.join(base, "1764072000")
    # Out of Serving's sight while written: temp-<v>, or publish.py's staging directory.
    if atomic:
        assert written_to == ["temp-1764072000"]
    else:
        staging, version = written_to[0].split(os.sep)
        assert publish.is_staging_dir_name(staging) and version == "1764072000"
    assert layout.missing_export_parts(path) == []
    assert records.read_record(path)["global_step"] == 7
    assert os.listdir(base) == ["1764072000"]
    tf.saved_model.load(path)


def test_a_version_taken_by_a_temp_dir_is_not_reused(tmp_path) -> None:
    base = tmp_path / "export"
    (base / "temp-1764072000").mkdir(parents=True)
    path = publish.publish_saved_model(str(base), _write_saved_model, _record(), lambda: NOW)
    assert os.path.basename(path) == "1764072001"


@pytest.mark.parametrize("atomic", [True, False])
def test_writer_that_writes_no_saved_model_raises_and_leaves_nothing(tmp_path, atomic) -> None:
    base = str(tmp_path / "export")

    def write_only_variables(path: str) -> None:
        tf.io.gfile.makedirs(os.path.join(path, "variables"))

    with pytest.raises(publish.IncompleteExportError, match=r"without writing saved_model.pb to"):
        publish.publish_saved_model(base, write_only_variables, _record(), lambda: NOW, atomic)
    assert os.listdir(base) == []


@pytest.mark.parametrize("atomic", [True, False])
def test_a_failing_writer_leaves_no_version_and_no_temp_dir(tmp_path, atomic: bool) -> None:
    base = str(tmp_path / "export")

    def write_then_fail(path: str) -> None:
        _write_saved_model(path)
        raise tf.errors.UnavailableError(None, None, "disk went away")

    with pytest.raises(tf.errors.UnavailableError):
        publish.publish_saved_model(base, write_then_fail, _record(), lambda: NOW, atomic)
    assert os.listdir(base) == []


def test_a_failing_rename_leaves_the_staged_dir_removed(tmp_path, monkeypatch) -> None:
    base = str(tmp_path / "export")

    def rename(*args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, "read-only bucket")

    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    with pytest.raises(tf.errors.PermissionDeniedError):
        publish.publish_saved_model(base, _write_saved_model, _record(), lambda: NOW)
    assert os.listdir(base) == []


def test_without_atomic_renames_the_record_is_moved_first_and_saved_model_pb_last(
    tmp_path, monkeypatch
) -> None:
    base = str(tmp_path / "export")
    moved: List[str] = []
    rename = tf.io.gfile.rename

    def recording_rename(source, destination, overwrite=False):
        moved.append(os.path.relpath(tf.compat.as_str_any(destination), base))
        return rename(source, destination, overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", recording_rename)
    path = publish.publish_saved_model(base, _write_saved_model, _record(), lambda: NOW, False)

    assert moved[0] == os.path.join("1764072000", "assets.extra", layout.RECORD_ASSET_NAME)
    assert moved[-1] == os.path.join("1764072000", "saved_model.pb")
    assert len(moved) > 2  # One move per object, not one directory rename.
    assert os.listdir(base) == ["1764072000"]
    assert records.read_record(path)["global_step"] == 7
    tf.saved_model.load(path)


def test_a_version_taken_while_staging_takes_the_next_number(tmp_path) -> None:
    base = str(tmp_path / "export")

    def write_while_another_publishes(path: str) -> None:
        os.makedirs(os.path.join(base, "1764072000"))  # Another writer, same second.
        _write_saved_model(path)

    path = publish.publish_saved_model(
        base, write_while_another_publishes, _record(), lambda: NOW, atomic=False
    )
    assert os.path.basename(path) == "1764072001"
    assert layout.missing_export_parts(path) == []


def test_an_incomplete_export_is_not_a_filesystem_error() -> None:
    assert errors.is_filesystem_error(tf.errors.UnavailableError(None, None, "gone"))
    assert not errors.is_filesystem_error(publish.IncompleteExportError("no saved_model.pb"))
