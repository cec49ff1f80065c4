"""`_legacy.py`: subclasses of the original `BestExporter`, as public projects wrote them.

Each subclass below follows a real one (named in the comment above it) and is
built on both exporters: the original is the reference, ours must behave the
same where the original works, and add its record and its safe retention. The
fake estimator keeps most tests fast; the last one runs both patterns with a real
Estimator.
"""

import json
import os
from typing import Any, Dict, List

import pytest
import tensorflow as tf
from tensorflow_estimator.python.estimator.exporter import _SavedModelExporter

from best_exporter import BestExporter, higher_is_better, read_export_records
from tests import support

Original = tf.estimator.BestExporter
BASES = [pytest.param(BestExporter, id="best_exporter"), pytest.param(Original, id="original")]


def _export_path(model_dir: str, name: str) -> str:
    path = os.path.join(model_dir, "export", name)
    tf.io.gfile.makedirs(path)  # The evaluator's export path exists in practice.
    return path


def _versions(export_path: str) -> List[str]:
    return sorted(
        n.rstrip("/") for n in tf.io.gfile.listdir(export_path) if n.rstrip("/").isdigit()
    )


def _checkpoint(model_dir: str, step: int) -> str:
    """A V2 checkpoint's files, as the subclasses copy them (`prefix.*`)."""
    prefix = os.path.join(model_dir, f"model.ckpt-{step}")
    for suffix in (".index", ".data-00000-of-00001", ".meta"):
        with tf.io.gfile.GFile(prefix + suffix, "w") as f:
            f.write(f"step {step}")
    return prefix


# ----------------------------------------------------------------------------
# google-research/language, language/common/utils/exporters.py (used by ORQA):
# super().export(), then reads self._best_eval_result to write the best
# checkpoint and metrics beside the exports.


def _language_exporter(base):
    class BestSavedModelAndCheckpointExporter(base):
        def __init__(
            self,
            eval_spec_name,
            serving_input_receiver_fn,
            compare_fn=None,
            metric_name=None,
            higher_is_better=True,
        ):
            self._metric_name = metric_name

            def _default_compare_fn(best_eval_result, current_eval_result):
                if higher_is_better:
                    return current_eval_result[metric_name] > best_eval_result[metric_name]
                return current_eval_result[metric_name] < best_eval_result[metric_name]

            super().__init__(
                name="best_%s" % eval_spec_name,
                serving_input_receiver_fn=serving_input_receiver_fn,
                event_file_pattern="eval_%s/*.tfevents.*" % eval_spec_name,
                compare_fn=compare_fn or _default_compare_fn,
            )

        def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
            exported_dir = super().export(
                estimator=estimator,
                export_path=export_path,
                checkpoint_path=checkpoint_path,
                eval_result=eval_result,
                is_the_final_export=is_the_final_export,
            )
            if exported_dir is None:
                return None
            checkpoint_dir = os.path.join(export_path, "checkpoint")
            if tf.io.gfile.exists(checkpoint_dir):
                tf.io.gfile.rmtree(checkpoint_dir)
            tf.io.gfile.makedirs(checkpoint_dir)
            for path in tf.io.gfile.glob(checkpoint_path + ".*"):
                tf.io.gfile.copy(path, os.path.join(checkpoint_dir, os.path.basename(path)))
            all_metrics = "".join(
                "  %r: %r,\n" % (name, metric)
                for name, metric in sorted(self._best_eval_result.items())
            )
            _write(os.path.join(export_path, "all_metrics.txt"), "{\n" + all_metrics + "}\n")
            _write(
                os.path.join(export_path, "best_metric.txt"),
                "%d %r\n"
                % (
                    self._best_eval_result["global_step"],
                    self._best_eval_result[self._metric_name],
                ),
            )
            _write(
                os.path.join(export_path, "best_saved_model.txt"),
                tf.compat.as_str(exported_dir) + "\n",
            )
            return exported_dir

    return BestSavedModelAndCheckpointExporter


