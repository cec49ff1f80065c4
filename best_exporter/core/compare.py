"""Compare functions: which of two evaluation results is better.

A compare function answers one question, `compare_fn(best_eval_result,
current_eval_result) -> bool`: is the current result an improvement on the best
one? `tf.estimator.BestExporter` takes any callable with exactly those two
parameters; so does `best_exporter.BestExporter`.

The built-in ones are `MetricComparator` instances. Besides answering the
question they tell the exporter which metric they read, so that the exporter can
reject a result that lacks it (a configuration error) or holds NaN or infinity
(never exported, never the best), and can name the metric in its log lines.
"""

import decimal
import difflib
import functools
import inspect
import math
import numbers
from typing import Any, Callable, Mapping, Optional, Tuple, cast

import numpy as np

EvalResult = Mapping[str, Any]
CompareFn = Callable[..., bool]

_COMPARE_FN_PARAMETERS = ("best_eval_result", "current_eval_result")

_MISSING: Any = object()  # A metric absent from a result.

# Estimator's metrics are float32. Two float32 values, each rounded to within half a
# unit in the last place (2**-24 relative), differ from the true difference by up to
# 2**-23 of the larger one: 0.7 - 0.6 in float32 is 0.0999999642. An improvement
# within this much of `min_delta` counts as reaching it.
_FLOAT32_TOLERANCE = 2.0**-22


def numeric_value(value: Any) -> Optional[float]:
    """A metric value as a float, or None if it is not a single number.

    Numbers of any kind count: Python and numpy integers and floats, `Decimal`,
    `Fraction`, scalar tensors and one-element arrays. Booleans, strings, bytes,
    complex numbers and anything else do not. A value beyond the float range
    (an int such as 10**400) becomes an infinity of its sign.

    Args:
      value: a value of an eval result.

    Returns:
      The float, or None.
    """
    if type(value) is float:  # pylint: disable=unidiomatic-typecheck
        return value  # Most values: a fast path for restores with many metrics.
    numpy_method = getattr(value, "numpy", None)
    if callable(numpy_method) and not isinstance(value, np.ndarray):
        try:
            value = numpy_method()  # An eager tensor or variable.
        except Exception:  # pylint: disable=broad-except
            return None  # A graph tensor has no value here.
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)):
        return None
    if not isinstance(value, (numbers.Real, decimal.Decimal)):
        return None  # str, bytes, complex, None, objects.
    try:
        return float(value)
    except OverflowError:
        positive = cast(Any, value) > 0  # An int or Fraction: comparable with 0.
        return math.inf if positive else -math.inf
    except (TypeError, ValueError):
        return None  # A signalling Decimal NaN, an odd Real subclass.


class MetricComparator:
    """Judges eval results by one metric, in one direction, with a `min_delta`.

    Ties are not improvements, and an improvement smaller than `min_delta` does
    not count.

    Args:
      metric: the key of the metric in the eval result, e.g. `'loss'`.
      higher_is_better: True if larger values are better (accuracy, AUC), False
        if smaller values are (loss).
      min_delta: the least improvement that counts; non-negative.

    Raises:
      ValueError: if `metric` is not a non-empty string or `min_delta` is not a
        finite non-negative number.
    """

    def __init__(self, metric: str, higher_is_better: bool, min_delta: float = 0.0):
        if not isinstance(metric, str) or not metric:
            raise ValueError(
                f"`metric` must be the non-empty name of an eval metric, such as 'loss'. "
                f"Received: metric={metric!r}"
            )
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, numbers.Real)
            or not math.isfinite(min_delta)
            or min_delta < 0
        ):
            raise ValueError(
                "`min_delta` must be a finite number >= 0, the least improvement that "
                f"counts. Received: min_delta={min_delta!r}"
            )
        self._metric: str = metric
        self._higher_is_better: bool = bool(higher_is_better)
        self._min_delta: float = float(min_delta)

    @property
    def metric(self) -> str:
        """The key of the compared metric."""
        return self._metric

    @property
    def higher_is_better(self) -> bool:
        """True if larger values of the metric are better."""
        return self._higher_is_better

    @property
    def min_delta(self) -> float:
        """The least improvement that counts."""
        return self._min_delta

    def value(self, eval_result: Optional[EvalResult]) -> float:
        """Returns the compared metric of `eval_result` as a float.

        Args:
          eval_result: a dict of metric name to value.

        Returns:
          The metric's value; NaN and infinities are returned as they are.

        Raises:
          ValueError: if `eval_result` is empty, lacks the metric, or its value is
            not a number. The message lists the metrics that the result has and
            suggests the closest one, compared in the same direction.
        """
        # One lookup: history results decode a metric when it is looked up.
        raw = eval_result.get(self._metric, _MISSING) if eval_result else _MISSING
        if raw is _MISSING:
            raise ValueError(self._missing_metric_message(eval_result))
        value = numeric_value(raw)
        if value is None:
            shown = repr(raw)
            shown = shown if len(shown) <= 100 else shown[:100] + "..."
            raise ValueError(
                f"Metric {self._metric!r} must be a number to be compared, such as a float "
                f"or a numpy scalar. Received: {type(raw).__name__} {shown}. Compare by a "
                "numeric metric, or pass a compare_fn that reads this value."
            )
        return value

    def _missing_metric_message(self, eval_result: Optional[EvalResult]) -> str:
        """Says which metrics the result has, and suggests the closest one in our direction."""
        available = sorted(str(name) for name in eval_result) if eval_result else []
        message = f"The eval result has no metric {self._metric!r} to compare; it has {available}."
        candidates = [name for name in available if name != "global_step"]
        # A typo (`acuracy`) is the common cause: suggest the nearest name with
        # the same direction, so that following the hint keeps the best models.
        close = difflib.get_close_matches(self._metric, candidates, n=1, cutoff=0.5)
        if close:
            suggestion = MetricComparator(close[0], self._higher_is_better, self._min_delta)
            return f"{message} Did you mean {suggestion!r}?"
        if not candidates:
            return message
        factory = "higher_is_better" if self._higher_is_better else "lower_is_better"
        return f"{message} Pass {factory}() with one of those names, or a compare_fn of your own."

    def improvement(self, best: float, current: float) -> float:
        """How much better `current` is than `best`; negative if it is worse."""
        return current - best if self._higher_is_better else best - current

    def __call__(self, best_eval_result: EvalResult, current_eval_result: EvalResult) -> bool:
        """Returns True if `current_eval_result` improves on `best_eval_result`.

        Args:
          best_eval_result: the eval result of the best model so far.
          current_eval_result: the eval result of the candidate model.

        Returns:
          True if the candidate is better by more than zero and by at least
          `min_delta`, less a tolerance of float32 rounding (2**-22 of the
          larger of the two values, about two float32 steps): with float32
          metrics 0.6 -> 0.7 improves by 0.0999999642, which counts as 0.1.
          Always False when either value is NaN.

        Raises:
          ValueError: if either result lacks the metric (like the original
            `_loss_smaller`).
        """
        return self.improves(self.value(best_eval_result), self.value(current_eval_result))

    def improves(self, best: float, current: float) -> bool:
        """Whether the value `current` improves on the value `best`, as `__call__` decides."""
        gain = self.improvement(best, current)
        if not gain > 0:  # Also False for NaN.
            return False
        # Metrics are float32: 0.7 - 0.6 computed from them is 0.0999999642, which
        # must count as 0.1. (Infinite values give a NaN tolerance: no help.)
        tolerance = _FLOAT32_TOLERANCE * max(abs(best), abs(current))
        return gain >= self._min_delta or gain >= self._min_delta - tolerance

    def __repr__(self) -> str:
        factory = "higher_is_better" if self._higher_is_better else "lower_is_better"
        delta = f", min_delta={self._min_delta!r}" if self._min_delta else ""
        return f"{factory}({self._metric!r}{delta})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricComparator):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> Tuple[str, bool, float]:
        return (self._metric, self._higher_is_better, self._min_delta)


