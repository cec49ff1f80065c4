"""Unit tests of best_exporter.BestExporter with a fake estimator.

Where tf.estimator.BestExporter misbehaves, a test runs against both exporters and
the original is a strict xfail: the suite proves that the original fails it. Tests
that only the original passes trivially, or that use features the original lacks
(records, properties, log lines), run against best_exporter alone.
"""

import functools
import inspect
import logging
import math
import os
import re
from typing import Any, Callable, Dict, List, Optional
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from best_exporter import (
    BestExporter,
    higher_is_better,
    loss_smaller,
    lower_is_better,
    read_export_records,
)
from best_exporter.core import summaries
from tests import support
from tests.faulty_gfile import FaultyGfile

Original = tf.estimator.BestExporter
LOGGER = "tensorflow.best_exporter"
OLD = 1_600_000_000  # Versions written before a test starts; FakeEstimator writes 1_700_000_000+.

OURS = pytest.param(BestExporter, id="best_exporter")
ORIGINAL = pytest.param(Original, id="original")


def original_fails(reason: str, raises: type = AssertionError):
    """The original exporter as a parameter of a test that it fails, and how it fails."""
    mark = pytest.mark.xfail(strict=True, raises=raises, reason=reason)
    return pytest.param(Original, id="original", marks=mark)


# ----------------------------------------------------------------------------
# Helpers


def _exporter(cls=BestExporter, **kwargs) -> Any:
    kwargs.setdefault("serving_input_receiver_fn", support.serving_input_receiver_fn_stub)
    return cls(**kwargs)


def _export_path(model_dir: str, name: str = "best_exporter") -> str:
    return os.path.join(model_dir, "export", name)


def _export(
    exporter, estimator, step: int, checkpoint: Optional[str] = None, **metrics: float
) -> Optional[bytes]:
    """Calls export() as the evaluator does after evaluating the checkpoint of `step`."""
    return exporter.export(
        estimator,
        _export_path(estimator.model_dir, exporter.name),
        checkpoint,
        support.eval_result(step, **metrics),
        False,
    )


def _versions(model_dir: str, name: str = "best_exporter") -> List[str]:
    path = _export_path(model_dir, name)
    if not tf.io.gfile.isdir(path):
        return []
    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(path) if n.rstrip("/").isdigit())


def _old_version(model_dir: str, version: int = OLD, name: str = "best_exporter") -> str:
    """A version without a record, as tf.estimator.BestExporter leaves them."""
    path = os.path.join(_export_path(model_dir, name), str(version))
    tf.io.gfile.makedirs(os.path.join(path, "variables"))
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "w") as f:
        f.write("model")
    return path


def _checkpoint(model_dir: str, step: int) -> str:
    """An (empty) V2 checkpoint prefix, which exists as far as the exporter checks."""
    prefix = os.path.join(model_dir, f"model.ckpt-{step}")
    with tf.io.gfile.GFile(prefix + ".index", "w") as f:
        f.write("")
    return prefix


def _eval_events(model_dir: str, results, subdir: str = "eval") -> str:
    return support.write_legacy_events(os.path.join(model_dir, subdir), results)


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


# ----------------------------------------------------------------------------
# Construction: a drop-in for tf.estimator.BestExporter.


def test_constructor_has_the_parameters_order_and_defaults_of_the_original() -> None:
    ours = inspect.signature(BestExporter.__init__).parameters
    original = inspect.signature(Original.__init__).parameters
    # Options of our own come after the original's, keyword-only, with defaults.
    assert list(ours)[: len(original)] == list(original)
    for name in list(ours)[len(original) :]:
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert ours[name].default is not inspect.Parameter.empty, name
    ours = {name: ours[name] for name in original}
    assert [p.kind for p in ours.values()] == [p.kind for p in original.values()]
    for name in original:
        if name != "compare_fn":
            assert ours[name].default == original[name].default, name
    # The default compare_fn is ours, and judges like the original's `_loss_smaller`.
    assert ours["compare_fn"].default is loss_smaller
    for best, current in [(0.5, 0.4), (0.5, 0.5), (0.5, 0.6)]:
        args = dict(best_eval_result={"loss": best}, current_eval_result={"loss": current})
        assert loss_smaller(**args) == original["compare_fn"].default(**args)


def test_exporter_is_an_estimator_exporter_accepted_by_eval_spec() -> None:
    exporter = _exporter()
    assert isinstance(exporter, tf.estimator.Exporter)
    eval_spec = tf.estimator.EvalSpec(input_fn=support.eval_input_fn, exporters=exporter)
    assert eval_spec.exporters == (exporter,)
    latest = tf.estimator.LatestExporter("latest", support.serving_input_receiver_fn_stub)
    assert tf.estimator.EvalSpec(support.eval_input_fn, exporters=[exporter, latest]).exporters


@pytest.mark.parametrize(
    "kwargs, name", [({}, "best_exporter"), ({"name": "best_auc"}, "best_auc")]
)
def test_name_property(kwargs: Dict[str, Any], name: str) -> None:
    assert _exporter(**kwargs).name == name


def test_positional_arguments_as_for_the_original(tmp_path) -> None:
    exporter = BestExporter(
        "best", support.serving_input_receiver_fn_stub, None, loss_smaller, None, True, 3
    )
    estimator = support.FakeEstimator(str(tmp_path))
    _export(exporter, estimator, 1, loss=0.5)
    assert estimator.calls[0]["as_text"] is True
    assert _versions(str(tmp_path), "best") == ["1700000000"]


def _no_best(current_eval_result):
    return True


def _no_current(best_eval_result):
    return True


