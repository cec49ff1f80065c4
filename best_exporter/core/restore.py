"""Restoring the result a new model has to beat from the exports on disk.

Framework-neutral: any front-end (the Estimator exporter, a Keras callback) calls
`restore` on its first evaluation for an export directory. The rules are those of
docs/design.md, rule 5 and rule 8:

* The best is the best *complete* export on disk (one with `saved_model.pb` or
  `.pbtxt`), valued by its record; exports without a usable record (written by
  `tf.estimator.BestExporter`, or with an invalid record) are valued by the eval
  event history before the current step.
* "Could not look" is not "nothing there": if the export directory cannot be
  listed or a record cannot be read, `restore` retries with a short backoff and
  then raises `CannotRestoreError`, so that the caller neither exports nor prunes
  on that view and tries again at its next evaluation.
* When the best is known only from the history, the versions without records
  cannot be matched to results (the original exporter may have left a worse model
  newest, tensorflow/tensorflow#47396); they are all protected until a new export
  beats the restored best.
"""

import dataclasses
import itertools
import time
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    Type,
    Union,
)

import tensorflow as tf

from best_exporter.core import layout, publish, records
from best_exporter.core.decision import Best, Judge, SkippedCause, Source
from best_exporter.core.history import HistoryScan
from best_exporter.core.log import logger


class HistoryCandidates:
    """The history's results before the current step, as candidates, counted as they stream.

    The evaluator writes the current result before calling export(): it must not
    be held against itself, so results at or after its step are left out.

    Args:
      scan: the event files to read, or None when there is no pattern.
      current_step: the step of the current evaluation, if known.
    """

    def __init__(self, scan: Optional[HistoryScan], current_step: Optional[int]):
        self._scan = scan
        self._current_step = current_step
        self.count = 0

    def __iter__(self) -> Iterator[Best]:
        if self._scan is None:
            return
        before = self._current_step
        for evaluation in self._scan:
            if before is None or evaluation.step < before:
                self.count += 1
                yield Best(evaluation, Source.EVENTS)

    @property
    def note(self) -> str:
        """What was read, for the restore log line; complete once iterated."""
        if self._scan is None:
            return "nothing (event_file_pattern is None)"
        return f"{self.count} earlier results in {self._scan.files_read} event files"


# Streams the eval results before a step from the event history; raises
# tf.errors.OpError or OSError if the event files cannot be listed.
HistoryReader = Callable[[Optional[int]], HistoryCandidates]

#: Seconds to wait before each retry of a listing or read that failed. Remote
#: filesystems retry inside TensorFlow already; these only bridge a short outage
#: and keep the evaluator waiting for at most half a second.
RETRY_DELAYS = (0.1, 0.4)


class CannotRestoreError(Exception):
    """The exports on disk could not be listed or their records read.

    Attributes:
      export_path: the export directory.
      cause: the last filesystem error.
      attempts: how many times it was tried.
    """

    def __init__(self, export_path: str, cause: BaseException, attempts: int):
        super().__init__(
            f"cannot read the exports under {export_path} after {attempts} attempts: "
            f"{type(cause).__name__}: {cause}"
        )
        self.export_path = export_path
        self.cause = cause
        self.attempts = attempts


@dataclasses.dataclass(frozen=True)
class Restored:
    """What the exports on disk say a new model has to beat.

    Attributes:
      best: the best result, or None if there is nothing to beat.
      best_export_path: the version directory holding the best model, when it
        is known (None when the best is known only from the history).
      unmatched: versions whose worth relative to the best is unknown; they are
        never pruned until a new export beats `best`.
      note: where the best was looked for, for the log line.
      skipped: the past results the compare_fn could not judge, per error type.
    """

    best: Optional[Best]
    best_export_path: Optional[str]
    unmatched: FrozenSet[int]
    note: str
    skipped: Dict[Type[BaseException], SkippedCause]


