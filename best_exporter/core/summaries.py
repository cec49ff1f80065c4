"""TensorBoard scalars of the exported bests: how the best evolved, beside the eval curve.

After each export a front-end writes the exported result's metrics, under the
eval run's tag names (`loss`, `accuracy`, ...) and at the exported step, into
an event file of its own in the export base directory. TensorBoard shows that
directory (`export/<name>` under the model_dir) as a run, so each scalar chart
overlays the eval curve with the exported bests. TensorFlow Serving ignores
the files, which are not numeric version directories, and retention touches
only version and `temp-*` directories (docs/design.md, "TensorBoard: the
exported bests as a run").

Framework-neutral: plain `Event` protos written as TFRecords through
`tf.io.TFRecordWriter`, which works on every filesystem `tf.io.gfile` knows,
in eager and graph mode alike, from any thread.
"""

import os
import socket
import time
from typing import Any, Mapping, Optional

import tensorflow as tf
from tensorboard.compat.proto import event_pb2, summary_pb2

from best_exporter.core import records
from best_exporter.core.log import logger

# Ends every file name, so that a person listing the export dir knows whose it is.
FILE_SUFFIX = ".best_exporter"


def write_scalars(
    logdir: str,
    step: int,
    metrics: Mapping[str, float],
    wall_time: Optional[float] = None,
) -> str:
    """Writes one step of scalars to a new event file in `logdir`.

    A new file per call: object stores cannot append, and a file cut short by a
    kill costs TensorBoard that one step only.

    Args:
      logdir: the run's directory, e.g. `model_dir/export/best_exporter`.
      step: the step the values belong to, the exported `global_step`.
      metrics: tag -> value, e.g. `{'loss': 0.31, 'accuracy': 0.9}`.
      wall_time: seconds since the epoch; now if None.

    Returns:
      The path of the event file written.

    Raises:
      tf.errors.OpError, OSError: if the file cannot be written.
    """
    wall_time = time.time() if wall_time is None else wall_time
    # TensorBoard reads a run's files in name order: the time leads, as in its own names.
    name = (
        f"events.out.tfevents.{int(wall_time):010d}.{socket.gethostname()}.{os.getpid()}."
        f"{time.time_ns() % 10**9}{FILE_SUFFIX}"
    )
    path = os.path.join(logdir, name)
    summary = summary_pb2.Summary(
        value=[
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in sorted(metrics.items())
        ]
    )
    events = [
        event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2"),
        event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary),
    ]
    tf.io.gfile.makedirs(logdir)
    with tf.io.TFRecordWriter(path) as writer:
        for event in events:
            writer.write(event.SerializeToString())
    return path


def write_exported_result(prefix: str, export_dir: str, eval_result: Mapping[str, Any]) -> None:
    """Adds an exported result to the run of exported bests; never raises.

    A chart is never worth the evaluator or the training job: a failure is a
    warning. A result without `global_step` is skipped, as TensorBoard needs a
    step to place the values.

    Args:
      prefix: the front-end's name for log lines, e.g. `BestExporter 'best_exporter'`.
      export_dir: the export directory, which is the run's directory.
      eval_result: the exported result, with `global_step`.
    """
    step = eval_result.get("global_step") if eval_result else None
    try:
        if step is None:
            return
        write_scalars(export_dir, int(step), records.numeric_metrics(eval_result))
    except Exception as e:  # pylint: disable=broad-except
        logger.warning(
            "%s: exported step %s, but could not write its TensorBoard summary to %s: %s: %s",
            prefix,
            step,
            export_dir,
            type(e).__name__,
            e,
        )
