"""Tests of examples/train_dnn_classifier.py: it runs as a user runs it, and says what it did."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_dnn_classifier.py"

EXPORT_LINE = re.compile(r"^  version (\d{10})  step (\d+): loss \d+\.\d+, accuracy \d+\.\d+$")
PREDICTION_LINE = re.compile(
    r"^Prediction of (\S+) for category='office', price=0\.25: class ([01]) "
    r"with probability (\d\.\d+)"
)


def load_example_module():
    spec = importlib.util.spec_from_file_location("train_dnn_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """Runs the example in a fresh process, with few steps, as `python examples/...`."""
    model_dir = tmp_path_factory.mktemp("example") / "model"
    # The example's own choice of TensorFlow's C++ log level, not the test suite's.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            f"--model_dir={model_dir}",
            "--steps=60",
            "--save_checkpoints_steps=20",
            "--exports_to_keep=2",
        ],
        cwd=str(model_dir.parent),  # Nothing may depend on being run from the repository.
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # Only against a hang.
    )
    return model_dir, process


@pytest.mark.e2e
def test_example_exits_with_status_zero(example_run):
    _, process = example_run
    assert process.returncode == 0, process.stderr


@pytest.mark.e2e
def test_example_prints_a_progress_line_per_evaluation(example_run):
    _, process = example_run
    lines = re.findall(r"^evaluation (\d+) at step (\d+): loss \d", process.stdout, re.MULTILINE)
    assert lines == [("1", "20"), ("2", "40"), ("3", "60")], process.stdout


@pytest.mark.e2e
def test_example_shows_the_exporter_decisions_without_tensorflow_noise(example_run):
    _, process = example_run
    assert "BestExporter 'best_exporter': exported step 20:" in process.stderr
    assert "INFO:tensorflow:" not in process.stderr  # Estimator's own INFO lines.


@pytest.mark.e2e
def test_example_lists_the_kept_exports_as_on_disk(example_run):
    model_dir, process = example_run
    export_dir = model_dir / "export" / "best_exporter"
    listed = [
        EXPORT_LINE.match(line).groups()
        for line in process.stdout.splitlines()
        if EXPORT_LINE.match(line)
    ]
    on_disk = sorted(p.name for p in export_dir.iterdir() if re.fullmatch(r"\d{10}", p.name))
    assert f"{len(on_disk)} exports kept in {export_dir}, oldest first:" in process.stdout
    assert [version for version, _ in listed] == on_disk
    assert 0 < len(on_disk) <= 2
    assert [step for _, step in listed] == sorted((step for _, step in listed), key=int)


@pytest.mark.e2e
def test_example_predicts_with_the_newest_export(example_run):
    model_dir, process = example_run
    export_dir = model_dir / "export" / "best_exporter"
    [match] = [
        PREDICTION_LINE.match(line)
        for line in process.stdout.splitlines()
        if PREDICTION_LINE.match(line)
    ]
    newest = max(p for p in export_dir.iterdir() if re.fullmatch(r"\d{10}", p.name))
    assert match.group(1) == str(newest)
    assert 0.5 <= float(match.group(3)) <= 1.0


@pytest.mark.e2e
def test_example_exports_load_with_a_serving_signature(example_run):
    model_dir, _ = example_run
    export_dir = model_dir / "export" / "best_exporter"
    versions = [p for p in export_dir.iterdir() if re.fullmatch(r"\d{10}", p.name)]
    assert versions
    for version in versions:
        assert "serving_default" in tf.saved_model.load(str(version)).signatures


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], dict(model_dir=None, steps=1000, save_checkpoints_steps=100, exports_to_keep=5)),
        (
            ["--model_dir=/m", "--steps=7", "--save_checkpoints_steps=3", "--exports_to_keep=1"],
            dict(model_dir="/m", steps=7, save_checkpoints_steps=3, exports_to_keep=1),
        ),
    ],
)
def test_example_flags(argv, expected):
    assert vars(load_example_module().parse_args(argv)) == expected


@pytest.mark.parametrize("flag", ["--steps", "--save_checkpoints_steps", "--exports_to_keep"])
def test_example_rejects_a_non_positive_flag(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example_module().parse_args([f"{flag}=0"])
    assert exit_info.value.code == 2
    assert f"{flag} must be a positive integer, got 0" in capsys.readouterr().err


def test_example_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        load_example_module().parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "train up to this global step (default: 1000)" in help_text
    assert "how many exports to keep (default: 5)" in help_text


@pytest.mark.e2e
def test_example_without_model_dir_deletes_its_temporary_directory(tmp_path):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TMPDIR"] = str(temp_root)
    process = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps=20", "--save_checkpoints_steps=20"],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert process.returncode == 0, process.stderr
    assert "Deleted the temporary" in process.stdout
    assert [p.name for p in temp_root.iterdir() if p.name.startswith("best_exporter")] == []
