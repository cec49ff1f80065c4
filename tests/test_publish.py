"""Tests of publish.py: versions appear whole and disappear without leaving half a model.

The object-store protocol (staging directory, `saved_model.pb` last) is exercised here
on local disk by passing `atomic=False`, with renames and removes interrupted at every
step; test_objectstore.py runs it on real `s3://` and `gs://` emulators.
"""

import contextlib
import os
from typing import Iterator, List

import pytest
import support
import tensorflow as tf

from best_exporter.core import layout, publish

V = 1_700_000_000


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so that no handler swallows it."""


@contextlib.contextmanager
def interrupted_after(monkeypatch, name: str, calls: int) -> Iterator[List[str]]:
    """`tf.io.gfile.<name>` works `calls` times, then the process "dies" in the next call."""
    original = getattr(tf.io.gfile, name)
    done: List[str] = []

    def dying(path, *args, **kwargs):
        if len(done) == calls:
            raise Interrupted(path)
        done.append(tf.compat.as_str_any(path))
        return original(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, name, dying)
        yield done


def files_under(directory: str) -> List[str]:
    found = []
    for parent, _, names in tf.io.gfile.walk(directory):
        for name in names:
            found.append(os.path.relpath(os.path.join(parent, name), directory))
    return sorted(found)


def fake_write(tmp_path, version: int = V, **assets: str):
    """A `write` for publish_version: FakeEstimator's export, with a record and user assets."""
    estimator = support.FakeEstimator(str(tmp_path), first_version=version)
    sources = {}
    for destination, text in {layout.RECORD_ASSET_NAME: '{"metrics": {}}', **assets}.items():
        source = tmp_path / f"source-{destination.replace('/', '_')}"
        source.write_text(text)
        sources[destination] = str(source)

    def write(base: str) -> bytes:
        return estimator.export_saved_model(base, None, assets_extra=sources)

    return write


COMPLETE = sorted(["saved_model.pb", "assets.extra/eval_result.json"])


@pytest.mark.parametrize(
    "path, atomic",
    [
        ("/models/run/export/best", True),
        ("relative/export", True),
        ("hdfs://namenode/models/export", True),
        ("gs://bucket/models/export", False),
        ("s3://bucket/models/export", False),
        (b"s3://bucket/models/export", False),
        ("GS://bucket/models/export", False),
    ],
)
def test_renames_are_atomic_everywhere_but_on_object_stores(path, atomic) -> None:
    assert publish.renames_directories_atomically(path) is atomic


def test_staging_names_are_fixed_length_and_never_a_prefix_of_a_sibling() -> None:
    # tensorflow-io's S3 renames and deletes by key prefix: `<name>` also takes `<name>X`.
    names = [publish.staging_dir_name() for _ in range(50)]
    siblings = names + [str(V), str(V + 1), f"temp-{V}", f"temp-{V + 1}"]
    assert len(set(names)) == len(names)
    assert all(publish.is_staging_dir_name(name) for name in names)
    for name in names:
        assert not any(other != name and other.startswith(name) for other in siblings)
    assert not publish.is_staging_dir_name(f"{names[0]}X")
    assert layout.parse_version(names[0]) is None and layout.parse_temp_version(names[0]) is None


def test_atomic_publish_is_the_writers_own_rename(tmp_path) -> None:
    base = str(tmp_path / "export")
    bases = []
    write = fake_write(tmp_path)

    def recording_write(directory: str) -> bytes:
        bases.append(directory)
        return write(directory)

    exported = publish.publish_version(base, recording_write, atomic=True)

    assert bases == [base]
    assert exported == os.path.join(base, str(V)).encode()
    assert os.listdir(base) == [str(V)]


def test_object_store_publish_stages_beside_the_versions_and_leaves_only_the_version(
    tmp_path,
) -> None:
    base = str(tmp_path / "export")
    bases = []
    write = fake_write(tmp_path, notes="user asset")

    def recording_write(directory: str) -> bytes:
        bases.append(directory)
        return write(directory)

    exported = publish.publish_version(base, recording_write, atomic=False)

    assert len(bases) == 1 and os.path.dirname(bases[0]) == base
    assert publish.is_staging_dir_name(os.path.basename(bases[0]))
    assert exported == os.path.join(base, str(V)).encode()
    assert os.listdir(base) == [str(V)]
    assert files_under(os.path.join(base, str(V))) == sorted(COMPLETE + ["assets.extra/notes"])


def test_an_existing_version_is_not_overwritten_the_next_number_is_taken(tmp_path) -> None:
    base = str(tmp_path / "export")
    os.makedirs(os.path.join(base, str(V)))
    (tmp_path / "export" / str(V) / "saved_model.pb").write_text("older model")

    exported = publish.publish_version(base, fake_write(tmp_path), atomic=False)

    assert exported == os.path.join(base, str(V + 1)).encode()
    assert (tmp_path / "export" / str(V) / "saved_model.pb").read_text() == "older model"


