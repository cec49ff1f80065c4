"""Tests of best_exporter.history: the tolerant reader of eval results in tfevents files.

Every event file here is written by TensorFlow itself (the legacy `FileWriter` that
`Estimator.evaluate` uses, `tf.summary` in TF2, or Estimator's own summary writer);
damage is done to the bytes afterwards, the way a preempted or failing job does it.
"""

import itertools
import logging
import os
import struct
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
import pytest
import support
import tensorflow as tf
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorflow_estimator.python.estimator import estimator as estimator_lib

from best_exporter.core.compare import loss_smaller
from best_exporter.core.decision import Best, Judge, Source
from best_exporter.core.history import (
    EvalHistory,
    RecordLoader,
    read_eval_history,
    scan_eval_history,
)
from best_exporter.core.log import logger

Results = Sequence[Tuple[int, Mapping[str, float]]]
Writer = Callable[[str, Results], str]

# Three evaluations, two metrics each; every value is distinct so that a value
# read back can only have come from one (step, metric).
RESULTS: Results = [
    (100, {"loss": 0.75, "accuracy": 0.5}),
    (200, {"loss": 0.25, "accuracy": 0.625}),
    (300, {"loss": 0.5, "accuracy": 0.875}),
]
# One more evaluation with a single metric: in both formats it is exactly one
# record, the last of its file.
EXTRA: Results = [(400, {"loss": 0.125})]

WRITERS: Dict[str, Writer] = {
    "legacy": support.write_legacy_events,
    "tf2": support.write_tf2_events,
}


@pytest.fixture(autouse=True)
def _capture_warnings(caplog: pytest.LogCaptureFixture) -> None:
    # Whatever verbosity another test left TensorFlow's logger at.
    caplog.set_level(logging.WARNING, logger=logger.name)


@pytest.fixture(params=sorted(WRITERS))
def write_events(request) -> Writer:
    """Writes results in the legacy format (`simple_value`) and, in a second run, as TF2 does."""
    return WRITERS[request.param]


# ----------------------------------------------------------------------------
# Helpers: files as bytes, TFRecord framing, expected results, log lines.


def _expected(results: Results) -> List[Dict[str, float]]:
    """What the reader returns for `results` written as float32 summaries."""
    return [
        dict({tag: float(np.float32(value)) for tag, value in metrics.items()}, global_step=step)
        for step, metrics in results
    ]


def _read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _write_bytes(path: str, data: bytes) -> str:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)
    return path


def _append_bytes(path: str, data: bytes) -> None:
    with tf.io.gfile.GFile(path, "ab") as f:
        f.write(data)


def _frames(data: bytes) -> List[bytes]:
    """Splits a TFRecord file into its framed records (length, length CRC, data, data CRC)."""
    frames = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 12 + length + 4
        assert end <= len(data), "the test expects a file of complete records"
        frames.append(data[offset:end])
        offset = end
    return frames


