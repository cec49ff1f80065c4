"""Past eval results, streamed from the evaluator's tfevents files.

The reader is built for files that production leaves behind: it reads legacy
`simple_value` scalars (what `Estimator.evaluate` writes) and TF2 tensor scalars
(what `tf.summary.scalar` writes), from every file a pattern matches, in any
order; a truncated tail, a corrupt record, or a file that vanishes while being
read costs at most the rest of that file and one log line, never an exception.

It streams. A restart after a long run may face hundreds of thousands of
evaluations; the exporter needs only the best of them, so `scan_eval_history`
yields one `Evaluation` at a time and keeps nothing once the caller moves on.
Memory depends on the number of event files and the size of one evaluation,
not on the length of the history. How that squares with "the newest write of a
metric at a step wins" (docs/design.md, "Reading the history"):

* An evaluator writes the events of one evaluation next to each other in one
  file (one event of `simple_value`s for Estimator, one event per value for
  TF2), and evaluates checkpoints in increasing step order. So each file is read
  as a sequence of steps, the contiguous events of one step forming one group.
* Several files (one per evaluator process: a restarted evaluator re-evaluates
  the last checkpoint into a new file; a second writer adds metrics of its own)
  are merged by step, like the merge of sorted runs: every write of a step, in
  whichever file, reaches the caller in one `Evaluation`, where the newest write
  of each metric wins. This keeps one group per file in memory, and every file
  open until it is read to its end.
* A file whose step goes down (training restarted from scratch in the same
  model_dir, or events written out of order by hand) breaks the premise: each
  group that comes after a higher step is yielded as an evaluation of its own,
  as the original exporter judges each event. Its step may then be yielded more
  than once, and an overwritten result of it may still be judged.

`read_eval_history` and `evaluations`, for tools and tests that show every
evaluation, hold them all anyway, and so merge every write of a step exactly.

Values are decoded lazily: `Evaluation` is a read-only mapping that decodes a
metric when it is first asked for. Judging by one metric (the built-in compare
functions) reads one value per evaluation instead of all of them, which is
most of what makes this reader faster than the original's.

Records come from TensorBoard's `RawEventFileLoader`, which stops quietly at a
truncated or corrupt record. Its subclass `EventFileLoader` is avoided on purpose:
its data migration makes it about 28 times slower than the original exporter's
reader (docs/design.md, "Measured traps"), and it does nothing we need.
"""

import collections.abc
import dataclasses
import functools
import heapq
import operator
import struct
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.summary.writer.record_writer import masked_crc32c

from best_exporter.core.log import logger

# Loads a file's records as serialized `Event` protos; tests pass fakes.
RecordLoader = Callable[[str], Iterable[bytes]]

# One event's summary: (wall_time, serialized `Summary`).
_Write = Tuple[float, bytes]
# The writes of one step of one file, and the same for a step merged over files.
_Group = Tuple[int, List[_Write]]


def _lite_event_class() -> Any:
    """An `Event` that parses only wall_time, step and the summary's bytes.

    Wire-compatible with `tensorboard`'s `Event` for those fields (a message
    field may be read as bytes). The reader needs the step of every event but the
    values of few summaries, and parsing a TF2 summary (its metadata, its tensor)
    costs as much as the rest of reading the event.
    """
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="best_exporter/lite_event.proto", package="best_exporter", syntax="proto2"
    )
    message = proto.message_type.add(name="LiteEvent")
    for name, number, kind in (
        ("wall_time", 1, field.TYPE_DOUBLE),
        ("step", 2, field.TYPE_INT64),
        ("summary", 5, field.TYPE_BYTES),
    ):
        message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("best_exporter.LiteEvent")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # pragma: no cover


_LiteEvent = _lite_event_class()
_EMPTY_SUMMARY = summary_pb2.Summary()


def _parse_summary(serialized: bytes) -> summary_pb2.Summary:
    # The record's CRC held and its event parsed, so a summary that does not is
    # the writer's odd doing, not damage: it holds no value we can read.
    try:
        return summary_pb2.Summary.FromString(serialized)
    except DecodeError:
        return _EMPTY_SUMMARY


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
    """The eval results found in a set of event files, all in memory.

    For tools and tests that want to see every result; the exporter streams
    with `scan_eval_history` instead.

    Attributes:
      results: one dict of metric name to float per evaluation, with the step
        under `'global_step'`, sorted by step. When a step was evaluated more
        than once, each metric keeps its most recently written value.
      files_read: how many event files matched the pattern (some may have been
        unreadable, in part or whole).
    """

    results: Tuple[Dict[str, float], ...] = ()
    files_read: int = 0


