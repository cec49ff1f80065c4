"""Property-based tests of best_exporter.history: damaged event files never break the reader.

Real event files written by TensorFlow (legacy `simple_value` and TF2 tensor
scalars, the same values) are cut, bit-flipped, spliced and buried in random bytes.
Whatever the damage, `read_eval_history` must return (the test finishing is the
proof that it returns promptly), must not raise, and must only return values that
were written. TFRecord framing carries a CRC32C over each record's length and
data, so the damaged records are known exactly and most properties are equalities.
"""

import dataclasses
import logging
import struct
import uuid
from typing import Callable, Dict, FrozenSet, Iterator, List, Set, Tuple

import numpy as np
import pytest
import support
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2

from best_exporter.core.history import read_eval_history
from best_exporter.core.log import logger

# (step, tag, value): one scalar of one evaluation.
Triple = Tuple[int, str, float]

# Ten evaluations of three metrics, every value distinct and exact in float32.
RESULTS = [
    (100 * (i + 1), {"loss": 1.0 - i / 32, "accuracy": 0.5 + i / 64, "auc": 0.25 + i / 128})
    for i in range(10)
]
WRITTEN: Dict[Tuple[int, str], float] = {
    (step, tag): float(np.float32(value))
    for step, metrics in RESULTS
    for tag, value in metrics.items()
}
ALL_TRIPLES = frozenset((step, tag, value) for (step, tag), value in WRITTEN.items())

# Reproducible in CI: the same examples on every run, nothing read from or saved to
# a database. deadline=None: TensorFlow on a shared 2-core machine has slow moments.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class EventFile:
    """An event file's bytes, its framed records and the scalars in each record.

    A plain class with a short repr: Hypothesis prints the fixtures of a failing example.
    """

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        self.frames = tuple(_frames(data))
        self.triples = tuple(_scalars_of(frame) for frame in self.frames)

    def ends(self) -> Iterator[int]:
        """The offset just past each record."""
        end = 0
        for frame in self.frames:
            end += len(frame)
            yield end

    def __repr__(self) -> str:
        return f"<{self.name} event file: {len(self.data)} bytes, {len(self.frames)} records>"


def _frames(data: bytes) -> List[bytes]:
    frames = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        frames.append(data[offset : offset + 16 + length])
        offset += 16 + length
    assert offset == len(data)
    return frames


def _scalars_of(frame: bytes) -> FrozenSet[Triple]:
    """The scalars of one intact record, decoded independently of the library."""
    event = event_pb2.Event.FromString(frame[12:-4])
    triples = set()
    for value in event.summary.value:
        if value.WhichOneof("value") == "simple_value":
            triples.add((event.step, value.tag, float(value.simple_value)))
        elif value.WhichOneof("value") == "tensor":
            triples.add((event.step, value.tag, float(tf.make_ndarray(value.tensor))))
    return frozenset(triples)


def _event_file(name: str, path: str) -> EventFile:
    with tf.io.gfile.GFile(path, "rb") as f:
        return EventFile(name, f.read())


@pytest.fixture(scope="module")
def event_files(tmp_path_factory) -> Dict[str, EventFile]:
    """The same evaluations written by the legacy FileWriter and by TF2 `tf.summary`."""
    root = tmp_path_factory.mktemp("written")
    files = {
        "legacy": _event_file("legacy", support.write_legacy_events(str(root / "l"), RESULTS)),
        "tf2": _event_file("tf2", support.write_tf2_events(str(root / "t"), RESULTS)),
    }
    for written in files.values():  # The premise of every property below.
        assert frozenset().union(*written.triples) == ALL_TRIPLES
    return files


