"""The `best-exporter` command: look at an exporter's versions and their records.

best-exporter list gs://bucket/model/export/best_exporter
best-exporter list --json /models/run1/export/best_exporter
"""

import argparse
import json
import sys
from typing import List, Optional, Sequence

from best_exporter.records import ExportRecord, json_ready, read_export_records


def _format_table(exports: Sequence[ExportRecord]) -> List[str]:
    lines = [f"{'version':<12}{'step':>10}  {'exported_at':<22}metrics"]
    for export in exports:
        record = export.record
        if record is None:
            lines.append(
                f"{export.version:<12}{'-':>10}  {'-':<22}(no record: not written by best_exporter)"
            )
            continue
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in sorted(record["metrics"].items()))
        step = record.get("global_step")
        lines.append(
            f"{export.version:<12}{step if step is not None else '-':>10}  "
            f"{record.get('exported_at', '-'):<22}{metrics}"
        )
    return lines


def _list(args: argparse.Namespace) -> int:
    exports = read_export_records(args.export_dir)
    if args.json:
        rows = [
            dict(version=e.version, path=e.path, record=e.record and json_ready(e.record))
            for e in exports
        ]
        print(json.dumps(rows, indent=2, allow_nan=False))
        return 0
    if not exports:
        print(f"No exports in {args.export_dir}")
        return 0
    print("\n".join(_format_table(exports)))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command.

    Args:
      argv: the arguments after the program name; `sys.argv[1:]` if None.

    Returns:
      The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="best-exporter", description="Inspect the exports written by best_exporter."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    list_parser = commands.add_parser(
        "list", help="List the versions of an export directory with their records, oldest first."
    )
    list_parser.add_argument(
        "export_dir", help="The exporter's export directory, e.g. MODEL_DIR/export/best_exporter."
    )
    list_parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    list_parser.set_defaults(run=_list)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
