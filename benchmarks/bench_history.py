"""Times what a restarted exporter reads from disk, ours against the original.

Part 1, reading the eval history. Writes a realistic eval events file (by default
20,000 evaluations of the 10 metrics a binary DNNClassifier reports, as in docs/design.md
"Measured traps") into a temporary directory, once with the legacy FileWriter that
`Estimator.evaluate` uses (`simple_value` scalars) and once with TF2
`tf.summary.scalar` (tensor scalars, one event per value), then times, best of N
runs, finding the best eval result with:

* the original `tf.estimator.BestExporter._get_best_eval_result`;
* `best_exporter.history.scan_eval_history` streamed into `Judge(loss_smaller).best_of`;
* TensorBoard's loaders, for reference: `RawEventFileLoader` (records only),
  `LegacyEventFileLoader` (parsed events) and `EventFileLoader` (with data migration).

and the peak Python memory (tracemalloc) of ours and of the original.

Part 2, restart cost. On a model_dir holding the legacy events file in eval/ and 5
exports under export/best_exporter/, times the first `export()` call of a freshly
constructed exporter, with a result that is no improvement, for:

* the original `tf.estimator.BestExporter`, which reads the whole events file (and
  then exports unconditionally, its first call being its first export);
* ours, with 5 exports that have records: the history is not read;
* ours, with 5 exports without records (written by the original): the history is read.

The estimator is tests/support.py's `FakeEstimator`, whose `export_saved_model`
writes a small version directory, so an export costs milliseconds, not a SavedModel.
Each run starts from the same export directory, restored before the run, untimed.
Run:

    python benchmarks/bench_history.py [--evals 20000] [--repeats 5]
"""

import argparse
import functools
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.backend.event_processing import event_file_loader  # noqa: E402

from best_exporter import BestExporter  # noqa: E402
from best_exporter.core.compare import loss_smaller  # noqa: E402
from best_exporter.core.decision import Best, Judge, Source  # noqa: E402
from best_exporter.core.history import scan_eval_history  # noqa: E402

# The tests' FakeEstimator: the same stand-in the unit tests export with.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from support import FakeEstimator  # noqa: E402

# The eval metrics of a binary tf.estimator.DNNClassifier: 10, `loss` among them.
METRICS = (
    "accuracy",
    "accuracy_baseline",
    "auc",
    "auc_precision_recall",
    "average_loss",
    "label/mean",
    "loss",
    "precision",
    "prediction/mean",
    "recall",
)
STEPS_PER_EVAL = 100


def _values(evals: int, metrics: int, seed: int = 0) -> np.ndarray:
    """Noisy, mostly decreasing losses and mostly increasing other metrics."""
    rng = np.random.RandomState(seed)
    progress = np.linspace(0.0, 1.0, evals)[:, None]
    noise = rng.normal(0.0, 0.02, size=(evals, metrics))
    return (0.3 + 0.5 * np.where(np.arange(metrics) % 2, progress, 1 - progress) + noise).astype(
        np.float32
    )


def _tags(metrics: int) -> List[str]:
    return list(METRICS[:metrics]) + [f"metric_{i}" for i in range(len(METRICS), metrics)]


def write_legacy(log_dir: str, values: np.ndarray, tags: List[str]) -> str:
    """One event of `simple_value`s per evaluation, with the FileWriter Estimator uses."""
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(log_dir)
        for i, row in enumerate(values):
            summary = tf.compat.v1.Summary()
            for tag, value in zip(tags, row):
                summary.value.add(tag=tag, simple_value=float(value))
            writer.add_summary(summary, (i + 1) * STEPS_PER_EVAL)
        writer.close()
    return _only_file(log_dir)


def write_tf2(log_dir: str, values: np.ndarray, tags: List[str]) -> str:
    """One event per value, with `tf.summary.scalar` (in a tf.function, to be quick)."""
    writer = tf.summary.create_file_writer(log_dir, max_queue=1000)

    # Called once per evaluation: inside a tf.range loop the tags would get a
    # "while/" name scope.
    @tf.function
    def write(row: tf.Tensor, step: tf.Tensor) -> None:
        with writer.as_default():
            for j, tag in enumerate(tags):
                tf.summary.scalar(tag, row[j], step=step)

    for i, row in enumerate(values):
        write(tf.constant(row), tf.constant((i + 1) * STEPS_PER_EVAL, tf.int64))
    writer.close()
    return _only_file(log_dir)


def _only_file(log_dir: str) -> str:
    (name,) = os.listdir(log_dir)
    return os.path.join(log_dir, name)


# ----------------------------------------------------------------------------
# The readers. Each returns what it found, for the table: (step, loss) or a count.