class Evaluation(collections.abc.Mapping):
    """One evaluation read from event files: a read-only mapping of metric to float.

    Holds the serialized summaries of its step and decodes a metric the first
    time it is asked for, so that judging by one metric does not decode the
    others.
    `'global_step'` maps to the step. Where a metric was written more than once
    (a step re-evaluated, or written by two writers), the write with the newest
    wall time wins, and of equal wall times the one read last.

    Args:
      step: the evaluated step.
      writes: (wall_time, serialized `Summary`) of each event of that step, in
        the order read.
      positions: where in an event's values each tag was last found; shared by
        the evaluations of one scan, it lets a lookup try one value first.
    """

    __slots__ = ("step", "_writes", "_summaries", "_positions", "_values", "_complete")

    def __init__(
        self,
        step: int,
        writes: Sequence[_Write],
        positions: Optional[MutableMapping[str, int]] = None,
    ):
        self.step = step
        self._writes = writes
        self._summaries: List[Optional[summary_pb2.Summary]] = [None] * len(writes)
        self._positions = {} if positions is None else positions
        self._values: Dict[str, float] = {}
        self._complete = False

    def __getitem__(self, tag: str) -> float:
        value = self.get(tag)
        if value is None:
            raise KeyError(tag)
        return value

    def get(self, tag: str, default=None):  # type: ignore[override]
        # Mapping.get goes through an exception for a missing key; this is the hot path.
        if tag == "global_step":
            return self.step
        value = self._values.get(tag)
        if value is None and not self._complete:
            value = self._decode(tag)
            if value is not None:
                self._values[tag] = value
        return default if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __bool__(self) -> bool:
        return True  # Never empty: `global_step` is always there.

    def __repr__(self) -> str:
        return f"Evaluation({dict(self)!r})"

    def _decode(self, tag: str) -> Optional[float]:
        """The newest scalar written under `tag` at this step, or None."""
        position = self._positions.get(tag, 0)
        newest: Optional[float] = None
        newest_time = 0.0
        # A value's tag is serialized as field 1, a length and the UTF-8 bytes: a
        # summary without those bytes has no value of this tag. TF2 writes one
        # value per event, so this leaves most summaries of a TF2 evaluation unparsed.
        needle = _serialized_tag(tag)
        summaries = self._summaries
        for index, (wall_time, serialized) in enumerate(self._writes):
            if needle not in serialized:
                continue
            summary = summaries[index]
            if summary is None:
                summary = summaries[index] = _parse_summary(serialized)
            values = summary.value
            # Estimator writes its metrics in the same order every time: the
            # position where the tag was last found is almost always right.
            if position < len(values) and values[position].tag == tag:
                value = values[position]
            else:
                value = None
                for position, candidate in enumerate(values):
                    if candidate.tag == tag:
                        value = candidate
                        self._positions[tag] = position
                        break
                if value is None:
                    continue
            if value.HasField("simple_value"):
                scalar: Optional[float] = value.simple_value
            else:
                scalar = scalar_value(value)
            if scalar is not None and (newest is None or wall_time >= newest_time):
                newest, newest_time = scalar, wall_time
        return newest

    def _all(self) -> Dict[str, float]:
        """Decodes every metric, once."""
        if not self._complete:
            values: Dict[str, float] = {}
            written_at: Dict[str, float] = {}
            for index, (wall_time, _) in enumerate(self._writes):
                for tag, scalar in _scalars(self._summary(index)):
                    if wall_time >= written_at.get(tag, wall_time):
                        values[tag] = scalar
                        written_at[tag] = wall_time
            values["global_step"] = self.step
            self._values = values
            self._complete = True
        return self._values

    def merged_with(self, later: "Evaluation") -> "Evaluation":
        """This evaluation and a later-read one of the same step, as one."""
        return Evaluation(self.step, list(self._writes) + list(later._writes), self._positions)

    def has_scalar(self) -> bool:
        """Whether any of its values is a number (not all are: images, text)."""
        for index in range(len(self._writes)):
            values = self._summary(index).value
            # Estimator's summaries start with a simple_value: usually one lookup.
            if values and values[0].HasField("simple_value"):
                return True
            if any(scalar_value(value) is not None for value in values):
                return True
        return False

    def _summary(self, index: int) -> summary_pb2.Summary:
        summary = self._summaries[index]
        if summary is None:
            summary = self._summaries[index] = _parse_summary(self._writes[index][1])
        return summary


