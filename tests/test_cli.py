"""Tests of the `best-exporter` command."""

import json
import math
import os
import subprocess
import sys

import support
import tensorflow as tf

from best_exporter import BestExporter, cli


def _export_twice(model_dir):
    """Two exports with records (one with a NaN side metric) and one without."""
    export_dir = os.path.join(model_dir, "export", "best_exporter")
    tf.io.gfile.makedirs(os.path.join(export_dir, "1600000000"))  # Written by the original.
    exporter = BestExporter(serving_input_receiver_fn=support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(model_dir)
    exporter.export(estimator, export_dir, None, support.eval_result(10, loss=0.5, auc=0.7), False)
    exporter.export(
        estimator, export_dir, None, support.eval_result(20, loss=0.25, auc=math.nan), False
    )
    return export_dir


def test_list_prints_each_version_oldest_first_with_step_and_metrics(ram_dir, capsys):
    export_dir = _export_twice(ram_dir)

    assert cli.main(["list", export_dir]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["version", "step", "exported_at"]
    assert lines[1].startswith("1600000000") and "no record" in lines[1]
    assert lines[2].split()[1] == "10" and "loss=0.5" in lines[2]
    assert lines[3].split()[1] == "20" and "loss=0.25" in lines[3] and "auc=nan" in lines[3]


def test_list_json_is_strict_json_with_non_finite_metrics_as_strings(ram_dir, capsys):
    export_dir = _export_twice(ram_dir)

    assert cli.main(["list", "--json", export_dir]) == 0

    rows = json.loads(capsys.readouterr().out, parse_constant=lambda c: 1 / 0)
    assert [row["version"] for row in rows] == sorted(row["version"] for row in rows)
    assert rows[0]["record"] is None
    assert rows[2]["record"]["global_step"] == 20
    assert rows[2]["record"]["metrics"] == {"loss": 0.25, "auc": "nan"}


def test_list_of_a_missing_directory_says_so(ram_dir, capsys):
    assert cli.main(["list", f"{ram_dir}/nothing"]) == 0
    assert "No exports" in capsys.readouterr().out


def test_installed_command_runs(tmp_path):
    export_dir = _export_twice(str(tmp_path))
    command = [sys.executable, "-m", "best_exporter.cli", "list", export_dir]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "loss=0.25" in result.stdout
