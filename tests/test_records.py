"""Tests of best_exporter.records: the eval_result.json record kept in every export."""

import datetime
import decimal
import fractions
import json
import logging
import math
import os
import threading
from typing import List

import numpy as np
import pytest
import tensorflow as tf

from best_exporter import BestExporter, ExportRecord, __version__, read_export_records
from best_exporter.core import records
from tests import support
from tests.faulty_gfile import FaultyGfile

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


# ----------------------------------------------------------------------------
# Poisoned records are invalid records, never exceptions (issue 8, item 3).

_DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"metrics": {"loss": null}}', r"metric 'loss' is not a number: None"),
        ('{"metrics": {"loss": [0.5]}}', r"metric 'loss' is not a number: \[0.5\]"),
        ('{"metrics": {"loss": {"v": 0.5}}}', r"metric 'loss' is not a number: \{'v': 0.5\}"),
        ('{"metrics": {"loss": true}}', r"metric 'loss' is not a number: True"),
        ('{"metrics": {"loss": "0.5"}}', r"metric 'loss' is not a number: '0.5'"),
        ('{"metrics": null}', "not an export record"),
        ('{"metrics": {"loss": 0.5}, "global_step": "abc"}', r"global_step='abc'"),
        ('{"metrics": {"loss": 0.5}, "global_step": []}', r"global_step=\[\]"),
        ('{"metrics": {"loss": 0.5}, "global_step": 2.5}', r"global_step=2.5"),
        ('{"metrics": {"loss": 0.5}, "global_step": NaN}', r"global_step=nan"),
        ('{"metrics": {"loss": 0.5}, "global_step": true}', r"global_step=True"),
        ('{"metrics": {"loss": 0.5}, "global_step": 1e30}', r"global_step=1e\+30"),
        ('{"metrics": {"loss": 0.5}, "exported_at": 5}', r"exported_at is not a string: 5"),
        ('{"metrics": {}, "checkpoint_path": ["a"]}', r"checkpoint_path is not a string"),
        ('{"metrics": {"loss": ' + _DEEP + "}}", "RecursionError"),
        (b"\xff\xfe{", "can't decode|codec"),
        ("null", "not an export record: None"),
        ("", "Expecting value"),
    ],
    ids=lambda v: v if len(str(v)) < 40 else str(v)[:40],
)
def test_loads_record_turns_any_poison_into_a_value_error_naming_it(text, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        records.loads_record(text)


@pytest.mark.parametrize(
    "text, global_step, loss",
    [
        ('{"metrics": {"loss": 0.5}, "global_step": 7.0}', 7, 0.5),
        ('{"metrics": {"loss": 1e400}}', None, math.inf),
        ('{"metrics": {"loss": -' + "9" * 400 + "}}", None, -math.inf),  # Beyond float: -inf.
        ('{"metrics": {"loss": 3}, "unknown": [1, {"x": NaN}]}', None, 3.0),
    ],
)
def test_loads_record_accepts_odd_but_valid_records(text: str, global_step, loss: float) -> None:
    record = records.loads_record(text)
    assert record["global_step"] == global_step
    assert record["metrics"]["loss"] == loss and type(record["metrics"]["loss"]) is float
    assert set(record) == {"global_step", "metrics"}  # Unknown fields left out.


def test_a_poisoned_record_is_a_problem_of_its_version_not_an_error(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    base = str(tmp_path / "export")
    for offset, text in enumerate(['{"metrics": {"loss": null}}', '{"metrics": ' + _DEEP + "}"]):
        version_dir = os.path.join(base, str(V + offset))
        _write(os.path.join(version_dir, "saved_model.pb"), "model")
        _write(os.path.join(version_dir, "assets.extra", "eval_result.json"), text)

    with caplog.at_level(logging.WARNING, logger="tensorflow.best_exporter"):
        exports = read_export_records(base)

    assert [(e.record, e.complete) for e in exports] == [(None, True), (None, True)]
    assert "is not a number: None" in exports[0].problem
    assert "RecursionError" in exports[1].problem
    assert len(caplog.records) == 2


# ----------------------------------------------------------------------------
# A failed read is "could not look", never "no record" (issue 8, item 1).


@pytest.mark.parametrize(
    "operation, path_contains",
    [
        ("exists", "eval_result.json"),
        ("open", "eval_result.json"),
        ("exists", "saved_model.pb"),
        ("listdir", "export"),
    ],
)
def test_a_failed_read_raises_instead_of_reading_as_no_record(
    tmp_path, monkeypatch, operation: str, path_contains: str
) -> None:
    base = str(tmp_path / "export")
    version_dir = os.path.join(base, str(V))
    _write(os.path.join(version_dir, "saved_model.pb"), "model")
    _write(
        os.path.join(version_dir, "assets.extra", "eval_result.json"),
        records.dumps_record({"global_step": 1, "metrics": {"loss": 0.5}}),
    )
    FaultyGfile(monkeypatch).fail(operation, path_contains=path_contains)

    with pytest.raises(tf.errors.UnavailableError, match="injected"):
        read_export_records(base)


def test_a_listing_for_a_person_may_take_a_failed_read_as_the_versions_problem(
    tmp_path, monkeypatch
) -> None:
    version_dir = str(tmp_path / str(V))
    _write(os.path.join(version_dir, "saved_model.pb"), "model")
    _write(os.path.join(version_dir, "assets.extra", "eval_result.json"), "{}")
    FaultyGfile(monkeypatch).fail("open", path_contains="eval_result.json")

    with pytest.raises(tf.errors.UnavailableError):
        records.read_export(V, version_dir)
    export = records.read_export(V, version_dir, read_failures_as_problems=True)

    assert export.record is None and export.complete
    assert export.problem.startswith("UnavailableError: injected")


def test_an_unknown_filesystem_scheme_is_an_error_not_an_empty_listing() -> None:
    with pytest.raises(tf.errors.OpError, match="not implemented"):
        read_export_records("nosuchscheme://bucket/export/best")


def test_a_record_deleted_between_the_check_and_the_read_is_no_record(
    tmp_path, monkeypatch
) -> None:
    version_dir = str(tmp_path / str(V))
    _write(os.path.join(version_dir, "assets.extra", "eval_result.json"), "{}")
    FaultyGfile(monkeypatch).fail("open", tf.errors.NotFoundError, "eval_result.json")
    assert records.read_record(version_dir) is None


# ----------------------------------------------------------------------------
# Metric values of any numeric kind are stored; restored as numpy (issue 8, item 5).


@pytest.mark.parametrize(
    "value, stored",
    [
        (tf.constant(0.5), 0.5),
        (tf.constant(3, dtype=tf.int64), 3.0),
        (tf.Variable(0.25), 0.25),
        (decimal.Decimal("0.125"), 0.125),
        (fractions.Fraction(1, 4), 0.25),
        (np.float16(0.5), 0.5),
        (np.uint64(7), 7.0),
        (np.array([[0.75]]), 0.75),
        (10**400, math.inf),
        (-(10**400), -math.inf),
        ("0.5", None),
        (b"0.5", None),
        (True, None),
        (np.bool_(True), None),
        (1 + 2j, None),
        (None, None),
        (tf.constant([1.0, 2.0]), None),
    ],
    ids=repr,
)
def test_numeric_metrics_stores_numbers_of_any_kind(value, stored) -> None:
    metrics = records.numeric_metrics({"m": value, "global_step": 1})
    if stored is None:
        assert metrics == {}
    else:
        assert metrics == {"m": stored} and type(metrics["m"]) is float


def test_restored_results_are_numpy_scalars_as_estimator_evaluate_gives_them() -> None:
    export = ExportRecord(V, "/x", {"global_step": 12, "metrics": {"loss": 0.5, "auc": 0.75}})
    result = export.eval_result
    assert type(result["loss"]) is np.float64 and type(result["auc"]) is np.float64
    assert type(result["global_step"]) is np.int64
    assert result["loss"].item() == 0.5 and result["global_step"].item() == 12


@pytest.mark.parametrize(
    "eval_result, step",
    [
        ({}, None),
        ({"global_step": None}, None),
        ({"global_step": np.int64(12)}, 12),
        ({"global_step": 12.0}, 12),
        ({"global_step": tf.constant(12, dtype=tf.int64)}, 12),
        ({"global_step": 2**62}, 2**62),
    ],
)
def test_global_step_of_gives_an_int(eval_result, step) -> None:
    assert records.global_step_of(eval_result) == step


@pytest.mark.parametrize(
    "value, shown",
    [
        (math.nan, "nan"),
        (math.inf, "inf"),
        ("abc", "'abc'"),
        ([], r"\[\]"),
        (2.5, "2.5"),
        (True, "True"),
        (2**64, str(2**64)),
    ],
)
def test_global_step_of_an_odd_step_raises_naming_it(value, shown: str) -> None:
    with pytest.raises(
        ValueError, match=rf"must be an integer step.*Received: global_step={shown}"
    ):
        records.global_step_of({"global_step": value})


@pytest.mark.parametrize(
    "epoch, kept",
    [(3, 3), (0, 0), (None, None), (-1, None), (2.5, None), ("3", None), (True, None)],
)
def test_the_keras_epoch_is_kept_when_it_is_a_count_and_never_costs_the_record(epoch, kept) -> None:
    text = json.dumps({"global_step": 5, "metrics": {"loss": 0.5}, "epoch": epoch})
    record = records.loads_record(text)
    assert record.get("epoch") == kept
    assert record["metrics"] == {"loss": 0.5}
