"""The console's fleet panel: which config each bot instance serves, how far the latest change
has reached ("acknowledged by N of M instances in X s", live), and the sample-ratio check.

Both fragments are loaded by ``templates/console/partials/fleet_slot.html`` (included in the
rollout page) and refresh themselves with htmx: the fleet every second while the latest change is
not acknowledged by every live instance, every 5 s otherwise, every 15 s while no bot is live;
the sample ratio every 30 s.

A console page (selcontrol/console): it shows rollout's fleet beside metrics' sample-ratio check.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from metrics import sample_ratio
from rollout import fleet, freshness
from rollout.models import AuditEntry, ChangeAck, Rollout

FAST_POLL = "every 1s"
SLOW_POLL = "every 5s"
IDLE_POLL = "every 15s"  # no live bot: one appears within a report interval (15 s) at most
FAST_FOR_SECONDS = 600
"""Poll fast for at most this long after a change (an instance that never acknowledges should not
keep every open console polling each second forever)."""


@login_required
@require_GET
def fleet_panel(request: HttpRequest, key: str) -> HttpResponse:
    current = freshness.stamp(request)  # before the state the fragment shows
    rollout = get_object_or_404(Rollout, key=key)
    now = timezone.now()
    change = fleet.latest_change(rollout)
    status = fleet.change_status(change, now) if change else None
    rows = status.rows if status else fleet.fleet_rows(now)
    live = sum(1 for r in rows if r.live)
    # Fast only while a live bot has yet to acknowledge: with none connected there is nothing
    # to wait for (the panel said "no live instance" while polling every second for 10 minutes).
    fast = (
        status is not None
        and live > 0
        and not status.complete
        and status.elapsed < FAST_FOR_SECONDS
    )
    recent = list(
        AuditEntry.objects.filter(
            rollout=rollout, action__in=fleet.CHANGE_ACTIONS, revision__isnull=False
        ).order_by("-created_at", "-id")[:5]
    )
    settled = {a.audit_entry_id: a for a in ChangeAck.objects.filter(audit_entry__in=recent)}
    return render(
        request,
        "console/partials/fleet.html",
        {
            "rollout": rollout,
            "status": status,
            "rows": rows,
            "live": live,
            "poll": FAST_POLL if fast else (SLOW_POLL if live else IDLE_POLL),
            "recent": [(e, settled.get(e.pk)) for e in recent],
            "timeout": fleet.ack_timeout(),
            "stamp": current,
        },
    )


@login_required
@require_GET
def fleet_srm(request: HttpRequest, key: str) -> HttpResponse:
    current = freshness.stamp(request)  # before the state the fragment shows
    rollout = get_object_or_404(Rollout, key=key)
    srm = sample_ratio.sample_ratio(rollout)
    return render(
        request,
        "console/partials/fleet_srm.html",
        {
            "rollout": rollout,
            "srm": srm,
            "tests": [srm.decisions, srm.replies],
            "threshold": fleet.SRM_THRESHOLD,
            "stamp": current,
        },
    )
