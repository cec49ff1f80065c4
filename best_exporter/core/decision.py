"""The rules of the decision, as pure functions over eval results.

No file is read here. `Judge` wraps a compare_fn with the rules of docs/design.md:
NaN and infinite results of the built-in compare functions never count, a
history entry the compare_fn cannot judge is skipped rather than fatal, and
`decide` says whether one evaluation is exported and why.
"""

import dataclasses
import enum
import math
from typing import Any, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple, Type

from best_exporter.core.compare import CompareFn, EvalResult, MetricComparator, numeric_value

# What a custom compare_fn may raise on an entry it cannot judge (a metric
# missing, a value of the wrong type): skipped in history, fatal for the current
# result. Anything else is a bug in the compare_fn and always propagates.
_UNJUDGEABLE = (KeyError, ValueError, TypeError)


class Source(enum.Enum):
    """Where a best result comes from."""

    EVENTS = "eval events"
    RECORDS = "export records"
    EVALUATION = "this run"


class Best(NamedTuple):
    """The result that a new model has to beat.

    A named tuple rather than a frozen dataclass: a restart may build one per
    evaluation of a long history, and a frozen dataclass takes four times as long
    to construct.

    Attributes:
      eval_result: its metrics, with `global_step` where known.
      source: where it was found.
      export_path: the version directory holding its model, if known.
    """

    eval_result: Mapping[str, Any]
    source: Source
    export_path: Optional[str] = None

    @property
    def step(self) -> Optional[int]:
        """The result's `global_step` as an int; None if it has none or an odd one."""
        step = self.eval_result.get("global_step")
        try:
            return int(step) if step is not None else None
        except (TypeError, ValueError, OverflowError):
            return None  # Only for log lines: an odd step must not raise there.


class Outcome(enum.Enum):
    """What `decide` concluded about one evaluation."""

    INVALID = "invalid"  # NaN or infinite: never exported, never the best.
    FIRST = "first"  # Nothing to compare against.
    IMPROVED = "improved"
    NOT_IMPROVED = "not improved"

    @property
    def exports(self) -> bool:
        return self in (Outcome.FIRST, Outcome.IMPROVED)


