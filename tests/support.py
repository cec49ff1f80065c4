"""Test helpers shared by the test modules: a fake estimator, event writers and a
tiny real model.

Fakes are for the fast unit tests of the decision; every behaviour that a user
sees is also tested with the real model below.
"""

import itertools
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

# ----------------------------------------------------------------------------
# A fake estimator: writes a version directory the way Estimator does
# (temp-<ts>, assets.extra copied in, renamed), without a model.


class FakeEstimator:
    """Just enough of `tf.estimator.Estimator` for the exporter.

    Args:
      model_dir: the model directory.
      first_version: the version number of the first export; each export takes
        the next one, so tests need not wait for the clock as Estimator does.
      error: if set, `export_saved_model` raises it (after writing a temp dir,
        as a failing real export does). As a real one, it also raises if
        `checkpoint_path` does not exist, and if an `assets_extra` source does
        not (NotFoundError, from copying it).
    """

    def __init__(self, model_dir: str, first_version: int = 1_700_000_000, error=None):
        self.model_dir = model_dir
        self.calls: List[Dict[str, Any]] = []
        self.error = error
        self._versions = itertools.count(first_version)

    def export_saved_model(
        self,
        export_dir_base,
        serving_input_receiver_fn,
        assets_extra=None,
        as_text=False,
        checkpoint_path=None,
    ):
        self.calls.append(
            dict(
                export_dir_base=export_dir_base,
                serving_input_receiver_fn=serving_input_receiver_fn,
                assets_extra=dict(assets_extra or {}),
                as_text=as_text,
                checkpoint_path=checkpoint_path,
            )
        )
        base = export_dir_base.decode() if isinstance(export_dir_base, bytes) else export_dir_base
        version = next(self._versions)
        temp = os.path.join(base, f"temp-{version}")
        tf.io.gfile.makedirs(temp)
        if self.error is not None:
            raise self.error
        if checkpoint_path is not None and not _checkpoint_exists(checkpoint_path):
            # What tf.compat.v1.train.Saver.restore raises inside a real export.
            raise ValueError(f"The passed save_path is not a valid checkpoint: {checkpoint_path}")
        with tf.io.gfile.GFile(os.path.join(temp, "saved_model.pb"), "w") as f:
            f.write("fake")
        for destination, source in (assets_extra or {}).items():
            target = os.path.join(temp, "assets.extra", destination)
            tf.io.gfile.makedirs(os.path.dirname(target))
            tf.io.gfile.copy(source, target)
        final = os.path.join(base, str(version))
        tf.io.gfile.rename(temp, final)
        return final.encode()


def _checkpoint_exists(checkpoint_path) -> bool:
    prefix = checkpoint_path.decode() if isinstance(checkpoint_path, bytes) else checkpoint_path
    return tf.io.gfile.exists(prefix + ".index") or tf.io.gfile.exists(prefix)


def serving_input_receiver_fn_stub():
    """A stand-in receiver for FakeEstimator, which never calls it."""
    raise AssertionError("FakeEstimator does not build graphs")


def eval_result(step: int, **metrics: float) -> Dict[str, Any]:
    """An eval result as `Estimator.evaluate` returns it."""
    result: Dict[str, Any] = {"global_step": np.int64(step)}
    result.update({k: np.float32(v) for k, v in metrics.items()})
    return result


# ----------------------------------------------------------------------------
# Event files written by TensorFlow itself.


_suffixes = itertools.count()


def write_legacy_events(log_dir: str, results: Iterable[Tuple[int, Mapping[str, float]]]) -> str:
    """Writes eval results as `Estimator.evaluate` does: one `simple_value` event per step.

    Returns:
      The path of the event file written.
    """
    tf.io.gfile.makedirs(log_dir)
    with tf.Graph().as_default():
        # A unique suffix: two writers in one second would otherwise share a name.
        writer = tf.compat.v1.summary.FileWriter(log_dir, filename_suffix=f".{next(_suffixes)}")
        for step, metrics in results:
            summary = tf.compat.v1.Summary()
            for tag, value in metrics.items():
                summary.value.add(tag=tag, simple_value=float(value))
            writer.add_summary(summary, step)
        writer.close()
    return _newest_event_file(log_dir)


