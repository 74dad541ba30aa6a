"""Operator console pages (server-rendered, htmx for in-place updates).

Every change goes through ``rollout.services``. A console page is made of sections
(``templates/console/partials/<name>.html``); a change answers with the changed section and an
``HX-Trigger: rollout-changed`` header that the other sections listen for, so nothing needs a
full reload, and the console stamp after the change (``X-Console-Stamp``; every section carries
the stamp it was drawn at, and one older than the newest change fetches itself again: see
``rollout/freshness.py``). Without JavaScript the forms still post and the view redirects back
to the page.

Status codes of change views: 200 done (or nothing to do), 403 not an operator, 409 stale
revision or an unmet phase gate (the section shows the current state and what changed), 422
invalid input (the section shows the form with its errors).

The console composes both domains (issue 17): rollout's state and services beside the traffic
metrics recorded, so it lives above both (selcontrol/console), and neither domain imports the
other's pages; the URL names stay in the ``rollout`` namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import Sum
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from metrics import selectors
from rollout import checklist, exposure, freshness, services
from rollout.models import ApiToken, AuditEntry, ChannelOverride, ExposureCount, Rollout
from rollout.roles import operator_required
from selcontrol.console.templatetags.console import alerts_context
from selcontrol.http import HtmxHttpRequest

from .forms import (
    AlertsPartForm,
    AuditFilterForm,
    ChecklistForm,
    HoldForm,
    LookupForm,
    OverrideForm,
    OverrideSearchForm,
    PercentageForm,
    PhaseForm,
    PreviewForm,
    ReEnableForm,
    RemoveOverrideForm,
    RollbackForm,
    TokenForm,
)

SECTIONS = ("status", "timeline", "checklist", "percentage", "overrides")
TRAFFIC_WINDOW = timedelta(days=1)
TRAFFIC_CACHE_SECONDS = 60


# --- reading ---------------------------------------------------------------------------------


def _get_rollout(key: str) -> Rollout:
    return get_object_or_404(Rollout.objects.select_related("current_phase"), key=key)


def _traffic(rollout: Rollout, version: int | None = None) -> tuple[list[str], dict[str, int]]:
    """Channels seen and replies per channel over the last day, from the metrics app."""

    def load() -> tuple[list[str], dict[str, int]]:
        since = timezone.now() - TRAFFIC_WINDOW
        return (
            selectors.known_channels(rollout.key, since),
            selectors.traffic_by_channel(rollout.key, since),
        )

    # Cached for a minute: the status refresh and every slider move of every open console
    # would otherwise scan a day of events each time. Keyed on the newest reply, so a reply
    # that arrived since is never left out (a cached "no traffic seen yet" beside guardrails
    # judging thousands of replies was the contradiction).
    cached: tuple[list[str], dict[str, int]] | None = cache.get_or_set(
        _cache_key("traffic", rollout, version), load, TRAFFIC_CACHE_SECONDS
    )
    assert cached is not None  # load() never gives None, and only it fills this key
    return cached


def _data_version() -> int:
    return selectors.latest_response_id()


def _cache_key(name: str, rollout: Rollout, version: int | None = None) -> str:
    version = _data_version() if version is None else version
    return f"console:{name}:{rollout.key}:{version}"


def _served(rollout: Rollout, now, version: int | None = None) -> dict:
    """What happened over the last day, per variant: replies and channels from the bot's events,
    and the fleet's decision counts (``ExposureCount``, from the clients' reports). Cached for a
    minute like ``_traffic``."""

    def load() -> dict:
        since = now - TRAFFIC_WINDOW
        served = selectors.served_by_variant(rollout.key, since)
        decisions = dict(
            ExposureCount.objects.filter(
                rollout_key=rollout.key, hour__gte=since.replace(minute=0, second=0, microsecond=0)
            )
            .values("variant")
            .annotate(n=Sum("count"))
            .values_list("variant", "n")
        )
        total = sum(v["replies"] for v in served.values())
        total_decisions = sum(decisions.values())
        variants = list(rollout.variants) + sorted(
            (set(served) | set(decisions)) - set(rollout.variants)
        )
        rows = [
            {
                "variant": v,
                "channels": served.get(v, {}).get("channels", 0),
                "replies": served.get(v, {}).get("replies", 0),
                "share": served.get(v, {}).get("replies", 0) / total if total else 0.0,
                "decisions": decisions.get(v, 0),
                "decision_share": decisions.get(v, 0) / total_decisions if total_decisions else 0.0,
            }
            for v in variants
        ]
        return {"rows": rows, "replies": total, "decisions": total_decisions}

    cached: dict | None = cache.get_or_set(
        _cache_key("served", rollout, version), load, TRAFFIC_CACHE_SECONDS
    )
    assert cached is not None  # load() never gives None, and only it fills this key
    return cached


def _watch(rollout: Rollout) -> dict | None:
    """The minimum watch's countdown; stopped while the rollout is off its phase's plan or
    rolled back (the watch counts time at the planned percentage only: docs/console.md)."""
    ends = rollout.phase_watch_ends_at()
    phase, started = rollout.current_phase, rollout.phase_started_at
    if ends is None or phase is None or started is None:  # ends is None when either is
        return None
    if not rollout.on_plan():
        return {"stopped": rollout.off_plan() or "kill switch on"}
    now = timezone.now()
    total = phase.min_watch.total_seconds() or 1
    elapsed = (now - started).total_seconds()
    return {
        "ends_at": ends,
        "passed": ends <= now,
        "left": max(ends - now, timedelta(0)),
        "progress": max(0, min(100, int(100 * elapsed / total))),
    }


def _phase_rows(rollout: Rollout, phases: list) -> list[dict]:
    current = rollout.current_phase
    rows = []
    for p in phases:
        if current is None:
            state = "next" if p is phases[0] else "future"
        elif p.pk == current.pk:
            state = "current"
        elif p.order < current.order:
            state = "done"
        else:
            state = (
                "next"
                if p.order
                == min((q.order for q in phases if q.order > current.order), default=None)
                else "future"
            )
        rows.append({"phase": p, "state": state})
    return rows


def _checklist_rows(phase) -> list[dict]:
    if phase is None:
        return []
    ticks = {t.item: t for t in phase.checklist_ticks.all()}
    return [
        {"key": key, "label": label, "hint": hint, "tick": ticks.get(key)}
        for key, label, hint in checklist.ITEMS
    ]


def _section_context(request: HtmxHttpRequest, rollout: Rollout, name: str, **extra) -> dict:
    ctx: dict = {
        "rollout": rollout,
        "section": name,
        "now": timezone.now(),
        "stamp": freshness.stamp(request),
    }
    if name == "status":
        version = _data_version()
        channels, traffic = _traffic(rollout, version)
        rule = rollout.to_rule()
        ctx["shares"] = exposure.variant_shares(rule, channels, traffic, ctx["now"])
        ctx["known_channels"] = sum(s.channels for s in ctx["shares"])
        ctx["total_traffic"] = sum(s.traffic for s in ctx["shares"])
        ctx["override_count"] = sum(  # in effect: an expired override decides nothing
            1 for o in rule.overrides.values() if o.expires_at is None or o.expires_at > ctx["now"]
        )
        ctx["watch"] = _watch(rollout)
        ctx["served"] = _served(rollout, ctx["now"], version)
    elif name == "timeline":
        phases = list(rollout.phases.order_by("order"))
        ctx["phases"] = _phase_rows(rollout, phases)
        ctx["watch"] = _watch(rollout)
        nxt = rollout.next_phase()
        ctx["next_phase"] = nxt
        ctx["gate_problems"] = services.phase_gate_problems(rollout, nxt) if nxt else []
        current = rollout.current_phase
        ctx["earlier_phases"] = [p for p in phases if current and p.order < current.order]
        ctx["on_current"] = bool(
            current and rollout.enabled and rollout.percentage == current.percentage
        )
    elif name == "checklist":
        phase = rollout.current_phase
        ctx["phase"] = phase
        ctx["items"] = _checklist_rows(phase)
        ctx["ticked"] = sum(1 for i in ctx["items"] if i["tick"])
    elif name == "percentage":
        ctx["phase_marks"] = list(
            rollout.phases.order_by("order").values_list("percentage", flat=True)
        )
    elif name == "overrides":
        q = OverrideSearchForm(request.GET).query()
        overrides = rollout.overrides.all()
        if q:
            overrides = overrides.filter(channel_id__icontains=q)
        ctx["q"] = q
        ctx["overrides"] = list(overrides[:200])
        ctx["variants"] = rollout.variants
    ctx.update(extra)
    if name == "percentage":
        form = ctx.get("form")
        data = form.data if form is not None else {}
        ctx["pct_value"] = data.get("percentage", rollout.percentage)
        ctx["simplified_value"] = data.get("simplified_percentage", rollout.simplified_percentage)
    return ctx


def _render_section(
    request: HtmxHttpRequest,
    rollout: Rollout,
    name: str,
    *,
    status: int = 200,
    changed: bool = False,
    **extra,
) -> HttpResponse:
    if changed:
        # After a change: the stamp first, then the state it describes (read again).
        freshness.stamp(request, fresh=True)
        rollout = _get_rollout(rollout.key)
    response = render(
        request,
        f"console/partials/{name}.html",
        _section_context(request, rollout, name, **extra),
        status=status,
    )
    if changed:
        freshness.announce_change(request, response)
    return response


@login_required
def index(request: HtmxHttpRequest) -> HttpResponse:
    rollouts = list(Rollout.objects.select_related("current_phase"))
    if len(rollouts) == 1:
        return redirect("rollout:detail", key=rollouts[0].key)
    return render(request, "console/index.html", {"rollouts": rollouts})


@login_required
def detail(request: HtmxHttpRequest, key: str) -> HttpResponse:
    freshness.stamp(request)  # before the state the page shows
    rollout = _get_rollout(key)
    sections = {name: _section_context(request, rollout, name) for name in SECTIONS}
    return render(request, "console/detail.html", {"rollout": rollout, "sections": sections})


@login_required
@require_GET
def section(request: HtmxHttpRequest, key: str, name: str) -> HttpResponse:
    if name not in SECTIONS:
        raise Http404("No such section.")
    freshness.stamp(request)  # before the state the section shows
    return freshness.tell_stamp(request, _render_section(request, _get_rollout(key), name))


@login_required
@require_GET
def alerts(request: HtmxHttpRequest) -> HttpResponse:
    """The header's emergency button and the kill-switch banner, refreshed after changes."""
    form = AlertsPartForm(request.GET)
    if not form.is_valid():
        raise Http404("No such part.")
    freshness.stamp(request)  # before the state the part shows
    key = form.cleaned_data["rollout"]
    ctx = alerts_context(request, _get_rollout(key) if key else None)
    part = form.cleaned_data["part"]
    return freshness.tell_stamp(request, render(request, f"console/partials/{part}.html", ctx))


