"""One task of a TF_CONFIG cluster that trains a model and exports the best one.

Every task of the cluster (chief, worker, ps, evaluator) runs this same program;
the `TF_CONFIG` environment variable tells it which task it is. It runs
`tf.estimator.train_and_evaluate` with a `best_exporter.BestExporter` in the
`EvalSpec`, so the evaluator writes an export under
`<model_dir>/export/best_exporter/<version>` whenever a checkpoint beats every
one evaluated before it.

    TF_CONFIG='{"cluster": {...}, "task": {"type": "chief", "index": 0}}' \
        python trainer.py --model_dir gs://bucket/run1

A parameter server never finishes on its own: `train_and_evaluate` blocks it in
`server.join()` forever. This program runs it in a background thread and exits
with status 0 on SIGTERM or SIGINT, so whoever runs the cluster stops the ps
after the chief, the workers and the evaluator have finished. See README.md.
"""

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

# Quieter TensorFlow C++ logs; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from best_exporter import BestExporter  # noqa: E402

EXPORTER_NAME = "best_exporter"
COLORS = (b"red", b"green", b"blue", b"yellow", b"purple", b"orange")


# ----------------------------------------------------------------------------
# The model: a DNNClassifier on a numeric feature and a hashed categorical
# feature with an embedding, on synthetic data.


def feature_columns() -> list:
    color = tf.feature_column.categorical_column_with_hash_bucket("color", hash_bucket_size=32)
    return [
        tf.feature_column.numeric_column("x"),
        tf.feature_column.embedding_column(color, dimension=4),
    ]


