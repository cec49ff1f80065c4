"""Tests of best_exporter.staging: a version the front-end writes appears whole or not at all."""

import datetime
import os
from typing import List

import pytest
import tensorflow as tf

from best_exporter import layout, records, staging

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
    assert staging.next_version(NOW, taken) == expected


def test_published_version_holds_the_saved_model_and_its_record(tmp_path) -> None:
    base = str(tmp_path / "export")
    seen_while_writing: List[List[str]] = []

    def write(path: str) -> None:
        seen_while_writing.append(sorted(os.listdir(base)))
        _write_saved_model(path)

    path = staging.publish_new_version(base, write, _record(), clock=lambda: NOW)

    assert path == os.path.join(base, "1764072000")
    assert seen_while_writing == [[]]  # Staged under temp-*, which the writer creates.
    assert layout.missing_export_parts(path) == []
    assert records.read_record(path)["global_step"] == 7
    assert os.listdir(base) == ["1764072000"]
    tf.saved_model.load(path)


def test_a_version_taken_by_a_temp_dir_is_not_reused(tmp_path) -> None:
    base = tmp_path / "export"
    (base / "temp-1764072000").mkdir(parents=True)
    path = staging.publish_new_version(str(base), _write_saved_model, _record(), lambda: NOW)
    assert os.path.basename(path) == "1764072001"


def test_writer_that_writes_no_saved_model_raises_and_leaves_nothing(tmp_path) -> None:
    base = str(tmp_path / "export")

    def write_only_variables(path: str) -> None:
        tf.io.gfile.makedirs(os.path.join(path, "variables"))

    with pytest.raises(staging.IncompleteExportError, match=r"without writing saved_model.pb to"):
        staging.publish_new_version(base, write_only_variables, _record(), lambda: NOW)
    assert os.listdir(base) == []


def test_a_failing_writer_leaves_no_version_and_no_temp_dir(tmp_path) -> None:
    base = str(tmp_path / "export")

    def write_then_fail(path: str) -> None:
        _write_saved_model(path)
        raise tf.errors.UnavailableError(None, None, "disk went away")

    with pytest.raises(tf.errors.UnavailableError):
        staging.publish_new_version(base, write_then_fail, _record(), lambda: NOW)
    assert os.listdir(base) == []


def test_a_failing_rename_leaves_the_staged_dir_removed(tmp_path, monkeypatch) -> None:
    base = str(tmp_path / "export")

    def rename(*args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, "read-only bucket")

    monkeypatch.setattr(tf.io.gfile, "rename", rename)
    with pytest.raises(tf.errors.PermissionDeniedError):
        staging.publish_new_version(base, _write_saved_model, _record(), lambda: NOW)
    assert os.listdir(base) == []


def test_filesystem_errors_are_transient_and_an_incomplete_export_is_not() -> None:
    assert issubclass(tf.errors.UnavailableError, staging.TRANSIENT_EXPORT_ERRORS)
    assert not issubclass(staging.IncompleteExportError, staging.TRANSIENT_EXPORT_ERRORS)
