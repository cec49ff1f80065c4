"""Tests of the `best-exporter` command."""

import json
import math
import os
import subprocess
import sys
from typing import List

import pytest
import support
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from best_exporter import BestExporter, cli
from best_exporter.cli import exports as cli_exports
from best_exporter.cli import history as cli_history
from best_exporter.cli import output as cli_output
from best_exporter.core import layout

LEGACY_VERSION = "1600000000"


def _exporter(**kwargs) -> BestExporter:
    return BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub, **kwargs)


def _export_twice(model_dir: str) -> str:
    """Two exports with records (one with a NaN side metric) and one without."""
    export_dir = os.path.join(model_dir, "export", "best_exporter")
    tf.io.gfile.makedirs(os.path.join(export_dir, LEGACY_VERSION))  # Written by the original.
    with tf.io.gfile.GFile(os.path.join(export_dir, LEGACY_VERSION, "saved_model.pb"), "w") as f:
        f.write("model")
    exporter = _exporter()
    estimator = support.FakeEstimator(model_dir)
    exporter.export(estimator, export_dir, None, support.eval_result(10, loss=0.5, auc=0.7), False)
    exporter.export(
        estimator, export_dir, None, support.eval_result(20, loss=0.25, auc=math.nan), False
    )
    return export_dir


def _run(capsys, *argv: str):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _rows(out: str) -> List[str]:
    """The table's rows, without its header and footer."""
    return out.split("\n\n")[0].splitlines()[1:]


def _write_record(export_dir: str, version: str, text: str, complete: bool = True) -> str:
    version_dir = os.path.join(export_dir, version)
    tf.io.gfile.makedirs(os.path.join(version_dir, "assets.extra"))
    if complete:
        with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "w") as f:
            f.write("model")
    with tf.io.gfile.GFile(layout.record_path(version_dir), "w") as f:
        f.write(text)
    return version_dir


# ----------------------------------------------------------------------------
# list


def test_list_prints_each_version_oldest_first_with_step_and_metrics(any_dir, capsys):
    export_dir = _export_twice(any_dir)

    status, out, _ = _run(capsys, "list", export_dir)

    assert status == 0
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split()[:5] == ["version", "step", "exported", "(UTC)", "loss"]
    assert rows[0].split()[0] == LEGACY_VERSION and "no record" in rows[0]
    assert rows[1].split()[1:3] == ["10", "-"] or rows[1].split()[1] == "10"
    assert "0.5" in rows[1].split() and "0.7" in rows[1].split()
    assert rows[2].split()[:3] == ["*", "1700000001", "20"]
    assert "0.25" in rows[2].split() and "nan" in rows[2].split()


def test_list_marks_the_highest_complete_version_as_served(any_dir, capsys):
    export_dir = _export_twice(any_dir)
    # A higher version without saved_model.pb: TensorFlow Serving cannot load it.
    _write_record(export_dir, "1800000000", '{"global_step": 30, "metrics": {}}', complete=False)

    _, out, _ = _run(capsys, "list", export_dir)

    rows = _rows(out)
    served = [row for row in rows if row.startswith(cli_exports.SERVED_MARK)]
    assert len(served) == 1 and "1700000001" in served[0] and "served" in served[0]
    assert "incomplete: no saved_model.pb" in rows[-1]
    assert "3 versions" not in out and "4 versions in" in out


def test_list_rows_fit_a_terminal(tmp_path, capsys):
    export_dir = os.path.join(str(tmp_path), "export", "best_exporter")
    exporter = _exporter()
    metrics = {name: 0.123456789 for name in ["loss", "accuracy", "auc", "precision", "recall"]}
    exporter.export(
        support.FakeEstimator(str(tmp_path)),
        export_dir,
        None,
        support.eval_result(123456, **metrics),
        False,
    )

    _, out, _ = _run(capsys, "list", export_dir)

    assert max(len(line.replace(export_dir, "")) for line in out.splitlines()) < 80, out
    assert "2 more metrics not shown" in out


def test_list_metrics_option_chooses_the_columns(any_dir, capsys):
    export_dir = _export_twice(any_dir)

    _, out, _ = _run(capsys, "list", export_dir, "--metrics", "auc")

    assert out.splitlines()[0].split()[-1] == "auc"


