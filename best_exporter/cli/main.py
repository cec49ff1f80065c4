"""The `best-exporter` command: which model is served, why, and how the best evolved.

    best-exporter list MODEL_DIR/export/best_exporter     every version; the served one marked
    best-exporter best MODEL_DIR/export/best_exporter     the path TensorFlow Serving serves
    best-exporter history MODEL_DIR                       every evaluation; improvements and
                                                          what became of their exports

Each subcommand takes `--json`. Exit status: 0 on success, 1 when `best` finds
nothing to serve, 2 for a bad argument (a missing path, a file, an unknown
scheme) or an unreadable record, with a one-line message on stderr.

TensorFlow is imported only once a subcommand runs, so `--help` and `--version`
are instant; its C++ log lines are silenced unless `-v` is given.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from best_exporter.cli.output import EXIT_USAGE, PROG, UsageError
from best_exporter.version import __version__


def _load_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow, its C++ log lines silenced unless `verbose`."""
    if not verbose:
        # Lines at import (CUDA, oneDNN, TensorRT) say nothing about exports.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Raises a clear ImportError on TensorFlow >= 2.16.
    from best_exporter import _compat  # noqa: F401  pylint: disable=unused-import


def _run(args: argparse.Namespace) -> int:
    from best_exporter.cli import exports as cli_exports
    from best_exporter.cli import history as cli_history
    from best_exporter.core.log import logger

    commands = dict(
        list=cli_exports.run_list, best=cli_exports.run_best, history=cli_history.run_history
    )
    # The library's warnings (an unreadable record) are rows of the table unless -v.
    level = logger.level
    logger.setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        return commands[args.run](args)
    finally:
        logger.setLevel(level)


def _metric_list(text: str) -> List[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected metric names like loss,auc; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="See what best_exporter did: which model is served and why, and how the "
        "best evolved. Design: docs/design.md in the repository.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show TensorFlow's and the library's logs"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show TensorFlow's and the library's logs",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    list_parser = commands.add_parser(
        "list",
        parents=[common],
        help="every version of an export dir, oldest first; the served one marked",
        description="List the versions of an export directory, oldest first, with the step "
        "and metrics of each record. The version TensorFlow Serving serves (the highest "
        "complete one) is marked; missing and invalid records are named.",
    )
    list_parser.add_argument(
        "export_dir", help="an exporter's export directory, MODEL_DIR/export/NAME"
    )
    list_parser.add_argument(
        "--metrics",
        type=_metric_list,
        help="comma-separated metrics to show, e.g. loss,auc (default: loss and 2 more)",
    )
    list_parser.set_defaults(run="list")

    best_parser = commands.add_parser(
        "best",
        parents=[common],
        help="the path of the version TensorFlow Serving serves",
        description="Print the path of the version TensorFlow Serving serves: the highest "
        "complete version. Exits 1 if there is none.",
    )
    best_parser.add_argument(
        "export_dir", help="an exporter's export directory, MODEL_DIR/export/NAME"
    )
    best_parser.set_defaults(run="best")

    history_parser = commands.add_parser(
        "history",
        parents=[common],
        help="every evaluation; which improved on all before it and what became of its export",
        description="List every evaluation in the eval event files with its step and metrics, "
        "mark each that improved on all before it, and say whether its export is on disk, "
        "was pruned, or was never made.",
    )
    history_parser.add_argument("model_dir", help="the Estimator's model_dir")
    history_parser.add_argument(
        "--pattern",
        default="eval/*.tfevents.*",
        help="glob of the eval event files, relative to MODEL_DIR unless absolute "
        "(default: %(default)s)",
    )
    direction = history_parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--metric",
        default="loss",
        help="compare by this metric, lower is better (default: %(default)s)",
    )
    direction.add_argument(
        "--higher-is-better", metavar="METRIC", help="compare by METRIC, higher is better"
    )
    history_parser.add_argument(
        "--min-delta",
        type=float,
        default=0.0,
        help="the least change that counts as an improvement, as your compare_fn's "
        "(default: %(default)s)",
    )
    history_parser.add_argument(
        "--export-dir",
        help="the exporter's export directory (default: the only one in MODEL_DIR/export)",
    )
    history_parser.add_argument(
        "--metrics",
        type=_metric_list,
        help="comma-separated metrics to show (default: the compared metric and 2 more)",
    )
    history_parser.set_defaults(run="history")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command.

    Args:
      argv: the arguments after the program name; `sys.argv[1:]` if None.

    Returns:
      The exit status: 0, 1 when `best` finds nothing to serve, 2 for a bad
      argument or an unreadable record.
    """
    args = build_parser().parse_args(argv)
    try:
        _load_tensorflow(args.verbose)
        return _run(args)
    except (UsageError, ImportError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `best-exporter list ... | head`: the reader has all it wanted.
        sys.stderr.close()
        return 0


def run() -> None:
    """The console script: runs `main` and exits with its status."""
    status = main()
    if "tensorflow_io" in sys.modules:
        # tensorflow-io (loaded for s3://) aborts every process that loaded it
        # at exit, with code 134 (tensorflow/io#1912): end before that.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
