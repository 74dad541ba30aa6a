"""Plotly figures for the dashboard, built on the server as plain figure dicts (pure, no database).

A figure is the JSON plotly.js takes (``{"data": [...], "layout": {...}}``); building dicts
instead of ``plotly.graph_objects`` objects keeps a page with a dozen figures well inside its
time budget, and the tests check every figure against plotly's own schema (``go.Figure(fig)``
refuses unknown properties). Every time axis carries the rollout's markers: phase changes,
rollbacks, re-enables, overrides and percentage changes as vertical lines with a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"
PALETTE = ("#5b6470", "#e8590c", "#2b8a3e", "#7048e8", "#1098ad", "#c2255c")
MARKER_COLOURS = {
    "phase": "#3b5bdb",
    "rollback": "#c92a2a",
    "release": "#2b8a3e",
    "override": "#868e96",
    "change": "#7048e8",
}
DASHES = ("solid", "dash", "dot", "dashdot")


def variant_colours(variants: Sequence[str]) -> dict[str, str]:
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}


def _iso(value: Any) -> Any:
    return _iso_datetime(value) if isinstance(value, datetime) else value


@lru_cache(maxsize=8192)
def _iso_datetime(value: datetime) -> str:
    """isoformat of an aware datetime costs ~2.5 µs; a page by hour formats each of its
    periods about 50 times (every trace of every chart)."""
    return value.isoformat()


# (column, legend suffix, line dash) per chart; the first column is the main one
SERIES: dict[str, list[tuple[str, str]]] = {
    "responses": [("responses", "")],
    "errors": [("error_rate", "errors"), ("timeout_rate", "timeouts")],
    "latency": [("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")],
    "tokens": [("input_per_reply", "input"), ("output_per_reply", "output")],
    "cost_per_reply": [("cost_per_reply_usd", "")],
    "cost_per_day": [("cost_usd", "")],
    "sentiment": [("positive_share", "")],
    "corrections": [("correction_rate", "")],
    "engagement": [("followups_per_reply", "")],
    "conversation_messages": [("messages_per_conversation", "")],
    "conversation_length": [("avg_length_minutes", "")],
    "cache": [("cache_hit_rate", "")],
    "reviews": [
        ("hallucination_rate", "hallucinations"),
        ("format_compliance", "format"),
        ("uncertainty_calibration", "calibration"),
        ("consistency", "consistency"),
    ],
}
Y_FORMAT = {
    "errors": ".1%",
    "sentiment": ".0%",
    "corrections": ".1%",
    "cache": ".0%",
    "reviews": ".0%",
    "cost_per_reply": "$.4f",
    "cost_per_day": "$,.2f",
    "latency": ",.0f",
    "tokens": ",.0f",
    "responses": ",d",
    "engagement": ".2f",
    "conversation_messages": ".1f",
    "conversation_length": ".1f",
}
BARS = {"responses", "cost_per_day"}
PERIOD_MS = {"hour": 3_600_000, "day": 86_400_000, "week": 604_800_000}
DAILY = {"cost_per_day": "day"}
WEEKLY = {"reviews": "week"}
EMPTY_TEXT = {"reviews": "No reviews in this range yet"}


def base_layout(*, y_format: str = "", y_title: str = "", height: int = 260) -> dict[str, Any]:
    """The page shows each chart's title as an HTML heading, so the figure has none (its
    ``meta`` keeps it); the legend sits under the plot area, the markers' labels above it."""
    return {
        "height": height,
        "margin": {"l": 56, "r": 12, "t": 44, "b": 30},
        "font": {"family": FONT, "size": 12, "color": "#1b1f24"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "x unified",
        "showlegend": True,
        "legend": {
            "orientation": "h",
            "x": 0,
            "xref": "container",
            "y": 0,
            "yref": "container",
            "yanchor": "bottom",
            "font": {"size": 11},
        },
        "xaxis": {
            "type": "date",
            "gridcolor": "#eef0f3",
            "linecolor": "#dde1e6",
            "automargin": True,
        },
        "yaxis": {
            "tickformat": y_format,
            "gridcolor": "#eef0f3",
            "zerolinecolor": "#dde1e6",
            "rangemode": "tozero",
            "automargin": True,
            "title": {"text": y_title, "font": {"size": 11}},
        },
    }


SEVERITY = ("rollback", "phase", "release", "change", "override")  # a group shows its first
MARKER_GAP_SHARE = 0.03  # markers closer than 3% of the range (or one period) are one group
LABEL_ROWS = 3  # label rows above the plot area
LABEL_CHAR_SHARE = 6.2 / 320  # a label character's share of a phone's plot width (~320 px)


def short_label(m: dict[str, Any]) -> str:
    """The label drawn above a marker's line: "Beta 20%", "Rollback", "Re-enabled 20%",
    "Override", "20% → 50%" (the full one is in the hover text)."""
    label = m["label"]
    return {
        "phase": label.removeprefix("Phase: "),
        "rollback": "Rollback",
        "release": label.replace("Re-enabled at", "Re-enabled"),
        "override": "Override",
        "change": label.removeprefix("Percentage "),
    }.get(m["kind"], label)


def label_extent(x: float, text: str, anchor: str) -> tuple[float, float]:
    """The share of the plot width [a, b] a label at x (0-1) takes, by a character-width guess."""
    width = len(text) * LABEL_CHAR_SHARE
    return (x - width, x) if anchor == "right" else (x, x + width)


def group_markers(
    markers: Iterable[dict[str, Any]],
    x_range: tuple[datetime, datetime] | None = None,
    period_ms: int = PERIOD_MS["hour"],
) -> list[list[dict[str, Any]]]:
    """Markers closer to each other than one period or 3% of the range, in one group (oldest
    first): an incident with several changes in minutes is one line with one label, not a pile
    of labels over the data."""
    gap_ms: float = period_ms
    if x_range and x_range[1] > x_range[0]:
        gap_ms = max(gap_ms, (x_range[1] - x_range[0]).total_seconds() * 1000 * MARKER_GAP_SHARE)
    groups: list[list[dict[str, Any]]] = []
    for m in sorted(markers, key=lambda m: m["ts"]):
        if groups and (m["ts"] - groups[-1][0]["ts"]).total_seconds() * 1000 < gap_ms:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def _marker_hover(m: dict[str, Any]) -> str:
    hover = f"{m['ts']:%Y-%m-%d %H:%M} UTC · {m['label']} · {m['actor']}"
    if m.get("channel_id") and m["kind"] == "override":
        hover += f"<br>channel {m['channel_id']}"
    if m.get("reason"):
        hover += "<br>“" + m["reason"][:120] + "”"
    return hover


def _label_slot(row_ends: list[float], where: float, text: str) -> tuple[int, str]:
    """(row, anchor) for a label at ``where``: right of its line, or left of it in the last third
    of the range (so it is not cut off); the first row where it overlaps no earlier label, trying
    the other side too; else the row whose last label ends first."""
    preferred = ("right", "left") if where > 2 / 3 else ("left", "right")
    for row, end in enumerate(row_ends):
        for anchor in preferred:
            lo, hi = label_extent(where, text, anchor)
            if end < lo and -0.02 <= lo and hi <= 1.02:
                return row, anchor
    return min(range(len(row_ends)), key=lambda r: row_ends[r]), preferred[0]


def marker_shapes(
    markers: Iterable[dict[str, Any]],
    x_range: tuple[datetime, datetime] | None = None,
    period_ms: int = PERIOD_MS["hour"],
) -> tuple[list[dict], list[dict]]:
    """Thin vertical lines (shapes) and their labels (annotations) for audit markers, grouped by
    ``group_markers``. The labels sit above the plot area, never over the data, on two rows
    when neighbours would overlap; a group's label is its most severe change ("Rollback +2") and
    its hover text lists every change with time, who and why. A label sits right of its line,
    or left of it in the last third of the range (so it is not cut off)."""
    shapes, notes = [], []
    row_ends = [float("-inf")] * LABEL_ROWS  # where the last label of each row ends (0-1)
    origin, span = None, None
    if x_range and x_range[1] > x_range[0]:
        origin, span = x_range[0], x_range[1] - x_range[0]
    for group in group_markers(markers, x_range, period_ms):
        head = min(group, key=lambda m: SEVERITY.index(m["kind"]) if m["kind"] in SEVERITY else 9)
        first = group[0]
        where = (first["ts"] - origin) / span if origin is not None and span else 0.0
        text = short_label(head) if len(group) == 1 else f"{short_label(head)} +{len(group) - 1}"
        row, anchor = _label_slot(row_ends, where, text)
        row_ends[row] = max(row_ends[row], label_extent(where, text, anchor)[1])
        colour = MARKER_COLOURS.get(head["kind"], "#495057")
        x = _iso(first["ts"])
        kind = head["kind"]
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": x,
                "x1": x,
                "y0": 0,
                "y1": 1,
                "opacity": 0.55,
                "line": {
                    "color": colour,
                    "width": 1,
                    "dash": "solid" if kind in ("phase", "rollback") else "dot",
                },
                "name": f"marker-{kind}",
            }
        )
        notes.append(
            {
                "x": x,
                "xref": "x",
                "yref": "paper",
                "y": 1.0,
                "yanchor": "bottom",
                "yshift": 1 + 13 * row,
                "xanchor": anchor,
                "text": text,
                "showarrow": False,
                "font": {"size": 10, "color": colour},
                "hovertext": "<br>".join(_marker_hover(m) for m in group),
                "name": f"marker-{kind}",
            }
        )
    return shapes, notes