def _extra_arg(best_eval_result, current_eval_result, metric):
    return current_eval_result[metric] < best_eval_result[metric]


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
@pytest.mark.parametrize(
    "compare_fn, match",
    [
        (None, r"`compare_fn` must not be None"),
        (_no_best, r"compare_fn \(<function _no_best .*\) must include best_eval_result"),
        (_no_current, r"compare_fn \(<function _no_current .*\) must include current_eval_result"),
        (_extra_arg, r"\(<function _extra_arg .*\) has following not expected args: \['metric'\]"),
    ],
)
def test_invalid_compare_fn_raises_value_error_like_the_original(
    cls, compare_fn: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _exporter(cls, compare_fn=compare_fn)


class _LossComparer:
    def smaller(self, best_eval_result, current_eval_result):
        return current_eval_result["loss"] < best_eval_result["loss"]

    def __call__(self, best_eval_result, current_eval_result):
        return current_eval_result["loss"] < best_eval_result["loss"]


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
@pytest.mark.parametrize(
    "compare_fn",
    [
        functools.partial(_extra_arg, metric="loss"),
        functools.partial(lambda metric, best_eval_result, current_eval_result: True, "loss"),
        _LossComparer().smaller,
        _LossComparer(),
        lower_is_better("loss", min_delta=0.1),
    ],
    ids=["partial-keyword", "partial-positional", "bound-method", "callable-object", "builtin"],
)
def test_compare_fn_shapes_the_original_accepts_are_accepted(cls, compare_fn) -> None:
    assert _exporter(cls, compare_fn=compare_fn).name == "best_exporter"


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
@pytest.mark.parametrize("exports_to_keep", [0, -1])
def test_non_positive_exports_to_keep_raises_like_the_original(cls, exports_to_keep: int) -> None:
    with pytest.raises(ValueError, match=rf"must be a positive number. Got {exports_to_keep}"):
        _exporter(cls, exports_to_keep=exports_to_keep)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"exports_to_keep": 1.5}, r"Received: exports_to_keep=1\.5"),
        ({"exports_to_keep": "3"}, r"Received: exports_to_keep='3'"),
        ({"exports_to_keep": True}, r"Received: exports_to_keep=True"),
        ({"event_file_pattern": 3}, r"Received: event_file_pattern=3"),
        ({"event_file_pattern": ["eval/*"]}, r"Received: event_file_pattern=\['eval/\*'\]"),
        ({"serving_input_receiver_fn": None}, r"Received: serving_input_receiver_fn=None"),
        ({"serving_input_receiver_fn": "fn"}, r"Received: serving_input_receiver_fn='fn'"),
        ({"name": ""}, r"Received: name=''"),
        ({"name": None}, r"Received: name=None"),
        ({"as_text": "yes"}, r"Received: as_text='yes'"),
        ({"assets_extra": ["vocab.txt"]}, r"Received: assets_extra=\['vocab.txt'\]"),
        ({"assets_extra": "vocab.txt"}, r"Received: assets_extra='vocab.txt'"),
    ],
)
def test_invalid_argument_raises_value_error_naming_the_value(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _exporter(**kwargs)


@pytest.mark.parametrize(
    "destination, match",
    [
        ("/abs/vocab.txt", r"Received key: '/abs/vocab.txt'"),
        ("../vocab.txt", r"Received key: '\.\./vocab.txt'"),
        ("a/../../vocab.txt", r"Received key: 'a/\.\./\.\./vocab.txt'"),
        ("", r"Received key: ''"),
        (3, r"Received key: 3"),
        ("eval_result.json", r"key 'eval_result.json' is reserved"),
        ("./eval_result.json", r"key './eval_result.json' is reserved"),
    ],
)
def test_invalid_assets_extra_key_raises_naming_it(tmp_path, destination, match: str) -> None:
    source = tmp_path / "vocab.txt"
    source.write_text("red\n")
    with pytest.raises(ValueError, match=match):
        _exporter(assets_extra={destination: str(source)})


@pytest.mark.parametrize("source, shown", [(3, "3"), (None, "None"), ("", "''")])
def test_non_path_assets_extra_source_raises_naming_it(source, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"Received: 'vocab.txt': {shown}"):
        _exporter(assets_extra={"vocab.txt": source})


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_assets_extra_sources_are_not_opened_at_construction(cls, tmp_path) -> None:
    # Unit tests pass placeholder paths with a mocked estimator, as upstream's do.
    exporter = _exporter(cls, assets_extra={"vocab.txt": str(tmp_path / "not-yet.txt")})
    assert exporter.name == "best_exporter"


@pytest.mark.parametrize(
    "cls",
    [
        OURS,
        original_fails(
            "a missing source surfaces as a bare NotFoundError from a copy inside Estimator",
            tf.errors.NotFoundError,
        ),
    ],
)
def test_missing_assets_extra_source_fails_the_first_export_naming_it(cls, any_dir: str) -> None:
    missing = os.path.join(any_dir, "missing.txt")
    exporter = _exporter(cls, assets_extra={"vocab.txt": missing})
    with pytest.raises(ValueError, match=rf"source file '{missing}' \(for 'vocab.txt'\) does not"):
        _export(exporter, support.FakeEstimator(any_dir), 1, loss=0.5)
    assert _versions(any_dir) == []


def test_missing_assets_extra_source_is_never_taken_for_a_transient_failure(any_dir: str) -> None:
    # The copy raises NotFoundError, a transient error elsewhere: it must not
    # make every export fail silently.
    missing = os.path.join(any_dir, "missing.txt")
    exporter = _exporter(assets_extra={"vocab.txt": missing})
    estimator = support.FakeEstimator(any_dir)
    for step in (1, 2):
        with pytest.raises(ValueError, match="missing.txt") as raised:
            _export(exporter, estimator, step, loss=0.5 / step)
        assert isinstance(raised.value.__cause__, tf.errors.NotFoundError)


def test_absolute_event_file_pattern_is_used_as_it_is(any_dir: str, tmp_path) -> None:
    # os.path.join(model_dir, pattern) keeps an absolute pattern, for ours as for the original.
    elsewhere = str(tmp_path / "elsewhere")
    support.write_legacy_events(elsewhere, [(1, {"loss": 0.25})])
    _old_version(any_dir)  # Valued by the history, which the pattern finds.
    exporter = _exporter(event_file_pattern=os.path.join(elsewhere, "*.tfevents.*"))

    assert _export(exporter, support.FakeEstimator(any_dir), 2, loss=0.5) is None

    assert exporter.best_eval_result == {"loss": 0.25, "global_step": 1}


# ----------------------------------------------------------------------------
# The port of the original's unit tests.


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_export_passes_assets_extra_as_text_and_checkpoint_through(
    cls, any_dir: str, tmp_path
) -> None:
    source = tmp_path / "vocab.txt"
    source.write_text("red\n")
    exporter = _exporter(cls, assets_extra={"from/path": str(source)}, as_text=True)
    estimator = support.FakeEstimator(any_dir)
    checkpoint = _checkpoint(any_dir, 100)
    export_path = _export_path(any_dir)

    result = exporter.export(
        estimator, export_path, checkpoint, support.eval_result(100, loss=0.5), False
    )

    assert isinstance(result, bytes)
    assert result == os.path.join(export_path, "1700000000").encode()
    (call,) = estimator.calls
    assert call["export_dir_base"] == export_path
    assert call["serving_input_receiver_fn"] is support.serving_input_receiver_fn_stub
    assert call["as_text"] is True
    assert call["checkpoint_path"] == checkpoint
    assert call["assets_extra"]["from/path"] == str(source)
    if cls is BestExporter:
        assert set(call["assets_extra"]) == {"from/path", "eval_result.json"}


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_better_loss_exports_worse_does_not_better_again_does(cls, any_dir: str) -> None:
    exporter = _exporter(cls, exports_to_keep=1)
    estimator = support.FakeEstimator(any_dir)

    first = _export(exporter, estimator, 1, loss=0.5)
    assert first is not None
    assert _export(exporter, estimator, 2, loss=0.6) is None
    third = _export(exporter, estimator, 3, loss=0.4)

    assert third is not None and third != first
    assert len(estimator.calls) == 2
    assert _versions(any_dir) == [os.path.basename(third.decode())]


@pytest.mark.parametrize("cls", [OURS, original_fails("tensorflow/tensorflow#47396")])
def test_history_is_respected_by_a_new_exporter(cls, any_dir: str) -> None:
    _old_version(any_dir)  # The export of the best model, by an earlier run.
    _eval_events(any_dir, [(1, {"loss": 50}), (2, {"loss": 60})])
    exporter = _exporter(cls, exports_to_keep=1)
    estimator = support.FakeEstimator(any_dir)

    assert _export(exporter, estimator, 3, loss=100) is None
    assert _export(exporter, estimator, 4, loss=10) is not None
    assert _export(exporter, estimator, 5, loss=20) is None
    assert _versions(any_dir) == ["1700000000"]


_LOSS_LESS_REASON = "OpenNMT/OpenNMT-tf#329: _loss_smaller raises on a history event without loss"


@pytest.mark.parametrize(
    "cls, history",
    [
        pytest.param(BestExporter, [(1, {}), (2, {"loss": 60})], id="ours-empty"),
        pytest.param(BestExporter, [(1, {"accuracy": 0.9}), (2, {"loss": 60})], id="ours-first"),
        pytest.param(BestExporter, [(1, {"loss": 60}), (2, {"accuracy": 0.9})], id="ours-last"),
        pytest.param(Original, [(1, {}), (2, {"loss": 60})], id="original-empty"),
        pytest.param(
            Original,
            [(1, {"accuracy": 0.9}), (2, {"loss": 60})],
            id="original-first",
            marks=pytest.mark.xfail(strict=True, raises=ValueError, reason=_LOSS_LESS_REASON),
        ),
        pytest.param(
            Original,
            [(1, {"loss": 60}), (2, {"accuracy": 0.9})],
            id="original-last",
            marks=pytest.mark.xfail(strict=True, raises=ValueError, reason=_LOSS_LESS_REASON),
        ),
    ],
)
def test_history_event_without_loss_does_not_kill_the_evaluator(cls, history, any_dir: str) -> None:
    _eval_events(any_dir, history)
    exporter = _exporter(cls)
    assert _export(exporter, support.FakeEstimator(any_dir), 3, loss=10) is not None


def test_history_event_without_loss_is_skipped_with_a_warning(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    _old_version(any_dir)
    _eval_events(any_dir, [(1, {"accuracy": 0.9}), (2, {"loss": 60}), (3, {"accuracy": 0.8})])
    exporter = _exporter()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, support.FakeEstimator(any_dir), 4, loss=70) is None

    assert exporter.best_eval_result == {"loss": 60, "global_step": 2}
    warnings = _messages(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "skipped 2 earlier results" in warnings[0] and "first at step 1" in warnings[0]


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_first_evaluation_is_exported_although_already_in_the_events_file(
    cls, any_dir: str
) -> None:
    # tensorflow/estimator PR #20, #35, #41: the evaluator writes the summary first.
    _eval_events(any_dir, [(1, {"loss": 60})])
    exporter = _exporter(cls)
    assert _export(exporter, support.FakeEstimator(any_dir), 1, loss=60) is not None


_FOREIGN = ["12345", "98765432109", "my_model", "temp-abc"]


def _foreign_entries(model_dir: str) -> None:
    for name in _FOREIGN:
        tf.io.gfile.makedirs(os.path.join(_export_path(model_dir), name))
    with tf.io.gfile.GFile(os.path.join(_export_path(model_dir), "notes.txt"), "w") as f:
        f.write("not an export")


def _listing(model_dir: str) -> List[str]:
    """The export dir's entries, but for the TensorBoard event files of the exported bests."""
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(_export_path(model_dir)))
    return sorted(n for n in names if not n.endswith(summaries.FILE_SUFFIX))


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_garbage_collection_keeps_the_newest_exports(cls, any_dir: str) -> None:
    for i in range(1, 5):
        _old_version(any_dir, OLD + i)
    _foreign_entries(any_dir)
    exporter = _exporter(cls, exports_to_keep=2)

    assert _export(exporter, support.FakeEstimator(any_dir), 10, loss=1.0) is not None

    assert _listing(any_dir) == sorted([str(OLD + 4), "1700000000", "notes.txt", *_FOREIGN])


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_exports_to_keep_none_keeps_every_export(cls, any_dir: str) -> None:
    for i in range(1, 4):
        _old_version(any_dir, OLD + i)
    exporter = _exporter(cls, exports_to_keep=None)
    estimator = support.FakeEstimator(any_dir)

    for step, loss in [(10, 0.5), (20, 0.4), (30, 0.3)]:
        assert _export(exporter, estimator, step, loss=loss) is not None

    expected = [str(OLD + i) for i in range(1, 4)] + [str(1_700_000_000 + i) for i in range(3)]
    assert _versions(any_dir) == expected


# ----------------------------------------------------------------------------
# The rules of the decision.


@pytest.mark.parametrize("cls", [OURS, original_fails("tensorflow/tensorflow#47396")])
def test_restart_with_worse_result_does_not_export(cls, any_dir: str) -> None:
    estimator = support.FakeEstimator(any_dir)
    best = _export(_exporter(cls, exports_to_keep=1), estimator, 100, loss=0.2)
    _eval_events(any_dir, [(100, {"loss": 0.2}), (200, {"loss": 0.5})])

    restarted = _exporter(cls, exports_to_keep=1)  # The evaluator's job was restarted.
    assert _export(restarted, estimator, 200, loss=0.5) is None

    assert _versions(any_dir) == [os.path.basename(best.decode())]
    assert tf.io.gfile.exists(os.path.join(best.decode(), "saved_model.pb"))


@pytest.mark.parametrize(
    "cls", [OURS, original_fails("the original restores nothing without event files")]
)
def test_restore_from_export_records_alone(cls, any_dir: str) -> None:
    estimator = support.FakeEstimator(any_dir)
    first = _exporter(cls, event_file_pattern=None)
    best = _export(first, estimator, 100, loss=0.2)

    restarted = _exporter(cls, event_file_pattern=None)
    assert _export(restarted, estimator, 200, loss=0.5) is None
    assert _versions(any_dir) == [os.path.basename(best.decode())]
    assert _export(restarted, estimator, 300, loss=0.1) is not None


def test_restore_from_records_knows_the_best_export_path(any_dir: str) -> None:
    estimator = support.FakeEstimator(any_dir)
    first = _exporter(event_file_pattern=None, exports_to_keep=None)
    best = _export(first, estimator, 100, loss=0.25)
    _export(first, estimator, 200, loss=0.125)
    _old_version(any_dir, OLD)  # Older and without a record: not the best.

    # Records of every kept export compete; the newest is not assumed the best.
    restarted = _exporter(event_file_pattern=None, compare_fn=higher_is_better("loss"))
    assert _export(restarted, estimator, 300, loss=0.1875) is None
    assert restarted.best_eval_result == {"loss": 0.25, "global_step": 100}
    assert restarted.best_export_path == best.decode()


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_history_at_or_after_the_current_step_is_not_held_against_it(cls, any_dir: str) -> None:
    _old_version(any_dir)
    # Step 200 is the current evaluation, already written; step 300 is left from an
    # earlier run that trained further before the model_dir was rolled back.
    _eval_events(any_dir, [(100, {"loss": 0.5}), (200, {"loss": 0.25}), (300, {"loss": 0.125})])
    exporter = _exporter(cls)

    assert _export(exporter, support.FakeEstimator(any_dir), 200, loss=0.25) is not None
    if cls is BestExporter:
        assert exporter.best_eval_result["global_step"] == 200


def test_without_an_export_on_disk_a_valid_result_is_exported_and_becomes_the_best(
    any_dir: str,
) -> None:
    # A better result in the history has no model on disk to serve.
    _eval_events(any_dir, [(100, {"loss": 0.25})])
    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)

    exported = _export(exporter, estimator, 200, loss=0.5)

    assert exported is not None
    assert exporter.best_eval_result["loss"] == pytest.approx(0.5)
    assert exporter.best_export_path == exported.decode()
    # A model better than the one served is served next.
    assert _export(exporter, estimator, 300, loss=0.4) is not None


