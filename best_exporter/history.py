"""Past eval results, read from the evaluator's tfevents files.

The reader is built for files that production leaves behind: it reads legacy
`simple_value` scalars (what `Estimator.evaluate` writes) and TF2 tensor scalars
(what `tf.summary.scalar` writes), from every file a pattern matches, in any
order; a truncated tail, a corrupt record, or a file that vanishes while being
read costs at most the rest of that file and one log line, never an exception.

Records come from TensorBoard's `RawEventFileLoader`, which stops quietly at a
truncated or corrupt record. Its subclass `EventFileLoader` is avoided on purpose:
its data migration makes it about 28 times slower than the original exporter's
reader (docs/design.md, "Measured traps"), and it does nothing we need.
"""

import dataclasses
import struct
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2
from tensorboard.summary.writer.record_writer import masked_crc32c

from best_exporter.log import logger

# Loads a file's records as serialized `Event` protos; tests pass fakes.
RecordLoader = Callable[[str], Iterable[bytes]]

# A TFRecord is framed by an 8-byte length, a 4-byte length CRC and, after the
# data, a 4-byte data CRC.
_RECORD_HEADER_BYTES = 12
_RECORD_FRAMING_BYTES = 16

# TensorProto fields that hold a scalar of each numeric dtype.
_TENSOR_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
}
# How the `tensor_content` of a scalar of each numeric dtype is unpacked: numpy's
# frombuffer costs more than the rest of reading a TF2 scalar.
_TENSOR_CONTENT_STRUCTS = {
    types_pb2.DT_FLOAT: struct.Struct("<f"),
    types_pb2.DT_DOUBLE: struct.Struct("<d"),
    types_pb2.DT_INT8: struct.Struct("<b"),
    types_pb2.DT_INT16: struct.Struct("<h"),
    types_pb2.DT_INT32: struct.Struct("<i"),
    types_pb2.DT_UINT8: struct.Struct("<B"),
    types_pb2.DT_UINT16: struct.Struct("<H"),
    types_pb2.DT_INT64: struct.Struct("<q"),
    types_pb2.DT_UINT32: struct.Struct("<I"),
    types_pb2.DT_UINT64: struct.Struct("<Q"),
    types_pb2.DT_HALF: struct.Struct("<e"),
}


@dataclasses.dataclass(frozen=True)
class EvalHistory:
    """The eval results found in a set of event files.

    Attributes:
      results: one dict of metric name to float per evaluated step, with the
        step under `'global_step'`, sorted by step. When a step was evaluated
        more than once, each metric keeps its most recently written value.
      files_read: how many event files matched the pattern (some may have been
        unreadable, in part or whole).
    """

    results: Tuple[Dict[str, float], ...] = ()
    files_read: int = 0


def _load_records(path: str) -> Iterable[bytes]:
    return RawEventFileLoader(path).Load()


def read_eval_history(pattern: str, load_records: RecordLoader = _load_records) -> EvalHistory:
    """Reads every eval result written to the event files matching `pattern`.

    Never raises for what a file holds or for a file that cannot be read: those
    are logged and skipped.

    Args:
      pattern: a glob pattern of event files, e.g. `'/model/eval/*.tfevents.*'`.
      load_records: returns the serialized `Event` records of one file.

    Returns:
      The results found, possibly none.
    """
    try:
        paths = sorted(tf.io.gfile.glob(pattern))
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot list event files %s, so no eval history is read: %s", pattern, e)
        return EvalHistory()
    results = tuple(
        {**metrics, "global_step": step} for step, metrics in evaluations(paths, load_records)
    )
    logger.debug("Read %d eval results from %d event files %s", len(results), len(paths), pattern)
    return EvalHistory(results=results, files_read=len(paths))


def evaluations(
    paths: Iterable[str], load_records: RecordLoader = _load_records
) -> Iterator[Tuple[int, Dict[str, float]]]:
    """Yields each evaluation in a set of event files: its step and its metrics.

    Files are read whole before the first evaluation is yielded: one step's
    values may be spread over several events and files. Never raises for what a
    file holds or for a file that cannot be read: those are logged and skipped.

    Args:
      paths: event files, e.g. what `tf.io.gfile.glob('/model/eval/*.tfevents.*')`
        matches.
      load_records: returns the serialized `Event` records of one file.

    Yields:
      `(step, {metric: value})` per evaluated step, by increasing step. When a
      step was evaluated more than once, each metric keeps its most recently
      written value.
    """
    # step -> tag -> value, and when each was written: the newest write of a tag
    # at a step wins, whatever the order the files were read in.
    by_step: Dict[int, Dict[str, float]] = {}
    written_at: Dict[int, Dict[str, float]] = {}
    for path in paths:
        for step, wall_time, scalars in _read_scalars(path, load_records):
            metrics = by_step.get(step)
            if metrics is None:
                by_step[step] = scalars
                written_at[step] = dict.fromkeys(scalars, wall_time)
                continue
            times = written_at[step]
            for tag, value in scalars.items():
                if wall_time >= times.get(tag, wall_time):
                    metrics[tag] = value
                    times[tag] = wall_time
    for step in sorted(by_step):
        yield step, by_step[step]


