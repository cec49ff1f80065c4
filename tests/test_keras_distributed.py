"""BestExportCallback under tf.distribute strategies, in real processes.

Each test runs tests/keras_worker.py: under MirroredStrategy with two replicas on
two logical CPUs, and as a 2-worker MultiWorkerMirroredStrategy TF_CONFIG cluster
on 127.0.0.1. The validation loss is scripted (0.5, 0.6, 0.4, 0.3), so exactly
epochs 1, 3 and 4 must be exported, once each. Every wait is bounded and every
process is killed in teardown.
"""

import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, List

import keras_support
import pytest
import tensorflow as tf

from best_exporter import read_export_records
from best_exporter.core import layout

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_worker.py")
TIMEOUT_SECS = 300
EXPORTED_EPOCHS = [1, 3, 4]


def _start(args: List[str], log_path: str, tf_config: Dict[str, Any] = None) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    log = open(log_path, "w")  # noqa: SIM115  Closed when the process is collected.
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=log, text=True, env=env
    )


@pytest.fixture
def processes():
    """Started processes; killed after the test whatever happened."""
    started: List[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def _result(process: subprocess.Popen, log_path: str) -> Dict[str, Any]:
    try:
        stdout, _ = process.communicate(timeout=TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{log_path} did not finish in {TIMEOUT_SECS} s:\n{_tail(log_path)}")
    assert process.returncode == 0, _tail(log_path)
    return json.loads(stdout.strip().splitlines()[-1])


def _tail(log_path: str, lines: int = 40) -> str:
    with open(log_path, encoding="utf-8", errors="replace") as f:
        return "\n".join(f.read().splitlines()[-lines:])


def _exported_lines(result: Dict[str, Any]) -> List[str]:
    return [line for line in result["decisions"] if ": exported step" in line]


def _assert_exported_once_each(export_dir: str) -> None:
    exports = read_export_records(export_dir)
    assert [e.record["epoch"] for e in exports] == EXPORTED_EPOCHS
    assert [e.record["metrics"]["val_loss"] for e in exports] == [0.5, 0.4, 0.3]
    versions = [n for n in tf.io.gfile.listdir(export_dir) if layout.parse_version(n)]
    assert sorted(versions) == [str(e.version) for e in exports]
    # One event file per export in the TensorBoard run of exported bests: written once.
    events = tf.io.gfile.glob(os.path.join(export_dir, "events.out.tfevents.*"))
    assert len(events) == len(exports)
    for export in exports:
        assert layout.missing_export_parts(export.path) == []
        loaded = tf.saved_model.load(export.path)
        signature = loaded.signatures["serving_default"]
        (input_name,) = signature.structured_input_signature[1]
        (scores,) = signature(**{input_name: tf.constant([[0.5, -0.5]])}).values()
        assert scores.shape == (1, 1)


@pytest.mark.e2e
def test_mirrored_strategy_writes_each_export_once(tmp_path, processes) -> None:
    export_dir = str(tmp_path / "export" / "best_exporter")
    log_path = str(tmp_path / "mirrored.log")
    processes.append(_start(["--strategy=mirrored", f"--export_dir={export_dir}"], log_path))

    result = _result(processes[0], log_path)

    assert result["replicas"] == 2 and result["chief"]
    assert len(_exported_lines(result)) == len(EXPORTED_EPOCHS)
    _assert_exported_once_each(export_dir)


def _free_ports(n: int) -> List[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.cluster
@pytest.mark.xfail(
    keras_support.KERAS_3,
    strict=True,
    reason="keras-team/keras#20585: Keras 3's fit fails under MultiWorkerMirroredStrategy "
    "before any callback runs (ValueError converting a PerReplica in _maybe_symbolic_build)",
)
def test_multi_worker_cluster_lands_only_the_chiefs_exports(tmp_path, processes) -> None:
    export_dir = str(tmp_path / "export" / "best_exporter")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    logs = [str(tmp_path / f"worker{index}.log") for index in range(2)]
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        args = ["--strategy=multi_worker", f"--export_dir={export_dir}"]
        processes.append(_start(args, logs[index], tf_config))

    chief, other = (_result(process, log) for process, log in zip(processes, logs))

    assert chief["chief"] and not other["chief"]
    assert chief["replicas"] == other["replicas"] == 2
    assert len(_exported_lines(chief)) == len(EXPORTED_EPOCHS)
    assert _exported_lines(other) == []
    assert other["best_export_path"] is None
    _assert_exported_once_each(export_dir)
    # The non-chief worker's copies went to scratch directories, since removed.
    assert not [n for n in os.listdir(tmp_path / "export") if n != "best_exporter"]