def test_result_whose_export_was_lost_is_not_held_against_later_ones_after_a_restart(
    any_dir: str,
) -> None:
    """The evaluator was killed exporting step 20: its result is in the events, its model lost."""
    estimator = support.FakeEstimator(any_dir)
    _eval_events(any_dir, [(10, {"loss": 1.0})])
    assert _export(_exporter(), estimator, 10, loss=1.0) is not None
    _eval_events(any_dir, [(20, {"loss": 0.5})])  # Written; the export never finished.

    restarted = _exporter()
    exported = _export(restarted, estimator, 30, loss=0.7)

    # Same as when the export fails without a restart: 0.7 beats the model on disk.
    assert exported is not None
    assert _versions(any_dir)[-1] == os.path.basename(exported.decode())
    assert _export(restarted, estimator, 40, loss=0.8) is None


def test_versions_without_records_are_valued_by_the_history_before_the_current_step(
    any_dir: str,
) -> None:
    _old_version(any_dir)
    _eval_events(any_dir, [(10, {"loss": 0.3}), (20, {"loss": 0.2}), (30, {"loss": 0.1})])
    exporter = _exporter()

    # Step 30 is the current result itself, already in the events.
    assert _export(exporter, support.FakeEstimator(any_dir), 30, loss=0.1) is not None
    assert exporter.best_eval_result["loss"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "compare_fn, metrics, match",
    [
        (loss_smaller, {"accuracy": 0.9}, r"no metric 'loss'.*\['accuracy', 'global_step'\]"),
        (
            higher_is_better("auc"),
            {"loss": 0.5, "accuracy": 0.9},
            r"no metric 'auc'.*\['accuracy', 'global_step', 'loss'\]",
        ),
    ],
)
def test_current_result_without_the_metric_raises_listing_its_metrics(
    any_dir: str, compare_fn, metrics: Dict[str, float], match: str
) -> None:
    exporter = _exporter(compare_fn=compare_fn)
    with pytest.raises(ValueError, match=match):
        _export(exporter, support.FakeEstimator(any_dir), 1, **metrics)