def _flip(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0xFF
    return bytes(damaged)


def _warnings(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger.name and r.levelno >= logging.WARNING]


def _eval_dir(model_dir: str) -> str:
    return os.path.join(model_dir, "eval")


def _pattern(model_dir: str) -> str:
    # The default event_file_pattern of both exporters, under model_dir.
    return os.path.join(model_dir, "eval", "*.tfevents.*")


def _place(model_dir: str, name: str, data: bytes) -> str:
    """Puts an event file's bytes into the eval dir under a chosen name."""
    return _write_bytes(os.path.join(_eval_dir(model_dir), f"events.out.tfevents.{name}"), data)


_scratch = itertools.count()


def _tf_written(model_dir: str, writer: Writer, results: Results) -> bytes:
    """The bytes of the event file that `writer` writes for `results` (outside the eval dir)."""
    scratch = os.path.join(model_dir, "scratch", str(next(_scratch)))
    return _read_bytes(writer(scratch, results))


def _write_like_estimator(log_dir: str, step: int, eval_dict: Mapping[str, object]) -> str:
    """Writes an eval result with Estimator's own summary code, as `evaluate()` does.

    That is `simple_value` for Python and numpy scalars, a tensor for np.ndarray
    metrics, and the `checkpoint_path` string tensor summary.
    """
    tf.io.gfile.makedirs(log_dir)
    with tf.Graph().as_default():  # Estimator's FileWriterCache needs graph mode.
        estimator_lib._write_dict_to_summary(log_dir, dict(eval_dict, global_step=step), step)
        estimator_lib._write_checkpoint_path_to_summary(log_dir, f"/m/model.ckpt-{step}", step)
        # Stops the cached writer's thread; the directory is unique to this test.
        tf.compat.v1.summary.FileWriterCache.get(log_dir).close()
    return support._newest_event_file(log_dir)


def _write_legacy_summaries(log_dir: str, summaries: Iterable[Tuple[int, summary_pb2.Summary]]):
    """Writes arbitrary legacy `Summary` protos with the legacy FileWriter."""
    tf.io.gfile.makedirs(log_dir)
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(log_dir, filename_suffix=f".{next(_scratch)}")
        for step, summary in summaries:
            writer.add_summary(summary, step)
        writer.close()
    return support._newest_event_file(log_dir)


def _write_timed_events(log_dir: str, events: Iterable[Tuple[float, int, Mapping[str, float]]]):
    """Writes `simple_value` events with chosen wall times: (wall_time, step, metrics)."""
    tf.io.gfile.makedirs(log_dir)
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(log_dir, filename_suffix=f".{next(_scratch)}")
        for wall_time, step, metrics in events:
            summary = tf.compat.v1.Summary()
            for tag, value in metrics.items():
                summary.value.add(tag=tag, simple_value=value)
            writer.add_event(tf.compat.v1.Event(wall_time=wall_time, step=step, summary=summary))
        writer.close()
    return support._newest_event_file(log_dir)


def _real_records(path: str) -> Iterator[bytes]:
    return RawEventFileLoader(path).Load()


# ----------------------------------------------------------------------------
# What is read.


def test_reads_legacy_simple_value_scalars(any_dir: str) -> None:
    support.write_legacy_events(_eval_dir(any_dir), RESULTS)
    history = read_eval_history(_pattern(any_dir))
    assert list(history.results) == _expected(RESULTS)
    assert history.files_read == 1


def test_reads_tf2_tensor_scalars(any_dir: str) -> None:
    support.write_tf2_events(_eval_dir(any_dir), RESULTS)
    history = read_eval_history(_pattern(any_dir))
    assert list(history.results) == _expected(RESULTS)
    assert history.files_read == 1


def test_merges_the_one_event_per_value_of_tf2_into_one_result_per_step(any_dir: str) -> None:
    path = support.write_tf2_events(_eval_dir(any_dir), RESULTS)
    events_per_step = [
        sum(1 for e in tf.compat.v1.train.summary_iterator(path) if e.step == step)
        for step, _ in RESULTS
    ]
    assert events_per_step == [2, 2, 2]  # The premise: TF2 writes one event per value.
    results = read_eval_history(_pattern(any_dir)).results
    assert [r["global_step"] for r in results] == [100, 200, 300]
    assert all(set(r) == {"global_step", "loss", "accuracy"} for r in results)


def test_results_are_sorted_by_step_whatever_the_write_order(
    any_dir: str, write_events: Writer
) -> None:
    write_events(_eval_dir(any_dir), list(reversed(RESULTS)))
    assert list(read_eval_history(_pattern(any_dir)).results) == _expected(RESULTS)


@pytest.mark.parametrize(
    "metric, expected",
    [
        (np.float32(0.25), 0.25),  # simple_value
        (0.5, 0.5),  # simple_value
        (np.int64(7), 7.0),  # simple_value
        (np.array(0.25), 0.25),  # 0-d float64 ndarray: a DT_DOUBLE tensor, double_val
        (np.array(0.75, dtype=np.float32), 0.75),  # float_val
        (np.array(3, dtype=np.int64), 3.0),  # int64_val
        (np.array(-3, dtype=np.int32), -3.0),  # int_val
        (np.array(5, dtype=np.uint8), 5.0),  # int_val
        (np.array(0.5, dtype=np.float16), 0.5),  # half_val
        (np.array(1.5, dtype=tf.bfloat16.as_numpy_dtype), 1.5),  # half_val, bfloat16 bits
        (np.array([0.125]), 0.125),  # One element is still one number.
    ],
    ids=[
        "float32",
        "float",
        "int64",
        "ndarray-float64",
        "ndarray-float32",
        "ndarray-int64",
        "ndarray-int32",
        "ndarray-uint8",
        "ndarray-float16",
        "ndarray-bfloat16",
        "ndarray-1-element",
    ],
)
def test_reads_metrics_as_estimator_writes_them(
    any_dir: str, metric: object, expected: float
) -> None:
    _write_like_estimator(_eval_dir(any_dir), 100, {"loss": np.float32(0.5), "metric": metric})
    assert list(read_eval_history(_pattern(any_dir)).results) == [
        {"loss": 0.5, "metric": expected, "global_step": 100}
    ]


@pytest.mark.parametrize(
    "value, dtype, expected",
    [
        (0.25, "float32", 0.25),
        (0.25, "float64", 0.25),
        (0.5, "float16", 0.5),
        (1.5, "bfloat16", 1.5),
        (-7, "int32", -7.0),
        (2**40, "int64", float(2**40)),
        (9, "uint8", 9.0),
        ([0.25], "float32", 0.25),
        ([[0.25]], "float64", 0.25),
    ],
)
def test_reads_numeric_tensor_scalars_written_by_tf_summary_write(
    any_dir: str, value: object, dtype: str, expected: float
) -> None:
    writer = tf.summary.create_file_writer(_eval_dir(any_dir))
    with writer.as_default():
        tf.summary.write("metric", tf.constant(value, dtype), step=100)
    writer.close()
    assert list(read_eval_history(_pattern(any_dir)).results) == [
        {"metric": expected, "global_step": 100}
    ]


def test_skips_images_histograms_text_and_non_scalar_tensors_of_tf2(any_dir: str) -> None:
    writer = tf.summary.create_file_writer(_eval_dir(any_dir))
    with writer.as_default():
        tf.summary.scalar("loss", 0.5, step=100)
        tf.summary.image("image", tf.zeros([1, 2, 2, 3]), step=100)
        tf.summary.histogram("histogram", [0.1, 0.2, 0.3], step=100)
        tf.summary.text("text", "not a number", step=100)
        tf.summary.write("vector", tf.constant([1.0, 2.0]), step=100)
        tf.summary.write("flag", tf.constant(True), step=100)
        tf.summary.write("string", tf.constant("0.5"), step=100)
        # A step with no scalar at all yields no result.
        tf.summary.image("image", tf.zeros([1, 2, 2, 3]), step=200)
    writer.close()
    assert list(read_eval_history(_pattern(any_dir)).results) == [{"loss": 0.5, "global_step": 100}]


def test_skips_legacy_images_histograms_and_string_tensors(any_dir: str) -> None:
    summary = tf.compat.v1.Summary()
    summary.value.add(tag="loss", simple_value=0.5)
    summary.value.add(
        tag="image",
        image=tf.compat.v1.Summary.Image(
            height=1, width=1, colorspace=1, encoded_image_string=b"x"
        ),
    )
    summary.value.add(tag="histogram", histo=tf.compat.v1.HistogramProto(min=0, max=1, num=2))
    summary.value.add(tag="vector", tensor=tf.make_tensor_proto(np.array([1.0, 2.0])))
    summary.value.add(tag="matrix", tensor=tf.make_tensor_proto(np.zeros([2, 2], np.float32)))
    summary.value.add(tag="empty", tensor=tf.make_tensor_proto(np.zeros([0], np.float32)))
    _write_legacy_summaries(_eval_dir(any_dir), [(100, summary)])
    # Estimator's checkpoint_path string tensor, too.
    _write_like_estimator(_eval_dir(any_dir), 100, {})
    assert list(read_eval_history(_pattern(any_dir)).results) == [{"loss": 0.5, "global_step": 100}]


# ----------------------------------------------------------------------------
# Which files are read, and in which order.


def test_reads_every_file_the_pattern_matches_and_no_other(any_dir: str) -> None:
    support.write_legacy_events(_eval_dir(any_dir), RESULTS[:1])
    support.write_tf2_events(_eval_dir(any_dir), RESULTS[1:2])
    _write_like_estimator(_eval_dir(any_dir), 300, {"loss": np.array(0.5), "accuracy": 0.875})
    # Outside the pattern: another dir (not "eval_*": TF's ram:// rmtree fails on such a
    # sibling, a TensorFlow bug) and a non-event file.
    support.write_legacy_events(os.path.join(any_dir, "other_eval"), EXTRA)
    _write_bytes(os.path.join(_eval_dir(any_dir), "notes.txt"), b"loss=0.0")
    history = read_eval_history(_pattern(any_dir))
    assert list(history.results) == _expected(RESULTS)
    assert history.files_read == 3


def test_a_step_written_to_two_files_merges_its_metrics(any_dir: str) -> None:
    support.write_legacy_events(_eval_dir(any_dir), [(100, {"loss": 0.5})])
    support.write_tf2_events(_eval_dir(any_dir), [(100, {"accuracy": 0.75})])
    assert list(read_eval_history(_pattern(any_dir)).results) == [
        {"loss": 0.5, "accuracy": 0.75, "global_step": 100}
    ]


@pytest.mark.parametrize("newer_file_sorts", ["first", "last"])
def test_the_newest_write_of_a_step_wins_whatever_the_order_of_file_names(
    any_dir: str, newer_file_sorts: str
) -> None:
    older = _read_bytes(
        _write_timed_events(os.path.join(any_dir, "w1"), [(1000.0, 100, {"loss": 0.5})])
    )
    newer = _read_bytes(
        _write_timed_events(os.path.join(any_dir, "w2"), [(2000.0, 100, {"loss": 0.25})])
    )
    first, last = (newer, older) if newer_file_sorts == "first" else (older, newer)
    _place(any_dir, "1000.a", first)
    _place(any_dir, "2000.b", last)
    assert list(read_eval_history(_pattern(any_dir)).results) == [
        {"loss": 0.25, "global_step": 100}
    ]


def _event(wall_time: float, step: int, **metrics: float) -> bytes:
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in metrics.items()]
    )
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary).SerializeToString()


