"""Tests of best_exporter.restore: what a restarted exporter has to beat, whatever the disk says.

Unit tests call `restore.restore` directly with a fake sleep; restart tests go
through `BestExporter.export` with a fault-injecting `tf.io.gfile` (issue 8:
transient errors, poisoned records, incomplete versions, legacy migration).
Where the original exporter misbehaves too, it runs as a strict xfail.
"""

import logging
import math
import os
from typing import List

import numpy as np
import pytest
import tensorflow as tf

from best_exporter.core import records, restore
from best_exporter.core.compare import loss_smaller, lower_is_better
from best_exporter.core.decision import Best, Judge, Source
from tests import support
from tests.faulty_gfile import FaultyGfile
from tests.test_exporter import (
    LOGGER,
    OLD,
    OURS,
    _eval_events,
    _export,
    _export_path,
    _exporter,
    _messages,
    _old_version,
    _versions,
    original_fails,
)

V = 1_700_000_000


class _FakeHistory(list):
    """What a history reader returns: the earlier results, and a note for the log."""

    def __init__(self, results, note: str):
        super().__init__(results)
        self.note = note


def _no_history(step):
    return _FakeHistory([], "no history")


def _write_version(base: str, version: int, record=None, complete: bool = True) -> str:
    path = os.path.join(base, str(version))
    tf.io.gfile.makedirs(os.path.join(path, "assets.extra"))
    if complete:
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("model")
    if record is not None:
        text = record if isinstance(record, str) else records.dumps_record(record)
        with tf.io.gfile.GFile(os.path.join(path, "assets.extra", "eval_result.json"), "w") as f:
            f.write(text)
    return path


