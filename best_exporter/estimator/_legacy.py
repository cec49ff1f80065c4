"""The private attributes of `tf.estimator.BestExporter` that public subclasses use.

Subclasses of the original reach into it. google-research/language reads the
best result after `super().export()`:

```python
exported = super().export(estimator, export_path, checkpoint_path, eval_result, final)
if exported is not None:
    step = self._best_eval_result["global_step"]
```

Others (tk-nn-classifier, and many copies of it) replace the decision and keep
the rest:

```python
if self._best_eval_result is None or better(self._best_eval_result, eval_result):
    result = self._saved_model_exporter.export(
        estimator, export_path, checkpoint_path, eval_result, is_the_final_export)
    self._best_eval_result = eval_result
    self._garbage_collect_exports(export_path)
    return result
```

and verbnet-parsing assigns `self._saved_model_exporter` a new
`_SavedModelExporter(name, serving_input_receiver_fn, assets_extra, as_text)`.

`LegacyAttributes` gives `BestExporter` these names with the original's
meaning, each routed through this library's implementation, so that such a
subclass keeps working after `tf.estimator.BestExporter` becomes
`best_exporter.BestExporter`:

| attribute | here |
| --- | --- |
| `_best_eval_result` | the best result; assigning it sets the best |
| `_saved_model_exporter.export(...)` | an export, unconditional, with its record |
| `_saved_model_exporter = ...` | adopts its name, receiver, assets_extra, as_text |
| `_garbage_collect_exports(export_dir_base)` | this library's retention |
| `_get_best_eval_result(event_files)` | the best of the event files, read tolerantly |
| `_compare_fn` | the compare_fn; assigning it checks it |
| `_model_dir` | the model_dir restored from; assigning another restores again |

`_exports_to_keep` and `_event_file_pattern` are plain attributes of
`BestExporter` with the original's meaning. Nothing here decides anything: it
translates the original's names into calls of the exporter's own methods.
"""

from typing import Any, Dict, Mapping, Optional, Union

from best_exporter.core import layout, retention
from best_exporter.core.compare import CompareFn, check_compare_fn
from best_exporter.core.decision import Best, Judge, Source
from best_exporter.core.history import scan_eval_history
from best_exporter.core.log import logger


class SavedModelExporterShim:
    """What `BestExporter._saved_model_exporter` is: the original's export step.

    Args:
      exporter: the `BestExporter` it exports for.
    """

    def __init__(self, exporter: "LegacyAttributes"):
        self._exporter = exporter

    @property
    def name(self) -> str:
        """The exporter's name, as the original's `_SavedModelExporter.name`."""
        return self._exporter._name

    def export(
        self,
        estimator: Any,
        export_path: Union[str, bytes],
        checkpoint_path: Optional[Union[str, bytes]],
        eval_result: Optional[Mapping[str, Any]],
        is_the_final_export: bool,
    ) -> Any:
        """Exports unconditionally, with the record; None if the export failed.

        The caller decides; the best is not changed here (the original's
        subclasses assign `_best_eval_result` next).

        Args:
          estimator: the `Estimator` to export.
          export_path: where versions are written.
          checkpoint_path: the checkpoint to export.
          eval_result: its eval result, written to the export's record.
          is_the_final_export: unused, as in the original.

        Returns:
          What the estimator returned, or None if the export failed.
        """
        del is_the_final_export
        return self._exporter._export_on_request(
            estimator, export_path, checkpoint_path, eval_result
        )


