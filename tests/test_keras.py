"""Tests of best_exporter.keras: BestExportCallback with real tiny Keras models.

Runs with tf.keras on TensorFlow 2.13-2.15 and with Keras 3 on TensorFlow 2.16+.
Most tests call the callback's hooks as `fit` does, with scripted metrics and a
real model, so that each decision is exact; the `fit` tests show the same
through Keras itself.
"""

import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import keras_support
import numpy as np
import pytest
import tensorflow as tf
from keras_support import keras

from best_exporter import _compat, read_export_records
from best_exporter.core import history, layout, publish
from best_exporter.keras import BestExportCallback, infer_higher_is_better

LOGGER = "tensorflow.best_exporter"
OLD = 1_600_000_000  # Versions written before a test starts.


@pytest.fixture(scope="module")
def model():
    return keras_support.make_model()


def _export_dir(tmp_path) -> str:
    return str(tmp_path / "model" / "export" / "best_exporter")


def _callback(export_dir: str, model, **kwargs) -> BestExportCallback:
    callback = BestExportCallback(export_dir, **kwargs)
    callback.set_model(model)
    callback.on_train_begin()
    return callback


def _run_epochs(callback: BestExportCallback, logs: Sequence[Dict[str, float]]) -> None:
    """Calls the epoch hooks as fit does, one epoch per logs dict."""
    for epoch, epoch_logs in enumerate(logs):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, dict(epoch_logs))


def _recorded(export_dir: str, metric: str = "val_loss") -> List[float]:
    return [export.record["metrics"][metric] for export in read_export_records(export_dir)]


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


# ----------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(export_dir=""), r"`export_dir` must be .* Received: export_dir=''"),
        (dict(export_dir=None), r"Received: export_dir=None"),
        (dict(monitor=""), r"`monitor` must be .* Received: monitor=''"),
        (dict(mode="minimum"), r"`mode` must be 'auto', 'min' or 'max'. Received: mode='minimum'"),
        (dict(min_delta=-0.1), r"`min_delta` must be a finite number >= 0.*min_delta=-0.1"),
        (dict(exports_to_keep=0), r"`exports_to_keep`, if provided, must be a positive number"),
        (dict(exports_to_keep=2.5), r"Received: exports_to_keep=2.5"),
        (dict(save_freq="batch"), r"`save_freq` must be 'epoch' or .* Received: save_freq='batch'"),
        (dict(save_freq=0), r"Received: save_freq=0"),
        (dict(save_freq=True), r"Received: save_freq=True"),
        (dict(export_fn="model.export"), r"`export_fn` must be a callable"),
        (
            dict(metric_names={"val_loss": 1}),
            r"`metric_names` must map .*metric_names=\{'val_loss': 1\}",
        ),
        (dict(metric_names=["val_loss"]), r"Received: metric_names=\['val_loss'\]"),
        (
            dict(compare_fn=lambda best, current: True),
            r"must include best_eval_result argument",
        ),
        (
            dict(compare_fn=lambda best_eval_result, current_eval_result: True, min_delta=0.1),
            r"`min_delta` applies to `monitor`",
        ),
    ],
)
def test_invalid_argument_raises_value_error_naming_the_value(kwargs, match: str) -> None:
    kwargs.setdefault("export_dir", "/tmp/export")
    with pytest.raises(ValueError, match=match):
        BestExportCallback(**kwargs)


@pytest.mark.parametrize(
    "monitor, higher",
    [
        ("val_loss", False),
        ("loss", False),
        ("val_mean_squared_error", False),
        ("val_mae", False),
        ("reconstruction_loss", False),
        ("val_accuracy", True),
        ("acc", True),
        ("val_binary_accuracy", True),
        ("val_sparse_categorical_accuracy", True),
        ("val_auc", True),
        ("auc_1", True),
        ("val_precision", True),
        ("recall", True),
    ],
)
def test_mode_auto_infers_the_direction_as_keras_does(monitor: str, higher: bool) -> None:
    assert infer_higher_is_better(monitor) is higher