_NAN_FIRST_REASON = "a NaN first result is exported, and then nothing beats it"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("cls", [OURS, original_fails(_NAN_FIRST_REASON)])
def test_non_finite_first_result_is_not_exported_and_a_finite_one_is(
    cls, value: float, any_dir: str
) -> None:
    exporter = _exporter(cls)
    estimator = support.FakeEstimator(any_dir)

    assert _export(exporter, estimator, 1, loss=value) is None
    assert _export(exporter, estimator, 2, loss=5.0) is not None
    assert _versions(any_dir) == ["1700000000"]


@pytest.mark.parametrize(
    "cls, value",
    [
        pytest.param(BestExporter, math.nan, id="ours-nan"),
        pytest.param(BestExporter, math.inf, id="ours-inf"),
        pytest.param(BestExporter, -math.inf, id="ours--inf"),
        pytest.param(Original, math.nan, id="original-nan"),
        pytest.param(Original, math.inf, id="original-inf"),
        pytest.param(
            Original,
            -math.inf,
            id="original--inf",
            marks=pytest.mark.xfail(
                strict=True, raises=AssertionError, reason="-inf loss is exported as the best"
            ),
        ),
    ],
)
def test_non_finite_result_never_becomes_the_best(cls, value: float, any_dir: str) -> None:
    exporter = _exporter(cls)
    estimator = support.FakeEstimator(any_dir)
    assert _export(exporter, estimator, 1, loss=0.5) is not None

    assert _export(exporter, estimator, 2, loss=value) is None
    assert _export(exporter, estimator, 3, loss=0.6) is None  # Worse than the real best.
    assert _export(exporter, estimator, 4, loss=0.4) is not None
    assert len(estimator.calls) == 2


def test_non_finite_result_is_logged_as_a_warning(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = _exporter()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, support.FakeEstimator(any_dir), 7, loss=math.nan) is None
    assert exporter.best_eval_result is None
    (warning,) = _messages(caplog, logging.WARNING)
    assert "not exported step 7: loss nan is not a finite number" in warning


