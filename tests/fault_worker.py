"""An evaluator stand-in that tests/test_fault_injection.py SIGKILLs and restarts.

One run of this script is one life of an evaluator: it builds the tiny classifier of
tests/support.py on a model_dir trained beforehand, and for each position of a fixed
sequence of eval results (better, worse, equal, NaN, infinite) it does what
`tf.estimator.train_and_evaluate`'s evaluator does after an evaluation: writes the
result to the eval events file, then calls `BestExporter.export` with the checkpoint
of that position. A state file holds the next position whose export() has not
returned, so a restarted run re-evaluates the checkpoint it was killed on and then
goes on with newer ones, as a preempted evaluator does.

`--kill_at HOOK:N:WHEN` makes the run SIGKILL itself at the N-th call of one of the
file operations an export makes (`KILL_HOOKS`), before or after it; `WHEN=partial`
deletes a tree's top-level files and then dies, as a kill inside a recursive delete
leaves it. The parent can also kill the run at any moment: each line this script
prints on stdout starts with `FAULT ` and tells where it is.

Usage: python fault_worker.py --model_dir=DIR --state=FILE [--max_calls=N] [--kill_at=...]
       [--export_dir=s3://...]
"""

import argparse
import json
import math
import os
import random
import signal
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

# TensorFlow is imported where it is used, after this variable is set.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXPORTER_NAME = "best_exporter"
EXPORTS_TO_KEEP = 2
SEQUENCE_SEED = 20251125

# Where a run can kill itself: hook -> the moments that make sense for it.
KILL_HOOKS: Dict[str, Tuple[str, ...]] = {
    # The eval event is written and flushed; export() has not been called.
    "event": ("after",),
    # Estimator.export_saved_model: nothing written yet / version published,
    # retention not run.
    "export_saved_model": ("before", "after"),
    # saved_model.pb written by the SavedModel builder: variables are in temp-<ts>.
    "write_saved_model": ("before", "after"),
    # tf.compat.v1.gfile.Copy of assets_extra (the record) into temp-<ts>.
    "copy_asset": ("before", "after"),
    # tf.compat.v1.gfile.Rename of temp-<ts> to the version: Estimator's publication.
    "publish": ("before", "after"),
    # tf.io.gfile.rename under the export dir: retention takes a version out of sight.
    "retire": ("before", "after"),
    # tf.io.gfile.rename out of a staging dir: on object stores publish.py moves the
    # export's objects into the version one by one, saved_model.pb last.
    "move": ("before", "after"),
    # tf.io.gfile.remove under the export dir: on object stores a version is deleted
    # object by object, saved_model.pb first.
    "remove": ("before", "after"),
    # tf.io.gfile.rmtree under the export dir: retention deletes a retired version or
    # a stale temp dir.
    "delete": ("before", "partial", "after"),
    # export() returned; the state file does not say so yet.
    "export": ("after",),
}


def export_dir_of(model_dir: str) -> str:
    return os.path.join(model_dir, "export", EXPORTER_NAME)


def eval_losses(n: int, seed: int = SEQUENCE_SEED) -> List[float]:
    """The loss evaluated at each position: a deterministic mix of every kind of result.

    Position 0 is NaN (never exported, never the best); every third position from 2 on
    improves on the best so far, so that each few evaluations export and retention
    runs; the others are better, worse, equal to the best, NaN or +-inf. Values are
    float32, as Estimator's metrics are, so equal results compare equal after a round
    trip through event files and records.
    """
    rng = random.Random(seed)
    best = 2.0
    losses = []
    for position in range(n):
        if position == 0:
            kind = "nan"
        elif position % 3 == 2:
            kind = "better"
        else:
            kind = rng.choice(["better", "worse", "worse", "equal", "nan", "inf", "-inf"])
        if kind == "better":
            loss = _float32(best * rng.uniform(0.85, 0.97))
            if not loss < best:  # float32 rounding must not make a tie.
                loss = _float32_below(best)
            best = loss
        elif kind == "worse":
            loss = _float32(best * rng.uniform(1.01, 1.5))
        elif kind == "equal":
            loss = best
        else:
            loss = float(kind)
        losses.append(loss)
    return losses