def _scalars(summary: summary_pb2.Summary) -> Iterator[Tuple[str, float]]:
    """The (tag, number) of each scalar value of a summary."""
    for value in summary.value:
        if value.HasField("simple_value"):
            yield value.tag, value.simple_value
        else:
            scalar = scalar_value(value)
            if scalar is not None:
                yield value.tag, scalar


class HistoryScan:
    """The evaluations in the event files matching a pattern, read as they are iterated.

    Iterating yields each evaluation once, in increasing step order (except for
    a file whose steps go down: see the module docstring), and holds no
    evaluation after yielding it. Iterating again reads the files again.

    Args:
      pattern: the glob of event files.
      paths: the files it matched, sorted; empty if it could not be listed.
      load_records: returns the serialized `Event` records of one file.
      metric: the metric the caller looks up in every evaluation, if known.

    Attributes:
      pattern: the glob of event files.
      paths: the files it matched, sorted.
    """

    def __init__(
        self,
        pattern: str,
        paths: Sequence[str],
        load_records: RecordLoader,
        metric: Optional[str] = None,
    ):
        self.pattern = pattern
        self.paths = tuple(paths)
        self._load_records = load_records
        self._metric = metric

    @property
    def files_read(self) -> int:
        """How many event files matched the pattern."""
        return len(self.paths)

    def __iter__(self) -> Iterator[Evaluation]:
        positions: Dict[str, int] = {}
        streams = [_groups_of_file(path, self._load_records) for path in self.paths]
        if len(streams) == 1:
            groups: Iterator[_Group] = streams[0]  # Already one group per step.
        else:
            groups = _merged_steps(heapq.merge(*streams, key=operator.itemgetter(0)))
        metric = self._metric
        for step, writes in groups:
            evaluation = Evaluation(step, writes, positions)
            # A group without a single number is no result. Decoding the metric the
            # caller will ask for anyway is the cheap proof that it has one.
            if (metric is not None and evaluation.get(metric) is not None) or (
                evaluation.has_scalar()
            ):
                yield evaluation


def _merged_steps(groups: Iterator[_Group]) -> Iterator[_Group]:
    """Joins groups of the same step that arrive one after another.

    A group whose step is below the one being joined arrived out of order (its
    file's steps went down): it is passed on alone.
    """
    pending: Optional[_Group] = None
    for group in groups:
        if pending is None:
            pending = group
        elif group[0] == pending[0]:
            pending = (pending[0], pending[1] + group[1])
        elif group[0] > pending[0]:
            yield pending
            pending = group
        else:
            yield group
    if pending is not None:
        yield pending


def _load_records(path: str) -> Iterable[bytes]:
    return RawEventFileLoader(path).Load()


def scan_eval_history(
    pattern: str,
    load_records: RecordLoader = _load_records,
    metric: Optional[str] = None,
    strict_listing: bool = False,
) -> HistoryScan:
    """Lists the event files matching `pattern`, to stream their evaluations.

    Never raises for what a file holds or for a file that cannot be read: those
    are logged (when iterating) and skipped.

    Args:
      pattern: a glob pattern of event files, e.g. `'/model/eval/*.tfevents.*'`.
      load_records: returns the serialized `Event` records of one file.
      metric: the metric the caller will look up in every evaluation, if any
        (a built-in compare_fn's); a hint that saves decoding another one.
      strict_listing: raise if the event files cannot be listed, instead of
        logging it and reading no history. The exporter's restore needs this:
        "no history" would let a worse model in, while an error is retried.

    Returns:
      An iterable of `Evaluation`s; no file is read until it is iterated.

    Raises:
      tf.errors.OpError, OSError: with `strict_listing`, if listing fails.
    """
    try:
        paths = sorted(tf.io.gfile.glob(pattern))
    except (tf.errors.OpError, OSError) as e:
        if strict_listing:
            raise
        logger.warning("Cannot list event files %s, so no eval history is read: %s", pattern, e)
        paths = []
    return HistoryScan(pattern, paths, load_records, metric)


