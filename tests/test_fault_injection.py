"""Fault injection: an evaluator SIGKILLed in the middle of its exports, over and over.

`test_evaluator_killed_at_every_step_of_its_exports_always_leaves_a_servable_best`
runs tests/fault_worker.py, an evaluator stand-in that exports real checkpoints of the
tiny classifier through `BestExporter`, once per cycle: each run is SIGKILLed, either by
itself at a chosen file operation of an export (the SavedModel write, the record copy,
the publishing rename, retention's rename and delete, ...) or by this test at a random
moment, and the next run continues the evaluations where the killed one stopped. After
every kill the export directory must hold what TensorFlow Serving can rely on:

* every 10-digit version directory is a whole SavedModel with its record;
* the recorded losses fall strictly in version order, over everything ever exported,
  across restarts, and only improvements of the eval sequence are ever exported;
* the best model exported so far is never deleted, and the newest version loads;
* leftovers of a killed export or deletion are gone once the next run has started.

The random kills use a seeded generator; the seed is printed, and FAULT_INJECTION_SEED
repeats a run's choices (not its timing, which no seed controls).

`test_retention_interrupted_mid_delete_never_leaves_a_version_without_its_model` shows
the same for retention alone, without processes, and that the original exporter, which
deletes versions in place, leaves half a version to serve.
"""

import contextlib
import dataclasses
import json
import math
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

import fault_worker
import numpy as np
import pytest
import support
import tensorflow as tf

import best_exporter
from best_exporter import BestExporter
from best_exporter.core import summaries

WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_worker.py")
# The worker imports the best_exporter this test imported, installed or not.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(best_exporter.__file__)))

# 100 checkpoints, one per evaluation of the sequence: a few seconds of training.
TRAIN_STEPS = 200
SAVE_CHECKPOINTS_STEPS = 2
# Evaluations per run that the chosen kill point has to come within. Every third
# evaluation of the sequence improves, so nine hold three improvements: at least two
# new exports, even when the first re-evaluates a version published before the kill.
MAX_CALLS_PER_RUN = 9
FINAL_RUN_CALLS = 8
# One run takes a few seconds; this only stops a hung worker.
RUN_TIMEOUT_SECS = 120


@dataclasses.dataclass(frozen=True)
class SelfKill:
    """The worker kills itself at `point`, HOOK:N:WHEN of fault_worker.KILL_HOOKS."""

    point: str


@dataclasses.dataclass(frozen=True)
class RandomKill:
    """This test kills the worker at a random moment (see `RandomKiller`)."""


@dataclasses.dataclass(frozen=True)
class NoKill:
    """The worker runs `calls` evaluations and exits."""

    calls: int


Plan = Union[SelfKill, RandomKill, NoKill]

# Deterministic kill points first at every step an export takes, then again with more
# exports on disk; random kills in between land wherever the timing puts them.
CYCLES: List[Plan] = [
    SelfKill("export_saved_model:1:after"),  # The first version, before retention.
    SelfKill("event:1:after"),  # Evaluated, not exported.
    SelfKill("write_saved_model:1:before"),  # temp-<ts> holds variables only.
    RandomKill(),
    SelfKill("publish:1:after"),  # Three versions on disk until retention runs.
    SelfKill("retire:1:after"),  # A version renamed to temp-<v>, not deleted.
    SelfKill("delete:1:partial"),  # A deletion cut short.
    RandomKill(),
    SelfKill("copy_asset:1:before"),  # SavedModel written, record not yet copied.
    SelfKill("copy_asset:1:after"),
    SelfKill("publish:1:before"),  # A whole export, never published.
    RandomKill(),
    SelfKill("retire:1:before"),
    SelfKill("delete:1:before"),
    SelfKill("delete:1:after"),
    RandomKill(),
    SelfKill("write_saved_model:1:after"),
    SelfKill("export_saved_model:1:before"),
    SelfKill("export:1:after"),  # Exported; the evaluator's progress not saved.
    RandomKill(),
    SelfKill("publish:2:after"),
    SelfKill("delete:2:partial"),
    RandomKill(),
    RandomKill(),
    NoKill(FINAL_RUN_CALLS),
]


