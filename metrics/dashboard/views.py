"""The comparison dashboard: pages, htmx fragments, and a JSON and CSV endpoint behind each chart.

Readable by everyone with a login. Every figure comes from metrics.dashboard.series (hourly
rollups); figures are built on the server (metrics.dashboard.charts) and drawn by
static/js/charts.js.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.html import escape as escape_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET
from django_htmx.http import push_url, reswap

from rollout.models import Rollout
from selcontrol.http import HtmxHttpRequest

from .. import stats
from ..reviews import blinding as review_blinding
from . import charts, series
from .forms import DashboardForm


class BadInput(Exception):
    """One sentence naming the field."""

    status = 422


class HiddenFromReviewer(BadInput):
    """The range holds a week the reviewer is grading blind (metrics.reviews.blinding)."""

    status = 403


@dataclass
class Params:
    range: str
    granularity: str
    since: datetime
    until: datetime
    start: str
    end: str
    compare: str
    granularity_choice: str = "auto"

    def query(self) -> dict[str, str]:
        q = {"range": self.range, "granularity": self.granularity}
        if self.range == "custom":
            q.update(start=self.start, end=self.end)
        if self.compare:
            q["compare"] = self.compare
        return q


def parse_params(request: HttpRequest, rollout: Rollout, now: datetime | None = None) -> Params:
    """The dashboard's GET parameters (metrics.dashboard.forms.DashboardForm), or BadInput with the
    first problem's sentence; a range holding a week the reviewer grades blind is HiddenFromReviewer
    (told before a bad compare, as the range is read first)."""
    form = DashboardForm(request.GET, rollout=rollout, now=now)
    if problem := form.window_problem():
        raise BadInput(problem)
    data = form.cleaned_data
    since, until = data["since"], data["until"]
    if notice := review_blinding.hidden_weeks_notice(request.user, rollout.key, since, until):
        raise HiddenFromReviewer(notice)
    if problem := form.compare_problem():
        raise BadInput(problem)
    return Params(
        data["range"],
        form.resolved_granularity(),
        since,
        until,
        data["start"],
        data["end"],
        data["compare"],
        data["granularity"],
    )


def _rollout(key: str) -> Rollout:
    return get_object_or_404(Rollout.objects.select_related("current_phase"), key=key)


def _error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


FORMATS = ("json", "csv")


def _bad_format(fmt: str) -> JsonResponse | None:
    if fmt not in FORMATS:
        return _error(f"The format must be .json or .csv; got .{fmt}.", 404)
    return None


RANGE_CHOICES = [("24h", "Last 24 h"), ("7d", "7 days"), ("30d", "30 days"), ("custom", "Custom")]


# --- page ------------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    rollout = (
        Rollout.objects.filter(key=settings.SELCONTROL_DEFAULT_ROLLOUT).first()
        or Rollout.objects.first()
    )
    if rollout is None:
        raise Http404("There is no rollout yet.")
    return redirect("metrics:dashboard", key=rollout.key)


_JSON_ESCAPES = (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"))


def json_block(element_id: str, value: Any) -> str:
    """<script type="application/json" id=...> holding ``value``: what Django's json_script does,
    with the C JSON encoder and str.replace for the escapes (a 30-day hourly page carries about
    a megabyte of figures)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, cls=DjangoJSONEncoder)
    for char, escape in _JSON_ESCAPES:
        text = text.replace(char, escape)
    return mark_safe(
        f'<script type="application/json" id="{escape_html(element_id)}">{text}</script>'
    )


# drawn afresh on every view: "Cost per day" counts the current day's hours up to now, and the
# conversation charts are of rows the window's fingerprint leaves out (series.load_window)
FRESH_CHARTS = ("cost_per_day", *series.CONVERSATION_CHARTS)


def _figures(window: series.Window) -> list[dict[str, Any]]:
    kept = series.cached(
        window,
        "page-figures",
        lambda: _figure_blocks(window, [k for k in series.CHARTS if k not in FRESH_CHARTS]),
    )
    fresh = _figure_blocks(window, FRESH_CHARTS)
    out = []
    for key, chart in series.CHARTS.items():
        block, empty = kept[key] if key in kept else fresh[key]
        out.append(
            {
                "key": key,
                "note": CHART_NOTES.get(key, ""),
                "json_id": f"figure-{key}",
                "json": mark_safe(block),
                "title": chart.title,
                "empty": empty,
            }
        )
    return out


