"""Tests of best_exporter.layout: version names and listing an export directory."""

import os
from typing import Optional

import pytest
import tensorflow as tf

from best_exporter import layout


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
