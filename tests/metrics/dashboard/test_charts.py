"""metrics.dashboard.charts: pure figure builders, checked against plotly's own schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import pytest

from metrics.dashboard import charts, series

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
    assert [a["text"] for a in layout["annotations"]] == ["Beta 20%", "Rollback", "Override"]
    for marker, note in zip(MARKERS, layout["annotations"], strict=True):
        assert marker["label"] in note["hovertext"]
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
    assert "No reviews in this range yet" in texts and "Beta 20%" in texts
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


def test_marker_shapes__late_in_the_range__label_left_of_the_line_not_cut_off():
    _, notes = charts.marker_shapes(MARKERS, (T0, T0 + timedelta(hours=6, minutes=20)))
    assert notes[-1]["xanchor"] == "right"  # the override, 20 minutes before the end
    for marker, note in zip(MARKERS, notes, strict=True):
        where = (marker["ts"] - T0) / timedelta(hours=6, minutes=20)
        lo, hi = charts.label_extent(where, note["text"], note["xanchor"])
        assert -0.02 <= lo and hi <= 1.02


def test_time_figure__weekly_review_rates__drawn_with_their_95pct_intervals():
    from metrics import stats

    window_rows = [
        {
            "period": T0,
            "variant": v,
            "hallucination_rate": k / 25,
            "hallucination_rate_ci": stats.wilson(k, 25),
        }
        for v, k in (("v1", 6), ("v2_full", 2))
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


def _marker(minutes: int, kind: str, label: str) -> dict:
    return {
        "ts": T0 + timedelta(hours=12, minutes=minutes),
        "kind": kind,
        "label": label,
        "actor": "alice",
        "reason": f"step {minutes}",
        "channel_id": None,
    }


INCIDENT = [
    _marker(0, "change", "Percentage 20% → 50%"),
    _marker(3, "rollback", "Rollback (kill switch on)"),
    _marker(5, "override", "Override → v1"),
    _marker(9, "release", "Re-enabled at 5%"),
]


def test_marker_shapes__incident_with_changes_minutes_apart__one_line_and_one_label():
    shapes, notes = charts.marker_shapes(INCIDENT, (T0, T0 + timedelta(days=1)))
    assert len(shapes) == len(notes) == 1
    assert notes[0]["text"] == "Rollback +3"  # the most severe change names it
    assert shapes[0]["line"]["color"] == charts.MARKER_COLOURS["rollback"]
    hover = notes[0]["hovertext"].split("<br>")
    for marker in INCIDENT:  # every change is in the hover text, oldest first
        assert any(marker["label"] in line for line in hover)
    assert hover[0].startswith(f"{INCIDENT[0]['ts']:%Y-%m-%d %H:%M} UTC")


def test_marker_shapes__a_day_apart_over_a_week__separate_lines():
    markers = [_marker(0, "phase", "Phase: Alpha 5%"), _marker(24 * 60, "phase", "Phase: Beta 20%")]
    shapes, _ = charts.marker_shapes(markers, (T0, T0 + timedelta(days=7)))
    assert len(shapes) == 2


def test_marker_shapes__labels__above_the_plot_area_and_lines_thin():
    shapes, notes = charts.marker_shapes(MARKERS, (T0, T0 + timedelta(hours=8)))
    assert all(n["y"] == 1.0 and n["yanchor"] == "bottom" for n in notes)
    assert all("bgcolor" not in n for n in notes)  # no box hiding a line
    assert all(s["line"]["width"] <= 1 and s["opacity"] < 1 for s in shapes)


def test_marker_shapes__a_month_of_history__labels_on_one_row_never_overlap():
    # the benchmark's history: Alpha, Beta, a rollback and re-enable a day apart, an override,
    # Canary, over 30 days
    start = T0 - timedelta(days=30)
    kinds = [
        (1, "phase", "Phase: Alpha 5%"),
        (4, "phase", "Phase: Beta 20%"),
        (18, "rollback", "Rollback (kill switch on)"),
        (19, "release", "Re-enabled at 20%"),
        (24, "override", "Override → v2_full"),
        (27, "phase", "Phase: Canary 50%"),
    ]
    markers = [
        {"ts": start + timedelta(days=d), "kind": k, "label": text, "actor": "a", "reason": ""}
        for d, k, text in kinds
    ]
    _, notes = charts.marker_shapes(markers, (start, T0), charts.PERIOD_MS["day"])
    assert len(notes) == 6
    rows: dict[int, list[tuple[float, float]]] = {}
    for m, note in zip(markers, notes, strict=True):
        where = (m["ts"] - start) / (T0 - start)
        rows.setdefault(note["yshift"], []).append(
            charts.label_extent(where, note["text"], note["xanchor"])
        )
    for extents in rows.values():
        extents.sort()
        assert all(a[1] < b[0] for a, b in zip(extents, extents[1:], strict=False)), extents


def test_time_figure__latency__log_axis_so_timeouts_do_not_squash_p50():
    rows = [
        {"period": T0 + timedelta(hours=h), "variant": "v1", "p50_ms": 900, "p95_ms": 2000}
        | {"p99_ms": 30000}
        for h in range(6)
    ]
    figure = charts.time_figure("latency", "Latency", rows, ["v1"], [])
    go.Figure(figure)
    assert figure["layout"]["yaxis"]["type"] == "log"


def test_time_figure__cost_per_day__partial_days_hatched_and_explained():
    rows = [
        {"period": T0 + timedelta(days=d), "variant": "v1", "cost_usd": 10.0}
        | {"hours_counted": h, "partial_day": h < 24}
        for d, h in enumerate((9, 24, 24, 10.5))
    ]
    figure = charts.time_figure("cost_per_day", "Cost per day", rows, ["v1"], [], granularity="day")
    go.Figure(figure)
    bar = figure["data"][0]
    assert bar["marker"]["pattern"]["shape"] == ["/", "", "", "/"]
    assert bar["customdata"][0] == " · partial day: 9 of 24 h counted"
    assert bar["customdata"][1] == ""
    assert bar["marker"]["opacity"][0] < bar["marker"]["opacity"][1] == 1.0


def test_projection_figure__a_quiet_bot__cents_on_the_axis():
    figure = charts.projection_figure([(0, 0.40), (100, 0.89)], 0, 0.40)
    assert figure["layout"]["yaxis"]["tickformat"] == "$,.2f"
    busy = charts.projection_figure([(0, 15.0), (100, 52.5)], 0, 15.0)
    assert busy["layout"]["yaxis"]["tickformat"] == "$,.0f"


def test_time_figure__shared_split_across_charts__same_figures_as_each_alone():
    """A page's charts share their rows' split by variant and x values (``shared``): each
    figure equals the one drawn alone, also for another rows list drawn after (not mixed up)."""
    every = {c for key in series.CHARTS for c in series.CHARTS[key].columns}
    rows = [
        {
            "period": T0 + timedelta(hours=h),
            "variant": v,
            **{c: (None if (h + i) % 5 == 0 else 0.1 * (h + i + 1)) for i, c in enumerate(every)},
            "hours_counted": 24 - h % 3,
            "partial_day": h % 3 > 0,
        }
        for h in range(60)
        for v in ("v1", "v2_full", "v2_simplified")
    ]
    other = [dict(r, period=r["period"] + timedelta(days=1)) for r in rows if r["variant"] != "v1"]
    variants = ["v1", "v2_full", "v2_simplified"]
    shared: dict = {}
    for table in (rows, other, rows):
        for key in series.CHARTS:
            title = series.CHARTS[key].title
            alone = charts.time_figure(key, title, table, variants, MARKERS)
            together = charts.time_figure(key, title, table, variants, MARKERS, shared=shared)
            assert together == alone, key
    assert len(shared) == 2