@dataclasses.dataclass(frozen=True)
class Read:
    """What the reader made of one mutant file: its scalars and the warnings it logged."""

    triples: Set[Triple]
    warnings: List[str]


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def read_mutant() -> Iterator[Callable[[bytes], Read]]:
    """Writes bytes to an event file on ram:// and reads it back with read_eval_history."""
    directory = f"ram://fuzz-{uuid.uuid4().hex}"
    path = f"{directory}/events.out.tfevents.0.fuzz"
    tf.io.gfile.makedirs(directory)
    # Warnings are counted whatever verbosity another test left TensorFlow's logger at.
    level = logger.level
    logger.setLevel(logging.WARNING)

    def read(data: bytes) -> Read:
        # Removed first: on ram://, TensorFlow's "wb" appends to an existing file.
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)
        collector = _WarningCollector()
        logger.addHandler(collector)
        try:
            history = read_eval_history(f"{directory}/*.tfevents.*")
        finally:
            logger.removeHandler(collector)
        triples = {
            (result["global_step"], tag, value)
            for result in history.results
            for tag, value in result.items()
            if tag != "global_step"
        }
        return Read(triples, collector.messages)

    yield read
    logger.setLevel(level)
    tf.io.gfile.rmtree(directory)


def _assert_only_written_values(triples: Set[Triple]) -> None:
    for step, tag, value in triples:
        assert WRITTEN.get((step, tag)) == value, (step, tag, value)


formats = st.sampled_from(["legacy", "tf2"])


@FUZZ
@given(data=st.binary(max_size=4096))
@example(data=b"")
@example(data=b"\x00" * 16)  # A record of length 0 with zero CRCs.
@example(data=b"\xff" * 12)  # A header claiming 2**64 - 1 bytes.
def test_arbitrary_bytes_yield_no_result(read_mutant, data: bytes) -> None:
    read = read_mutant(data)
    # Without valid CRC32Cs (odds 2**-64 for random bytes) no record is read.
    assert read.triples == set()
    assert len(read.warnings) <= 1, read.warnings


@FUZZ
@given(format_=formats, tail=st.binary(min_size=1, max_size=1024))
def test_arbitrary_bytes_after_a_file_leave_all_its_results(
    event_files, read_mutant, format_: str, tail: bytes
) -> None:
    read = read_mutant(event_files[format_].data + tail)
    assert read.triples == ALL_TRIPLES
    assert len(read.warnings) <= 1, read.warnings


@FUZZ
@given(format_=formats, data=st.data())
def test_a_file_cut_anywhere_yields_exactly_its_complete_records_without_warning(
    event_files, read_mutant, format_: str, data
) -> None:
    written = event_files[format_]
    cut = data.draw(st.integers(0, len(written.data)), label="cut")

    read = read_mutant(written.data[:cut])

    _assert_only_written_values(read.triples)
    assert read.triples == set().union(
        *(triples for triples, end in zip(written.triples, written.ends()) if end <= cut)
    )
    # A cut is what an interrupted writer leaves, not corruption.
    assert read.warnings == []


@FUZZ
@given(format_=formats, data=st.data())
def test_bit_flips_anywhere_yield_the_records_before_them_and_one_warning(
    event_files, read_mutant, format_: str, data
) -> None:
    written = event_files[format_]
    bits = data.draw(
        st.lists(st.integers(0, 8 * len(written.data) - 1), min_size=1, max_size=16, unique=True),
        label="bits",
    )
    mutant = bytearray(written.data)
    for bit in bits:
        mutant[bit // 8] ^= 1 << (bit % 8)
    first_damaged = min(bits) // 8

    read = read_mutant(bytes(mutant))

    _assert_only_written_values(read.triples)
    # The CRCs catch the first damaged record, and the reader stops there.
    assert read.triples == set().union(
        *(t for t, end in zip(written.triples, written.ends()) if end <= first_damaged)
    )
    # The file is complete, so a damaged record is corruption, never a cut tail.
    assert len(read.warnings) == 1, read.warnings


@FUZZ
@given(data=st.data())
def test_records_and_files_spliced_in_any_order_and_number_yield_exactly_their_scalars(
    event_files, read_mutant, data
) -> None:
    # Pieces: every record of both files, and both whole files.
    pieces = [
        (frame, triples)
        for written in event_files.values()
        for frame, triples in zip(written.frames, written.triples)
    ] + [(written.data, ALL_TRIPLES) for written in event_files.values()]
    chosen = data.draw(st.lists(st.sampled_from(pieces), max_size=40), label="pieces")

    read = read_mutant(b"".join(piece for piece, _ in chosen))

    _assert_only_written_values(read.triples)
    assert read.triples == set().union(*(t for _, t in chosen))
    assert read.warnings == []