@never_cache
@login_required
@require_GET
def console_stamp(request: HtmxHttpRequest) -> HttpResponse:
    """The console stamp alone (the newest audit id), polled every few seconds by an open
    console while its tab is visible (static/js/console.js): a change made elsewhere (the API,
    ``manage.py kill_switch``, a guardrail's rollback) reaches the banner, the header and every
    section within one poll, where the status section's minute-long refresh took up to 60 s.
    One indexed read (the primary key's last entry) and no template."""
    current = freshness.stamp(request)
    response = JsonResponse({"stamp": current})
    response[freshness.HEADER] = str(current)
    return response


@login_required
@require_GET
def preview(request: HtmxHttpRequest, key: str) -> HttpResponse:
    """What saving a percentage would do, before saving it."""
    rollout = _get_rollout(key)
    form = PreviewForm(request.GET)
    if not form.is_valid():
        return render(
            request, "console/partials/preview.html", {"rollout": rollout, "form": form}, status=422
        )
    pct = form.cleaned_data["percentage"]
    simplified = form.cleaned_data["simplified_percentage"]
    if simplified is None:
        simplified = rollout.simplified_percentage
    channels, traffic = _traffic(rollout)
    before = rollout.to_rule()
    after = exposure.with_percentages(before, pct, simplified)
    result = exposure.preview_change(before, after, channels, traffic, timezone.now())
    return render(
        request,
        "console/partials/preview.html",
        {
            "rollout": rollout,
            "preview": result,
            "percentage": pct,
            "simplified": simplified,
            "unchanged": pct == rollout.percentage and simplified == rollout.simplified_percentage,
        },
    )


