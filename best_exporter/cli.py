"""The `best-exporter` command: which model is served, why, and how the best evolved.

    best-exporter list MODEL_DIR/export/best_exporter     every version; the served one marked
    best-exporter best MODEL_DIR/export/best_exporter     the path TensorFlow Serving serves
    best-exporter history MODEL_DIR                       every evaluation; improvements and
                                                          what became of their exports

Each subcommand takes `--json`. Exit status: 0 on success, 1 when `best` finds
nothing to serve, 2 for a bad argument (a missing path, a file, an unknown
scheme) or an unreadable record, with a one-line message on stderr.

TensorFlow is imported only once a subcommand runs, so `--help` and `--version`
are instant; its C++ log lines are silenced unless `-v` is given.
"""

import argparse
import json
import logging
import math
import os
import posixpath
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from best_exporter.version import __version__

PROG = "best-exporter"
EXIT_NOTHING_TO_SERVE = 1
EXIT_USAGE = 2
DEFAULT_METRIC_COLUMNS = 3
# Shown first by default, when present: what Estimator's heads report and people compare by.
_USUAL_METRICS = ("loss", "accuracy", "auc", "auc_precision_recall", "average_loss")
_SERVED_MARK = "*"
_IMPROVED_MARK = "+"
# Errors of a record's content (it was read, but is not a valid record), as
# `records.ExportRecord.problem` names them; other problems are read failures.
_CONTENT_ERRORS = ("ValueError", "TypeError", "RecursionError", "JSONDecodeError")
_PROBLEM_WIDTH = 60


class UsageError(Exception):
    """A bad argument or an unreadable input: one line on stderr, exit status 2."""


# ----------------------------------------------------------------------------
# Formatting: pure functions over plain values.


def plural(count: int, noun: str) -> str:
    """`1 export`, `2 exports`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_number(value: Any) -> str:
    """A metric or step for a table cell; never raises, whatever the record holds."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.5g}"
    return _shorten(repr(value), 12)


def jsonable(value: Any) -> Any:
    """A copy of `value` that strict JSON holds: NaN and infinities, anywhere, as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]
) -> List[str]:
    """Lines of a table sized to its content; the last column is free text."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, right_aligned)
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def metric_columns(
    available: Iterable[str], requested: Optional[Sequence[str]], first: Optional[str]
) -> Tuple[List[str], int]:
    """The metrics to show as columns, and how many available ones are hidden.

    Args:
      available: the metric names found.
      requested: the names the user asked for with `--metrics`, if any.
      first: the metric to show first by default (the compared one, or loss);
        then the usual metrics (accuracy, auc, ...), then the others by name.

    Raises:
      UsageError: if a requested metric is not among those found.
    """
    names = sorted(set(available), key=lambda n: (n not in _USUAL_METRICS, _usual_rank(n), n))
    if requested:
        unknown = [name for name in requested if name not in names]
        if unknown and names:
            raise UsageError(
                f"--metrics {','.join(unknown)}: not found; the metrics are {', '.join(names)}"
            )
        return list(requested), 0
    if first in names:
        names.remove(first)
        names.insert(0, first)
    shown = names[:DEFAULT_METRIC_COLUMNS]
    return shown, len(names) - len(shown)


def _usual_rank(name: str) -> int:
    return _USUAL_METRICS.index(name) if name in _USUAL_METRICS else 0


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _format_time(value: Any) -> str:
    # Records write "2026-11-25T12:00:00Z".
    if isinstance(value, str) and len(value) == 20 and value[10] == "T" and value[-1] == "Z":
        return f"{value[:10]} {value[11:19]}"
    return "-" if value is None else "?"


# ----------------------------------------------------------------------------
# Export dirs: `list` and `best`.


