"""The README's usage section and its commands run as written."""

import os
import pathlib
import re
import shlex
import subprocess
import sys
from typing import List

import pytest
import tensorflow as tf

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
README_MODEL_DIR = "/tmp/best_exporter_quickstart"
# Fewer steps than the README's, so that the test takes seconds.
SHORTER = {
    "max_steps=1000": "max_steps=60",
    "save_checkpoints_steps=100": "save_checkpoints_steps=20",
}


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _code_blocks(section: str, language: str) -> List[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def _usage_program(model_dir: str) -> str:
    [program] = _code_blocks(_section("Usage"), "python")
    assert program.count(README_MODEL_DIR) == 1
    program = program.replace(README_MODEL_DIR, model_dir)
    for long, short in SHORTER.items():
        assert program.count(long) == 1, long
        program = program.replace(long, short)
    return program


def _readme_commands(model_dir: str) -> List[List[str]]:
    """The `best-exporter` commands of "See what the exporter did", on `model_dir`."""
    commands = []
    for block in _code_blocks(_section("See what the exporter did"), "sh"):
        for line in block.splitlines():
            argv = shlex.split(line.replace(README_MODEL_DIR, model_dir), comments=True)
            if argv and argv[0] == "best-exporter":
                commands.append(argv)
    return commands


@pytest.fixture(scope="module")
def usage_run(tmp_path_factory):
    """Runs the README's usage program in a fresh process, as a user pastes it into a file."""
    work = tmp_path_factory.mktemp("readme")
    model_dir = str(work / "quickstart")
    (work / "usage.py").write_text(_usage_program(model_dir))
    # The program's own choice of TensorFlow's C++ log level, not the test suite's.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(
        [sys.executable, "usage.py"],
        cwd=str(work),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # Only against a hang.
    )
    return model_dir, process


@pytest.mark.e2e
def test_usage_program_runs_and_logs_only_the_exporter_decisions(usage_run):
    _, process = usage_run

    assert process.returncode == 0, process.stderr
    assert "BestExporter 'best_exporter': exported step 20:" in process.stderr
    assert "INFO:tensorflow:" not in process.stderr  # Estimator's own INFO lines.
    assert "tensorflow/core" not in process.stderr  # TensorFlow's C++ lines.


@pytest.mark.e2e
def test_readme_commands_run_on_the_usage_program_model_dir(usage_run):
    model_dir, process = usage_run
    assert process.returncode == 0, process.stderr
    bin_dir = os.path.dirname(sys.executable)
    commands = _readme_commands(model_dir)
    assert [argv[1] for argv in commands] == ["list", "history"]

    for argv in commands:
        result = subprocess.run(
            [os.path.join(bin_dir, argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert "served" in result.stdout


@pytest.mark.e2e
def test_the_served_export_has_a_serving_default_signature_taking_examples(usage_run):
    model_dir, _ = usage_run
    best = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "best-exporter"), "best"]
        + [os.path.join(model_dir, "export", "best_exporter")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert best.returncode == 0, best.stderr
    example = tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5]))}
        )
    )

    serve = tf.saved_model.load(best.stdout.strip()).signatures["serving_default"]
    outputs = serve(inputs=tf.constant([example.SerializeToString()]))

    # y = 3x, learned roughly in 60 steps.
    assert 0.5 < float(outputs["outputs"].numpy()[0][0]) < 2.5