@login_required
@require_GET
def lookup(request: HtmxHttpRequest, key: str) -> HttpResponse:
    """Which version does channel X get, and why."""
    rollout = _get_rollout(key)
    form = LookupForm(request.GET, rollout=rollout)
    ctx: dict = {"rollout": rollout, "channel_id": form.asked()}
    if not form.is_valid():
        ctx["error"] = form.errors["channel_id"][0]
        return render(request, "console/partials/lookup.html", ctx, status=422)
    channel_id = form.cleaned_data["channel_id"]
    if channel_id:
        ctx["result"] = exposure.explain(rollout.to_rule(), channel_id, timezone.now())
        ctx["override"] = ChannelOverride.objects.filter(
            rollout=rollout, channel_id=channel_id
        ).first()
    return render(request, "console/partials/lookup.html", ctx)


# --- changing --------------------------------------------------------------------------------


def _actor(request: HtmxHttpRequest) -> services.Actor:
    return services.Actor.of_user(request.user, via="web")


def _conflict_context(rollout: Rollout, seen: int | None, exc: services.ServiceError) -> dict:
    changes = []
    if seen is not None:
        changes = list(
            AuditEntry.objects.filter(rollout=rollout, revision__gt=seen).order_by("created_at")[
                :10
            ]
        )
    return {"conflict": {"message": str(exc), "changes": changes, "seen": seen}}