def record_problems(record: Mapping[str, Any]) -> List[str]:
    """What is wrong with a parsed record's fields, for the table; empty if nothing."""
    problems = []
    step = record.get("global_step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        problems.append(f"global_step {_shorten(repr(step), 20)} is not an integer")
    exported_at = record.get("exported_at")
    if exported_at is not None and _format_time(exported_at) == "?":
        problems.append(f"exported_at {_shorten(repr(exported_at), 20)} is not a UTC time")
    return problems


def served_version(exports: Sequence[Any]) -> Optional[Any]:
    """The version TensorFlow Serving serves: the highest complete one, or None."""
    complete = [e for e in exports if e.complete]
    return max(complete, key=lambda e: e.version) if complete else None


def _is_read_failure(problem: Optional[str]) -> bool:
    return bool(problem) and problem.split(":", 1)[0] not in _CONTENT_ERRORS


def _version_status(export: Any, served: Optional[Any], gone: bool) -> Tuple[str, str]:
    """A short state name for --json and the text of the table's last column."""
    if gone:
        return "deleted", "being deleted by retention (renamed to temp-*)"
    notes = []
    if served is not None and export.version == served.version:
        notes.append("served")
    if not export.complete:
        notes.append("incomplete: no saved_model.pb")
    if export.problem:
        kind = "unreadable record" if _is_read_failure(export.problem) else "invalid record"
        notes.append(f"{kind}: {_shorten(export.problem, _PROBLEM_WIDTH)}")
        state = kind
    elif export.record is None:
        notes.append("no record (not written by best_exporter)")
        state = "no record"
    elif record_problems(export.record):
        notes.append(f"invalid record: {'; '.join(record_problems(export.record))}")
        state = "invalid record"
    else:
        state = "ok"
    if not export.complete:
        state = "incomplete"
    return state, "; ".join(notes)


def _version_row(export: Any, served: Optional[Any], gone: bool) -> Dict[str, Any]:
    state, note = _version_status(export, served, gone)
    return dict(
        version=export.version,
        path=export.path,
        served=served is not None and export.version == served.version,
        complete=export.complete,
        state=state,
        note=note,
        problem=export.problem,
        record=jsonable(export.record) if export.record is not None else None,
    )


def _read_export_dir(tf: Any, export_dir: str) -> Tuple[List[Any], Dict[int, str], List[bool]]:
    """The versions of an export dir, its temp dirs, and which versions vanished meanwhile."""
    from best_exporter import layout, records

    _check_directory(tf, export_dir, "an export directory")
    try:
        listing = layout.list_export_dir(export_dir)
    except (tf.errors.OpError, OSError) as e:
        raise UsageError(f"cannot list {export_dir}: {type(e).__name__}: {e}") from None
    if not listing.versions and not listing.temp_dirs:
        _hint_export_dirs(tf, export_dir)
    exports, gone = [], []
    for version, path in sorted(listing.versions.items()):
        try:
            export = records.read_export(version, path)
            # Retention renames a version to temp-<version> before deleting it.
            vanished = (
                export.record is None and not export.complete and not tf.io.gfile.exists(path)
            )
        except (tf.errors.OpError, OSError) as e:
            raise UsageError(f"cannot read {path}: {type(e).__name__}: {e}") from None
        exports.append(export)
        gone.append(vanished)
    return exports, listing.temp_dirs, gone


def _hint_export_dirs(tf: Any, path: str) -> None:
    """Raises with the export dirs below `path` if it is a model_dir or its `export/`."""
    candidates = []
    is_export_parent = os.path.basename(path.rstrip("/")) == "export"
    for parent in (os.path.join(path, "export"), path):
        try:
            if not tf.io.gfile.isdir(parent):
                continue
            names = tf.io.gfile.listdir(parent)
        except (tf.errors.OpError, OSError):
            continue
        for name in sorted(names):
            child = os.path.join(parent, name.rstrip("/"))
            if parent == path and not is_export_parent:
                continue  # Only export/<name> dirs of a model_dir are exporters' dirs.
            if tf.io.gfile.isdir(child):
                candidates.append(child)
    if candidates:
        raise UsageError(
            f"{path} holds no exported versions; it looks like a model_dir"
            f"{'/export' if is_export_parent else ''}. Pass an exporter's directory: "
            f"{', '.join(candidates)}"
        )


def _list(args: argparse.Namespace, tf: Any) -> int:
    from best_exporter import retention

    exports, temp_dirs, gone = _read_export_dir(tf, args.export_dir)
    served = served_version(exports)
    rows = [_version_row(e, served, g) for e, g in zip(exports, gone)]
    newest = max((e.version for e in exports), default=None)
    stale = set(retention.stale_temp_dirs(temp_dirs, newest))
    temps = [
        dict(
            path=path,
            state=(
                "being deleted or left by an interrupted export"
                if timestamp in stale
                else "an export being written"
            ),
        )
        for timestamp, path in sorted(temp_dirs.items())
    ]
    unreadable = [row for row in rows if row["state"] == "unreadable record"]
    if args.json:
        print(
            json.dumps(
                dict(
                    export_dir=args.export_dir,
                    served=served.path if served else None,
                    versions=rows,
                    temp_dirs=temps,
                ),
                indent=2,
                allow_nan=False,
            )
        )
    else:
        print("\n".join(_list_lines(args, exports, rows, temps)))
    if unreadable:
        raise UsageError(
            f"{plural(len(unreadable), 'record')} could not be read, the first in "
            f"{unreadable[0]['path']}: {unreadable[0]['problem']}"
        )
    return 0


def _list_lines(
    args: argparse.Namespace, exports: Sequence[Any], rows: Sequence[Dict[str, Any]], temps: list
) -> List[str]:
    if not exports:
        return [f"No exports in {args.export_dir} yet."] + [
            f"{t['path']}: {t['state']}" for t in temps
        ]
    available = [m for e in exports if e.record for m in e.record.get("metrics", {})]
    metrics, hidden = metric_columns(available, args.metrics, first="loss")
    header = ["", "version", "step", "exported (UTC)", *metrics, ""]
    table = []
    for export, row in zip(exports, rows):
        record = export.record if row["state"] != "invalid record" else None
        values = (record or {}).get("metrics", {})
        table.append(
            [
                _SERVED_MARK if row["served"] else "",
                str(export.version),
                format_number((record or {}).get("global_step")),
                _format_time((record or {}).get("exported_at")),
                *(format_number(values.get(m)) for m in metrics),
                row["note"],
            ]
        )
    lines = render_table(header, table, [False, False, True, False, *[True] * len(metrics)])
    served = sum(row["served"] for row in rows)
    lines.append("")
    lines.append(f"{plural(len(exports), 'version')} in {args.export_dir}, oldest first.")
    lines.append(
        f"{_SERVED_MARK} = served by TensorFlow Serving: the highest complete version."
        if served
        else "None is complete: TensorFlow Serving has nothing to serve."
    )
    if hidden:
        lines.append(
            f"{plural(hidden, 'more metric')} not shown: choose with --metrics NAME,... "
            "or see --json."
        )
    lines.extend(f"{t['path']}: {t['state']}" for t in temps)
    return lines


def _best(args: argparse.Namespace, tf: Any) -> int:
    exports, _, gone = _read_export_dir(tf, args.export_dir)
    served = served_version(exports)
    if served is None:
        kept = plural(len(exports), "version")
        print(
            f"{PROG}: no complete version in {args.export_dir} ({kept}, none with a "
            "saved_model.pb): TensorFlow Serving has nothing to serve",
            file=sys.stderr,
        )
        return EXIT_NOTHING_TO_SERVE
    if args.json:
        row = _version_row(served, served, gone[exports.index(served)])
        print(json.dumps(row, indent=2, allow_nan=False))
    else:
        print(served.path)
    return 0


# ----------------------------------------------------------------------------
# The eval history: `history`.


def _history(args: argparse.Namespace, tf: Any) -> int:
    from best_exporter import compare, history
    from best_exporter.decision import Best, Judge, Source, decide

    model_dir = args.model_dir
    _check_directory(tf, model_dir, "a model_dir")
    pattern = args.pattern
    if not (posixpath.isabs(pattern) or "://" in pattern):
        pattern = os.path.join(model_dir, pattern)
    try:
        paths = sorted(tf.io.gfile.glob(pattern))
    except (tf.errors.OpError, OSError) as e:
        raise UsageError(f"cannot list {pattern}: {type(e).__name__}: {e}") from None
    if not paths:
        raise UsageError(_no_events_message(tf, model_dir, pattern))
    exports_by_step, export_dir, served, unmatched = _exports_of(tf, args, model_dir)
    comparator = (
        compare.higher_is_better(args.higher_is_better)
        if args.higher_is_better
        else compare.lower_is_better(args.metric)
    )
    judge = Judge(comparator)
    best: Optional[Any] = None
    oldest_export_step = min(exports_by_step, default=None)
    rows = []
    for step, metrics in history.evaluations(paths):
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
            f"{plural(unmatched, 'export')} in {export_dir} without a readable record "
            "(written by the original exporter?) cannot be matched to a step."
        )
    print("\n".join(lines))
    return 0


