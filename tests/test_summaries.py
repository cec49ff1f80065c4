"""Tests of best_exporter.summaries and of the TensorBoard run each export writes."""

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Dict, Iterator, List

import pytest
import support
import tensorflow as tf

from best_exporter import BestExporter, read_export_records
from best_exporter.core import history, layout, summaries


def _exporter(**kwargs) -> BestExporter:
    return BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub, **kwargs)


def _export_dir(model_dir: str) -> str:
    return os.path.join(model_dir, "export", "best_exporter")


def _event_files(export_dir: str) -> List[str]:
    return sorted(tf.io.gfile.glob(os.path.join(export_dir, "events.out.tfevents.*")))


def _scalars_by_step(export_dir: str) -> Dict[int, Dict[str, float]]:
    """What TensorFlow's own reader finds in the event files: step -> tag -> value."""
    found: Dict[int, Dict[str, float]] = {}
    for path in _event_files(export_dir):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(event.step, {})[value.tag] = value.simple_value
    return found


def test_write_scalars_writes_an_event_file_tensorflow_reads(any_dir):
    path = summaries.write_scalars(any_dir, 120, {"loss": 0.25, "auc": 0.75}, wall_time=1e9)

    assert os.path.basename(path).startswith("events.out.tfevents.1000000000.")
    assert path.endswith(summaries.FILE_SUFFIX)
    events = list(tf.compat.v1.train.summary_iterator(path))
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 120 and events[1].wall_time == 1e9
    assert {v.tag: v.simple_value for v in events[1].summary.value} == {"loss": 0.25, "auc": 0.75}


def test_write_scalars_makes_a_new_file_per_call_readable_by_the_history_reader(any_dir):
    for step, loss in [(10, 0.5), (20, 0.25)]:
        summaries.write_scalars(any_dir, step, {"loss": loss})

    assert len(_event_files(any_dir)) == 2
    assert list(history.evaluations(_event_files(any_dir))) == [
        (10, {"loss": 0.5}),
        (20, {"loss": 0.25}),
    ]


def test_each_export_writes_its_metrics_at_its_step(any_dir):
    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)
    export_dir = _export_dir(any_dir)
    for step, loss in [(10, 0.5), (20, 0.7), (30, 0.25)]:
        result = support.eval_result(step, loss=loss, accuracy=0.5)
        exporter.export(estimator, export_dir, None, result, False)

    assert _scalars_by_step(export_dir) == {
        10: {"loss": 0.5, "accuracy": 0.5},
        30: {"loss": 0.25, "accuracy": 0.5},
    }


def test_write_best_summaries_false_writes_no_event_file(any_dir):
    exporter = _exporter(write_best_summaries=False)

    assert exporter.export(
        support.FakeEstimator(any_dir),
        _export_dir(any_dir),
        None,
        support.eval_result(1, loss=1.0),
        False,
    )

    assert _event_files(_export_dir(any_dir)) == []


def test_write_best_summaries_is_keyword_only_and_checked():
    with pytest.raises(TypeError):
        BestExporter(
            "best", support.serving_input_receiver_fn_stub, None, None, None, False, 5, False
        )
    with pytest.raises(ValueError, match=r"Received: write_best_summaries='no'"):
        _exporter(write_best_summaries="no")


def test_a_summary_that_cannot_be_written_is_logged_and_the_export_kept(
    any_dir, monkeypatch, caplog
):
    def fail(*args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, "read-only bucket")

    monkeypatch.setattr(summaries, "write_scalars", fail)
    exporter = _exporter()

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        exported = exporter.export(
            support.FakeEstimator(any_dir),
            _export_dir(any_dir),
            None,
            support.eval_result(7, loss=0.5),
            False,
        )

    assert exported is not None and tf.io.gfile.exists(
        os.path.join(exported.decode(), "saved_model.pb")
    )
    assert "could not write its TensorBoard summary" in caplog.text
    assert "read-only bucket" in caplog.text


def test_retention_leaves_the_event_files_alone(any_dir):
    exporter = _exporter(exports_to_keep=1)
    estimator = support.FakeEstimator(any_dir)
    export_dir = _export_dir(any_dir)
    for step, loss in [(10, 0.5), (20, 0.4), (30, 0.3)]:
        exporter.export(estimator, export_dir, None, support.eval_result(step, loss=loss), False)

    assert sorted(_scalars_by_step(export_dir)) == [10, 20, 30]
    assert list(layout.list_export_dir(export_dir).versions) == [1700000002]
    assert [e.version for e in read_export_records(export_dir)] == [1700000002]


# ----------------------------------------------------------------------------
# A real TensorBoard over a real Estimator's model_dir.


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir: str) -> Iterator[str]:
    """Runs `tensorboard --logdir` on 127.0.0.1 and yields its URL; stops it afterwards."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--reload_interval=1",
            "--load_fast=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _poll(fetch, done, timeout: float = 120.0):
    """Calls `fetch` until `done(result)`; TensorBoard starts and loads in the background."""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        try:
            result = fetch()
            if done(result):
                return result
        except OSError:
            pass  # Not listening yet.
        time.sleep(0.5)
    return result


@pytest.mark.e2e
def test_tensorboard_shows_the_exported_bests_as_a_run_at_the_exported_steps(tmp_path):
    model_dir = str(tmp_path / "model")
    exporter = BestExporter(
        serving_input_receiver_fn=support.serving_input_receiver_fn, exports_to_keep=None
    )
    support.train_and_evaluate(support.make_classifier(model_dir), [exporter], max_steps=100)
    exported_steps = sorted(
        e.record["global_step"] for e in read_export_records(_export_dir(model_dir))
    )
    assert exported_steps, "nothing was exported"
    run = "export/best_exporter"

    with tensorboard(model_dir) as url:
        runs = _poll(lambda: _get_json(f"{url}/data/runs"), lambda r: run in r and "eval" in r)
        query = urllib.parse.urlencode({"run": run, "tag": "loss"})
        points = _poll(
            lambda: _get_json(f"{url}/data/plugin/scalars/scalars?{query}"),
            lambda p: len(p) >= len(exported_steps),
        )

    assert run in runs and "eval" in runs
    assert [step for _, step, _ in points] == exported_steps
    # The same values the eval run holds at those steps: one chart overlays both.
    evaluated = dict(history.evaluations(tf.io.gfile.glob(f"{model_dir}/eval/*.tfevents.*")))
    assert [value for _, _, value in points] == pytest.approx(
        [evaluated[step]["loss"] for step in exported_steps]
    )
