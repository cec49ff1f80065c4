"""End-to-end tests: `BestExporter` with a real `DNNClassifier` and `train_and_evaluate`.

Few and cheap by design: one shared run on local disk, one on `ram://` (where
no export can survive TensorFlow's rename, and the exporter must say so), and
direct `export()` calls on copies of the shared run for a restart and for a
checkpoint deleted before its export. test_objectstore.py runs the same checks
on `s3://` and `gs://`. The decision itself is unit-tested with
fakes elsewhere.
"""

import dataclasses
import glob
import json
import logging
import os
import re
import shutil
import time
from typing import Any, Dict, List, Optional, Set

import numpy as np
import pytest
import support
import tensorflow as tf

from best_exporter import BestExporter
from tests.faulty_gfile import FaultyGfile

pytestmark = pytest.mark.e2e

EXPORTER_NAME = "best_exporter"
LOCAL_RUN = dict(max_steps=100, exports_to_keep=2)  # 5 evaluations, so retention has work.
RAM_RUN = dict(max_steps=60, exports_to_keep=2)


# ----------------------------------------------------------------------------
# A spy that records what the evaluator asked and what was on disk around each call.


@dataclasses.dataclass
class ExportCall:
    """One `export()` call made by the evaluator, and its effects."""

    eval_result: Dict[str, Any]
    checkpoint_path: str
    exported: Optional[str]
    versions_after: List[str]
    steps_in_events_before: Set[int]


class ExportSpy(tf.estimator.Exporter):
    """Passes each call on to an exporter, and lists the export dir right after it."""

    def __init__(self, exporter: tf.estimator.Exporter):
        self._exporter = exporter
        self.calls: List[ExportCall] = []

    @property
    def name(self) -> str:
        return self._exporter.name

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        steps_before = eval_steps_in_events(estimator.model_dir)
        exported = self._exporter.export(
            estimator, export_path, checkpoint_path, eval_result, is_the_final_export
        )
        self.calls.append(
            ExportCall(
                eval_result=dict(eval_result),
                checkpoint_path=tf.compat.as_str(checkpoint_path),
                exported=tf.compat.as_str(exported) if exported is not None else None,
                versions_after=version_names(tf.compat.as_str(export_path)),
                steps_in_events_before=steps_before,
            )
        )
        return exported


