"""What a restart costs, ours against the original, as ratios from one run.

Part 1, the history path (a run switched from the original: exports without
records). Finding the best result in a long eval history, with the original's
`_get_best_eval_result` and with ours (`scan_eval_history` streamed into
`Judge.best_of`, what `BestExporter` does), on a legacy `simple_value` file and a
TF2 tensor-scalar file. Each reader runs in a fresh child process, which reports
the least CPU and wall time of its runs and the peak growth of its resident memory
(RSS, Linux's VmHWM after a reset) over one run: every allocation, Python's and
protobuf's and TensorFlow's. `--large` adds a legacy history of 300,000
evaluations (about a minute more).

Part 2, the records path (every export has a record). The first `export()` of a
new exporter on a model_dir with 5 or 200 versions on disk, which reads what each
version holds, with our concurrent reads against reading one by one, on local disk
and on local disk behind a wrapper that adds `--latency-ms` to every filesystem
call (as a remote store's round trip does), with the original's first `export()`
(which reads the whole eval history instead) for reference.

Run from the repository root, with the project's environment:

    python benchmarks/bench_restart.py               # about 2 minutes
    python benchmarks/bench_restart.py --large       # adds 300,000 evaluations
    python benchmarks/bench_restart.py --evals 2000 --repeats 3   # a quick look
"""

import argparse
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any, Callable, Dict, Iterator, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Run as a script, this directory is on sys.path: bench_history's writers and the
# tests' FakeEstimator (which bench_history puts on sys.path) are shared.
import bench_history  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_history import FakeEstimator  # noqa: E402

from best_exporter import BestExporter
from best_exporter.core import records  # noqa: E402
from best_exporter.core.compare import loss_smaller  # noqa: E402
from best_exporter.core.decision import Best, Judge, Source  # noqa: E402
from best_exporter.core.history import read_eval_history, scan_eval_history  # noqa: E402

FIRST_VERSION = bench_history.FIRST_VERSION
RUN_VERSION = FIRST_VERSION + 10_000
_EXPORTED_AT = datetime.datetime(2026, 11, 25, tzinfo=datetime.timezone.utc)


# ----------------------------------------------------------------------------
# Part 1: the history path, each reader in a child process.


def find_original(pattern: str) -> str:
    return bench_history.original(pattern)


def find_ours(pattern: str) -> str:
    # As BestExporter does: the compared metric is the scan's hint.
    scan = scan_eval_history(pattern, metric=loss_smaller.metric)
    best, _ = Judge(loss_smaller).best_of(Best(e, Source.EVENTS) for e in scan)
    if best is None:
        return "nothing"
    return f"loss {best.eval_result['loss']:.6g} (step {best.step})"


def find_ours_holding_all(pattern: str) -> str:
    # The reader before streaming, for its memory: every result held, then judged.
    results = read_eval_history(pattern).results
    best, _ = Judge(loss_smaller).best_of(Best(r, Source.EVENTS) for r in results)
    return "nothing" if best is None else f"loss {best.eval_result['loss']:.6g} (step {best.step})"


