"""Per-export records: what each exported model scored, kept beside the model.

Every export carries `assets.extra/eval_result.json`. It lets a restarted
exporter know what the models on disk are worth without trusting event files,
and lets a person (or a deployment script) see why a version exists:

```json
{"global_step": 1200, "metrics": {"loss": 0.31, "accuracy": 0.9},
 "checkpoint_path": "/model/model.ckpt-1200", "exporter": "best_exporter",
 "exported_at": "2026-11-25T12:00:00Z", "best_exporter_version": "0.1.0"}
```

The record is handed to the estimator as an `assets_extra` entry, so it is
copied into the `temp-<timestamp>` directory before that is renamed to the
version: no reader ever sees a version without its record.
"""

import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import math
import numbers
import uuid
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import numpy as np
import tensorflow as tf

from best_exporter.core import layout
from best_exporter.core.compare import numeric_value
from best_exporter.core.log import logger
from best_exporter.version import __version__

# Records wait here until the estimator copies them into the export. TensorFlow's
# in-memory filesystem is private to the process and vanishes with it, so a
# killed export leaves nothing behind on any real filesystem.
_STAGING_ROOT = "ram://best_exporter-staging"

# Record reads in flight at once when a restart reads the records of the exports:
# enough to hide object-store latency, few enough not to be throttled.
MAX_CONCURRENT_READS = 16
# On local disk (and ram://), reads one at a time: see `reads_in_flight`.
LOCAL_READS_IN_FLIGHT = 1

_Item = TypeVar("_Item")
_Read = TypeVar("_Read")

# JSON has no NaN or infinity; they are written as these strings.
_NON_FINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# The fields of a record besides `metrics` and `global_step`: a str or null each.
_STRING_FIELDS = ("checkpoint_path", "exporter", "exported_at", "best_exporter_version")


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    """One version directory of an export base directory and its record.

    Attributes:
      version: the 10-digit version number.
      path: the version directory.
      record: the parsed and validated `eval_result.json`, or None for a version
        without one (written by `tf.estimator.BestExporter`) or with an invalid
        one (see `problem`).
      complete: whether the version holds a SavedModel (`saved_model.pb` or
        `saved_model.pbtxt`), which TensorFlow Serving can load.
      problem: why the version's record exists but cannot be used (not JSON,
        not a record, a field of the wrong type), or None when the record is
        fine or absent. A record that could not be *read* is never a problem:
        reading raises instead.
    """

    version: int
    path: str
    record: Optional[Dict[str, Any]]
    complete: bool = True
    problem: Optional[str] = None

    @property
    def eval_result(self) -> Optional[Dict[str, Any]]:
        """The recorded metrics plus `global_step`, as `Estimator.evaluate` gives them.

        Metrics are `np.float64` and the step `np.int64`, so that a compare_fn
        that calls numpy methods (`.item()`) works on restored results as on
        fresh ones.
        """
        if self.record is None:
            return None
        result: Dict[str, Any] = {
            key: np.float64(value) for key, value in self.record.get("metrics", {}).items()
        }
        if self.record.get("global_step") is not None:
            result["global_step"] = np.int64(self.record["global_step"])
        return result


def numeric_metrics(eval_result: Mapping[str, Any]) -> Dict[str, float]:
    """The metrics of an eval result that are single numbers, as floats.

    Args:
      eval_result: the dict `Estimator.evaluate` returned.

    Returns:
      Each number of any kind (Python, numpy, `Decimal`, scalar tensors,
      one-element arrays) as a float; `global_step` and what is not a number
      (serialized summaries, strings, booleans) left out. See
      `compare.numeric_value`.
    """
    metrics = {}
    for key, value in eval_result.items():
        if key == "global_step":
            continue
        number = numeric_value(value)
        if number is not None:
            metrics[str(key)] = number
    return metrics


def global_step_of(eval_result: Optional[Mapping[str, Any]]) -> Optional[int]:
    """The `global_step` of an eval result as an int, or None if it has none.

    Args:
      eval_result: an eval result or a record's fields.

    Returns:
      The step.

    Raises:
      ValueError: if the step is not an integer (NaN, a string, 2.5, a bool)
        or does not fit an int64, naming the value.
    """
    if not eval_result or eval_result.get("global_step") is None:
        return None
    raw = eval_result["global_step"]
    number = numeric_value(raw)
    step: Optional[int] = None
    if number is not None and math.isfinite(number) and number == int(number):
        step = int(raw) if isinstance(raw, (numbers.Integral, np.integer)) else int(number)
    if step is None or not -(2**63) <= step < 2**63:
        raise ValueError(
            "`global_step` must be an integer step, as Estimator.evaluate gives it. "
            f"Received: global_step={raw!r}"
        )
    return step


