"""Tests of best_exporter.decision: the rules of the decision as pure functions."""

import math
from typing import Any, Dict, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from best_exporter.core.compare import higher_is_better, loss_smaller, lower_is_better
from best_exporter.core.decision import Best, Judge, Outcome, Source, decide


def _best(loss: float, step: int = 100, source: Source = Source.EVENTS) -> Best:
    return Best({"loss": loss, "global_step": step}, source)


def _accuracy_better(best_eval_result, current_eval_result):
    return current_eval_result["accuracy"] > best_eval_result["accuracy"]


@pytest.mark.parametrize(
    "best, current_loss, outcome",
    [
        (None, 0.5, Outcome.FIRST),
        (_best(0.5), 0.4, Outcome.IMPROVED),
        (_best(0.5), 0.5, Outcome.NOT_IMPROVED),  # A tie.
        (_best(0.5), 0.6, Outcome.NOT_IMPROVED),
        # Rule 1: NaN and infinity are never exported, whatever else holds.
        (None, math.nan, Outcome.INVALID),
        (None, math.inf, Outcome.INVALID),
        (None, -math.inf, Outcome.INVALID),
        (_best(0.5), math.nan, Outcome.INVALID),
        (_best(0.5), -math.inf, Outcome.INVALID),
    ],
)
def test_decide_applies_the_rules(
    best: Optional[Best], current_loss: float, outcome: Outcome
) -> None:
    current = {"loss": np.float32(current_loss), "global_step": np.int64(200)}
    assert decide(Judge(loss_smaller), best, current) is outcome


@pytest.mark.parametrize(
    "outcome, exports",
    [
        (Outcome.FIRST, True),
        (Outcome.IMPROVED, True),
        (Outcome.NOT_IMPROVED, False),
        (Outcome.INVALID, False),
    ],
)
def test_outcome_says_whether_to_export(outcome: Outcome, exports: bool) -> None:
    assert outcome.exports is exports


def test_decide_with_min_delta_needs_the_least_improvement() -> None:
    judge = Judge(lower_is_better("loss", min_delta=0.1))
    assert decide(judge, _best(0.5), {"loss": 0.45}) is Outcome.NOT_IMPROVED
    assert decide(judge, _best(0.5), {"loss": 0.4}) is Outcome.IMPROVED


def test_decide_raises_listing_the_metrics_when_current_lacks_the_metric() -> None:
    with pytest.raises(ValueError, match=r"\['accuracy', 'global_step'\]"):
        decide(Judge(loss_smaller), None, {"accuracy": 0.9, "global_step": 1})


@pytest.mark.parametrize("error", [KeyError, ValueError, TypeError, RuntimeError])
def test_decide_propagates_a_custom_compare_fn_error_on_the_current_result(error) -> None:
    def fails_on_current(best_eval_result, current_eval_result):
        raise error("cannot judge current")

    with pytest.raises(error, match="cannot judge current"):
        decide(Judge(fails_on_current), _best(0.5), {"loss": 0.1})


def test_custom_compare_fn_decides_alone_about_non_finite_values() -> None:
    # A custom compare_fn is opaque: NaN handling is its business.
    judge = Judge(lambda best_eval_result, current_eval_result: True)
    assert judge.metric is None
    assert judge.is_finite({"loss": math.nan})
    assert decide(judge, _best(0.5), {"loss": math.nan}) is Outcome.IMPROVED


def test_judge_calls_the_compare_fn_by_keyword() -> None:
    calls = []

    def compare_fn(current_eval_result, best_eval_result):  # Reversed order on purpose.
        calls.append((best_eval_result, current_eval_result))
        return False

    Judge(compare_fn).improves({"loss": 1}, {"loss": 2})
    assert calls == [({"loss": 1}, {"loss": 2})]


@pytest.mark.parametrize(
    "losses, best_loss",
    [
        ([0.5, 0.3, 0.4], 0.3),
        ([0.3, 0.3, 0.4], 0.3),
        ([math.nan, 0.7, 0.6], 0.6),
        ([0.7, math.inf, -math.inf, 0.6], 0.6),
        ([math.nan, math.inf], None),
        ([], None),
    ],
)
def test_best_of_finds_the_best_finite_result(losses, best_loss: Optional[float]) -> None:
    candidates = [_best(loss, step) for step, loss in enumerate(losses, start=1)]
    best, skipped = Judge(loss_smaller).best_of(candidates)
    assert (best.eval_result["loss"] if best else None) == best_loss
    assert skipped == {}


def test_best_of_keeps_the_first_of_tied_candidates() -> None:
    first = _best(0.3, 1, Source.EVENTS)
    second = _best(0.3, 2, Source.RECORDS)
    best, _ = Judge(loss_smaller).best_of([first, second])
    assert best is first


def test_best_of_skips_results_without_the_metric_once_per_cause() -> None:
    candidates = [Best({"accuracy": 0.1, "global_step": s}, Source.EVENTS) for s in range(1, 51)]
    candidates.append(_best(0.4, 60))
    best, skipped = Judge(loss_smaller).best_of(candidates)
    assert best.eval_result["loss"] == 0.4
    assert list(skipped) == [ValueError]
    assert skipped[ValueError].count == 50
    assert skipped[ValueError].first_step == 1


