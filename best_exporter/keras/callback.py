"""`BestExportCallback`: the Keras front-end, continuing an Estimator's export directory.

A thin adapter: Keras' hooks become calls into the core (`restore.restore`,
`decide`, `publish.publish_saved_model`, retention, the decision log lines), the
same calls `BestExporter` makes for the Estimator. Works with `tf.keras` on
TensorFlow 2.13-2.15 and with Keras 3 on TensorFlow 2.16 and later.
"""

import datetime
import inspect
import numbers
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Union

import numpy as np
import tensorflow as tf

from best_exporter.core import errors, layout, log, publish, records, restore, retention, summaries
from best_exporter.core.compare import CompareFn, MetricComparator, check_compare_fn
from best_exporter.core.decision import Best, Judge, Source, decide

#: `export_fn(model, path)` writes a SavedModel of `model` to `path`.
ExportFn = Callable[[Any, str], Any]

# Metric names that Keras' mode="auto" counts as higher-is-better, after a
# `val_` prefix: Keras 2 checks for "acc" (and "fmeasure"); Keras 3 asks the
# metric objects, which say "up" for these.
_HIGHER_IS_BETTER_PARTS = ("acc", "auc", "fmeasure")
_HIGHER_IS_BETTER_NAMES = (
    "precision",
    "recall",
    "f1_score",
    "fbeta_score",
    "r2_score",
    "cosine_similarity",
    "iou",
    "mean_iou",
    "binary_iou",
    "one_hot_iou",
    "one_hot_mean_iou",
    "precision_at_recall",
    "recall_at_precision",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
)


def infer_higher_is_better(monitor: str) -> bool:
    """Keras' `mode="auto"`: whether larger values of `monitor` are better.

    Args:
      monitor: a metric name as in Keras' logs, e.g. `'val_accuracy'`.

    Returns:
      True for accuracies, AUC, precision, recall and the like; False otherwise
      (losses and errors).
    """
    name = monitor[len("val_") :] if monitor.startswith("val_") else monitor
    if name == "loss" or name.endswith("_loss"):
        return False
    return any(part in name for part in _HIGHER_IS_BETTER_PARTS) or name in (
        _HIGHER_IS_BETTER_NAMES
    )


def default_export_fn(model: Any, path: str) -> None:
    """Writes `model` as an inference SavedModel: `model.export(path)`.

    `Model.export` writes the forward pass as the `serve` endpoint and the
    `serving_default` signature. Where a Keras has no `Model.export`, the model
    is saved with `tf.saved_model.save`, whose `serving_default` signature comes
    from the model's call on its known inputs.
    """
    export = getattr(model, "export", None)
    if export is None:
        tf.saved_model.save(model, path)
        return
    if "verbose" in inspect.signature(export).parameters:
        export(path, verbose=False)  # Keras 3 prints "Saved artifact at ..." otherwise.
    else:
        export(path)


