"""Console template helpers: the header's emergency button, the kill-switch banner, durations."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.http import HttpRequest

from rollout.models import AuditEntry, Rollout
from rollout.roles import is_operator

register = template.Library()


def alerts_context(request: HttpRequest, rollout: Rollout | None) -> dict:
    """The rollouts the header speaks for: the page's rollout, or every rollout elsewhere.

    A rollout whose kill switch is on after it started (it has a phase) gets the red banner,
    with who engaged it and when (the latest kill-switch audit row).
    """
    from rollout.freshness import stamp

    current = stamp(request)  # before the state (the view may have read it already)
    targets = (
        [rollout] if rollout is not None else list(Rollout.objects.select_related("current_phase"))
    )
    engaged = []
    for r in targets:
        if not r.enabled and r.current_phase_id is not None:
            entry = (
                AuditEntry.objects.filter(rollout=r, action=AuditEntry.Action.KILL_SWITCH_ENGAGE)
                .order_by("-created_at", "-id")
                .first()
            )
            engaged.append({"rollout": r, "entry": entry})
    return {
        "targets": targets,
        "engaged": engaged,
        "page_rollout": rollout,
        "can_operate": is_operator(request.user),
        "stamp": current,
    }


@register.inclusion_tag("console/partials/emergency.html", takes_context=True)
def emergency_button(context) -> dict:
    ctx = alerts_context(context["request"], context.get("rollout"))
    ctx["csrf_token"] = context.get("csrf_token")
    return ctx


@register.inclusion_tag("console/partials/banner.html", takes_context=True)
def kill_switch_banner(context) -> dict:
    ctx = alerts_context(context["request"], context.get("rollout"))
    ctx["csrf_token"] = context.get("csrf_token")
    return ctx


@register.filter
def duration(value: timedelta | None) -> str:
    """A compact duration: '2 d 3 h', '5 h 12 min', '4 min'."""
    if value is None:
        return ""
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


@register.filter
def percent(value: float) -> str:
    """0.153 -> '15%'; tiny non-zero shares show as '<1%'."""
    if not value:
        return "0%"
    pct = value * 100
    return "<1%" if pct < 1 else f"{pct:.0f}%"


@register.filter
def audit_value(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@register.simple_tag(takes_context=True)
def section(context, name: str) -> str:
    """Render one console section with the context the view prepared for it."""
    from django.template.loader import render_to_string

    return render_to_string(
        f"console/partials/{name}.html", context["sections"][name], request=context["request"]
    )


def _pct(value) -> str:
    return "—" if value is None else f"{value}%"


@register.filter
def describe(entry: AuditEntry) -> str:
    """One audit row as a short sentence without the actor: 'changed the percentage to 20%'."""
    b, a = entry.before or {}, entry.after or {}
    action = entry.action
    A = AuditEntry.Action
    if action == A.ROLLOUT_UPDATE:
        parts = []
        for key, old, new in entry.changed_fields():
            if key == "revision":
                continue
            label = key.replace("_", " ")
            if key.endswith("percentage"):
                parts.append(f"the {label} to {_pct(new)} (was {_pct(old)})")
            else:
                parts.append(f"the {label} to {audit_value(new)} (was {audit_value(old)})")
        return "changed " + (", ".join(parts) or "nothing")
    if action == A.KILL_SWITCH_ENGAGE:
        return "pressed the emergency rollback (kill switch on)"
    if action == A.KILL_SWITCH_RELEASE:
        return f"re-enabled the rollout at {_pct(a.get('percentage'))}"
    if action == A.PHASE_HOLD:
        return f"decided to hold at {a.get('phase')}"
    if action == A.GUARDRAIL_EVALUATE:
        changed = [f"{k} {b.get(k, 'off')} → {v}" for k, v in a.items() if b.get(k) != v]
        return "evaluated the guardrails now: " + ", ".join(changed)
    if action == A.PHASE_CHANGE:
        if a.get("decision") == "hold":  # rows written before holds had their own kind
            return f"decided to hold at {a.get('phase')}"
        was = b.get("phase") or "not started"
        return f"moved to {a.get('phase')} at {_pct(a.get('percentage'))} (was {was})"
    if action == A.CHECKLIST:
        verb = "ticked" if a.get("checked") else "cleared"
        from rollout.checklist import LABELS

        item = a.get("item")
        named = None if item is None else LABELS.get(item, item)  # LABELS.get(None) is None
        return f"{verb} “{named}” for {a.get('phase')}"
    if action == A.OVERRIDE_SET:
        return f"set channel {a.get('channel_id')} to {a.get('variant')}"
    if action == A.OVERRIDE_REMOVE:
        return f"removed the override of channel {b.get('channel_id') or a.get('channel_id')}"
    if action == A.TOKEN_CREATE:
        return f"created API token {a.get('name')}"
    if action == A.TOKEN_REVOKE:
        return f"revoked API token {a.get('name')}"
    return entry.get_action_display()


@register.filter
def ago(value) -> str:
    """'just now' under a minute, else Django's timesince plus 'ago'."""
    from django.utils import timezone
    from django.utils.timesince import timesince

    if value is None:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def field_label(form, name: str) -> str:
    """A form field's label for an error line ('Expires', not 'expires_at')."""
    field = getattr(form, "fields", {}).get(name)
    label = getattr(field, "label", None) or name.replace("_", " ").capitalize()
    return str(label).split(" (")[0]