def test_non_finite_history_is_skipped(any_dir: str) -> None:
    _old_version(any_dir)
    _eval_events(any_dir, [(1, {"loss": math.nan}), (2, {"loss": 0.5}), (3, {"loss": -math.inf})])
    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)

    assert _export(exporter, estimator, 4, loss=0.75) is None
    assert exporter.best_eval_result == {"loss": 0.5, "global_step": 2}
    assert _export(exporter, estimator, 5, loss=0.25) is not None


def _by_accuracy_raising(error: type) -> Callable[..., bool]:
    def by_accuracy(best_eval_result, current_eval_result):
        try:
            return current_eval_result["accuracy"] > best_eval_result["accuracy"]
        except KeyError as e:
            raise error(f"no accuracy: {e}") from None

    return by_accuracy


@pytest.mark.parametrize(
    "cls",
    [OURS, original_fails("a compare_fn error on a history event kills the evaluator", KeyError)],
)
def test_history_a_custom_compare_fn_cannot_judge_is_skipped(cls, any_dir: str) -> None:
    _old_version(any_dir)
    _eval_events(any_dir, [(1, {"loss": 0.5}), (2, {"loss": 0.5, "accuracy": 0.9})])
    exporter = _exporter(cls, compare_fn=_by_accuracy_raising(KeyError))
    estimator = support.FakeEstimator(any_dir)

    assert _export(exporter, estimator, 3, loss=0.1, accuracy=0.8) is None
    assert _export(exporter, estimator, 4, loss=0.1, accuracy=0.95) is not None


@pytest.mark.parametrize("error", [KeyError, ValueError, TypeError])
def test_fifty_unjudgeable_history_events_give_one_warning(
    error: type, any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    _old_version(any_dir)
    history = [(step, {"loss": 0.5}) for step in range(1, 51)]
    history.append((60, {"loss": 0.5, "accuracy": 0.9}))
    _eval_events(any_dir, history)
    exporter = _exporter(compare_fn=_by_accuracy_raising(error))

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, support.FakeEstimator(any_dir), 70, accuracy=0.95) is not None

    (warning,) = _messages(caplog, logging.WARNING)
    assert "skipped 50 earlier results that compare_fn could not judge" in warning
    assert f"first at step 1: {error.__name__}" in warning
    assert exporter.best_eval_result["accuracy"] == pytest.approx(0.95)


@pytest.mark.parametrize("error", [KeyError, ValueError, TypeError])
def test_custom_compare_fn_error_on_the_current_result_propagates(
    error: type, any_dir: str
) -> None:
    _eval_events(any_dir, [(1, {"loss": 0.5, "accuracy": 0.9})])
    exporter = _exporter(compare_fn=_by_accuracy_raising(error))
    with pytest.raises(error, match="no accuracy"):
        _export(exporter, support.FakeEstimator(any_dir), 2, loss=0.1)


def test_best_properties_follow_the_exports(any_dir: str) -> None:
    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)
    assert exporter.best_eval_result is None and exporter.best_export_path is None

    first = _export(exporter, estimator, 1, loss=0.5)
    assert exporter.best_eval_result == {"loss": 0.5, "global_step": 1}
    assert exporter.best_export_path == first.decode()

    _export(exporter, estimator, 2, loss=0.75)
    assert exporter.best_export_path == first.decode()

    # A copy: changing it does not change what the exporter compares with.
    exporter.best_eval_result["loss"] = 100.0
    assert _export(exporter, estimator, 3, loss=0.6) is None


@pytest.mark.parametrize("attribute", ["best_eval_result", "best_export_path", "name"])
def test_best_properties_are_read_only(attribute: str) -> None:
    with pytest.raises(AttributeError):
        setattr(_exporter(), attribute, None)


@pytest.mark.parametrize(
    "cls",
    [
        OURS,
        original_fails(
            "a filesystem error while exporting kills the evaluator", tf.errors.UnavailableError
        ),
    ],
)
def test_failed_export_is_not_the_best(cls, any_dir: str) -> None:
    exporter = _exporter(cls)
    estimator = support.FakeEstimator(any_dir)
    assert _export(exporter, estimator, 1, loss=0.5) is not None

    estimator.error = tf.errors.UnavailableError(None, None, "disk")
    assert _export(exporter, estimator, 2, loss=0.25) is None

    estimator.error = None
    # Equal to the failed result, better than the real best: exported.
    assert _export(exporter, estimator, 3, loss=0.25) is not None


def test_failed_export_logs_a_warning_and_keeps_the_previous_best(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = _exporter()
    first = _export(exporter, support.FakeEstimator(any_dir), 1, loss=0.5)
    failing = support.FakeEstimator(
        any_dir, first_version=1_700_000_100, error=tf.errors.UnavailableError(None, None, "disk")
    )

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, failing, 2, loss=0.25) is None

    (warning,) = _messages(caplog, logging.WARNING)
    assert "exporting checkpoint None failed: UnavailableError: disk" in warning
    assert exporter.best_eval_result == {"loss": 0.5, "global_step": 1}
    assert exporter.best_export_path == first.decode()


def test_missing_checkpoint_is_not_exported(any_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)
    missing = os.path.join(any_dir, "model.ckpt-100")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, estimator, 100, checkpoint=missing, loss=0.5) is None

    # The estimator is asked first; the missing checkpoint explains its failure.
    assert [call["checkpoint_path"] for call in estimator.calls] == [missing]
    (warning,) = _messages(caplog, logging.WARNING)
    assert (
        f"exporting checkpoint {missing} failed: the checkpoint no longer exists (Value" in warning
    )
    assert exporter.best_eval_result is None


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_checkpoint_path_is_passed_to_the_estimator_without_a_check(cls, any_dir: str) -> None:
    # An estimator that can export it (or a mock) decides, not the exporter.
    estimator = mock.Mock(spec=tf.estimator.Estimator, model_dir=any_dir)
    estimator.export_saved_model.return_value = b"exported"
    tf.io.gfile.makedirs(_export_path(any_dir))  # The original lists it to prune.
    exporter = _exporter(cls)
    assert _export(exporter, estimator, 1, checkpoint="checkpoint_path", loss=0.5) == b"exported"
    assert estimator.export_saved_model.call_args.kwargs["checkpoint_path"] == "checkpoint_path"


class _RetentionRacingEstimator(support.FakeEstimator):
    """The chief's checkpoint retention deletes the checkpoint while it is exported."""

    def export_saved_model(self, export_dir_base, serving_input_receiver_fn, **kwargs):
        tf.io.gfile.remove(kwargs["checkpoint_path"] + ".index")
        raise ValueError("The passed save_path is not a valid checkpoint")


