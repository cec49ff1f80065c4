"""Leave Estimator for Keras without changing serving: continue the same export directory.

`train_dnn_classifier.py` trained a DNNClassifier with `best_exporter.BestExporter`,
which exported its best models under `<model_dir>/export/best_exporter/<version>`.
This script trains a Keras model on the same data and hands it the same export
directory through `best_exporter.keras.BestExportCallback`:

* At the start of `fit` the callback restores the Estimator era's best from the
  export records. Keras calls the validation loss `val_loss` where the Estimator
  said `loss`; `metric_names={"val_loss": "loss"}` lets it compare the two.
* A Keras model is exported only when it beats that best, so TensorFlow Serving,
  which serves the highest version, never serves a regression.
* Through `export_fn`, each Keras export keeps the Estimator's `serving_default`
  signature: serialized `tf.train.Example`s in (`inputs`), `classes` and `scores`
  out. Serving clients do not change.

    python examples/train_dnn_classifier.py --model_dir /tmp/run1
    python examples/migrate_to_keras.py --model_dir /tmp/run1 [--epochs 8]

Runs with tf.keras on TensorFlow 2.13-2.15 and with Keras 3 on TensorFlow 2.16+.
"""

import argparse
import logging
import os
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

# No TensorFlow C++ log lines; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import best_exporter  # noqa: E402
from best_exporter.keras import BestExportCallback  # noqa: E402

keras = tf.keras
EXPORTER_NAME = "best_exporter"  # The directory train_dnn_classifier.py exported to.
SEED = 42

# ----------------------------------------------------------------------------
# The data of train_dnn_classifier.py, repeated here so that this script runs
# where tf.estimator does not exist (TensorFlow 2.16+); a test checks that both
# scripts make the same data.

CATEGORIES = (
    "books", "games", "garden", "music", "shoes", "tools",
    "toys", "phones", "sports", "kitchen", "beauty", "office",
)  # fmt: skip
THRESHOLDS = dict(zip(CATEGORIES, np.linspace(-0.8, 0.8, len(CATEGORIES))))
LABEL_NOISE = 0.1
# As the Estimator's categorical_column_with_hash_bucket("category", 100).
HASH_BUCKETS = 100


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