def make_data(n: int, seed: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """A labelled sample: the class depends on `x` and on the color, with 5% noise."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, n).astype(np.float32)
    color = np.array(COLORS)[rng.randint(0, len(COLORS), n)]
    label = (x > 0) ^ np.isin(color, COLORS[::2])
    label ^= rng.uniform(size=n) < 0.05
    return {"x": x, "color": color}, label.astype(np.int64)


def train_input_fn() -> tf.data.Dataset:
    features, labels = make_data(2048, seed=0)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.shuffle(2048).repeat().batch(32)


def make_eval_input_fn(size: int):
    def eval_input_fn() -> tf.data.Dataset:
        features, labels = make_data(size, seed=1)
        return tf.data.Dataset.from_tensor_slices((features, labels)).batch(128)

    return eval_input_fn


def serving_input_receiver_fn() -> tf.estimator.export.ServingInputReceiver:
    """Serves serialized `tf.train.Example`s, as TensorFlow Serving sends them."""
    spec = tf.feature_column.make_parse_example_spec(feature_columns())
    return tf.estimator.export.build_parsing_serving_input_receiver_fn(spec)()


def make_estimator(args: argparse.Namespace) -> tf.estimator.Estimator:
    # RunConfig reads the cluster and this task from the TF_CONFIG variable.
    config = tf.estimator.RunConfig(
        model_dir=args.model_dir,
        save_checkpoints_steps=args.save_checkpoints_steps,
        keep_checkpoint_max=args.keep_checkpoint_max,
        log_step_count_steps=50,
        tf_random_seed=42,
    )
    return tf.estimator.DNNClassifier(
        hidden_units=[16, 8],
        feature_columns=feature_columns(),
        optimizer=lambda: tf.keras.optimizers.legacy.Adagrad(learning_rate=0.05),
        config=config,
    )


class StepDelayHook(tf.estimator.SessionRunHook):
    """Sleeps after each training step, as if the model were bigger.

    The example's model trains a few hundred steps a second, far faster than an
    evaluator evaluates and exports; a real model's steps take longer.
    """

    def __init__(self, seconds: float):
        self._seconds = seconds

    def after_run(self, run_context, run_values) -> None:
        del run_context, run_values
        time.sleep(self._seconds)


class SlowEvaluationHook(tf.estimator.SessionRunHook):
    """Makes each evaluation take `seconds` longer, after its last batch.

    Simulates an evaluator that falls behind the chief (a large eval set, a
    busy machine): meanwhile the chief's checkpoint retention may delete the
    checkpoint just evaluated, before the exporter exports it.
    """

    def __init__(self, seconds: float):
        self._seconds = seconds

    def end(self, session: tf.compat.v1.Session) -> None:
        del session
        time.sleep(self._seconds)


def run(args: argparse.Namespace) -> None:
    """Runs `train_and_evaluate` as the task that TF_CONFIG names."""
    estimator = make_estimator(args)
    # tf.estimator.BestExporter only to compare: on this cluster it kills the
    # evaluator when the chief deletes the checkpoint being exported.
    exporter_class = tf.estimator.BestExporter if args.exporter == "tf.estimator" else BestExporter
    exporter = exporter_class(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=serving_input_receiver_fn,
        exports_to_keep=args.exports_to_keep,
    )
    train_hooks = [StepDelayHook(args.step_delay_secs)] if args.step_delay_secs > 0 else []
    eval_hooks = [SlowEvaluationHook(args.slow_eval_secs)] if args.slow_eval_secs > 0 else []
    train_spec = tf.estimator.TrainSpec(train_input_fn, max_steps=args.max_steps, hooks=train_hooks)
    eval_spec = tf.estimator.EvalSpec(
        make_eval_input_fn(args.eval_examples),
        steps=None,
        exporters=[exporter],
        hooks=eval_hooks,
        # Evaluate every new checkpoint as soon as it appears.
        start_delay_secs=0,
        throttle_secs=args.throttle_secs,
    )
    for attempt in range(MAX_LOST_CHECKPOINTS + 1):
        try:
            tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
            return
        except (ValueError, tf.errors.NotFoundError) as e:
            lost = lost_checkpoint(e)
            if task_type() != "evaluator" or lost is None or attempt == MAX_LOST_CHECKPOINTS:
                raise
            # tf.estimator's evaluator picks the latest checkpoint and restores it
            # a moment later; if the chief's retention (keep_checkpoint_max) deletes
            # it in between, Estimator.evaluate raises and train_and_evaluate ends.
            # Evaluating the newest checkpoint again is all there is to do; the
            # exporter keeps the best result it has seen.
            logging.warning(
                "The chief deleted checkpoint %s before the evaluator could restore it "
                "(%s); evaluating the latest checkpoint again. If this happens often, raise "
                "keep_checkpoint_max.",
                lost,
                type(e).__name__,
            )


#: How often the evaluator starts again after losing a checkpoint to the chief.
MAX_LOST_CHECKPOINTS = 20

_CHECKPOINT_IN_MESSAGE = re.compile(r"(\S*model\.ckpt-\d+)")


def lost_checkpoint(error: BaseException) -> Optional[str]:
    """The checkpoint that `Estimator.evaluate` could not restore because it is gone.

    Returns:
      The checkpoint, if `error` was raised inside `Estimator.evaluate` (not by
      an exporter), names a checkpoint, and that checkpoint no longer exists;
      else None.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not any(f.name == "evaluate" and f.filename.endswith("estimator.py") for f in frames):
        return None
    match = _CHECKPOINT_IN_MESSAGE.search(str(error))
    if not match or tf.io.gfile.exists(match.group(1) + ".index"):
        return None
    return match.group(1)


def run_ps(args: argparse.Namespace) -> int:
    """Serves as parameter server until SIGTERM or SIGINT; returns the exit status.

    `train_and_evaluate` never returns on a ps (it blocks in `server.join()`),
    and a Python signal handler cannot run while the main thread is blocked in
    TensorFlow, so the server runs in a daemon thread and the main thread waits
    for a signal. Status 0 means the ps was serving until it was told to stop;
    1 means the server itself failed (for example, its port was taken).
    """
    stop = threading.Event()
    failure: List[BaseException] = []

    def serve() -> None:
        try:
            run(args)
        except BaseException as e:  # pylint: disable=broad-except
            failure.append(e)
            logging.exception("The parameter server failed")

    def on_signal(signum: int, frame) -> None:
        del frame
        logging.info("Parameter server: received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = threading.Thread(target=serve, name="ps-server", daemon=True)
    server.start()
    while not stop.is_set() and server.is_alive():
        stop.wait(0.5)
    if failure or not stop.is_set():
        logging.error("Parameter server stopped without being asked to: %s", failure)
        return 1
    return 0


def use_s3() -> None:
    """Registers the s3:// filesystem, which TensorFlow >= 2.6 left to tensorflow-io."""
    try:
        import tensorflow_io  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError as e:
        raise SystemExit(
            "An s3:// model_dir needs tensorflow-io: pip install tensorflow-io "
            "(the release built for your TensorFlow: 0.36 for TensorFlow 2.15)"
        ) from e


def task_type() -> Optional[str]:
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", required=True, help="shared by all tasks: gs://, s3://, ...")
    parser.add_argument(
        "--exporter",
        choices=("best_exporter", "tf.estimator"),
        default="best_exporter",
        help="best_exporter.BestExporter, or tf.estimator.BestExporter to compare",
    )
    parser.add_argument("--max_steps", type=int, default=400)
    parser.add_argument("--save_checkpoints_steps", type=int, default=40)
    parser.add_argument("--keep_checkpoint_max", type=int, default=5)
    parser.add_argument("--exports_to_keep", type=int, default=3)
    parser.add_argument(
        "--throttle_secs", type=int, default=1, help="least seconds between evaluations"
    )
    parser.add_argument("--eval_examples", type=int, default=1024)
    parser.add_argument(
        "--step_delay_secs",
        type=float,
        default=0.05,
        help="sleep after each training step, as a bigger model would take; 0 in real use",
    )
    parser.add_argument(
        "--slow_eval_secs",
        type=float,
        default=0.0,
        help="make each evaluation this much slower, to see the evaluator fall behind",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # One line per message, with the time: TensorFlow's own handler prints neither
    # the time nor only once when the root logger also has a handler.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tf.get_logger().handlers.clear()
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.INFO)
    if args.model_dir.startswith("s3://"):
        use_s3()
    kind = task_type()
    logging.info("Starting task %r (TF_CONFIG=%s)", kind, os.environ.get("TF_CONFIG"))
    if kind == "ps":
        code = run_ps(args)
        # Exit at once, without interpreter shutdown: the server thread is still
        # blocked inside TensorFlow, and there is nothing to save but the log.
        logging.shutdown()
        os._exit(code)
    run(args)
    logging.info("Task %r finished", kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
