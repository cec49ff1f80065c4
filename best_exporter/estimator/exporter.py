"""`BestExporter`: export a model if, and only if, it beats every model before it."""

import collections.abc
import dataclasses
import datetime
import os
import posixpath
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Set, Union

import numpy as np
import tensorflow as tf

from best_exporter import _compat
from best_exporter.core import layout, log, publish, records, restore, retention, summaries
from best_exporter.core.compare import CompareFn, check_compare_fn, loss_smaller
from best_exporter.core.decision import Best, Judge, Outcome, SkippedCause, Source, decide
from best_exporter.core.errors import is_filesystem_error as _is_filesystem_error
from best_exporter.core.history import scan_eval_history
from best_exporter.core.log import logger
from best_exporter.core.retention import checked_exports_to_keep as _checked_exports_to_keep
from best_exporter.estimator._legacy import LegacyAttributes

_compat.require_estimator()


@dataclasses.dataclass
class _RunState:
    """What the exporter knows about one (model_dir, export_path)."""

    model_dir: Optional[str]  # None while a subclass assigned a best before the first export.
    export_path: Optional[str]
    best: Optional[Best]
    best_export_path: Optional[str]
    # Versions whose worth is unknown (legacy exports when the best is known only
    # from the history): never pruned until a new export beats the best.
    unmatched: FrozenSet[int] = frozenset()