def _figure_blocks(window: series.Window, keys) -> dict[str, tuple[str, bool]]:
    """{chart: (its figure's <script> block, whether it has no rows)}."""
    out = {}
    shared: dict = {}  # the charts over the window's periods share their rows' split and x values
    for key in keys:
        chart = series.CHARTS[key]
        rows = series.figure_rows(window, key)
        x_range: tuple[datetime, datetime] | None = (window.since, window.until)
        if key == "reviews" and not rows:
            x_range = None
        figure = charts.time_figure(
            key,
            chart.title,
            rows,
            window.variants,
            window.markers,
            x_range=x_range,
            y_title=chart.unit if chart.unit not in ("%", "$") else "",
            granularity=window.granularity,
            shared=shared,
        )
        out[key] = (str(json_block(f"figure-{key}", figure)), not rows)
    return out


CHART_NOTES = {
    "latency": "Log scale: a p99 of 30 s timeouts leaves p50 and p95 readable.",
    "cost_per_day": "Hatched bars: days only partly counted (the range or the data starts "
    "mid-day, or the day is not over); hover for the hours.",
    "conversation_messages": "Bot replies and user follow-ups per conversation, by the "
    "conversation's first reply.",
    "conversation_length": "Minutes from a conversation's first to its last message, by its "
    "first reply.",
}


def _projection_rows(basis: series.CostBasis, current: int) -> list[dict[str, Any]]:
    baseline = basis.per_day(0)
    steps = sorted({*series.PROJECTION_STEPS, current})
    rows = []
    for pct in steps:
        per_day = basis.per_day(pct)
        rows.append(
            {
                "percentage": pct,
                "per_day": per_day,
                "per_month": per_day * 30 if per_day is not None else None,
                "vs_all_v1": per_day - baseline
                if per_day is not None and baseline is not None
                else None,
                "current": pct == current,
            }
        )
    return rows


def _context(request: HttpRequest, rollout: Rollout, params: Params) -> dict[str, Any]:
    window = series.load_window(rollout, params.since, params.until, params.granularity)
    treatment = params.compare or rollout.treatment_variant
    control = rollout.control_variant
    table = series.comparison(window, control, treatment)
    basis = series.cost_basis(rollout)
    projection = _projection_rows(basis, rollout.percentage if rollout.enabled else 0)
    guide_requests = 10_000
    now = timezone.now()
    return {
        "rollout": rollout,
        "params": params,
        "query": params.query(),
        "query_string": urlencode(params.query()),
        "window": window,
        "variants": window.variants,
        "control": control,
        "treatment": treatment,
        "table": [display_row(r) for r in table],
        "figures": _figures(window),
        "markers": window.markers,
        "actual": window.spending,
        "spent_span": fmt_span(window.spending["days_with_data"]),
        "basis": basis,
        "v2_cost_source": basis.treatment_cost[1],
        "projection": projection,
        "projection_json": json_block(
            "figure-projection",
            charts.projection_figure(
                [(r["percentage"], r["per_day"]) for r in projection if r["per_day"] is not None],
                rollout.percentage if rollout.enabled else 0,
                basis.per_day(0),
            ),
        ),
        "guide": {
            "requests": guide_requests,
            "v1": basis.control_cost * guide_requests if basis.control_cost is not None else None,
            "v2": basis.treatment_cost[0] * guide_requests
            if basis.treatment_cost[0] is not None
            else None,
        },
        "ranges": RANGE_CHOICES,
        "form": {
            "range": params.range,
            "start": params.start,
            "end": params.end,
            "granularity": params.granularity_choice,
            "auto_granularity": params.granularity,
            "compare": treatment,
        },
        "now": now,
        # the figures run to now when the range reaches into the future (named ranges end with
        # the current hour): the line says so instead of the end of the current hour
        "range_end": min(params.until, now),
        "range_to_now": params.until > now,
        "range_last_day": params.until - timedelta(microseconds=1),
    }


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest, key: str) -> HttpResponse:
    rollout = _rollout(key)
    if request.htmx and request.GET.get("part") == "status":
        return render(request, "metrics/partials/dashboard_status.html", {"rollout": rollout})
    try:
        params = parse_params(request, rollout)
    except BadInput as exc:
        if request.htmx and isinstance(exc, HiddenFromReviewer):
            # the charts on the page are of another range: they go, the sentence takes their
            # place (htmx swaps 409/422 only, base.html)
            return render(
                request,
                "metrics/partials/dashboard_body.html",
                {"rollout": rollout, "input_error": str(exc), "params": None},
                status=422,
            )
        if request.htmx:
            # the sentence beside the controls; the charts already on the page stay
            response = render(
                request,
                "metrics/partials/dashboard_input_error.html",
                {"input_error": str(exc), "oob": True},
                status=422,
            )
            return push_url(reswap(response, "none"), False)
        g = request.GET
        form = {
            "range": g.get("range", "24h"),
            "start": g.get("start", ""),
            "end": g.get("end", ""),
            "granularity": g.get("granularity", "auto"),
            "compare": g.get("compare", ""),
        }
        return render(
            request,
            "metrics/dashboard.html",
            {
                "rollout": rollout,
                "input_error": str(exc),
                "form": form,
                "ranges": RANGE_CHOICES,
                "params": None,
            },
            # htmx swaps 409/422 only (base.html): a hidden range is shown in place as a choice
            # to change, like a bad one; the page and the data endpoints answer 403
            status=422 if request.htmx else exc.status,
        )
    context = _context(request, rollout, params)
    if request.htmx and not request.htmx.boosted:
        return render(request, "metrics/partials/dashboard_body.html", context)
    return render(request, "metrics/dashboard.html", context)


