"""The `best-exporter` command: which model is served, and why each step was or was not exported.

`main` parses and runs one command line; `run` is the console script. Nothing
here imports TensorFlow before a subcommand runs, so `--help` and `--version`
answer at once.
"""

from best_exporter.cli.main import main, run

__all__ = ["main", "run"]
