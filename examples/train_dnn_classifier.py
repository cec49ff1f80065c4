"""Train a DNNClassifier and keep only its best models, with `best_exporter.BestExporter`.

The example from the documentation of `tf.estimator.BestExporter`, made
runnable: a `DNNClassifier` on a hashed categorical feature with an embedding,
a parsing serving input receiver, and a `BestExporter` in the `EvalSpec` of
`tf.estimator.train_and_evaluate`. After each evaluation the exporter writes a
SavedModel under `<model_dir>/export/best_exporter/<version>` if the model beats
every model evaluated before it, and keeps the newest `--exports_to_keep`.

    python examples/train_dnn_classifier.py [--model_dir DIR] [--steps 1000]
        [--exports_to_keep 5]

The data are generated, the same on every run: whether a customer buys a
product, given its category (a string) and its price. Run it again with the same
`--model_dir` and more `--steps` to see the exporter carry the best result over
a restart.
"""

import argparse
import logging
import os
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

# No TensorFlow C++ log lines (TensorFlow 2.15 prints harmless cuDNN/cuFFT/cuBLAS
# "Unable to register factory" errors at import); set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import best_exporter  # noqa: E402
from best_exporter import BestExporter  # noqa: E402

EXPORTER_NAME = "best_exporter"
SEED = 42

# ----------------------------------------------------------------------------
# The data: each category has its own price threshold below which customers
# buy. The model has to learn the threshold of each category through the
# category's embedding; 10% of the labels are flipped, so the eval loss stops
# improving at some point and not every evaluation is exported.

CATEGORIES = (
    "books", "games", "garden", "music", "shoes", "tools",
    "toys", "phones", "sports", "kitchen", "beauty", "office",
)  # fmt: skip
THRESHOLDS = dict(zip(CATEGORIES, np.linspace(-0.8, 0.8, len(CATEGORIES))))
LABEL_NOISE = 0.1


def would_buy(category: str, price: float) -> bool:
    """The rule behind the labels, before noise."""
    return price < THRESHOLDS[category]


