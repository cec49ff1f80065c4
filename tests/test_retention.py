"""Tests of best_exporter.retention: which exports to delete, and deleting them safely."""

import logging
import os
from typing import List, Optional

import pytest
import tensorflow as tf

from best_exporter.core import layout, retention

V = 1_700_000_000  # A version number; tests use V + n.


@pytest.mark.parametrize(
    "versions, exports_to_keep, protected, expected",
    [
        ([V + 1, V + 2, V + 3, V + 4], 2, [], [V + 1, V + 2]),
        ([V + 4, V + 1, V + 3, V + 2], 2, [], [V + 1, V + 2]),  # Order on disk is irrelevant.
        ([V + 1, V + 2, V + 3], 3, [], []),
        ([V + 1, V + 2], 5, [], []),
        ([V + 1, V + 2, V + 3], 1, [], [V + 1, V + 2]),
        ([], 1, [], []),
        ([V + 1, V + 2, V + 3], None, [], []),  # None keeps all.
        ([V + 1, V + 2, V + 3], None, [V + 1], []),
        # The version just written is never deleted, even below a "future" version
        # written by a clock running ahead.
        ([V + 1, V + 2, V + 9], 1, [V + 2], [V + 1]),
        ([V + 1, V + 2, V + 8, V + 9], 1, [V + 1], [V + 2, V + 8]),
        ([V + 1, V + 2, V + 3], 1, [V + 1, V + 2], []),
        # A protected version that is not on disk changes nothing.
        ([V + 1, V + 2, V + 3], 1, [V + 7], [V + 1, V + 2]),
        ([V + 1, V + 1, V + 2], 1, [], [V + 1]),  # Duplicates count once.
    ],
)
def test_versions_to_delete_keeps_the_newest_and_the_protected(
    versions: List[int], exports_to_keep: Optional[int], protected: List[int], expected: List[int]
) -> None:
    assert retention.versions_to_delete(versions, exports_to_keep, protected) == expected


@pytest.mark.parametrize(
    "temps, newest_version, expected",
    [
        ([V + 1, V + 3], V + 2, [V + 1]),  # V + 3 may still be being written.
        ([V + 3, V + 1, V + 0], V + 5, [V + 0, V + 1, V + 3]),
        ([V + 2], V + 2, []),  # Equal: not older than the newest version.
        ([V + 1, V + 2], None, []),  # No version yet: a first export may be running.
        ([], V + 2, []),
    ],
)
def test_stale_temp_dirs_are_those_older_than_the_newest_version(
    temps: List[int], newest_version: Optional[int], expected: List[int]
) -> None:
    assert retention.stale_temp_dirs(temps, newest_version) == expected


# Neither a 10-digit version nor `temp-<10 digits>`: never touched. No name here is a
# prefix of another (nor of a version): TensorFlow's ram:// rmtree fails on such siblings.
_FOREIGN_DIRS = ("12345", "98765432109", "my_model", "temp-abc", "temp-x17")
_FOREIGN_FILES = ("notes.txt", "2100000000.json")


def _make_export_dir(base: str, versions=(), temps=(), foreign: bool = False) -> None:
    tf.io.gfile.makedirs(base)
    for name in [str(v) for v in versions] + [f"temp-{t}" for t in temps]:
        tf.io.gfile.makedirs(os.path.join(base, name))
        with tf.io.gfile.GFile(os.path.join(base, name, "saved_model.pb"), "w") as f:
            f.write("model")
    if foreign:
        for name in _FOREIGN_DIRS:
            tf.io.gfile.makedirs(os.path.join(base, name))
        for name in _FOREIGN_FILES:
            with tf.io.gfile.GFile(os.path.join(base, name), "w") as f:
                f.write("not ours")


def _entries(base: str) -> List[str]:
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(base))


def test_prune_keeps_the_newest_versions_and_foreign_entries(any_dir: str) -> None:
    base = os.path.join(any_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 3, V + 4], foreign=True)

    deleted = retention.prune_export_dir(base, exports_to_keep=2)

    assert sorted(deleted) == [os.path.join(base, str(V + 1)), os.path.join(base, str(V + 2))]
    assert _entries(base) == sorted([str(V + 3), str(V + 4), *_FOREIGN_DIRS, *_FOREIGN_FILES])


def test_prune_with_none_keeps_every_version(any_dir: str) -> None:
    base = os.path.join(any_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 3])

    assert retention.prune_export_dir(base, exports_to_keep=None) == []
    assert _entries(base) == [str(V + 1), str(V + 2), str(V + 3)]


def test_prune_of_a_missing_dir_deletes_nothing(any_dir: str) -> None:
    assert retention.prune_export_dir(os.path.join(any_dir, "nothing"), 1) == []


def test_prune_accepts_the_export_path_as_bytes(ram_dir: str) -> None:
    base = os.path.join(ram_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2])
    retention.prune_export_dir(base.encode(), exports_to_keep=1)
    assert _entries(base) == [str(V + 2)]


