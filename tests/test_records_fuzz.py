"""Property-based tests of the records: a fuzzed eval_result.json never breaks a reader.

Whatever an `eval_result.json` holds (any JSON value, a record with fields of
the wrong type, random bytes, nesting deep enough to exhaust the stack), reading
it is a valid record or a logged problem: `loads_record` raises only ValueError,
`BestExporter.export()` after a restart never raises and never exports a model
worse than a valid record on disk, and `best-exporter list` (table and JSON)
always exits without a traceback.
"""

import contextlib
import io
import json
import os
import uuid
from typing import Any

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from best_exporter import BestExporter, cli
from best_exporter.core import records
from tests import support

V = 1_700_000_000

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["nan", "inf", "-inf", "NaN", "2026-11-25T12:00:00Z", ""]),
)
_json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
    ),
    max_leaves=12,
)
_field_values = st.one_of(_json_values, st.just(1200), st.just(0.25))
# Records shaped like ours, with any value in any field.
_record_like = st.fixed_dictionaries(
    {},
    optional={
        "global_step": _field_values,
        "metrics": st.one_of(
            st.dictionaries(st.sampled_from(["loss", "auc", "x"]), _field_values, max_size=3),
            _json_values,
        ),
        "checkpoint_path": _field_values,
        "exporter": _field_values,
        "exported_at": _field_values,
        "best_exporter_version": _field_values,
    },
)


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


_texts = st.one_of(
    _record_like.map(_dump),
    _json_values.map(_dump),
    st.binary(max_size=64),
    st.text(max_size=64),
    st.integers(min_value=1, max_value=200_000).map(lambda n: '{"metrics": ' + "[" * n + "]" * n),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "{" * n),
)


def _write(path: str, data) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _export_dir_with(text, model_dir: str) -> str:
    """An export dir holding a valid best (loss 0.25) and a version with the fuzzed record."""
    base = os.path.join(model_dir, "export", "best_exporter")
    good = os.path.join(base, str(V))
    _write(os.path.join(good, "saved_model.pb"), "model")
    _write(
        os.path.join(good, "assets.extra", "eval_result.json"),
        records.dumps_record({"global_step": 1, "metrics": {"loss": 0.25}}),
    )
    fuzzed = os.path.join(base, str(V + 1))
    _write(os.path.join(fuzzed, "saved_model.pb"), "model")
    _write(os.path.join(fuzzed, "assets.extra", "eval_result.json"), text)
    return base


@FUZZ
@given(text=_texts)
@example(text='{"metrics": {"loss": null}}')
@example(text='{"metrics": {"loss": 0.1}, "global_step": "abc"}')
@example(text='{"metrics": {"loss": 0.1}, "exported_at": null, "global_step": NaN}')
def test_loads_record_raises_nothing_but_value_error(text) -> None:
    try:
        record = records.loads_record(text)
    except ValueError:
        return
    assert isinstance(record["metrics"], dict)
    assert all(type(v) is float for v in record["metrics"].values())
    assert record["global_step"] is None or type(record["global_step"]) is int
    # What was read can be written again as strict JSON.
    json.loads(records.dumps_record(record), parse_constant=lambda c: 1 / 0)


@FUZZ
@given(text=_texts)
@example(text='{"metrics": {"loss": 0.1}, "global_step": []}')
@example(text='{"metrics": {"loss": 0.1}, "exported_at": 5}')
@example(text='{"metrics": {"loss": 0.125}, "global_step": 2}')
def test_fuzzed_record_never_breaks_export_nor_lets_a_worse_model_in(text) -> None:
    model_dir = f"ram://fuzz-{uuid.uuid4().hex}"
    base = _export_dir_with(text, model_dir)
    exporter = BestExporter(
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        event_file_pattern=None,
        exports_to_keep=1,
    )
    estimator = support.FakeEstimator(model_dir, first_version=V + 10)
    try:
        result = support.eval_result(3, loss=0.5)
        assert exporter.export(estimator, base, None, result, False) is None
        assert exporter.best_eval_result["loss"] <= 0.25
        best = exporter.best_export_path
        assert best in (os.path.join(base, str(V)), os.path.join(base, str(V + 1)))
        assert tf.io.gfile.exists(os.path.join(best, "saved_model.pb"))
    finally:
        _remove(model_dir)


@FUZZ
@given(text=_texts)
@example(text='{"metrics": {"loss": 0.1}, "exported_at": null}')
@example(text='{"metrics": {"loss": 1e400, "x": NaN}, "global_step": 1.0}')
@example(text='{"metrics": {}, "checkpoint_path": ["a"]}')
def test_fuzzed_record_never_breaks_the_list_command(text) -> None:
    model_dir = f"ram://fuzz-{uuid.uuid4().hex}"
    base = _export_dir_with(text, model_dir)
    try:
        for argv in (["list", base], ["list", "--json", base]):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert cli.main(argv) == 0
            assert str(V) in out.getvalue() and str(V + 1) in out.getvalue()
        report = json.loads(out.getvalue(), parse_constant=lambda c: 1 / 0)
        assert [row["version"] for row in report["versions"]] == [V, V + 1]
    finally:
        _remove(model_dir)


def _remove(path: str) -> None:
    with contextlib.suppress(tf.errors.NotFoundError):
        tf.io.gfile.rmtree(path)  # ram:// rmtree may raise after deleting everything.


def test_the_strategies_reach_both_valid_and_invalid_records() -> None:
    outcomes = set()

    @FUZZ
    @given(text=_record_like.map(_dump))
    def collect(text) -> None:
        try:
            records.loads_record(text)
            outcomes.add("valid")
        except ValueError:
            outcomes.add("invalid")

    collect()
    assert outcomes == {"valid", "invalid"}


@pytest.mark.parametrize("n", [1, 10_000, 1_000_000])
def test_deep_nesting_is_an_invalid_record(n: int) -> None:
    with pytest.raises(ValueError, match="not an export record"):
        records.loads_record('{"metrics": ' + "[" * n + "]" * n + "}")