class BestExporter(LegacyAttributes, tf.estimator.Exporter):
    """Exports a SavedModel when a model beats every model evaluated before it.

    A drop-in replacement for `tf.estimator.BestExporter`, with the same
    constructor and behaviour where that one works, and these differences:

    * After a restart the best result is restored from the records of the
      exports on disk (and, for exports without one, from the eval event
      history), and a worse model is never exported, so the newest export stays
      the best one.
    * The first evaluation is exported even though it is already in the events
      file; NaN and infinite results (with the built-in compare functions) are
      never exported and never become the best.
    * Truncated or corrupt event files, history events without the compared
      metric, invalid records, a checkpoint deleted before it could be
      exported, and filesystem errors are logged, never fatal. If the exports
      on disk cannot be read at a restart, nothing is exported or deleted
      until they can.
    * Each export carries `assets.extra/eval_result.json`, its record.
    * Retention never deletes the export just written, never follows or
      deletes a symlink or a file named like a version, and removes `temp-*`
      directories left by interrupted exports.
    * Each export also writes its metrics, at its step, to a TensorBoard run in
      the export directory, so TensorBoard shows the exported bests beside the
      eval curve.

    The estimator is always called: placeholder `assets_extra` sources and
    checkpoint paths (as tests with a mocked estimator pass) are diagnosed only
    when an export fails, and what the estimator returns is returned as it is.
    Subclasses of the original that use its private attributes
    (`_best_eval_result`, `_saved_model_exporter`, `_garbage_collect_exports`,
    ...) keep working: see `best_exporter._legacy`.

    Example:

    ```python
    from best_exporter import BestExporter

    exporter = BestExporter(
        serving_input_receiver_fn=serving_input_receiver_fn, exports_to_keep=5)
    eval_spec = tf.estimator.EvalSpec(input_fn=eval_input_fn, exporters=exporter)
    tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
    ```

    Args:
      name: the name of this exporter, used as the directory under
        `model_dir/export/`.
      serving_input_receiver_fn: a function taking no arguments and returning a
        `tf.estimator.export.ServingInputReceiver`.
      event_file_pattern: a glob of the eval event files, relative to
        `model_dir` (an absolute pattern, or one with a URL scheme such as
        `gs://`, is used as it is; glob characters in `model_dir` are taken
        literally), read after a restart to value exports written without
        records (by the original exporter). With None, the best is restored
        from the records alone.
      compare_fn: a callable `compare_fn(best_eval_result,
        current_eval_result) -> bool`, True if the current result is better.
        `loss_smaller`, `lower_is_better(metric)` and `higher_is_better(metric)`
        are provided.
      assets_extra: an optional mapping from a destination path relative to the
        export's `assets.extra` directory to the path of a file to copy there.
      as_text: whether to write the SavedModel proto in text format.
      exports_to_keep: how many of the newest exports to keep; None keeps all.
      write_best_summaries: keyword-only; whether each export writes its
        metrics at its step to TensorBoard event files in the export directory
        (`model_dir/export/<name>`, a run of its own). Failures to write them
        are logged, never fatal.

    Raises:
      ValueError: if any argument is invalid; the message names the value and
        what was expected.
    """

    def __init__(
        self,
        name: str = "best_exporter",
        serving_input_receiver_fn: Optional[Callable[[], Any]] = None,
        event_file_pattern: Optional[str] = "eval/*.tfevents.*",
        compare_fn: CompareFn = loss_smaller,
        assets_extra: Optional[Mapping[str, str]] = None,
        as_text: bool = False,
        exports_to_keep: Optional[int] = 5,
        *,
        write_best_summaries: bool = True,
    ):
        check_compare_fn(compare_fn)
        if event_file_pattern is not None and not isinstance(event_file_pattern, str):
            raise ValueError(
                "`event_file_pattern` must be a glob of eval event files relative to "
                "model_dir, such as 'eval/*.tfevents.*', or None. "
                f"Received: event_file_pattern={event_file_pattern!r}"
            )
        if not isinstance(write_best_summaries, (bool, np.bool_)):
            raise ValueError(
                "`write_best_summaries` must be True or False. "
                f"Received: write_best_summaries={write_best_summaries!r}"
            )
        self._configure_export(name, serving_input_receiver_fn, assets_extra, as_text)
        self._write_best_summaries = bool(write_best_summaries)
        self._event_file_pattern = event_file_pattern or None
        self._judge = Judge(compare_fn)
        self._exports_to_keep = _checked_exports_to_keep(exports_to_keep)
        self._state: Optional[_RunState] = None

    def _configure_export(
        self,
        name: str,
        serving_input_receiver_fn: Optional[Callable[[], Any]],
        assets_extra: Optional[Mapping[str, str]],
        as_text: bool,
    ) -> None:
        """Checks and sets what each export is written with (also `_saved_model_exporter = ...`)."""
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(
                "`name` must be a non-empty string, the export directory's name under "
                "model_dir/export/, without '/' and other than '.' and '..', e.g. "
                f"'best_exporter'. Received: name={name!r}"
            )
        if not callable(serving_input_receiver_fn):
            raise ValueError(
                "`serving_input_receiver_fn` must be a function taking no arguments and "
                "returning a ServingInputReceiver, e.g. tf.estimator.export."
                "build_parsing_serving_input_receiver_fn(feature_spec). "
                f"Received: serving_input_receiver_fn={serving_input_receiver_fn!r}"
            )
        if not isinstance(as_text, (bool, np.bool_)):
            raise ValueError(f"`as_text` must be True or False. Received: as_text={as_text!r}")
        self._assets_extra = _checked_assets_extra(assets_extra)
        self._name = name
        self._serving_input_receiver_fn = serving_input_receiver_fn
        self._as_text = bool(as_text)

    @property
    def name(self) -> str:
        """The exporter's name: its directory under `model_dir/export/`."""
        return self._name

    @property
    def best_eval_result(self) -> Optional[Dict[str, Any]]:
        """The result a model has to beat to be exported, or None before any."""
        if self._state is None or self._state.best is None:
            return None
        return dict(self._state.best.eval_result)

    @property
    def best_export_path(self) -> Optional[str]:
        """The export of the best model exported so far, or None before any.

        Also None after a restart while the best is known only from the event
        history of versions the original exporter wrote without records.
        """
        return self._state.best_export_path if self._state else None

    def export(
        self,
        estimator: tf.estimator.Estimator,
        export_path: Union[str, bytes],
        checkpoint_path: Optional[Union[str, bytes]],
        eval_result: Dict[str, Any],
        is_the_final_export: bool,
    ) -> Optional[bytes]:
        """Exports the evaluated model if it is the best so far.

        Called by the evaluator after each evaluation.

        Args:
          estimator: the `Estimator` to export.
          export_path: where versions are written, `model_dir/export/<name>`.
          checkpoint_path: the evaluated checkpoint.
          eval_result: the result of `Estimator.evaluate` on that checkpoint.
          is_the_final_export: whether this is the last evaluation; unused.

        Returns:
          What `export_saved_model` returned (the new export's path, bytes),
          or None if nothing was exported.

        Raises:
          ValueError: if `eval_result` lacks the metric of a built-in
            compare_fn or holds a value there that is not a number, if its
            `global_step` is not an integer, or if exporting fails for a
            configuration error (a bad serving_input_receiver_fn, a missing
            `assets_extra` source).
          Exception: whatever a custom compare_fn raises on `eval_result`.
        """
        del is_the_final_export  # Every evaluation is judged alike.
        export_path = layout.as_path(export_path)
        step = records.global_step_of(eval_result)  # A clear error for an odd step.
        state = self._state_for(estimator.model_dir, export_path, eval_result, step)
        if state is None:
            return None  # The exports could not be read: decide nothing on that view.
        outcome = decide(self._judge, state.best, eval_result)
        if not outcome.exports:
            self._log_skip(outcome, state, eval_result)
            return None
        exported = self._write_export(estimator, export_path, checkpoint_path, eval_result, state)
        if exported is None:
            return None
        previous = state.best
        state.best_export_path = _path_or_none(exported)
        state.best = Best(dict(eval_result or {}), Source.EVALUATION, state.best_export_path)
        state.unmatched = frozenset()  # Better than every version on disk.
        self._log_export(outcome, previous, eval_result, state.best_export_path or repr(exported))
        self._prune(export_path, state, just_written=state.best_export_path)
        if self._write_best_summaries and state.best_export_path:
            self._write_summary(export_path, eval_result)
        return exported

    def _assign_best(
        self, eval_result: Optional[Mapping[str, Any]], export_path: Optional[str]
    ) -> None:
        """Makes `eval_result` the best, as assigning the original's `_best_eval_result` does.

        Args:
          eval_result: the new best; None forgets the best.
          export_path: the version holding its model, if known.
        """
        if self._state is None:
            self._state = _RunState(None, None, None, None)
        best = Best(dict(eval_result), Source.EVALUATION, export_path) if eval_result else None
        self._state.best = best
        if export_path:
            self._state.best_export_path = export_path

    def _state_for(
        self,
        model_dir: str,
        export_path: str,
        eval_result: Mapping[str, Any],
        step: Optional[int] = None,
    ) -> Optional[_RunState]:
        """The state of this model_dir, restored from disk on first use.

        None if the exports cannot be read; nothing is cached then, so the next
        evaluation tries again.
        """
        step = step if step is not None else _step_of(eval_result)
        state = self._state
        if state is None or (state.model_dir, state.export_path) != (model_dir, export_path):
            # A best that a subclass assigned before the first export (see
            # _legacy.py) has no directories yet; it competes with the models on disk.
            assigned = state.best if state is not None and state.model_dir is None else None
            restored = self._restore(model_dir, export_path, eval_result, step, assigned)
            if restored is None:
                return None
            state = self._state = restored
        return state

    def _restore(
        self,
        model_dir: str,
        export_path: str,
        eval_result: Mapping[str, Any],
        current_step: Optional[int],
        assigned: Optional[Best] = None,
    ) -> Optional[_RunState]:
        """Restores the best of the models on disk (see `restore.restore`) and prunes.

        Returns:
          The state, or None (after a warning) if the exports cannot be read.
        """
        try:
            restored = restore.restore(
                self._judge,
                export_path,
                lambda step: self._history_before(model_dir, step),
                current_step,
                extra=[assigned] if assigned is not None else (),
            )
        except restore.CannotRestoreError as e:
            logger.warning(
                "%s: not exported step %s: %s would be judged, but %s. Nothing is exported or "
                "deleted until the exports can be read; trying again at the next evaluation",
                self._prefix,
                current_step,
                self._judge.describe(eval_result),
                e,
            )
            return None
        for cause in restored.skipped.values():
            self._warn_skipped(cause)
        state = _RunState(
            model_dir, export_path, restored.best, restored.best_export_path, restored.unmatched
        )
        self._log_restore(state, restored.note)
        self._prune(export_path, state)
        return state

    def _history_before(
        self, model_dir: str, current_step: Optional[int]
    ) -> restore.HistoryCandidates:
        """The eval results in the event history before `current_step`, streamed."""
        if not self._event_file_pattern:
            return restore.HistoryCandidates(None, current_step)
        pattern = layout.event_file_glob(model_dir, self._event_file_pattern)
        scan = scan_eval_history(pattern, metric=self._judge.metric, strict_listing=True)
        return restore.HistoryCandidates(scan, current_step)

    def _write_export(
        self,
        estimator: tf.estimator.Estimator,
        export_path: str,
        checkpoint_path: Optional[Union[str, bytes]],
        eval_result: Mapping[str, Any],
        state: _RunState,
    ) -> Optional[bytes]:
        """Exports through the estimator with the record; None if the export failed.

        The checkpoint and the `assets_extra` sources are not checked before:
        the estimator is always called (tests pass placeholder paths to a mocked
        one), and a failure is diagnosed afterwards.

        Raises:
          ValueError: if the export failed and an `assets_extra` source is
            missing, or for a configuration error of the export.
        """
        checkpoint = layout.as_path(checkpoint_path) if checkpoint_path else None
        record = records.make_record(
            eval_result or {}, checkpoint, self._name, datetime.datetime.now(datetime.timezone.utc)
        )
        temp_dirs_before = _temp_dirs(export_path)
        try:
            with records.staged_record(record) as record_source:
                assets_extra = dict(self._assets_extra)
                assets_extra[layout.RECORD_ASSET_NAME] = record_source
                exported = publish.publish_version(
                    export_path,
                    lambda base: estimator.export_saved_model(
                        base,
                        self._serving_input_receiver_fn,
                        assets_extra=assets_extra,
                        as_text=self._as_text,
                        checkpoint_path=checkpoint,
                    ),
                )
        except Exception as e:  # pylint: disable=broad-except
            # The estimator is called without pre-checks, so a failure may leave
            # its temp-<ts> directory; nothing but this export can own a new one.
            _remove_new_temp_dirs(export_path, temp_dirs_before)
            _raise_if_assets_extra_missing(self._assets_extra, e)
            # The chief's checkpoint retention may delete the checkpoint while it
            # is being exported; that is not the user's error, whatever it raised.
            if checkpoint and not _checkpoint_exists(checkpoint):
                cause = f"the checkpoint no longer exists ({type(e).__name__}: {e})"
            elif _is_filesystem_error(e):
                cause = f"{type(e).__name__}: {e}"
            else:
                raise
            self._warn_export_failed(eval_result, checkpoint, state, cause)
            return None
        if exported is None:
            self._warn_export_failed(
                eval_result,
                checkpoint,
                state,
                "export_saved_model returned None instead of the export's path",
            )
            return None
        # TensorFlow Serving loads the newest version, so a version that lost
        # content on the way (a filesystem whose rename does not move a whole
        # directory) must not stay.
        version_dir = _version_dir_to_verify(export_path, exported)
        missing = _missing_parts(version_dir) if version_dir else []
        if version_dir and missing:
            retention.discard_version(export_path, version_dir)
            self._warn_export_failed(
                eval_result,
                checkpoint,
                state,
                f"the published version {version_dir} lacks {', '.join(missing)}, so it was "
                "removed; does this filesystem rename directories with their contents?",
            )
            return None
        return exported

    def _prune(
        self, export_path: str, state: _RunState, just_written: Optional[str] = None
    ) -> None:
        retention.prune_protecting_paths(
            export_path,
            self._exports_to_keep,
            (state.best_export_path, state.best.export_path if state.best else None),
            just_written,
            protected_versions=state.unmatched,
        )

    def _write_summary(self, export_path: str, eval_result: Mapping[str, Any]) -> None:
        """Adds the exported result to TensorBoard; a chart is never worth the evaluator."""
        summaries.write_exported_result(self._prefix, export_path, eval_result)

    # Log lines: one per decision, saying what happened and why.

    @property
    def _prefix(self) -> str:
        return f"BestExporter {self._name!r}"

    def _log_restore(self, state: _RunState, disk_note: str) -> None:
        log.log_restored(self._prefix, self._judge, state.best, disk_note)

    def _log_skip(self, outcome: Outcome, state: _RunState, eval_result: Mapping[str, Any]) -> None:
        when = f"step {_step_of(eval_result)}"
        log.log_not_exported(self._prefix, self._judge, outcome, state.best, eval_result, when)

    def _log_export(
        self,
        outcome: Outcome,
        previous: Optional[Best],
        eval_result: Mapping[str, Any],
        path: str,
    ) -> None:
        when = f"step {_step_of(eval_result)}"
        log.log_exported(self._prefix, self._judge, outcome, previous, eval_result, when, path)

    def _warn_export_failed(
        self,
        eval_result: Mapping[str, Any],
        checkpoint: Optional[str],
        state: _RunState,
        cause: str,
    ) -> None:
        log.warn_export_failed(
            self._prefix,
            self._judge,
            state.best,
            eval_result,
            f"step {_step_of(eval_result)}",
            f"checkpoint {checkpoint}",
            cause,
        )

    def _warn_skipped(self, cause: SkippedCause) -> None:
        log.warn_skipped(self._prefix, cause)