def make_record(
    eval_result: Mapping[str, Any],
    checkpoint_path: Optional[Union[str, bytes]],
    exporter_name: str,
    exported_at: datetime.datetime,
) -> Dict[str, Any]:
    """Builds the record of one export.

    Args:
      eval_result: the eval result of the exported checkpoint.
      checkpoint_path: the exported checkpoint.
      exporter_name: the exporter's `name`.
      exported_at: when the export was made; converted to UTC.

    Returns:
      A JSON-ready dict.

    Raises:
      ValueError: if the eval result's `global_step` is not an integer.
    """
    return {
        "global_step": global_step_of(eval_result),
        "metrics": numeric_metrics(eval_result),
        "checkpoint_path": layout.as_path(checkpoint_path) if checkpoint_path else None,
        "exporter": exporter_name,
        "exported_at": exported_at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "best_exporter_version": __version__,
    }


def json_ready(record: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of a record that strict JSON can hold: non-finite metrics as strings."""
    ready = dict(record)
    ready["metrics"] = {
        key: value if math.isfinite(value) else _non_finite_name(value)
        for key, value in record.get("metrics", {}).items()
    }
    return ready


def dumps_record(record: Mapping[str, Any]) -> str:
    """Serializes a record to strict JSON."""
    return json.dumps(json_ready(record), indent=2, sort_keys=True, allow_nan=False) + "\n"


def loads_record(text: Union[str, bytes]) -> Dict[str, Any]:
    """Parses and validates a record written by `dumps_record`.

    Whatever `text` holds (JSON `null`s, lists or objects where numbers belong,
    nesting deep enough to exhaust the stack, numbers beyond the float range),
    the only exception is a ValueError naming what is wrong.

    Returns:
      The record: `global_step` an int or None, `metrics` a dict of str to
      float (non-finite values restored), and those of `checkpoint_path`,
      `exporter`, `exported_at` and `best_exporter_version` that are strings,
      and `epoch` (written by the Keras front-end) if it is a non-negative int.
      Null and unknown fields are left out, and so is an `epoch` that is not
      one: it only informs, so it never costs a record its metrics.

    Raises:
      ValueError: if `text` is not a valid record.
    """
    try:
        return _validated(json.loads(text))
    except (TypeError, RecursionError, OverflowError, UnicodeDecodeError) as e:
        raise ValueError(f"not an export record ({type(e).__name__}: {e})") from None


def _validated(record: Any) -> Dict[str, Any]:
    if not isinstance(record, dict) or not isinstance(record.get("metrics", {}), dict):
        raise ValueError(f"not an export record: {_short(record)}")
    metrics = {}
    for key, value in record.get("metrics", {}).items():
        if isinstance(value, str) and value in _NON_FINITE_NAMES:
            metrics[key] = _NON_FINITE_NAMES[value]
            continue
        number = numeric_value(value) if isinstance(value, (int, float)) else None
        if number is None:
            raise ValueError(f"metric {key!r} is not a number: {_short(value)}")
        metrics[key] = number
    validated: Dict[str, Any] = {"metrics": metrics}
    validated["global_step"] = global_step_of(record)
    for field in _STRING_FIELDS:
        value = record.get(field)
        if value is None:
            continue  # Absent and null alike: readers use record.get(field, default).
        if not isinstance(value, str):
            raise ValueError(f"{field} is not a string: {_short(value)}")
        validated[field] = value
    epoch = record.get("epoch")
    if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0:
        validated["epoch"] = epoch
    return validated


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= 200 else text[:200] + "..."


def _non_finite_name(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


@contextlib.contextmanager
def staged_record(record: Mapping[str, Any]) -> Iterator[str]:
    """Writes a record where the estimator can copy it from, for one export.

    Args:
      record: the record, from `make_record`.

    Yields:
      The path to pass as the source of the `assets_extra` entry.
    """
    staging_dir = f"{_STAGING_ROOT}/{uuid.uuid4().hex}"
    path = f"{staging_dir}/{layout.RECORD_ASSET_NAME}"
    tf.io.gfile.makedirs(staging_dir)
    try:
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(dumps_record(record))
        yield path
    finally:
        tf.io.gfile.rmtree(staging_dir)


def read_record(version_dir: str) -> Optional[Dict[str, Any]]:
    """Reads the record of one version directory.

    Args:
      version_dir: a version directory of an export.

    Returns:
      The record, or None when there is none (an export by another exporter) or
      it is invalid (logged as a warning).

    Raises:
      tf.errors.OpError: if the record cannot be read (anything but "not
        found"): the caller cannot tell what the version is worth.
      OSError: likewise, from a Python filesystem plugin.
    """
    return _read_record_or_problem(version_dir)[0]


def _read_record_or_problem(version_dir: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The record of a version, or None and why an existing record cannot be used.

    "Not there" is None without a problem; "could not look" raises.
    """
    path = layout.record_path(version_dir)
    try:
        if not tf.io.gfile.exists(path):
            return None, None
        with tf.io.gfile.GFile(path, "rb") as f:
            text = f.read()
    except tf.errors.NotFoundError:
        return None, None  # Deleted since it was seen: retention of another writer.
    try:
        return loads_record(text), None
    except ValueError as e:
        logger.warning("Ignoring unreadable export record %s: %s", path, e)
        return None, f"{type(e).__name__}: {e}"


def read_export(
    version: int, version_dir: str, read_failures_as_problems: bool = False
) -> ExportRecord:
    """Reads what one version directory holds: its record and whether it is complete.

    Args:
      version: the version number.
      version_dir: the version directory.
      read_failures_as_problems: if True, a record that cannot be read (anything
        but "not found") is reported as the version's `problem`, named by the
        error's class, as a listing for a person wants it; by default it raises,
        as deciding anything on a failed read must not happen.

    Returns:
      The version, its record (None if absent or invalid) and completeness.

    Raises:
      tf.errors.OpError: if the record (unless `read_failures_as_problems`) or
        the SavedModel cannot be looked at.
      OSError: likewise, from a Python filesystem plugin.
    """
    try:
        record, problem = _read_record_or_problem(version_dir)
    except (tf.errors.OpError, OSError) as e:
        if not read_failures_as_problems:
            raise
        record, problem = None, f"{type(e).__name__}: {e}"
    return ExportRecord(
        version=version,
        path=version_dir,
        record=record,
        complete=layout.has_saved_model(version_dir),
        problem=problem,
    )


def read_export_records(export_dir_base: Union[str, bytes]) -> List[ExportRecord]:
    """Lists the exported versions under `export_dir_base` with their records.

    Args:
      export_dir_base: an exporter's export path, e.g.
        `model_dir/export/best_exporter`.

    Returns:
      One `ExportRecord` per 10-digit version directory, oldest first. Versions
      without a record (written by `tf.estimator.BestExporter`) have `record`
      None; so do versions with an invalid record, with `problem` saying why.
      Symlinks and files named like versions are left out. Empty if the
      directory does not exist.

    Raises:
      tf.errors.OpError: if the directory exists but cannot be listed, or a
        record or SavedModel cannot be looked at (anything but "not found"):
        a failed look is never reported as "no exports" or "no record".
      OSError: likewise, from a Python filesystem plugin.
    """
    versions = sorted(layout.list_export_dir(export_dir_base).versions.items())
    return map_concurrently(
        lambda item: read_export(*item), versions, reads_in_flight(layout.as_path(export_dir_base))
    )


def reads_in_flight(path: str) -> int:
    """How many reads to have in flight under `path`: several only where they wait.

    A local read takes microseconds: threads would cost more than they save
    (measured in benchmarks/bench_restart.py). A path with a scheme (gs://,
    s3://, hdfs://) is a network filesystem, where each read waits on a round trip.
    """
    scheme = path.split("://", 1)[0] if "://" in path else ""
    return LOCAL_READS_IN_FLIGHT if scheme in ("", "file") else MAX_CONCURRENT_READS


def map_concurrently(
    read: Callable[[_Item], _Read],
    items: Sequence[_Item],
    max_workers: Optional[int] = None,
) -> List[_Read]:
    """Calls `read` on each item with several calls in flight; results in order.

    A restart reads what each version holds (its record, whether its model is
    complete). On an object store each of those is a round trip (tens of
    milliseconds on GCS), so 200 versions read one by one would take seconds;
    with a few reads in flight, a restart waits for the slowest of each batch.
    The reads are I/O in TensorFlow's filesystem code, which releases the GIL.

    Args:
      read: reads one item, e.g. `read_export`.
      items: what to read, in the order wanted.
      max_workers: the most calls in flight; None for `MAX_CONCURRENT_READS`.

    Returns:
      `[read(item) for item in items]`.

    Raises:
      Exception: the first error a call raised, as the sequential loop would:
        a failed read must reach the caller, never read as "no record".
    """
    if max_workers is None:
        max_workers = MAX_CONCURRENT_READS
    if len(items) <= 1 or max_workers <= 1:
        return [read(item) for item in items]
    workers = min(max_workers, len(items))
    with concurrent.futures.ThreadPoolExecutor(workers, "best_exporter-records") as pool:
        return list(pool.map(read, items))