def _done(
    request: HtmxHttpRequest, rollout: Rollout, name: str, message: str, **extra
) -> HttpResponse:
    if not request.htmx:
        messages.success(request, message)
        return redirect("rollout:detail", key=rollout.key)
    return _render_section(request, rollout, name, changed=True, notice=message, **extra)


def _failed(
    request: HtmxHttpRequest,
    key: str,
    name: str,
    exc: services.ServiceError,
    seen: int | None = None,
    **extra,
) -> HttpResponse:
    rollout = _get_rollout(key)  # fresh: the current state
    if not request.htmx:
        messages.error(request, str(exc))
        return redirect("rollout:detail", key=rollout.key)
    if isinstance(exc, services.Conflict | services.GateNotMet):
        ctx = (
            _conflict_context(rollout, seen, exc)
            if isinstance(exc, services.Conflict)
            else {"error": str(exc)}
        )
        return _render_section(
            request,
            rollout,
            name,
            status=409,
            changed=isinstance(exc, services.Conflict),
            **ctx,
            **extra,
        )
    return _render_section(request, rollout, name, status=exc.status, error=str(exc), **extra)


def _invalid(request: HtmxHttpRequest, rollout: Rollout, name: str, form) -> HttpResponse:
    if not request.htmx:
        messages.error(request, "; ".join(" ".join(errs) for errs in form.errors.values()))
        return redirect("rollout:detail", key=rollout.key)
    return _render_section(request, rollout, name, status=422, form=form)


def _act(
    request: HtmxHttpRequest,
    key: str,
    section: str,
    make_form: Callable[[Rollout], forms.Form],
    act: Callable[[Rollout, dict[str, Any], services.Actor], str],
    *,
    keep_form: bool = False,
) -> HttpResponse:
    """The shape of every section's change: bind the section's form to the rollout as it is,
    answer 422 with the form's errors, run ``act`` (a ``rollout.services`` call, which locks,
    checks the revision and audits; it returns the sentence saying what was done), answer its
    refusal (409 stale or gated, with what changed since the revision the operator saw), or the
    section drawn afresh with the sentence. ``keep_form``: a refused change shows the form as
    it was posted (what the operator typed stays)."""
    rollout = _get_rollout(key)
    form = make_form(rollout)
    if not form.is_valid():
        return _invalid(request, rollout, section, form)
    data = form.cleaned_data
    try:
        message = act(rollout, data, _actor(request))
    except services.ServiceError as exc:
        extra = {"form": form} if keep_form else {}
        return _failed(request, key, section, exc, data.get("revision"), **extra)
    return _done(request, _get_rollout(key), section, message)