def _exports_of(
    tf: Any, args: argparse.Namespace, model_dir: str
) -> Tuple[Dict[int, Any], Optional[str], Optional[Any], int]:
    """The exports on disk by step, their dir, the served one, and how many have no step."""
    export_dir = args.export_dir or _only_export_dir(tf, model_dir)
    if export_dir is None:
        return {}, None, None, 0
    exports, _, gone = _read_export_dir(tf, export_dir)
    exports = [e for e, g in zip(exports, gone) if not g]
    by_step: Dict[int, Any] = {}
    unmatched = 0
    for export in exports:
        step = (export.record or {}).get("global_step")
        if isinstance(step, int) and not isinstance(step, bool) and export.complete:
            by_step[step] = export
        else:
            unmatched += 1
    return by_step, export_dir, served_version(exports), unmatched


def _only_export_dir(tf: Any, model_dir: str) -> Optional[str]:
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


def _no_events_message(tf: Any, model_dir: str, pattern: str) -> str:
    from best_exporter import layout

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
    comparator: Any,
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
                _IMPROVED_MARK if row["improved"] else "",
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
        f"{_IMPROVED_MARK} = improved on all before it ({comparator.metric}, {direction} is "
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


# ----------------------------------------------------------------------------
# Arguments, TensorFlow and errors.