@pytest.mark.parametrize(
    "cls",
    [
        OURS,
        original_fails("the ValueError of a deleted checkpoint kills the evaluator", ValueError),
    ],
)
def test_checkpoint_deleted_during_the_export_is_not_fatal(cls, any_dir: str) -> None:
    exporter = _exporter(cls)
    checkpoint = _checkpoint(any_dir, 100)
    racing = _RetentionRacingEstimator(any_dir)
    assert _export(exporter, racing, 100, checkpoint=checkpoint, loss=0.5) is None


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_configuration_error_of_the_export_is_raised(cls, any_dir: str) -> None:
    exporter = _exporter(cls)
    estimator = support.FakeEstimator(any_dir, error=ValueError("bad serving_input_receiver_fn"))
    checkpoint = _checkpoint(any_dir, 100)
    with pytest.raises(ValueError, match="bad serving_input_receiver_fn"):
        _export(exporter, estimator, 100, checkpoint=checkpoint, loss=0.5)


@pytest.mark.parametrize(
    "error", [RuntimeError("bug"), tf.errors.InvalidArgumentError(None, None, "x")]
)
def test_other_export_errors_are_raised(error: Exception, any_dir: str) -> None:
    estimator = support.FakeEstimator(any_dir, error=error)
    with pytest.raises(type(error)):
        _export(_exporter(), estimator, 1, loss=0.5)


def test_leftover_of_a_failed_export_is_removed(any_dir: str) -> None:
    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)
    tf.io.gfile.makedirs(os.path.join(_export_path(any_dir), "temp-1600000000"))
    estimator.error = tf.errors.ResourceExhaustedError(None, None, "disk full")
    assert _export(exporter, estimator, 1, loss=0.5) is None
    # Only the failed export's own temp dir; an older one is retention's to judge.
    assert _listing(any_dir) == ["temp-1600000000"]

    estimator.error = None
    assert _export(exporter, estimator, 2, loss=0.5) is not None
    assert _listing(any_dir) == ["1700000001"]


def test_a_new_model_dir_is_restored_afresh(tmp_path) -> None:
    exporter = _exporter()
    first_dir, second_dir = str(tmp_path / "a"), str(tmp_path / "b")
    assert _export(exporter, support.FakeEstimator(first_dir), 1, loss=0.25) is not None
    # Another model: its own history, not the first model's best.
    assert _export(exporter, support.FakeEstimator(second_dir), 1, loss=0.5) is not None
    assert exporter.best_eval_result == {"loss": 0.5, "global_step": 1}


# ----------------------------------------------------------------------------
# Log lines


@pytest.mark.parametrize(
    "step, loss, error, level, fragments",
    [
        (100, 0.5, None, logging.INFO, ["exported step 100: loss 0.5, the first export"]),
        (
            200,
            0.25,
            None,
            logging.INFO,
            ["exported step 200: loss 0.25, improves on the best loss 0.5 (step 100, this run)"],
        ),
        (
            300,
            0.75,
            None,
            logging.INFO,
            [
                "not exported step 300: loss 0.75 is no improvement",
                "over the best loss 0.25 (step 200",
            ],
        ),
        (
            400,
            math.nan,
            None,
            logging.WARNING,
            ["not exported step 400: loss nan is not a finite number", "loss 0.25 (step 200"],
        ),
        (
            500,
            0.125,
            tf.errors.UnavailableError(None, None, "disk"),
            logging.WARNING,
            [
                "not exported step 500: loss 0.125 would have been exported",
                "failed: UnavailableError: disk",
                "The best remains loss 0.25 (step 200",
            ],
        ),
    ],
)
def test_each_decision_logs_one_line_with_value_best_step_and_reason(
    any_dir: str,
    caplog: pytest.LogCaptureFixture,
    step: int,
    loss: float,
    error: Optional[Exception],
    level: int,
    fragments: List[str],
) -> None:
    exporter = _exporter(exports_to_keep=None)
    estimator = support.FakeEstimator(any_dir)
    # The decisions before this row's.
    for earlier_step, earlier_loss in [(100, 0.5), (200, 0.25), (300, 0.75)]:
        if earlier_step < step:
            _export(exporter, estimator, earlier_step, loss=earlier_loss)
    estimator.error = error
    caplog.clear()

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        _export(exporter, estimator, step, loss=loss)

    decision_lines = [r for r in caplog.records if f"exported step {step}:" in r.getMessage()]
    assert len(decision_lines) == 1
    assert decision_lines[0].levelno == level
    for fragment in fragments:
        assert fragment in decision_lines[0].getMessage()


@pytest.mark.parametrize(
    "setup, fragment",
    [
        ("nothing", "no earlier result to beat (0 exports on disk under"),
        (
            "events",
            "restored the best result from eval events: loss 0.25 (step 1); 1 exports on disk "
            "under",
        ),
        (
            "records",
            "restored the best result from export records: loss 0.25 (step 1)",
        ),
    ],
)
def test_restore_logs_where_the_best_came_from(
    any_dir: str, caplog: pytest.LogCaptureFixture, setup: str, fragment: str
) -> None:
    estimator = support.FakeEstimator(any_dir)
    if setup == "events":
        _old_version(any_dir)  # Without a record: valued by the history.
        _eval_events(any_dir, [(1, {"loss": 0.25})])
    if setup == "records":
        _export(_exporter(event_file_pattern=None), estimator, 1, loss=0.25)
    exporter = _exporter(event_file_pattern=None if setup == "records" else "eval/*.tfevents.*")
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        _export(exporter, estimator, 2, loss=0.5)
        _export(exporter, estimator, 3, loss=0.75)

    restore_lines = [
        m for m in _messages(caplog, logging.INFO) if "restored" in m or "earlier" in m
    ]
    assert len(restore_lines) == 1  # Later calls restore nothing.
    assert fragment in restore_lines[0]


def test_exporter_logs_through_the_tensorflow_logger() -> None:
    from best_exporter.core.log import logger

    assert logger.name == LOGGER
    assert logger.parent is tf.get_logger() or logger.parent.name == "tensorflow"


def test_numpy_eval_results_are_accepted(any_dir: str) -> None:
    exporter = _exporter()
    result = {"loss": np.array(0.5, dtype=np.float32), "global_step": np.int64(10)}
    path = exporter.export(
        support.FakeEstimator(any_dir), _export_path(any_dir), None, result, True
    )
    assert path is not None


# ----------------------------------------------------------------------------
# The completeness check of what the estimator returned: it verifies only a
# version directory written under export_path, and never raises.