def _step_of(eval_result: Mapping[str, Any]) -> Optional[int]:
    try:
        return records.global_step_of(eval_result)
    except ValueError:
        return None  # Only for log lines; export() rejects an odd step first.


def _path_or_none(exported: Any) -> Optional[str]:
    """What the estimator returned as a path, or None if it is none (a mock's return value)."""
    return layout.as_path(exported) if isinstance(exported, (str, bytes)) else None


# The completeness check of an export: two small functions that never raise, so
# that a check can never cost the evaluator or a model that was written.


def _version_dir_to_verify(export_path: str, exported: Any) -> Optional[str]:
    """The version directory to check, or None if `exported` is not one written here.

    Only an existing 10-digit directory directly under `export_path` is ours to
    verify. Anything else (what a mocked estimator or a subclass returns, a path
    elsewhere) is returned to the caller unchanged, unverified.
    """
    path = _path_or_none(exported)
    try:
        if path is not None:
            parent, name = os.path.split(path.rstrip("/"))
            if (
                layout.parse_version(name) is not None
                and posixpath.normpath(parent) == posixpath.normpath(export_path.rstrip("/"))
                and tf.io.gfile.isdir(path)
            ):
                return path
    except Exception as e:  # pylint: disable=broad-except
        logger.debug("Cannot tell whether export %r is a version directory: %s", exported, e)
        return None
    logger.debug(
        "Export %r is not a version directory under %s; returned as it is, unverified",
        exported,
        export_path,
    )
    return None