def test_list_metrics_option_names_the_metrics_there_are(any_dir, capsys):
    export_dir = _export_twice(any_dir)

    status, _, err = _run(capsys, "list", export_dir, "--metrics", "los")

    assert status == cli_output.EXIT_USAGE
    assert "--metrics los: not found; the metrics are loss, auc" in err


def test_list_json_is_strict_json_with_non_finite_values_as_strings(any_dir, capsys):
    export_dir = _export_twice(any_dir)
    # NaN outside the metrics too: Python's json module reads it from a record.
    _write_record(export_dir, "1800000000", '{"global_step": NaN, "metrics": {"loss": 0.1}}')

    status, out, _ = _run(capsys, "list", "--json", export_dir)

    assert status == 0
    report = json.loads(out, parse_constant=lambda c: 1 / 0)
    rows = report["versions"]
    assert [row["version"] for row in rows] == sorted(row["version"] for row in rows)
    assert rows[0]["record"] is None and rows[0]["state"] == "no record"
    assert rows[2]["record"]["global_step"] == 20
    assert rows[2]["record"]["metrics"] == {"loss": 0.25, "auc": "nan"}
    # A record that does not validate is no record: its version valued like one without.
    assert rows[3]["record"] is None and rows[3]["state"] == "invalid record"
    assert "global_step=nan" in rows[3]["problem"]
    assert report["served"] == rows[3]["path"] and rows[3]["served"]


@pytest.mark.parametrize(
    "text",
    [
        '{"global_step": 10, "metrics": {"loss": null}}',
        '{"global_step": 10, "metrics": {"loss": [1, 2]}}',
        '{"global_step": 10, "metrics": {"loss": {"a": 1}}}',
        '{"global_step": 10, "metrics": [1]}',
        '{"global_step": 10, "metrics": {"loss": "fast"}}',
        '{"global_step": "abc", "metrics": {"loss": 0.5}}',
        '{"global_step": [], "metrics": {"loss": 0.5}}',
        '{"global_step": 1e400, "metrics": {"loss": 0.5}}',
        '{"global_step": true, "metrics": {"loss": 0.5}}',
        '{"global_step": 10, "exported_at": 5, "metrics": {"loss": 0.5}}',
        '{"global_step": 10, "exported_at": {"y": 2026}, "metrics": {"loss": 0.5}}',
        '{"global_step": 10, "exported_at": "yesterday", "metrics": {"loss": 0.5}}',
        "[" * 100_000 + "]" * 100_000,
        "[1, 2]",
        "not json",
        "",
        "\udcff",
    ],
)
def test_list_shows_an_invalid_record_as_invalid_without_a_traceback(any_dir, capsys, text):
    export_dir = os.path.join(any_dir, "export", "best_exporter")
    _write_record(
        export_dir, "1700000000", text.encode("utf-8", "surrogateescape").decode("latin-1")
    )

    status, out, err = _run(capsys, "list", export_dir)
    json_status, json_out, _ = _run(capsys, "list", "--json", export_dir)

    assert status == 0 and json_status == 0, err
    (row,) = _rows(out)
    assert "invalid record" in row, row
    assert "served" in row  # A model Serving can load, whatever its record says.
    assert json.loads(json_out, parse_constant=lambda c: 1 / 0)["versions"][0]["state"] in (
        "invalid record",
    )


def test_list_of_a_record_that_cannot_be_read_shows_the_table_and_exits_2(tmp_path, capsys):
    export_dir = _export_twice(str(tmp_path))
    version_dir = os.path.join(export_dir, "1800000000")
    tf.io.gfile.makedirs(layout.record_path(version_dir))  # A directory: reading it fails.
    with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "w") as f:
        f.write("model")

    status, out, err = _run(capsys, "list", export_dir)

    assert status == cli_output.EXIT_USAGE
    assert "unreadable record" in _rows(out)[-1]
    assert len(err.splitlines()) == 1
    assert err.startswith("best-exporter: error: 1 record could not be read")
    assert version_dir in err