def test_a_pathlike_export_dir_is_accepted(tmp_path) -> None:
    assert BestExportCallback(tmp_path / "export").export_dir == str(tmp_path / "export")


# ----------------------------------------------------------------------------
# Decisions, with a real model


@pytest.mark.parametrize(
    "kwargs, values, exported",
    [
        ({}, [0.5, 0.6, 0.4], [0.5, 0.4]),
        ({}, [0.5, 0.5, 0.5], [0.5]),
        ({}, [math.nan, 0.7, math.nan, 0.6], [0.7, 0.6]),
        ({}, [math.inf, 0.7], [0.7]),
        (dict(min_delta=0.1), [0.5, 0.45, 0.4, 0.29], [0.5, 0.4, 0.29]),
        (dict(mode="max"), [0.5, 0.4, 0.6], [0.5, 0.6]),
    ],
)
def test_only_improvements_are_exported(tmp_path, model, kwargs, values, exported) -> None:
    export_dir = _export_dir(tmp_path)
    callback = _callback(export_dir, model, exports_to_keep=None, **kwargs)

    _run_epochs(callback, [{"loss": 1.0, "val_loss": v} for v in values])

    assert _recorded(export_dir) == exported
    assert callback.best_eval_result["val_loss"] == exported[-1]
    assert callback.best_export_path == read_export_records(export_dir)[-1].path


def test_mode_auto_maximises_accuracy(tmp_path, model) -> None:
    export_dir = _export_dir(tmp_path)
    callback = _callback(export_dir, model, monitor="val_accuracy")

    _run_epochs(callback, [{"val_accuracy": v, "val_loss": 1.0} for v in (0.6, 0.5, 0.7, 0.7)])

    assert _recorded(export_dir, "val_accuracy") == [0.6, 0.7]


def test_compare_fn_replaces_monitor_and_mode(tmp_path, model) -> None:
    export_dir = _export_dir(tmp_path)

    def lower_loss_and_higher_accuracy(best_eval_result, current_eval_result):
        return (
            current_eval_result["val_loss"] < best_eval_result["val_loss"]
            and current_eval_result["val_accuracy"] > best_eval_result["val_accuracy"]
        )

    callback = _callback(export_dir, model, compare_fn=lower_loss_and_higher_accuracy)
    _run_epochs(
        callback,
        [
            {"val_loss": 0.5, "val_accuracy": 0.7},
            {"val_loss": 0.4, "val_accuracy": 0.6},
            {"val_loss": 0.5, "val_accuracy": 0.8},
            {"val_loss": 0.3, "val_accuracy": 0.9},
        ],
    )

    assert _recorded(export_dir, "val_accuracy") == [0.7, 0.9]


def test_missing_monitored_metric_raises_listing_the_logs_keys(tmp_path, model) -> None:
    callback = _callback(_export_dir(tmp_path), model)
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*they have \['accuracy', 'loss'\]"):
        _run_epochs(callback, [{"loss": 0.5, "accuracy": 0.5}])
    assert not tf.io.gfile.exists(_export_dir(tmp_path))


def test_record_has_the_global_step_the_epoch_and_the_logs(tmp_path) -> None:
    model = keras_support.make_model()
    x, y = keras_support.make_data(64, seed=0)
    export_dir = _export_dir(tmp_path)
    callback = BestExportCallback(export_dir, monitor="loss", exports_to_keep=None)

    model.fit(
        x, y, validation_data=(x, y), batch_size=16, epochs=2, verbose=0, callbacks=[callback]
    )

    exports = read_export_records(export_dir)
    assert [e.record["global_step"] for e in exports] == [4, 8][: len(exports)]
    assert [e.record["epoch"] for e in exports] == [1, 2][: len(exports)]
    first = exports[0].record
    assert set(first["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert first["exporter"] == "best_exporter"
    assert first.get("checkpoint_path") is None  # Null fields are left out when read.
    for export in exports:
        assert layout.missing_export_parts(export.path) == []


def test_export_loads_and_serves_the_models_predictions(tmp_path) -> None:
    model = keras_support.make_model()
    x, y = keras_support.make_data(128, seed=0)
    export_dir = _export_dir(tmp_path)
    callback = BestExportCallback(export_dir)
    model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[callback])

    served = keras_support.serve(callback.best_export_path, x[:8])

    # The callback exports only improvements; the last epoch improved on all before it
    # with this learning rate, so the served model is the trained model.
    assert callback.best_export_path == read_export_records(export_dir)[-1].path
    np.testing.assert_allclose(served, model.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-6)


def test_save_freq_in_batches_judges_the_training_logs(tmp_path) -> None:
    model = keras_support.make_model()
    x, y = keras_support.make_data(128, seed=0)
    export_dir = _export_dir(tmp_path)
    callback = BestExportCallback(export_dir, monitor="loss", save_freq=3, exports_to_keep=None)

    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])

    steps = [e.record["global_step"] for e in read_export_records(export_dir)]
    assert steps and all(step % 3 == 0 for step in steps), steps
    assert set(steps) <= {3, 6, 9, 12, 15}
    assert read_export_records(export_dir)[0].record["epoch"] == 1