def _read_scalars(
    path: str, load_records: RecordLoader
) -> Iterable[Tuple[int, float, Dict[str, float]]]:
    """Yields (step, wall_time, {tag: value}) for each event with scalars in one file."""
    bytes_read = 0
    undecodable = 0
    try:
        for record in load_records(path):
            bytes_read += len(record) + _RECORD_FRAMING_BYTES
            try:
                event = event_pb2.Event.FromString(record)
            except DecodeError:
                # The record's CRC matched, so the writer wrote it: not ours to judge.
                undecodable += 1
                continue
            if not event.HasField("summary"):
                continue
            # The per-value work, 10 values per evaluation and 20,000 evaluations in
            # a long run, is kept to the legacy case's HasField + two reads.
            scalars = {}
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag] = value.simple_value
                else:
                    scalar = scalar_value(value)
                    if scalar is not None:
                        scalars[value.tag] = scalar
            if scalars:
                yield event.step, event.wall_time, scalars
    except (tf.errors.OpError, OSError) as e:
        # Deleted, moved or unreadable while being read: keep what was read.
        logger.warning("Stopped reading event file %s after %d bytes: %s", path, bytes_read, e)
        return
    if undecodable:
        logger.warning("Skipped %d records of %s that are not Event protos", undecodable, path)
    _report_unread_tail(path, bytes_read)


def _report_unread_tail(path: str, bytes_read: int) -> None:
    """Logs why a file's loader stopped before its end, if it did.

    The loader stops silently both at a tail cut short by a preempted writer
    (expected, worth a debug line) and at a corrupt record (worth a warning). The
    record header at the stopping point tells them apart.
    """
    try:
        size = tf.io.gfile.stat(path).length
        if size <= bytes_read:
            return
        with tf.io.gfile.GFile(path, "rb") as f:
            f.seek(bytes_read)
            header = f.read(_RECORD_HEADER_BYTES)
    except (tf.errors.OpError, OSError) as e:
        logger.debug("Cannot inspect the unread tail of %s: %s", path, e)
        return
    unread = size - bytes_read
    if len(header) == _RECORD_HEADER_BYTES:
        length, length_crc = struct.unpack("<QI", header)
        # A writer cut short leaves a prefix of a valid record: once its header is
        # complete, the header's CRC holds. A bad header CRC (its length is then
        # garbage), or a complete record whose data CRC failed, is corruption.
        if length_crc != masked_crc32c(header[:8]) or unread >= length + _RECORD_FRAMING_BYTES:
            logger.warning(
                "Event file %s has a corrupt record at byte %d; ignored its last %d bytes",
                path,
                bytes_read,
                unread,
            )
            return
    logger.debug(
        "Event file %s ends in an incomplete record (%d bytes, its writer was probably "
        "interrupted); ignored it",
        path,
        unread,
    )


def scalar_value(value: summary_pb2.Summary.Value) -> Optional[float]:
    """Returns the number a summary value holds, or None if it holds no scalar.

    Args:
      value: one value of a `Summary`: a legacy `simple_value`, or a TF2 tensor.

    Returns:
      The scalar as a float, or None for images, histograms, text and tensors of
      more than one element.
    """
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        return _tensor_scalar(value.tensor)
    return None


def _tensor_scalar(tensor) -> Optional[float]:
    if tensor.dtype not in _TENSOR_VALUE_FIELDS:
        return None
    dims = tensor.tensor_shape.dim
    if dims and any(dim.size != 1 for dim in dims):  # No generator for the usual 0-d case.
        return None
    if tensor.tensor_content:
        return _scalar_from_content(tensor.dtype, tensor.tensor_content)
    values = getattr(tensor, _TENSOR_VALUE_FIELDS[tensor.dtype])
    if len(values) != 1:
        return None
    if tensor.dtype == types_pb2.DT_HALF:
        return float(np.array([values[0]], dtype="<u2").view("<f2")[0])
    if tensor.dtype == types_pb2.DT_BFLOAT16:
        return _bfloat16_to_float(values[0])
    return float(values[0])


def _scalar_from_content(dtype: int, content: bytes) -> Optional[float]:
    if dtype == types_pb2.DT_BFLOAT16:
        if len(content) != 2:
            return None
        return _bfloat16_to_float(struct.unpack("<H", content)[0])
    unpacker = _TENSOR_CONTENT_STRUCTS[dtype]
    if len(content) != unpacker.size:
        return None
    return float(unpacker.unpack(content)[0])


def _bfloat16_to_float(bits: int) -> float:
    # bfloat16 is the upper half of a float32.
    return float(np.array([(bits & 0xFFFF) << 16], dtype="<u4").view("<f4")[0])