# Three files' records; step 200 is written twice, last (by wall time) with loss 0.5.
_FILE_RECORDS = [
    [_event(1.0, 100, loss=0.75), _event(2.0, 200, loss=0.25, accuracy=0.5)],
    [_event(3.0, 200, loss=0.5)],
    [_event(4.0, 300, loss=0.125), _event(0.5, 50, loss=1.0)],
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_result_does_not_depend_on_which_file_holds_which_records(
    any_dir: str, order: Tuple[int, ...]
) -> None:
    # Empty files for the glob to find; their records come from the loader.
    paths = [_place(any_dir, str(i), b"") for i in order]
    by_path = {path: _FILE_RECORDS[i] for i, path in enumerate(paths)}
    history = read_eval_history(_pattern(any_dir), load_records=lambda p: by_path[p])
    assert list(history.results) == [
        {"loss": 1.0, "global_step": 50},
        {"loss": 0.75, "global_step": 100},
        {"loss": 0.5, "accuracy": 0.5, "global_step": 200},
        {"loss": 0.125, "global_step": 300},
    ]
    assert history.files_read == 3


def test_two_writers_of_the_same_steps_merge_into_one_result_per_step(any_dir: str) -> None:
    # Estimator's loss in one file and a second writer's TF2 accuracy in another,
    # at the same steps: the files are read side by side, merged by step.
    support.write_legacy_events(_eval_dir(any_dir), [(s, {"loss": m["loss"]}) for s, m in RESULTS])
    support.write_tf2_events(
        _eval_dir(any_dir), [(s, {"accuracy": m["accuracy"]}) for s, m in RESULTS]
    )
    assert list(read_eval_history(_pattern(any_dir)).results) == _expected(RESULTS)


def test_a_restarted_evaluator_re_evaluating_a_step_gives_one_result_newest_wins(
    any_dir: str,
) -> None:
    # The first evaluator process evaluated steps 100-300; after a restart the next
    # one re-evaluated step 300 (another loss, written later) into a new file.
    first = _write_timed_events(
        os.path.join(any_dir, "w1"),
        [(1.0, 100, {"loss": 0.75}), (2.0, 200, {"loss": 0.5}), (3.0, 300, {"loss": 0.25})],
    )
    second = _write_timed_events(
        os.path.join(any_dir, "w2"), [(9.0, 300, {"loss": 0.375}), (10.0, 400, {"loss": 0.125})]
    )
    _place(any_dir, "1.first", _read_bytes(first))
    _place(any_dir, "2.second", _read_bytes(second))
    assert [
        (r["global_step"], r["loss"]) for r in read_eval_history(_pattern(any_dir)).results
    ] == [
        (100, 0.75),
        (200, 0.5),
        (300, 0.375),
        (400, 0.125),
    ]


def test_a_step_written_again_after_its_file_went_down_is_an_evaluation_of_its_own(
    any_dir: str,
) -> None:
    # The documented trade-off of streaming (docs/design.md, "Reading the history"):
    # a file whose steps go down breaks the premise that they increase, and a group
    # after the drop is yielded alone instead of merged with its step's earlier write.
    path = _write_timed_events(
        os.path.join(any_dir, "w"),
        [(1.0, 100, {"loss": 0.5}), (2.0, 200, {"loss": 0.25}), (3.0, 100, {"loss": 0.75})],
    )
    _place(any_dir, "1.restarted", _read_bytes(path))
    assert [(e.step, e["loss"]) for e in scan_eval_history(_pattern(any_dir))] == [
        (100, 0.5),
        (200, 0.25),
        (100, 0.75),
    ]
    # Holding every result anyway, read_eval_history merges them: the newest wins.
    assert [
        (r["global_step"], r["loss"]) for r in read_eval_history(_pattern(any_dir)).results
    ] == [
        (100, 0.75),
        (200, 0.25),
    ]


# ----------------------------------------------------------------------------
# Streaming: files are read as the scan is iterated, one evaluation at a time.


def _counting(loader: RecordLoader, consumed: List[str]) -> RecordLoader:
    def load(path: str) -> Iterator[bytes]:
        for record in loader(path):
            consumed.append(path)
            yield record

    return load


def test_no_file_is_read_before_the_scan_is_iterated(any_dir: str) -> None:
    support.write_legacy_events(_eval_dir(any_dir), RESULTS)
    consumed: List[str] = []
    scan = scan_eval_history(_pattern(any_dir), load_records=_counting(_real_records, consumed))
    assert scan.files_read == 1
    assert consumed == []
    assert [e.step for e in scan] == [100, 200, 300]
    assert len(consumed) > 0


def test_each_evaluation_is_yielded_once_the_next_step_begins(
    any_dir: str, write_events: Writer
) -> None:
    path = write_events(_eval_dir(any_dir), RESULTS)
    records_in_file = len(list(_real_records(path)))
    consumed: List[str] = []
    scan = iter(
        scan_eval_history(_pattern(any_dir), load_records=_counting(_real_records, consumed))
    )
    first = next(scan)
    # file_version, the records of step 100, and the first of step 200: no more.
    assert first.step == 100
    assert len(consumed) == 1 + (records_in_file - 1) // len(RESULTS) + 1
    assert dict(first) == _expected(RESULTS[:1])[0]


@pytest.mark.parametrize("metric", ["loss", "accuracy", "image", "absent"])
def test_the_metric_hint_changes_no_result(any_dir: str, metric: str) -> None:
    writer = tf.summary.create_file_writer(_eval_dir(any_dir))
    with writer.as_default():
        tf.summary.scalar("loss", 0.5, step=100)
        tf.summary.image("image", tf.zeros([1, 2, 2, 3]), step=100)
        tf.summary.scalar("accuracy", 0.25, step=200)  # No loss at this step.
        tf.summary.image("image", tf.zeros([1, 2, 2, 3]), step=300)  # No number at all.
        tf.summary.scalar("loss", 0.125, step=400)
    writer.close()
    pattern = _pattern(any_dir)
    hinted = [dict(e) for e in scan_eval_history(pattern, metric=metric)]
    assert hinted == [dict(e) for e in scan_eval_history(pattern)]
    assert [r["global_step"] for r in hinted] == [100, 200, 400]


def test_an_evaluation_is_a_mapping_that_decodes_what_is_asked(any_dir: str) -> None:
    support.write_tf2_events(_eval_dir(any_dir), RESULTS[:1])
    (evaluation,) = scan_eval_history(_pattern(any_dir))
    assert evaluation["loss"] == 0.75 and evaluation.get("loss") == 0.75
    assert "accuracy" in evaluation and "auc" not in evaluation
    assert evaluation.get("auc") is None and evaluation.get("auc", 1.0) == 1.0
    with pytest.raises(KeyError, match="auc"):
        evaluation["auc"]
    assert evaluation["global_step"] == 100
    assert dict(evaluation) == {"loss": 0.75, "accuracy": 0.5, "global_step": 100}
    assert len(evaluation) == 3 and sorted(evaluation) == ["accuracy", "global_step", "loss"]


# ----------------------------------------------------------------------------
# Damaged files: truncated tails, corrupt records, records that are not events.


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda r: r[:1], id="1 byte"),
        pytest.param(lambda r: r[:8], id="length only"),
        pytest.param(lambda r: r[:12], id="header only"),
        pytest.param(lambda r: r[:13], id="1 data byte"),
        pytest.param(lambda r: r[:-4], id="no data crc"),
        pytest.param(lambda r: r[:-1], id="all but 1 byte"),
    ],
)
def test_a_truncated_tail_keeps_the_complete_records_before_it(
    any_dir: str,
    write_events: Writer,
    cut: Callable[[bytes], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    complete = _tf_written(any_dir, write_events, list(RESULTS) + list(EXTRA))
    last_record = _frames(complete)[-1]
    _place(any_dir, "1.cut", complete[: -len(last_record)] + cut(last_record))
    history = read_eval_history(_pattern(any_dir))
    assert list(history.results) == _expected(RESULTS)
    # A preempted writer leaves this behind on every restart: no warning for it.
    assert _warnings(caplog) == []


def test_a_truncated_record_completed_later_is_read_on_the_next_call(
    any_dir: str, write_events: Writer
) -> None:
    # TensorBoard's test of a half-written record: record[:-1], then record[-1:].
    complete = _tf_written(any_dir, write_events, list(RESULTS) + list(EXTRA))
    path = _place(any_dir, "1.growing", complete[:-1])
    assert list(read_eval_history(_pattern(any_dir)).results) == _expected(RESULTS)
    _append_bytes(path, complete[-1:])
    assert _read_bytes(path) == complete
    assert list(read_eval_history(_pattern(any_dir)).results) == _expected(
        list(RESULTS) + list(EXTRA)
    )


@pytest.mark.parametrize(
    "offset_in_record",
    [
        pytest.param(0, id="length low byte"),
        pytest.param(7, id="length high byte"),
        pytest.param(8, id="length crc"),
        pytest.param(12, id="first data byte"),
        pytest.param(-5, id="last data byte"),
        pytest.param(-1, id="data crc"),
    ],
)
def test_a_corrupt_record_ends_its_file_with_one_warning_naming_it(
    any_dir: str, offset_in_record: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Legacy: one record per step, so the record of step 200 is the third (after file_version).
    data = _tf_written(any_dir, support.write_legacy_events, RESULTS)
    frames = _frames(data)
    start = sum(len(f) for f in frames[:2])
    position = start + offset_in_record % len(frames[2])
    corrupt = _place(any_dir, "1.corrupt", _flip(data, position))
    support.write_legacy_events(_eval_dir(any_dir), EXTRA)  # Another file, intact.

    history = read_eval_history(_pattern(any_dir))

    assert list(history.results) == _expected(RESULTS[:1] + list(EXTRA))
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert corrupt in warnings[0].getMessage()


@pytest.mark.parametrize(
    "garbage", [b"", b"loss=0.1\n" * 20, bytes(range(256))], ids=["empty", "text", "binary"]
)
def test_a_file_that_is_not_an_event_file_yields_nothing(
    any_dir: str, garbage: bytes, write_events: Writer
) -> None:
    write_events(_eval_dir(any_dir), RESULTS)
    _place(any_dir, "0.garbage", garbage)
    history = read_eval_history(_pattern(any_dir))
    assert list(history.results) == _expected(RESULTS)
    assert history.files_read == 2


def test_a_record_that_is_not_an_event_is_skipped_with_a_warning(
    any_dir: str, write_events: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    scratch = os.path.join(any_dir, "scratch", "records")
    tf.io.gfile.makedirs(os.path.dirname(scratch))
    with tf.io.TFRecordWriter(scratch) as writer:
        writer.write(b"not an Event proto")  # A valid record whose data does not parse.
    alien = _read_bytes(scratch)
    frames = _frames(_tf_written(any_dir, write_events, RESULTS))
    path = _place(any_dir, "1.mixed", b"".join(frames[:2] + [alien] + frames[2:] + [alien]))

    history = read_eval_history(_pattern(any_dir))

    assert list(history.results) == _expected(RESULTS)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert path in warnings[0].getMessage()


# ----------------------------------------------------------------------------
# Files that vanish or fail while being read, and patterns that cannot be listed.


def _failing_after(failing_path: str, records: int, error: Exception) -> RecordLoader:
    """A loader that reads `failing_path` for `records` records, then raises `error`."""

    def load(path: str) -> Iterator[bytes]:
        if path != failing_path:
            yield from _real_records(path)
            return
        yield from itertools.islice(_real_records(path), records)
        raise error

    return load


@pytest.mark.parametrize(
    "error",
    [
        tf.errors.NotFoundError(None, None, "event file deleted"),
        tf.errors.UnavailableError(None, None, "connection reset"),
        tf.errors.DataLossError(None, None, "checksum mismatch"),
        OSError(5, "Input/output error"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize(
    "records_before, steps_kept",
    [
        pytest.param(0, [], id="gone between glob and read"),
        pytest.param(1, [], id="after file_version"),
        pytest.param(3, [100, 200], id="after 2 evaluations"),
        pytest.param(4, [100, 200, 300], id="at the end"),
    ],
)
def test_a_file_failing_mid_read_keeps_its_records_read_before_and_the_other_files(
    any_dir: str,
    error: Exception,
    records_before: int,
    steps_kept: List[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = _place(
        any_dir, "1.failing", _tf_written(any_dir, support.write_legacy_events, RESULTS)
    )
    support.write_legacy_events(_eval_dir(any_dir), EXTRA)

    history = read_eval_history(
        _pattern(any_dir), load_records=_failing_after(failing, records_before, error)
    )

    kept = [r for r in RESULTS if r[0] in steps_kept]
    assert list(history.results) == _expected(kept + list(EXTRA))
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert failing in warnings[0].getMessage()


def test_a_file_deleted_between_glob_and_read_is_skipped_with_a_warning(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    doomed = _place(any_dir, "1.doomed", _tf_written(any_dir, support.write_legacy_events, RESULTS))
    support.write_legacy_events(_eval_dir(any_dir), EXTRA)

    def delete_then_load(path: str) -> Iterator[bytes]:
        if path == doomed:
            tf.io.gfile.remove(path)  # Deleted by, e.g., a cleanup job after the glob.
        return _real_records(path)

    history = read_eval_history(_pattern(any_dir), load_records=delete_then_load)

    assert list(history.results) == _expected(EXTRA)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert doomed in warnings[0].getMessage()


def test_an_unmatched_pattern_is_an_empty_history_without_warning(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The first evaluation of a new model: the eval dir does not exist yet.
    assert read_eval_history(_pattern(any_dir)) == EvalHistory(results=(), files_read=0)
    assert _warnings(caplog) == []


def test_a_directory_that_cannot_be_listed_is_an_empty_history_with_a_warning(
    any_dir: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    support.write_legacy_events(_eval_dir(any_dir), RESULTS)

    def glob(pattern):
        raise tf.errors.PermissionDeniedError(None, None, f"{pattern}: permission denied")

    monkeypatch.setattr(tf.io.gfile, "glob", glob)
    assert read_eval_history(_pattern(any_dir)) == EvalHistory()
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "permission denied" in warnings[0].getMessage()


def test_a_filesystem_tensorflow_does_not_know_is_an_empty_history_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert read_eval_history("nosuchfs://bucket/model/eval/*.tfevents.*") == EvalHistory()
    assert len(_warnings(caplog)) == 1


def test_a_directory_matching_the_pattern_is_skipped(any_dir: str) -> None:
    support.write_legacy_events(_eval_dir(any_dir), RESULTS)
    tf.io.gfile.makedirs(os.path.join(_eval_dir(any_dir), "events.out.tfevents.dir"))
    assert list(read_eval_history(_pattern(any_dir)).results) == _expected(RESULTS)


# ----------------------------------------------------------------------------
# The original exporter's reader, on the same files.


def _best_by_original(pattern: str) -> Mapping[str, float]:
    exporter = tf.estimator.BestExporter(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub
    )
    best = exporter._get_best_eval_result(pattern)
    assert best is not None, "the original reader found no eval result"
    return best


def _best_by_history(pattern: str) -> Mapping[str, float]:
    results = read_eval_history(pattern).results
    best, _ = Judge(loss_smaller).best_of(Best(r, Source.EVENTS) for r in results)
    assert best is not None, "no eval result found"
    return best.eval_result


# Losses 0.75, 0.25, 0.5: the best is step 200's 0.25; step 400's 0.125 is never complete.
def _truncated_tail(model_dir: str) -> None:
    complete = _tf_written(model_dir, support.write_legacy_events, list(RESULTS) + list(EXTRA))
    _place(model_dir, "1.truncated", complete[:-1])


def _corrupt_record(model_dir: str) -> None:
    data = _tf_written(model_dir, support.write_legacy_events, list(RESULTS) + list(EXTRA))
    frames = _frames(data)
    # A byte inside the data of step 300's record (the 4th).
    _place(model_dir, "1.corrupt", _flip(data, sum(len(f) for f in frames[:3]) + 20))


def _tf2_scalars(model_dir: str) -> None:
    support.write_tf2_events(_eval_dir(model_dir), RESULTS)


_ORIGINAL_FAILS = {
    _truncated_tail: (tf.errors.DataLossError, "DataLossError from summary_iterator"),
    _corrupt_record: (tf.errors.DataLossError, "DataLossError from summary_iterator"),
    _tf2_scalars: (AssertionError, "reads only simple_value, not TF2 tensor scalars"),
}


@pytest.mark.parametrize(
    "damage, reader",
    [
        param
        for damage, (raises, reason) in _ORIGINAL_FAILS.items()
        for param in [
            pytest.param(damage, _best_by_history, id=f"{damage.__name__[1:]}-history"),
            pytest.param(
                damage,
                _best_by_original,
                marks=pytest.mark.xfail(strict=True, raises=raises, reason=reason),
                id=f"{damage.__name__[1:]}-original",
            ),
        ]
    ],
)
def test_the_best_result_is_found_where_the_original_reader_fails(
    any_dir: str, damage: Callable[[str], None], reader: Callable[[str], Mapping[str, float]]
) -> None:
    damage(any_dir)
    best = reader(_pattern(any_dir))
    assert best["loss"] == 0.25