def time_figure(
    key: str,
    title: str,
    rows: list[dict[str, Any]],
    variants: Sequence[str],
    markers: Sequence[dict[str, Any]],
    *,
    x_range: tuple[datetime, datetime] | None = None,
    y_title: str = "",
    granularity: str = "hour",
    shared: dict | None = None,
) -> dict[str, Any]:
    """One chart over time: a trace per variant (and per series, by dash), with the markers.
    Each point stands for its whole period (an hour, a day, a week): plotted at the period's
    middle, so a marker falls inside the bar or between the points it happened in. Latency is
    on a log axis (30 s timeouts in p99 leave p50 and p95 readable); the days of "Cost per day"
    that are only partly counted (``partial_day``) are hatched and say so on hover.

    ``shared``: a dict kept across the figures of one page, where the rows split by variant and
    their x values are kept per ``rows`` list (the page's charts over its periods all draw the
    same 1,440 rows by hour)."""
    colours = variant_colours(variants)
    period_ms = PERIOD_MS[WEEKLY.get(key, DAILY.get(key, granularity))]
    series = SERIES[key]
    data = []
    by_variant, x_values = _split(rows, variants, shared)
    for variant in variants:
        mine = by_variant[variant]
        if not mine:
            continue
        every_x = x_values[variant]
        for i, (column, suffix) in enumerate(series):
            ys = [r.get(column) for r in mine]
            if None in ys:
                kept = [j for j, y in enumerate(ys) if y is not None]
                xs, ys = [every_x[j] for j in kept], [ys[j] for j in kept]
            else:
                xs = every_x
            if not ys and i:
                continue
            name = f"{variant} {suffix}".strip()
            hover = f"{name}: %{{y:{Y_FORMAT.get(key, '')}}}<extra></extra>"
            trace: dict[str, Any] = {
                "x": xs,
                "y": ys,
                "name": name,
                "legendgroup": variant,
                "marker": {"color": colours[variant]},
                "hovertemplate": hover,
                "xperiod": period_ms,
                "xperiodalignment": "middle",
            }
            intervals: list[Any] = (
                [r.get(f"{column}_ci") for r in mine if r.get(column) is not None]
                if key in WEEKLY
                else []
            )
            if intervals and all(intervals):
                # asymmetric 95% confidence intervals (the weekly review rates carry them)
                trace["error_y"] = {
                    "type": "data",
                    "symmetric": False,
                    "array": [hi - v for v, (_, hi) in zip(ys, intervals, strict=True)],
                    "arrayminus": [v - lo for v, (lo, _) in zip(ys, intervals, strict=True)],
                    "color": colours[variant],
                    "thickness": 1.5,
                }
            if key == "cost_per_day":
                _mark_partial_days(trace, [r for r in mine if r.get(column) is not None], name)
            if key in BARS:
                trace["type"] = "bar"
            else:
                trace.update(
                    type="scatter",
                    mode="lines+markers" if len(ys) <= 48 else "lines",
                    line={
                        "color": colours[variant],
                        "width": 2 if i == 0 else 1.5,
                        "dash": DASHES[i % 4],
                    },
                )
                trace["marker"]["size"] = 4
            data.append(trace)
    # the legend under the plot wraps onto more rows when there are more series per variant
    height = 280 + 22 * (len(series) - 1) if key != "reviews" else 320
    layout = base_layout(y_format=Y_FORMAT.get(key, ""), y_title=y_title, height=height)
    layout["meta"] = {"chart": key, "title": title}
    if key in BARS:
        layout["barmode"] = "stack"
        layout["bargap"] = 0.15
    if key == "latency":
        layout["yaxis"].update(type="log", rangemode="normal", dtick="D2")
    if x_range:
        layout["xaxis"]["range"] = [_iso(x_range[0]), _iso(x_range[1])]
    shapes, notes = marker_shapes(
        markers, x_range, PERIOD_MS["day"] if key == "cost_per_day" else PERIOD_MS[granularity]
    )
    layout["shapes"] = shapes
    layout["annotations"] = notes
    if not data:
        layout["annotations"] = [
            *notes,
            {
                "text": EMPTY_TEXT.get(key, "No replies in this range"),
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
                "font": {"size": 13, "color": "#5b6470"},
            },
        ]
        layout["yaxis"]["showticklabels"] = False
        layout["xaxis"]["showticklabels"] = False
        layout["showlegend"] = False
    return {"data": data, "layout": layout}