@operator_required
@require_POST
def set_percentage(request: HtmxHttpRequest, key: str) -> HttpResponse:
    def act(rollout: Rollout, data: dict[str, Any], actor: services.Actor) -> str:
        rollout = services.update_rollout(
            rollout,
            actor=actor,
            reason=data["reason"],
            expected_revision=data["revision"],
            percentage=data["percentage"],
            simplified_percentage=data["simplified_percentage"],
        )
        return (
            f"Saved: {rollout.percentage}% to {rollout.treatment_variant} "
            f"({rollout.simplified_percentage}% of them {rollout.simplified_variant})."
        )

    return _act(request, key, "percentage", lambda _r: PercentageForm(request.POST), act)


@operator_required
@require_POST
def move_phase(request: HtmxHttpRequest, key: str) -> HttpResponse:
    def act(rollout: Rollout, data: dict[str, Any], actor: services.Actor) -> str:
        rollout = services.move_to_phase(
            rollout,
            phase=data["phase"],
            actor=actor,
            reason=data["reason"],
            expected_revision=data["revision"],
            gate_override_reason=data["gate_override_reason"],
        )
        phase = rollout.current_phase
        assert phase is not None  # move_to_phase returns the rollout in the phase it moved to
        return f"Now in {phase.name}: {rollout.percentage}%."

    return _act(request, key, "timeline", lambda _r: PhaseForm(request.POST), act)


@operator_required
@require_POST
def hold(request: HtmxHttpRequest, key: str) -> HttpResponse:
    def act(rollout: Rollout, data: dict[str, Any], actor: services.Actor) -> str:
        services.hold_phase(
            rollout, actor=actor, reason=data["reason"], expected_revision=data["revision"]
        )
        phase = rollout.current_phase
        # hold_phase found a phase at the revision the form carried; the page was drawn before
        # this read and every phase change bumps the revision, so this read saw that phase too.
        assert phase is not None
        return f"Holding at {phase.name}."

    return _act(request, key, "timeline", lambda _r: HoldForm(request.POST), act)


@operator_required
@require_POST
def tick(request: HtmxHttpRequest, key: str) -> HttpResponse:
    def act(rollout: Rollout, data: dict[str, Any], actor: services.Actor) -> str:
        services.tick_checklist_item(
            rollout, data["phase"], data["item"], actor=actor, checked=data["checked"]
        )
        label = checklist.LABELS.get(data["item"], data["item"])
        return f"{'Ticked' if data['checked'] else 'Cleared'}: {label}."

    return _act(request, key, "checklist", lambda _r: ChecklistForm(request.POST), act)


@operator_required
@require_POST
def add_override(request: HtmxHttpRequest, key: str) -> HttpResponse:
    def act(rollout: Rollout, data: dict[str, Any], actor: services.Actor) -> str:
        override, created = services.set_override(
            rollout,
            data["channel_id"],
            variant=data["variant"],
            actor=actor,
            reason=data["reason"],
            expires_at=data["expires_at"],
            expected_revision=data["revision"],
        )
        verb = "Added" if created else "Updated"
        return f"{verb} override: channel {override.channel_id} gets {override.variant}."

    def form(rollout: Rollout) -> OverrideForm:
        return OverrideForm(request.POST, rollout=rollout)

    return _act(request, key, "overrides", form, act, keep_form=True)


@operator_required
@require_POST
def remove_override(request: HtmxHttpRequest, key: str, channel_id: str) -> HttpResponse:
    post = request.POST.copy()
    if not post.get("reason") and request.headers.get("HX-Prompt"):
        post["reason"] = request.headers["HX-Prompt"]

    def act(rollout: Rollout, data: dict[str, Any], actor: services.Actor) -> str:
        removed = services.remove_override(
            rollout,
            channel_id,
            actor=actor,
            reason=data["reason"],
            expected_revision=data["revision"],
        )
        if removed:
            return f"Removed the override of channel {channel_id}."
        return f"Channel {channel_id} had no override."

    return _act(request, key, "overrides", lambda _r: RemoveOverrideForm(post), act)


