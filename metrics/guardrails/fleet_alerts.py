"""Guardrail alerts about bot instances that missed a change (the fleet's acknowledgements).

``rollout.fleet`` flags, once per change, the live instances that have not picked up a config
change within SELCONTROL_ACK_TIMEOUT_SECONDS, and hands them to the alert channel registered with
it; metrics registers ``alert_unacked`` (metrics' AppConfig), which writes one ``Alert`` per change
("action: alert only") and queues its webhook delivery after the commit
(``metrics.guardrails.alerts``). Registered rather than imported, so that rollout never imports
metrics (docs/fleet.md).
"""

from __future__ import annotations

from rollout.fleet import ALERT_LISTS_INSTANCES, ack_timeout
from rollout.models import AuditEntry, Instance

from .alerts import queue_delivery
from .models import Alert


def alert_unacked(entry: AuditEntry, instances: list[Instance]) -> int:
    """One alert about the instances that missed ``entry``; its id. Host names were cleaned when
    reported (``rollout.fleet_api.clean_host``) and the webhook payload escapes everything again."""
    shown = instances[:ALERT_LISTS_INSTANCES]
    names = ", ".join(
        f"{inst.instance_id} ({inst.host}, pid {inst.pid}, revision {inst.revision})"
        for inst in shown
    )
    more = len(instances) - len(shown)
    if more:
        names += f" and {more} more"
    if len(instances) == 1:
        title = f"Bot instance {instances[0].host}:{instances[0].pid} has not picked up the change"
    else:
        title = f"{len(instances)} bot instances have not picked up the change"
    if entry.rollout is None:  # rollout.fleet._flag alerts only about a rollout's changes
        raise ValueError(f"audit entry {entry.pk} is not a change to a rollout.")
    alert = Alert.objects.create(
        rollout=entry.rollout,
        title=title,
        message=(
            f"{entry.get_action_display()} by {entry.actor} at {entry.created_at:%H:%M:%S} UTC "
            f"(config revision {entry.revision}) was not acknowledged within "
            f"{ack_timeout():g} s by {names}. Restart them or check their connection to "
            "selcontrol; the fleet panel lists every instance."
        ),
        numbers={
            "instances": len(instances),
            "instance_ids": [inst.instance_id for inst in instances[:50]],
            "hosts": sorted({inst.host for inst in instances})[:50],
            "expected_revision": entry.revision,
            "audit_entry": entry.pk,
        },
        action_taken="alert only",
    )
    queue_delivery(alert)
    return alert.pk
