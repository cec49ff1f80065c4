"""Tests of best_exporter.compare: the built-in compare functions and the compare_fn check."""

import decimal
import fractions
import functools
import math
import re

import numpy as np
import pytest
import tensorflow as tf

from best_exporter.core import compare
from best_exporter.core.compare import (
    MetricComparator,
    check_compare_fn,
    higher_is_better,
    loss_smaller,
    lower_is_better,
)

NAN = math.nan
INF = math.inf


@pytest.mark.parametrize(
    "compare_fn, best, current, improves",
    [
        # loss_smaller: the default, a strictly smaller `loss`.
        (loss_smaller, 0.5, 0.4, True),
        (loss_smaller, 0.5, 0.6, False),
        (loss_smaller, 0.5, 0.5, False),  # A tie is not an improvement.
        (loss_smaller, 0.0, -1e-9, True),
        # lower_is_better with min_delta: the least improvement that counts.
        (lower_is_better("loss", min_delta=0.1), 0.5, 0.4, True),  # 0.5 - 0.4 < 0.1 in floats.
        (lower_is_better("loss", min_delta=0.1), 0.5, 0.45, False),
        (lower_is_better("loss", min_delta=0.1), 0.5, 0.3, True),
        (lower_is_better("loss", min_delta=0.1), 0.5, 0.5, False),
        (lower_is_better("loss", min_delta=0.1), 0.5, 0.6, False),
        (lower_is_better("loss", min_delta=0.1), 1.3, 1.2, True),
        (lower_is_better("loss", min_delta=1), 3, 2, True),
        # higher_is_better, with and without min_delta.
        (higher_is_better("accuracy"), 0.8, 0.9, True),
        (higher_is_better("accuracy"), 0.9, 0.8, False),
        (higher_is_better("accuracy"), 0.9, 0.9, False),
        (higher_is_better("accuracy", min_delta=0.1), 0.4, 0.5, True),
        (higher_is_better("accuracy", min_delta=0.1), 0.4, 0.45, False),
        (higher_is_better("accuracy", min_delta=0.01), 0.7, 0.71, True),
        # NaN is never an improvement, and nothing improves on it either.
        (loss_smaller, 0.5, NAN, False),
        (loss_smaller, NAN, 0.5, False),
        (loss_smaller, NAN, NAN, False),
        (higher_is_better("accuracy"), 0.5, NAN, False),
        (higher_is_better("accuracy"), NAN, 0.5, False),
        # Infinities compare as numbers; the exporter rejects them separately.
        (loss_smaller, INF, 0.5, True),
        (loss_smaller, 0.5, INF, False),
        (loss_smaller, INF, INF, False),
    ],
)
def test_compare_fn_judges_improvement(compare_fn, best, current, improves: bool) -> None:
    metric = compare_fn.metric
    assert (
        compare_fn(best_eval_result={metric: best}, current_eval_result={metric: current})
        is improves
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, float])
def test_compare_fn_accepts_numpy_scalars_as_estimator_returns_them(dtype) -> None:
    best = {"loss": dtype(0.5), "global_step": np.int64(100)}
    current = {"loss": dtype(0.25), "global_step": np.int64(200)}
    assert loss_smaller(best, current) is True
    assert loss_smaller(current, best) is False


def test_compare_fn_ignores_other_metrics() -> None:
    best = {"loss": 0.5, "accuracy": 0.1}
    current = {"loss": 0.4, "accuracy": 0.0}
    assert loss_smaller(best, current) is True
    assert higher_is_better("accuracy")(best, current) is False


@pytest.mark.parametrize(
    "best, current",
    [
        ({"accuracy": 0.9, "global_step": 1}, {"loss": 0.5}),
        ({"loss": 0.5}, {"accuracy": 0.9, "global_step": 1}),
    ],
)
def test_missing_metric_raises_listing_the_metrics_the_result_has(best, current) -> None:
    with pytest.raises(ValueError, match=r"no metric 'loss'.*\['accuracy', 'global_step'\]"):
        loss_smaller(best, current)