_MISSING = object()  # A candidate without the metric.
_METRIC_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(math.nan),
    st.sampled_from([0.25, 0.5, 0.5 + 1e-17, "0.75", "not a number", None]),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    comparator=st.sampled_from(
        [loss_smaller, lower_is_better("loss", min_delta=0.1), higher_is_better("loss")]
    ),
    losses=st.lists(st.one_of(st.just(_MISSING), _METRIC_VALUES), max_size=12),
)
def test_best_of_by_one_metric_agrees_with_the_compare_fn_called_on_every_pair(
    comparator, losses
) -> None:
    # Judge(comparator) reads each candidate's metric once; wrapped in a plain
    # function the same comparator goes through the general path. Both must agree.
    candidates = [
        Best(
            {"global_step": step} if loss is _MISSING else {"loss": loss, "global_step": step},
            Source.EVENTS,
        )
        for step, loss in enumerate(losses, start=1)
    ]

    def general(best_eval_result, current_eval_result):
        return comparator(best_eval_result, current_eval_result)

    def finite_only(candidate: Best) -> bool:
        try:
            return math.isfinite(comparator.value(candidate.eval_result))
        except ValueError:
            return False

    fast, fast_skipped = Judge(comparator).best_of(candidates)
    # The general path leaves finiteness to a custom compare_fn: give it the finite ones.
    slow, slow_skipped = Judge(general).best_of(
        [c for c in candidates if finite_only(c) or _raises(comparator, c)]
    )
    assert fast is slow
    assert {k: (v.count, v.first_step) for k, v in fast_skipped.items()} == {
        k: (v.count, v.first_step) for k, v in slow_skipped.items()
    }


def _raises(comparator, candidate: Best) -> bool:
    try:
        comparator.value(candidate.eval_result)
    except ValueError:
        return True
    return False


def _compare_fn_raising(kind: str):
    errors: Dict[str, Any] = {"key": KeyError, "value": ValueError, "type": TypeError}

    def compare_fn(best_eval_result, current_eval_result):
        for result in (best_eval_result, current_eval_result):
            if "bad" in result:
                raise errors[kind](f"cannot judge {result}")
        return current_eval_result["loss"] < best_eval_result["loss"]

    return compare_fn


@pytest.mark.parametrize(
    "kind, error", [("key", KeyError), ("value", ValueError), ("type", TypeError)]
)
def test_best_of_skips_what_a_custom_compare_fn_cannot_judge(kind: str, error) -> None:
    candidates = [_best(0.5, 1)]
    candidates += [Best({"bad": 1.0, "global_step": s}, Source.EVENTS) for s in range(2, 52)]
    candidates.append(_best(0.4, 60))
    best, skipped = Judge(_compare_fn_raising(kind)).best_of(candidates)
    assert best.eval_result == {"loss": 0.4, "global_step": 60}
    assert list(skipped) == [error]
    assert skipped[error].count == 50
    assert skipped[error].first_step == 2
    assert isinstance(skipped[error].example, error)


def test_best_of_counts_each_cause_apart() -> None:
    def compare_fn(best_eval_result, current_eval_result):
        for result in (best_eval_result, current_eval_result):
            if "k" in result:
                raise KeyError("k")
            if "t" in result:
                raise TypeError("t")
        return current_eval_result["loss"] < best_eval_result["loss"]

    candidates = [Best({"k": 1, "global_step": s}, Source.EVENTS) for s in range(3)]
    candidates += [Best({"t": 1, "global_step": s}, Source.EVENTS) for s in range(3, 5)]
    best, skipped = Judge(compare_fn).best_of(candidates)
    assert best is None
    assert {cause: s.count for cause, s in skipped.items()} == {KeyError: 3, TypeError: 2}


def test_best_of_propagates_errors_that_are_bugs_in_the_compare_fn() -> None:
    def buggy(best_eval_result, current_eval_result):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        Judge(buggy).best_of([_best(0.5)])


def test_best_of_skips_any_error_it_is_told_to_on_restored_results() -> None:
    def buggy_on_plain_floats(best_eval_result, current_eval_result):
        return best_eval_result["loss"].item() > current_eval_result["loss"].item()

    restored = [_best(0.5), Best({"loss": np.float64(0.25)}, Source.RECORDS)]

    best, skipped = Judge(buggy_on_plain_floats).best_of(restored, unjudgeable=(Exception,))

    assert best is restored[1]
    assert {cause: s.count for cause, s in skipped.items()} == {AttributeError: 1}


@pytest.mark.parametrize(
    "eval_result, step",
    [
        ({"loss": 1.0, "global_step": np.int64(7)}, 7),
        ({"loss": 1.0}, None),
        # Only log lines read it: an odd step is no step there, never an error.
        ({"loss": 1.0, "global_step": math.nan}, None),
        ({"loss": 1.0, "global_step": "abc"}, None),
        ({"loss": 1.0, "global_step": []}, None),
    ],
)
def test_best_step_is_the_global_step_as_int(eval_result, step: Optional[int]) -> None:
    best = Best(eval_result, Source.RECORDS)
    assert best.step == step
    assert best.step is None or type(best.step) is int


@pytest.mark.parametrize(
    "compare_fn, eval_result, text",
    [
        (loss_smaller, {"loss": np.float32(0.25), "global_step": 3}, "loss 0.25"),
        (higher_is_better("auc"), {"loss": 0.5, "auc": 0.123456789}, "auc 0.123457"),
        (_accuracy_better, {"loss": 0.5, "accuracy": 0.9}, "loss 0.5"),
        (_accuracy_better, {"accuracy": 0.9, "f1": 1, "global_step": 3}, "accuracy 0.9, f1 1"),
        (_accuracy_better, {"global_step": 3}, "{}"),
        (loss_smaller, None, "none"),
        (loss_smaller, {"loss": 10**400}, "loss inf"),  # Beyond float: infinite.
        (loss_smaller, {"loss": 12}, "loss 12"),
        (
            _accuracy_better,
            {"accuracy": 0.9, "name": "x" * 50},
            "accuracy 0.9, name '" + "x" * 39 + "...",
        ),
    ],
)
def test_describe_names_the_compared_metric(compare_fn, eval_result, text: str) -> None:
    assert Judge(compare_fn).describe(eval_result) == text
