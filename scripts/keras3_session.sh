#!/usr/bin/env bash
# The Keras 3 test session: best_exporter.keras on the newest TensorFlow that installs on
# Python 3.11, with Keras 3 and without tf.estimator. Test modules that need tf.estimator
# are reported as skipped (tests/conftest.py); the core and Keras tests run.
#
#   scripts/keras3_session.sh                 # builds .venv/keras3 once, runs the suite
#   scripts/keras3_session.sh -m 'not cluster' tests/test_keras.py   # pytest arguments
#   KERAS3_REBUILD=1 scripts/keras3_session.sh                         # a fresh venv
#
# Versions are pinned to the ones last verified; override to try newer ones:
#   KERAS3_TENSORFLOW=tensorflow==2.22.0 KERAS3_KERAS=keras==3.16.0 scripts/keras3_session.sh
#
# KERAS3_LEGACY=1 runs the same TensorFlow with tf_keras (Keras 2) as tf.keras, through
# TF_USE_LEGACY_KERAS=1: the path for MultiWorkerMirroredStrategy, which Keras 3's fit
# does not support (keras-team/keras#20585).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
TENSORFLOW="${KERAS3_TENSORFLOW:-tensorflow==2.21.0}"
KERAS="${KERAS3_KERAS:-keras==3.15.1}"
PACKAGES=("$TENSORFLOW" "$KERAS")
VENV=.venv/keras3
if [ -n "${KERAS3_LEGACY:-}" ]; then
    PACKAGES+=("${KERAS3_TF_KERAS:-tf_keras==2.21.0}")
    export TF_USE_LEGACY_KERAS=1
    VENV=.venv/keras3-legacy
fi
STAMP="$VENV/.installed-$(echo "${PACKAGES[*]}" | tr -c 'A-Za-z0-9.\n' '_')"

if [ -n "${KERAS3_REBUILD:-}" ] || [ ! -f "$STAMP" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[test]' "${PACKAGES[@]}"
    touch "$STAMP"
fi
"$VENV/bin/python" - <<'PY'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
import keras
from best_exporter import _compat
assert keras.__version__.startswith("3."), f"Keras 3 expected, found Keras {keras.__version__}"
assert not _compat.has_estimator(), f"TensorFlow {tf.__version__} still has tf.estimator"
legacy = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
assert legacy != hasattr(tf.keras, "ops"), "tf.keras is not the Keras this session tests"
used = "tf_keras (TF_USE_LEGACY_KERAS=1)" if legacy else f"Keras {keras.__version__}"
print(f"Keras 3 session: TensorFlow {tf.__version__}, tf.keras is {used}")
PY
exec "$VENV/bin/python" -m pytest -ra "$@"
