"""Tests of best_exporter.records: the eval_result.json record kept in every export."""

import datetime
import json
import logging
import math
import os
import threading
from typing import List

import numpy as np
import pytest
import tensorflow as tf

from best_exporter import BestExporter, ExportRecord, __version__, read_export_records, records
from tests import support

STAGING_ROOT = "ram://best_exporter-staging"
V = 1_700_000_000


def _staging_leftovers() -> List[str]:
    if not tf.io.gfile.exists(STAGING_ROOT):
        return []
    return tf.io.gfile.listdir(STAGING_ROOT)


def _make_checkpoint(model_dir: str, step: int) -> str:
    """An (empty) V2 checkpoint as the exporter checks for it: a prefix with an .index file."""
    prefix = os.path.join(model_dir, f"model.ckpt-{step}")
    with tf.io.gfile.GFile(prefix + ".index", "w") as f:
        f.write("")
    return prefix


def _write(path: str, text: str) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _read_json(path: str):
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


# ----------------------------------------------------------------------------
# Building and (de)serializing records.


@pytest.mark.parametrize(
    "eval_result, metrics",
    [
        ({"loss": np.float32(0.5), "global_step": np.int64(7)}, {"loss": 0.5}),
        ({"accuracy": np.float64(0.25), "count": np.int32(3)}, {"accuracy": 0.25, "count": 3.0}),
        ({"auc": np.array([0.75], dtype=np.float32)}, {"auc": 0.75}),
        ({"auc": np.array(0.75)}, {"auc": 0.75}),
        ({"loss": 1, "flag": True, "np_flag": np.bool_(False)}, {"loss": 1.0}),
        ({"loss": 1.0, "name": "run", "image": b"\x89PNG", "vector": np.zeros(3)}, {"loss": 1.0}),
        ({"loss": math.nan, "x": -math.inf}, {"loss": math.nan, "x": -math.inf}),
        ({}, {}),
    ],
)
def test_numeric_metrics_keeps_single_numbers_as_floats(eval_result, metrics) -> None:
    result = records.numeric_metrics(eval_result)
    assert set(result) == set(metrics)
    for key, value in metrics.items():
        assert type(result[key]) is float
        assert result[key] == value or (math.isnan(value) and math.isnan(result[key]))


def test_make_record_has_every_field_in_plain_types() -> None:
    exported_at = datetime.datetime(
        2026, 11, 25, 13, 0, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    record = records.make_record(
        support.eval_result(1200, loss=0.5, accuracy=0.75),
        b"/model/model.ckpt-1200",
        "best",
        exported_at,
    )
    assert record == {
        "global_step": 1200,
        "metrics": {"loss": 0.5, "accuracy": 0.75},
        "checkpoint_path": "/model/model.ckpt-1200",
        "exporter": "best",
        "exported_at": "2026-11-25T12:00:05Z",  # Converted to UTC.
        "best_exporter_version": __version__,
    }
    assert type(record["global_step"]) is int
    assert all(type(v) is float for v in record["metrics"].values())


def test_make_record_without_step_or_checkpoint_holds_none() -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    record = records.make_record({"loss": 0.5}, None, "best", now)
    assert record["global_step"] is None
    assert record["checkpoint_path"] is None
    assert record["exported_at"].endswith("Z")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1.5, 1e300])
def test_dumps_and_loads_round_trip_any_metric_value(value: float) -> None:
    record = {"global_step": 3, "metrics": {"loss": value, "accuracy": 0.5}, "exporter": "b"}

    text = records.dumps_record(record)

    # Strict JSON: readable by parsers without NaN/Infinity extensions.
    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(text, parse_constant=reject)
    loaded = records.loads_record(text)
    assert loaded["global_step"] == 3 and loaded["exporter"] == "b"
    assert loaded["metrics"]["accuracy"] == 0.5
    assert loaded["metrics"]["loss"] == value or (
        math.isnan(value) and math.isnan(loaded["metrics"]["loss"])
    )