def lower_is_better(metric: str, min_delta: float = 0.0) -> MetricComparator:
    """A compare_fn for metrics where smaller is better, such as a loss.

    Args:
      metric: the eval metric to compare, e.g. `'loss'` or `'average_loss'`.
      min_delta: the least decrease that counts as an improvement.

    Returns:
      A callable usable as `compare_fn`.

    Raises:
      ValueError: if `metric` or `min_delta` is invalid.
    """
    return MetricComparator(metric, higher_is_better=False, min_delta=min_delta)


def higher_is_better(metric: str, min_delta: float = 0.0) -> MetricComparator:
    """A compare_fn for metrics where larger is better, such as accuracy or AUC.

    Args:
      metric: the eval metric to compare, e.g. `'accuracy'` or `'auc'`.
      min_delta: the least increase that counts as an improvement.

    Returns:
      A callable usable as `compare_fn`.

    Raises:
      ValueError: if `metric` or `min_delta` is invalid.
    """
    return MetricComparator(metric, higher_is_better=True, min_delta=min_delta)


#: The default compare_fn, as in `tf.estimator.BestExporter`: a smaller `loss`.
loss_smaller = lower_is_better("loss")


def _named_parameters(fn: Callable[..., Any]) -> Tuple[str, ...]:
    """The parameters a caller can pass by name, as the original exporter sees them.

    Like TensorFlow's `function_utils.fn_args`: for a `functools.partial`, the
    parameters it binds (positionally or by keyword) are left out; the `self` of
    a method or callable object is left out; `*args`, `**kwargs` and keyword-only
    parameters are not counted.
    """
    if isinstance(fn, functools.partial):
        remaining = _named_parameters(fn.func)[len(fn.args) :]
        return tuple(name for name in remaining if name not in (fn.keywords or {}))
    is_routine = inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn)
    if not is_routine:
        # A callable object: its bound __call__ drops `self`.
        fn = fn.__call__  # type: ignore[operator]
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return ()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in signature.parameters.values() if p.kind in positional)


def check_compare_fn(compare_fn: Any) -> None:
    """Raises if `compare_fn` cannot be called as the exporter calls it.

    The checks and their messages match `tf.estimator.BestExporter`'s.

    Args:
      compare_fn: the candidate compare function.

    Raises:
      ValueError: if `compare_fn` is None, not callable, or does not take exactly
        the parameters `best_eval_result` and `current_eval_result`.
    """
    if compare_fn is None:
        raise ValueError("`compare_fn` must not be None.")
    if not callable(compare_fn):
        raise ValueError(
            "`compare_fn` must be a callable taking `best_eval_result` and "
            f"`current_eval_result`. Received: compare_fn={compare_fn!r}"
        )
    parameters = set(_named_parameters(compare_fn))
    for required in _COMPARE_FN_PARAMETERS:
        if required not in parameters:
            raise ValueError(f"compare_fn ({compare_fn}) must include {required} argument.")
    unexpected = sorted(parameters - set(_COMPARE_FN_PARAMETERS))
    if unexpected:
        raise ValueError(
            f"compare_fn ({compare_fn}) has following not expected args: "
            f"{unexpected}. Bind them with functools.partial."
        )