def _check_directory(tf: Any, path: str, what: str) -> None:
    """Raises UsageError unless `path` is an existing directory on a known filesystem."""
    try:
        exists = tf.io.gfile.exists(path)
    except tf.errors.UnimplementedError:
        if not _load_tensorflow_io():
            raise UsageError(_unknown_scheme(path)) from None
        return _check_directory(tf, path, what)
    except (tf.errors.OpError, OSError) as e:
        raise UsageError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    if not exists:
        raise UsageError(f"{path} does not exist; expected {what}")
    if not tf.io.gfile.isdir(path):
        raise UsageError(f"{path} is a file; expected {what}")


def _unknown_scheme(path: str) -> str:
    scheme = path.split("://", 1)[0]
    return (
        f"{path}: TensorFlow has no filesystem for {scheme}://. gs:// and local paths are "
        "built in; s3://, hdfs:// and az:// need `pip install tensorflow-io`"
    )


def _load_tensorflow_io() -> bool:
    """Imports tensorflow-io, which registers more filesystems, if it is installed and new."""
    if "tensorflow_io" in sys.modules:
        return False
    try:
        import tensorflow_io  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return False
    return True


def _load_tensorflow(verbose: bool) -> Any:
    """Imports TensorFlow, quietly unless `verbose`."""
    if not verbose:
        # C++ log lines at import (CUDA, oneDNN, TensorRT) say nothing about exports.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from best_exporter import _compat  # noqa: F401  Clear ImportError on TensorFlow >= 2.16.

    # Warnings about unreadable records are shown in the table instead.
    level = logging.DEBUG if verbose else logging.ERROR
    tf.get_logger().setLevel(level)
    return tf


def _metric_list(text: str) -> List[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected metric names like loss,auc; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="See what best_exporter did: which model is served and why, and how the "
        "best evolved. Design: docs/design.md in the repository.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show TensorFlow's and the library's logs"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show TensorFlow's and the library's logs",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    list_parser = commands.add_parser(
        "list",
        parents=[common],
        help="every version of an export dir, oldest first; the served one marked",
        description="List the versions of an export directory, oldest first, with the step "
        "and metrics of each record. The version TensorFlow Serving serves (the highest "
        "complete one) is marked; missing and invalid records are named.",
    )
    list_parser.add_argument(
        "export_dir", help="an exporter's export directory, MODEL_DIR/export/NAME"
    )
    list_parser.add_argument(
        "--metrics",
        type=_metric_list,
        help="comma-separated metrics to show, e.g. loss,auc (default: loss and 2 more)",
    )
    list_parser.set_defaults(run=_list)

    best_parser = commands.add_parser(
        "best",
        parents=[common],
        help="the path of the version TensorFlow Serving serves",
        description="Print the path of the version TensorFlow Serving serves: the highest "
        "complete version. Exits 1 if there is none.",
    )
    best_parser.add_argument(
        "export_dir", help="an exporter's export directory, MODEL_DIR/export/NAME"
    )
    best_parser.set_defaults(run=_best)

    history_parser = commands.add_parser(
        "history",
        parents=[common],
        help="every evaluation; which improved on all before it and what became of its export",
        description="List every evaluation in the eval event files with its step and metrics, "
        "mark each that improved on all before it, and say whether its export is on disk, "
        "was pruned, or was never made.",
    )
    history_parser.add_argument("model_dir", help="the Estimator's model_dir")
    history_parser.add_argument(
        "--pattern",
        default="eval/*.tfevents.*",
        help="glob of the eval event files, relative to MODEL_DIR unless absolute "
        "(default: %(default)s)",
    )
    direction = history_parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--metric",
        default="loss",
        help="compare by this metric, lower is better (default: %(default)s)",
    )
    direction.add_argument(
        "--higher-is-better", metavar="METRIC", help="compare by METRIC, higher is better"
    )
    history_parser.add_argument(
        "--export-dir",
        help="the exporter's export directory (default: the only one in MODEL_DIR/export)",
    )
    history_parser.add_argument(
        "--metrics",
        type=_metric_list,
        help="comma-separated metrics to show (default: the compared metric and 2 more)",
    )
    history_parser.set_defaults(run=_history)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command.

    Args:
      argv: the arguments after the program name; `sys.argv[1:]` if None.

    Returns:
      The exit status: 0, 1 when `best` finds nothing to serve, 2 for a bad
      argument or an unreadable record.
    """
    args = build_parser().parse_args(argv)
    try:
        tf = _load_tensorflow(args.verbose)
        return args.run(args, tf)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `best-exporter list ... | head`: the reader has all it wanted.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
