"""Play a simulated Sel deployment through the real ingest path (metrics.ingest.intake, or HTTP).

    manage.py simulate_traffic --days 3 --per-day 10000 --channels 400
    manage.py simulate_traffic --url http://127.0.0.1:8000 --token sc_... --days 1
    manage.py simulate_traffic --demo      # 14 days ending now, following Alpha 5% then Beta 20%

Idempotent: event ids are derived from the seed and the date, so a second run adds nothing.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from metrics import simulation
from rollout.models import Rollout
from selcontrol_client.events import backoff_delay


class Command(BaseCommand):
    help = "Send simulated bot events (replies, reactions, follow-ups) through the ingest path."

    def add_arguments(self, parser):
        parser.add_argument("--rollout", default="prompts_v2")
        parser.add_argument(
            "--channels", type=int, default=300, help="Discord channels (default 300)"
        )
        parser.add_argument(
            "--days", type=float, default=1.0, help="How many days to play (default 1)"
        )
        parser.add_argument(
            "--per-day",
            type=int,
            default=10_000,
            help="Replies per day (default 10000: the guide's $15/day on v1)",
        )
        parser.add_argument(
            "--start", default=None, help="RFC 3339 start (default: now minus --days)"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--batch", type=int, default=1000, help="Events per batch (default 1000)"
        )
        parser.add_argument(
            "--url", default=None, help="Base URL: send through POST /api/v1/events"
        )
        parser.add_argument("--token", default=None, help="An events:write token (with --url)")
        parser.add_argument(
            "--no-text", action="store_true", help="Leave user_text/response_text out"
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="14 days ending now at 3000 replies/day: v1 only for a week, then Alpha 5%% for "
            "two days, then Beta 20%%. If the rollout was never touched, it is moved through those "
            "phases (back-dated phase starts, audited as simulate_traffic).",
        )
        parser.add_argument(
            "--no-phases", action="store_true", help="With --demo: leave the rollout as it is"
        )

    def handle(self, *args, **options):
        rollout = Rollout.objects.filter(key=options["rollout"]).first()
        if rollout is None:
            raise CommandError(f"There is no rollout named {options['rollout']!r}.")
        now = datetime.now(UTC)
        base_rule = rollout.to_rule()
        if options["demo"]:
            days, per_day = 14.0, options["per_day"] if options["per_day"] != 10_000 else 3000
            start = now - timedelta(days=days)
            alpha, beta = now - timedelta(days=7), now - timedelta(days=5)
            off = dataclasses.replace(base_rule, enabled=False, overrides={})
            alpha_rule = dataclasses.replace(base_rule, enabled=True, percentage=5, overrides={})
            beta_rule = dataclasses.replace(base_rule, enabled=True, percentage=20, overrides={})

            def rule_at(ts):
                return off if ts < alpha else alpha_rule if ts < beta else beta_rule

            if not options["no_phases"]:
                self._move_phases(rollout, alpha, beta)
        else:
            days, per_day = options["days"], options["per_day"]
            start = _parse(options["start"]) if options["start"] else now - timedelta(days=days)

            def rule_at(ts):
                return base_rule

        until = (
            min(start + timedelta(days=days), now)
            if not options["start"]
            else start + timedelta(days=days)
        )
        plan = simulation.Plan(
            rollout=rollout.key,
            channels=simulation.channel_ids(options["seed"], options["channels"]),
            per_day=per_day,
            seed=options["seed"],
            rule_at=rule_at,
            with_text=not options["no_text"],
        )
        send = self._http_sender(options) if options["url"] else self._local_sender()
        started = time.monotonic()
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        batch: list[dict] = []
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < until:
            for event in simulation.day_events(plan, day, until):
                if event["ts"] < _iso(start):
                    continue
                batch.append(event)
                if len(batch) >= options["batch"]:
                    _add(totals, send(batch))
                    batch = []
            day += timedelta(days=1)
        if batch:
            _add(totals, send(batch))
        if not options["url"]:
            from metrics import rollups

            rollups.catch_up(time_budget=120)
        self.stdout.write(
            f"simulate_traffic: {totals['accepted']} events accepted, {totals['duplicates']} "
            f"duplicates, {totals['rejected']} rejected, {per_day}/day over {days:g} day(s) on "
            f"{options['channels']} channels, in {time.monotonic() - started:.1f} s"
        )

    def _move_phases(self, rollout: Rollout, alpha: datetime, beta: datetime) -> None:
        from rollout import services

        if (
            rollout.current_phase_id is not None
            or rollout.revision != 1
            or rollout.phases.count() < 2
        ):
            self.stdout.write("rollout already changed: phases left as they are")
            return
        actor = services.Actor("simulate_traffic", via="system")
        note = "demo data: simulated deployment"
        services.move_to_phase(
            rollout,
            phase=1,
            actor=actor,
            reason=f"{note} (Alpha)",
            now=alpha,
            gate_override_reason=note,
        )
        services.move_to_phase(
            rollout.key,
            phase=2,
            actor=actor,
            reason=f"{note} (Beta)",
            now=beta,
            gate_override_reason=note,
        )
        self.stdout.write(
            f"rollout {rollout.key}: Alpha from {alpha:%Y-%m-%d %H:%M}, Beta from "
            f"{beta:%Y-%m-%d %H:%M} UTC"
        )

    def _local_sender(self):
        from metrics.ingest.intake import record_events

        def send(batch):
            return record_events(batch, schedule=False).as_dict()

        return send

    def _http_sender(self, options):
        import httpx

        if not options["token"]:
            raise CommandError("--url needs --token (an API token with the events:write scope).")
        client = httpx.Client(
            base_url=options["url"].rstrip("/"),
            headers={"Authorization": f"Bearer {options['token']}"},
            timeout=60,
        )

        def send(batch):
            for attempt in range(5):
                try:
                    answer = client.post("/api/v1/events", json={"events": batch})
                except httpx.TransportError as exc:
                    error = str(exc)
                else:
                    if answer.status_code == 200:
                        return answer.json()
                    if answer.status_code < 500:
                        raise CommandError(
                            f"the server refused a batch: {answer.status_code} {answer.text[:300]}"
                        )
                    error = f"{answer.status_code}"
                time.sleep(backoff_delay(attempt + 1, base=0.5))  # a retry is counted once (ids)
            raise CommandError(f"the server did not take a batch after 5 attempts: {error}")

        return send


def _add(totals: dict, result: dict) -> None:
    totals["accepted"] += result["accepted"]
    totals["duplicates"] += result["duplicates"]
    totals["rejected"] += len(result["rejected"])


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--start {value!r} is not an RFC 3339 timestamp.") from None
    if parsed.tzinfo is None:
        raise CommandError("--start needs a time zone (Z or an offset).")
    return parsed.astimezone(UTC)