def make_data(n: int, seed: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """A labelled sample of `n` (category, price) pairs, the same for the same seed."""
    rng = np.random.RandomState(seed)
    category = np.array(CATEGORIES)[rng.randint(0, len(CATEGORIES), n)]
    price = rng.uniform(-1, 1, n).astype(np.float32)
    label = price < np.array([THRESHOLDS[c] for c in category])
    label ^= rng.uniform(size=n) < LABEL_NOISE
    return {"category": category, "price": price}, label.astype(np.int64)


def train_input_fn() -> tf.data.Dataset:
    features, labels = make_data(4096, seed=0)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.shuffle(4096, seed=SEED).repeat().batch(32)


def eval_input_fn() -> tf.data.Dataset:
    features, labels = make_data(1024, seed=1)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(256)


# ----------------------------------------------------------------------------
# The model and its serving signature.


def feature_columns() -> list:
    category = tf.feature_column.categorical_column_with_hash_bucket(
        "category", hash_bucket_size=100
    )
    return [
        tf.feature_column.embedding_column(category, dimension=4),
        tf.feature_column.numeric_column("price"),
    ]


def make_estimator(model_dir: str, save_checkpoints_steps: int) -> tf.estimator.Estimator:
    return tf.estimator.DNNClassifier(
        hidden_units=[16, 8],
        feature_columns=feature_columns(),
        optimizer=lambda: tf.keras.optimizers.legacy.Adagrad(learning_rate=0.1),
        config=tf.estimator.RunConfig(
            model_dir=model_dir,
            # Every checkpoint is evaluated, and judged by the exporter.
            save_checkpoints_steps=save_checkpoints_steps,
            tf_random_seed=SEED,
        ),
    )


def make_serving_input_receiver_fn():
    """Serves serialized `tf.train.Example`s, as TensorFlow Serving sends them.

    The receiver parses them with the spec that the feature columns need.
    """
    spec = tf.feature_column.make_parse_example_spec(feature_columns())
    return tf.estimator.export.build_parsing_serving_input_receiver_fn(spec)


def make_example(category: str, price: float) -> bytes:
    """A serialized `tf.train.Example`, as a client sends it to the served model."""
    feature = {
        "category": tf.train.Feature(bytes_list=tf.train.BytesList(value=[category.encode()])),
        "price": tf.train.Feature(float_list=tf.train.FloatList(value=[price])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# ----------------------------------------------------------------------------
# Showing what happens.


class EvalProgress(tf.estimator.Exporter):
    """Prints one line per evaluation; exports nothing.

    `train_and_evaluate` hands each evaluation's result to the exporters of the
    `EvalSpec`, in order; listed before the BestExporter, this one prints the
    metrics, and the BestExporter's log line that follows tells what it did.
    """

    def __init__(self, metrics: Sequence[str] = ("loss", "accuracy", "auc")):
        self._metrics = tuple(metrics)
        self._evaluations = 0

    @property
    def name(self) -> str:
        return "progress"

    def export(
        self,
        estimator: tf.estimator.Estimator,
        export_path: Union[str, bytes],
        checkpoint_path: Optional[Union[str, bytes]],
        eval_result: Dict[str, Any],
        is_the_final_export: bool,
    ) -> None:
        del estimator, export_path, checkpoint_path, is_the_final_export
        self._evaluations += 1
        metrics = ", ".join(
            f"{name} {float(eval_result[name]):.4f}"
            for name in self._metrics
            if name in eval_result
        )
        print(
            f"evaluation {self._evaluations} at step {eval_result['global_step']}: {metrics}",
            flush=True,
        )


def show_exporter_decisions() -> None:
    """Logs the BestExporter's decisions, without the rest of TensorFlow's INFO lines.

    The library logs to `tensorflow.best_exporter`, a child of TensorFlow's
    logger, which Estimator floods with INFO lines. A record is filtered by the
    level of the logger it is logged to, not by its parents' levels, so the
    child's lines still reach TensorFlow's handler (on stderr).
    """
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    logging.getLogger("tensorflow.best_exporter").setLevel(logging.INFO)


def print_exports(export_dir: str) -> List[best_exporter.ExportRecord]:
    """Prints each kept export with its step and metrics, from its record, and returns them."""
    exports = best_exporter.read_export_records(export_dir)
    print(f"\n{len(exports)} exports kept in {export_dir}, oldest first:")
    for export in exports:
        result = export.eval_result or {}
        metrics = ", ".join(
            f"{name} {result[name]:.4f}" for name in ("loss", "accuracy") if name in result
        )
        print(f"  version {export.version}  step {result.get('global_step')}: {metrics}")
    return exports


def predict(export_dir: str, category: str, price: float) -> Tuple[str, float]:
    """Loads an export and classifies one example through its serving signature.

    Returns:
      The predicted class and its probability.
    """
    model = tf.saved_model.load(export_dir)
    serve = model.signatures["serving_default"]
    outputs = serve(inputs=tf.constant([make_example(category, price)]))
    scores = outputs["scores"].numpy()[0]
    best = int(np.argmax(scores))
    return outputs["classes"].numpy()[0][best].decode(), float(scores[best])


# ----------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_dir",
        help="where checkpoints and exports go, kept afterwards; if not given, a new "
        "temporary directory, deleted at the end",
    )
    parser.add_argument("--steps", type=int, default=1000, help="train up to this global step")
    parser.add_argument(
        "--save_checkpoints_steps",
        type=int,
        default=100,
        help="checkpoint, and so evaluate, every this many steps",
    )
    parser.add_argument("--exports_to_keep", type=int, default=5, help="how many exports to keep")
    args = parser.parse_args(argv)
    for flag in ("steps", "save_checkpoints_steps", "exports_to_keep"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    show_exporter_decisions()
    if args.model_dir:
        return run(args, args.model_dir)
    with tempfile.TemporaryDirectory(prefix="best_exporter_example-") as model_dir:
        status = run(args, model_dir)
        print(f"\nDeleted the temporary {model_dir}; pass --model_dir to keep the exports.")
    return status


def run(args: argparse.Namespace, model_dir: str) -> int:
    """Trains in `model_dir`, prints the kept exports, and predicts with the served one."""
    print(f"model_dir: {model_dir}", flush=True)

    estimator = make_estimator(model_dir, args.save_checkpoints_steps)
    exporter = BestExporter(
        name=EXPORTER_NAME,
        serving_input_receiver_fn=make_serving_input_receiver_fn(),
        exports_to_keep=args.exports_to_keep,
    )
    train_spec = tf.estimator.TrainSpec(train_input_fn, max_steps=args.steps)
    eval_spec = tf.estimator.EvalSpec(
        eval_input_fn,
        steps=None,  # The whole eval set.
        exporters=[EvalProgress(), exporter],
        # Evaluate every checkpoint as soon as it is written.
        start_delay_secs=0,
        throttle_secs=0,
    )
    tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)

    export_dir = os.path.join(model_dir, "export", EXPORTER_NAME)
    exports = print_exports(export_dir)
    if not exports:
        print("No export was written.", file=sys.stderr)
        return 1
    # TensorFlow Serving serves the newest version; BestExporter makes it the best.
    best = exports[-1].path
    category, price = "office", 0.25
    predicted, probability = predict(best, category, price)
    print(
        f"\nPrediction of {best} for category={category!r}, price={price}: class {predicted} "
        f"with probability {probability:.3f} (the rule behind the labels says "
        f"{int(would_buy(category, price))})"
    )
    if args.model_dir:
        print(
            "\nWhich model is served and why, and how the best evolved:\n"
            f"  best-exporter list {export_dir}\n"
            f"  best-exporter history {model_dir}\n"
            f"  tensorboard --logdir {model_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
