"""Times reading eval history from a large eval events file, ours against the original.

Writes a realistic eval events file (by default 20,000 evaluations of the 10 metrics
a binary DNNClassifier reports, as in DESIGN.md "Measured traps") into a temporary
directory, once with the legacy FileWriter that `Estimator.evaluate` uses
(`simple_value` scalars) and once with TF2 `tf.summary.scalar` (tensor scalars, one
event per value), then times, best of N runs, finding the best eval result with:

* the original `tf.estimator.BestExporter._get_best_eval_result`;
* `best_exporter.history.read_eval_history` plus `Judge(loss_smaller).best_of`;
* TensorBoard's loaders, for reference: `RawEventFileLoader` (records only),
  `LegacyEventFileLoader` (parsed events) and `EventFileLoader` (with data migration).

and the peak Python memory (tracemalloc) of ours and of the original. Run:

    /work/venv/bin/python benchmarks/bench_history.py [--evals 20000] [--repeats 5]
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

from best_exporter.compare import loss_smaller  # noqa: E402
from best_exporter.decision import Best, Judge, Source  # noqa: E402
from best_exporter.history import read_eval_history  # noqa: E402

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
    raise AssertionError("not called: no export happens here")


@functools.lru_cache(maxsize=None)
def _original_exporter() -> tf.estimator.BestExporter:
    return tf.estimator.BestExporter(serving_input_receiver_fn=_stub_receiver_fn)


def original(pattern: str) -> str:
    best = _original_exporter()._get_best_eval_result(pattern)
    # The original's result has no global_step.
    return "nothing" if best is None else f"loss {best['loss']:.6g}"


def ours(pattern: str) -> str:
    history = read_eval_history(pattern)
    best, _ = Judge(loss_smaller).best_of(Best(r, Source.EVENTS) for r in history.results)
    if best is None:
        return "nothing"
    return f"loss {best.eval_result['loss']:.6g} (step {best.step})"


def ours_read_only(pattern: str) -> str:
    return f"{len(read_eval_history(pattern).results)} results"


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
    ("best_exporter read_eval_history + best_of", ours, True),
    ("best_exporter read_eval_history alone", ours_read_only, False),
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


def min_time(fn: Callable[[], Any], repeats: int, budget: float) -> Tuple[float, float, int, Any]:
    """Best-effort min of `repeats` runs, stopping early once `budget` seconds are spent.

    Returns the least wall time and the least CPU time of this process (steadier on a
    shared machine), the number of runs and the last result. Garbage collection is
    off during each run, as in `timeit`.
    """
    walls, cpus = [], []
    result = None
    started = time.perf_counter()
    while len(walls) < repeats:
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


def _print_table(title: str, rows: List[Dict[str, Any]]) -> None:
    base = rows[0] if rows and "original" in rows[0]["name"] else None

    def ratio(row: Dict[str, Any], key: str) -> str:
        return f"{row[key] / base[key]:.2f}x" if base else "-"

    print(f"\n{title}")
    header = (
        f"{'reader':<46}{'wall s':>8}{'vs orig':>9}{'cpu s':>8}{'vs orig':>9}{'runs':>5}"
        f"{'peak MiB':>10}  found"
    )
    print(header)
    print("-" * (len(header) + 24))
    for row in rows:
        memory = f"{row['memory']:.1f}" if row["memory"] is not None else "-"
        print(
            f"{row['name']:<46}{row['time']:>8.3f}{ratio(row, 'time'):>9}{row['cpu']:>8.3f}"
            f"{ratio(row, 'cpu'):>9}{row['runs']:>5}{memory:>10}  {row['found']}"
        )
    print(
        "peak MiB: Python allocations (tracemalloc). Protobuf (upb) and TensorFlow's C++ "
        "buffers are not seen: the original, which holds one event at a time, shows ~0."
    )


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
    try:
        print(
            f"TensorFlow {tf.__version__}, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs; min of up to {args.repeats} runs"
        )
        for label, write in (("legacy simple_value", write_legacy), ("TF2 tensor", write_tf2)):
            log_dir = os.path.join(root, label.split()[0])
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
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
