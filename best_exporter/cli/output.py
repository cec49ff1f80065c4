"""What the `best-exporter` command prints: pure functions over plain values.

Tables sized to their content, numbers that never fail to format whatever a
record holds, strict JSON, plurals, and `UsageError`, the one-line message for
a bad argument.
"""

import math
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

PROG = "best-exporter"
EXIT_NOTHING_TO_SERVE = 1
EXIT_USAGE = 2
DEFAULT_METRIC_COLUMNS = 3
# Shown first by default, when present: what Estimator's heads report and people compare by.
_USUAL_METRICS = ("loss", "accuracy", "auc", "auc_precision_recall", "average_loss")


class UsageError(Exception):
    """A bad argument or an unreadable input: one line on stderr, exit status 2."""


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
    return shorten(repr(value), 12)


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


def shorten(text: str, width: int) -> str:
    """`text`, cut to `width` characters with an ellipsis if longer."""
    return text if len(text) <= width else text[: width - 3] + "..."


def format_time(value: Any) -> str:
    """A record's `exported_at` ("2026-11-25T12:00:00Z") as "2026-11-25 12:00:00"; never raises."""
    if isinstance(value, str) and len(value) == 20 and value[10] == "T" and value[-1] == "Z":
        return f"{value[:10]} {value[11:19]}"
    return "-" if value is None else "?"