def test_dumps_record_does_not_change_its_argument() -> None:
    record = {"metrics": {"loss": math.nan}}
    records.dumps_record(record)
    assert math.isnan(record["metrics"]["loss"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("[1, 2]", "not an export record"),
        ('{"metrics": [1]}', "not an export record"),
        ('{"metrics": {"loss": "low"}}', r"metric 'loss' is not a number: 'low'"),
        ("{not json", "Expecting property name"),
    ],
)
def test_loads_record_rejects_what_is_not_a_record(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        records.loads_record(text)


def test_staged_record_is_readable_inside_and_gone_after() -> None:
    record = {"global_step": 1, "metrics": {"loss": 0.5}}
    with records.staged_record(record) as path:
        assert path.startswith(STAGING_ROOT + "/")
        assert path.endswith("/eval_result.json")
        assert _read_json(path)["metrics"] == {"loss": 0.5}
    assert not tf.io.gfile.exists(path)
    assert _staging_leftovers() == []


def test_staged_record_is_removed_when_the_export_raises() -> None:
    with pytest.raises(RuntimeError):
        with records.staged_record({"metrics": {}}) as path:
            raise RuntimeError("export failed")
    assert not tf.io.gfile.exists(path)
    assert _staging_leftovers() == []


# ----------------------------------------------------------------------------
# Reading records from an export directory.


def test_read_record_of_a_version_without_one_is_none(any_dir: str) -> None:
    tf.io.gfile.makedirs(os.path.join(any_dir, str(V)))
    assert records.read_record(os.path.join(any_dir, str(V))) is None


@pytest.mark.parametrize("text", ["{truncated", '{"metrics": {"loss": "x"}}', "[]"])
def test_unreadable_record_is_none_with_a_warning(
    any_dir: str, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    version_dir = os.path.join(any_dir, str(V))
    _write(os.path.join(version_dir, "assets.extra", "eval_result.json"), text)

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        assert records.read_record(version_dir) is None

    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "Ignoring unreadable export record" in caplog.records[0].getMessage()


def test_read_export_records_lists_versions_oldest_first(any_dir: str) -> None:
    base = os.path.join(any_dir, "export", "best")
    for version, loss in [(V + 3, 0.25), (V + 1, 0.5)]:
        text = records.dumps_record({"global_step": version - V, "metrics": {"loss": loss}})
        _write(os.path.join(base, str(version), "assets.extra", "eval_result.json"), text)
    tf.io.gfile.makedirs(os.path.join(base, str(V + 2)))  # By tf.estimator.BestExporter.
    tf.io.gfile.makedirs(os.path.join(base, "temp-1700000009"))
    tf.io.gfile.makedirs(os.path.join(base, "other"))

    exports = read_export_records(base.encode())

    assert [e.version for e in exports] == [V + 1, V + 2, V + 3]
    assert [e.path for e in exports] == [os.path.join(base, str(V + i)) for i in (1, 2, 3)]
    assert exports[1].record is None and exports[1].eval_result is None
    assert exports[0].eval_result == {"loss": 0.5, "global_step": 1}
    assert exports[2].eval_result == {"loss": 0.25, "global_step": 3}


def test_read_export_records_of_a_missing_dir_is_empty(any_dir: str) -> None:
    assert read_export_records(os.path.join(any_dir, "export", "none")) == []


@pytest.mark.parametrize(
    "path, in_flight",
    [
        ("/model/export/best", 1),
        ("relative/export/best", 1),
        ("file:///model/export/best", 1),
        ("gs://bucket/model/export/best", records.MAX_CONCURRENT_READS),
        ("s3://bucket/model/export/best", records.MAX_CONCURRENT_READS),
        ("hdfs://namenode/model/export/best", records.MAX_CONCURRENT_READS),
    ],
)
def test_reads_are_concurrent_only_on_network_filesystems(path: str, in_flight: int) -> None:
    assert records.reads_in_flight(path) == in_flight


def test_read_export_records_keeps_the_order_of_many_versions_read_at_once(
    any_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Concurrent on local disk too, as on a bucket.
    monkeypatch.setattr(records, "LOCAL_READS_IN_FLIGHT", records.MAX_CONCURRENT_READS)
    base = os.path.join(any_dir, "export", "best")
    count = 3 * records.MAX_CONCURRENT_READS + 1
    for i in range(count):
        if i % 7 == 3:
            tf.io.gfile.makedirs(os.path.join(base, str(V + i)))  # Without a record.
            continue
        text = records.dumps_record({"global_step": i, "metrics": {"loss": i / count}})
        _write(os.path.join(base, str(V + i), "assets.extra", "eval_result.json"), text)

    exports = read_export_records(base)

    assert [e.version for e in exports] == [V + i for i in range(count)]
    assert [e.eval_result for e in exports] == [
        None if i % 7 == 3 else {"loss": i / count, "global_step": i} for i in range(count)
    ]


def test_reads_run_concurrently_up_to_the_limit() -> None:
    # Each read waits until `limit` reads are in flight: read one by one, the
    # barrier would break (BrokenBarrierError) instead of letting them through.
    limit = 4
    barrier = threading.Barrier(limit, timeout=30)
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most

    def read(version_dir: str):
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        barrier.wait()
        with lock:
            in_flight[0] -= 1
        return {"dir": version_dir}

    dirs = [f"/export/{V + i}" for i in range(3 * limit)]
    found = records.map_concurrently(read, dirs, max_workers=limit)

    assert found == [{"dir": d} for d in dirs]
    assert in_flight[1] == limit


def test_a_failing_record_read_leaves_the_others(
    any_dir: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "LOCAL_READS_IN_FLIGHT", records.MAX_CONCURRENT_READS)
    base = os.path.join(any_dir, "export", "best")
    for i in range(5):
        text = "{truncated" if i == 2 else records.dumps_record({"metrics": {"loss": 1.0 + i}})
        _write(os.path.join(base, str(V + i), "assets.extra", "eval_result.json"), text)

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        exports = read_export_records(base)

    assert [e.eval_result for e in exports] == [
        None if i == 2 else {"loss": 1.0 + i} for i in range(5)
    ]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(V + 2) in caplog.records[0].getMessage()


def test_eval_result_of_a_record_without_step_has_metrics_only() -> None:
    export = ExportRecord(V, "/x", {"global_step": None, "metrics": {"loss": 0.5}})
    assert export.eval_result == {"loss": 0.5}


# ----------------------------------------------------------------------------
# Records written by the exporter.


def test_every_export_carries_its_record(any_dir: str) -> None:
    estimator = support.FakeEstimator(any_dir)
    export_path = os.path.join(any_dir, "export", "best")
    exporter = BestExporter(
        name="best",
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        exports_to_keep=None,
    )
    written = []
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0, tzinfo=None)
    for step, loss in [(100, 0.5), (200, 0.25), (300, 0.125)]:
        checkpoint = _make_checkpoint(any_dir, step)
        result = support.eval_result(step, loss=loss, accuracy=0.75)
        written.append(exporter.export(estimator, export_path, checkpoint, result, False))

    after = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    exports = read_export_records(export_path)
    assert [e.path.encode() for e in exports] == written
    for export, (step, loss) in zip(exports, [(100, 0.5), (200, 0.25), (300, 0.125)]):
        record = _read_json(os.path.join(export.path, "assets.extra", "eval_result.json"))
        assert record["global_step"] == step
        assert record["metrics"] == {"loss": loss, "accuracy": 0.75}
        assert record["checkpoint_path"] == os.path.join(any_dir, f"model.ckpt-{step}")
        assert record["exporter"] == "best"
        assert record["best_exporter_version"] == __version__
        assert record["exported_at"].endswith("Z")
        exported_at = datetime.datetime.strptime(record["exported_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert before <= exported_at <= after  # UTC, whatever the local time zone.


def test_non_finite_metrics_round_trip_through_an_export(any_dir: str) -> None:
    estimator = support.FakeEstimator(any_dir)
    export_path = os.path.join(any_dir, "export", "best")
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    result = support.eval_result(100, loss=0.5, auc=math.nan, ratio=math.inf)

    exporter.export(estimator, export_path, None, result, False)

    (export,) = read_export_records(export_path)
    assert export.record["metrics"]["loss"] == 0.5
    assert math.isnan(export.record["metrics"]["auc"])
    assert export.record["metrics"]["ratio"] == math.inf


def test_user_assets_extra_are_kept_beside_the_record(any_dir: str, tmp_path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("red\ngreen\n")
    estimator = support.FakeEstimator(any_dir)
    export_path = os.path.join(any_dir, "export", "best")
    exporter = BestExporter(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        assets_extra={"vocab.txt": str(vocab), "nested/dir/vocab.txt": str(vocab)},
    )

    exported = exporter.export(estimator, export_path, None, support.eval_result(1, loss=1), False)

    assets = os.path.join(exported.decode(), "assets.extra")
    for name in ("vocab.txt", "nested/dir/vocab.txt"):
        with tf.io.gfile.GFile(os.path.join(assets, name)) as f:
            assert f.read() == "red\ngreen\n"
    assert _read_json(os.path.join(assets, "eval_result.json"))["metrics"] == {"loss": 1.0}
    passed = estimator.calls[0]["assets_extra"]
    assert passed["vocab.txt"] == str(vocab)
    assert passed["nested/dir/vocab.txt"] == str(vocab)
    assert passed["eval_result.json"].startswith(STAGING_ROOT + "/")


def test_exports_leave_nothing_behind_in_the_staging_area(any_dir: str) -> None:
    export_path = os.path.join(any_dir, "export", "best")
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(any_dir)
    for step, loss in [(1, 0.5), (2, 0.25)]:
        exporter.export(estimator, export_path, None, support.eval_result(step, loss=loss), False)
    estimator.error = tf.errors.UnavailableError(None, None, "disk")
    assert (
        exporter.export(estimator, export_path, None, support.eval_result(3, loss=0.1), False)
        is None
    )

    assert len(estimator.calls) == 3
    assert _staging_leftovers() == []


def test_read_export_records_tells_complete_versions_and_unusable_records(tmp_path) -> None:
    base = str(tmp_path / "export" / "best")
    good = os.path.join(base, str(V + 1))
    _write(os.path.join(good, "saved_model.pb"), "model")
    _write(
        os.path.join(good, "assets.extra", "eval_result.json"),
        records.dumps_record({"global_step": 1, "metrics": {"loss": 0.5}}),
    )
    half = os.path.join(base, str(V + 2))  # A record, but no SavedModel.
    _write(
        os.path.join(half, "assets.extra", "eval_result.json"),
        records.dumps_record({"global_step": 2, "metrics": {"loss": 0.25}}),
    )
    garbled = os.path.join(base, str(V + 3))
    _write(os.path.join(garbled, "saved_model.pbtxt"), "model")
    _write(os.path.join(garbled, "assets.extra", "eval_result.json"), "{truncated")

    exports = read_export_records(base)

    assert [(e.complete, e.record is not None, e.problem is not None) for e in exports] == [
        (True, True, False),
        (False, True, False),
        (True, False, True),
    ]
    assert "JSONDecodeError" in exports[2].problem
