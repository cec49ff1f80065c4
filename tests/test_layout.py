"""Tests of best_exporter.layout: version names and listing an export directory."""

import os
from typing import Optional

import pytest
import tensorflow as tf

from best_exporter.core import layout
from tests.faulty_gfile import FaultyGfile


@pytest.mark.parametrize(
    "name, expected",
    [
        ("1700000000", 1_700_000_000),
        ("1700000000/", 1_700_000_000),  # A GCS listing's trailing slash.
        ("0000000001", 1),
        ("170000000", None),  # 9 digits.
        ("17000000000", None),  # 11 digits.
        ("temp-1700000000", None),
        ("1700000000.bak", None),
        ("170000000a", None),
        ("variables", None),
        ("", None),
    ],
)
def test_parse_version_accepts_exactly_ten_digits(name: str, expected: Optional[int]) -> None:
    assert layout.parse_version(name) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("temp-1700000000", 1_700_000_000),
        ("temp-1700000000/", 1_700_000_000),
        ("temp-170000000", None),
        ("temp-abc", None),
        ("temp-1700000000-x", None),
        ("1700000000", None),
        ("tmp-1700000000", None),
    ],
)
def test_parse_temp_version_accepts_temp_dash_ten_digits(
    name: str, expected: Optional[int]
) -> None:
    assert layout.parse_temp_version(name) == expected


@pytest.mark.parametrize("path", ["/m/export/best", b"/m/export/best"])
def test_as_path_returns_str_for_str_and_bytes(path) -> None:
    assert layout.as_path(path) == "/m/export/best"


def test_record_path_is_in_assets_extra() -> None:
    assert layout.record_path("/m/export/best/1700000000") == (
        "/m/export/best/1700000000/assets.extra/eval_result.json"
    )


def test_list_export_dir_of_a_missing_dir_is_empty(any_dir: str) -> None:
    listing = layout.list_export_dir(os.path.join(any_dir, "export", "best"))
    assert listing.versions == {} and listing.temp_dirs == {}


def test_list_export_dir_finds_versions_and_temp_dirs_only(any_dir: str) -> None:
    base = os.path.join(any_dir, "export", "best")
    # No name is a prefix of another: TensorFlow's ram:// rmtree fails on such siblings.
    for name in ["1700000001", "1700000002", "temp-1700000003", "temp-abc", "12345", "98765432109"]:
        tf.io.gfile.makedirs(os.path.join(base, name))
    with tf.io.gfile.GFile(os.path.join(base, "notes.txt"), "w") as f:
        f.write("not an export")

    listing = layout.list_export_dir(base.encode())  # The evaluator may pass bytes.

    assert listing.versions == {
        1_700_000_001: os.path.join(base, "1700000001"),
        1_700_000_002: os.path.join(base, "1700000002"),
    }
    assert listing.temp_dirs == {1_700_000_003: os.path.join(base, "temp-1700000003")}


def test_list_export_dir_strips_trailing_slashes_of_listings(tmp_path, monkeypatch) -> None:
    # GCS lists directories with a trailing '/'; the paths must not keep it.
    base = str(tmp_path)
    os.makedirs(os.path.join(base, "1700000001"))
    os.makedirs(os.path.join(base, "temp-1700000002"))
    listdir = tf.io.gfile.listdir
    monkeypatch.setattr(tf.io.gfile, "listdir", lambda p: [n + "/" for n in listdir(p)])

    listing = layout.list_export_dir(base)

    assert listing.versions == {1_700_000_001: os.path.join(base, "1700000001")}
    assert listing.temp_dirs == {1_700_000_002: os.path.join(base, "temp-1700000002")}


@pytest.mark.parametrize(
    "files, missing",
    [
        (["saved_model.pb", "assets.extra/eval_result.json"], []),
        (["saved_model.pbtxt", "assets.extra/eval_result.json"], []),
        (["assets.extra/eval_result.json"], ["saved_model.pb"]),
        (["saved_model.pb"], ["assets.extra/eval_result.json"]),
        ([], ["saved_model.pb", "assets.extra/eval_result.json"]),
    ],
)
def test_missing_export_parts_names_what_a_version_lacks(any_dir: str, files, missing) -> None:
    version_dir = os.path.join(any_dir, "1700000001")
    tf.io.gfile.makedirs(version_dir)
    for name in files:
        tf.io.gfile.makedirs(os.path.dirname(os.path.join(version_dir, name)))
        with tf.io.gfile.GFile(os.path.join(version_dir, name), "w") as f:
            f.write("x")
    assert layout.missing_export_parts(version_dir) == missing


# ----------------------------------------------------------------------------
# "Not there" is not "could not look" (issue 8, item 1).


@pytest.mark.parametrize("operation", ["listdir", "stat"])
@pytest.mark.parametrize(
    "error", [tf.errors.UnavailableError, tf.errors.PermissionDeniedError, tf.errors.InternalError]
)
def test_list_export_dir_raises_when_it_cannot_look(
    tmp_path, monkeypatch, operation: str, error
) -> None:
    base = str(tmp_path / "export" / "best")
    os.makedirs(os.path.join(base, "1700000001"))
    FaultyGfile(monkeypatch).fail(operation, error, path_contains=base)

    with pytest.raises(error):
        layout.list_export_dir(base)


