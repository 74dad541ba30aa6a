"""Make v2 regress in the demo, so the guardrails roll it back (quick start, README).

    python manage.py demo_regression [--replies 800] [--error-rate 0.3] [--evaluate]

Sends a few minutes of bot replies through the real ingest path (``metrics.ingest.intake``, what
``POST /api/v1/events`` calls), each channel on the variant the rollout's current rule gives it,
with v2 failing at ``--error-rate`` (v1 stays at its usual 1.2%). Within a minute the guardrails
(``make run``'s in-process scheduler, or Celery beat) see v2's error rate above v1's, the
``errors`` rule breaches and engages the kill switch, audited as ``guardrail:errors``. Press
"Evaluate now" on the rollout page, or pass ``--evaluate``, not to wait.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from metrics.ingest.intake import record_events
from rollout.models import Rollout
from selcontrol_client import assignment

CONTROL_ERROR_RATE = 0.012
MODEL = "anthropic/claude-3.5-sonnet"


def regression_events(
    rollout: Rollout,
    *,
    replies: int,
    error_rate: float,
    now: datetime,
    minutes: float = 5.0,
    seed: int | None = None,
) -> list[dict]:
    """``replies`` bot replies spread over the last ``minutes``, on 500 channels, each on the
    variant the rule gives its channel; treatment replies fail at ``error_rate``."""
    rng = random.Random(seed)
    rule = rollout.to_rule(overrides=[])
    run = (
        uuid.UUID(int=rng.getrandbits(128)).hex[:10] if seed is not None else uuid.uuid4().hex[:10]
    )
    channels = [str(10**18 + rng.randrange(10**17)) for _ in range(500)]
    events = []
    for i in range(replies):
        ts = now - timedelta(seconds=minutes * 60 * (replies - i) / replies)
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
        parser.add_argument("--replies", type=int, default=800, help="Replies (default 800)")
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
        replies: int,
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
        now = datetime.now(UTC)
        events = regression_events(
            target, replies=replies, error_rate=error_rate, now=now, seed=seed
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
                "errors rule will breach and roll back; or press 'Evaluate now' on the rollout"
                " page."
            )
