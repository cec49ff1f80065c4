"""Tests of best_exporter.cli_history.replay: the marks of `best-exporter history`."""

import math

import pytest

from best_exporter.cli import history as cli_history
from best_exporter.core import compare
from best_exporter.core.records import ExportRecord

LOSSES = [(10, 0.9), (20, 0.7), (30, 0.65), (40, math.nan), (50, 0.5)]


def _export(step: int) -> ExportRecord:
    return ExportRecord(
        version=1_700_000_000 + step,
        path=f"/m/export/best/{1_700_000_000 + step}",
        record={"global_step": step, "metrics": {}},
    )


@pytest.mark.parametrize(
    "comparator, on_disk, expected",
    [
        (
            compare.lower_is_better("loss"),
            [30, 50],
            [
                ("first", "pruned"),
                ("improved", "pruned"),
                ("improved", "on disk"),
                ("invalid", None),
                ("improved", "on disk"),
            ],
        ),
        (
            compare.lower_is_better("loss", min_delta=0.1),
            [10, 50],
            [
                ("first", "on disk"),
                ("improved", "not exported"),
                ("not improved", None),
                ("invalid", None),
                ("improved", "on disk"),
            ],
        ),
        (
            compare.higher_is_better("loss"),
            [],
            [("first", "not exported"), *[("not improved", None)] * 2, ("invalid", None)]
            + [("not improved", None)],
        ),
    ],
)
def test_replay_marks_improvements_and_their_exports(comparator, on_disk, expected):
    exports = {step: _export(step) for step in on_disk}
    evaluations = [(step, {"loss": loss}) for step, loss in LOSSES]

    rows = cli_history.replay(evaluations, comparator, exports, exports.get(50))

    assert [(row["outcome"], row["export_state"]) for row in rows] == expected
    assert [row["served"] for row in rows] == [step == 50 and 50 in exports for step, _ in LOSSES]


def test_replay_names_the_best_each_evaluation_was_judged_against():
    rows = cli_history.replay(
        [(10, {"loss": 0.5}), (20, {"loss": 0.75}), (30, {"auc": 0.5})],
        compare.lower_is_better("loss"),
        {},
        None,
    )

    assert [(row["best_step"], row["best_value"]) for row in rows] == [
        (None, None),
        (10, 0.5),
        (10, 0.5),
    ]
    assert rows[2]["outcome"] == "no loss" and not rows[2]["improved"]
