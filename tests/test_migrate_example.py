"""Tests of examples/migrate_to_keras.py: Keras continues the Estimator's export directory.

On TensorFlow 2.13-2.15 the Estimator era is real: examples/train_dnn_classifier.py
runs first, with few steps. On TensorFlow 2.16+ (no tf.estimator) the directory
starts with an export written as BestExporter writes it. Either way the example
runs as a user runs it, in a fresh process.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, Tuple

import keras_support
import numpy as np
import pytest
import tensorflow as tf

from best_exporter import _compat, read_export_records

pytestmark = pytest.mark.e2e

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
MIGRATE = EXAMPLES / "migrate_to_keras.py"
ESTIMATOR_EXAMPLE = EXAMPLES / "train_dnn_classifier.py"
EPOCHS = 4
EPOCH_LINE = re.compile(r"^epoch (\d+): val_loss (\d+\.\d+), val_accuracy \d+\.\d+$", re.M)
SERVING_LINE = re.compile(
    r"^Serving (\S+) \((Keras|Estimator) era\), called as before with a serialized "
    r"tf.train.Example for category='office', price=0\.25: class ([01]) with probability",
    re.M,
)


def _load(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    # The example's own choice of TensorFlow's C++ log level, not the test suite's.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # Only against a hang.
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return process


def _estimator_era(model_dir: pathlib.Path) -> None:
    if _compat.has_estimator():
        _run(ESTIMATOR_EXAMPLE, f"--model_dir={model_dir}", "--steps=300")
        return
    # As BestExporter writes it: the model is a stand-in, the record is real.
    export_dir = str(model_dir / "export" / "best_exporter")
    keras_support.write_estimator_era_export(
        export_dir, 1_700_000_000, 300, {"loss": 0.4145, "accuracy": 0.8486}
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Tuple[pathlib.Path, List, subprocess.CompletedProcess]:
    model_dir = tmp_path_factory.mktemp("migrate") / "model"
    _estimator_era(model_dir)
    export_dir = str(model_dir / "export" / "best_exporter")
    before = read_export_records(export_dir)
    process = _run(MIGRATE, f"--model_dir={model_dir}", f"--epochs={EPOCHS}")
    return model_dir, before, process


def _signature(export_dir: str) -> Tuple[Dict, Dict]:
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    inputs = {
        k: (v.dtype, v.shape.as_list()) for k, v in signature.structured_input_signature[1].items()
    }
    outputs = {k: (v.dtype, v.shape.as_list()) for k, v in signature.structured_outputs.items()}
    return inputs, outputs


def test_the_estimator_best_is_respected_then_beaten(migrated) -> None:
    model_dir, before, process = migrated
    estimator_best = min(e.record["metrics"]["loss"] for e in before)
    export_dir = str(model_dir / "export" / "best_exporter")
    keras_exports = [e for e in read_export_records(export_dir) if "epoch" in e.record]
    epochs = {int(n): float(v) for n, v in EPOCH_LINE.findall(process.stdout)}
    assert sorted(epochs) == list(range(1, EPOCHS + 1)), process.stdout

    # Respected: no epoch at or above the Estimator's best was exported.
    exported = {e.record["epoch"] for e in keras_exports}
    assert exported, process.stdout + process.stderr
    for epoch, loss in epochs.items():
        if loss >= estimator_best:
            assert epoch not in exported, (epoch, loss, estimator_best)
    assert min(exported) > 1, "the first Keras epoch beat the Estimator: nothing was respected"
    # Beaten, and each export improves on the one before it.
    losses = [e.record["metrics"]["val_loss"] for e in keras_exports]
    assert losses[0] < estimator_best
    assert losses == sorted(losses, reverse=True)
    assert "restored the best result from export records: val_loss" in process.stderr
    assert "(step 300, export records)" in process.stderr
    assert f"was respected until epoch {min(exported)}" in process.stdout


def test_the_keras_export_keeps_the_estimator_serving_signature(migrated) -> None:
    model_dir, before, process = migrated
    export_dir = str(model_dir / "export" / "best_exporter")
    newest = read_export_records(export_dir)[-1]
    match = SERVING_LINE.search(process.stdout)
    assert match and match.group(1) == newest.path and match.group(2) == "Keras", process.stdout
    assert match.group(3) == "1"  # The rule behind the labels says 1.

    inputs, outputs = _signature(newest.path)
    assert inputs == {"inputs": (tf.string, [None])}
    assert outputs == {"classes": (tf.string, [None, 2]), "scores": (tf.float32, [None, 2])}
    if _compat.has_estimator():
        # Exactly what the DNNClassifier's parsing receiver and head exported.
        assert _signature(before[-1].path) == (inputs, outputs)


@pytest.mark.skipif(not _compat.has_estimator(), reason="needs tf.estimator (TensorFlow <= 2.15)")
def test_both_examples_use_the_same_data() -> None:
    estimator_example = _load(ESTIMATOR_EXAMPLE, "train_dnn_classifier")
    migrate = _load(MIGRATE, "migrate_to_keras")
    for seed in (0, 1):
        (f1, y1), (f2, y2) = estimator_example.make_data(64, seed), migrate.make_data(64, seed)
        np.testing.assert_array_equal(y1, y2)
        for name in ("category", "price"):
            np.testing.assert_array_equal(f1[name], f2[name])
    assert estimator_example.make_example("office", 0.25) == migrate.make_example("office", 0.25)