def eval_steps_in_events(model_dir: str) -> Set[int]:
    """The steps whose eval loss is in the eval event files, read with TensorFlow's reader."""
    steps = set()
    for path in tf.io.gfile.glob(os.path.join(model_dir, "eval", "*.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            if any(value.tag == "loss" for value in event.summary.value):
                steps.add(event.step)
    return steps


def version_names(export_dir: str) -> List[str]:
    """The 10-digit version directories of an export dir, oldest first."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(export_dir))
    return sorted(name for name in names if re.fullmatch(r"\d{10}", name))


def read_record(version_dir: str) -> Dict[str, Any]:
    """The `assets.extra/eval_result.json` of a version, read without the library."""
    with tf.io.gfile.GFile(os.path.join(version_dir, "assets.extra", "eval_result.json")) as f:
        return json.load(f)


@dataclasses.dataclass
class Run:
    model_dir: str
    export_dir: str
    exports_to_keep: int
    calls: List[ExportCall]


def run_train_and_evaluate(model_dir: str, max_steps: int, exports_to_keep: int) -> Run:
    spy = ExportSpy(
        BestExporter(
            name=EXPORTER_NAME,
            serving_input_receiver_fn=support.serving_input_receiver_fn,
            exports_to_keep=exports_to_keep,
        )
    )
    support.train_and_evaluate(support.make_classifier(model_dir), [spy], max_steps=max_steps)
    export_dir = os.path.join(model_dir, "export", EXPORTER_NAME)
    run = Run(model_dir, export_dir, exports_to_keep, spy.calls)
    # The checks below only mean something if retention had to delete.
    assert sum(call.exported is not None for call in run.calls) > exports_to_keep
    return run


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Run:
    """One real training run on local disk, shared by the tests that only read it."""
    model_dir = str(tmp_path_factory.mktemp("local_run"))
    return run_train_and_evaluate(model_dir, **LOCAL_RUN)


@pytest.fixture
def copied_run(local_run: Run, tmp_path) -> Run:
    """A copy of the shared run, for a test that changes the model_dir."""
    model_dir = str(tmp_path / "model")
    shutil.copytree(local_run.model_dir, model_dir)
    export_dir = os.path.join(model_dir, "export", EXPORTER_NAME)
    return Run(model_dir, export_dir, local_run.exports_to_keep, local_run.calls)


# ----------------------------------------------------------------------------
# What a run leaves behind. Shared by the runs on local disk and on object stores.


def assert_newest_export_serves(run: Run) -> None:
    newest = version_names(run.export_dir)[-1]
    scores = support.serve(os.path.join(run.export_dir, newest))
    assert scores.shape == (2, 2)
    assert np.all(np.isfinite(scores))


def assert_never_more_than_exports_to_keep(run: Run) -> None:
    during = [len(call.versions_after) for call in run.calls]
    assert max(during) <= run.exports_to_keep, during
    assert 0 < len(version_names(run.export_dir)) <= run.exports_to_keep


def assert_newest_export_is_always_the_best_so_far(run: Run) -> None:
    exported_by_version = {
        os.path.basename(call.exported): call for call in run.calls if call.exported
    }
    for i, call in enumerate(run.calls):
        best_loss = min(float(c.eval_result["loss"]) for c in run.calls[: i + 1])
        newest = exported_by_version[call.versions_after[-1]]
        assert float(newest.eval_result["loss"]) == best_loss


def assert_records_match_and_improve(run: Run) -> None:
    calls_by_version = {
        os.path.basename(call.exported): call for call in run.calls if call.exported
    }
    losses = []
    for version in version_names(run.export_dir):
        record = read_record(os.path.join(run.export_dir, version))
        call = calls_by_version[version]
        assert record["global_step"] == int(call.eval_result["global_step"])
        assert record["checkpoint_path"] == call.checkpoint_path
        assert record["metrics"]["loss"] == pytest.approx(float(call.eval_result["loss"]))
        losses.append(record["metrics"]["loss"])
    # Strictly: a tie is no improvement.
    assert all(older > newer for older, newer in zip(losses, losses[1:])), losses


RUN_CHECKS = [
    assert_newest_export_serves,
    assert_never_more_than_exports_to_keep,
    assert_newest_export_is_always_the_best_so_far,
    assert_records_match_and_improve,
]


@pytest.mark.parametrize("check", RUN_CHECKS, ids=lambda check: check.__name__[len("assert_") :])
def test_train_and_evaluate_on_local_disk(local_run: Run, check) -> None:
    check(local_run)


def test_on_ram_filesystem_each_empty_version_is_detected_and_a_warning_says_why(
    ram_dir: str, caplog
) -> None:
    """TensorFlow's `ram://` renames a directory without its files: no export can exist there.

    Estimator's publishing rename leaves an empty version each time; the exporter
    must notice, remove it, say why, and keep the evaluator running.
    """
    spy = ExportSpy(
        BestExporter(
            name=EXPORTER_NAME,
            serving_input_receiver_fn=support.serving_input_receiver_fn,
            exports_to_keep=RAM_RUN["exports_to_keep"],
        )
    )
    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        support.train_and_evaluate(
            support.make_classifier(ram_dir), [spy], max_steps=RAM_RUN["max_steps"]
        )

    assert len(spy.calls) >= 2  # The evaluator went on after the first lost export.
    assert all(call.exported is None for call in spy.calls)
    # What is left of a version there (ram:// cannot rename it away either) holds nothing.
    export_dir = os.path.join(ram_dir, "export", EXPORTER_NAME)
    for version in version_names(export_dir):
        assert tf.io.gfile.listdir(os.path.join(export_dir, version)) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "lacks saved_model.pb" in w]) == len(spy.calls), warnings
    assert all("rename directories with their contents" in w for w in warnings if "lacks" in w)


def test_first_evaluation_is_exported_although_already_in_the_events_file(local_run: Run) -> None:
    first = local_run.calls[0]
    step = int(first.eval_result["global_step"])
    # The evaluator writes the result before it calls the exporters: the trap
    # of tensorflow/estimator PRs #20, #35 and #41.
    assert step in first.steps_in_events_before
    assert first.exported is not None
    assert os.path.basename(first.exported) in first.versions_after


# ----------------------------------------------------------------------------
# Direct export() calls with the real estimator, on a copy of the shared run.


def last_call(run: Run) -> ExportCall:
    return run.calls[-1]


def checkpoint_in(run: Run, call: ExportCall) -> str:
    """The copy's own path of the checkpoint that `call` evaluated."""
    return os.path.join(run.model_dir, os.path.basename(call.checkpoint_path))


def with_loss(eval_result: Dict[str, Any], loss: float) -> Dict[str, Any]:
    return dict(eval_result, loss=np.float32(loss))


BOTH_EXPORTERS_RESTART = [
    pytest.param(BestExporter, id="best_exporter"),
    pytest.param(
        tf.estimator.BestExporter,
        marks=pytest.mark.xfail(
            strict=True,
            reason="tensorflow/tensorflow#47396: after a restart the original exports the first "
            "evaluation unconditionally and prunes the real best",
        ),
        id="tf.estimator.BestExporter",
    ),
]


@pytest.mark.parametrize("exporter_class", BOTH_EXPORTERS_RESTART)
def test_restart_with_worse_result_does_not_export(copied_run: Run, exporter_class) -> None:
    run = copied_run
    best_version = version_names(run.export_dir)[-1]
    best_loss = read_record(os.path.join(run.export_dir, best_version))["metrics"]["loss"]
    evaluated = last_call(run)
    exporter = exporter_class(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=support.serving_input_receiver_fn,
        exports_to_keep=1,
    )

    exported = exporter.export(
        support.make_classifier(run.model_dir),
        run.export_dir,
        checkpoint_in(run, evaluated),
        with_loss(evaluated.eval_result, best_loss + 1.0),
        False,
    )

    assert exported is None
    assert version_names(run.export_dir) == [best_version]


BOTH_EXPORTERS_DELETED_CHECKPOINT = [
    pytest.param(BestExporter, id="best_exporter"),
    pytest.param(
        tf.estimator.BestExporter,
        marks=pytest.mark.xfail(
            strict=True,
            raises=ValueError,
            reason="the original passes the deleted checkpoint to export_saved_model, which "
            "raises 'The passed save_path is not a valid checkpoint' and kills the evaluator",
        ),
        id="tf.estimator.BestExporter",
    ),
]


@pytest.mark.parametrize("exporter_class", BOTH_EXPORTERS_DELETED_CHECKPOINT)
def test_checkpoint_deleted_before_export_is_logged_not_raised(
    copied_run: Run, exporter_class, caplog
) -> None:
    run = copied_run
    entries_before = sorted(os.listdir(run.export_dir))
    evaluated = last_call(run)
    checkpoint = checkpoint_in(run, evaluated)
    # What the chief's keep_checkpoint_max does to a checkpoint the evaluator fell behind on.
    checkpoint_files = glob.glob(checkpoint + ".*")
    assert checkpoint_files
    for path in checkpoint_files:
        os.remove(path)
    better = with_loss(evaluated.eval_result, float(evaluated.eval_result["loss"]) / 2)
    exporter = exporter_class(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=support.serving_input_receiver_fn,
        exports_to_keep=5,
    )

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        exported = exporter.export(
            support.make_classifier(run.model_dir), run.export_dir, checkpoint, better, False
        )

    assert exported is None
    assert sorted(os.listdir(run.export_dir)) == entries_before  # No version, no temp dir.
    assert any(
        record.levelno == logging.WARNING and checkpoint in record.getMessage()
        for record in caplog.records
    ), caplog.text


BOTH_EXPORTERS_MISSING_ASSET = [
    pytest.param(BestExporter, id="best_exporter"),
    pytest.param(
        tf.estimator.BestExporter,
        marks=pytest.mark.xfail(
            strict=True,
            raises=tf.errors.NotFoundError,
            reason="the original surfaces a bare NotFoundError from a copy inside Estimator",
        ),
        id="tf.estimator.BestExporter",
    ),
]


@pytest.mark.parametrize("exporter_class", BOTH_EXPORTERS_MISSING_ASSET)
def test_missing_assets_extra_source_stops_the_first_export_naming_it(
    copied_run: Run, exporter_class
) -> None:
    run = copied_run
    entries_before = sorted(os.listdir(run.export_dir))
    evaluated = last_call(run)
    missing = os.path.join(run.model_dir, "vocab-that-was-never-written.txt")
    # Accepted at construction, as for the original: only the export can tell.
    exporter = exporter_class(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=support.serving_input_receiver_fn,
        assets_extra={"vocab.txt": missing},
    )
    better = with_loss(evaluated.eval_result, float(evaluated.eval_result["loss"]) / 2)

    with pytest.raises(ValueError, match=re.escape(f"source file {missing!r} (for 'vocab.txt')")):
        exporter.export(
            support.make_classifier(run.model_dir),
            run.export_dir,
            checkpoint_in(run, evaluated),
            better,
            False,
        )

    assert sorted(os.listdir(run.export_dir)) == entries_before  # No version, no temp dir.


# ----------------------------------------------------------------------------
# Issue 8: transient errors at a restart and colliding writers, with the real estimator.


def test_restart_during_an_outage_exports_nothing_and_keeps_the_best(
    copied_run: Run, monkeypatch
) -> None:
    run = copied_run
    before = version_names(run.export_dir)
    evaluated = last_call(run)
    best_loss = read_record(os.path.join(run.export_dir, before[-1]))["metrics"]["loss"]
    exporter = BestExporter(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=support.serving_input_receiver_fn,
        exports_to_keep=1,
    )
    estimator = support.make_classifier(run.model_dir)
    checkpoint = checkpoint_in(run, evaluated)
    faults = FaultyGfile(monkeypatch)
    faults.fail("listdir", path_contains=run.export_dir)

    worse = with_loss(evaluated.eval_result, best_loss + 1.0)
    assert exporter.export(estimator, run.export_dir, checkpoint, worse, False) is None
    faults.clear()
    assert version_names(run.export_dir) == before  # Nothing pruned on a failed listing.

    assert exporter.export(estimator, run.export_dir, checkpoint, worse, False) is None
    assert version_names(run.export_dir) == before[-1:]  # Retention as configured.
    better = with_loss(evaluated.eval_result, best_loss / 2)
    exported = exporter.export(estimator, run.export_dir, checkpoint, better, False)
    assert version_names(run.export_dir) == [os.path.basename(exported.decode())]
    assert_newest_export_serves(run)


def _colliding_exports(reason: str, raises: type):
    return [
        pytest.param(BestExporter, id="best_exporter"),
        pytest.param(
            tf.estimator.BestExporter,
            marks=pytest.mark.xfail(strict=True, raises=raises, reason=reason),
            id="tf.estimator.BestExporter",
        ),
    ]


@pytest.mark.parametrize(
    "exporter_class",
    _colliding_exports(
        "AlreadyExistsError from the publishing rename kills the evaluator",
        tf.errors.AlreadyExistsError,
    ),
)
def test_another_evaluator_publishing_the_same_version_is_survived(
    copied_run: Run, exporter_class, monkeypatch, caplog
) -> None:
    run = copied_run
    before = version_names(run.export_dir)
    evaluated = last_call(run)
    rename = tf.compat.v1.gfile.Rename

    def zombie_publishes_first(source, destination, overwrite=False):
        # A second evaluator on the same model_dir picked the same second and
        # renamed its temp dir into place a moment earlier.
        destination = tf.compat.as_str(destination)
        if os.path.basename(destination).isdigit():
            tf.io.gfile.makedirs(destination)
            with tf.io.gfile.GFile(os.path.join(destination, "saved_model.pb"), "w") as f:
                f.write("the other evaluator's model")
        rename(source, destination, overwrite)

    monkeypatch.setattr(tf.compat.v1.gfile, "Rename", zombie_publishes_first)
    exporter = exporter_class(
        name=EXPORTER_NAME, serving_input_receiver_fn=support.serving_input_receiver_fn
    )
    better = with_loss(evaluated.eval_result, float(evaluated.eval_result["loss"]) / 2)

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        exported = exporter.export(
            support.make_classifier(run.model_dir),
            run.export_dir,
            checkpoint_in(run, evaluated),
            better,
            False,
        )

    assert exported is None
    assert set(before) < set(version_names(run.export_dir))  # Nothing of ours deleted.
    assert "AlreadyExistsError" in caplog.text


@pytest.mark.parametrize(
    "exporter_class",
    _colliding_exports(
        "SavedModelBuilder's AssertionError on a used temp dir kills the evaluator",
        AssertionError,
    ),
)
def test_another_evaluator_writing_the_same_temp_dir_is_survived(
    copied_run: Run, exporter_class, caplog
) -> None:
    run = copied_run
    before = version_names(run.export_dir)
    evaluated = last_call(run)
    # The other evaluator is writing temp-<second> for every second to come.
    now = int(time.time())
    for timestamp in range(now, now + 300):
        path = os.path.join(run.export_dir, f"temp-{timestamp}", "saved_model.pb")
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write("being written by the other evaluator")
    exporter = exporter_class(
        name=EXPORTER_NAME, serving_input_receiver_fn=support.serving_input_receiver_fn
    )
    better = with_loss(evaluated.eval_result, float(evaluated.eval_result["loss"]) / 2)

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        exported = exporter.export(
            support.make_classifier(run.model_dir),
            run.export_dir,
            checkpoint_in(run, evaluated),
            better,
            False,
        )

    assert exported is None
    assert version_names(run.export_dir) == before
    assert "already exists" in caplog.text