READERS: Dict[str, Callable[[str], str]] = {
    "original": find_original,
    "ours": find_ours,
    "held": find_ours_holding_all,
}


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> bool:
    """Makes VmHWM start again from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(reader: str, pattern: str, repeats: int) -> Dict[str, Any]:
    """Runs one reader in this (fresh) process: memory first, then the timed runs."""
    fn = READERS[reader]
    fn(pattern.replace("*.tfevents.*", "no-such-file-*"))  # Imports and first-call caches.
    before = _rss_mib("VmRSS")
    rss_peak = _rss_mib("VmHWM") - before if _reset_peak_rss() else float("nan")
    found = fn(pattern)
    if rss_peak == rss_peak:  # Not NaN: the reset worked.
        rss_peak = _rss_mib("VmHWM") - before
    tracemalloc.start()
    fn(pattern)
    python_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn(pattern)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return dict(
        found=found, rss=rss_peak, python=python_peak, wall=min(wall), cpu=min(cpu), runs=repeats
    )


def run_child(reader: str, pattern: str, repeats: int) -> Dict[str, Any]:
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", reader, pattern, str(repeats)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def history_table(title: str, pattern: str, repeats: int) -> List[Dict[str, Any]]:
    rows = []
    for reader in READERS:
        row = run_child(reader, pattern, repeats)
        row["name"] = reader
        rows.append(row)
    base = rows[0]
    print(f"\n{title}")
    print(
        f"{'reader':<10}{'cpu s':>8}{'wall s':>8}{'speed-up':>10}"
        f"{'RSS +MiB':>10}{'Python MiB':>12}  found"
    )
    for row in rows:
        print(
            f"{row['name']:<10}{row['cpu']:>8.3f}{row['wall']:>8.3f}"
            f"{base['cpu'] / row['cpu']:>9.2f}x{row['rss']:>10.1f}{row['python']:>12.2f}  "
            f"{row['found']}"
        )
    return rows


def part1(root: str, evals_list: List[int], repeats: int, tf2: bool) -> None:
    print("\n== The history path: the best of a long eval history ==")
    print("speed-up: the original's CPU time / this row's (higher is faster).")
    print("RSS +MiB: peak growth of resident memory over one run, all allocations.")
    print("held: ours with every result held (read_eval_history), as the reader was before.")
    tags = bench_history._tags(10)
    for evals in evals_list:
        values = bench_history._values(evals, len(tags))
        writers = [("legacy simple_value", bench_history.write_legacy)]
        if tf2:
            writers.append(("TF2 tensor", bench_history.write_tf2))
        for label, write in writers:
            log_dir = os.path.join(root, f"{label.split()[0]}-{evals}", "eval")
            started = time.perf_counter()
            path = write(log_dir, values, tags)
            print(
                f"\n(wrote {evals:,} evaluations x {len(tags)} metrics as {label} scalars, "
                f"{os.path.getsize(path) / 1e6:.1f} MB, in {time.perf_counter() - started:.0f} s)"
            )
            history_table(
                f"{evals:,} evaluations, {label}",
                os.path.join(log_dir, "*.tfevents.*"),
                repeats,
            )
            os.remove(path)


# ----------------------------------------------------------------------------
# Part 2: the first export() after a restart, with records.


@contextlib.contextmanager
def added_latency(seconds: float) -> Iterator[None]:
    """Makes every `tf.io.gfile` call the library makes wait `seconds` first.

    A stand-in for a remote store's round trip. The wait is a sleep, which releases
    the GIL as TensorFlow's filesystem calls do while they wait on the network.
    """
    gfile = tf.io.gfile
    originals = {
        name: getattr(gfile, name) for name in ("exists", "glob", "isdir", "listdir", "stat")
    }

    def slow(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(seconds)
            return fn(*args, **kwargs)

        return call

    class SlowGFile(gfile.GFile):  # type: ignore[misc, valid-type]
        def read(self, n: int = -1) -> Any:
            time.sleep(seconds)
            return super().read(n)

    original_gfile = gfile.GFile
    try:
        for name, fn in originals.items():
            setattr(gfile, name, slow(fn))
        gfile.GFile = SlowGFile
        yield
    finally:
        for name, fn in originals.items():
            setattr(gfile, name, fn)
        gfile.GFile = original_gfile


def _write_versions(template: str, versions: int, with_records: bool) -> None:
    """Version dirs as our exporter leaves them (with records) or the original (without)."""
    for i in range(versions):
        version_dir = os.path.join(template, str(FIRST_VERSION + i))
        bench_history._touch(os.path.join(version_dir, "saved_model.pb"), "fake")
        if with_records:
            # Worse as they get older: the newest version holds the best.
            result = {"global_step": 100 * (i + 1), "loss": 1.0 - i / (2 * versions)}
            record = records.make_record(
                result, f"/m/model.ckpt-{100 * (i + 1)}", "best_exporter", _EXPORTED_AT
            )
            bench_history._touch(
                os.path.join(version_dir, "assets.extra", "eval_result.json"),
                records.dumps_record(record),
            )


class Restart:
    """The first export() of a fresh exporter on a copy of a template export dir."""

    def __init__(self, exporter: Callable[[], Any], model_dir: str, template: str, step: int):
        self.make_exporter = exporter
        self.model_dir = model_dir
        self.export_path = os.path.join(model_dir, "export", "best_exporter")
        self.template = template
        checkpoint = bench_history._checkpoint(model_dir, step)
        self.checkpoint = checkpoint
        self.eval_result = {"global_step": np.int64(step), "loss": np.float32(2.0)}
        self.exporter: Any = None
        self.estimator: Any = None

    def setup(self) -> None:
        shutil.rmtree(self.export_path, ignore_errors=True)
        shutil.copytree(self.template, self.export_path)
        self.exporter = self.make_exporter()
        self.estimator = FakeEstimator(self.model_dir, first_version=RUN_VERSION)

    def __call__(self) -> Any:
        return self.exporter.export(
            self.estimator, self.export_path, self.checkpoint, self.eval_result, False
        )


def _time_restart(case: Restart, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        case.setup()
        started = time.perf_counter()
        case()
        best = min(best, time.perf_counter() - started)
    return best


@contextlib.contextmanager
def _reads_in_flight(workers: int) -> Iterator[None]:
    """Makes the library read `workers` records at a time, on local disk too."""
    saved = records.LOCAL_READS_IN_FLIGHT
    records.LOCAL_READS_IN_FLIGHT = workers
    try:
        yield
    finally:
        records.LOCAL_READS_IN_FLIGHT = saved


def part2(root: str, evals: int, repeats: int, latency_ms: float) -> None:
    print("\n== The records path: the first export() after a restart ==")
    tags = bench_history._tags(10)
    values = bench_history._values(evals, len(tags))
    model_dir = os.path.join(root, "restart")
    bench_history.write_legacy(os.path.join(model_dir, "eval"), values, tags)
    step = (evals + 1) * bench_history.STEPS_PER_EVAL

    def ours() -> BestExporter:
        return BestExporter(
            serving_input_receiver_fn=bench_history._stub_receiver_fn, exports_to_keep=None
        )

    def original() -> Any:
        return tf.estimator.BestExporter(
            serving_input_receiver_fn=bench_history._stub_receiver_fn, exports_to_keep=None
        )

    print(
        f"model_dir with a legacy eval history of {evals:,} evaluations; the evaluation "
        "after the restart is no improvement; exports_to_keep=None (nothing pruned)."
    )
    print(
        f"{'versions':>8}  {'filesystem':<22}{'original ms':>12}{'one by one ms':>15}"
        f"{'concurrent ms':>15}{'speed-up':>10}{'vs original':>13}"
    )
    for versions in (5, 200):
        with_records = os.path.join(root, "templates", f"with-{versions}")
        without_records = os.path.join(root, "templates", f"without-{versions}")
        _write_versions(with_records, versions, True)
        _write_versions(without_records, versions, False)
        original_time = _time_restart(Restart(original, model_dir, without_records, step), repeats)
        for label, latency in (("local disk", 0.0), (f"+{latency_ms:g} ms per call", latency_ms)):
            runs = repeats if latency == 0 else 1
            with added_latency(latency / 1e3) if latency else contextlib.nullcontext():
                with _reads_in_flight(1):
                    sequential = _time_restart(Restart(ours, model_dir, with_records, step), runs)
                with _reads_in_flight(records.MAX_CONCURRENT_READS):
                    concurrent = _time_restart(Restart(ours, model_dir, with_records, step), runs)
            chosen = sequential if latency == 0 else concurrent
            print(
                f"{versions:>8}  {label:<22}"
                + (f"{original_time * 1e3:>12.1f}" if latency == 0 else f"{'-':>12}")
                + f"{sequential * 1e3:>15.1f}{concurrent * 1e3:>15.1f}"
                f"{sequential / concurrent:>9.1f}x"
                + (f"{original_time / chosen:>12.0f}x" if latency == 0 else f"{'-':>13}")
            )
    print(
        "speed-up: one by one / concurrent. The library reads one by one on local disk "
        "and concurrently on\nfilesystems with a scheme (gs://, s3://, hdfs://). vs original: "
        "the original's first export() on local disk\n(it reads the whole eval history, then "
        "exports unconditionally) / ours as the library chooses."
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evals", type=int, default=20_000, help="evaluations (20000)")
    parser.add_argument("--large", action="store_true", help="add 300,000 legacy evaluations")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the least counts")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added per call (10)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        reader, pattern, repeats = args.child
        print(json.dumps(child(reader, pattern, int(repeats))))
        return 0
    root = tempfile.mkdtemp(prefix="bench_restart-")
    started = time.perf_counter()
    try:
        print(
            f"TensorFlow {tf.__version__}, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs; least of {args.repeats} runs"
        )
        part1(root, [args.evals], args.repeats, tf2=True)
        if args.large:
            part1(root, [300_000], max(1, args.repeats // 2), tf2=False)
        part2(root, args.evals, args.repeats, args.latency_ms)
        print(f"\nTotal {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