def restore(
    judge: Judge,
    export_path: Union[str, bytes],
    history: HistoryReader,
    current_step: Optional[int],
    retry_delays: Sequence[float] = RETRY_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
    extra: Sequence[Best] = (),
    translate: Optional[Callable[[Mapping[str, Any]], Mapping[str, Any]]] = None,
    remove_unfinished: bool = True,
) -> Restored:
    """Finds the result a new model has to beat: the best of the models on disk.

    Records value the exports this library wrote. Complete exports without a
    usable record are valued by `history` before `current_step`, as the original
    values them. The history is not consulted otherwise: a result in it whose
    export failed or was killed has no model on disk, and holding it against new
    models would keep serving a worse one. Versions without `saved_model.pb`
    are never the best (TensorFlow Serving cannot load them).

    A compare_fn that raises on a restored result (whatever it raises) skips
    that result: a restart must not crash-loop on a result the compare_fn
    judged fine while the run was live.

    Args:
      judge: the compare_fn's judge.
      export_path: the exporter's export directory.
      history: reads the eval history before a step; raises
        `tf.errors.OpError` or `OSError` if the event files cannot be listed.
      current_step: the step of the evaluation being judged, or None.
      retry_delays: seconds to wait before each retry of a failed look.
      sleep: waits that many seconds; tests pass a fake.
      extra: results known besides the disk (a best that a subclass of the
        original assigned), judged last: they win no ties.
      translate: applied to each record's eval_result before it is judged,
        e.g. the Keras front-end's `metric_names` (`loss` read as `val_loss`).
      remove_unfinished: whether to remove what killed publishes left once the
        directory was read. Only the process that publishes may: another one
        would delete a publish in progress (a non-chief worker of a cluster).

    Returns:
      The restored best and what to protect.

    Raises:
      CannotRestoreError: if the exports cannot be listed, their records read,
        or (when needed) the event files listed, on every attempt.
    """
    path = layout.as_path(export_path)
    delays = list(retry_delays)
    for attempt in range(1, len(delays) + 2):
        try:
            restored = _restore_once(judge, path, history, current_step, extra, translate)
        except (tf.errors.OpError, OSError) as e:
            if attempt > len(delays):
                raise CannotRestoreError(path, e, attempt) from e
            logger.debug("Restoring from %s failed (attempt %d), retrying: %s", path, attempt, e)
            sleep(delays[attempt - 1])
            continue
        # What killed publishes left (a version with our record but no model,
        # never counted above) goes once the directory could be read whole.
        if remove_unfinished:
            publish.remove_unfinished(path)
        return restored
    raise AssertionError("unreachable")  # pragma: no cover


def _restore_once(
    judge: Judge,
    path: str,
    history: HistoryReader,
    current_step: Optional[int],
    extra: Sequence[Best],
    translate: Optional[Callable[[Mapping[str, Any]], Mapping[str, Any]]] = None,
    remove_unfinished: bool = True,
) -> Restored:
    exports = records.read_export_records(path)
    complete = [e for e in exports if e.complete]
    results = [(e, e.eval_result) for e in complete]
    unrecorded = [e for e, result in results if result is None]
    # Records first: on a tie the best is the one whose export is known.
    candidates = [
        Best(translate(result) if translate else result, Source.RECORDS, e.path)
        for e, result in results
        if result is not None
    ]
    note = f"{len(exports)} exports on disk under {path}"
    incomplete = len(exports) - len(complete)
    if incomplete:
        note += f", {incomplete} of them without a SavedModel, not counted"
    earlier = history(current_step) if unrecorded else None
    best, skipped = judge.best_of(
        itertools.chain(candidates, earlier or (), extra), unjudgeable=(Exception,)
    )
    if earlier is not None:
        note += f", {len(unrecorded)} without records, valued by {earlier.note}"
    if best is not None and best.source is Source.EVENTS:
        # Decoded once, and the events behind it released.
        best = best._replace(eval_result=dict(best.eval_result))
    if best is not None and best.export_path is not None:
        return Restored(best, best.export_path, frozenset(), note, skipped)
    # The best's model cannot be told apart among the versions (or nothing
    # could be judged): keep every complete version until a new export beats it.
    unmatched = frozenset(e.version for e in complete)
    if unmatched:
        note += f"; {len(unmatched)} versions kept until a new export beats the best"
    return Restored(best, None, unmatched, note, skipped)
