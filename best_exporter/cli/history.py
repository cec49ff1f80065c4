"""`best-exporter history`: every evaluation, which improved, and what became of its export.

Replays the eval event files (`history.evaluations`) through the rule of the
decision (`decision.decide`) and matches improvements to the exports on disk by
their records' steps (docs/design.md, "Seeing what the exporter did").
"""

import argparse
import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from best_exporter.cli.exports import check_directory, read_export_dir, served_version
from best_exporter.cli.output import (
    UsageError,
    format_number,
    jsonable,
    metric_columns,
    plural,
    render_table,
)
from best_exporter.core import compare, history, layout
from best_exporter.core.decision import Best, Judge, Source, decide
from best_exporter.core.records import ExportRecord

IMPROVED_MARK = "+"


def run_history(args: argparse.Namespace) -> int:
    """`best-exporter history`: prints every evaluation and what became of it."""
    model_dir = args.model_dir
    check_directory(model_dir, "a model_dir")
    # As the exporter reads them: glob characters in model_dir are taken literally.
    pattern = layout.event_file_glob(model_dir, args.pattern)
    try:
        paths = sorted(tf.io.gfile.glob(pattern))
    except (tf.errors.OpError, OSError) as e:
        raise UsageError(f"cannot list {pattern}: {type(e).__name__}: {e}") from None
    if not paths:
        raise UsageError(_no_events_message(model_dir, pattern))
    exports_by_step, export_dir, served, unmatched = _exports_of(args, model_dir)
    try:
        comparator = (
            compare.higher_is_better(args.higher_is_better, args.min_delta)
            if args.higher_is_better
            else compare.lower_is_better(args.metric, args.min_delta)
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = replay(history.evaluations(paths), comparator, exports_by_step, served)
    if args.json:
        report = dict(
            model_dir=model_dir,
            event_files=paths,
            metric=comparator.metric,
            higher_is_better=comparator.higher_is_better,
            export_dir=export_dir,
            evaluations=rows,
        )
        print(json.dumps(jsonable(report), indent=2, allow_nan=False))
        return 0
    lines = _history_lines(args, comparator, rows, export_dir, len(paths), pattern)
    if unmatched:
        lines.append(
            f"{plural(unmatched, 'export')} in {export_dir} without a readable record or "
            "a saved_model.pb cannot be matched to a step."
        )
    print("\n".join(lines))
    return 0


def replay(
    evaluations: Iterable[Tuple[int, Dict[str, float]]],
    comparator: compare.MetricComparator,
    exports_by_step: Mapping[int, ExportRecord],
    served: Optional[ExportRecord],
) -> List[Dict[str, Any]]:
    """Judges each evaluation against all before it, and finds what became of its export.

    Args:
      evaluations: `(step, metrics)` by increasing step.
      comparator: the compare function the exporter uses.
      exports_by_step: the complete exports on disk, by their records' step.
      served: the export TensorFlow Serving serves, if any.

    Returns:
      One row per evaluation, as `--json` shows it.
    """
    judge = Judge(comparator)
    best: Optional[Best] = None
    oldest_export_step = min(exports_by_step, default=None)
    rows = []
    for step, metrics in evaluations:
        result = {**metrics, "global_step": step}
        try:
            outcome = decide(judge, best, result)
        except ValueError:
            outcome = None  # The compared metric is missing at this step.
        improved = outcome is not None and outcome.exports
        export = exports_by_step.get(step)
        if improved and export is not None:
            export_state = "on disk"
        elif improved and oldest_export_step is not None and step < oldest_export_step:
            export_state = "pruned"
        elif improved:
            export_state = "not exported"
        else:
            export_state = None
        rows.append(
            dict(
                step=step,
                metrics=metrics,
                outcome=outcome.value if outcome else f"no {comparator.metric}",
                improved=improved,
                best_step=best.step if best else None,
                best_value=best.eval_result.get(comparator.metric) if best else None,
                export=export.path if export else None,
                served=export is not None and export is served,
                export_state=export_state,
            )
        )
        if improved:
            best = Best(result, Source.EVENTS)
    return rows


def _exports_of(
    args: argparse.Namespace, model_dir: str
) -> Tuple[Dict[int, ExportRecord], Optional[str], Optional[ExportRecord], int]:
    """The exports on disk by step, their dir, the served one, and how many have no step."""
    export_dir = args.export_dir or _only_export_dir(model_dir)
    if export_dir is None:
        return {}, None, None, 0
    exports, _, gone = read_export_dir(export_dir)
    exports = [e for e, g in zip(exports, gone) if not g]
    by_step: Dict[int, ExportRecord] = {}
    unmatched = 0
    for export in exports:
        step = (export.record or {}).get("global_step")
        if isinstance(step, int) and not isinstance(step, bool) and export.complete:
            by_step[step] = export
        else:
            unmatched += 1
    return by_step, export_dir, served_version(exports), unmatched


def _only_export_dir(model_dir: str) -> Optional[str]:
    parent = os.path.join(model_dir, "export")
    try:
        if not tf.io.gfile.isdir(parent):
            return None
        names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(parent))
    except (tf.errors.OpError, OSError) as e:
        raise UsageError(f"cannot list {parent}: {type(e).__name__}: {e}") from None
    dirs = [os.path.join(parent, n) for n in names if tf.io.gfile.isdir(os.path.join(parent, n))]
    if len(dirs) > 1:
        raise UsageError(
            f"{parent} holds {len(dirs)} export directories; choose one with --export-dir: "
            f"{', '.join(dirs)}"
        )
    return dirs[0] if dirs else None