class _LossyRenameEstimator(support.FakeEstimator):
    """Publishes a version whose SavedModel got lost on the way (a non-atomic rename)."""

    def export_saved_model(self, export_dir_base, serving_input_receiver_fn, **kwargs):
        exported = super().export_saved_model(export_dir_base, serving_input_receiver_fn, **kwargs)
        tf.io.gfile.remove(os.path.join(exported.decode(), "saved_model.pb"))
        return exported


def test_incomplete_version_is_removed_and_not_the_best(
    any_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = _exporter()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, _LossyRenameEstimator(any_dir), 1, loss=0.5) is None
    assert _versions(any_dir) == []
    assert exporter.best_eval_result is None
    (warning,) = _messages(caplog, logging.WARNING)
    assert "lacks saved_model.pb, so it was removed" in warning


def _mock_estimator(model_dir: str, returned: Any) -> mock.Mock:
    estimator = mock.Mock(spec=tf.estimator.Estimator, model_dir=model_dir)
    if returned is not _DEFAULT:
        estimator.export_saved_model.return_value = returned
    return estimator


_DEFAULT = object()


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param("export_result_path", id="plain-string"),
        pytest.param(b"export_result_path", id="plain-bytes"),
        pytest.param(_DEFAULT, id="a-mock"),
        pytest.param(None, id="none"),
        pytest.param("{export_path}/1700000000", id="version-nobody-wrote"),
        pytest.param("/elsewhere/1700000000", id="version-elsewhere"),
    ],
)
@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_what_the_estimator_returns_is_returned_unchanged(cls, returned, any_dir: str) -> None:
    export_path = _export_path(any_dir)
    tf.io.gfile.makedirs(export_path)  # The original lists it to prune.
    if isinstance(returned, str):
        returned = returned.format(export_path=export_path)
    estimator = _mock_estimator(any_dir, returned)
    result = _export(_exporter(cls), estimator, 1, loss=0.5)
    expected = estimator.export_saved_model.return_value
    assert result is expected
    assert estimator.export_saved_model.call_count == 1


def test_unverifiable_return_keeps_the_result_as_the_best(any_dir: str) -> None:
    exporter = _exporter()
    estimator = _mock_estimator(any_dir, _DEFAULT)
    assert _export(exporter, estimator, 1, loss=0.5) is not None
    assert exporter.best_eval_result == {"loss": 0.5, "global_step": 1}
    assert exporter.best_export_path is None  # A mock is no path.
    assert _export(exporter, estimator, 2, loss=0.6) is None
    assert _export(exporter, estimator, 3, loss=0.4) is not None


def test_a_failing_completeness_check_keeps_the_export(
    any_dir: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "filesystem unavailable")

    exporter = _exporter()
    estimator = support.FakeEstimator(any_dir)
    monkeypatch.setattr("best_exporter.core.layout.missing_export_parts", broken)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        exported = _export(exporter, estimator, 1, loss=0.5)
    assert exported == os.path.join(_export_path(any_dir), "1700000000").encode()
    assert _versions(any_dir) == ["1700000000"]
    assert any("Cannot verify that export" in m for m in _messages(caplog, logging.WARNING))