def improving_positions(losses: List[float]) -> List[int]:
    """The positions whose loss is finite and below every finite loss before it."""
    improving, best = [], math.inf
    for position, loss in enumerate(losses):
        if math.isfinite(loss) and loss < best:
            improving.append(position)
            best = loss
    return improving


def _float32(value: float) -> float:
    return float(np.float32(value))


def _float32_below(value: float) -> float:
    return float(np.nextafter(np.float32(value), np.float32(0)))


def read_state(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return int(json.load(f)["next"])


def write_state(path: str, next_position: int) -> None:
    # Atomic, so that a kill leaves the old state or the new one.
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump({"next": next_position}, f)
    os.replace(temporary, path)


def say(*words: Any) -> None:
    print("FAULT", *words, flush=True)


class KillSwitch:
    """SIGKILLs this process at the N-th call of one hook, before, after or partway."""

    def __init__(self, spec: Optional[str]):
        self.hook, self.n, self.when = None, 0, None
        if spec:
            hook, n, when = spec.split(":")
            if hook not in KILL_HOOKS or when not in KILL_HOOKS[hook]:
                raise SystemExit(f"unknown kill point {spec!r}; choose from {KILL_HOOKS}")
            self.hook, self.n, self.when = hook, int(n), when
        self.calls: Dict[str, int] = {}

    def count(self, hook: str) -> int:
        self.calls[hook] = self.calls.get(hook, 0) + 1
        return self.calls[hook]

    def point(self, hook: str, call: int, when: str, path: str = "") -> None:
        if (hook, call, when) == (self.hook, self.n, self.when):
            die(f"{hook}:{call}:{when}", path)


def die(point: str, path: str = "") -> None:
    say("KILL", point, path)
    os.kill(os.getpid(), signal.SIGKILL)


def _delete_top_level_files(path: str) -> None:
    """Deletes the files directly in `path`, as a recursive delete does first."""
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            os.remove(full)


def install_hooks(switch: KillSwitch, export_dir: str) -> None:
    """Wraps the file operations of an export so that the switch can fire in them."""
    import tensorflow as tf
    from tensorflow.python.lib.io import file_io
    from tensorflow_estimator.python.estimator.export import export_lib

    def wrap(owner: Any, attribute: str, hook: str, path_index: int) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            path = tf.compat.as_str_any(args[path_index])
            if not path.startswith(export_dir):  # e.g. the ram:// staged record.
                return original(*args, **kwargs)
            call = switch.count(hook)
            switch.point(hook, call, "before", path)
            if (hook, call, "partial") == (switch.hook, switch.n, switch.when):
                _delete_top_level_files(path)
                die(f"{hook}:{call}:partial", path)
            result = original(*args, **kwargs)
            switch.point(hook, call, "after", path)
            return result

        setattr(owner, attribute, wrapper)

    wrap(file_io, "write_string_to_file", "write_saved_model", 0)
    wrap(tf.compat.v1.gfile, "Copy", "copy_asset", 1)
    wrap(tf.compat.v1.gfile, "Rename", "publish", 0)
    # One rename function, two hooks: out of a staging dir it is publish.py's move.
    original_rename = tf.io.gfile.rename
    wrap(tf.io.gfile, "rename", "retire", 0)
    retire = tf.io.gfile.rename
    tf.io.gfile.rename = original_rename
    wrap(tf.io.gfile, "rename", "move", 0)
    move = tf.io.gfile.rename

    def rename(source: Any, *args: Any, **kwargs: Any) -> Any:
        staged = "/temp-publish-" in tf.compat.as_str_any(source)
        return (move if staged else retire)(source, *args, **kwargs)

    tf.io.gfile.rename = rename
    wrap(tf.io.gfile, "rmtree", "delete", 0)
    wrap(tf.io.gfile, "remove", "remove", 0)

    # A line when Estimator has picked the version number and starts writing, for
    # the parent's kills at a random moment of the writing.
    get_timestamped_export_dir = export_lib.get_timestamped_export_dir

    def announced(export_dir_base: Any) -> Any:
        version_dir = get_timestamped_export_dir(export_dir_base)
        say("WRITING", tf.compat.as_str_any(version_dir))
        return version_dir

    export_lib.get_timestamped_export_dir = announced


def checkpoints_by_step(model_dir: str) -> List[Tuple[int, str]]:
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(model_dir)
    paths = list(state.all_model_checkpoint_paths)
    steps = [(int(path.rsplit("-", 1)[1]), path) for path in paths]
    return sorted((step, path) for step, path in steps if step > 0)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--max_calls", type=int, default=1_000_000)
    parser.add_argument("--kill_at", default=None, help="HOOK:N:WHEN, see KILL_HOOKS")
    parser.add_argument(
        "--export_dir", default=None, help="where to export; default MODEL_DIR/export/NAME"
    )
    args = parser.parse_args(argv)
    switch = KillSwitch(args.kill_at)

    import support
    import tensorflow as tf

    from best_exporter import BestExporter

    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.INFO)
    model_dir = os.path.abspath(args.model_dir)
    export_dir = args.export_dir or export_dir_of(model_dir)
    if export_dir.startswith("s3://"):
        import tensorflow_io  # noqa: F401  Registers s3://.
    checkpoints = checkpoints_by_step(model_dir)
    losses = eval_losses(len(checkpoints))
    estimator = support.make_classifier(model_dir)
    exporter = BestExporter(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=support.serving_input_receiver_fn,
        exports_to_keep=EXPORTS_TO_KEEP,
    )
    install_hooks(switch, export_dir)

    export_saved_model = estimator.export_saved_model

    def export_saved_model_with_hook(*call_args: Any, **kwargs: Any) -> Any:
        call = switch.count("export_saved_model")
        switch.point("export_saved_model", call, "before")
        result = export_saved_model(*call_args, **kwargs)
        switch.point("export_saved_model", call, "after", tf.compat.as_str_any(result))
        return result

    estimator.export_saved_model = export_saved_model_with_hook

    # One events file per evaluator life, flushed after each result, as Estimator's
    # evaluation does; a kill may cut its last record short.
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(os.path.join(model_dir, "eval"))

    position = read_state(args.state)
    say("READY", position)
    end = min(len(checkpoints), position + args.max_calls)
    while position < end:
        step, checkpoint = checkpoints[position]
        loss = losses[position]
        say("BEGIN", position, step, loss)
        accuracy = 0.5 if math.isnan(loss) else 1.0 / (1.0 + abs(loss))
        summary = tf.compat.v1.Summary()
        summary.value.add(tag="loss", simple_value=loss)
        summary.value.add(tag="accuracy", simple_value=accuracy)
        writer.add_summary(summary, step)
        writer.flush()
        switch.point("event", switch.count("event"), "after")
        eval_result = {
            "loss": np.float32(loss),
            "accuracy": np.float32(accuracy),
            "global_step": np.int64(step),
        }
        exported = exporter.export(
            estimator, export_dir.encode(), checkpoint, eval_result, position == end - 1
        )
        switch.point("export", switch.count("export"), "after")
        position += 1
        write_state(args.state, position)
        say("END", position - 1, tf.compat.as_str_any(exported) if exported else "-")
    writer.close()
    say("DONE", position)
    return 0


if __name__ == "__main__":
    status = main()
    if "tensorflow_io" in sys.modules:
        # tensorflow-io aborts every process that loaded it at exit (code 134).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
