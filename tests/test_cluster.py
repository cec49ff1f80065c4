"""BestExporter on a real TF_CONFIG cluster: one ps, one chief, one worker, one evaluator.

Each test starts four processes on 127.0.0.1 that run `tf.estimator.train_and_evaluate`
(examples/distributed/trainer.py, launched by examples/distributed/launch_local_cluster.py,
so the example is what is tested), waits until they finish, and checks what the evaluator
exported to the shared model_dir. Every wait is bounded, and every process is killed in
teardown whatever happened; on failure the tail of each task's log is printed.

"Every process exits cleanly" means: the chief, the worker and the evaluator exit with
status 0 by themselves; the ps, which `train_and_evaluate` never lets finish, was still
serving when they had finished and exited with status 0 on SIGTERM.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np
import pytest
import support
import tensorflow as tf

from best_exporter import ExportRecord, read_export_records

pytestmark = pytest.mark.cluster

EXAMPLE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "distributed"
)
LAUNCHER_PATH = os.path.join(EXAMPLE_DIR, "launch_local_cluster.py")


def _load_launcher():
    spec = importlib.util.spec_from_file_location("launch_local_cluster", LAUNCHER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()

# A few hundred steps at ~40 steps/s with a checkpoint every 40: about ten
# evaluations, most of them exported, in about 15 s of training.
MAX_STEPS = 400
EXPORTS_TO_KEEP = 3
TRAINER_ARGS = [
    f"--max_steps={MAX_STEPS}",
    "--save_checkpoints_steps=40",
    f"--exports_to_keep={EXPORTS_TO_KEEP}",
    "--throttle_secs=1",
    "--step_delay_secs=0.05",
]
# The slow evaluator evaluates every 4 s or so: a longer run, for a few evaluations.
SLOW_EVAL_MAX_STEPS = 600
# Seconds for one whole cluster run; about 25 s on an idle 2-core machine.
RUN_TIMEOUT_SECS = 180

# What BestExporter logs when the evaluated checkpoint is gone before it is exported.
CHECKPOINT_LOST_WARNING = re.compile(
    r"not exported step \d+: .* but exporting checkpoint \S+ failed: the checkpoint "
    r"(no longer exists|was deleted while exporting)"
)
RESTORED_BEST = "restored the best result from"
EVALUATION_EXIT = re.compile(r"Exiting evaluation, global_step=(\d+) >= train max_steps")


@pytest.fixture
def make_cluster(tmp_path):
    """Makes `LocalCluster`s in tmp_path; kills their processes and prints their logs after."""
    clusters = []

    def make(*extra_args: str):
        cluster = launcher.LocalCluster(
            model_dir=str(tmp_path / "model"),
            log_dir=str(tmp_path / "logs"),
            trainer_args=[*TRAINER_ARGS, *extra_args],
        )
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.kill_all()
        # Captured, so shown only when the test failed.
        print(cluster.log_tails(lines=40))


def export_dir_of(model_dir: str) -> str:
    return os.path.join(model_dir, "export", "best_exporter")


def loss_of(export: ExportRecord) -> float:
    return export.record["metrics"]["loss"]


def assert_exports_are_sound(export_dir: str) -> List[ExportRecord]:
    """Checks what a finished run left in its export directory; returns the versions.

    1 to EXPORTS_TO_KEEP versions, each a whole SavedModel with its record, the
    recorded loss falling in version order, and no temp dir older than the newest
    version (an interrupted export newer than it may remain until the next one).
    """
    exports = read_export_records(export_dir)
    assert 1 <= len(exports) <= EXPORTS_TO_KEEP, exports
    for export in exports:
        assert tf.io.gfile.exists(os.path.join(export.path, "saved_model.pb")), export.path
        assert tf.io.gfile.exists(os.path.join(export.path, "variables", "variables.index"))
        assert export.record is not None, f"{export.path} has no eval_result.json"
        assert export.record["global_step"] is not None
    losses = [loss_of(export) for export in exports]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    newest = exports[-1].version
    stale = [
        name
        for name in os.listdir(export_dir)
        if name.startswith("temp-") and int(name[5:]) < newest
    ]
    assert not stale, os.listdir(export_dir)
    return exports


def assert_serves(export: ExportRecord) -> None:
    """The export loads with tf.saved_model.load and classifies clear-cut examples right.

    The trainer's label is `(x > 0) XOR (color in {red, blue, purple})`.
    """
    xs, colors = [0.9, -0.9, 0.9, -0.9], [b"green", b"green", b"red", b"red"]
    scores = support.serve(export.path, support.serialized_examples(xs, colors))
    assert scores.shape == (4, 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    assert export.record["metrics"]["accuracy"] > 0.8, export.record
    np.testing.assert_array_equal(scores.argmax(axis=1), [1, 0, 0, 1])


def read_log(log_dir: str, task: str) -> str:
    with open(os.path.join(log_dir, f"{task}.log"), encoding="utf-8", errors="replace") as f:
        return f.read()


def log_tails(log_dir: str, lines: int = 40) -> str:
    return "\n".join(
        f"----- {task}\n" + "\n".join(read_log(log_dir, task).splitlines()[-lines:])
        for task in launcher.TASKS
        if os.path.exists(os.path.join(log_dir, f"{task}.log"))
    )


def assert_evaluator_saw_the_final_checkpoint(
    evaluator_log: str, max_steps: int = MAX_STEPS
) -> None:
    """The evaluator exits only after evaluating a checkpoint at or beyond max_steps."""
    exits = EVALUATION_EXIT.findall(evaluator_log)
    assert (
        exits and int(exits[-1]) >= max_steps
    ), "the evaluator did not evaluate the final checkpoint"


def assert_ps_stopped_on_request(log_dir: str) -> None:
    assert "Parameter server: received SIGTERM, shutting down" in read_log(log_dir, "ps")


def test_cluster_launched_with_one_command_exports_improving_models_that_serve(tmp_path):
    model_dir, log_dir = str(tmp_path / "model"), str(tmp_path / "logs")
    command = [
        sys.executable,
        LAUNCHER_PATH,
        f"--model_dir={model_dir}",
        f"--log_dir={log_dir}",
        f"--timeout={RUN_TIMEOUT_SECS}",
        *TRAINER_ARGS,
    ]
    # A session of its own, so that the launcher and its tasks can be killed together.
    launcher_process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = launcher_process.communicate(timeout=RUN_TIMEOUT_SECS + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the launcher did not stop by itself\n{log_tails(log_dir)}")
    finally:
        if launcher_process.poll() is None:
            os.killpg(launcher_process.pid, signal.SIGKILL)
            launcher_process.wait()
    output = output.decode(errors="replace")

    assert launcher_process.returncode == 0, output
    assert "All tasks finished cleanly" in output
    assert_ps_stopped_on_request(log_dir)
    assert_evaluator_saw_the_final_checkpoint(read_log(log_dir, "evaluator"))
    exports = assert_exports_are_sound(export_dir_of(model_dir))
    assert_serves(exports[-1])


def temp_dirs(export_dir: str) -> List[str]:
    return [name for name in os.listdir(export_dir) if name.startswith("temp-")]


def test_evaluator_killed_after_its_first_export_never_exports_a_worse_model(make_cluster):
    cluster = make_cluster()
    export_dir = export_dir_of(cluster.model_dir)
    before_kill: Dict[int, ExportRecord] = {}
    left_behind: List[str] = []

    def kill_evaluator_after_first_export(cluster, deadline: float) -> None:
        cluster.wait_until(lambda: read_export_records(export_dir), deadline, "the first export")
        # Preferably in the middle of the next export, which leaves a temp-* dir.
        give_up = min(deadline, time.monotonic() + 20)
        while not temp_dirs(export_dir) and time.monotonic() < give_up:
            time.sleep(0.005)
        assert cluster.kill("evaluator") == -signal.SIGKILL
        before_kill.clear()
        before_kill.update({export.version: export for export in read_export_records(export_dir)})
        left_behind[:] = temp_dirs(export_dir)
        cluster.start_task("evaluator")

    cluster.run(RUN_TIMEOUT_SECS, during=kill_evaluator_after_first_export)

    assert_ps_stopped_on_request(cluster.log_dir)
    after_restart_log = read_log(cluster.log_dir, "evaluator").split("==> TF_CONFIG=")[-1]
    assert RESTORED_BEST in after_restart_log
    assert_evaluator_saw_the_final_checkpoint(after_restart_log)
    exports = assert_exports_are_sound(export_dir)
    best_before_kill = min(loss_of(export) for export in before_kill.values())
    exported_after_restart = [e for e in exports if e.version not in before_kill]
    assert exported_after_restart, "the restarted evaluator exported nothing"
    for export in exported_after_restart:
        assert loss_of(export) < best_before_kill, (export, before_kill)
    # What the killed export left is older than the exports after the restart.
    assert not set(left_behind) & set(temp_dirs(export_dir)), (left_behind, os.listdir(export_dir))
    print(f"temp dirs left by the killed evaluator: {left_behind}")
    assert_serves(exports[-1])


@pytest.mark.parametrize(
    "exporter",
    [
        "best_exporter",
        pytest.param(
            "tf.estimator",
            marks=pytest.mark.xfail(
                raises=launcher.ClusterError,
                strict=True,
                reason="docs/design.md: the original's export_saved_model raises ValueError on the "
                "deleted checkpoint and kills the evaluator",
            ),
        ),
    ],
)
def test_checkpoint_deleted_by_the_chief_before_export_is_skipped_with_a_warning(
    make_cluster, exporter
):
    # The chief keeps 2 checkpoints and writes one about every second; each
    # evaluation takes 3 s longer than it needs, so by export time the chief has
    # deleted the evaluated checkpoint. Only the final checkpoint outlives its
    # evaluation.
    cluster = make_cluster(
        f"--exporter={exporter}",
        "--keep_checkpoint_max=2",
        "--slow_eval_secs=3",
        f"--max_steps={SLOW_EVAL_MAX_STEPS}",
    )

    cluster.run(RUN_TIMEOUT_SECS)

    evaluator_log = read_log(cluster.log_dir, "evaluator")
    assert CHECKPOINT_LOST_WARNING.search(evaluator_log), "no checkpoint was deleted before export"
    assert_evaluator_saw_the_final_checkpoint(evaluator_log, max_steps=SLOW_EVAL_MAX_STEPS)
    assert_ps_stopped_on_request(cluster.log_dir)
    exports = assert_exports_are_sound(export_dir_of(cluster.model_dir))
    assert_serves(exports[-1])
