"""Tests of best_exporter.cli_output: what the command prints."""

import math

import pytest

from best_exporter.cli import output as cli_output


@pytest.mark.parametrize(
    "count, noun, expected",
    [(0, "export", "0 exports"), (1, "export", "1 export"), (2, "event file", "2 event files")],
)
def test_plural_agrees_with_the_count(count, noun, expected):
    assert cli_output.plural(count, noun) == expected


@pytest.mark.parametrize(
    "value, expected",
    [(None, "-"), (3, "3"), (0.123456789, "0.12346"), (math.nan, "nan"), (True, "True")],
)
def test_format_number_never_raises(value, expected):
    assert cli_output.format_number(value) == expected


@pytest.mark.parametrize(
    "available, requested, first, expected",
    [
        (["auc", "loss", "accuracy", "recall"], None, "loss", (["loss", "accuracy", "auc"], 1)),
        (
            ["accuracy_baseline", "auc", "loss", "label/mean"],
            None,
            None,
            (["loss", "auc", "accuracy_baseline"], 1),
        ),
        (["auc", "loss"], None, "auc", (["auc", "loss"], 0)),
        (["auc", "loss"], ["loss"], "auc", (["loss"], 0)),
        ([], None, "loss", ([], 0)),
    ],
)
def test_metric_columns_put_the_compared_metric_first(available, requested, first, expected):
    assert cli_output.metric_columns(available, requested, first) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            {"loss": math.nan, "nested": [math.inf, {"x": -math.inf}]},
            {"loss": "nan", "nested": ["inf", {"x": "-inf"}]},
        ),
        ({"global_step": 3, "ok": 0.5}, {"global_step": 3, "ok": 0.5}),
    ],
)
def test_jsonable_names_non_finite_numbers_anywhere(value, expected):
    assert cli_output.jsonable(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [("2026-11-25T12:00:00Z", "2026-11-25 12:00:00"), (None, "-"), (5, "?"), ("yesterday", "?")],
)
def test_format_time_shows_a_record_time_or_a_mark(value, expected):
    assert cli_output.format_time(value) == expected


def test_render_table_aligns_columns_and_leaves_the_last_free():
    lines = cli_output.render_table(
        ["step", "loss", ""], [["10", "0.5", "note"], ["100", "0.25", ""]], [True, True]
    )
    assert lines == ["step  loss", "  10   0.5  note", " 100  0.25"]


def test_metric_columns_reject_an_unknown_requested_metric_naming_the_known():
    with pytest.raises(
        cli_output.UsageError, match=r"--metrics los: not found; the metrics are loss, auc"
    ):
        cli_output.metric_columns(["auc", "loss"], ["los"], "loss")