def _missing_parts(version_dir: str) -> List[str]:
    """What a published version lacks; empty when complete or when it cannot be told."""
    try:
        return layout.missing_export_parts(version_dir)
    except Exception as e:  # pylint: disable=broad-except
        logger.warning(
            "Cannot verify that export %s is complete, kept as it is: %s", version_dir, e
        )
        return []


def _temp_dirs(export_path: str) -> Optional[Set[int]]:
    """The `temp-<ts>` directories in `export_path`, or None if it cannot be listed."""
    try:
        return set(layout.list_export_dir(export_path).temp_dirs)
    except (tf.errors.OpError, OSError):
        return None


def _remove_new_temp_dirs(export_path: str, before: Optional[Set[int]]) -> None:
    """Removes the `temp-<ts>` directories that a failed export left; failures are logged."""
    if before is None:
        return  # Unknown which are new: retention removes them once they are stale.
    try:
        for timestamp, path in layout.list_export_dir(export_path).temp_dirs.items():
            if timestamp not in before:
                tf.io.gfile.rmtree(path)
                logger.info("Removed %s, left behind by the failed export", path)
    except (tf.errors.OpError, OSError) as e:
        logger.warning("Cannot remove what the failed export left in %s: %s", export_path, e)


def _raise_if_assets_extra_missing(assets_extra: Mapping[str, str], error: Exception) -> None:
    """Names a missing `assets_extra` source as the cause of a failed export.

    Sources are checked only after a failure: tests and dry runs pass
    placeholder paths to mocked estimators. A missing source fails every export
    alike, so it must stop the evaluator with a clear message rather than count
    as a transient failure that silently skips each export.

    Raises:
      ValueError: naming the first missing source, chained to `error`.
    """
    for destination, source in assets_extra.items():
        try:
            exists = tf.io.gfile.exists(source)
            is_directory = exists and tf.io.gfile.isdir(source)
        except (tf.errors.OpError, OSError):
            continue  # Unknown: the export's own error tells more.
        if is_directory:
            raise ValueError(
                f"`assets_extra` source {source!r} (for {destination!r}) is a directory, so "
                f"the export failed ({type(error).__name__}: {error}). assets_extra copies "
                "files: name each file, e.g. {'vocab/words.txt': '/data/vocab/words.txt'}."
            ) from error
        if not exists:
            raise ValueError(
                f"`assets_extra` source file {source!r} (for {destination!r}) does not exist, so "
                f"the export failed ({type(error).__name__}: {error}). Fix `assets_extra`: each "
                "value must be an existing file to copy into assets.extra."
            ) from error


