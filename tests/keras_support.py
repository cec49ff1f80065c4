"""Test helpers for the Keras front-end: a tiny real model, its data, and callbacks
that script what Keras reports or simulate a preemption.

Needs no tf.estimator: runs with tf.keras (TensorFlow 2.13-2.15) and Keras 3.
"""

import datetime
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from best_exporter.core import layout, records

keras = tf.keras
# tf.keras is Keras 2 on TensorFlow 2.13-2.15 and, with TF_USE_LEGACY_KERAS=1, tf_keras on
# 2.16+; otherwise Keras 3, the only one with `keras.ops`.
KERAS_3 = hasattr(keras, "ops")


def make_data(n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Points in the square; the label says whether x0 > x1."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    return x, (x[:, 0] > x[:, 1]).astype(np.float32)


def make_model(seed: int = 0, learning_rate: float = 0.05) -> Any:
    """A compiled logistic regression on two inputs: seconds to train, a real SavedModel."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid", name="logit")]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


class ScriptedMetric(keras.callbacks.Callback):
    """Replaces one metric in the epoch logs with scripted values, one per epoch.

    Listed before the callback under test: Keras hands every callback the same
    logs dict, so this decides what the callback under test sees.
    """

    def __init__(self, name: str, values: Sequence[float]):
        super().__init__()
        self._name = name
        self._values = list(values)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if logs is not None and epoch < len(self._values):
            logs[self._name] = self._values[epoch]


class Preempted(Exception):
    """What a preempted job would die of."""


class PreemptAfterEpoch(keras.callbacks.Callback):
    """Raises `Preempted` at the end of one epoch, after the callbacks before it ran."""

    def __init__(self, epoch: int):
        super().__init__()
        self._epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if epoch == self._epoch:
            raise Preempted(f"preempted after epoch {epoch}")


def serving_fn(export_dir: str):
    """The `serving_default` signature of an export, and the name of its one input."""
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1]
    return loaded, signature, input_name


def serve(export_dir: str, x: np.ndarray) -> np.ndarray:
    """Calls an export's `serving_default` signature on `x` and returns its one output."""
    loaded, signature, input_name = serving_fn(export_dir)
    del loaded  # Kept alive until the call returned.
    (output,) = signature(**{input_name: tf.constant(x)}).values()
    return output.numpy()


def write_estimator_era_export(
    export_dir: str, version: int, step: int, metrics: Mapping[str, float]
) -> str:
    """Writes a version as `best_exporter.BestExporter` leaves it: a SavedModel and its record.

    The SavedModel is a small tf.Module with a `serving_default` signature; the
    record is made by the same function BestExporter uses.
    """

    class Linear(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[1.0], [-1.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def serve(self, x):
            return {"scores": tf.sigmoid(tf.matmul(x, self.w))}

    path = os.path.join(export_dir, str(version))
    module = Linear()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    record = records.make_record(
        {"global_step": step, **metrics},
        f"/models/run1/model.ckpt-{step}",
        os.path.basename(export_dir),
        datetime.datetime(2026, 11, 25, 12, tzinfo=datetime.timezone.utc),
    )
    tf.io.gfile.makedirs(os.path.dirname(layout.record_path(path)))
    with tf.io.gfile.GFile(layout.record_path(path), "w") as f:
        f.write(records.dumps_record(record))
    return path