def _write(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _read(path: str) -> str:
    with tf.io.gfile.GFile(path) as f:
        return f.read()


@pytest.mark.parametrize("base", BASES)
def test_subclass_reading_the_best_after_super_export_keeps_the_best_checkpoint(
    base, tmp_path
) -> None:
    model_dir = str(tmp_path)
    exporter = _language_exporter(base)(
        "default", support.serving_input_receiver_fn_stub, metric_name="accuracy"
    )
    estimator = support.FakeEstimator(model_dir)
    export_path = _export_path(model_dir, exporter.name)

    exported = {}
    for step, accuracy in [(100, 0.5), (200, 0.4), (300, 0.7)]:
        result = support.eval_result(step, accuracy=accuracy, loss=1 - accuracy)
        exported[step] = exporter.export(
            estimator, export_path, _checkpoint(model_dir, step), result, False
        )

    assert exported[200] is None
    assert exporter.name == "best_default"
    assert _read(os.path.join(export_path, "best_metric.txt")).startswith("300 ")
    assert tf.compat.as_str(exported[300]) in _read(
        os.path.join(export_path, "best_saved_model.txt")
    )
    copied = sorted(tf.io.gfile.listdir(os.path.join(export_path, "checkpoint")))
    assert copied == [f"model.ckpt-300{s}" for s in (".data-00000-of-00001", ".index", ".meta")]
    assert "'accuracy'" in _read(os.path.join(export_path, "all_metrics.txt"))
    assert _versions(export_path) == ["1700000000", "1700000001"]


def test_subclass_reading_the_best_gets_the_exported_result_with_its_step(tmp_path) -> None:
    exporter = _language_exporter(BestExporter)(
        "default", support.serving_input_receiver_fn_stub, metric_name="accuracy"
    )
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    result = support.eval_result(100, accuracy=0.5)
    exporter.export(estimator, export_path, _checkpoint(str(tmp_path), 100), result, False)
    assert exporter._best_eval_result == result
    # A copy: a subclass that mutates it does not change our best.
    exporter._best_eval_result.clear()
    assert exporter.best_eval_result == result


# ----------------------------------------------------------------------------
# tilaboy/tk-nn-classifier, tk_nn_classifier/classifiers/tf_best_export.py:
# its own decision, then _saved_model_exporter.export(), an assignment of
# _best_eval_result and _garbage_collect_exports(). A variant seen in other
# projects calls self._compare_fn positionally.


def _tk_nn_exporter(base, use_compare_fn: bool = False):
    class BestCheckpointsExporter(base):
        def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
            if use_compare_fn:
                better = self._best_eval_result is None or self._compare_fn(
                    self._best_eval_result, eval_result
                )
            else:
                better = (
                    self._best_eval_result is None
                    or self._best_eval_result["accuracy"] < eval_result["accuracy"]
                )
            if better:
                tf.compat.v1.logging.info(
                    "Exporting a better model ({} instead of {})...".format(
                        eval_result, self._best_eval_result
                    )
                )
                result = self._saved_model_exporter.export(
                    estimator, export_path, checkpoint_path, eval_result, is_the_final_export
                )
                self._best_eval_result = eval_result
                self._garbage_collect_exports(export_path)
                return result
            tf.compat.v1.logging.info(
                "Keeping the current best model ({} instead of {}).".format(
                    self._best_eval_result, eval_result
                )
            )

    return BestCheckpointsExporter


@pytest.mark.parametrize("use_compare_fn", [False, True], ids=["own-decision", "compare_fn"])
@pytest.mark.parametrize("base", BASES)
def test_subclass_with_its_own_decision_exports_and_prunes(
    base, use_compare_fn: bool, tmp_path
) -> None:
    model_dir = str(tmp_path)
    exporter = _tk_nn_exporter(base, use_compare_fn)(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        compare_fn=higher_is_better("accuracy") if base is BestExporter else _accuracy_larger,
        exports_to_keep=1,
    )
    estimator = support.FakeEstimator(model_dir)
    export_path = _export_path(model_dir, exporter.name)

    returned = [
        exporter.export(estimator, export_path, None, support.eval_result(step, accuracy=a), False)
        for step, a in [(1, 0.5), (2, 0.4), (3, 0.7)]
    ]

    assert returned[1] is None
    assert returned[2] == os.path.join(export_path, "1700000001").encode()
    assert _versions(export_path) == ["1700000001"]
    assert exporter._best_eval_result["accuracy"] == pytest.approx(0.7)


def _accuracy_larger(best_eval_result, current_eval_result):
    return best_eval_result["accuracy"] < current_eval_result["accuracy"]


def test_subclass_exports_carry_records_and_the_assigned_best_is_protected(tmp_path) -> None:
    model_dir = str(tmp_path)
    exporter = _tk_nn_exporter(BestExporter)(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub, exports_to_keep=1
    )
    estimator = support.FakeEstimator(model_dir)
    export_path = _export_path(model_dir, exporter.name)
    for step, accuracy in [(1, 0.5), (2, 0.7)]:
        exporter.export(
            estimator, export_path, None, support.eval_result(step, accuracy=accuracy), False
        )

    (export,) = read_export_records(export_path)
    assert export.eval_result == {"accuracy": pytest.approx(0.7), "global_step": 2}
    assert exporter.best_export_path == export.path
    assert exporter.best_eval_result["global_step"] == 2


def test_subclass_export_after_a_restart_sees_the_best_restored_from_records(tmp_path) -> None:
    model_dir = str(tmp_path)
    estimator = support.FakeEstimator(model_dir)
    first = _tk_nn_exporter(BestExporter)(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub
    )
    export_path = _export_path(model_dir, first.name)
    first.export(estimator, export_path, None, support.eval_result(1, accuracy=0.9), False)

    restarted = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    assert restarted._best_eval_result is None  # Nothing is read before the first export.
    restarted._garbage_collect_exports(export_path)
    assert _versions(export_path) == ["1700000000"]


def test_best_assigned_before_the_first_export_is_a_threshold(tmp_path) -> None:
    exporter = BestExporter(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        compare_fn=higher_is_better("accuracy"),
    )
    exporter._best_eval_result = {"accuracy": 0.8}
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    assert (
        exporter.export(estimator, export_path, None, support.eval_result(1, accuracy=0.7), False)
        is None
    )
    assert exporter.export(
        estimator, export_path, None, support.eval_result(2, accuracy=0.9), False
    )


def test_best_assigned_before_super_init_is_replaced_by_the_constructor() -> None:
    class EarlyAssignment(BestExporter):
        def __init__(self, **kwargs):
            self._best_eval_result = None
            super().__init__(**kwargs)

    exporter = EarlyAssignment(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    assert exporter._best_eval_result is None


def test_assigned_best_is_not_linked_to_an_export_that_failed(tmp_path) -> None:
    exporter = _tk_nn_exporter(BestExporter)(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub, exports_to_keep=1
    )
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    first = support.eval_result(1, accuracy=0.5)
    exporter.export(estimator, export_path, None, first, False)
    estimator.error = tf.errors.UnavailableError(None, None, "disk")
    assert (
        exporter.export(estimator, export_path, None, support.eval_result(2, accuracy=0.7), False)
        is None
    )
    # The subclass made the failed result its best; the model on disk stays protected.
    exporter._garbage_collect_exports(export_path)
    assert _versions(export_path) == ["1700000000"]
    assert exporter.best_export_path == os.path.join(export_path, "1700000000")


def test_assigning_none_forgets_the_best(tmp_path) -> None:
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    assert exporter.export(estimator, export_path, None, support.eval_result(1, loss=0.1), False)
    exporter._best_eval_result = None
    assert exporter.export(estimator, export_path, None, support.eval_result(2, loss=0.5), False)


# ----------------------------------------------------------------------------
# jgung/verbnet-parsing, tfnlp/common/export.py: replaces _saved_model_exporter
# with a new upstream _SavedModelExporter in __init__.


def _verbnet_exporter(base):
    class BesterExporter(base):
        def __init__(self, serving_input_receiver_fn=None, compare_fn=None, exports_to_keep=5):
            super().__init__(
                serving_input_receiver_fn=serving_input_receiver_fn,
                compare_fn=compare_fn,
                exports_to_keep=exports_to_keep,
            )
            self._saved_model_exporter = _SavedModelExporter(
                "best_exporter",
                serving_input_receiver_fn=serving_input_receiver_fn,
                assets_extra=None,
                as_text=False,
            )

    return BesterExporter


@pytest.mark.parametrize("base", BASES)
def test_subclass_replacing_the_saved_model_exporter_still_exports(base, tmp_path) -> None:
    exporter = _verbnet_exporter(base)(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        compare_fn=_accuracy_larger,
    )
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    assert exporter.name == "best_exporter"
    assert exporter.export(
        estimator, export_path, None, support.eval_result(1, accuracy=0.5), False
    )
    assert (
        exporter.export(estimator, export_path, None, support.eval_result(2, accuracy=0.4), False)
        is None
    )
    assert _versions(export_path) == ["1700000000"]


def test_replacing_the_saved_model_exporter_adopts_its_settings_checked(tmp_path) -> None:
    source = tmp_path / "vocab.txt"
    source.write_text("red\n")
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    exporter._saved_model_exporter = _SavedModelExporter(
        "renamed", support.serving_input_receiver_fn_stub, {"vocab.txt": str(source)}, True
    )
    estimator = support.FakeEstimator(str(tmp_path))
    exporter.export(
        estimator,
        _export_path(str(tmp_path), "renamed"),
        None,
        support.eval_result(1, loss=0.5),
        False,
    )
    assert exporter.name == exporter._saved_model_exporter.name == "renamed"
    (call,) = estimator.calls
    assert call["as_text"] is True
    assert set(call["assets_extra"]) == {"vocab.txt", "eval_result.json"}

    with pytest.raises(ValueError, match=r"Received key: '/abs'"):
        exporter._saved_model_exporter = _SavedModelExporter(
            "x", support.serving_input_receiver_fn_stub, {"/abs": str(source)}, False
        )
    with pytest.raises(ValueError, match=r"can only be replaced by .*Received: 3"):
        exporter._saved_model_exporter = 3


# ----------------------------------------------------------------------------
# The other attributes, with the original's meaning.


@pytest.mark.parametrize("base", BASES)
def test_plain_attributes_have_the_original_meaning(base, tmp_path) -> None:
    compare_fn = _accuracy_larger
    exporter = base(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        event_file_pattern="eval_x/*.tfevents.*",
        compare_fn=compare_fn,
        exports_to_keep=3,
    )
    assert exporter._compare_fn is compare_fn
    assert exporter._exports_to_keep == 3
    assert exporter._event_file_pattern == "eval_x/*.tfevents.*"
    assert exporter._model_dir is None
    estimator = support.FakeEstimator(str(tmp_path))
    exporter.export(
        estimator,
        _export_path(str(tmp_path), exporter.name),
        None,
        support.eval_result(1, accuracy=0.5),
        False,
    )
    assert exporter._model_dir == str(tmp_path)


def test_assigned_compare_fn_is_checked_and_used(tmp_path) -> None:
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    with pytest.raises(ValueError, match="must include current_eval_result"):
        exporter._compare_fn = lambda best_eval_result: True
    exporter._compare_fn = _accuracy_larger
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    assert exporter.export(
        estimator, export_path, None, support.eval_result(1, accuracy=0.5), False
    )
    assert exporter.export(
        estimator, export_path, None, support.eval_result(2, accuracy=0.6), False
    )


def test_assigning_another_model_dir_restores_at_the_next_export(tmp_path) -> None:
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    exporter.export(estimator, export_path, None, support.eval_result(1, loss=0.5), False)
    exporter._model_dir = None
    assert exporter._model_dir is None
    # Restored from the record on disk: a worse model is still not exported.
    assert (
        exporter.export(estimator, export_path, None, support.eval_result(2, loss=0.6), False)
        is None
    )
    assert exporter._model_dir == str(tmp_path)


@pytest.mark.parametrize("base", BASES)
def test_get_best_eval_result_reads_the_best_of_the_event_files(base, tmp_path) -> None:
    support.write_legacy_events(
        str(tmp_path / "eval"), [(1, {"loss": 0.5}), (2, {"loss": 0.3}), (3, {"loss": 0.4})]
    )
    exporter = base(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    best = exporter._get_best_eval_result(str(tmp_path / "eval" / "*.tfevents.*"))
    assert best["loss"] == pytest.approx(0.3)
    assert exporter._get_best_eval_result(None) is None
    assert exporter._get_best_eval_result(str(tmp_path / "none" / "*")) is None


@pytest.mark.parametrize(
    "base",
    [
        pytest.param(BestExporter, id="best_exporter"),
        pytest.param(
            Original,
            id="original",
            marks=pytest.mark.xfail(
                strict=True, raises=ValueError, reason="an event without loss raises"
            ),
        ),
    ],
)
def test_get_best_eval_result_survives_what_kills_the_original(base, tmp_path) -> None:
    path = support.write_legacy_events(
        str(tmp_path / "eval"), [(1, {"accuracy": 0.9}), (2, {"loss": 0.3})]
    )
    with tf.io.gfile.GFile(path, "ab") as f:
        f.write(b"\x00\x01truncated")
    exporter = base(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    best = exporter._get_best_eval_result(str(tmp_path / "eval" / "*.tfevents.*"))
    assert best["loss"] == pytest.approx(0.3)


@pytest.mark.parametrize("base", BASES)
def test_garbage_collect_exports_keeps_the_newest(base, tmp_path) -> None:
    export_path = _export_path(str(tmp_path), "best_exporter")
    for version in range(1_600_000_000, 1_600_000_004):
        tf.io.gfile.makedirs(os.path.join(export_path, str(version)))
    exporter = base(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub, exports_to_keep=2
    )
    exporter._garbage_collect_exports(export_path)
    assert _versions(export_path) == ["1600000002", "1600000003"]


def test_record_of_a_requested_export_holds_its_eval_result(tmp_path) -> None:
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(str(tmp_path))
    export_path = _export_path(str(tmp_path), exporter.name)
    exported = exporter._saved_model_exporter.export(
        estimator, export_path, None, support.eval_result(7, loss=0.25), False
    )
    record_file = os.path.join(exported.decode(), "assets.extra", "eval_result.json")
    record: Dict[str, Any] = json.loads(_read(record_file))
    assert record["global_step"] == 7
    assert record["metrics"] == {"loss": 0.25}
    # The caller decides: a requested export does not change the best.
    assert exporter._best_eval_result is None


# ----------------------------------------------------------------------------
# Both subclass patterns in one EvalSpec, with a real Estimator.


@pytest.mark.e2e
def test_subclass_patterns_with_a_real_estimator(tmp_path) -> None:
    model_dir = str(tmp_path / "model")
    language = _language_exporter(BestExporter)(
        "default", support.serving_input_receiver_fn, metric_name="accuracy"
    )
    tk_nn = _tk_nn_exporter(BestExporter)(
        name="best_tk",
        serving_input_receiver_fn=support.serving_input_receiver_fn,
        exports_to_keep=1,
    )

    support.train_and_evaluate(support.make_classifier(model_dir), [language, tk_nn], max_steps=80)

    language_path = os.path.join(model_dir, "export", "best_default")
    exports = read_export_records(language_path)
    step, _ = _read(os.path.join(language_path, "best_metric.txt")).split()
    assert int(step) == exports[-1].record["global_step"]
    assert tf.io.gfile.exists(os.path.join(language_path, "checkpoint", f"model.ckpt-{step}.index"))
    assert _read(os.path.join(language_path, "best_saved_model.txt")).strip() == exports[-1].path
    assert support.serve(exports[-1].path).shape == (2, 2)

    (kept,) = read_export_records(os.path.join(model_dir, "export", "best_tk"))
    assert kept.eval_result["accuracy"] == pytest.approx(tk_nn._best_eval_result["accuracy"])
    assert support.serve(kept.path).shape == (2, 2)