def _checkpoint_exists(checkpoint: str) -> bool:
    try:
        # V2 checkpoints are a prefix with an .index file; V1 a single file.
        return tf.io.gfile.exists(checkpoint + ".index") or tf.io.gfile.exists(checkpoint)
    except (tf.errors.OpError, OSError):
        return False


def _checked_assets_extra(assets_extra: Any) -> Dict[str, str]:
    """Checks `assets_extra` and returns it as a dict of str to str."""
    if assets_extra is None:
        return {}
    if not isinstance(assets_extra, collections.abc.Mapping):
        raise ValueError(
            "`assets_extra` must be a mapping from a destination path relative to "
            "assets.extra to a source file, e.g. {'vocab.txt': '/data/vocab.txt'}. "
            f"Received: assets_extra={assets_extra!r}"
        )
    checked = {}
    for destination, source in assets_extra.items():
        destination_text = (
            layout.as_path(destination) if isinstance(destination, bytes) else destination
        )
        normalized = (
            posixpath.normpath(destination_text) if isinstance(destination_text, str) else ""
        )
        if (
            not isinstance(destination_text, str)
            or not destination_text
            or posixpath.isabs(destination_text)
            or normalized in (".", "..")
            or normalized.startswith("../")
        ):
            raise ValueError(
                "`assets_extra` keys must be paths relative to the export's assets.extra "
                f"directory, such as 'vocab.txt'. Received key: {destination!r}"
            )
        if posixpath.normpath(destination_text) == layout.RECORD_ASSET_NAME:
            raise ValueError(
                f"`assets_extra` key {destination!r} is reserved: BestExporter writes each "
                f"export's record to assets.extra/{layout.RECORD_ASSET_NAME}. Use another name."
            )
        source_text = layout.as_path(source) if isinstance(source, bytes) else source
        if isinstance(source_text, os.PathLike):
            source_text = os.fspath(source_text)
        if not isinstance(source_text, str) or not source_text:
            raise ValueError(
                f"`assets_extra` values must be paths of files to copy. Received: "
                f"{destination!r}: {source!r}"
            )
        # Existence is checked when an export fails, not here: unit tests pass
        # placeholder paths with a mocked estimator, as upstream's own tests do.
        # A directory cannot be copied and fails every export: rejected now if it
        # is one now (isdir answers False for a placeholder that does not exist),
        # and named when an export fails if it became one later.
        if tf.io.gfile.isdir(source_text):
            raise ValueError(
                f"`assets_extra` source {source_text!r} (for {destination!r}) is a directory; "
                "assets_extra copies files. Name each file, e.g. "
                "{'vocab/words.txt': '/data/vocab/words.txt'}."
            )
        checked[destination_text] = source_text
    return checked