@operator_required
def rollback(request: HtmxHttpRequest, key: str) -> HttpResponse:
    """The emergency rollback. GET is the no-JavaScript confirmation page; POST engages it."""
    rollout = _get_rollout(key)
    if request.method == "GET":
        return render(
            request, "console/rollback_confirm.html", {"rollout": rollout, "form": RollbackForm()}
        )
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    form = RollbackForm(request.POST)
    if not form.is_valid():
        if request.htmx:
            return render(
                request,
                "console/partials/rollback_form.html",
                {"target": rollout, "form": form},
                status=422,
            )
        return render(
            request, "console/rollback_confirm.html", {"rollout": rollout, "form": form}, status=422
        )
    services.engage_kill_switch(rollout, actor=_actor(request), reason=form.cleaned_data["reason"])
    if not request.htmx:
        messages.warning(request, "Emergency rollback done: every channel gets v1.")
        return redirect("rollout:detail", key=rollout.key)
    freshness.stamp(request, fresh=True)
    return freshness.announce_change(request, HttpResponse(status=204))


@operator_required
@require_POST
def reenable(request: HtmxHttpRequest, key: str) -> HttpResponse:
    rollout = _get_rollout(key)
    form = ReEnableForm(request.POST)
    ok = form.is_valid()
    if ok:
        data = form.cleaned_data
        try:
            services.release_kill_switch(
                rollout,
                actor=_actor(request),
                reason=data["reason"],
                percentage=data["percentage"],
                expected_revision=data["revision"],
            )
        except services.ServiceError as exc:
            ok, error, status = False, str(exc), exc.status
    else:
        error = "; ".join(" ".join(str(message) for message in e) for e in form.errors.values())
        status = 422
    if not request.htmx:
        if ok:
            messages.success(request, "Re-enabled.")
        else:
            messages.error(request, error)
        return redirect("rollout:detail", key=rollout.key)
    freshness.stamp(request, fresh=True)  # before the state the banner shows
    rollout = _get_rollout(key)
    ctx = alerts_context(request, rollout)
    if not ok:
        ctx["error"] = error
        return render(request, "console/partials/banner.html", ctx, status=status)
    response = render(request, "console/partials/banner.html", ctx)
    return freshness.announce_change(request, response)


# --- audit log and tokens ----------------------------------------------------------------------


@login_required
@require_GET
def audit_log(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    entries = AuditEntry.objects.select_related("rollout")
    if form.is_valid():
        data = form.cleaned_data
        if data["rollout"] == "-":
            entries = entries.filter(rollout__isnull=True)
        elif data["rollout"]:
            entries = entries.filter(rollout__key=data["rollout"])
        if data["actor"]:
            entries = entries.filter(actor__iexact=data["actor"])
        if data["action"]:
            entries = entries.filter(action=data["action"])
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    ctx = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "rollouts": Rollout.objects.values_list("key", flat=True),
        "actors": AuditEntry.objects.order_by("actor").values_list("actor", flat=True).distinct(),
        "actions": AuditEntry.Action.choices,
    }
    template = "console/partials/audit_rows.html" if request.htmx else "console/audit.html"
    return render(request, template, ctx)


def _tokens_context(**extra) -> dict:
    return {"tokens": list(ApiToken.objects.order_by("-created_at")), "form": TokenForm(), **extra}


@login_required
@require_GET
def tokens(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "console/tokens.html", _tokens_context())


@never_cache  # the answer shows the new token once: no cache may keep it
@operator_required
@require_POST
def create_token(request: HtmxHttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    status = 200
    extra: dict[str, object] = {}
    if not form.is_valid():
        status, extra = 422, {"form": form}
    else:
        try:
            token, raw = services.create_api_token(
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                actor=_actor(request),
            )
        except services.ServiceError as exc:
            status, extra = exc.status, {"form": form, "error": str(exc)}
        else:
            extra = {"new_token": token, "raw_token": raw}
    ctx = _tokens_context(**extra)
    if request.htmx:
        return render(request, "console/partials/tokens.html", ctx, status=status)
    return render(request, "console/tokens.html", ctx, status=status)


@operator_required
@require_POST
def revoke_token(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk)
    services.revoke_api_token(token, actor=_actor(request))
    ctx = _tokens_context(notice=f"Revoked {token.name}.")
    if request.htmx:
        return render(request, "console/partials/tokens.html", ctx)
    messages.success(request, f"Revoked {token.name}.")
    return redirect("rollout:tokens")