def test_a_failing_version_directory_test_never_raises(
    any_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_isdir = tf.io.gfile.isdir
    export_path = _export_path(any_dir)

    def isdir(path):
        if os.path.basename(str(path).rstrip("/")).isdigit():
            raise tf.errors.PermissionDeniedError(None, None, "denied")
        return real_isdir(path)

    monkeypatch.setattr(tf.io.gfile, "isdir", isdir)
    exported = _export(_exporter(), support.FakeEstimator(any_dir), 1, loss=0.5)
    assert exported == os.path.join(export_path, "1700000000").encode()


# ----------------------------------------------------------------------------
# Issue 8: the evaluator never dies because of us, and nothing outside is touched.


class _CheckFailingEstimator(support.FakeEstimator):
    """Exports, then makes the filesystem fail for the post-export check."""

    def __init__(self, model_dir: str, faults: FaultyGfile, error) -> None:
        super().__init__(model_dir)
        self._faults = faults
        self._error = error

    def export_saved_model(self, *args, **kwargs):
        exported = super().export_saved_model(*args, **kwargs)
        self._faults.fail("exists", self._error, path_contains=exported.decode())
        return exported


@pytest.mark.parametrize(
    "error", [tf.errors.UnavailableError, tf.errors.PermissionDeniedError, OSError, RuntimeError]
)
def test_an_error_in_the_post_export_check_is_logged_never_raised(
    tmp_path, monkeypatch, caplog: pytest.LogCaptureFixture, error
) -> None:
    exporter = _exporter()
    estimator = _CheckFailingEstimator(str(tmp_path), FaultyGfile(monkeypatch), error)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        exported = _export(exporter, estimator, 1, loss=0.5)

    # The estimator reported success: the export stays and is the best.
    assert exported is not None and exporter.best_export_path == exported.decode()
    assert _versions(str(tmp_path)) == ["1700000000"]
    (warning,) = _messages(caplog, logging.WARNING)
    assert "Cannot verify that export" in warning and error.__name__ in warning


_FILESYSTEM_ERRORS = [
    tf.errors.AlreadyExistsError,
    tf.errors.FailedPreconditionError,
    tf.errors.InternalError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
]


@pytest.mark.parametrize("error", _FILESYSTEM_ERRORS, ids=lambda e: e.__name__)
def test_filesystem_error_classes_at_export_are_logged_and_survived(
    tmp_path, error, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = _exporter()
    estimator = support.FakeEstimator(str(tmp_path))
    assert _export(exporter, estimator, 1, loss=0.5) is not None
    estimator.error = error(None, None, "injected by the filesystem")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, estimator, 2, loss=0.25) is None

    (warning,) = _messages(caplog, logging.WARNING)
    assert f"failed: {error.__name__}: injected by the filesystem" in warning
    estimator.error = None
    assert _export(exporter, estimator, 3, loss=0.25) is not None


def _graph_op() -> tf.Operation:
    """An op of a model's graph, as carried by the errors that op raises."""
    with tf.Graph().as_default():
        return tf.constant(1.0, name="dnn/hiddenlayer_0/MatMul").op


@pytest.mark.parametrize(
    "error", [tf.errors.FailedPreconditionError, tf.errors.InternalError], ids=lambda e: e.__name__
)
def test_the_same_error_classes_raised_by_a_graph_op_are_the_models_and_raise(
    tmp_path, error
) -> None:
    estimator = support.FakeEstimator(
        str(tmp_path), error=error(None, _graph_op(), "Attempting to use uninitialized value")
    )
    with pytest.raises(error, match="uninitialized"):
        _export(_exporter(), estimator, 1, loss=0.5)


@pytest.mark.parametrize(
    "name", ["..", ".", "/abs", "/abs/export", "a/b", "best/", "a\\b"], ids=repr
)
@pytest.mark.parametrize("cls", [OURS, original_fails("accepted", pytest.fail.Exception)])
def test_a_name_that_is_not_one_directory_name_is_rejected(cls, name: str) -> None:
    with pytest.raises(ValueError, match=rf"Received: name={re.escape(repr(name))}"):
        _exporter(cls, name=name)


def test_a_name_with_dots_that_is_one_directory_name_is_accepted() -> None:
    assert _exporter(name="..best").name == "..best"
    assert _exporter(name="best.v2").name == "best.v2"


@pytest.mark.parametrize("destination", [".", "a/..", "./"], ids=repr)
@pytest.mark.parametrize(
    "cls", [OURS, original_fails("fails only at export", pytest.fail.Exception)]
)
def test_an_assets_extra_key_naming_assets_extra_itself_is_rejected(
    cls, tmp_path, destination: str
) -> None:
    source = tmp_path / "vocab.txt"
    source.write_text("red\n")
    with pytest.raises(ValueError, match=rf"Received key: {re.escape(repr(destination))}"):
        _exporter(cls, assets_extra={destination: str(source)})


@pytest.mark.parametrize("cls", [OURS, ORIGINAL])
def test_an_assets_extra_key_starting_with_two_dots_is_a_legal_name(cls, tmp_path) -> None:
    source = tmp_path / "vocab.txt"
    source.write_text("red\n")
    model_dir = str(tmp_path / "model")
    exporter = _exporter(cls, assets_extra={"..foo": str(source), "a/..b": str(source)})

    exported = _export(exporter, support.FakeEstimator(model_dir), 1, loss=0.5)

    with tf.io.gfile.GFile(os.path.join(exported.decode(), "assets.extra", "..foo")) as f:
        assert f.read() == "red\n"


@pytest.mark.parametrize(
    "cls", [OURS, original_fails("fails at every export", pytest.fail.Exception)]
)
def test_an_assets_extra_source_that_is_a_directory_is_rejected_at_construction(
    cls, tmp_path
) -> None:
    (tmp_path / "vocab").mkdir()
    with pytest.raises(ValueError, match=r"source '.*vocab' \(for 'vocab'\) is a directory"):
        _exporter(cls, assets_extra={"vocab": str(tmp_path / "vocab")})


@pytest.mark.parametrize("step", [math.nan, math.inf, "abc", 2.5, [], True], ids=repr)
def test_an_odd_global_step_raises_a_clear_error_before_anything_is_written(tmp_path, step) -> None:
    estimator = support.FakeEstimator(str(tmp_path))
    with pytest.raises(ValueError, match=r"`global_step` must be an integer step.*Received"):
        _exporter().export(
            estimator, _export_path(str(tmp_path)), None, {"loss": 0.5, "global_step": step}, False
        )
    assert estimator.calls == [] and not tf.io.gfile.exists(_export_path(str(tmp_path)))


def test_a_metric_beyond_the_float_range_is_infinite_and_not_exported(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = _exporter()
    estimator = support.FakeEstimator(str(tmp_path))
    result = {"loss": 10**400, "global_step": 1}

    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert exporter.export(estimator, _export_path(str(tmp_path)), None, result, False) is None

    (warning,) = _messages(caplog, logging.WARNING)
    assert "not exported step 1: loss inf is not a finite number" in warning
    # As a side metric it is stored as infinity, and the export works.
    result = {"loss": 0.5, "big": 10**400, "global_step": 2}
    exported = exporter.export(estimator, _export_path(str(tmp_path)), None, result, False)
    (export,) = read_export_records(_export_path(str(tmp_path)))
    assert export.path == exported.decode() and export.record["metrics"]["big"] == math.inf


class _NoneReturningEstimator(support.FakeEstimator):
    def export_saved_model(self, *args, **kwargs):
        super().export_saved_model(*args, **kwargs)
        return None


def test_an_estimator_returning_none_is_a_failed_export_with_a_warning(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = _exporter()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert _export(exporter, _NoneReturningEstimator(str(tmp_path)), 1, loss=0.5) is None
    (warning,) = _messages(caplog, logging.WARNING)
    assert "export_saved_model returned None instead of the export's path" in warning
    assert exporter.best_eval_result is None


@pytest.mark.parametrize("loss", ["0.25", b"0.25", True, 0.25 + 1j, {"value": 0.25}], ids=repr)
def test_a_loss_the_record_cannot_store_raises_naming_it(tmp_path, loss) -> None:
    estimator = support.FakeEstimator(str(tmp_path))
    result = {"loss": loss, "global_step": 1}
    with pytest.raises(ValueError, match=r"Metric 'loss' must be a number.*Received: "):
        _exporter().export(estimator, _export_path(str(tmp_path)), None, result, False)
    assert estimator.calls == []


@pytest.mark.parametrize(
    "cls",
    [
        OURS,
        original_fails(
            "retention empties a symlinked version's target",
            (AssertionError, tf.errors.FailedPreconditionError),
        ),
    ],
)
def test_retention_never_follows_a_symlinked_version(cls, tmp_path) -> None:
    model_dir = str(tmp_path / "model")
    pinned = tmp_path / "pinned"
    (pinned / "variables").mkdir(parents=True)
    (pinned / "saved_model.pb").write_text("the pinned model")
    os.makedirs(_export_path(model_dir))
    os.symlink(str(pinned), os.path.join(_export_path(model_dir), str(OLD)))
    exporter = _exporter(cls, exports_to_keep=1)
    estimator = support.FakeEstimator(model_dir)

    for step, loss in [(1, 0.5), (2, 0.25)]:
        assert _export(exporter, estimator, step, loss=loss) is not None

    assert (pinned / "saved_model.pb").read_text() == "the pinned model"
    assert os.path.islink(os.path.join(_export_path(model_dir), str(OLD)))


@pytest.mark.parametrize(
    "cls", [OURS, original_fails("retention deletes a file named like a version")]
)
def test_retention_leaves_a_regular_file_named_like_a_version_alone(cls, tmp_path) -> None:
    model_dir = str(tmp_path)
    os.makedirs(_export_path(model_dir))
    notes = os.path.join(_export_path(model_dir), str(OLD))
    with open(notes, "w") as f:
        f.write("notes")
    exporter = _exporter(cls, exports_to_keep=1)

    assert _export(exporter, support.FakeEstimator(model_dir), 1, loss=0.5) is not None

    assert os.path.isfile(notes)