def _no_events_message(model_dir: str, pattern: str) -> str:
    try:
        looks_like_export_dir = bool(layout.list_export_dir(model_dir).versions)
    except (tf.errors.OpError, OSError):
        looks_like_export_dir = False
    if looks_like_export_dir:
        return (
            f"{model_dir} holds exported versions, not event files: pass the model_dir, "
            "the directory above export/"
        )
    return f"no event files match {pattern}; pass the eval events with --pattern"


def _history_lines(
    args: argparse.Namespace,
    comparator: compare.MetricComparator,
    rows: Sequence[Dict[str, Any]],
    export_dir: Optional[str],
    files: int,
    pattern: str,
) -> List[str]:
    if not rows:
        return [f"No evaluations in {plural(files, 'event file')} matching {pattern}."]
    available = [m for row in rows for m in row["metrics"]]
    metrics, hidden = metric_columns(available, args.metrics, first=comparator.metric)
    header = ["", "step", *metrics, ""]
    table = []
    for row in rows:
        table.append(
            [
                IMPROVED_MARK if row["improved"] else "",
                str(row["step"]),
                *(format_number(row["metrics"].get(m)) for m in metrics),
                _history_note(row, comparator.metric, export_dir),
            ]
        )
    lines = render_table(header, table, [False, True, *[True] * len(metrics)])
    direction = "higher" if comparator.higher_is_better else "lower"
    improvements = sum(row["improved"] for row in rows)
    lines.append("")
    lines.append(
        f"{plural(len(rows), 'evaluation')} in {plural(files, 'event file')}, "
        f"{plural(improvements, 'improvement')}."
    )
    lines.append(
        f"{IMPROVED_MARK} = improved on all before it ({comparator.metric}, {direction} is "
        "better)."
    )
    if hidden:
        lines.append(
            f"{plural(hidden, 'more metric')} not shown: choose with --metrics NAME,... "
            "or see --json."
        )
    return lines


def _history_note(row: Mapping[str, Any], metric: str, export_dir: Optional[str]) -> str:
    served = ", served" if row["served"] else ""
    exported = f"exported: {os.path.basename(row['export'])}{served}" if row["export"] else ""
    if row["outcome"] == "invalid":
        return f"{metric} is not a finite number: never exported"
    if row["outcome"].startswith("no "):
        return f"no {metric} at this step: not judged"
    if not row["improved"]:
        best = f"not better than {format_number(row['best_value'])} (step {row['best_step']})"
        return best + (f"; {exported}" if exported else "")
    if row["export_state"] == "on disk":
        return exported
    if export_dir is None:
        return "no export dir found"
    if row["export_state"] == "pruned":
        return "pruned by retention (older than every export kept)"
    return "not on disk: the export failed or was not made (see the evaluator's log)"