def test_list_export_dir_of_a_path_that_is_a_file_is_empty(tmp_path) -> None:
    path = tmp_path / "export"
    path.write_text("not a directory")
    assert layout.list_export_dir(str(path)) == layout.ExportDirListing()


def test_list_export_dir_skips_an_entry_deleted_since_the_listing(tmp_path, monkeypatch) -> None:
    base = str(tmp_path)
    os.makedirs(os.path.join(base, "1700000001"))
    os.makedirs(os.path.join(base, "1700000002"))
    FaultyGfile(monkeypatch).fail(
        "stat", tf.errors.NotFoundError, path_contains=os.path.join(base, "1700000001")
    )
    assert layout.list_export_dir(base).versions == {
        1_700_000_002: os.path.join(base, "1700000002")
    }


# ----------------------------------------------------------------------------
# Symlinks and files named like versions are foreign (issue 8, items 2 and 13).


def test_list_export_dir_treats_symlinks_and_files_named_like_versions_as_foreign(
    tmp_path,
) -> None:
    base = tmp_path / "export"
    (base / "1700000001").mkdir(parents=True)
    pinned = tmp_path / "pinned_model"
    pinned.mkdir()
    (base / "1700000002").symlink_to(pinned, target_is_directory=True)
    (base / "temp-1700000003").symlink_to(pinned, target_is_directory=True)
    (base / "1700000004").write_text("a file named like a version")
    (base / "1700000005").symlink_to(tmp_path / "dangling")

    listing = layout.list_export_dir(str(base))

    assert listing.versions == {1_700_000_001: str(base / "1700000001")}
    assert listing.temp_dirs == {}
    assert sorted(listing.foreign) == [
        str(base / name) for name in ("1700000002", "1700000004", "1700000005", "temp-1700000003")
    ]


def test_file_named_like_a_version_on_ram_is_foreign(ram_dir: str) -> None:
    with tf.io.gfile.GFile(os.path.join(ram_dir, "1700000001"), "w") as f:
        f.write("a file")
    tf.io.gfile.makedirs(os.path.join(ram_dir, "1700000002"))

    listing = layout.list_export_dir(ram_dir)

    assert list(listing.versions) == [1_700_000_002]
    assert listing.foreign == [os.path.join(ram_dir, "1700000001")]


def test_local_symlinks_finds_links_at_any_depth_without_following_them(tmp_path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    version = tmp_path / "1700000001"
    (version / "variables").mkdir(parents=True)
    (version / "variables" / "link_dir").symlink_to(outside, target_is_directory=True)
    (version / "link_file").symlink_to(outside / "deep")

    assert sorted(layout.local_symlinks(str(version))) == [
        str(version / "link_file"),
        str(version / "variables" / "link_dir"),
    ]
    assert layout.local_symlinks("ram://nothing-here") == []


@pytest.mark.parametrize(
    "path, local",
    [
        ("/m/export", True),
        ("relative/export", True),
        ("file:///m/export", True),
        ("gs://bucket/m", False),
        ("s3://bucket/m", False),
        ("ram://m", False),
        ("hdfs://namenode/m", False),
    ],
)
def test_is_local_path(path: str, local: bool) -> None:
    assert layout.is_local_path(path) is local


# ----------------------------------------------------------------------------
# Event-file globs (issue 8, item 9).


@pytest.mark.parametrize(
    "model_dir, pattern, expected",
    [
        ("/m", "eval/*.tfevents.*", "/m/eval/*.tfevents.*"),
        ("gs://b/m", "eval/*.tfevents.*", "gs://b/m/eval/*.tfevents.*"),
        ("/m", "/logs/eval/*.tfevents.*", "/logs/eval/*.tfevents.*"),
        ("/m", "gs://other/eval/*.tfevents.*", "gs://other/eval/*.tfevents.*"),
        ("gs://b/m", "s3://other/eval/*", "s3://other/eval/*"),
        ("/runs/lr[0.1]", "eval/*", "/runs/lr[[]0.1]/eval/*"),
        ("/runs/a*b?c", "eval/*", "/runs/a[*]b[?]c/eval/*"),
    ],
)
def test_event_file_glob_escapes_model_dir_and_keeps_absolute_patterns(
    model_dir: str, pattern: str, expected: str
) -> None:
    assert layout.event_file_glob(model_dir, pattern) == expected


@pytest.mark.parametrize("name", ["lr[0.1]", "run*1", "what?", "[abc]"])
def test_event_file_glob_finds_files_under_a_model_dir_with_glob_characters(
    any_dir: str, name: str
) -> None:
    model_dir = os.path.join(any_dir, name)
    path = os.path.join(model_dir, "eval", "events.out.tfevents.1")
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("x")

    assert tf.io.gfile.glob(layout.event_file_glob(model_dir, "eval/*.tfevents.*")) == [path]