class Judge:
    """Applies a compare_fn the way the rules require.

    Args:
      compare_fn: a checked compare function (see `compare.check_compare_fn`).
    """

    def __init__(self, compare_fn: CompareFn):
        self._compare_fn = compare_fn
        self._comparator = compare_fn if isinstance(compare_fn, MetricComparator) else None

    @property
    def compare_fn(self) -> CompareFn:
        """The compare function, as the user passed it."""
        return self._compare_fn

    @property
    def metric(self) -> Optional[str]:
        """The compared metric, when the compare_fn is a built-in one."""
        return self._comparator.metric if self._comparator else None

    def improves(self, best: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
        """Calls the compare_fn, by keyword as the evaluator's exporter does."""
        return bool(self._compare_fn(best_eval_result=best, current_eval_result=current))

    def is_finite(self, eval_result: EvalResult) -> bool:
        """Whether a result may be exported and become the best.

        Raises:
          ValueError: if a built-in compare_fn's metric is missing: the user
            compares by a metric their evaluation does not produce.
        """
        if self._comparator is None:
            return True  # A custom compare_fn decides for itself.
        return math.isfinite(self._comparator.value(eval_result))

    def describe(self, eval_result: Optional[EvalResult]) -> str:
        """A short text of a result for log lines, e.g. `loss 0.3412`."""
        if eval_result is None:
            return "none"
        metric = self.metric or ("loss" if "loss" in eval_result else None)
        if metric is not None and metric in eval_result:
            return f"{metric} {_format_number(eval_result[metric])}"
        shown = {k: v for k, v in eval_result.items() if k != "global_step"}
        return ", ".join(f"{k} {_format_number(v)}" for k, v in sorted(shown.items())) or "{}"

    def best_of(
        self,
        candidates: Iterable[Best],
        unjudgeable: Tuple[Type[Exception], ...] = _UNJUDGEABLE,
    ) -> Tuple[Optional[Best], Dict[Type[BaseException], "SkippedCause"]]:
        """Finds the best of past results, skipping those that cannot be judged.

        A candidate is judgeable if it is finite (built-in compare functions) and
        the compare_fn can compare it with itself without raising one of
        `unjudgeable`.

        Args:
          candidates: past results, in the order ties are won.
          unjudgeable: what the compare_fn may raise on a candidate that is
            then skipped; KeyError, ValueError and TypeError by default.

        Returns:
          The best, or None if no candidate is judgeable; and per exception type
          the candidates skipped for it, so the caller warns once per cause.
        """
        if self._comparator is not None:
            return self._best_by_metric(self._comparator, candidates)
        best: Optional[Best] = None
        skipped: Dict[Type[BaseException], SkippedCause] = {}
        for candidate in candidates:
            try:
                if not self._is_judgeable(candidate.eval_result):
                    continue
                if best is None or self.improves(best.eval_result, candidate.eval_result):
                    best = candidate
            except unjudgeable as e:
                cause = skipped.setdefault(type(e), SkippedCause(e, candidate.step))
                cause.count += 1
        return best, skipped

    @staticmethod
    def _best_by_metric(
        comparator: MetricComparator, candidates: Iterable[Best]
    ) -> Tuple[Optional[Best], Dict[Type[BaseException], "SkippedCause"]]:
        """`best_of` for a built-in compare_fn: the same result, one metric read per candidate.

        A long eval history streams through here (history.py), so each
        candidate's metric is read once rather than on every comparison.
        """
        best: Optional[Best] = None
        best_value = math.nan
        skipped: Dict[Type[BaseException], SkippedCause] = {}
        for candidate in candidates:
            try:
                value = comparator.value(candidate.eval_result)
            except ValueError as e:
                cause = skipped.setdefault(ValueError, SkippedCause(e, candidate.step))
                cause.count += 1
                continue
            if math.isfinite(value) and (best is None or comparator.improves(best_value, value)):
                best, best_value = candidate, value
        return best, skipped

    def check(self, eval_result: Mapping[str, Any]) -> None:
        """Raises what the compare_fn raises on `eval_result`, if anything.

        A result is compared with itself, so that a compare_fn that cannot judge
        the results of this evaluation fails on the first one, not the second.
        """
        if self._comparator is not None:
            self._comparator.value(eval_result)
        else:
            self.improves(eval_result, eval_result)

    def _is_judgeable(self, eval_result: Mapping[str, Any]) -> bool:
        self.check(eval_result)
        return self.is_finite(eval_result)


@dataclasses.dataclass
class SkippedCause:
    """Past results skipped for one kind of error.

    Attributes:
      example: the first error of this kind.
      first_step: the step of the first result skipped for it.
      count: how many results were skipped for it.
    """

    example: BaseException
    first_step: Optional[int]
    count: int = 0


def decide(judge: Judge, best: Optional[Best], current: EvalResult) -> Outcome:
    """Decides whether the current evaluation is exported.

    Args:
      judge: the compare_fn's judge.
      best: the result to beat, if any.
      current: the current eval result.

    Returns:
      The outcome; `outcome.exports` tells whether to export.

    Raises:
      ValueError: if a built-in compare_fn's metric is missing from `current`.
      Exception: whatever a custom compare_fn raises on `current`.
    """
    if not judge.is_finite(current):
        return Outcome.INVALID
    if best is None:
        judge.check(current)
        return Outcome.FIRST
    if judge.improves(best.eval_result, current):
        return Outcome.IMPROVED
    return Outcome.NOT_IMPROVED


def _format_number(value: Any) -> str:
    number = numeric_value(value)
    if number is not None and not isinstance(value, int):
        return f"{number:.6g}"
    if isinstance(value, int) and abs(value) < 10**15:
        return str(value)
    if number is not None:
        return f"{number:.6g}"  # An int too long to read, such as 10**400.
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:40] + "..."