# --- data endpoints --------------------------------------------------------------------------


def _csv_response(filename: str, columns: list[str], rows: list[dict[str, Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _csv_value(row.get(c)) for c in columns])
    return response


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (tuple, list, dict)):
        value = json.dumps(value, cls=DjangoJSONEncoder)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        # A spreadsheet would run it as a formula (OWASP "CSV injection"): make it text.
        return "'" + value
    return value


def _json(payload: dict[str, Any]) -> JsonResponse:
    return JsonResponse(payload, encoder=DjangoJSONEncoder, json_dumps_params={"allow_nan": False})


def _range_payload(params: Params) -> dict[str, Any]:
    return {
        "range": params.range,
        "granularity": params.granularity,
        "since": params.since.isoformat(),
        "until": params.until.isoformat(),
    }


@login_required
@require_GET
def chart_data(request: HttpRequest, key: str, chart: str, fmt: str) -> HttpResponse:
    """GET /metrics/<rollout>/charts/<chart>.json or .csv: the rows behind one chart."""
    if (bad := _bad_format(fmt)) is not None:
        return bad
    rollout = _rollout(key)
    spec = series.CHARTS.get(chart)
    if spec is None:
        return _error(f"chart must be one of {', '.join(series.CHARTS)}; got {chart!r}.", 404)
    try:
        params = parse_params(request, rollout)
    except BadInput as exc:
        return _error(str(exc), 400 if exc.status == 422 else exc.status)
    window = series.load_window(rollout, params.since, params.until, params.granularity)
    rows = series.chart_rows(window, chart)
    columns = ["period", "variant", *spec.columns]
    if fmt == "csv":
        return _csv_response(f"{rollout.key}-{chart}-{params.range}.csv", columns, rows)
    figure = charts.time_figure(
        chart,
        spec.title,
        rows,
        window.variants,
        window.markers,
        x_range=(window.since, window.until),
        granularity=params.granularity,
    )
    return _json(
        {
            "rollout": rollout.key,
            "chart": chart,
            "title": spec.title,
            **_range_payload(params),
            "granularity": "day" if chart == "cost_per_day" else params.granularity,
            "columns": columns,
            "rows": rows,
            "markers": window.markers,
            "figure": figure,
        }
    )


COMPARISON_COLUMNS = [
    "metric",
    "label",
    "unit",
    "direction",
    "control",
    "treatment",
    "n_control",
    "n_treatment",
    "relative",
    "relative_lo",
    "relative_hi",
    "difference",
    "difference_lo",
    "difference_hi",
    "verdict",
    "more_needed",
    "sample",
    "method",
    "note",
]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    return value