class FakeSleep:
    def __init__(self) -> None:
        self.delays: List[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# ----------------------------------------------------------------------------
# restore.restore


def test_restore_retries_a_failed_listing_with_backoff(tmp_path, monkeypatch) -> None:
    base = str(tmp_path / "export")
    _write_version(base, V, {"global_step": 1, "metrics": {"loss": 0.5}})
    listing = FaultyGfile(monkeypatch).fail("listdir", path_contains=base, times=2)
    sleep = FakeSleep()

    restored = restore.restore(
        Judge(loss_smaller), base, _no_history, 2, retry_delays=(0.1, 0.4), sleep=sleep
    )

    assert listing.hits == 2 and sleep.delays == [0.1, 0.4]
    assert restored.best.eval_result == {"loss": 0.5, "global_step": 1}
    assert restored.best_export_path == os.path.join(base, str(V))


@pytest.mark.parametrize(
    "operation, path_contains",
    [
        ("listdir", "export"),
        ("stat", str(V)),
        ("exists", "saved_model.pb"),
        ("exists", "eval_result.json"),
        ("open", "eval_result.json"),
    ],
)
def test_restore_that_cannot_look_raises_after_its_retries(
    tmp_path, monkeypatch, operation: str, path_contains: str
) -> None:
    base = str(tmp_path / "export")
    _write_version(base, V, {"global_step": 1, "metrics": {"loss": 0.5}})
    fault = FaultyGfile(monkeypatch).fail(operation, path_contains=path_contains)
    sleep = FakeSleep()

    with pytest.raises(restore.CannotRestoreError, match="after 3 attempts: UnavailableError"):
        restore.restore(Judge(loss_smaller), base, _no_history, 2, (0.1, 0.4), sleep)

    assert fault.hits == 3 and sleep.delays == [0.1, 0.4]


def test_restore_retries_a_history_that_cannot_be_listed(tmp_path) -> None:
    base = str(tmp_path)
    _write_version(base, V)  # Without a record: the history is needed.
    calls = []

    def history(step):
        calls.append(step)
        if len(calls) < 3:
            raise tf.errors.UnavailableError(None, None, "injected glob failure")
        return _FakeHistory([Best({"loss": 0.25, "global_step": 1}, Source.EVENTS)], "1 result")

    restored = restore.restore(Judge(loss_smaller), base, history, 7, (0.1, 0.4), FakeSleep())

    assert calls == [7, 7, 7]
    assert restored.best.eval_result == {"loss": 0.25, "global_step": 1}


def test_restore_of_a_missing_export_dir_is_nothing_to_beat(tmp_path) -> None:
    sleep = FakeSleep()
    restored = restore.restore(
        Judge(loss_smaller), str(tmp_path / "none"), _no_history, 1, sleep=sleep
    )
    assert restored.best is None and restored.unmatched == frozenset() and sleep.delays == []


def test_restore_counts_only_complete_versions(tmp_path) -> None:
    base = str(tmp_path)
    _write_version(base, V + 1, {"global_step": 1, "metrics": {"loss": 0.5}})
    _write_version(base, V + 2, {"global_step": 2, "metrics": {"loss": 0.25}}, complete=False)

    restored = restore.restore(Judge(loss_smaller), base, _no_history, 3)

    assert restored.best.export_path == os.path.join(base, str(V + 1))
    assert "1 of them without a SavedModel, not counted" in restored.note


def test_translate_renames_recorded_metrics_before_they_are_judged(tmp_path) -> None:
    # The Keras front-end's metric_names: Estimator records say "loss", Keras "val_loss".
    base = str(tmp_path)
    _write_version(base, V + 1, {"global_step": 1, "metrics": {"loss": 0.25}})
    _write_version(base, V + 2, {"global_step": 2, "metrics": {"loss": 0.5}})
    judge = Judge(lower_is_better("val_loss"))

    untranslated = restore.restore(judge, base, _no_history, 3)
    restored = restore.restore(
        judge, base, _no_history, 3, translate=lambda r: {**r, "val_loss": r["loss"]}
    )

    assert untranslated.best is None and untranslated.unmatched == {V + 1, V + 2}
    assert restored.best.eval_result["val_loss"] == 0.25
    assert restored.best.export_path == os.path.join(base, str(V + 1))
    assert restored.unmatched == frozenset()


def test_versions_that_cannot_be_matched_to_the_history_are_all_unmatched(tmp_path) -> None:
    base = str(tmp_path)
    _write_version(base, V + 1)
    _write_version(base, V + 2)
    _write_version(base, V + 3, '{"metrics": {"loss": null}}')  # Invalid: like no record.
    _write_version(base, V + 4, complete=False)

    def history(step):
        return _FakeHistory([Best({"loss": 0.25, "global_step": 1}, Source.EVENTS)], "1 result")

    restored = restore.restore(Judge(loss_smaller), base, history, 10)

    assert restored.best.eval_result == {"loss": 0.25, "global_step": 1}
    assert restored.best_export_path is None
    assert restored.unmatched == {V + 1, V + 2, V + 3}


def test_a_compare_fn_failing_on_restored_results_skips_them(tmp_path) -> None:
    base = str(tmp_path)
    _write_version(base, V + 1, {"global_step": 1, "metrics": {"loss": 0.5}})

    def fails_on_float64(best_eval_result, current_eval_result):
        if isinstance(best_eval_result["loss"], np.float64):
            raise RuntimeError("cannot judge a float64")
        return True

    restored = restore.restore(Judge(fails_on_float64), base, _no_history, 2)

    assert restored.best is None
    ((error_type, cause),) = restored.skipped.items()
    assert error_type is RuntimeError and cause.count == 1 and cause.first_step == 1


# ----------------------------------------------------------------------------
# A transient error at restart never loses the best (issue 8, item 1).


@pytest.mark.parametrize(
    "operation, path_contains",
    [
        ("listdir", "export"),
        ("stat", "export"),
        ("exists", "saved_model.pb"),
        ("exists", "eval_result.json"),
        ("open", "eval_result.json"),
    ],
)
def test_transient_error_at_restart_neither_exports_a_worse_model_nor_prunes_the_best(
    tmp_path, monkeypatch, caplog: pytest.LogCaptureFixture, operation: str, path_contains: str
) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    first = _exporter(exports_to_keep=2, event_file_pattern=None)
    best = _export(first, estimator, 100, loss=0.25)
    assert _export(first, estimator, 150, loss=0.3) is None

    restarted = _exporter(exports_to_keep=2, event_file_pattern=None)
    faults = FaultyGfile(monkeypatch)
    faults.fail(operation, path_contains=path_contains)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(restarted, estimator, 200, loss=0.5) is None
        assert _export(restarted, estimator, 300, loss=0.6) is None  # Tried again: still down.
    warnings = _messages(caplog, logging.WARNING)
    assert len(warnings) == 2
    assert all(
        "Nothing is exported or deleted until the exports can be read" in w for w in warnings
    )
    assert "not exported step 200: loss 0.5 would be judged" in warnings[0]
    assert "UnavailableError" in warnings[0]
    assert restarted.best_eval_result is None  # Nothing restored, nothing cached.

    faults.clear()  # The filesystem recovers: the next evaluation restores.
    assert _export(restarted, estimator, 400, loss=0.4) is None
    assert restarted.best_eval_result == {"loss": 0.25, "global_step": 100}
    assert _export(restarted, estimator, 500, loss=0.45) is None
    assert _versions(model_dir) == [os.path.basename(best.decode())]
    assert _export(restarted, estimator, 600, loss=0.1) is not None


def test_event_files_that_cannot_be_listed_at_restart_are_not_an_empty_history(
    tmp_path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = str(tmp_path)
    _old_version(model_dir)  # Valued by the history alone.
    _eval_events(model_dir, [(100, {"loss": 0.25})])
    exporter = _exporter(exports_to_keep=1)
    estimator = support.FakeEstimator(model_dir)
    faults = FaultyGfile(monkeypatch)
    faults.fail("glob", path_contains="tfevents")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _export(exporter, estimator, 200, loss=0.5) is None
    assert "UnavailableError" in _messages(caplog, logging.WARNING)[0]
    assert _versions(model_dir) == [str(OLD)]

    faults.clear()
    assert _export(exporter, estimator, 300, loss=0.5) is None
    assert exporter.best_eval_result == {"loss": 0.25, "global_step": 100}


@pytest.mark.parametrize(
    "cls",
    [
        OURS,
        original_fails(
            "a failed listing reads as no exports or kills the evaluator",
            (AssertionError, tf.errors.UnavailableError),
        ),
    ],
)
def test_one_unavailable_listing_at_restart_does_not_lose_the_best(
    cls, tmp_path, monkeypatch
) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    best = _export(_exporter(cls, exports_to_keep=2), estimator, 100, loss=0.25)
    _eval_events(model_dir, [(100, {"loss": 0.25})])

    restarted = _exporter(cls, exports_to_keep=2)
    FaultyGfile(monkeypatch).fail("listdir", path_contains=_export_path(model_dir), times=3)
    for step, loss in [(200, 0.5), (300, 0.6), (400, 0.7)]:
        _eval_events(model_dir, [(step, {"loss": loss})])
        assert _export(restarted, estimator, step, loss=loss) is None

    assert _versions(model_dir) == [os.path.basename(best.decode())]


def test_a_short_outage_at_restart_is_bridged_by_the_retries(tmp_path, monkeypatch) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    _export(_exporter(event_file_pattern=None), estimator, 100, loss=0.25)

    restarted = _exporter(event_file_pattern=None)
    FaultyGfile(monkeypatch).fail("listdir", path_contains=_export_path(model_dir), times=2)

    assert _export(restarted, estimator, 200, loss=0.5) is None
    assert restarted.best_eval_result == {"loss": 0.25, "global_step": 100}


# ----------------------------------------------------------------------------
# Poisoned records are valued like exports without records (issue 8, item 3).


@pytest.mark.parametrize(
    "text",
    [
        '{"metrics": {"loss": null}, "global_step": 100}',
        '{"metrics": {"loss": [0.25]}, "global_step": 100}',
        '{"metrics": {"loss": {"value": 0.25}}, "global_step": 100}',
        '{"metrics": {"loss": 0.25}, "global_step": "abc"}',
        '{"metrics": {"loss": 0.25}, "global_step": []}',
        '{"metrics": {"loss": ' + "[" * 50_000 + "]" * 50_000 + "}}",
    ],
    ids=["null", "list", "dict", "step-abc", "step-list", "deep"],
)
def test_a_poisoned_record_is_valued_by_the_history_and_never_raises(
    tmp_path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = str(tmp_path)
    _write_version(_export_path(model_dir), OLD, text)
    _eval_events(model_dir, [(100, {"loss": 0.25})])
    exporter = _exporter()
    estimator = support.FakeEstimator(model_dir)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _export(exporter, estimator, 200, loss=0.5) is None

    assert exporter.best_eval_result == {"loss": 0.25, "global_step": 100}
    assert any("Ignoring unreadable export record" in m for m in _messages(caplog))
    assert _versions(model_dir) == [str(OLD)]
    assert _export(exporter, estimator, 300, loss=0.1) is not None


# ----------------------------------------------------------------------------
# Restored results are what a compare_fn saw while the run was live (issue 8, item 5).


def _smaller_item(best_eval_result, current_eval_result):
    return current_eval_result["loss"].item() < best_eval_result["loss"].item()


def test_a_compare_fn_using_numpy_methods_works_after_a_restart(tmp_path) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    first = _exporter(compare_fn=_smaller_item, event_file_pattern=None)
    assert _export(first, estimator, 100, loss=0.25) is not None
    assert _export(first, estimator, 200, loss=0.3) is None

    restarted = _exporter(compare_fn=_smaller_item, event_file_pattern=None)
    assert _export(restarted, estimator, 300, loss=0.3) is None
    assert _export(restarted, estimator, 400, loss=0.1) is not None


@pytest.mark.parametrize(
    "loss",
    [tf.constant(0.25), np.array([0.25], dtype=np.float32), np.float16(0.25)],
    ids=["tensor", "array", "float16"],
)
def test_a_numeric_loss_of_any_kind_is_restored_after_a_restart(tmp_path, loss) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    export_path = _export_path(model_dir)
    first = _exporter(event_file_pattern=None)
    assert first.export(estimator, export_path, None, {"loss": loss, "global_step": 1}, False)

    restarted = _exporter(event_file_pattern=None)
    assert _export(restarted, estimator, 2, loss=0.5) is None
    assert restarted.best_eval_result["loss"] == pytest.approx(0.25)


def test_a_compare_fn_failing_on_restored_results_is_skipped_with_a_warning(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    def live_only(best_eval_result, current_eval_result):
        if not isinstance(best_eval_result["loss"], np.float32):
            raise RuntimeError("only float32 please")
        return current_eval_result["loss"] < best_eval_result["loss"]

    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    assert _export(_exporter(compare_fn=live_only), estimator, 1, loss=0.5) is not None

    restarted = _exporter(compare_fn=live_only)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _export(restarted, estimator, 2, loss=0.25) is not None  # No crash loop.
    (warning,) = _messages(caplog, logging.WARNING)
    assert "skipped 1 earlier results that compare_fn could not judge" in warning
    assert "RuntimeError: only float32 please" in warning


# ----------------------------------------------------------------------------
# Only complete versions count as the best or are protected (issue 8, item 7).


def test_a_version_without_a_saved_model_is_not_the_best_nor_kept_over_the_servable_one(
    tmp_path,
) -> None:
    model_dir = str(tmp_path)
    base = _export_path(model_dir)
    servable = _write_version(base, V + 1, {"global_step": 100, "metrics": {"loss": 0.25}})
    _write_version(base, V + 2, {"global_step": 200, "metrics": {"loss": 0.1}}, complete=False)
    exporter = _exporter(exports_to_keep=1, event_file_pattern=None)
    estimator = support.FakeEstimator(model_dir, first_version=V + 10)

    assert _export(exporter, estimator, 300, loss=0.3) is None

    assert exporter.best_export_path == servable
    assert tf.io.gfile.exists(os.path.join(servable, "saved_model.pb"))
    # A model better than the servable one is exported, whatever the broken record says.
    assert _export(exporter, estimator, 400, loss=0.15) is not None


# ----------------------------------------------------------------------------
# A directory the original already damaged (issue 8, item 8; tensorflow#47396).


@pytest.mark.parametrize("cls", [OURS, original_fails("tensorflow/tensorflow#47396")])
def test_migrating_a_directory_where_a_worse_model_is_newest_keeps_the_real_best(
    cls, tmp_path
) -> None:
    model_dir = str(tmp_path)
    real_best = _old_version(model_dir, OLD + 1)  # Step 10, loss 0.25.
    _old_version(model_dir, OLD + 2)  # Step 20, loss 0.5: exported after a restart by #47396.
    _eval_events(model_dir, [(10, {"loss": 0.25}), (20, {"loss": 0.5}), (30, {"loss": 0.4})])
    exporter = _exporter(cls, exports_to_keep=1)
    estimator = support.FakeEstimator(model_dir)

    assert _export(exporter, estimator, 30, loss=0.4) is None

    assert tf.io.gfile.exists(os.path.join(real_best, "saved_model.pb"))
    assert _versions(model_dir) == [str(OLD + 1), str(OLD + 2)]

    # A new export beats the restored best: from then on, normal retention.
    _eval_events(model_dir, [(40, {"loss": 0.1})])
    exported = _export(exporter, estimator, 40, loss=0.1)
    assert exported is not None
    assert _versions(model_dir) == [os.path.basename(exported.decode())]


def test_legacy_versions_kept_at_migration_are_logged(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = str(tmp_path)
    _old_version(model_dir, OLD + 1)
    _old_version(model_dir, OLD + 2)
    _eval_events(model_dir, [(10, {"loss": 0.25})])

    with caplog.at_level(logging.INFO, logger=LOGGER):
        _export(_exporter(exports_to_keep=1), support.FakeEstimator(model_dir), 30, loss=0.4)

    (restore_line,) = [m for m in _messages(caplog) if "restored the best" in m]
    assert "2 versions kept until a new export beats the best" in restore_line


# ----------------------------------------------------------------------------
# Event-file patterns (issue 8, item 9).


@pytest.mark.parametrize("cls", [OURS, original_fails("a URL pattern is joined under model_dir")])
def test_an_absolute_pattern_with_a_url_scheme_is_used_as_it_is(
    cls, tmp_path, ram_dir: str
) -> None:
    model_dir = str(tmp_path)
    _old_version(model_dir)
    _eval_events(ram_dir, [(10, {"loss": 0.25})])
    exporter = _exporter(cls, event_file_pattern=f"{ram_dir}/eval/*.tfevents.*")

    assert _export(exporter, support.FakeEstimator(model_dir), 20, loss=0.5) is None
    assert _versions(model_dir) == [str(OLD)]


@pytest.mark.parametrize("name", ["lr[0.1]", "run*", "what?"])
@pytest.mark.parametrize(
    "cls", [OURS, original_fails("glob metacharacters in model_dir hide the history")]
)
def test_a_model_dir_with_glob_characters_finds_its_history(cls, tmp_path, name: str) -> None:
    model_dir = str(tmp_path / name)
    (tmp_path / f"{name}-sibling").mkdir()  # What an unescaped `*` or `?` could match too.
    _old_version(model_dir)
    _eval_events(model_dir, [(10, {"loss": 0.25})])
    exporter = _exporter(cls, exports_to_keep=1)

    assert _export(exporter, support.FakeEstimator(model_dir), 20, loss=0.5) is None
    assert _versions(model_dir) == [str(OLD)]


def test_nan_metric_in_a_restored_record_never_becomes_the_best(tmp_path) -> None:
    model_dir = str(tmp_path)
    _write_version(_export_path(model_dir), V, {"global_step": 1, "metrics": {"loss": math.nan}})
    exporter = _exporter(event_file_pattern=None)
    assert _export(exporter, support.FakeEstimator(model_dir, V + 1), 2, loss=0.5) is not None


def test_restored_best_is_cached_only_after_a_successful_restore(tmp_path, monkeypatch) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    _export(_exporter(event_file_pattern=None), estimator, 1, loss=0.25)
    restarted = _exporter(event_file_pattern=None)
    listing = FaultyGfile(monkeypatch).fail("listdir", path_contains=_export_path(model_dir))

    _export(restarted, estimator, 2, loss=0.5)
    _export(restarted, estimator, 3, loss=0.5)
    assert listing.hits == 6  # Three attempts at each evaluation: nothing was cached.

    listing.times = listing.hits  # Healthy again.
    _export(restarted, estimator, 4, loss=0.5)
    assert restarted.best_eval_result == {"loss": 0.25, "global_step": 1}
    seen = listing.seen
    _export(restarted, estimator, 5, loss=0.5)
    assert listing.seen == seen  # Restored at step 4, then cached: no more listing.


@pytest.mark.parametrize("remove_unfinished, left", [(True, False), (False, True)])
def test_only_the_publishing_process_removes_unfinished_versions(
    tmp_path, remove_unfinished: bool, left: bool
) -> None:
    base = str(tmp_path)
    _write_version(base, V, {"global_step": 1, "metrics": {"loss": 0.5}})
    unfinished = _write_version(
        base, V + 1, {"global_step": 2, "metrics": {"loss": 0.25}}, complete=False
    )

    restored = restore.restore(
        Judge(loss_smaller), base, _no_history, 3, remove_unfinished=remove_unfinished
    )

    assert restored.best.eval_result["loss"] == 0.5  # Never the model-less version.
    assert tf.io.gfile.exists(unfinished) is left
