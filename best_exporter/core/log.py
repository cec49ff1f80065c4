"""The library's logger, and the one line per decision that both front-ends log.

The logger is a child of TensorFlow's logger, so that its lines appear where
Estimator users look for them (the absl/`tf.compat.v1.logging` output) and follow
`tf.compat.v1.logging.set_verbosity`, while staying filterable by name.

The functions below write the lines that explain a decision. `BestExporter` and
`BestExportCallback` both call them, so the two front-ends explain themselves in
the same words. `prefix` names the front-end and its export directory (e.g.
`BestExporter 'best_exporter'`); `when` names the evaluation (e.g. `step 600`).
"""

from typing import Any, Mapping, Optional

import tensorflow as tf

from best_exporter.core.decision import Best, Judge, Outcome, SkippedCause

logger = tf.get_logger().getChild("best_exporter")


def describe_best(judge: Judge, best: Optional[Best]) -> str:
    """The best result and where it came from, e.g. `loss 0.3 (step 9, this run)`."""
    if best is None:
        return "none"
    return f"{judge.describe(best.eval_result)} (step {best.step}, {best.source.value})"


def log_restored(prefix: str, judge: Judge, best: Optional[Best], disk_note: str) -> None:
    """Logs the result restored at a (re)start: the one a new model has to beat."""
    if best is None:
        logger.info(
            "%s: no earlier result to beat (%s); the first valid evaluation will be exported",
            prefix,
            disk_note,
        )
        return
    logger.info(
        "%s: restored the best result from %s: %s (step %s); %s",
        prefix,
        best.source.value,
        judge.describe(best.eval_result),
        best.step,
        disk_note,
    )


def log_not_exported(
    prefix: str,
    judge: Judge,
    outcome: Outcome,
    best: Optional[Best],
    eval_result: Mapping[str, Any],
    when: str,
) -> None:
    """Logs why an evaluation was not exported: invalid (a warning) or no improvement."""
    current = judge.describe(eval_result)
    if outcome is Outcome.INVALID:
        logger.warning(
            "%s: not exported %s: %s is not a finite number; such a result is never "
            "exported and never becomes the best (best remains %s)",
            prefix,
            when,
            current,
            describe_best(judge, best),
        )
        return
    logger.info(
        "%s: not exported %s: %s is no improvement over the best %s",
        prefix,
        when,
        current,
        describe_best(judge, best),
    )


def log_exported(
    prefix: str,
    judge: Judge,
    outcome: Outcome,
    previous: Optional[Best],
    eval_result: Mapping[str, Any],
    when: str,
    path: str,
) -> None:
    """Logs an export and why it was made."""
    if outcome is Outcome.FIRST:
        reason = "the first export, nothing to compare with"
    else:
        reason = f"improves on the best {describe_best(judge, previous)}"
    logger.info(
        "%s: exported %s: %s, %s -> %s", prefix, when, judge.describe(eval_result), reason, path
    )


def warn_export_failed(
    prefix: str,
    judge: Judge,
    best: Optional[Best],
    eval_result: Mapping[str, Any],
    when: str,
    what: str,
    cause: str,
) -> None:
    """Warns that a result that should have been exported was not, because exporting failed.

    Args:
      what: what was being exported, e.g. `checkpoint /m/model.ckpt-100`.
      cause: why it failed.
    """
    logger.warning(
        "%s: not exported %s: %s would have been exported, but exporting %s failed: %s. "
        "The best remains %s",
        prefix,
        when,
        judge.describe(eval_result),
        what,
        cause,
        describe_best(judge, best),
    )


def warn_skipped(prefix: str, cause: SkippedCause) -> None:
    """Warns once per cause about past results that compare_fn could not judge."""
    logger.warning(
        "%s: skipped %d earlier results that compare_fn could not judge, the first at "
        "step %s: %s: %s",
        prefix,
        cause.count,
        cause.first_step,
        type(cause.example).__name__,
        cause.example,
    )