@login_required
@require_GET
def comparison_data(request: HttpRequest, key: str, fmt: str) -> HttpResponse:
    """GET /metrics/<rollout>/comparison.json or .csv: the v1-versus-v2 table."""
    if (bad := _bad_format(fmt)) is not None:
        return bad
    rollout = _rollout(key)
    try:
        params = parse_params(request, rollout)
    except BadInput as exc:
        return _error(str(exc), 400 if exc.status == 422 else exc.status)
    window = series.load_window(rollout, params.since, params.until, params.granularity)
    treatment = params.compare or rollout.treatment_variant
    rows = [
        {k: _finite(v) for k, v in r.as_dict().items()}
        for r in series.comparison(window, rollout.control_variant, treatment)
    ]
    if fmt == "csv":
        return _csv_response(
            f"{rollout.key}-comparison-{params.range}.csv", COMPARISON_COLUMNS, rows
        )
    for row in rows:
        row["extra"] = json.loads(
            json.dumps(row["extra"], cls=DjangoJSONEncoder), parse_constant=lambda _c: None
        )
    return _json(
        {
            "rollout": rollout.key,
            "control": rollout.control_variant,
            "treatment": treatment,
            **_range_payload(params),
            "rows": rows,
        }
    )


@login_required
@require_GET
def cost_data(request: HttpRequest, key: str, fmt: str) -> HttpResponse:
    """GET /metrics/<rollout>/cost.json or .csv: the projection behind the cost chart; the JSON
    also carries what was spent in the range (``range=``, as the dashboard takes it)."""
    if (bad := _bad_format(fmt)) is not None:
        return bad
    rollout = _rollout(key)
    try:
        params = parse_params(request, rollout)
    except BadInput as exc:
        return _error(str(exc))
    basis = series.cost_basis(rollout)
    rows = _projection_rows(basis, rollout.percentage if rollout.enabled else 0)
    columns = ["percentage", "per_day", "per_month", "vs_all_v1", "current"]
    if fmt == "csv":
        return _csv_response(f"{rollout.key}-cost-projection.csv", columns, rows)
    return _json(
        {
            "rollout": rollout.key,
            "replies_per_day": basis.replies_per_day,
            "basis_days": basis.days,
            "cost_per_reply": basis.cost_per_reply,
            "tokens_per_reply": basis.tokens_per_reply,
            "v2_cost_source": basis.treatment_cost[1],
            "columns": columns,
            "rows": rows,
            "range": _spend_payload(rollout, params),
        }
    )


def _spend_payload(rollout: Rollout, params: Params) -> dict[str, Any]:
    """What was spent in the range, per day with data (series.day_coverage) and per 30 days."""
    now = timezone.now()
    spent = series.spend(
        series.spend_by_hour(rollout.key, params.since, params.until),
        params.since,
        params.until,
        now,
    )
    per_day = spent["per_day"]
    return {
        "name": params.range,
        "since": params.since.isoformat(),
        "until": params.until.isoformat(),
        "spent_usd": round(spent["total"], 6),
        "days_with_data": round(spent["days_with_data"], 4),
        "spent_per_day_usd": round(per_day, 6) if per_day is not None else None,
        "spent_per_month_usd": round(per_day * 30, 4) if per_day is not None else None,
        "days": [
            {"day": day.isoformat(), "hours_counted": round(part / series.HOUR, 4)}
            for day, part in spent["coverage"].items()
        ],
    }