def test_list_shows_a_version_being_retired_as_such_not_as_without_record(
    any_dir, capsys, monkeypatch
):
    export_dir = _export_twice(any_dir)
    # Retention renames a version to temp-<version>, then deletes it: here the
    # rename happens between the listing and the reading of the version.
    listing = layout.list_export_dir(export_dir)
    retired = listing.versions[1700000000]
    tf.io.gfile.rename(retired, os.path.join(export_dir, "temp-1700000000"))
    monkeypatch.setattr(layout, "list_export_dir", lambda _: listing)

    _, out, _ = _run(capsys, "list", export_dir)

    (row,) = [row for row in _rows(out) if "1700000000" in row]
    assert "being deleted by retention" in row and "no record" not in row


def test_list_names_temp_dirs_and_what_they_are(any_dir, capsys):
    export_dir = _export_twice(any_dir)
    tf.io.gfile.makedirs(os.path.join(export_dir, "temp-1650000000"))
    tf.io.gfile.makedirs(os.path.join(export_dir, "temp-1900000000"))

    _, out, _ = _run(capsys, "list", export_dir)

    assert f"{export_dir}/temp-1650000000: being deleted or left by an interrupted export" in out
    assert f"{export_dir}/temp-1900000000: an export being written" in out


def test_list_of_an_empty_export_dir_says_no_exports_yet(tmp_path, capsys):
    status, out, _ = _run(capsys, "list", str(tmp_path))

    assert status == 0
    assert out == f"No exports in {tmp_path} yet.\n"


def _model_dir_with_two_exporters(model_dir: str) -> None:
    _export_twice(model_dir)
    tf.io.gfile.makedirs(os.path.join(model_dir, "export", "latest"))


@pytest.mark.parametrize("command", ["list", "best"])
@pytest.mark.parametrize("below", ["", "export"])
def test_a_model_dir_given_for_an_export_dir_gets_a_hint_listing_the_export_dirs(
    tmp_path, capsys, command, below
):
    model_dir = str(tmp_path)
    _model_dir_with_two_exporters(model_dir)

    status, out, err = _run(capsys, command, os.path.join(model_dir, below))

    assert status == cli_output.EXIT_USAGE and out == ""
    assert len(err.splitlines()) == 1
    assert "looks like a model_dir" in err
    for name in ("best_exporter", "latest"):
        assert os.path.join(model_dir, "export", name) in err


@pytest.mark.parametrize("command", ["list", "best", "history"])
@pytest.mark.parametrize(
    "path, message",
    [
        ("{tmp}/missing", "{tmp}/missing does not exist"),
        ("{tmp}/a_file", "{tmp}/a_file is a file"),
        ("foo://bucket/model", "TensorFlow has no filesystem for foo://"),
    ],
)
def test_a_bad_path_exits_2_with_one_line_naming_it(tmp_path, capsys, command, path, message):
    (tmp_path / "a_file").write_text("not a directory")
    path = path.format(tmp=tmp_path)

    status, out, err = _run(capsys, command, path)

    assert status == cli_output.EXIT_USAGE and out == ""
    assert err.splitlines() == [f"best-exporter: error: {err.split(': error: ')[1].strip()}"]
    assert message.format(tmp=tmp_path) in err


# ----------------------------------------------------------------------------
# best


def test_best_prints_only_the_path_of_the_served_version(any_dir, capsys):
    export_dir = _export_twice(any_dir)
    _write_record(export_dir, "1800000000", "{}", complete=False)

    status, out, _ = _run(capsys, "best", export_dir)

    assert status == 0
    assert out == os.path.join(export_dir, "1700000001") + "\n"


def test_best_json_gives_the_served_version_and_its_record(any_dir, capsys):
    export_dir = _export_twice(any_dir)

    _, out, _ = _run(capsys, "best", "--json", export_dir)

    row = json.loads(out)
    assert row["version"] == 1700000001 and row["record"]["global_step"] == 20


@pytest.mark.parametrize("complete", [False, None])
def test_best_without_a_complete_version_exits_1_saying_why(tmp_path, capsys, complete):
    if complete is not None:
        _write_record(str(tmp_path), "1700000000", "{}", complete=complete)

    status, out, err = _run(capsys, "best", str(tmp_path))

    assert status == cli_output.EXIT_NOTHING_TO_SERVE and out == ""
    assert "TensorFlow Serving has nothing to serve" in err


# ----------------------------------------------------------------------------
# history