def _stub_receiver_fn():
    # Reading history exports nothing, and FakeEstimator builds no graph.
    raise AssertionError("not called: no real export happens here")


@functools.lru_cache(maxsize=None)
def _original_exporter() -> tf.estimator.BestExporter:
    return tf.estimator.BestExporter(serving_input_receiver_fn=_stub_receiver_fn)


def original(pattern: str) -> str:
    best = _original_exporter()._get_best_eval_result(pattern)
    # The original's result has no global_step.
    return "nothing" if best is None else f"loss {best['loss']:.6g}"


def ours(pattern: str) -> str:
    # What BestExporter does: the history streamed into best_of.
    scan = scan_eval_history(pattern, metric=loss_smaller.metric)
    best, _ = Judge(loss_smaller).best_of(Best(e, Source.EVENTS) for e in scan)
    if best is None:
        return "nothing"
    return f"loss {best.eval_result['loss']:.6g} (step {best.step})"


def ours_read_only(pattern: str) -> str:
    return f"{sum(1 for _ in scan_eval_history(pattern))} results"


def _tensorboard(loader_class: type) -> Callable[[str], str]:
    def read(pattern: str) -> str:
        count = 0
        for path in tf.io.gfile.glob(pattern):
            for _ in loader_class(path).Load():
                count += 1
        return f"{count} records/events"

    return read


READERS: List[Tuple[str, Callable[[str], str], bool]] = [
    # (name, reader, measure memory)
    ("original BestExporter._get_best_eval_result", original, True),
    ("best_exporter scan_eval_history + best_of", ours, True),
    ("best_exporter scan_eval_history alone", ours_read_only, False),
    (
        "TensorBoard RawEventFileLoader (records)",
        _tensorboard(event_file_loader.RawEventFileLoader),
        False,
    ),
    (
        "TensorBoard LegacyEventFileLoader (events)",
        _tensorboard(event_file_loader.LegacyEventFileLoader),
        False,
    ),
    (
        "TensorBoard EventFileLoader (migrated)",
        _tensorboard(event_file_loader.EventFileLoader),
        False,
    ),
]


# ----------------------------------------------------------------------------
# Measuring.


def min_time(
    fn: Callable[[], Any],
    repeats: int,
    budget: float,
    setup: Optional[Callable[[], None]] = None,
) -> Tuple[float, float, int, Any]:
    """Best-effort min of `repeats` runs, stopping early once `budget` seconds are spent.

    Returns the least wall time and the least CPU time of this process (steadier on a
    shared machine), the number of runs and the last result. Garbage collection is
    off during each run, as in `timeit`. `setup`, if given, runs before each run,
    untimed.
    """
    walls, cpus = [], []
    result = None
    started = time.perf_counter()
    while len(walls) < repeats:
        if setup is not None:
            setup()
        gc.collect()
        gc.disable()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        finally:
            gc.enable()
        if time.perf_counter() - started > budget:
            break
    return min(walls), min(cpus), len(walls), result


