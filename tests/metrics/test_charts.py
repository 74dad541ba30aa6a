"""metrics.charts: pure figure builders, checked against plotly's own schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import pytest

from metrics import charts, series

T0 = datetime(2026, 11, 20, tzinfo=UTC)
MARKERS = [
    {
        "ts": T0 + timedelta(hours=3),
        "kind": "phase",
        "label": "Phase: Beta 20%",
        "actor": "alice",
        "reason": "alpha clean",
        "channel_id": None,
    },
    {
        "ts": T0 + timedelta(hours=5),
        "kind": "rollback",
        "label": "Rollback (kill switch on)",
        "actor": "bob",
        "reason": "",
        "channel_id": None,
    },
    {
        "ts": T0 + timedelta(hours=6),
        "kind": "override",
        "label": "Override → v2_full",
        "actor": "alice",
        "reason": "vip",
        "channel_id": "42",
    },
]


def rows_for(key: str) -> list[dict]:
    columns = series.CHARTS[key].columns
    return [
        {"period": T0 + timedelta(hours=h), "variant": v, **{c: 0.1 * (h + 1) for c in columns}}
        for h in range(8)
        for v in ("v1", "v2_full")
    ]


@pytest.mark.parametrize("key", list(series.CHARTS))
def test_time_figure__every_chart__valid_plotly_figure(key):
    figure = charts.time_figure(
        key, series.CHARTS[key].title, rows_for(key), ["v1", "v2_full"], MARKERS
    )
    go.Figure(figure)  # raises on any property plotly does not know


def test_time_figure__markers__one_line_and_label_each():
    figure = charts.time_figure(
        "latency", "Latency", rows_for("latency"), ["v1", "v2_full"], MARKERS
    )
    layout = figure["layout"]
    assert [s["x0"] for s in layout["shapes"]] == [m["ts"].isoformat() for m in MARKERS]
    assert [a["text"] for a in layout["annotations"]] == [m["label"] for m in MARKERS]
    assert all(s["yref"] == "paper" and (s["y0"], s["y1"]) == (0, 1) for s in layout["shapes"])
    assert "channel 42" in layout["annotations"][2]["hovertext"]


def test_time_figure__latency__a_trace_per_variant_and_percentile():
    figure = charts.time_figure("latency", "Latency", rows_for("latency"), ["v1", "v2_full"], [])
    assert [t["name"] for t in figure["data"]] == [
        "v1 p50",
        "v1 p95",
        "v1 p99",
        "v2_full p50",
        "v2_full p95",
        "v2_full p99",
    ]
    assert {t["line"]["color"] for t in figure["data"][:3]} == {charts.PALETTE[0]}


def test_time_figure__no_rows__says_so_and_keeps_markers():
    figure = charts.time_figure("reviews", "Reviews", [], [], MARKERS)
    texts = [a["text"] for a in figure["layout"]["annotations"]]
    assert figure["data"] == []
    assert "No reviews in this range yet" in texts and "Phase: Beta 20%" in texts
    go.Figure(figure)


def test_time_figure__x_range__spans_the_window():
    figure = charts.time_figure(
        "responses",
        "Replies",
        rows_for("responses"),
        ["v1"],
        [],
        x_range=(T0, T0 + timedelta(days=1)),
    )
    assert figure["layout"]["xaxis"]["range"] == [
        T0.isoformat(),
        (T0 + timedelta(days=1)).isoformat(),
    ]


def test_projection_figure__current_percentage__highlighted():
    figure = charts.projection_figure([(0, 15.0), (20, 22.5), (100, 52.5)], 20, 15.0)
    go.Figure(figure)
    bar = figure["data"][0]
    assert bar["x"] == ["0%", "20%", "100%"]
    assert bar["marker"]["color"][1] != bar["marker"]["color"][0]
    assert figure["layout"]["annotations"][0]["text"] == "all v1: $15.00/day"


def test_marker_shapes__late_in_the_range__label_left_of_the_line():
    _, notes = charts.marker_shapes(MARKERS, (T0, T0 + timedelta(hours=7)))
    assert [n["xanchor"] for n in notes] == ["left", "right", "right"]


def test_time_figure__weekly_review_rates__drawn_with_their_95pct_intervals():
    from metrics import stats

    window_rows = [
        {"period": T0, "variant": "v1", "hallucination_rate": 6 / 25, "hallucination_rate_ci": stats.wilson(6, 25)},
        {"period": T0, "variant": "v2_full", "hallucination_rate": 2 / 25, "hallucination_rate_ci": stats.wilson(2, 25)},
    ]
    columns = series.CHARTS["reviews"].columns
    rows = [{**{c: None for c in columns}, **r} for r in window_rows]
    figure = charts.time_figure("reviews", "Reviews", rows, ["v1", "v2_full"], [])
    go.Figure(figure)
    traces = {t["name"].split()[0]: t for t in figure["data"] if t.get("error_y")}
    low, high = stats.wilson(6, 25)
    assert traces["v1"]["error_y"]["array"] == [pytest.approx(high - 6 / 25)]
    assert traces["v1"]["error_y"]["arrayminus"] == [pytest.approx(6 / 25 - low)]
    assert set(traces) == {"v1", "v2_full"}