def make_example(category: str, price: float) -> bytes:
    """A serialized `tf.train.Example`, as a client sends it to the served model."""
    feature = {
        "category": tf.train.Feature(bytes_list=tf.train.BytesList(value=[category.encode()])),
        "price": tf.train.Feature(float_list=tf.train.FloatList(value=[price])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# ----------------------------------------------------------------------------
# The Keras model: the DNNClassifier's design (an embedding of the hashed
# category, the price, two hidden layers), a little wider. Strings are hashed
# outside the model (in the input pipeline and in the serving signature), so the
# same model works on tf.keras and Keras 3.


def model_inputs(features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Raw features (category strings, prices) to the model's inputs."""
    return {
        "category_id": tf.strings.to_hash_bucket_fast(features["category"], HASH_BUCKETS),
        "price": tf.reshape(tf.cast(features["price"], tf.float32), [-1, 1]),
    }


def make_model() -> Any:
    keras.utils.set_random_seed(SEED)
    category_id = keras.Input(shape=(), dtype="int64", name="category_id")
    price = keras.Input(shape=(1,), dtype="float32", name="price")
    embedded = keras.layers.Embedding(HASH_BUCKETS, 4)(category_id)
    hidden = keras.layers.Concatenate()([embedded, price])
    hidden = keras.layers.Dense(32, activation="relu")(hidden)
    hidden = keras.layers.Dense(16, activation="relu")(hidden)
    probability = keras.layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    model = keras.Model({"category_id": category_id, "price": price}, probability)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.003),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def dataset(n: int, seed: int, batch_size: int, training: bool) -> tf.data.Dataset:
    features, labels = make_data(n, seed)
    data = tf.data.Dataset.from_tensor_slices((features, labels))
    if training:
        data = data.shuffle(n, seed=SEED)
    return data.batch(batch_size).map(lambda f, y: (model_inputs(f), y))


def export_with_estimator_signature(model: Any, path: str) -> None:
    """`export_fn`: the Estimator's `serving_default` signature over the Keras model.

    Parses serialized `tf.train.Example`s given as `inputs`, as the Estimator's
    parsing serving input receiver did, and returns `classes` and `scores` as
    DNNClassifier's classification signature did.
    """
    spec = {
        "category": tf.io.FixedLenFeature([], tf.string),
        "price": tf.io.FixedLenFeature([], tf.float32),
    }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve(inputs):
        probability = model(model_inputs(tf.io.parse_example(inputs, spec)), training=False)
        scores = tf.concat([1.0 - probability, probability], axis=1)
        classes = tf.tile(tf.constant([[b"0", b"1"]]), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    tf.saved_model.save(model, path, signatures={"serving_default": serve})


# ----------------------------------------------------------------------------
# Showing what happens.


class EpochProgress(keras.callbacks.Callback):
    """Prints one line per epoch, before the callback's decision is logged."""

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        logs = logs or {}
        print(
            f"epoch {epoch + 1}: val_loss {float(logs['val_loss']):.4f}, "
            f"val_accuracy {float(logs['val_accuracy']):.4f}",
            flush=True,
        )


def show_exporter_decisions() -> None:
    """Logs the callback's decisions at INFO, once each, without TensorFlow's other lines.

    The library logs to `tensorflow.best_exporter`, a child of TensorFlow's
    logger. Its lines get a handler of their own here, because Keras 3 adds a
    handler to the root logger during `fit`, which would print each line twice.
    """
    tf.get_logger().setLevel(logging.ERROR)
    decisions = logging.getLogger("tensorflow.best_exporter")
    decisions.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    decisions.addHandler(handler)
    decisions.propagate = False


def era(export: best_exporter.ExportRecord) -> str:
    if export.record is None:
        return "no record"
    return "Keras" if "epoch" in export.record else "Estimator"


def loss_of(export: best_exporter.ExportRecord) -> Optional[float]:
    """The loss on the eval data, by the name its era used."""
    metrics = (export.record or {}).get("metrics", {})
    return metrics.get("val_loss", metrics.get("loss"))


def print_exports(export_dir: str, title: str) -> List[best_exporter.ExportRecord]:
    exports = best_exporter.read_export_records(export_dir)
    print(f"\n{title}: {len(exports)} exports in {export_dir}, oldest first:")
    for export in exports:
        loss = loss_of(export)
        where = (
            f"epoch {export.record['epoch']}"
            if era(export) == "Keras"
            else f"step {(export.record or {}).get('global_step')}"
        )
        shown = f"{loss:.4f}" if loss is not None else "?"
        print(f"  version {export.version}  {era(export):9s} {where}: eval loss {shown}")
    return exports


def predict(export_dir: str, category: str, price: float) -> Tuple[str, float]:
    """Classifies one example as a Serving client does: serialized Example in."""
    model = tf.saved_model.load(export_dir)
    outputs = model.signatures["serving_default"](
        inputs=tf.constant([make_example(category, price)])
    )
    scores = outputs["scores"].numpy()[0]
    best = int(np.argmax(scores))
    return outputs["classes"].numpy()[0][best].decode(), float(scores[best])


# ----------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model_dir",
        help="the model_dir of train_dnn_classifier.py; default: a new temporary directory",
    )
    parser.add_argument("--epochs", type=int, default=8, help="Keras epochs")
    parser.add_argument(
        "--steps_per_epoch", type=int, default=128, help="batches of 32 per epoch (128: all data)"
    )
    parser.add_argument("--exports_to_keep", type=int, default=5, help="how many exports to keep")
    args = parser.parse_args(argv)
    for flag in ("epochs", "steps_per_epoch", "exports_to_keep"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    show_exporter_decisions()
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="best_exporter_migrate-")
    export_dir = os.path.join(model_dir, "export", EXPORTER_NAME)
    before = print_exports(export_dir, "Before Keras")
    estimator_losses = [loss_of(e) for e in before if era(e) == "Estimator" and loss_of(e)]
    if estimator_losses:
        print(f"The Estimator era's best eval loss, the one to beat: {min(estimator_losses):.4f}")
    else:
        print("No Estimator export to continue: run train_dnn_classifier.py first to see one.")
    print(flush=True)

    callback = BestExportCallback(
        export_dir,
        monitor="val_loss",
        metric_names={"val_loss": "loss"},
        exports_to_keep=args.exports_to_keep,
        export_fn=export_with_estimator_signature,
    )
    model = make_model()
    model.fit(
        dataset(4096, seed=0, batch_size=32, training=True).repeat(),
        steps_per_epoch=args.steps_per_epoch,
        epochs=args.epochs,
        # The Estimator's eval data: its loss is comparable with the records' `loss`.
        validation_data=dataset(1024, seed=1, batch_size=256, training=False),
        callbacks=[EpochProgress(), callback],
        verbose=0,
    )

    exports = print_exports(export_dir, "After Keras")
    if not exports:
        print("No export was written.", file=sys.stderr)
        return 1
    keras_exports = [e for e in exports if era(e) == "Keras"]
    if estimator_losses:
        if keras_exports:
            beaten = keras_exports[0]
            print(
                f"The Estimator's best ({min(estimator_losses):.4f}) was respected until epoch "
                f"{beaten.record['epoch']}, whose val_loss {loss_of(beaten):.4f} beat it."
            )
        else:
            print(
                f"No Keras epoch beat the Estimator's best ({min(estimator_losses):.4f}): "
                "nothing was exported, and Serving keeps the Estimator's model."
            )
    # TensorFlow Serving serves the newest version; the callback makes it the best.
    served = exports[-1]
    category, price = "office", 0.25
    predicted, probability = predict(served.path, category, price)
    print(
        f"\nServing {served.path} ({era(served)} era), called as before with a serialized "
        f"tf.train.Example for category={category!r}, price={price}: class {predicted} with "
        f"probability {probability:.3f} (the rule behind the labels says "
        f"{int(would_buy(category, price))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