@pytest.mark.parametrize("moves", range(3))  # Of three files: the last is saved_model.pb.
def test_publish_interrupted_after_any_move_never_shows_a_model_without_its_parts(
    tmp_path, monkeypatch, moves
) -> None:
    base = str(tmp_path / "export")
    write = fake_write(tmp_path, notes="user asset")
    # FakeEstimator's own directory rename inside the staging directory comes first.
    with interrupted_after(monkeypatch, "rename", 1 + moves) as renamed:
        with pytest.raises(Interrupted):
            publish.publish_version(base, write, atomic=False)

    moved = [os.path.relpath(path, tmp_path) for path in renamed[1:]]
    assert len(moved) == moves
    version_dir = os.path.join(base, str(V))
    present = files_under(version_dir) if os.path.isdir(version_dir) else []
    assert "saved_model.pb" not in present  # Moved last: there is one move more to go.
    if present:
        assert "assets.extra/eval_result.json" in present  # Moved first: marks it as ours.

    # A restarted exporter removes the version (a kill leaves the staging directory
    # too; see test_remove_unfinished_removes_only_this_librarys_unfinished_versions).
    # Killed before the first move, only empty directories are left, which object
    # stores do not have; local disk never publishes this way.
    publish.remove_unfinished(base)
    assert files_under(base) == []


def test_publish_that_fails_removes_the_staging_directory_and_the_partial_version(
    tmp_path, monkeypatch
) -> None:
    base = str(tmp_path / "export")
    rename = tf.io.gfile.rename
    calls = []

    def failing_third_rename(source, destination, overwrite=False):
        calls.append(source)
        if len(calls) == 3:
            raise tf.errors.UnavailableError(None, None, "injected")
        return rename(source, destination, overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", failing_third_rename)
    with pytest.raises(tf.errors.UnavailableError, match="injected"):
        publish.publish_version(base, fake_write(tmp_path, notes="x"), atomic=False)

    assert os.listdir(base) == []


def test_publish_whose_writer_fails_leaves_nothing(tmp_path) -> None:
    base = str(tmp_path / "export")
    estimator = support.FakeEstimator(str(tmp_path), error=ValueError("bad receiver"))

    with pytest.raises(ValueError, match="bad receiver"):
        publish.publish_version(
            base, lambda directory: estimator.export_saved_model(directory, None), atomic=False
        )

    assert os.listdir(base) == []


def make_version(base: str, version: int, record: bool = True, model: bool = True) -> str:
    path = os.path.join(base, str(version))
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "variables", "variables.index"), "w") as f:
        f.write("index")
    if model:
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("model")
    if record:
        os.makedirs(os.path.join(path, "assets.extra"))
        with open(layout.record_path(path), "w") as f:
            f.write("{}")
    return path


@pytest.mark.parametrize("removes", range(3))
def test_withdraw_interrupted_after_any_remove_never_leaves_a_loadable_part(
    tmp_path, monkeypatch, removes
) -> None:
    base = str(tmp_path)
    path = make_version(base, V)

    with interrupted_after(monkeypatch, "remove", removes) as removed:
        with pytest.raises(Interrupted):
            publish.withdraw_version(path)

    # saved_model.pb goes first, the record last: what is left is marked as ours.
    assert [os.path.relpath(p, path) for p in removed][:1] == ["saved_model.pb"][: len(removed)]
    assert not os.path.exists(os.path.join(path, "saved_model.pb")) or removes == 0
    if removes > 0:
        assert os.path.exists(layout.record_path(path))
        assert publish.remove_unfinished(base) == [path]
        assert os.listdir(base) == []


def test_withdraw_removes_the_whole_version(tmp_path) -> None:
    path = make_version(str(tmp_path), V)
    assert publish.withdraw_version(path)
    assert os.listdir(tmp_path) == []


def test_remove_unfinished_removes_only_this_librarys_unfinished_versions(tmp_path, caplog) -> None:
    base = str(tmp_path)
    complete = make_version(base, V + 1)
    unfinished = make_version(base, V + 2, model=False)
    foreign = make_version(base, V + 3, record=False, model=False)  # e.g. the original's.
    original = make_version(base, V + 4, record=False)
    staging = os.path.join(base, publish.staging_dir_name())
    os.makedirs(os.path.join(staging, str(V + 5)))
    not_staging = os.path.join(base, "temp-publish-notes")
    os.makedirs(not_staging)

    with caplog.at_level("INFO", logger="tensorflow.best_exporter"):
        removed = publish.remove_unfinished(base)

    assert sorted(removed) == sorted([unfinished, staging])
    assert sorted(os.listdir(base)) == sorted(
        os.path.basename(p) for p in (complete, foreign, original, not_staging)
    )
    assert any(
        unfinished in r.getMessage() and "no saved_model.pb" in r.getMessage()
        for r in caplog.records
    )


def test_remove_unfinished_of_a_missing_directory_removes_nothing(tmp_path) -> None:
    assert publish.remove_unfinished(str(tmp_path / "nothing")) == []


def test_remove_unfinished_logs_and_survives_a_listing_failure(tmp_path, monkeypatch, caplog):
    make_version(str(tmp_path), V, model=False)

    def failing_listdir(path):
        raise tf.errors.UnavailableError(None, None, "injected")

    monkeypatch.setattr(tf.io.gfile, "listdir", failing_listdir)
    assert publish.remove_unfinished(str(tmp_path)) == []
    assert "injected" in caplog.text


def test_empty_files_are_published_too(tmp_path) -> None:
    base = str(tmp_path / "export")
    publish.publish_version(base, fake_write(tmp_path, empty=""), atomic=False)
    assert os.path.getsize(os.path.join(base, str(V), "assets.extra", "empty")) == 0


def test_a_file_named_like_the_start_of_another_is_published_with_it(tmp_path) -> None:
    base = str(tmp_path / "export")
    publish.publish_version(
        base, fake_write(tmp_path, vocab="short", **{"vocab.txt": "long"}), atomic=False
    )
    version_dir = os.path.join(base, str(V))
    assert open(os.path.join(version_dir, "assets.extra", "vocab")).read() == "short"
    assert open(os.path.join(version_dir, "assets.extra", "vocab.txt")).read() == "long"