def test_batch_save_freq_with_a_validation_metric_raises_with_a_hint(tmp_path) -> None:
    model = keras_support.make_model()
    x, y = keras_support.make_data(32, seed=0)
    callback = BestExportCallback(_export_dir(tmp_path), save_freq=2)
    with pytest.raises(ValueError, match=r"Validation metrics are in the logs only at the end"):
        model.fit(
            x, y, validation_data=(x, y), batch_size=8, epochs=1, verbose=0, callbacks=[callback]
        )


def test_custom_export_fn_writes_the_signature_it_chooses(tmp_path, model) -> None:
    def export_fn(keras_model, path):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="points")])
        def classify(points):
            return {"probability": keras_model(points, training=False)}

        tf.saved_model.save(keras_model, path, signatures={"serving_default": classify})

    export_dir = _export_dir(tmp_path)
    callback = _callback(export_dir, model, export_fn=export_fn)
    _run_epochs(callback, [{"val_loss": 0.5}])

    loaded, signature, input_name = keras_support.serving_fn(callback.best_export_path)
    outputs = signature(points=tf.constant([[0.5, -0.5]]))
    assert input_name == "points"
    assert set(outputs) == {"probability"}
    np.testing.assert_allclose(
        outputs["probability"].numpy(),
        model.predict(np.array([[0.5, -0.5]], np.float32), verbose=0),
        rtol=1e-5,
    )


def test_export_fn_that_writes_no_saved_model_raises_and_leaves_nothing(tmp_path, model) -> None:
    export_dir = _export_dir(tmp_path)
    callback = _callback(export_dir, model, export_fn=lambda model, path: None)
    with pytest.raises(publish.IncompleteExportError, match=r"without writing saved_model.pb"):
        _run_epochs(callback, [{"val_loss": 0.5}])
    assert tf.io.gfile.listdir(export_dir) == []
    assert callback.best_eval_result is None


@pytest.mark.parametrize(
    "error",
    [tf.errors.UnavailableError(None, None, "GCS 503"), OSError(28, "No space left on device")],
)
def test_filesystem_error_while_exporting_is_survived_and_the_best_kept(
    tmp_path, model, caplog, error
) -> None:
    export_dir = _export_dir(tmp_path)
    fail: List[bool] = [False]

    def export_fn(keras_model, path):
        keras_model.export(path) if hasattr(keras_model, "export") else None
        if fail[0]:
            raise error

    callback = _callback(export_dir, model, export_fn=export_fn)
    _run_epochs(callback, [{"val_loss": 0.5}])
    fail[0] = True
    with caplog.at_level(logging.INFO, logger=LOGGER):
        callback.on_epoch_end(1, {"val_loss": 0.4})

    assert _recorded(export_dir) == [0.5]
    assert callback.best_eval_result["val_loss"] == 0.5
    (warning,) = _messages(caplog, logging.WARNING)
    assert "val_loss 0.4 would have been exported, but exporting the model failed" in warning
    assert [n for n in tf.io.gfile.listdir(export_dir) if n.startswith("temp-")] == []