def test_prune_never_deletes_the_protected_version_below_a_future_one(
    ram_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = os.path.join(ram_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 9])

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        retention.prune_export_dir(base, exports_to_keep=1, just_written=V + 2)

    assert _entries(base) == [str(V + 2), str(V + 9)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "higher version than the export just written" in warnings[0].getMessage()
    assert str(V + 9) in warnings[0].getMessage()


def test_prune_keeps_a_protected_older_version_without_warning_when_nothing_was_written(
    ram_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = os.path.join(ram_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 3])

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        retention.prune_export_dir(base, exports_to_keep=1, protected=[V + 1])

    assert _entries(base) == [str(V + 1), str(V + 3)]
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_prune_removes_temp_dirs_older_than_the_newest_version(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = os.path.join(any_dir, "export", "best")
    _make_export_dir(base, versions=[V + 5], temps=[V + 1, V + 4, V + 6], foreign=True)

    with caplog.at_level(logging.INFO, logger="tensorflow.best_exporter"):
        deleted = retention.prune_export_dir(base, exports_to_keep=5)

    assert sorted(deleted) == [
        os.path.join(base, f"temp-{V + 1}"),
        os.path.join(base, f"temp-{V + 4}"),
    ]
    # temp-(V+6) is newer than every version: an export may still be writing it.
    assert _entries(base) == sorted([str(V + 5), f"temp-{V + 6}", *_FOREIGN_DIRS, *_FOREIGN_FILES])
    assert any("left behind by an interrupted export" in r.getMessage() for r in caplog.records)


def test_prune_handles_listings_with_trailing_slashes(ram_dir: str, monkeypatch) -> None:
    # GCS lists directories as 'name/'.
    base = os.path.join(ram_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 3], temps=[V])
    listdir = tf.io.gfile.listdir
    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, "listdir", lambda path: [n + "/" for n in listdir(path)])
        retention.prune_export_dir(base, exports_to_keep=1)

    assert layout.parse_version(f"{V}/") == V
    assert _entries(base) == [str(V + 3)]


