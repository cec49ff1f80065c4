"""`best-exporter list` and `best`: the versions of an export dir, and the served one.

Reads with the core (`layout`, `records`, `retention`); imported once TensorFlow
may load.
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from best_exporter.cli.output import (
    EXIT_NOTHING_TO_SERVE,
    PROG,
    UsageError,
    format_number,
    format_time,
    jsonable,
    metric_columns,
    plural,
    render_table,
    shorten,
)
from best_exporter.core import layout, records, retention
from best_exporter.core.records import ExportRecord

SERVED_MARK = "*"
# Errors of a record's content (it was read, but is not a valid record), as
# `records.ExportRecord.problem` names them; other problems are read failures.
_CONTENT_ERRORS = ("ValueError", "TypeError", "RecursionError", "JSONDecodeError")
_PROBLEM_WIDTH = 60


def record_problems(record: Mapping[str, Any]) -> List[str]:
    """What is wrong with a parsed record's fields, for the table; empty if nothing."""
    problems = []
    step = record.get("global_step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        problems.append(f"global_step {shorten(repr(step), 20)} is not an integer")
    exported_at = record.get("exported_at")
    if exported_at is not None and format_time(exported_at) == "?":
        problems.append(f"exported_at {shorten(repr(exported_at), 20)} is not a UTC time")
    return problems


def served_version(exports: Sequence[ExportRecord]) -> Optional[ExportRecord]:
    """The version TensorFlow Serving serves: the highest complete one, or None."""
    complete = [e for e in exports if e.complete]
    return max(complete, key=lambda e: e.version) if complete else None


def _is_read_failure(problem: Optional[str]) -> bool:
    return problem is not None and problem.split(":", 1)[0] not in _CONTENT_ERRORS


def _version_status(
    export: ExportRecord, served: Optional[ExportRecord], gone: bool
) -> Tuple[str, str]:
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
        notes.append(f"{kind}: {shorten(export.problem, _PROBLEM_WIDTH)}")
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


def version_row(export: ExportRecord, served: Optional[ExportRecord], gone: bool) -> Dict[str, Any]:
    """One version as `--json` shows it."""
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


def read_export_dir(export_dir: str) -> Tuple[List[ExportRecord], Dict[int, str], List[bool]]:
    """The versions of an export dir, its temp dirs, and which versions vanished meanwhile."""
    check_directory(export_dir, "an export directory")
    try:
        listing = layout.list_export_dir(export_dir)
    except (tf.errors.OpError, OSError) as e:
        raise UsageError(f"cannot list {export_dir}: {type(e).__name__}: {e}") from None
    if not listing.versions and not listing.temp_dirs:
        _hint_export_dirs(export_dir)
    exports, gone = [], []
    for version, path in sorted(listing.versions.items()):
        try:
            export = records.read_export(version, path, read_failures_as_problems=True)
            # Retention renames a version to temp-<version> before deleting it.
            vanished = (
                export.record is None and not export.complete and not tf.io.gfile.exists(path)
            )
        except (tf.errors.OpError, OSError) as e:
            raise UsageError(f"cannot read {path}: {type(e).__name__}: {e}") from None
        exports.append(export)
        gone.append(vanished)
    return exports, listing.temp_dirs, gone


def _hint_export_dirs(path: str) -> None:
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


def run_list(args: argparse.Namespace) -> int:
    """`best-exporter list`: prints the versions of an export dir."""
    exports, temp_dirs, gone = read_export_dir(args.export_dir)
    served = served_version(exports)
    rows = [version_row(e, served, g) for e, g in zip(exports, gone)]
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
    args: argparse.Namespace,
    exports: Sequence[ExportRecord],
    rows: Sequence[Dict[str, Any]],
    temps: list,
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
                SERVED_MARK if row["served"] else "",
                str(export.version),
                format_number((record or {}).get("global_step")),
                format_time((record or {}).get("exported_at")),
                *(format_number(values.get(m)) for m in metrics),
                row["note"],
            ]
        )
    lines = render_table(header, table, [False, False, True, False, *[True] * len(metrics)])
    served = sum(row["served"] for row in rows)
    lines.append("")
    lines.append(f"{plural(len(exports), 'version')} in {args.export_dir}, oldest first.")
    lines.append(
        f"{SERVED_MARK} = served by TensorFlow Serving: the highest complete version."
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


def run_best(args: argparse.Namespace) -> int:
    """`best-exporter best`: prints the path of the served version."""
    exports, _, gone = read_export_dir(args.export_dir)
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
        row = version_row(served, served, gone[exports.index(served)])
        print(json.dumps(row, indent=2, allow_nan=False))
    else:
        print(served.path)
    return 0


# Paths: what the user passed.


def check_directory(path: str, what: str) -> None:
    """Raises UsageError unless `path` is an existing directory on a known filesystem."""
    try:
        exists = tf.io.gfile.exists(path)
    except tf.errors.UnimplementedError:
        if not _load_tensorflow_io():
            raise UsageError(_unknown_scheme(path)) from None
        return check_directory(path, what)
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