def test_one_log_line_per_decision(tmp_path, model, caplog) -> None:
    export_dir = _export_dir(tmp_path)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        callback = _callback(export_dir, model)
        _run_epochs(callback, [{"val_loss": v} for v in (0.5, 0.6, math.nan, 0.4)])

    lines = _messages(caplog)
    assert "BestExportCallback 'best_exporter': no earlier result to beat (0 exports" in lines[0]
    assert "exported step 0 (epoch 1): val_loss 0.5, the first export" in lines[1]
    assert (
        "not exported step 0 (epoch 2): val_loss 0.6 is no improvement over the best "
        "val_loss 0.5 (step 0, this run)" in lines[2]
    )
    assert "not exported step 0 (epoch 3): val_loss nan is not a finite number" in lines[3]
    assert "exported step 0 (epoch 4): val_loss 0.4, improves on the best val_loss 0.5" in lines[4]


# ----------------------------------------------------------------------------
# Restarts and the Estimator era


def test_restart_with_a_worse_model_exports_nothing(tmp_path, model, caplog) -> None:
    export_dir = _export_dir(tmp_path)
    first = _callback(export_dir, model)
    _run_epochs(first, [{"val_loss": 0.5}, {"val_loss": 0.4}])

    restarted_model = keras_support.make_model(seed=1)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        restarted = _callback(export_dir, restarted_model)
    assert restarted.best_eval_result["val_loss"] == 0.4
    assert restarted.best_export_path == first.best_export_path
    _run_epochs(restarted, [{"val_loss": 0.45}, {"val_loss": 0.41}])

    assert _recorded(export_dir) == [0.5, 0.4]
    assert "restored the best result from export records: val_loss 0.4" in _messages(caplog)[0]
    _run_epochs(restarted, [{"val_loss": 0.3}])
    assert _recorded(export_dir) == [0.5, 0.4, 0.3]


@pytest.mark.parametrize(
    "checkpoint_callback",
    [
        pytest.param("best_exporter", id="BestExportCallback"),
        pytest.param(
            "ModelCheckpoint",
            id="ModelCheckpoint",
            marks=pytest.mark.xfail(
                strict=True,
                reason="keras-team/keras#17012: save_best_only forgets the best on restart",
            ),
        ),
    ],
)
def test_fit_restarted_with_a_worse_model_keeps_the_better_model(
    tmp_path, checkpoint_callback: str
) -> None:
    x, y = keras_support.make_data(128, seed=0)
    target = str(tmp_path / "best")

    def make_callback():
        if checkpoint_callback == "best_exporter":
            return BestExportCallback(target)
        return keras.callbacks.ModelCheckpoint(
            target + ".weights.h5", save_best_only=True, save_weights_only=True
        )

    def fit(model, values):
        scripted = keras_support.ScriptedMetric("val_loss", values)
        model.fit(
            x,
            y,
            validation_data=(x, y),
            epochs=len(values),
            verbose=0,
            callbacks=[scripted, make_callback()],
        )

    trained = keras_support.make_model(seed=0)
    fit(trained, [0.5, 0.3])
    expected = trained.predict(x[:4], verbose=0)
    # A restart with a fresh, worse model (e.g. a new run that went wrong).
    fit(keras_support.make_model(seed=7, learning_rate=0.0), [0.9])

    if checkpoint_callback == "best_exporter":
        served = keras_support.serve(read_export_records(target)[-1].path, x[:4])
    else:
        reloaded = keras_support.make_model(seed=0)
        reloaded.load_weights(target + ".weights.h5")
        served = reloaded.predict(x[:4], verbose=0)
    np.testing.assert_allclose(served, expected, rtol=1e-5)