class BestExportCallback(tf.keras.callbacks.Callback):
    """Exports a SavedModel when the model beats every model evaluated before it.

    The Keras counterpart of `best_exporter.BestExporter`, writing the same
    export directory in the same way: 10-digit versions that TensorFlow Serving
    serves the highest of, each with its record `assets.extra/eval_result.json`;
    the newest version is the best model. At the start of `fit` the best is
    restored from the records on disk, including those `BestExporter` wrote, so
    a Keras model is exported only if it beats the Estimator era's best.

    Example:

    ```python
    from best_exporter.keras import BestExportCallback

    model.fit(train, validation_data=val, epochs=20, callbacks=[
        BestExportCallback(model_dir + "/export/best_exporter",
                           metric_names={"val_loss": "loss"})])
    ```

    Args:
      export_dir: the export directory, e.g. `model_dir/export/best_exporter`.
      monitor: the metric in Keras' logs to compare, e.g. `'val_loss'`.
      mode: `'min'`, `'max'`, or `'auto'` to infer the direction from the name
        as Keras does (accuracies, AUC, precision and recall are maximised).
      min_delta: the least improvement that counts.
      compare_fn: instead of `monitor`, `mode` and `min_delta`, any compare_fn
        `BestExporter` accepts, e.g. `lower_is_better('val_loss')`; it reads
        Keras' names.
      exports_to_keep: how many of the newest exports to keep; None keeps all.
      export_fn: `export_fn(model, path)` writes a SavedModel to `path`, e.g.
        with the signatures serving clients use; default `model.export(path)`.
      save_freq: `'epoch'` to judge the logs at the end of each epoch, or an
        integer N to judge the training logs every N batches.
      metric_names: `{keras_name: record_name}`, e.g. `{'val_loss': 'loss'}`:
        a record without `keras_name` (written by `BestExporter`) is read as
        if its `record_name` were `keras_name`.
      write_best_summaries: keyword-only; whether each export writes its
        metrics at its step to the TensorBoard run of exported bests in
        `export_dir`, as `BestExporter` does.

    Raises:
      ValueError: if an argument is invalid; the message names the value and
        what was expected.
    """

    def __init__(
        self,
        export_dir: Union[str, os.PathLike],
        monitor: str = "val_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        compare_fn: Optional[CompareFn] = None,
        exports_to_keep: Optional[int] = 5,
        export_fn: Optional[ExportFn] = None,
        save_freq: Union[str, int] = "epoch",
        metric_names: Optional[Mapping[str, str]] = None,
        *,
        write_best_summaries: bool = True,
    ):
        super().__init__()
        self._export_dir = _checked_export_dir(export_dir)
        self._judge = Judge(_compare_fn_of(monitor, mode, min_delta, compare_fn))
        self._exports_to_keep = retention.checked_exports_to_keep(exports_to_keep)
        if export_fn is not None and not callable(export_fn):
            raise ValueError(
                "`export_fn` must be a callable export_fn(model, path) that writes a "
                f"SavedModel to path, or None for model.export. Received: export_fn={export_fn!r}"
            )
        self._export_fn: ExportFn = export_fn or default_export_fn
        # None: judge at the end of each epoch; N: every N batches.
        self._batch_freq = _checked_save_freq(save_freq)
        self._metric_names = _checked_metric_names(metric_names)
        if not isinstance(write_best_summaries, (bool, np.bool_)):
            raise ValueError(
                "`write_best_summaries` must be True or False. "
                f"Received: write_best_summaries={write_best_summaries!r}"
            )
        self._write_best_summaries = bool(write_best_summaries)
        self._best: Optional[Best] = None
        self._best_export_path: Optional[str] = None
        # Versions whose worth is unknown (records missing): kept until a new export.
        self._unmatched: FrozenSet[int] = frozenset()
        self._restored = False
        self._epoch = 0
        self._batches_since_judged = 0

    @property
    def export_dir(self) -> str:
        """The export directory."""
        return self._export_dir

    @property
    def best_eval_result(self) -> Optional[Dict[str, Any]]:
        """The result a model has to beat to be exported, or None before any."""
        return dict(self._best.eval_result) if self._best else None

    @property
    def best_export_path(self) -> Optional[str]:
        """The export of the best model so far, or None before any."""
        return self._best_export_path

    # Keras' hooks.

    def on_train_begin(self, logs: Optional[Mapping[str, Any]] = None) -> None:
        del logs
        self._batches_since_judged = 0
        self._restored = False
        self._restore()

    def on_epoch_begin(self, epoch: int, logs: Optional[Mapping[str, Any]] = None) -> None:
        del logs
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Optional[Mapping[str, Any]] = None) -> None:
        del batch
        if self._batch_freq is None:
            return
        self._batches_since_judged += 1
        if self._batches_since_judged >= self._batch_freq:
            self._batches_since_judged = 0
            self._judge_logs(logs, where=f"every {self._batch_freq} batches (training logs)")

    def on_epoch_end(self, epoch: int, logs: Optional[Mapping[str, Any]] = None) -> None:
        self._epoch = epoch
        if self._batch_freq is None:
            self._judge_logs(logs, where="the end of an epoch")

    # Restore, decide, export.

    def _restore(self, logs: Optional[Mapping[str, Any]] = None) -> bool:
        """Restores the best of the models on disk (see `restore.restore`) and prunes.

        A Keras run has no eval event history: exports without records (the
        original exporter's) cannot be valued, and `restore.restore` protects
        them until a new export beats the best.

        Returns:
          Whether the exports could be read; if not (after a warning), nothing
          is exported or deleted, and the next judgement tries again.
        """
        step = _global_step(self.model) if self.model is not None else None
        try:
            restored = restore.restore(
                self._judge,
                self._export_dir,
                lambda current_step: restore.HistoryCandidates(None, current_step),
                step,
                translate=self._in_keras_names,
                # Only the chief publishes and prunes; another worker's cleanup
                # could delete the chief's publish in progress.
                remove_unfinished=_is_chief(self.model),
            )
        except restore.CannotRestoreError as e:
            judged = (
                f"{self._judge.describe(_numeric_logs(logs))} would be judged, but " if logs else ""
            )
            log.logger.warning(
                "%s: not exported step %s: %s%s. Nothing is exported or deleted until the "
                "exports can be read; trying again at the next evaluation",
                self._prefix,
                step,
                judged,
                e,
            )
            return False
        for cause in restored.skipped.values():
            log.warn_skipped(self._prefix, cause)
        self._best = restored.best
        self._best_export_path = restored.best_export_path
        self._unmatched = restored.unmatched
        self._restored = True
        log.log_restored(self._prefix, self._judge, self._best, restored.note)
        self._prune()
        return True

    def _judge_logs(self, logs: Optional[Mapping[str, Any]], where: str) -> None:
        result = _numeric_logs(logs)
        self._check_monitored(result, where)
        if not self._restored and not self._restore(logs):
            return
        step = _global_step(self.model)
        epoch = self._epoch + 1  # Keras counts epochs from 0 in hooks, from 1 for people.
        if step is not None:
            result["global_step"] = step
        when = f"step {step} (epoch {epoch})"
        outcome = decide(self._judge, self._best, result)
        if not outcome.exports:
            log.log_not_exported(self._prefix, self._judge, outcome, self._best, result, when)
            return
        if not _is_chief(self.model):
            # The chief decides alike and exports; this worker only joins the save.
            self._export_to_scratch()
            self._best = Best(result, Source.EVALUATION)
            log.logger.debug(
                "%s: %s: not the chief, exported to a scratch directory", self._prefix, when
            )
            return
        path = self._export(result, epoch, when)
        if path is None:
            return
        previous = self._best
        self._best = Best(result, Source.EVALUATION, path)
        self._best_export_path = path
        self._unmatched = frozenset()  # Beaten: what they hold is worse than this model.
        log.log_exported(self._prefix, self._judge, outcome, previous, result, when, path)
        self._prune(just_written=path)
        if self._write_best_summaries:
            summaries.write_exported_result(self._prefix, self._export_dir, result)

    def _export(self, result: Mapping[str, Any], epoch: int, when: str) -> Optional[str]:
        record = records.make_record(
            result,
            checkpoint_path=None,
            exporter_name=os.path.basename(self._export_dir.rstrip("/")),
            exported_at=datetime.datetime.now(datetime.timezone.utc),
        )
        record["epoch"] = epoch
        try:
            return publish.publish_saved_model(
                self._export_dir, lambda path: self._export_fn(self.model, path), record
            )
        except Exception as e:  # pylint: disable=broad-except
            if not errors.is_filesystem_error(e):
                raise
            log.warn_export_failed(
                self._prefix,
                self._judge,
                self._best,
                result,
                when,
                "the model",
                f"{type(e).__name__}: {e}",
            )
            return None

    def _export_to_scratch(self) -> None:
        """A non-chief worker's export: written to a local scratch directory and deleted.

        Under MultiWorkerMirroredStrategy saving is a collective operation that
        every worker must join, and only the chief's copy may land in
        `export_dir` (TensorFlow's multi-worker saving guidance).
        """
        scratch = tempfile.mkdtemp(prefix="best_exporter-worker-")
        try:
            self._export_fn(self.model, os.path.join(scratch, "model"))
        except Exception as e:  # pylint: disable=broad-except
            if not errors.is_filesystem_error(e):
                raise
            log.logger.warning(
                "%s: the scratch export failed: %s: %s", self._prefix, type(e).__name__, e
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _prune(self, just_written: Optional[str] = None) -> None:
        if not _is_chief(self.model):
            return
        retention.prune_protecting_paths(
            self._export_dir,
            self._exports_to_keep,
            (self._best_export_path, self._best.export_path if self._best else None),
            just_written,
            protected_versions=self._unmatched,
        )

    def _in_keras_names(self, eval_result: Mapping[str, Any]) -> Dict[str, Any]:
        """A recorded result with `metric_names` applied where the Keras name is missing."""
        result = dict(eval_result)
        for keras_name, record_name in self._metric_names.items():
            if keras_name not in result and record_name in result:
                result[keras_name] = result[record_name]
        return result

    def _check_monitored(self, result: Mapping[str, Any], where: str) -> None:
        metric = self._judge.metric
        if metric is None or metric in result:
            return
        hint = ""
        if metric.startswith("val_"):
            hint = (
                " Validation metrics are in the logs only at the end of an epoch with "
                "validation_data (and validation_freq) in fit, and never in batch logs."
            )
        raise ValueError(
            f"BestExportCallback monitors {metric!r}, which is not in the logs at {where}; "
            f"they have {sorted(result)}. Pass one of those as monitor.{hint}"
        )

    @property
    def _prefix(self) -> str:
        return f"BestExportCallback {os.path.basename(self._export_dir.rstrip('/'))!r}"


def _compare_fn_of(
    monitor: Any, mode: Any, min_delta: Any, compare_fn: Optional[CompareFn]
) -> CompareFn:
    if compare_fn is not None:
        check_compare_fn(compare_fn)
        if min_delta:
            raise ValueError(
                "`min_delta` applies to `monitor`; with a compare_fn, give it to the "
                "compare_fn instead, e.g. lower_is_better('val_loss', min_delta=0.01). "
                f"Received: min_delta={min_delta!r} and compare_fn={compare_fn!r}"
            )
        return compare_fn
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(
            "`monitor` must be the name of a metric in Keras' logs, such as 'val_loss'. "
            f"Received: monitor={monitor!r}"
        )
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
    higher = infer_higher_is_better(monitor) if mode == "auto" else mode == "max"
    return MetricComparator(monitor, higher_is_better=higher, min_delta=min_delta)


def _checked_export_dir(export_dir: Any) -> str:
    if isinstance(export_dir, os.PathLike):
        export_dir = os.fspath(export_dir)
    if isinstance(export_dir, bytes):
        export_dir = layout.as_path(export_dir)
    if not isinstance(export_dir, str) or not export_dir:
        raise ValueError(
            "`export_dir` must be the export directory, such as "
            f"model_dir + '/export/best_exporter'. Received: export_dir={export_dir!r}"
        )
    return export_dir


def _checked_save_freq(save_freq: Any) -> Optional[int]:
    """None for 'epoch', else the number of batches."""
    if isinstance(save_freq, str) and save_freq == "epoch":
        return None
    if (
        isinstance(save_freq, (bool, np.bool_))
        or not isinstance(save_freq, numbers.Integral)
        or save_freq <= 0
    ):
        raise ValueError(
            "`save_freq` must be 'epoch' or a positive number of batches. "
            f"Received: save_freq={save_freq!r}"
        )
    return int(save_freq)


def _checked_metric_names(metric_names: Any) -> Dict[str, str]:
    if metric_names is None:
        return {}
    if not isinstance(metric_names, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in metric_names.items()
    ):
        raise ValueError(
            "`metric_names` must map metric names in Keras' logs to names in the records, "
            f"e.g. {{'val_loss': 'loss'}}. Received: metric_names={metric_names!r}"
        )
    return dict(metric_names)


def _numeric_logs(logs: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Keras' logs as floats; values that are not one number are left out."""
    result: Dict[str, Any] = {}
    for key, value in (logs or {}).items():
        try:
            array = np.asarray(value)
        except Exception:  # pylint: disable=broad-except
            continue  # Not convertible: not a metric the callback can compare.
        if array.size == 1 and array.dtype.kind in "biuf":
            result[str(key)] = float(array.reshape(()))
    return result


def _global_step(model: Any) -> Optional[int]:
    """The optimizer's iteration count: batches trained so far, across restarts."""
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    if iterations is None:
        return None
    try:
        value = iterations.numpy() if hasattr(iterations, "numpy") else np.asarray(iterations)
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_chief(model: Any) -> bool:
    """False on the non-chief workers of a multi-worker strategy, where nothing lands."""
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    return bool(strategy.extended.should_checkpoint)