@dataclasses.dataclass
class Run:
    """What one worker run did, from its stdout and exit status."""

    cycle: int
    plan: Plan
    log_path: str
    returncode: Optional[int] = None
    lines: List[str] = dataclasses.field(default_factory=list)
    killed_by_test: Optional[str] = None

    @property
    def self_kill(self) -> Optional[str]:
        kills = [line.split()[2] for line in self.lines if line.startswith("FAULT KILL ")]
        return kills[-1] if kills else None

    @property
    def completed_calls(self) -> int:
        return sum(line.startswith("FAULT END ") for line in self.lines)

    def describe(self) -> str:
        how = self.self_kill or self.killed_by_test or "not killed"
        return (
            f"cycle {self.cycle} ({self.plan}, {how}, exit {self.returncode}), log {self.log_path}"
        )

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])


@pytest.fixture(scope="module")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model_dir with a checkpoint every SAVE_CHECKPOINTS_STEPS steps, all kept."""
    model_dir = str(tmp_path_factory.mktemp("fault_injection") / "model")
    estimator = support.make_classifier(
        model_dir, save_checkpoints_steps=SAVE_CHECKPOINTS_STEPS, keep_checkpoint_max=1000
    )
    estimator.train(support.train_input_fn, max_steps=TRAIN_STEPS)
    return model_dir


class Worker:
    """One run of fault_worker.py, its stdout read line by line as it comes."""

    def __init__(self, model_dir: str, state: str, log_path: str, *args: str):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_PARENT, env.get("PYTHONPATH")]))
        self._log = open(log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, WORKER_PATH, f"--model_dir={model_dir}", f"--state={state}", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self.lines: "queue.Queue[Optional[Tuple[float, str]]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put((time.monotonic(), line.strip()))
        self.lines.put(None)  # End of output.

    def next_line(self, deadline: float) -> Optional[Tuple[float, str]]:
        """The next line, or None at the end of output; fails at the deadline."""
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the worker printed nothing until the timeout") from None

    def kill(self) -> bool:
        """Kills the process if it still runs; returns whether it did."""
        if self.process.poll() is not None:
            return False
        self.process.kill()
        return True

    def close(self, deadline: float) -> int:
        """Waits for the end of the process (killing it at the deadline) and its output."""
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait(timeout=30)
            raise AssertionError("the worker did not finish before the timeout") from None
        finally:
            self._reader.join(timeout=30)
            self._log.close()
        return self.process.returncode


class RandomKiller:
    """Chooses when to kill a run: after an anchor line, within the span that follows it.

    BEGIN starts an evaluation (events, restore, decision), WRITING starts the writing
    of a version (graph, variables, saved_model.pb, record, rename, retention), END
    follows a finished evaluation (state saved, the next one's event).
    """

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        # Seconds from WRITING to END seen so far: the writing and retention to aim at.
        self._writing_spans: List[float] = []

    def choose(self) -> Tuple[str, int, float]:
        anchor = self._rng.choice(["BEGIN", "WRITING", "WRITING", "END"])
        nth = self._rng.randint(1, 2)
        span = {"BEGIN": 0.3, "END": 0.05}.get(anchor) or (
            1.2 * float(np.median(self._writing_spans)) if self._writing_spans else 0.5
        )
        return anchor, nth, self._rng.uniform(0, span)

    def learn(self, timed_lines: List[Tuple[float, str]]) -> None:
        writing_started = None
        for at, line in timed_lines:
            if line.startswith("FAULT WRITING"):
                writing_started = at
            elif line.startswith("FAULT END") and writing_started is not None:
                self._writing_spans.append(at - writing_started)
                writing_started = None


def run_worker(
    model_dir: str,
    state: str,
    log_dir: str,
    cycle: int,
    plan: Plan,
    killer: RandomKiller,
    extra_args: Tuple[str, ...] = (),
) -> Run:
    """Runs the worker once according to `plan`; never leaves it running."""
    run = Run(cycle, plan, os.path.join(log_dir, f"cycle-{cycle:02d}.log"))
    args = [f"--max_calls={plan.calls if isinstance(plan, NoKill) else MAX_CALLS_PER_RUN}"]
    args += extra_args
    if isinstance(plan, SelfKill):
        args.append(f"--kill_at={plan.point}")
    anchor, nth, delay = killer.choose() if isinstance(plan, RandomKill) else (None, 0, 0.0)
    deadline = time.monotonic() + RUN_TIMEOUT_SECS
    worker = Worker(model_dir, state, run.log_path, *args)
    timed_lines: List[Tuple[float, str]] = []
    try:
        seen = 0
        while True:
            item = worker.next_line(deadline)
            if item is None:
                break
            timed_lines.append(item)
            if anchor and item[1].startswith(f"FAULT {anchor}"):
                seen += 1
                if seen == nth:
                    time.sleep(delay)
                    if worker.kill():
                        run.killed_by_test = f"{delay:.3f} s after {anchor} #{nth}"
                    anchor = None
        run.returncode = worker.close(deadline)
    finally:
        worker.kill()
        worker.close(time.monotonic() + 30)
    run.lines = [line for _, line in timed_lines]
    killer.learn(timed_lines)
    return run


# ----------------------------------------------------------------------------
# What the export directory must look like whenever a run has died.


def _version(name: str) -> Optional[int]:
    return int(name) if len(name) == 10 and name.isdigit() else None


def _temp_version(name: str) -> Optional[int]:
    return _version(name[5:]) if name.startswith("temp-") else None


def describe_tree(export_dir: str) -> str:
    if not os.path.isdir(export_dir):
        return f"{export_dir}: absent"
    lines = [f"{export_dir}:"]
    for name in sorted(os.listdir(export_dir)):
        path = os.path.join(export_dir, name)
        contents = []
        for directory, _, files in os.walk(path):
            contents += [os.path.relpath(os.path.join(directory, f), path) for f in files]
        lines.append(f"  {name}: {sorted(contents)}")
    return "\n".join(lines)


class ExportInvariants:
    """Checks the export directory after each run, remembering what earlier checks saw."""

    def __init__(self, model_dir: str, seed: int):
        self.export_dir = fault_worker.export_dir_of(model_dir)
        checkpoints = fault_worker.checkpoints_by_step(model_dir)
        self.position_of_step = {step: p for p, (step, _) in enumerate(checkpoints)}
        self.losses = fault_worker.eval_losses(len(checkpoints))
        self.improving = set(fault_worker.improving_positions(self.losses))
        self.seed = seed
        self.seen: Dict[int, float] = {}  # Every version ever seen -> its recorded loss.
        self.stale: Set[str] = set()  # Stale temp dirs at the last check.
        self.served: Optional[int] = None

    def check(self, run: Run) -> Dict[int, float]:
        """Asserts the invariants; returns the versions on disk and their losses."""
        context = f"seed {self.seed}, after {run.describe()}\n{describe_tree(self.export_dir)}"
        names = os.listdir(self.export_dir) if os.path.isdir(self.export_dir) else []
        on_disk = {}
        for name in names:
            version = _version(name)
            if version is not None:
                on_disk[version] = self._check_version(os.path.join(self.export_dir, name), context)
        losses = [on_disk[v] for v in sorted(on_disk)]
        assert all(a > b for a, b in zip(losses, losses[1:])), f"losses {losses}; {context}"

        for version, loss in on_disk.items():
            assert self.seen.setdefault(version, loss) == loss, f"{version} changed; {context}"
        ever = [self.seen[v] for v in sorted(self.seen)]
        assert all(a > b for a, b in zip(ever, ever[1:])), f"exported in order {ever}; {context}"
        if self.seen:
            best_version = max(self.seen)
            assert best_version in on_disk, f"the best, {best_version}, was deleted; {context}"
        # Retention runs after each export, so a kill leaves at most one version too many.
        assert len(on_disk) <= fault_worker.EXPORTS_TO_KEEP + 1, context

        newest = max(on_disk, default=None)
        temps = {name: _temp_version(name) for name in names}
        stale = {
            name
            for name, timestamp in temps.items()
            if timestamp is not None and newest is not None and timestamp < newest
        }
        if run.completed_calls:
            # The run's first export() restored the state and pruned what earlier runs left.
            assert not (self.stale & stale), f"left behind: {self.stale & stale}; {context}"
        self.stale = stale

        if newest is not None and newest != self.served:
            assert_serves(os.path.join(self.export_dir, str(newest)))
            self.served = newest
        return on_disk

    def _check_version(self, path: str, context: str) -> float:
        for part in ("saved_model.pb", "variables/variables.index"):
            assert os.path.isfile(os.path.join(path, part)), f"{path} lacks {part}; {context}"
        assert any(
            name.startswith("variables.data-")
            for name in os.listdir(os.path.join(path, "variables"))
        ), f"{path} lacks its variables' data; {context}"
        record_path = os.path.join(path, "assets.extra", "eval_result.json")
        assert os.path.isfile(record_path), f"{path} lacks its record; {context}"
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        step, loss = record["global_step"], record["metrics"]["loss"]
        position = self.position_of_step.get(step)
        assert position is not None, f"{path}: no evaluation at step {step}; {context}"
        assert loss == self.losses[position], f"{path}: {record}; {context}"
        assert position in self.improving, (
            f"{path}: step {step}, loss {loss} does not improve on the evaluations before it "
            f"{self.losses[:position]}; {context}"
        )
        assert record["checkpoint_path"].endswith(f"model.ckpt-{step}"), f"{record}; {context}"
        return loss


def assert_serves(export_dir: str) -> None:
    scores = support.serve(export_dir)
    assert scores.shape == (2, 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def fault_injection_seed() -> int:
    seed = os.environ.get("FAULT_INJECTION_SEED")
    return int(seed) if seed else random.SystemRandom().randrange(2**32)


@pytest.mark.e2e
def test_evaluator_killed_at_every_step_of_its_exports_always_leaves_a_servable_best(
    trained_model_dir: str, tmp_path
) -> None:
    seed = fault_injection_seed()
    print(f"FAULT_INJECTION_SEED={seed}")
    model_dir = trained_model_dir
    state = str(tmp_path / "state.json")
    log_dir = str(tmp_path / "logs")
    os.makedirs(log_dir)
    fault_worker.write_state(state, 0)
    invariants = ExportInvariants(model_dir, seed)
    killer = RandomKiller(seed)
    runs: List[Run] = []

    for cycle, plan in enumerate(CYCLES):
        run = run_worker(model_dir, state, log_dir, cycle, plan, killer)
        runs.append(run)
        print(run.describe())
        if run.returncode != -signal.SIGKILL:
            # Only a kill may stop a run early: an exception would stop an evaluator.
            assert (
                run.returncode == 0 and run.lines[-1:] and "DONE" in run.lines[-1]
            ), f"seed {seed}: {run.describe()}\n{run.log_tail()}"
        on_disk = invariants.check(run)

    final = runs[-1]
    assert final.returncode == 0, final.describe()
    # Where the runs stopped, the newest version is the best evaluation of all, and
    # nothing is left of any killed export or deletion.
    evaluated = fault_worker.read_state(state)
    best_loss = min(loss for loss in invariants.losses[:evaluated] if math.isfinite(loss))
    assert on_disk[max(on_disk)] == best_loss, describe_tree(invariants.export_dir)
    assert len(on_disk) <= fault_worker.EXPORTS_TO_KEEP
    assert not invariants.stale, describe_tree(invariants.export_dir)
    for version in on_disk:
        assert_serves(os.path.join(invariants.export_dir, str(version)))

    # The faults were injected where they were meant to be, and restarts restored the best.
    reached = {run.self_kill for run in runs}
    planned = {plan.point for plan in CYCLES if isinstance(plan, SelfKill)}
    assert planned <= reached, f"kill points never reached: {sorted(planned - reached)}"
    assert any("restored the best result from" in run.log_tail(10_000) for run in runs)


# ----------------------------------------------------------------------------
# Retention alone, interrupted in the middle of a delete.


class Interrupted(BaseException):
    """Stands for the kill: not an Exception, so that no handler swallows it."""


@contextlib.contextmanager
def deletes_interrupted_after_first_files(monkeypatch, root: str) -> Iterator[List[str]]:
    """Recursive deletes, of both APIs, remove a tree's top-level files and are interrupted.

    TensorFlow's DeleteRecursively removes a directory's files before its
    subdirectories, so that is where a killed delete leaves a version.
    """
    interrupted: List[str] = []

    rmtree = tf.io.gfile.rmtree

    def delete_interrupted(path) -> None:
        path = tf.compat.as_str_any(path)
        if not path.startswith(root):  # The exporter's own staging area on ram://.
            return rmtree(path)
        for name in os.listdir(path):
            if os.path.isfile(os.path.join(path, name)):
                os.remove(os.path.join(path, name))
        interrupted.append(path)
        raise Interrupted(path)

    with monkeypatch.context() as patch:
        patch.setattr(tf.io.gfile, "rmtree", delete_interrupted)
        patch.setattr(tf.compat.v1.gfile, "DeleteRecursively", delete_interrupted)
        yield interrupted


def _export(exporter, estimator, base: str, step: int, loss: float):
    return exporter.export(estimator, base, None, support.eval_result(step, loss=loss), False)


@pytest.mark.parametrize(
    "exporter_class",
    [
        pytest.param(BestExporter, id="best_exporter"),
        pytest.param(
            tf.estimator.BestExporter,
            id="tf.estimator",
            marks=pytest.mark.xfail(
                strict=True,
                reason="deletes old versions in place: an interrupted delete leaves a version "
                "without saved_model.pb, which TensorFlow Serving tries to load",
            ),
        ),
    ],
)
def test_retention_interrupted_mid_delete_never_leaves_a_version_without_its_model(
    exporter_class, tmp_path, monkeypatch
) -> None:
    estimator = support.FakeEstimator(str(tmp_path))
    base = os.path.join(str(tmp_path), "export", "best")
    exporter = exporter_class(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub, exports_to_keep=1
    )
    _export(exporter, estimator, base, step=10, loss=0.5)

    with deletes_interrupted_after_first_files(monkeypatch, str(tmp_path)) as interrupted:
        with contextlib.suppress(Interrupted):
            _export(exporter, estimator, base, step=20, loss=0.4)

    assert interrupted, "retention deleted nothing"
    versions = [name for name in os.listdir(base) if _version(name) is not None]
    assert versions, os.listdir(base)
    for name in versions:
        assert os.path.isfile(os.path.join(base, name, "saved_model.pb")), describe_tree(base)

    # The next export cleans up what the interrupted delete left.
    _export(exporter, estimator, base, step=30, loss=0.3)
    # The TensorBoard event files of the exported bests are not versions: they stay.
    left = [n for n in os.listdir(base) if not n.endswith(summaries.FILE_SUFFIX)]
    assert sorted(left) == [str(max(int(v) for v in left))]


# ----------------------------------------------------------------------------
# The same on s3://, where publishing and deleting go object by object.

# Self-kills inside publish.py's object moves and deletions, between random kills.
S3_CYCLES: List[Plan] = [
    SelfKill("move:1:after"),  # The record is in the version, nothing else.
    SelfKill("publish:1:after"),  # Estimator's rename inside the staging dir is done.
    RandomKill(),
    SelfKill("move:3:after"),  # All but saved_model.pb moved.
    SelfKill("remove:1:after"),  # Retention removed saved_model.pb, nothing else.
    RandomKill(),
    SelfKill("remove:2:after"),
    RandomKill(),
    NoKill(FINAL_RUN_CALLS),
]
COMPLETE_PARTS = {"saved_model.pb", "variables/variables.index", "assets.extra/eval_result.json"}


def files_under(directory: str) -> List[str]:
    found = []
    for parent, _, names in tf.io.gfile.walk(directory):
        relative = os.path.relpath(parent.rstrip("/"), directory)
        found += [name if relative == "." else f"{relative}/{name}" for name in names]
    return sorted(found)


def complete_versions_on_bucket(export_dir: str, losses: List[float], steps: Dict[int, int]):
    """The versions that have saved_model.pb, checked whole, with their recorded losses.

    Returns:
      (version -> loss of each complete version, names of everything else there).
    """
    if not tf.io.gfile.isdir(export_dir):
        return {}, []
    complete, other = {}, []
    for name in sorted(n.rstrip("/") for n in tf.io.gfile.listdir(export_dir)):
        files = files_under(os.path.join(export_dir, name)) if _version(name) else []
        if name.endswith(summaries.FILE_SUFFIX):
            continue  # The TensorBoard events of the exported bests: not a version.
        if "saved_model.pb" not in files:
            other.append(name)
            continue
        assert COMPLETE_PARTS <= set(files), f"{name} lacks {COMPLETE_PARTS - set(files)}"
        assert any(f.startswith("variables/variables.data-") for f in files), (name, files)
        with tf.io.gfile.GFile(
            os.path.join(export_dir, name, "assets.extra/eval_result.json")
        ) as f:
            record = json.load(f)
        assert record["metrics"]["loss"] == losses[steps[record["global_step"]]], record
        complete[int(name)] = record["metrics"]["loss"]
    return complete, other


@pytest.mark.e2e
@pytest.mark.objectstore
def test_evaluator_killed_while_publishing_or_deleting_on_s3_leaves_only_whole_models(
    trained_model_dir: str, s3_dir: str, tmp_path
) -> None:
    seed = fault_injection_seed()
    print(f"FAULT_INJECTION_SEED={seed}")
    export_dir = f"{s3_dir}/export/{fault_worker.EXPORTER_NAME}"
    state = str(tmp_path / "state.json")
    log_dir = str(tmp_path / "logs")
    os.makedirs(log_dir)
    fault_worker.write_state(state, 0)
    checkpoints = fault_worker.checkpoints_by_step(trained_model_dir)
    steps = {step: position for position, (step, _) in enumerate(checkpoints)}
    losses = fault_worker.eval_losses(len(checkpoints))
    killer = RandomKiller(seed)
    runs: List[Run] = []
    best_ever = math.inf

    for cycle, plan in enumerate(S3_CYCLES):
        run = run_worker(
            trained_model_dir, state, log_dir, cycle, plan, killer, (f"--export_dir={export_dir}",)
        )
        runs.append(run)
        print(run.describe())
        if run.returncode != -signal.SIGKILL:
            assert run.returncode == 0 and "DONE" in run.lines[-1], (run.describe(), run.log_tail())
        complete, _ = complete_versions_on_bucket(export_dir, losses, steps)
        in_order = [complete[v] for v in sorted(complete)]
        assert all(a > b for a, b in zip(in_order, in_order[1:])), (run.describe(), complete)
        if complete:
            # The newest whole version is the best model ever exported.
            best_ever = min(best_ever, *complete.values())
            assert complete[max(complete)] == best_ever, (run.describe(), complete)

    complete, other = complete_versions_on_bucket(export_dir, losses, steps)
    evaluated = fault_worker.read_state(state)
    best_loss = min(loss for loss in losses[:evaluated] if math.isfinite(loss))
    assert complete[max(complete)] == best_loss
    assert other == [], f"left behind after the last export: {other}"
    assert_serves(os.path.join(export_dir, str(max(complete))))
    planned = {plan.point for plan in S3_CYCLES if isinstance(plan, SelfKill)}
    assert planned <= {run.self_kill for run in runs}