def test_estimator_era_records_are_respected_through_metric_names(tmp_path, model, caplog) -> None:
    export_dir = _export_dir(tmp_path)
    keras_support.write_estimator_era_export(export_dir, OLD, 900, {"loss": 0.35, "accuracy": 0.8})
    keras_support.write_estimator_era_export(
        export_dir, OLD + 1, 1200, {"loss": 0.33, "accuracy": 0.81}
    )

    with caplog.at_level(logging.INFO, logger=LOGGER):
        callback = _callback(export_dir, model, metric_names={"val_loss": "loss"})
        _run_epochs(callback, [{"loss": 0.2, "val_loss": 0.34}, {"loss": 0.1, "val_loss": 0.32}])

    exports = read_export_records(export_dir)
    assert [e.version for e in exports[:2]] == [OLD, OLD + 1]
    assert len(exports) == 3
    assert exports[2].record["metrics"]["val_loss"] == 0.32
    lines = _messages(caplog)
    assert "restored the best result from export records: val_loss 0.33 (step 1200)" in lines[0]
    assert "val_loss 0.34 is no improvement over the best val_loss 0.33 (step 1200" in lines[1]
    assert "improves on the best val_loss 0.33 (step 1200, export records)" in lines[2]


def test_without_metric_names_estimator_records_cannot_be_judged_and_are_skipped(
    tmp_path, model, caplog
) -> None:
    export_dir = _export_dir(tmp_path)
    keras_support.write_estimator_era_export(export_dir, OLD, 900, {"loss": 0.35})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        callback = _callback(export_dir, model)
    assert callback.best_eval_result is None
    (warning,) = _messages(caplog, logging.WARNING)
    assert "skipped 1 earlier results that compare_fn could not judge" in warning
    assert "no metric 'val_loss'" in warning


def test_unreadable_exports_at_train_begin_export_nothing_and_are_retried_at_the_next_epoch(
    tmp_path, model, monkeypatch, caplog
) -> None:
    export_dir = _export_dir(tmp_path)
    _run_epochs(_callback(export_dir, model), [{"val_loss": 0.3}])
    listdir = tf.io.gfile.listdir
    failures = [3]  # Every attempt of restore.restore (1 + its retries) at train begin.

    def unavailable_listdir(path):
        if failures[0] and tf.compat.as_str_any(path).rstrip("/") == export_dir:
            failures[0] -= 1
            raise tf.errors.UnavailableError(None, None, "injected: bucket unreachable")
        return listdir(path)

    monkeypatch.setattr(tf.io.gfile, "listdir", unavailable_listdir)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        callback = _callback(export_dir, model)
        assert callback.best_eval_result is None
        _run_epochs(callback, [{"val_loss": 0.5}, {"val_loss": 0.2}])

    # Not "nothing there": the worse 0.5 was judged against the restored 0.3.
    assert _recorded(export_dir) == [0.3, 0.2]
    warnings = _messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "cannot read the exports under" in warnings[0]
    assert "Nothing is exported or deleted until the exports can be read" in warnings[0]


def test_exports_without_records_are_kept_until_a_new_export_beats_the_best(
    tmp_path, model
) -> None:
    export_dir = _export_dir(tmp_path)
    _run_epochs(_callback(export_dir, model), [{"val_loss": 0.5}, {"val_loss": 0.4}])
    legacy = [e.path for e in read_export_records(export_dir)]
    for path in legacy:  # As tf.estimator.BestExporter leaves them: no record.
        tf.io.gfile.remove(layout.record_path(path))

    callback = _callback(export_dir, model, exports_to_keep=1)
    # A Keras run has no event history to value them by: none may be pruned yet.
    assert [e.path for e in read_export_records(export_dir)] == legacy
    _run_epochs(callback, [{"val_loss": 0.9}])

    (exported,) = read_export_records(export_dir)
    assert exported.path not in legacy and exported.record["metrics"]["val_loss"] == 0.9


def test_retention_keeps_the_newest_and_removes_stale_temp_dirs(tmp_path, model) -> None:
    export_dir = _export_dir(tmp_path)
    keras_support.write_estimator_era_export(export_dir, OLD, 900, {"loss": 0.9})
    stale = os.path.join(export_dir, f"temp-{OLD - 5}")
    tf.io.gfile.makedirs(os.path.join(stale, "variables"))

    callback = _callback(export_dir, model, exports_to_keep=2, metric_names={"val_loss": "loss"})
    assert not tf.io.gfile.exists(stale)
    _run_epochs(callback, [{"val_loss": v} for v in (0.5, 0.4, 0.3)])

    assert _recorded(export_dir) == [0.4, 0.3]
    names = sorted(tf.io.gfile.listdir(export_dir))
    versions = [n for n in names if layout.parse_version(n)]
    events = [n for n in names if n.startswith("events.out.tfevents.")]
    assert len(versions) == 2 and sorted(versions + events) == names, names