@login_required
@require_GET
def projection(request: HttpRequest) -> HttpResponse:
    """GET /metrics/projection?rollout=<key>&percentage=<0-100>[&simplified_percentage=<0-100>]:
    a fragment for the console's slider, e.g. "At 37%: $31.40/day, +$16.40/day vs all v1".
    The simplified share defaults to the rollout's."""
    key = request.GET.get("rollout") or settings.SELCONTROL_DEFAULT_ROLLOUT
    rollout = Rollout.objects.filter(key=key).first()
    if rollout is None:
        return _error(f"rollout {key!r} does not exist.", 404)
    values = {}
    for name in ("percentage", "simplified_percentage"):
        raw = request.GET.get(name, "")
        if name == "simplified_percentage" and raw == "":
            values[name] = rollout.simplified_percentage
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            return _error(f"{name} must be a whole number from 0 to 100; got {raw!r}.")
        if not 0 <= values[name] <= 100:
            return _error(f"{name} must be between 0 and 100; got {values[name]}.")
    percentage = values["percentage"]
    basis = series.cost_basis(rollout)
    basis.simplified_share = values["simplified_percentage"] / 100
    per_day = basis.per_day(percentage)
    baseline = basis.per_day(0)
    return render(
        request,
        "metrics/partials/projection.html",
        {
            "rollout": rollout,
            "percentage": percentage,
            "per_day": per_day,
            "per_month": per_day * 30 if per_day is not None else None,
            "delta": per_day - baseline if per_day is not None and baseline is not None else None,
            "delta_per_month": (per_day - baseline) * 30
            if per_day is not None and baseline is not None
            else None,
            "basis": basis,
            "source": basis.treatment_cost[1],
        },
    )


def verdict_class(verdict: str) -> str:
    return {stats.BETTER: "ok", stats.WORSE: "bad", stats.CHANGED: "warn"}.get(verdict, "muted")


# --- display -----------------------------------------------------------------------------------


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "tokens":
        return f"{value:,.0f}"
    if unit == "$":
        return f"${value:.5f}"
    return f"{value:.3f}"


def fmt_span(days: float) -> str:
    """A stretch of time in days, or in hours under two days: "13.8 days", "23.5 h"."""
    if days < 2:
        return f"{days * 24:.1f} h"
    return f"{days:.1f} days"


def fmt_signed(value: float) -> str:
    """'+3.5', '−0.1' (a true minus sign), and '0.0' for anything that rounds to zero: no
    '−0.0' nor '+0.0' for a change too small to show."""
    text = f"{value:+.1f}"
    return "0.0" if float(text) == 0 else text.replace("-", "−")


def fmt_relative(value: float | None) -> str:
    if value is None:
        return "—"
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "−∞"
    return f"{fmt_signed(value * 100)}%"


def _settle(row: stats.Comparison, more_needed: int) -> str:
    """How much more data would settle an unknown verdict. With channels as the unit, more
    replies from the same channels do not help and channels cannot be added at will: the
    sentence says how many times today's channels would be needed (e.g. 2x: the next phase's
    share), not a count of channels the rollout may not have."""
    now = sum(row.extra.get("channels") or ()) if row.sample == "channels" else 0
    if now:
        times = math.ceil((now + more_needed) / now)
        return f"not settled at {now:,} channels: about {times:,}x as many would settle it"
    return f"about {more_needed:,} more {row.sample} would settle it"


def display_row(row: stats.Comparison) -> dict[str, Any]:
    """Strings for one table row (the template stays free of arithmetic)."""
    has_ci = row.relative_lo is not None and row.relative_hi is not None
    diff = ""
    if row.unit == "%" and row.difference is not None:
        diff = f"{fmt_signed(row.difference * 100)} pp"
        if row.difference_lo is not None and row.difference_hi is not None:
            diff += (
                f" [{fmt_signed(row.difference_lo * 100)}, {fmt_signed(row.difference_hi * 100)}]"
            )
    if row.verdict == stats.UNKNOWN:
        if row.more_needed:
            settle = _settle(row, row.more_needed)
        elif row.note:
            settle = row.note
        elif row.relative is not None:
            settle = "no difference visible yet"
        else:
            settle = f"needs {row.sample} on both variants"
    else:
        settle = row.note
    return {
        "row": row,
        "control": fmt_value(row.control, row.unit),
        "treatment": fmt_value(row.treatment, row.unit),
        "relative": fmt_relative(row.relative),
        "interval": f"[{fmt_relative(row.relative_lo)}, {fmt_relative(row.relative_hi)}]"
        if has_ci
        else "",
        "difference": diff,
        "verdict_class": verdict_class(row.verdict),
        "settle": settle,
        "good": {"lower": "lower is better", "higher": "higher is better"}.get(row.direction, ""),
    }
