"""`s3://` and `gs://` end to end, on emulators on 127.0.0.1 (see objectstore.py).

On both stores a directory rename is a copy and a delete per object, so here the
exporter publishes through a staging directory with `saved_model.pb` last and
deletes with `saved_model.pb` first (publish.py). Each store gets:

* one real `train_and_evaluate` run whose exports are checked as on local disk and
  loaded back from the bucket through their serving signature;
* a restart on that run, which must not export a worse model;
* `best-exporter list` on the bucket, in a process of its own;
* the publishing protocol interrupted at each of its steps, and names that extend
  ours (S3 renames and deletes by key prefix) left alone.

Deselect them with `-m 'not objectstore'`; in CI (CI=true) they cannot be skipped.
"""

import json
import os
import subprocess
import sys
import uuid
from typing import Dict, List

import numpy as np
import pytest
import support
import tensorflow as tf
from test_end_to_end import (
    EXPORTER_NAME,
    RUN_CHECKS,
    Run,
    read_record,
    run_train_and_evaluate,
    version_names,
)

import best_exporter
from best_exporter import BestExporter
from best_exporter.core import layout, publish, summaries

pytestmark = [pytest.mark.objectstore, pytest.mark.e2e]

BUCKET_RUN = dict(max_steps=60, exports_to_keep=2)
V = 1_700_000_000
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(best_exporter.__file__)))


def entries(directory: str) -> List[str]:
    """The names in a directory; a directory on an object store exists while it holds objects."""
    if not tf.io.gfile.isdir(directory):
        return []
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory))


def files_under(directory: str) -> List[str]:
    found = []
    for parent, _, names in tf.io.gfile.walk(directory):
        relative = os.path.relpath(parent.rstrip("/"), directory)
        found += [name if relative == "." else f"{relative}/{name}" for name in names]
    return sorted(found)


@pytest.fixture(scope="module", params=["s3", "gs"])
def bucket_run(request) -> Run:
    """One real training run per object store, shared by the tests below in order."""
    bucket = request.getfixturevalue(f"{request.param}_bucket")
    return run_train_and_evaluate(f"{bucket}/{uuid.uuid4().hex}", **BUCKET_RUN)


@pytest.mark.parametrize("check", RUN_CHECKS, ids=lambda check: check.__name__[len("assert_") :])
def test_train_and_evaluate_on_a_bucket(bucket_run: Run, check) -> None:
    check(bucket_run)


def test_every_version_on_a_bucket_is_whole_and_nothing_else_is_left(bucket_run: Run) -> None:
    versions = version_names(bucket_run.export_dir)
    # No staging or temp directory; the TensorBoard events of the bests may stay.
    left = [n for n in entries(bucket_run.export_dir) if not n.endswith(summaries.FILE_SUFFIX)]
    assert left == versions
    for version in versions:
        files = files_under(os.path.join(bucket_run.export_dir, version))
        assert {
            "saved_model.pb",
            "variables/variables.index",
            "assets.extra/eval_result.json",
        } <= set(files), files
        assert any(name.startswith("variables/variables.data-") for name in files), files


def test_best_exporter_list_on_a_bucket_in_a_process_of_its_own(bucket_run: Run) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "best_exporter.cli", "list", "--json", bucket_run.export_dir]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    rows = report["versions"]
    versions = version_names(bucket_run.export_dir)
    assert [str(row["version"]) for row in rows] == versions
    assert report["served"] == os.path.join(bucket_run.export_dir, versions[-1])
    exported = {os.path.basename(c.exported): c for c in bucket_run.calls if c.exported}
    for row in rows:
        call = exported[str(row["version"])]
        assert row["record"]["global_step"] == int(call.eval_result["global_step"])
        assert row["record"]["metrics"]["loss"] == pytest.approx(float(call.eval_result["loss"]))


def test_restart_on_a_bucket_exports_only_a_better_model(bucket_run: Run) -> None:
    """A new exporter (a restarted evaluator) restores the best from the bucket's records."""
    run = bucket_run
    before = version_names(run.export_dir)
    best_loss = read_record(os.path.join(run.export_dir, before[-1]))["metrics"]["loss"]
    evaluated = run.calls[-1]
    estimator = support.make_classifier(run.model_dir)

    def export_after_restart(loss: float):
        exporter = BestExporter(
            name=EXPORTER_NAME,
            serving_input_receiver_fn=support.serving_input_receiver_fn,
            exports_to_keep=run.exports_to_keep,
        )
        result = dict(evaluated.eval_result, loss=np.float32(loss))
        return exporter.export(estimator, run.export_dir, evaluated.checkpoint_path, result, False)

    assert export_after_restart(best_loss + 0.5) is None
    assert version_names(run.export_dir) == before

    exported = tf.compat.as_str(export_after_restart(best_loss / 2))
    after = version_names(run.export_dir)
    assert after[-1] == os.path.basename(exported)
    assert after[:-1] == before[1:]  # exports_to_keep=2: the oldest went.
    assert read_record(exported)["metrics"]["loss"] == pytest.approx(best_loss / 2)
    scores = support.serve(exported)
    assert scores.shape == (2, 2) and np.all(np.isfinite(scores))