@pytest.mark.parametrize(
    "compare_fn, result, hint",
    [
        # A typo: the closest name, in the direction the user asked for.
        (
            higher_is_better("acuracy"),
            {"accuracy": 0.9, "loss": 0.3},
            "higher_is_better('accuracy')",
        ),
        (lower_is_better("los"), {"accuracy": 0.9, "loss": 0.3}, "lower_is_better('loss')"),
        (
            lower_is_better("loss"),
            {"average_loss": 0.3, "auc": 0.8},
            "lower_is_better('average_loss')",
        ),
        (
            higher_is_better("auc_precision", min_delta=0.01),
            {"auc_precision_recall": 0.7, "loss": 0.3},
            "higher_is_better('auc_precision_recall', min_delta=0.01)",
        ),
    ],
)
def test_missing_metric_hint_suggests_the_closest_metric_in_the_same_direction(
    compare_fn, result, hint: str
) -> None:
    with pytest.raises(ValueError) as raised:
        compare_fn(result, result)
    assert f"Did you mean {hint}?" in str(raised.value)


def test_hint_without_a_close_metric_lists_the_metrics_and_keeps_the_direction() -> None:
    with pytest.raises(ValueError) as raised:
        result = {"accuracy": 0.9, "global_step": 3}
        higher_is_better("f1")(result, result)
    message = str(raised.value)
    assert "it has ['accuracy', 'global_step']" in message
    assert "Pass higher_is_better() with one of those names" in message
    assert "lower_is_better" not in message


@pytest.mark.parametrize("empty", [None, {}])
def test_empty_result_raises_value_error(empty) -> None:
    with pytest.raises(ValueError, match=r"no metric 'loss' to compare; it has \[\]"):
        loss_smaller({"loss": 0.5}, empty)


@pytest.mark.parametrize("value", ["high", None, [0.1, 0.2], object()])
def test_non_numeric_metric_raises_value_error_naming_the_value(value) -> None:
    with pytest.raises(ValueError, match=r"'loss' must be a number.*Received: "):
        loss_smaller({"loss": 0.5}, {"loss": value})


@pytest.mark.parametrize(
    "value, shown",
    [
        ("0.5", "str '0.5'"),
        (b"0.5", "bytes b'0.5'"),
        (True, "bool True"),
        (np.bool_(False), r"bool_? (np\.)?False_?"),  # numpy 2 (Keras 3 session) shows np.False_.
        (1 + 0j, r"complex \(1\+0j\)"),
        (np.zeros(3), r"ndarray array\(\[0., 0., 0.\]\)"),
    ],
)
def test_metric_the_record_cannot_store_raises_value_error_naming_it(value, shown: str) -> None:
    # Compared in memory, such a value was written to the record as nothing, and a
    # worse model was exported after a restart (issue 8, item 5).
    with pytest.raises(ValueError, match=rf"'loss' must be a number.*Received: {shown}"):
        loss_smaller({"loss": 0.5}, {"loss": value})


@pytest.mark.parametrize(
    "value, expected",
    [
        (tf.constant(0.25), 0.25),
        (tf.constant([0.25]), 0.25),
        (decimal.Decimal("0.25"), 0.25),
        (fractions.Fraction(1, 4), 0.25),
        (np.int32(3), 3.0),
        (10**400, math.inf),
        (-(10**400), -math.inf),
        (decimal.Decimal("NaN"), NAN),
    ],
    ids=repr,
)
def test_numbers_of_any_kind_are_compared_as_floats(value, expected: float) -> None:
    assert compare.numeric_value(value) == expected or (
        math.isnan(expected) and math.isnan(compare.numeric_value(value))
    )
    assert loss_smaller({"loss": 0.5}, {"loss": value}) is (expected < 0.5)


# 0.7 - 0.6 computed from float32 metrics is 0.0999999642 (issue 8, item 11).
@pytest.mark.parametrize(
    "compare_fn, best, current, improves",
    [
        (higher_is_better("accuracy", min_delta=0.1), 0.5, 0.6, True),
        (higher_is_better("accuracy", min_delta=0.1), 0.6, 0.7, True),
        (higher_is_better("accuracy", min_delta=0.1), 0.7, 0.8, True),
        (higher_is_better("accuracy", min_delta=0.1), 0.6, 0.6999, False),
        (lower_is_better("loss", min_delta=0.1), 0.7, 0.6, True),
        (lower_is_better("loss", min_delta=0.01), 1000.5, 1000.49, True),
        (lower_is_better("loss", min_delta=0.01), 1000.5, 1000.495, False),
        (lower_is_better("loss", min_delta=0.001), 0.3, 0.299, True),
        (lower_is_better("loss", min_delta=0.001), 0.3, 0.2991, False),
    ],
)
def test_min_delta_allows_for_float32_rounding(compare_fn, best, current, improves) -> None:
    metric = compare_fn.metric
    best_result = {metric: np.float32(best)}
    current_result = {metric: np.float32(current)}
    assert compare_fn(best_result, current_result) is improves


