"""`python -m best_exporter.cli`: the `best-exporter` command."""

from best_exporter.cli.main import run

run()