class LegacyAttributes:
    """The original `BestExporter`'s private attributes, for its public subclasses.

    A mixin of `BestExporter`, which provides `_state`, `_state_for`,
    `_write_export`, `_prune`, `_judge`, `_warn_skipped`, `_assign_best`,
    `_configure_export`, `_prefix` and `_name`.
    """

    # None until BestExporter.__init__ runs: some subclasses assign attributes
    # before they call it.
    _state: Any = None
    _judge: Judge
    _name: str
    _exports_to_keep: Optional[int]
    # The last export made through `_saved_model_exporter`, so that assigning
    # its eval_result to `_best_eval_result` links the best to its version.
    _requested_export: Optional[Dict[str, Any]] = None

    @property
    def _best_eval_result(self) -> Optional[Dict[str, Any]]:
        """The result a model has to beat, or None; a copy."""
        best = self._state.best if self._state is not None else None
        return dict(best.eval_result) if best is not None else None

    @_best_eval_result.setter
    def _best_eval_result(self, eval_result: Optional[Mapping[str, Any]]) -> None:
        requested = self._requested_export
        export_path = None
        if requested is not None and requested["eval_result"] is eval_result:
            export_path = requested["path"]
        self._assign_best(eval_result, export_path)  # type: ignore[attr-defined]

    @property
    def _saved_model_exporter(self) -> SavedModelExporterShim:
        return SavedModelExporterShim(self)

    @_saved_model_exporter.setter
    def _saved_model_exporter(self, saved_model_exporter: Any) -> None:
        """Adopts the settings of an original `_SavedModelExporter`, checked as at construction."""
        if isinstance(saved_model_exporter, SavedModelExporterShim):
            return
        settings = ("_serving_input_receiver_fn", "_assets_extra", "_as_text")
        if not all(hasattr(saved_model_exporter, name) for name in ("name", *settings)):
            raise ValueError(
                "`_saved_model_exporter` can only be replaced by a "
                "tensorflow_estimator `_SavedModelExporter(name, serving_input_receiver_fn, "
                "assets_extra, as_text)`, whose settings are adopted. "
                f"Received: {saved_model_exporter!r}"
            )
        self._configure_export(  # type: ignore[attr-defined]
            name=saved_model_exporter.name,
            serving_input_receiver_fn=saved_model_exporter._serving_input_receiver_fn,
            assets_extra=saved_model_exporter._assets_extra,
            as_text=saved_model_exporter._as_text,
        )

    def _garbage_collect_exports(self, export_dir_base: Union[str, bytes]) -> None:
        """Deletes all but the newest `_exports_to_keep` versions, never the best.

        Args:
          export_dir_base: the export path, as the original takes it.
        """
        export_path = layout.as_path(export_dir_base)
        if self._state is None:
            retention.prune_export_dir(export_path, self._exports_to_keep)
            return
        self._prune(export_path, self._state)  # type: ignore[attr-defined]

    def _get_best_eval_result(self, event_files: Optional[str]) -> Optional[Dict[str, Any]]:
        """The best eval result in the event files, or None.

        Unlike the original, truncated or corrupt files, TF2 scalars, events
        without the metric and NaN results cost a log line, never an exception.

        Args:
          event_files: an absolute glob of event files.

        Returns:
          The best result by `compare_fn`, with its `global_step`; None if no
          event holds one.
        """
        if not event_files:
            return None
        scan = scan_eval_history(layout.as_path(event_files), metric=self._judge.metric)
        best, skipped = self._judge.best_of(Best(e, Source.EVENTS) for e in scan)
        for cause in skipped.values():
            self._warn_skipped(cause)  # type: ignore[attr-defined]
        return dict(best.eval_result) if best is not None else None

    @property
    def _compare_fn(self) -> CompareFn:
        return self._judge.compare_fn

    @_compare_fn.setter
    def _compare_fn(self, compare_fn: CompareFn) -> None:
        check_compare_fn(compare_fn)
        self._judge = Judge(compare_fn)

    @property
    def _model_dir(self) -> Optional[str]:
        """The model_dir the best was restored for, None before the first export."""
        return self._state.model_dir if self._state is not None else None

    @_model_dir.setter
    def _model_dir(self, model_dir: Optional[str]) -> None:
        # The original reloads its best when the model_dir differs; so do we,
        # at the next export.
        if self._state is not None and model_dir != self._state.model_dir:
            self._state = None

    def _export_on_request(
        self,
        estimator: Any,
        export_path: Union[str, bytes],
        checkpoint_path: Optional[Union[str, bytes]],
        eval_result: Optional[Mapping[str, Any]],
    ) -> Any:
        """An export that a subclass decided on: written with its record, checked, logged."""
        self._requested_export = None
        path = layout.as_path(export_path)
        state = self._state_for(estimator.model_dir, path, eval_result or {})  # type: ignore
        if state is None:
            return None  # The exports cannot be read: nothing is exported (restore.py).
        exported = self._write_export(  # type: ignore[attr-defined]
            estimator, path, checkpoint_path, eval_result, state
        )
        if exported is None:
            return None
        version_path = layout.as_path(exported) if isinstance(exported, (str, bytes)) else None
        self._requested_export = {"eval_result": eval_result, "path": version_path}
        logger.info(
            "%s: exported step %s on request of a subclass -> %s",
            self._prefix,  # type: ignore[attr-defined]
            (eval_result or {}).get("global_step"),
            version_path or repr(exported),
        )
        return exported