def test_versions_increase_even_within_one_second(tmp_path, model) -> None:
    export_dir = _export_dir(tmp_path)
    callback = _callback(export_dir, model, exports_to_keep=None)
    _run_epochs(callback, [{"val_loss": v} for v in (0.5, 0.4, 0.3)])
    versions = [e.version for e in read_export_records(export_dir)]
    assert versions == sorted(set(versions)) and len(versions) == 3


def test_backup_and_restore_after_a_preemption_continues_without_a_worse_export(tmp_path) -> None:
    x, y = keras_support.make_data(256, seed=0)
    vx, vy = keras_support.make_data(128, seed=1)
    export_dir = _export_dir(tmp_path)
    backup_dir = str(tmp_path / "backup")

    def fit(preempt_after: Optional[int]) -> Any:
        model = keras_support.make_model(seed=0, learning_rate=0.5)
        callbacks: List[Any] = [
            keras.callbacks.BackupAndRestore(backup_dir),
            BestExportCallback(export_dir, exports_to_keep=None),
        ]
        if preempt_after is not None:
            callbacks.append(keras_support.PreemptAfterEpoch(preempt_after))
        model.fit(
            x, y, validation_data=(vx, vy), batch_size=32, epochs=6, verbose=0, callbacks=callbacks
        )
        return model

    with pytest.raises(keras_support.Preempted):
        fit(preempt_after=2)
    before = read_export_records(export_dir)
    model = fit(preempt_after=None)  # The restarted job: a new process would do the same.

    exports = read_export_records(export_dir)
    assert exports[: len(before)] == before
    steps = [e.record["global_step"] for e in exports]
    epochs = [e.record["epoch"] for e in exports]
    losses = [e.record["metrics"]["val_loss"] for e in exports]
    # Resumed, not restarted: the global step and epoch go on where the backup was.
    assert steps == sorted(set(steps)) and steps[-1] <= 6 * 8
    assert epochs == sorted(set(epochs)) and epochs[-1] <= 6
    assert [s // 8 for s in steps] == epochs
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)
    assert len(exports) > len(before), "the resumed run exported nothing"
    if epochs[-1] == 6:  # The final epoch was the best: the export is the trained model.
        np.testing.assert_allclose(
            keras_support.serve(exports[-1].path, vx[:4]),
            model.predict(vx[:4], verbose=0),
            rtol=1e-5,
        )


@pytest.mark.e2e
@pytest.mark.skipif(not _compat.has_estimator(), reason="needs tf.estimator (TensorFlow <= 2.15)")
def test_real_estimator_exports_then_keras_continues_the_directory(tmp_path, caplog) -> None:
    import support

    from best_exporter import BestExporter

    model_dir = str(tmp_path / "model")
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn)
    support.train_and_evaluate(support.make_classifier(model_dir), [exporter], max_steps=60)
    export_dir = os.path.join(model_dir, "export", "best_exporter")
    estimator_exports = read_export_records(export_dir)
    estimator_best = min(e.record["metrics"]["loss"] for e in estimator_exports)

    model = keras_support.make_model()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        callback = _callback(export_dir, model, metric_names={"val_loss": "loss"})
        _run_epochs(
            callback, [{"val_loss": estimator_best + 0.01}, {"val_loss": estimator_best / 2}]
        )

    exports = read_export_records(export_dir)
    assert exports[: len(estimator_exports)] == estimator_exports
    assert [e.record["metrics"]["val_loss"] for e in exports[len(estimator_exports) :]] == [
        estimator_best / 2
    ]
    assert "restored the best result from export records" in _messages(caplog)[0]
    # The Estimator's exports still serve as before.
    assert support.serve(estimator_exports[-1].path).shape == (2, 2)