# loss by step: 20 improves, 30 does not, 40 improves, 50 is NaN, 60 improves but
# its export fails, 70 improves; exports_to_keep=2 prunes the exports of 10 and 20.
HISTORY = [
    (10, {"loss": 0.9, "auc": 0.6}),
    (20, {"loss": 0.7, "auc": 0.65}),
    (30, {"loss": 0.8, "auc": 0.7}),
    (40, {"loss": 0.6, "auc": 0.72}),
    (50, {"loss": math.nan, "auc": 0.7}),
    (60, {"loss": 0.5, "auc": 0.75}),
    (70, {"loss": 0.4, "auc": 0.8}),
]


@pytest.fixture
def trained_model_dir(tmp_path) -> str:
    """A model_dir with eval events and the exports an evaluator left."""
    model_dir = str(tmp_path / "model")
    support.write_legacy_events(os.path.join(model_dir, "eval"), HISTORY)
    exporter = _exporter(exports_to_keep=2)
    estimator = support.FakeEstimator(model_dir)
    export_dir = os.path.join(model_dir, "export", "best_exporter")
    for step, metrics in HISTORY:
        estimator.error = tf.errors.UnavailableError(None, None, "503") if step == 60 else None
        exporter.export(estimator, export_dir, None, support.eval_result(step, **metrics), False)
    return model_dir


def _history_rows(out: str) -> dict:
    return {int(row.split()[1 if row.startswith("+") else 0]): row for row in _rows(out)}


def test_history_marks_improvements_and_what_became_of_their_exports(trained_model_dir, capsys):
    status, out, _ = _run(capsys, "history", trained_model_dir)

    assert status == 0
    rows = _history_rows(out)
    improved = [step for step, row in rows.items() if row.startswith(cli_history.IMPROVED_MARK)]
    assert improved == [10, 20, 40, 60, 70]
    assert "pruned by retention" in rows[10]
    assert "not better than 0.7 (step 20)" in rows[30]
    assert "exported: 17" in rows[40] and "served" not in rows[40]
    assert "loss is not a finite number: never exported" in rows[50]
    assert "the export failed or was not made" in rows[60]
    assert "exported: 17" in rows[70] and rows[70].endswith(", served")
    assert "7 evaluations in 1 event file, 5 improvements." in out


def test_history_judges_by_a_metric_where_higher_is_better(trained_model_dir, capsys):
    _, out, _ = _run(capsys, "history", trained_model_dir, "--higher-is-better", "auc")

    rows = _history_rows(out)
    improved = [step for step, row in rows.items() if row.startswith(cli_history.IMPROVED_MARK)]
    assert improved == [10, 20, 30, 40, 60, 70]
    assert out.splitlines()[0].split()[:2] == ["step", "auc"]
    assert "(auc, higher is better)" in out


def test_history_json_lists_every_evaluation_as_strict_json(trained_model_dir, capsys):
    _, out, _ = _run(capsys, "history", "--json", trained_model_dir)

    report = json.loads(out, parse_constant=lambda c: 1 / 0)
    evaluations = report["evaluations"]
    assert [e["step"] for e in evaluations] == [step for step, _ in HISTORY]
    assert [e["outcome"] for e in evaluations] == [
        "first", "improved", "not improved", "improved", "invalid", "improved", "improved",
    ]  # fmt: skip
    assert [e["export_state"] for e in evaluations] == [
        "pruned", "pruned", None, "on disk", None, "not exported", "on disk",
    ]  # fmt: skip
    assert evaluations[4]["metrics"]["loss"] == "nan"
    assert report["metric"] == "loss" and report["higher_is_better"] is False


def test_history_of_evaluations_without_the_metric_says_so(trained_model_dir, capsys):
    _, out, _ = _run(capsys, "history", trained_model_dir, "--metric", "recall")

    assert all("no recall at this step: not judged" in row for row in _rows(out))


def test_history_with_several_export_dirs_asks_for_one(trained_model_dir, capsys):
    tf.io.gfile.makedirs(os.path.join(trained_model_dir, "export", "latest"))

    status, _, err = _run(capsys, "history", trained_model_dir)

    assert status == cli_output.EXIT_USAGE
    assert "choose one with --export-dir" in err and "latest" in err


