"""One Keras training process for the distributed tests of BestExportCallback.

    python tests/keras_worker.py --strategy mirrored --export_dir DIR
    TF_CONFIG=... python tests/keras_worker.py --strategy multi_worker --export_dir DIR

Trains the tiny model of keras_support under a tf.distribute strategy, with the
validation loss scripted by `--val_losses` so that every process decides alike,
and prints one JSON line at the end: the task, whether it is the chief, and the
callback's decisions as logged.
"""

import argparse
import json
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_support  # noqa: E402
import tensorflow as tf  # noqa: E402

from best_exporter.keras import BestExportCallback  # noqa: E402


class _Decisions(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["mirrored", "multi_worker"], required=True)
    parser.add_argument("--export_dir", required=True)
    parser.add_argument("--val_losses", default="0.5,0.6,0.4,0.3")
    args = parser.parse_args()
    val_losses = [float(v) for v in args.val_losses.split(",")]
    if hasattr(tf.keras, "config") and hasattr(tf.keras.config, "disable_traceback_filtering"):
        tf.keras.config.disable_traceback_filtering()  # Whole tracebacks in the task's log.

    if args.strategy == "mirrored":
        # Two replicas on one machine without accelerators: two logical CPUs.
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()

    decisions = _Decisions()
    logger = logging.getLogger("tensorflow.best_exporter")
    logger.setLevel(logging.INFO)
    logger.addHandler(decisions)

    x, y = keras_support.make_data(256, seed=0)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).with_options(options)
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).with_options(options)
    with strategy.scope():
        model = keras_support.make_model(seed=0)
    callback = BestExportCallback(args.export_dir, exports_to_keep=None)
    model.fit(
        train,
        validation_data=val,
        epochs=len(val_losses),
        verbose=0,
        callbacks=[keras_support.ScriptedMetric("val_loss", val_losses), callback],
    )
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    print(
        json.dumps(
            {
                "task": cluster,
                "replicas": strategy.num_replicas_in_sync,
                "chief": bool(strategy.extended.should_checkpoint),
                "decisions": decisions.lines,
                "best_export_path": callback.best_export_path,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