def test_the_best_exporter_command_lists_keras_exports(tmp_path, model, capsys) -> None:
    import json

    from best_exporter import cli

    export_dir = _export_dir(tmp_path)
    keras_support.write_estimator_era_export(export_dir, OLD, 900, {"loss": 0.35})
    callback = _callback(export_dir, model, metric_names={"val_loss": "loss"})
    _run_epochs(callback, [{"loss": 0.2, "val_loss": 0.3}])
    capsys.readouterr()  # tf.keras 2.x's Model.export prints what it saved.

    assert cli.main(["list", "--json", export_dir]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert cli.main(["best", export_dir]) == 0
    served = capsys.readouterr().out.strip()

    assert served == listing["served"] == callback.best_export_path
    estimator_era, keras_era = listing["versions"]
    assert estimator_era["record"]["metrics"] == {"loss": 0.35}
    assert keras_era["state"] == "ok" and keras_era["record"]["epoch"] == 1
    assert keras_era["record"]["metrics"]["val_loss"] == 0.3


@pytest.mark.parametrize("write_best_summaries", [True, False])
def test_each_export_adds_its_metrics_to_the_tensorboard_run(
    tmp_path, write_best_summaries: bool
) -> None:
    x, y = keras_support.make_data(64, seed=0)
    export_dir = _export_dir(tmp_path)
    callback = BestExportCallback(
        export_dir, exports_to_keep=None, write_best_summaries=write_best_summaries
    )
    scripted = keras_support.ScriptedMetric("val_loss", [0.5, 0.6, 0.4])
    model = keras_support.make_model()
    model.fit(
        x,
        y,
        validation_data=(x, y),
        batch_size=16,
        epochs=3,
        verbose=0,
        callbacks=[scripted, callback],
    )

    files = tf.io.gfile.glob(os.path.join(export_dir, "events.out.tfevents.*"))
    if not write_best_summaries:
        assert files == []
        return
    charted = dict(history.evaluations(files))
    exported = {
        e.record["global_step"]: e.record["metrics"] for e in read_export_records(export_dir)
    }
    assert sorted(charted) == sorted(exported) == [4, 12]
    for step, metrics in exported.items():
        assert charted[step]["val_loss"] == pytest.approx(metrics["val_loss"])
        assert charted[step]["accuracy"] == pytest.approx(metrics["accuracy"])


def test_write_best_summaries_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match=r"Received: write_best_summaries='no'"):
        BestExportCallback("/tmp/export", write_best_summaries="no")


@pytest.mark.objectstore
@pytest.mark.e2e
def test_keras_exports_on_s3_are_staged_and_moved_in_with_saved_model_pb_last(
    s3_dir: str, model, monkeypatch
) -> None:
    export_dir = f"{s3_dir}/model/export/best_exporter"
    moved: List[str] = []
    rename = tf.io.gfile.rename

    def recording_rename(source, destination, overwrite=False):
        moved.append(tf.compat.as_str_any(destination)[len(export_dir) + 1 :])
        return rename(source, destination, overwrite)

    monkeypatch.setattr(tf.io.gfile, "rename", recording_rename)
    callback = _callback(export_dir, model)
    _run_epochs(callback, [{"val_loss": 0.5}])

    (export,) = read_export_records(export_dir)
    version = os.path.basename(export.path)
    into_version = [m for m in moved if m.startswith(version + "/")]
    # One move per object, never a directory rename that can expose half a model.
    assert into_version[0] == f"{version}/assets.extra/{layout.RECORD_ASSET_NAME}"
    assert into_version[-1] == f"{version}/saved_model.pb"
    assert any(m.startswith(f"{version}/variables/") for m in into_version)
    assert not [n for n in tf.io.gfile.listdir(export_dir) if n.startswith("temp")]
    x = np.ones((3, 2), np.float32)
    np.testing.assert_allclose(
        keras_support.serve(export.path, x), np.asarray(model(x)), rtol=1e-5, atol=1e-6
    )

    restarted = _callback(export_dir, model)
    assert restarted.best_eval_result["val_loss"] == 0.5
    restarted.on_epoch_end(0, {"val_loss": 0.7})
    assert _recorded(export_dir) == [0.5]