def test_history_export_dir_option_picks_the_export_dir(trained_model_dir, capsys):
    tf.io.gfile.makedirs(os.path.join(trained_model_dir, "export", "latest"))
    export_dir = os.path.join(trained_model_dir, "export", "best_exporter")

    status, out, _ = _run(capsys, "history", trained_model_dir, "--export-dir", export_dir)

    assert status == 0 and "served" in out


def test_history_of_an_export_dir_points_at_the_model_dir(trained_model_dir, capsys):
    export_dir = os.path.join(trained_model_dir, "export", "best_exporter")

    status, _, err = _run(capsys, "history", export_dir)

    assert status == cli_output.EXIT_USAGE
    assert "holds exported versions, not event files: pass the model_dir" in err


def test_history_without_event_files_names_the_pattern(tmp_path, capsys):
    status, _, err = _run(capsys, "history", str(tmp_path), "--pattern", "eval2/*.tfevents.*")

    assert status == cli_output.EXIT_USAGE
    assert f"no event files match {tmp_path}/eval2/*.tfevents.*" in err


# ----------------------------------------------------------------------------
# The installed command, in a process of its own


def _command(*argv: str, env_update=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(env_update or {})
    return subprocess.run(
        [sys.executable, "-m", "best_exporter.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_help_and_version_import_no_tensorflow():
    code = (
        "import sys\n"
        "from best_exporter import cli\n"
        "for argv in (['--help'], ['list', '--help'], ['history', '--help'], ['--version']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = ('tensorflow', 'tensorboard')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "best-exporter 0.1.0" in result.stdout


def test_command_is_quiet_and_verbose_shows_the_logs(tmp_path):
    export_dir = _export_twice(str(tmp_path))
    _write_record(export_dir, "1800000000", "not json")

    quiet = _command("list", export_dir)
    verbose = _command("-v", "list", export_dir)

    assert quiet.returncode == 0 and verbose.returncode == 0, verbose.stderr
    assert quiet.stderr == ""  # No TensorFlow C++ lines, no warning repeating the table.
    assert "loss" in quiet.stdout and "invalid record" in quiet.stdout
    assert "Ignoring unreadable export record" in verbose.stderr


# ----------------------------------------------------------------------------
# Fuzzed records: whatever eval_result.json holds, the command answers.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
records_fields = st.fixed_dictionaries(
    {},
    optional={
        "global_step": json_values,
        "metrics": json_values | st.dictionaries(st.sampled_from(["loss", "auc"]), json_values),
        "exported_at": json_values | st.just("2026-11-25T12:00:00Z"),
        "checkpoint_path": json_values,
    },
)


# Reproducible in CI: the same examples on every run, no example database.
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(record=records_fields | json_values)
def test_list_and_best_answer_whatever_a_record_holds(any_dir, capsys, record):
    export_dir = os.path.join(any_dir, "fuzz", "export", "best_exporter")
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    # Python's json writes NaN and infinities as the reader accepts them.
    _write_record(export_dir, "1700000000", json.dumps(record))

    for argv in (["list"], ["list", "--json"], ["best", "--json"]):
        status, out, err = _run(capsys, *argv, export_dir)
        assert status == 0, err
        if "--json" in argv:
            json.loads(out, parse_constant=lambda c: 1 / 0)


def test_history_min_delta_option_judges_as_the_compare_fn_does(trained_model_dir, capsys):
    _, out, _ = _run(capsys, "history", trained_model_dir, "--min-delta", "0.15")

    rows = _history_rows(out)
    improved = [step for step, row in rows.items() if row.startswith(cli_history.IMPROVED_MARK)]
    assert improved == [10, 20, 60]


def test_history_rejects_a_negative_min_delta_in_one_line(trained_model_dir, capsys):
    status, _, err = _run(capsys, "history", trained_model_dir, "--min-delta", "-1")

    assert status == cli_output.EXIT_USAGE
    assert len(err.splitlines()) == 1 and "min_delta" in err


def test_history_of_a_model_dir_with_glob_characters_finds_its_events(tmp_path, capsys):
    model_dir = str(tmp_path / "run[1]")
    support.write_legacy_events(os.path.join(model_dir, "eval"), HISTORY)

    status, out, _ = _run(capsys, "history", model_dir)

    assert status == 0
    assert "7 evaluations in 1 event file" in out