def read_eval_history(pattern: str, load_records: RecordLoader = _load_records) -> EvalHistory:
    """Reads every eval result written to the event files matching `pattern`.

    Holds them all: for tools and tests. Never raises for what a file holds or
    for a file that cannot be read: those are logged and skipped.

    Args:
      pattern: a glob pattern of event files, e.g. `'/model/eval/*.tfevents.*'`.
      load_records: returns the serialized `Event` records of one file.

    Returns:
      The results found, possibly none, sorted by step.
    """
    scan = scan_eval_history(pattern, load_records)
    results = tuple(
        {**metrics, "global_step": step} for step, metrics in evaluations(scan.paths, load_records)
    )
    logger.debug(
        "Read %d eval results from %d event files %s", len(results), scan.files_read, pattern
    )
    return EvalHistory(results=results, files_read=scan.files_read)


def evaluations(
    paths: Iterable[str], load_records: RecordLoader = _load_records
) -> Iterator[Tuple[int, Dict[str, float]]]:
    """Yields each evaluation in a set of event files: its step and its metrics.

    Holds every evaluation (for the `best-exporter history` table and tests;
    the exporter streams with `scan_eval_history`), which lets it keep the
    newest-write-wins rule exact even where streaming cannot: the writes of a
    step that a file wrote again after its steps went down are merged too. Never
    raises for what a file holds or for a file that cannot be read: those are
    logged and skipped.

    Args:
      paths: event files, e.g. what `tf.io.gfile.glob('/model/eval/*.tfevents.*')`
        matches.
      load_records: returns the serialized `Event` records of one file.

    Yields:
      `(step, {metric: value})` per evaluated step, by increasing step. When a
      step was evaluated more than once, each metric keeps its most recently
      written value.
    """
    by_step: Dict[int, Evaluation] = {}
    for evaluation in HistoryScan("", sorted(paths), load_records):
        earlier = by_step.get(evaluation.step)
        if earlier is not None:
            evaluation = earlier.merged_with(evaluation)
        by_step[evaluation.step] = evaluation
    for step in sorted(by_step):
        metrics = dict(by_step.pop(step))
        del metrics["global_step"]
        yield step, metrics


def _groups_of_file(path: str, load_records: RecordLoader) -> Iterator[_Group]:
    """Yields the events with summaries of one file, grouped by contiguous step."""
    bytes_read = 0
    undecodable = 0
    step = -1
    writes: List[_Write] = []
    parse = _LiteEvent.FromString
    try:
        for record in load_records(path):
            bytes_read += len(record) + _RECORD_FRAMING_BYTES
            try:
                event = parse(record)
            except DecodeError:
                # The record's CRC matched, so the writer wrote it: not ours to judge.
                undecodable += 1
                continue
            summary = event.summary
            if not summary:  # file_version, graphs, session logs.
                continue
            if event.step == step and writes:
                writes.append((event.wall_time, summary))
            else:
                if writes:
                    yield step, writes
                step = event.step
                writes = [(event.wall_time, summary)]
    except (tf.errors.OpError, OSError) as e:
        # Deleted, moved or unreadable while being read: keep what was read.
        logger.warning("Stopped reading event file %s after %d bytes: %s", path, bytes_read, e)
    else:
        if undecodable:
            logger.warning("Skipped %d records of %s that are not Event protos", undecodable, path)
        _report_unread_tail(path, bytes_read)
    if writes:
        yield step, writes


@functools.lru_cache(maxsize=1024)
def _serialized_tag(tag: str) -> bytes:
    """How a `Summary.Value` with this tag begins: field 1, the length, the UTF-8 bytes."""
    encoded = tag.encode("utf-8")
    return b"\n" + _varint(len(encoded)) + encoded


def _varint(number: int) -> bytes:
    """The protobuf varint encoding of a non-negative int."""
    encoded = bytearray()
    while number > 0x7F:
        encoded.append(number & 0x7F | 0x80)
        number >>= 7
    encoded.append(number)
    return bytes(encoded)


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