def write_tf2_events(log_dir: str, results: Iterable[Tuple[int, Mapping[str, float]]]) -> str:
    """Writes eval results with `tf.summary.scalar` (TF2 tensor scalars, one event per value).

    Returns:
      The path of the event file written.
    """
    tf.io.gfile.makedirs(log_dir)
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for step, metrics in results:
            for tag, value in metrics.items():
                tf.summary.scalar(tag, value, step=step)
    writer.close()
    return _newest_event_file(log_dir)


def _newest_event_file(log_dir: str) -> str:
    literal_dir = re.sub(r"([\[*?])", r"[\1]", log_dir)  # Glob characters in the dir's name.
    files = tf.io.gfile.glob(os.path.join(literal_dir, "*.tfevents.*"))
    return max(files, key=lambda f: (tf.io.gfile.stat(f).mtime_nsec, f))


# ----------------------------------------------------------------------------
# A tiny real model: a DNNClassifier on a numeric and a hashed categorical
# feature, deterministic data, seconds to train.

COLORS = (b"red", b"green", b"blue", b"yellow")


def feature_columns():
    color = tf.feature_column.categorical_column_with_hash_bucket("color", 16)
    return [
        tf.feature_column.numeric_column("x"),
        tf.feature_column.embedding_column(color, dimension=2),
    ]


def make_data(n: int, seed: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, n).astype(np.float32)
    color = np.array(COLORS)[rng.randint(0, len(COLORS), n)]
    label = ((x > 0) ^ np.isin(color, COLORS[:2])).astype(np.int64)
    return {"x": x, "color": color}, label


def train_input_fn():
    features, labels = make_data(512, seed=0)
    return (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .shuffle(512, seed=0)
        .repeat()
        .batch(32)
    )


def eval_input_fn():
    features, labels = make_data(128, seed=1)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)


def serving_input_receiver_fn():
    spec = tf.feature_column.make_parse_example_spec(feature_columns())
    return tf.estimator.export.build_parsing_serving_input_receiver_fn(spec)()


def make_classifier(
    model_dir: str, save_checkpoints_steps: int = 20, **config
) -> "tf.estimator.Estimator":
    return tf.estimator.DNNClassifier(
        hidden_units=[8],
        feature_columns=feature_columns(),
        model_dir=model_dir,
        optimizer=lambda: tf.keras.optimizers.legacy.Adagrad(learning_rate=0.1),
        config=tf.estimator.RunConfig(
            save_checkpoints_steps=save_checkpoints_steps, tf_random_seed=42, **config
        ),
    )


def train_and_evaluate(estimator, exporters, max_steps: int) -> None:
    """Runs `tf.estimator.train_and_evaluate`, evaluating every checkpoint."""
    tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(train_input_fn, max_steps=max_steps),
        tf.estimator.EvalSpec(
            eval_input_fn, steps=None, exporters=exporters, start_delay_secs=0, throttle_secs=0
        ),
    )


def serialized_examples(xs: Sequence[float], colors: Sequence[bytes]) -> List[bytes]:
    examples = []
    for x, color in zip(xs, colors):
        feature = {
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
            "color": tf.train.Feature(bytes_list=tf.train.BytesList(value=[color])),
        }
        examples.append(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )
    return examples


def serve(export_dir, examples: Optional[List[bytes]] = None) -> np.ndarray:
    """Loads an export and returns the class scores its serving signature gives."""
    if examples is None:
        examples = serialized_examples([-0.5, 0.5], [b"red", b"blue"])
    loaded = tf.saved_model.load(
        export_dir.decode() if isinstance(export_dir, bytes) else export_dir
    )
    outputs = loaded.signatures["serving_default"](inputs=tf.constant(examples))
    return outputs["scores"].numpy()