def test_version_is_renamed_to_temp_before_it_is_deleted(
    any_dir: str, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure while deleting leaves a temp dir, never half a version to serve."""
    base = os.path.join(any_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2])
    graveyard = os.path.join(base, f"temp-{V + 1}")
    rmtree = tf.io.gfile.rmtree
    failed = []

    def rmtree_failing_on_the_graveyard(path):
        if tf.compat.as_str(path) == graveyard:
            failed.append(path)
            raise tf.errors.PermissionDeniedError(None, None, "injected")
        rmtree(path)

    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, "rmtree", rmtree_failing_on_the_graveyard)
        with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
            deleted = retention.prune_export_dir(base, exports_to_keep=1)

    assert deleted == []
    assert failed == [graveyard]
    # The version is already out of TensorFlow Serving's sight; only temp-<v> remains.
    assert _entries(base) == [str(V + 2), f"temp-{V + 1}"]
    assert not tf.io.gfile.exists(os.path.join(base, str(V + 1), "saved_model.pb"))
    assert tf.io.gfile.exists(os.path.join(graveyard, "saved_model.pb"))
    assert any("injected" in r.getMessage() for r in caplog.records)

    # The next prune, with a working filesystem, cleans the leftover.
    assert retention.prune_export_dir(base, exports_to_keep=1) == [
        os.path.join(base, f"temp-{V + 1}")
    ]
    assert _entries(base) == [str(V + 2)]


def test_a_failed_rename_keeps_the_version_and_warns(
    ram_dir: str, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    base = os.path.join(ram_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2])

    def failing_rename(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "injected rename failure")

    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, "rename", failing_rename)
        with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
            assert retention.prune_export_dir(base, exports_to_keep=1) == []

    assert _entries(base) == [str(V + 1), str(V + 2)]
    assert any("Cannot delete old export" in r.getMessage() for r in caplog.records)


def test_a_leftover_temp_of_the_same_version_is_replaced(ram_dir: str) -> None:
    # An earlier retirement of V + 1 was killed after the rename, and V + 1 was
    # written again since (a clock set back): the new copy retires just the same.
    base = os.path.join(ram_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2], temps=[V + 1])

    retention.prune_export_dir(base, exports_to_keep=1)

    assert _entries(base) == [str(V + 2)]


def test_an_unlistable_export_dir_is_logged_not_raised(
    ram_dir: str, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_listdir(path):
        raise tf.errors.PermissionDeniedError(None, None, "injected listing failure")

    _make_export_dir(ram_dir, versions=[V + 1, V + 2])
    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, "listdir", failing_listdir)
        with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
            assert retention.prune_export_dir(ram_dir, exports_to_keep=1) == []
    assert any("injected listing failure" in r.getMessage() for r in caplog.records)


def test_discard_version_deletes_one_version_through_a_temp_dir(any_dir: str) -> None:
    base = os.path.join(any_dir, "export", "best")
    _make_export_dir(base, versions=[V + 1, V + 2])

    assert retention.discard_version(base, os.path.join(base, str(V + 2)))

    assert _entries(base) == [str(V + 1)]


def test_discard_version_refuses_a_directory_that_is_not_a_version(ram_dir: str) -> None:
    with pytest.raises(ValueError, match=r"Not a version directory: '.*my_model'"):
        retention.discard_version(ram_dir, os.path.join(ram_dir, "my_model"))


# ----------------------------------------------------------------------------
# Nothing outside the export directory is deleted or changed (issue 8, items 2 and 13).


def _pinned_model(tmp_path) -> str:
    """A model kept elsewhere, e.g. one a person pinned by symlinking it in."""
    pinned = tmp_path / "pinned"
    (pinned / "variables").mkdir(parents=True)
    (pinned / "saved_model.pb").write_text("pinned model")
    (pinned / "variables" / "variables.index").write_text("weights")
    return str(pinned)


def _tree(path: str) -> List[str]:
    return sorted(
        os.path.relpath(os.path.join(d, n), path) for d, _, files in os.walk(path) for n in files
    )


def test_prune_neither_follows_nor_deletes_a_symlink_named_like_a_version(tmp_path) -> None:
    base = str(tmp_path / "export")
    _make_export_dir(base, versions=[V + 2, V + 3])
    pinned = _pinned_model(tmp_path)
    os.symlink(pinned, os.path.join(base, str(V + 1)))
    os.symlink(pinned, os.path.join(base, f"temp-{V}"))  # Would be a stale temp dir.

    for _ in range(2):  # Every later prune, too.
        retention.prune_export_dir(base, exports_to_keep=1)

    assert _entries(base) == [str(V + 1), str(V + 3), f"temp-{V}"]
    assert os.path.islink(os.path.join(base, str(V + 1)))
    assert _tree(pinned) == ["saved_model.pb", "variables/variables.index"]


def test_prune_leaves_a_regular_file_named_like_a_version_alone(any_dir: str) -> None:
    base = os.path.join(any_dir, "export", "best")
    _make_export_dir(base, versions=[V + 2, V + 3])
    with tf.io.gfile.GFile(os.path.join(base, str(V + 1)), "w") as f:
        f.write("somebody's notes")

    assert retention.prune_export_dir(base, exports_to_keep=1) == [os.path.join(base, str(V + 2))]

    assert _entries(base) == [str(V + 1), str(V + 3)]
    with tf.io.gfile.GFile(os.path.join(base, str(V + 1))) as f:
        assert f.read() == "somebody's notes"


def test_deleting_a_version_removes_symlinks_inside_it_not_their_targets(tmp_path) -> None:
    base = str(tmp_path / "export")
    _make_export_dir(base, versions=[V + 1, V + 2])
    pinned = _pinned_model(tmp_path)
    os.symlink(pinned, os.path.join(base, str(V + 1), "assets"))  # A shared asset dir.
    os.symlink(os.path.join(pinned, "saved_model.pb"), os.path.join(base, str(V + 1), "extra.pb"))

    assert retention.prune_export_dir(base, exports_to_keep=1) == [os.path.join(base, str(V + 1))]

    assert _entries(base) == [str(V + 2)]
    assert _tree(pinned) == ["saved_model.pb", "variables/variables.index"]


def test_a_symlink_in_the_way_of_a_retiring_version_is_left_and_the_version_kept(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    base = str(tmp_path / "export")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 3])
    pinned = _pinned_model(tmp_path)
    os.symlink(pinned, os.path.join(base, f"temp-{V + 1}"))  # Newer than nothing: kept.

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        deleted = retention.prune_export_dir(base, exports_to_keep=1)

    assert deleted == [os.path.join(base, str(V + 2))]
    assert _entries(base) == [str(V + 1), str(V + 3), f"temp-{V + 1}"]
    assert _tree(pinned) == ["saved_model.pb", "variables/variables.index"]
    assert any("is in the way" in r.getMessage() for r in caplog.records)


def test_discard_version_refuses_a_symlink(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    base = str(tmp_path / "export")
    os.makedirs(base)
    pinned = _pinned_model(tmp_path)
    os.symlink(pinned, os.path.join(base, str(V + 1)))

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        assert retention.discard_version(base, os.path.join(base, str(V + 1))) is False

    assert os.path.islink(os.path.join(base, str(V + 1)))
    assert _tree(pinned) == ["saved_model.pb", "variables/variables.index"]


def test_prune_protecting_paths_keeps_the_versions_named_by_path(tmp_path) -> None:
    base = str(tmp_path / "export")
    _make_export_dir(base, versions=[V + 1, V + 2, V + 3, V + 4])

    deleted = retention.prune_protecting_paths(
        base,
        1,
        [os.path.join(base, str(V + 1)) + "/", None, os.path.join(base, "not-a-version")],
        just_written=os.path.join(base, str(V + 3)),
    )

    assert sorted(deleted) == [os.path.join(base, str(V + 2))]
    assert _entries(base) == [str(V + 1), str(V + 3), str(V + 4)]