# ----------------------------------------------------------------------------
# The protocol on the real stores, with FakeEstimator: no training.


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so that no handler swallows it."""


def interrupt_after(monkeypatch, name: str, calls: int) -> None:
    original = getattr(tf.io.gfile, name)
    done = []

    def dying(path, *args, **kwargs):
        if len(done) == calls:
            raise Interrupted(path)
        done.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(tf.io.gfile, name, dying)


def fake_write(bucket_dir: str, version: int = V, **assets: str):
    sources = {}
    for destination, text in {layout.RECORD_ASSET_NAME: '{"metrics": {}}', **assets}.items():
        sources[destination] = f"{bucket_dir}/sources/{destination}"
        with tf.io.gfile.GFile(sources[destination], "w") as f:
            f.write(text)
    estimator = support.FakeEstimator(bucket_dir, first_version=version)
    return lambda base: estimator.export_saved_model(base, None, assets_extra=sources)


@pytest.mark.parametrize("moves", range(3))  # Of three files: the last is saved_model.pb.
def test_publish_to_a_bucket_interrupted_after_any_move_is_never_loadable_and_is_removed(
    bucket_dir: str, monkeypatch, moves
) -> None:
    base = f"{bucket_dir}/export"
    write = fake_write(bucket_dir, notes="user asset")
    with monkeypatch.context() as patch:
        # The FakeEstimator's own rename inside the staging directory comes first.
        interrupt_after(patch, "rename", 1 + moves)
        with pytest.raises(Interrupted):
            publish.publish_version(base, write)

    version_dir = f"{base}/{V}"
    present = files_under(version_dir)
    assert "saved_model.pb" not in present
    assert not present or "assets.extra/eval_result.json" in present, present

    publish.remove_unfinished(base)
    # Listings, not exists(): TensorFlow's GCS client caches a directory's stat for 5 s.
    assert files_under(base) == []


def test_publish_to_a_bucket_moves_empty_files_and_files_named_like_the_start_of_others(
    bucket_dir: str,
) -> None:
    base = f"{bucket_dir}/export"
    files = {
        "saved_model.pb": "model",
        "assets.extra/eval_result.json": "{}",
        "assets.extra/vocab": "short",
        "assets.extra/vocab.txt": "long",
        "assets.extra/empty": "",  # tensorflow-io's S3 can neither copy nor rename it.
    }

    def write(directory: str) -> str:
        # Written, not copied: S3 cannot copy an empty object, so Estimator could not
        # stage an empty asset there, but a writer may write one.
        for relative, text in files.items():
            with tf.io.gfile.GFile(f"{directory}/{V}/{relative}", "w") as f:
                f.write(text)
        return f"{directory}/{V}"

    exported = tf.compat.as_str(publish.publish_version(base, write))

    assert entries(base) == [str(V)]
    assert files_under(exported) == sorted(files)
    with tf.io.gfile.GFile(f"{exported}/assets.extra/vocab") as f:
        assert f.read() == "short"
    assert tf.io.gfile.stat(f"{exported}/assets.extra/empty").length == 0


@pytest.mark.parametrize("removes", [1, 2])
def test_deletion_on_a_bucket_interrupted_leaves_no_model_and_is_finished_at_restart(
    bucket_dir: str, monkeypatch, removes
) -> None:
    base = f"{bucket_dir}/export"
    version_dir = tf.compat.as_str(publish.publish_version(base, fake_write(bucket_dir, a="x")))
    with monkeypatch.context() as patch:
        interrupt_after(patch, "remove", removes)
        with pytest.raises(Interrupted):
            publish.withdraw_version(version_dir)

    left = files_under(version_dir)
    assert "saved_model.pb" not in left and "assets.extra/eval_result.json" in left, left
    assert publish.remove_unfinished(base) == [version_dir]
    assert files_under(version_dir) == []


def test_names_that_extend_ours_survive_publishing_retention_and_cleanup(bucket_dir: str):
    """tensorflow-io's S3 renames `<dir>` with every key that starts with it, `<dir>X` too."""
    model_dir = bucket_dir
    base = f"{model_dir}/export/best"
    foreign: Dict[str, str] = {
        f"{V}-notes/readme.txt": "about the first version",
        f"{V + 1}.bak/saved_model.pb": "a user's backup",
        f"temp-{V}X/file": "not a temp dir of ours",
        "temp-publish-notes/file": "not a staging dir of ours",
    }
    for relative, text in foreign.items():
        with tf.io.gfile.GFile(f"{base}/{relative}", "w") as f:
            f.write(text)
    estimator = support.FakeEstimator(model_dir, first_version=V)
    exporter = BestExporter(
        name="best",
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        exports_to_keep=1,
    )

    for step, loss in [(1, 0.5), (2, 0.4), (3, 0.3)]:
        assert exporter.export(estimator, base, None, support.eval_result(step, loss=loss), False)
    # A restarted exporter cleans up before its first export.
    restarted = BestExporter(
        name="best",
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        exports_to_keep=1,
    )
    assert restarted.export(estimator, base, None, support.eval_result(4, loss=0.2), False)

    assert version_names(base) == [str(V + 3)]
    for relative, text in foreign.items():
        with tf.io.gfile.GFile(f"{base}/{relative}") as f:
            assert f.read() == text, relative