def _split(
    rows: list[dict[str, Any]], variants: Sequence[str], shared: dict | None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """The rows of each variant and their x values (ISO periods), kept in ``shared`` (when
    given) for the same ``rows`` list and variants: the entry holds the list, so its id stays
    its own while the entry lives."""
    key = (id(rows), tuple(variants))
    if shared is not None and (entry := shared.get(key)) is not None and entry[0] is rows:
        return entry[1], entry[2]
    by_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in rows:  # one pass: a 30-day page by hour draws 1,440 rows in each chart
        if r["variant"] in by_variant:
            by_variant[r["variant"]].append(r)
    x_values = {v: [_iso(r["period"]) for r in mine] for v, mine in by_variant.items()}
    if shared is not None:
        shared[key] = (rows, by_variant, x_values)
    return by_variant, x_values


def _mark_partial_days(trace: dict[str, Any], rows: list[dict[str, Any]], name: str) -> None:
    """Hatch and lighten the bars of days only partly counted, and say so on hover."""
    partial = [bool(r.get("partial_day")) for r in rows]
    if not any(partial):
        return
    trace["marker"]["pattern"] = {"shape": ["/" if p else "" for p in partial], "solidity": 0.35}
    trace["marker"]["opacity"] = [0.55 if p else 1.0 for p in partial]
    trace["customdata"] = [
        f" · partial day: {r.get('hours_counted', 0):g} of 24 h counted" if p else ""
        for r, p in zip(rows, partial, strict=True)
    ]
    trace["hovertemplate"] = f"{name}: %{{y:$,.2f}}%{{customdata}}<extra></extra>"


def projection_figure(
    points: Sequence[tuple[int, float]],
    current: int | None,
    baseline: float | None,
    title: str = "Projected cost per day by phase percentage",
) -> dict[str, Any]:
    """Bars of projected $/day at each percentage, the current one highlighted."""
    colours = ["#e8590c" if p == current else "#adb5bd" for p, _ in points]
    small = max((v for _, v in points), default=0) < 10  # a quiet bot: cents, not "$0 $1 $1"
    layout = base_layout(y_format="$,.2f" if small else "$,.0f", height=260)
    layout["meta"] = {"chart": "projection", "title": title}
    layout["xaxis"] = {
        "type": "category",
        "title": {"text": "channels on v2", "font": {"size": 11}},
    }
    layout["showlegend"] = False
    layout["hovermode"] = "closest"
    if baseline is not None:
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "yref": "y",
                "y0": baseline,
                "y1": baseline,
                "line": {"color": "#5b6470", "dash": "dot", "width": 1},
            }
        ]
        layout["annotations"] = [
            {
                "xref": "paper",
                "x": 1,
                "xanchor": "right",
                "yref": "y",
                "y": baseline,
                "yanchor": "bottom",
                "text": f"all v1: ${baseline:,.2f}/day",
                "showarrow": False,
                "font": {"size": 10, "color": "#5b6470"},
            }
        ]
    return {
        "data": [
            {
                "type": "bar",
                "x": [f"{p}%" for p, _ in points],
                "y": [round(v, 2) for _, v in points],
                "marker": {"color": colours},
                "text": [f"${v:,.2f}" for _, v in points],
                "textposition": "outside",
                "cliponaxis": False,
                "hovertemplate": "%{x}: %{y:$,.2f}/day<extra></extra>",
                "name": "projected $/day",
            }
        ],
        "layout": layout,
    }