@pytest.mark.parametrize("metric", ["", None, 3, b"loss", ["loss"]])
@pytest.mark.parametrize("factory", [lower_is_better, higher_is_better])
def test_invalid_metric_raises_at_construction(factory, metric) -> None:
    with pytest.raises(ValueError, match=f"Received: metric={re.escape(repr(metric))}"):
        factory(metric)


@pytest.mark.parametrize("min_delta", [-0.1, -1, NAN, INF, "0.1", True, None])
@pytest.mark.parametrize("factory", [lower_is_better, higher_is_better])
def test_invalid_min_delta_raises_at_construction(factory, min_delta) -> None:
    with pytest.raises(ValueError, match=r"`min_delta` must be a finite number >= 0.*Received"):
        factory("loss", min_delta=min_delta)


@pytest.mark.parametrize("min_delta", [0, 0.0, 1, np.float32(0.5), np.int64(2)])
def test_valid_min_delta_is_kept_as_a_float(min_delta) -> None:
    comparator = lower_is_better("loss", min_delta=min_delta)
    assert comparator.min_delta == float(min_delta)
    assert isinstance(comparator.min_delta, float)


def test_comparators_expose_metric_direction_and_repr() -> None:
    assert (loss_smaller.metric, loss_smaller.higher_is_better) == ("loss", False)
    assert repr(loss_smaller) == "lower_is_better('loss')"
    assert (
        repr(higher_is_better("auc", min_delta=0.01)) == "higher_is_better('auc', min_delta=0.01)"
    )


def test_equal_comparators_are_equal_and_hash_alike() -> None:
    assert lower_is_better("loss") == loss_smaller
    assert hash(lower_is_better("loss")) == hash(loss_smaller)
    assert lower_is_better("loss") != higher_is_better("loss")
    assert lower_is_better("loss") != lower_is_better("loss", min_delta=0.1)
    assert lower_is_better("loss") != "loss"


def test_builtin_compare_functions_pass_the_compare_fn_check() -> None:
    for compare_fn in (loss_smaller, lower_is_better("x"), MetricComparator("y", True, 0.5)):
        check_compare_fn(compare_fn)  # Must not raise.


def _accuracy_better(best_eval_result, current_eval_result):
    return current_eval_result["accuracy"] > best_eval_result["accuracy"]


def _by_metric(metric, best_eval_result, current_eval_result):
    return current_eval_result[metric] > best_eval_result[metric]


class _Comparer:
    def method(self, best_eval_result, current_eval_result):
        return True

    def __call__(self, best_eval_result, current_eval_result):
        return True


@pytest.mark.parametrize(
    "compare_fn",
    [
        _accuracy_better,
        lambda best_eval_result, current_eval_result: True,
        functools.partial(_by_metric, "accuracy"),
        functools.partial(_by_metric, metric="accuracy"),
        _Comparer().method,
        _Comparer(),
    ],
    ids=["function", "lambda", "partial-positional", "partial-keyword", "method", "callable"],
)
def test_accepted_compare_fn_shapes(compare_fn) -> None:
    check_compare_fn(compare_fn)  # Must not raise.


@pytest.mark.parametrize(
    "compare_fn, match",
    [
        (None, r"`compare_fn` must not be None"),
        ("loss", r"must be a callable.*Received: compare_fn='loss'"),
        (lambda current_eval_result: True, r"must include best_eval_result argument"),
        (lambda best_eval_result: True, r"must include current_eval_result argument"),
        (
            lambda best_eval_result, current_eval_result, metric: True,
            r"has following not expected args: \['metric'\]",
        ),
        (_by_metric, r"has following not expected args: \['metric'\]"),
        (lambda *args: True, r"must include best_eval_result argument"),
    ],
)
def test_rejected_compare_fn_raises_naming_the_problem(compare_fn, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_compare_fn(compare_fn)


def test_named_parameters_of_a_partial_leave_out_what_it_binds() -> None:
    partial = functools.partial(_by_metric, "accuracy")
    assert compare._named_parameters(partial) == ("best_eval_result", "current_eval_result")
