"""Make v2 regress in the demo, so the guardrails roll it back (quick start, README).

    python manage.py demo_regression [--replies N] [--error-rate 0.3] [--evaluate]

Sends bot replies through the real ingest path (``metrics.ingest.intake``, what
``POST /api/v1/events`` calls), each channel on the variant the rollout's current rule gives it,
with v2 failing at ``--error-rate`` (v1 stays at its usual 1.2%). The replies are spread over
the last few minutes, but never before the guardrails' evidence window (it starts at the phase's
start, the last re-enable, or a rule's reset): replies from before it count for no rule, so a
demo right after a re-enable would otherwise do nothing. By default there are enough replies for
v2 to reach the ``errors`` rule's data floor at the current percentage (200 v2 replies; 1,500 at
20%), so within a minute the guardrails (``make run``'s in-process scheduler, or Celery beat)
see v2's error rate above v1's, the ``errors`` rule breaches and engages the kill switch,
audited as ``guardrail:errors``. At 100% there is no v1 to compare with: the crash guard (v2's
errors above 10%) rolls back, as ``guardrail:crash``. Press "Evaluate now" on the rollout page,
or pass ``--evaluate``, not to wait.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from metrics.ingest.intake import record_events
from rollout.models import Rollout
from selcontrol_client import assignment

CONTROL_ERROR_RATE = 0.012
V2_REPLIES = 300  # the errors rule's floor is 200 replies per variant
MAX_REPLIES = 20000


def evidence_start(rollout: Rollout) -> datetime | None:
    """The latest start of the rollout's guardrails' evidence windows (replies before it count
    for no rule): the phase's start, the last release of the kill switch, a rule's reset."""
    from metrics.guardrails import services as guardrails
    from metrics.guardrails.models import GuardrailRule

    released = guardrails.last_release(rollout)
    starts = [
        guardrails.window_start(rollout, rule, released=released)
        for rule in GuardrailRule.objects.filter(rollout=rollout)
    ]
    return max((s for s in starts if s is not None), default=None)


MODEL = "anthropic/claude-3.5-sonnet"


def regression_events(
    rollout: Rollout,
    *,
    replies: int,
    error_rate: float,
    now: datetime,
    minutes: float = 5.0,
    seed: int | None = None,
    since: datetime | None = None,
) -> list[dict]:
    """``replies`` bot replies spread over the last ``minutes`` (not before ``since``: the
    guardrails' evidence window), on 500 channels, each on the variant the rule gives its
    channel; treatment replies fail at ``error_rate``."""
    span = minutes * 60
    if since is not None:
        span = max(0.0, min(span, (now - since).total_seconds()))
    rng = random.Random(seed)
    rule = rollout.to_rule(overrides=[])
    run = (
        uuid.UUID(int=rng.getrandbits(128)).hex[:10] if seed is not None else uuid.uuid4().hex[:10]
    )
    channels = [str(10**18 + rng.randrange(10**17)) for _ in range(500)]
    events = []
    for i in range(replies):
        ts = now - timedelta(seconds=span * (replies - i) / replies)
        channel = rng.choice(channels)
        variant, _ = assignment.decide(rule, channel, ts)
        rate = CONTROL_ERROR_RATE if variant == rollout.control_variant else error_rate
        events.append(
            {
                "id": f"regress-{run}-{i}",
                "type": "response",
                "ts": ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "channel_id": channel,
                "message_id": f"regress-{run}-m{i}",
                "rollout": rollout.key,
                "variant": variant,
                "model": MODEL,
                "input_tokens": 1750 if variant != rollout.control_variant else 500,
                "output_tokens": 240,
                "latency_ms": round(1400 * rng.lognormvariate(0, 0.35), 1),
                "error": "provider_error" if rng.random() < rate else None,
            }
        )
    return events


class Command(BaseCommand):
    help = "Send v2 replies with a high error rate through the ingest path (a demo regression)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rollout", default="prompts_v2")
        parser.add_argument(
            "--replies",
            type=int,
            default=None,
            help="Replies (default: enough for 300 on v2 at the current percentage, at least "
            "800, at most 20000)",
        )
        parser.add_argument(
            "--error-rate", type=float, default=0.3, help="v2's error rate (default 0.3)"
        )
        parser.add_argument(
            "--evaluate", action="store_true", help="Evaluate the guardrails now, not at the tick"
        )
        parser.add_argument("--seed", type=int, default=None)

    def handle(
        self,
        *args,
        rollout: str,
        replies: int | None,
        error_rate: float,
        evaluate: bool,
        seed: int | None,
        **options,
    ) -> None:
        target = Rollout.objects.select_related("current_phase").filter(key=rollout).first()
        if target is None:
            raise CommandError(f"There is no rollout named {rollout!r}.")
        if not 0 <= error_rate <= 1:
            raise CommandError("--error-rate must be between 0 and 1, e.g. 0.3 for 30%.")
        if not target.enabled or target.percentage == 0:
            raise CommandError(
                f"{target.key} serves no v2 now (kill switch on or 0%): re-enable it first, "
                "e.g. at 20% from the rollout page."
            )
        if replies is None:
            replies = min(MAX_REPLIES, max(800, math.ceil(V2_REPLIES * 100 / target.percentage)))
        now = datetime.now(UTC)
        events = regression_events(
            target,
            replies=replies,
            error_rate=error_rate,
            now=now,
            seed=seed,
            since=evidence_start(target),
        )
        result = record_events(events, now=now)
        treated = sum(1 for e in events if e["variant"] != target.control_variant)
        self.stdout.write(
            f"demo_regression: {result.accepted} replies sent to {target.key} "
            f"({treated} on v2 failing at {error_rate:.0%}, the rest on "
            f"{target.control_variant} at {CONTROL_ERROR_RATE:.1%})."
        )
        if evaluate:
            from metrics import rollups
            from metrics.guardrails import services as guardrail_services

            rollups.catch_up(time_budget=50.0)
            for o in guardrail_services.evaluate_rollout(target):
                self.stdout.write(
                    f"{target.key} {o.rule}: {o.status}"
                    + (f" [action: {o.action}]" if o.action else "")
                )
        else:
            self.stdout.write(
                "The guardrails run every minute (make run's scheduler or Celery beat): the "
                + (
                    "crash guard (no v1 at 100% to compare with)"
                    if target.percentage == 100
                    else "errors rule"
                )
                + " will breach and roll back; or press 'Evaluate now' on the rollout page."
            )