def peak_memory(fn: Callable[[], Any]) -> float:
    """Peak Python allocations during one run, in MiB (C++ and upb arenas not seen)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def run(
    title: str, pattern: str, repeats: int, budget: float, skip: Tuple[str, ...]
) -> List[Dict[str, Any]]:
    rows = []
    for name, reader, measure_memory in READERS:
        if any(s in name for s in skip):
            continue
        fn = lambda reader=reader: reader(pattern)  # noqa: E731
        fn()  # Warm-up: imports, first-call caches, the page cache.
        wall, cpu, runs, found = min_time(fn, repeats, budget)
        memory = peak_memory(fn) if measure_memory else None
        rows.append(dict(name=name, time=wall, cpu=cpu, runs=runs, found=found, memory=memory))
    _print_table(title, rows)
    return rows


MEMORY_NOTE = (
    "peak MiB: Python allocations (tracemalloc). Protobuf (upb) and TensorFlow's C++ "
    "buffers are not seen: the original, which holds one event at a time, shows ~0."
)


def _print_table(
    title: str,
    rows: List[Dict[str, Any]],
    what: str = "reader",
    found: str = "found",
    note: str = MEMORY_NOTE,
    unit: str = "s",
) -> None:
    base = rows[0] if rows and "original" in rows[0]["name"] else None
    scale = {"s": 1.0, "ms": 1e3}[unit]

    def ratio(row: Dict[str, Any], key: str) -> str:
        if not base:
            return "-"
        value = row[key] / base[key]
        return f"{value:.2f}x" if value >= 0.1 else f"{value:.3f}x"

    print(f"\n{title}")
    header = (
        f"{what:<46}{'wall ' + unit:>8}{'vs orig':>9}{'cpu ' + unit:>8}{'vs orig':>9}{'runs':>5}"
        f"{'peak MiB':>10}  {found}"
    )
    print(header)
    print("-" * (len(header) + 24))
    for row in rows:
        memory = f"{row['memory']:.1f}" if row["memory"] is not None else "-"
        print(
            f"{row['name']:<46}{row['time'] * scale:>8.3f}{ratio(row, 'time'):>9}"
            f"{row['cpu'] * scale:>8.3f}{ratio(row, 'cpu'):>9}{row['runs']:>5}{memory:>10}  "
            f"{row['found']}"
        )
    print(note)


# ----------------------------------------------------------------------------
# Part 2, restart cost: the first export() of a new exporter on a model_dir with a
# long eval history and exports on disk.

EXPORTS = 5
# Versions are 10-digit timestamps; the exports on disk take the first ones, a
# version written during a timed run comes after them.
FIRST_VERSION = 1_700_000_000
RUN_VERSION = FIRST_VERSION + 1000


def _eval_result(values: np.ndarray, tags: List[str], index: int) -> Dict[str, Any]:
    """Row `index` of the history as `Estimator.evaluate` returns it."""
    result: Dict[str, Any] = {"global_step": np.int64((index + 1) * STEPS_PER_EVAL)}
    result.update({tag: np.float32(value) for tag, value in zip(tags, values[index])})
    return result


def _restart_plan(values: np.ndarray, tags: List[str]) -> Optional[Tuple[List[int], int]]:
    """The rows that were exported before the restart, and the row evaluated after it.

    The evaluation after the restart is the newest row that is no improvement on the
    rows before it (the evaluator wrote it to the events file before calling
    export()); the exports are the last `EXPORTS` improvements before it, as a
    BestExporter with `exports_to_keep=EXPORTS` would have left them. None if
    every row improves on the rows before it.
    """
    loss = values[:, tags.index("loss")].astype(np.float64)
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(loss)[:-1]])
    improves = loss < best_before
    if improves.all():
        return None
    current = int(np.flatnonzero(~improves)[-1])
    exported = [int(i) for i in np.flatnonzero(improves[:current])[-EXPORTS:]]
    return exported, current


def _touch(path: str, text: str = "") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _checkpoint(model_dir: str, step: int) -> str:
    """A checkpoint prefix whose `.index` exists, as our exporter checks before exporting."""
    prefix = os.path.join(model_dir, f"model.ckpt-{step}")
    _touch(prefix + ".index")
    return prefix


def _write_exports_with_records(
    template: str, model_dir: str, values: np.ndarray, tags: List[str], rows: List[int]
) -> None:
    """Exports `rows`, each an improvement, with our exporter: versions with records."""
    exporter = BestExporter(
        serving_input_receiver_fn=_stub_receiver_fn, event_file_pattern=None, exports_to_keep=None
    )
    estimator = FakeEstimator(model_dir, first_version=FIRST_VERSION)
    for row in rows:
        result = _eval_result(values, tags, row)
        checkpoint = _checkpoint(model_dir, int(result["global_step"]))
        if exporter.export(estimator, template, checkpoint, result, False) is None:
            raise AssertionError(f"row {row} was meant to be an improvement")


def _write_exports_without_records(template: str, versions: int) -> None:
    """Version directories as the original exporter leaves them: no assets.extra."""
    for version in range(FIRST_VERSION, FIRST_VERSION + versions):
        _touch(os.path.join(template, str(version), "saved_model.pb"), "fake")


class RestartRun:
    """One restart: the export directory restored from a template, a new exporter, one export().

    Args:
      exporter_class: `tf.estimator.BestExporter` or ours.
      model_dir: the model directory, with the eval events in `eval/`.
      template: the export directory to start each run from.
      eval_result: the result of the evaluation after the restart.
      checkpoint: its checkpoint.
    """

    def __init__(
        self,
        exporter_class: type,
        model_dir: str,
        template: str,
        eval_result: Dict[str, Any],
        checkpoint: str,
    ):
        self.exporter_class = exporter_class
        self.model_dir = model_dir
        self.export_path = os.path.join(model_dir, "export", "best_exporter")
        self.template = template
        self.eval_result = eval_result
        self.checkpoint = checkpoint
        self.exporter: Any = None
        self.estimator: Any = None

    def setup(self) -> None:
        """Untimed: the same disk state and a fresh exporter for every run."""
        shutil.rmtree(self.export_path, ignore_errors=True)
        shutil.copytree(self.template, self.export_path)
        # Both exporters default to eval/*.tfevents.* and exports_to_keep=5.
        self.exporter = self.exporter_class(serving_input_receiver_fn=_stub_receiver_fn)
        self.estimator = FakeEstimator(self.model_dir, first_version=RUN_VERSION)

    def __call__(self) -> Any:
        return self.exporter.export(
            self.estimator, self.export_path, self.checkpoint, self.eval_result, False
        )

    def describe(self, exported: Any) -> str:
        """What the last run did, for the table (untimed)."""
        versions = sorted(name for name in os.listdir(self.export_path) if name.isdigit())
        kept = f"{len(versions)} versions on disk, oldest {versions[0] if versions else '-'}"
        if exported:
            return f"exported {os.path.basename(exported.decode())}; {kept}"
        best = self.exporter.best_eval_result
        return f"not exported, best loss {best['loss']:.6g} (step {best['global_step']}); {kept}"


def run_restart(
    root: str, model_dir: str, values: np.ndarray, tags: List[str], repeats: int, budget: float
) -> List[Dict[str, Any]]:
    """Times the first export() after a restart on `model_dir`; prints and returns the rows."""
    plan = _restart_plan(values, tags)
    if plan is None:
        print("\nNo restart cost: every evaluation improves on those before it")
        return []
    exported, current = plan
    with_records = os.path.join(root, "templates", "with_records")
    without_records = os.path.join(root, "templates", "without_records")
    _write_exports_with_records(with_records, model_dir, values, tags, exported)
    _write_exports_without_records(without_records, len(exported))
    eval_result = _eval_result(values, tags, current)
    checkpoint = _checkpoint(model_dir, int(eval_result["global_step"]))
    print(
        f"\nRestart at step {int(eval_result['global_step'])}, loss "
        f"{eval_result['loss']:.6g}; {len(exported)} exports on disk, of steps "
        f"{', '.join(str((i + 1) * STEPS_PER_EVAL) for i in exported)}"
    )
    cases = [
        ("original tf.estimator.BestExporter", tf.estimator.BestExporter, without_records),
        ("ours, exports with records", BestExporter, with_records),
        ("ours, exports without records", BestExporter, without_records),
    ]
    rows = []
    for name, exporter_class, template in cases:
        case = RestartRun(exporter_class, model_dir, template, eval_result, checkpoint)
        case.setup()
        case()  # Warm-up: imports, first-call caches, the page cache.
        wall, cpu, runs, result = min_time(case, repeats, budget, setup=case.setup)
        found = case.describe(result)
        case.setup()
        memory = peak_memory(case)
        rows.append(dict(name=name, time=wall, cpu=cpu, runs=runs, found=found, memory=memory))
    shutil.rmtree(os.path.join(model_dir, "export"), ignore_errors=True)
    _print_table(
        "first export() after a restart",
        rows,
        what="exporter",
        found="what it did",
        note="peak MiB: Python allocations (tracemalloc) during the export() call.",
        unit="ms",
    )
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", type=int, default=20_000, help="evaluations (default 20000)")
    parser.add_argument("--metrics", type=int, default=10, help="metrics per evaluation")
    parser.add_argument("--repeats", type=int, default=5, help="runs per reader; the min counts")
    parser.add_argument(
        "--budget", type=float, default=10.0, help="seconds per reader before repeats stop"
    )
    parser.add_argument(
        "--skip-migrating-loader",
        action="store_true",
        help="skip TensorBoard's EventFileLoader (seconds per run)",
    )
    args = parser.parse_args(argv)
    skip = ("EventFileLoader (migrated)",) if args.skip_migrating_loader else ()

    values = _values(args.evals, args.metrics)
    tags = _tags(args.metrics)
    root = tempfile.mkdtemp(prefix="bench_history-")
    started_all = time.perf_counter()
    try:
        print(
            f"TensorFlow {tf.__version__}, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs; min of up to {args.repeats} runs"
        )
        model_dirs = {}
        for label, write in (("legacy simple_value", write_legacy), ("TF2 tensor", write_tf2)):
            # Each file in the eval/ directory of a model_dir, where Estimator puts it.
            model_dirs[label] = os.path.join(root, label.split()[0])
            log_dir = os.path.join(model_dirs[label], "eval")
            started = time.perf_counter()
            path = write(log_dir, values, tags)
            size = os.path.getsize(path) / 1e6
            print(
                f"\nWrote {args.evals:,} evaluations x {len(tags)} metrics as {label} scalars: "
                f"{size:.1f} MB in {time.perf_counter() - started:.1f} s"
            )
            run(
                f"{label} scalars ({size:.1f} MB)",
                os.path.join(log_dir, "*.tfevents.*"),
                args.repeats,
                args.budget,
                skip,
            )
        if "loss" in tags:
            run_restart(
                root, model_dirs["legacy simple_value"], values, tags, args.repeats, args.budget
            )
        else:
            print("\nNo restart cost: it compares `loss`, and --metrics leaves it out")
        print(f"\nTotal {time.perf_counter() - started_all:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
