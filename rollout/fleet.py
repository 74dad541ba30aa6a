"""The fleet: which configuration each running bot serves, when a change reached all of them, and
whether the variants they hand out match the rule (the sample-ratio check).

Three parts, read in this order:

1. Reports. Each ``selcontrol_client`` posts ``POST /api/v1/instances/report`` every ~15 s and
   right after it applies a new config. ``record_report`` upserts the Instance row, records an
   InstanceAck when the served revision moves, and adds the report's new decisions to the hourly
   ExposureCount buckets. Clients send *cumulative* decision counts; the server keeps the last
   totals per instance and adds only the difference, so a report resent after a lost answer
   counts once.
2. Acknowledgements. A change is an audit entry that moved the config revision. It is
   acknowledged by an instance when that instance first reported a revision >= the entry's.
   ``change_status`` answers "acknowledged by N of M live instances in X s"; ``settle_changes``
   (run on every report and by the fleet panel) writes ChangeAck once all live instances have it,
   and flags (UnackedInstance, plus an alert through the channel registered here: metrics'
   guardrail alerts) every live instance still behind after SELCONTROL_ACK_TIMEOUT_SECONDS.
3. Sample ratio. A chi-squared goodness-of-fit test (p < 0.001 is a mismatch) of decisions and
   of replies per variant against what the rule gives the channels that had traffic (see
   ``metrics.sample_ratio``). The pure functions are here; the check that reads the counts is
   ``metrics.sample_ratio.sample_ratio``, since it reads the replies metrics records.

Layering note: ``rollout`` never imports ``metrics`` (metrics reads rollout; the import graph is
checked by tests/ops/test_import_graph.py). The alert about unacknowledged instances goes through
the channel metrics registers (``register_alert_channel``), as the success criteria do through
``rollout.gates``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from selcontrol_client import assignment

from .models import (
    AuditEntry,
    ChangeAck,
    ExposureCount,
    Instance,
    InstanceAck,
    Rollout,
    UnackedInstance,
)

logger = logging.getLogger("selcontrol.fleet")

CHANGE_ACTIONS = (
    AuditEntry.Action.ROLLOUT_UPDATE,
    AuditEntry.Action.KILL_SWITCH_ENGAGE,
    AuditEntry.Action.KILL_SWITCH_RELEASE,
    AuditEntry.Action.PHASE_CHANGE,
    AuditEntry.Action.OVERRIDE_SET,
    AuditEntry.Action.OVERRIDE_REMOVE,
)
"""Audit actions that change the config document the bots serve."""

SRM_THRESHOLD = 0.001
"""p below this is a sample-ratio mismatch (strict, as experiment platforms use)."""
SRM_MIN_EXPECTED = 5.0
"""The chi-squared approximation needs about this many expected per cell; below it, no verdict."""


def ack_timeout() -> float:
    """Seconds after a change before an instance that has not acknowledged it is flagged."""
    return float(settings.SELCONTROL_ACK_TIMEOUT_SECONDS)


def live_seconds() -> float:
    """An instance that reported within this many seconds is live (counted in M)."""
    return float(settings.SELCONTROL_FLEET_LIVE_SECONDS)


def drop_seconds() -> float:
    """A stale instance is shown greyed until this many seconds without a report, then dropped."""
    return float(settings.SELCONTROL_FLEET_DROP_SECONDS)


# -- 1. reports -----------------------------------------------------------------------------------


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def exposure_deltas(previous: Mapping[str, int], current: Mapping[str, int]) -> dict[str, int]:
    """New decisions since the last report, from two sets of cumulative totals. A total that went
    down means the counter restarted (a reused instance id): all of it is new."""
    out: dict[str, int] = {}
    for key, total in current.items():
        before = int(previous.get(key, 0))
        delta = total if total < before else total - before
        if delta > 0:
            out[key] = delta
    return out


def _add_exposures(deltas: Mapping[str, int], hour: datetime) -> None:
    """One upsert adding each delta to its (rollout, rule revision, variant, hour) bucket."""
    if not deltas:
        return
    rows = []
    for key, n in sorted(deltas.items()):
        revision, rollout_key, variant = key.split("|", 2)
        rows.append((rollout_key, int(revision), variant, hour, n))
    table = connection.ops.quote_name(ExposureCount._meta.db_table)
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    sql = (
        f"INSERT INTO {table} (rollout_key, rule_revision, variant, hour, count) VALUES {values} "
        "ON CONFLICT (rollout_key, rule_revision, variant, hour) "
        f"DO UPDATE SET count = {table}.count + EXCLUDED.count"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [v for row in rows for v in row])


def exposure_key(rule_revision: int, rollout_key: str, variant: str) -> str:
    return f"{rule_revision}|{rollout_key}|{variant}"


@transaction.atomic
def record_report(
    report: Mapping[str, Any], *, token_name: str = "", now: datetime | None = None
) -> Instance:
    """Store one instance report (validated by the API schema): upsert the Instance, record an
    InstanceAck when its revision moved, add new decisions to the hourly exposure buckets."""
    now = now or timezone.now()
    totals = {
        exposure_key(e["revision"], e["rollout"], e["variant"]): int(e["count"])
        for e in report.get("exposures") or []
    }
    fields = {
        "host": report["host"],
        "pid": report["pid"],
        "client_version": report["client_version"],
        "started_at": report["started_at"],
        "token_name": token_name,
        "last_seen_at": now,
        "config_source": report.get("config_source") or "",
        "events": dict(report.get("events") or {}),
        "last_sync_error": report.get("last_sync_error") or "",
    }
    revision = int(report["revision"])
    instance = (
        Instance.objects.select_for_update().filter(instance_id=report["instance_id"]).first()
    )
    if instance is None:
        try:
            with transaction.atomic():
                instance = Instance.objects.create(
                    instance_id=report["instance_id"],
                    first_seen_at=now,
                    revision=revision,
                    revision_since=now,
                    reports=1,
                    exposure_totals=totals,
                    **fields,
                )
        except IntegrityError:  # two first reports at once: the other one created it
            return record_report(report, token_name=token_name, now=now)
        InstanceAck.objects.create(instance=instance, revision=revision, acked_at=now)
        forget_instances(now)  # a process start is rare: a good moment to clear day-old rows
        _add_exposures(exposure_deltas({}, totals), _hour(now))
        return instance
    deltas = exposure_deltas(instance.exposure_totals or {}, totals)
    moved = revision != instance.revision
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.reports += 1
    instance.exposure_totals = {**(instance.exposure_totals or {}), **totals}
    if moved:
        instance.revision = revision
        instance.revision_since = now
    instance.save()
    if moved:
        InstanceAck.objects.get_or_create(
            instance=instance, revision=revision, defaults={"acked_at": now}
        )
    _add_exposures(deltas, _hour(now))
    return instance


def forget_instances(
    now: datetime | None = None, *, older_than: timedelta = timedelta(days=1)
) -> int:
    """Delete instances (and their acks) not seen for a day; returns how many."""
    now = now or timezone.now()
    deleted, _ = Instance.objects.filter(last_seen_at__lt=now - older_than).delete()
    return deleted


# -- 2. acknowledgements --------------------------------------------------------------------------


@dataclass
class InstanceRow:
    """One instance as the fleet panel shows it."""

    instance: Instance
    state: str  # "current", "behind" or "stale"
    behind_since: datetime | None  # when the first change it lacks was made
    behind_seconds: float | None
    health: str  # "ok", or a short problem
    age_seconds: float  # since its last report
    acked: datetime | None = None  # for a change: when it acknowledged it
    overdue: bool = False  # for a change: not acknowledged within the timeout

    @property
    def live(self) -> bool:
        return self.state != "stale"


@dataclass
class ChangeStatus:
    """'Acknowledged by N of M live instances in X s' for one change."""

    entry: AuditEntry
    live: int
    acked: int
    seconds: float | None  # latest acknowledgement - the change, over the live instances that
    # were running at the change and have acknowledged it (None: none of those)
    elapsed: float  # now - the change
    timeout: float
    rows: list[InstanceRow] = field(default_factory=list)
    settled: ChangeAck | None = None

    @property
    def complete(self) -> bool:
        return self.live > 0 and self.acked >= self.live

    @property
    def overdue(self) -> list[InstanceRow]:
        return [r for r in self.rows if r.overdue]

    @property
    def waiting(self) -> list[InstanceRow]:
        return [r for r in self.rows if r.live and r.acked is None]


def health_of(instance: Instance) -> str:
    """'ok', or the first problem a report shows (a failing sync, events dropped or spooled)."""
    if instance.last_sync_error:
        return f"sync failing: {instance.last_sync_error[:120]}"
    events = instance.events or {}
    if int(events.get("dropped", 0) or 0) > 0:
        return f"{events['dropped']} events dropped"
    if int(events.get("quarantined", 0) or 0) > 0:
        return f"{events['quarantined']} events the server failed on set aside (quarantine)"
    if int(events.get("spool_pending", 0) or 0) > 0:
        return f"{events['spool_pending']} events waiting on disk"
    return "ok"


def visible_instances(now: datetime | None = None) -> list[Instance]:
    """Instances seen within SELCONTROL_FLEET_DROP_SECONDS, by host and process."""
    now = now or timezone.now()
    return list(Instance.objects.filter(last_seen_at__gte=now - timedelta(seconds=drop_seconds())))


def _changes_after(revision: int) -> AuditEntry | None:
    return (
        AuditEntry.objects.filter(action__in=CHANGE_ACTIONS, revision__gt=revision)
        .order_by("created_at", "id")
        .first()
    )


def fleet_rows(
    now: datetime | None = None, instances: list[Instance] | None = None
) -> list[InstanceRow]:
    """Every visible instance with its state: current, behind (and since when) or stale."""
    now = now or timezone.now()
    instances = visible_instances(now) if instances is None else instances
    live_after = now - timedelta(seconds=live_seconds())
    latest = (
        AuditEntry.objects.filter(action__in=CHANGE_ACTIONS, revision__isnull=False)
        .order_by("-revision")
        .values_list("revision", flat=True)
        .first()
    ) or 0
    rows = []
    for inst in instances:
        behind_since = None
        if inst.revision < latest:
            first_missed = _changes_after(inst.revision)
            behind_since = first_missed.created_at if first_missed else None
        if inst.last_seen_at < live_after:
            state = "stale"
        elif behind_since is not None:
            state = "behind"
        else:
            state = "current"
        rows.append(
            InstanceRow(
                instance=inst,
                state=state,
                behind_since=behind_since,
                behind_seconds=(now - behind_since).total_seconds() if behind_since else None,
                health=health_of(inst),
                age_seconds=max(0.0, (now - inst.last_seen_at).total_seconds()),
            )
        )
    return rows


def latest_change(rollout: Rollout | None = None) -> AuditEntry | None:
    """The most recent audit entry that changed the config (of this rollout, if given)."""
    qs = AuditEntry.objects.filter(action__in=CHANGE_ACTIONS, revision__isnull=False)
    if rollout is not None:
        qs = qs.filter(rollout=rollout)
    return qs.select_related("rollout").order_by("-created_at", "-id").first()


def change_status(entry: AuditEntry, now: datetime | None = None) -> ChangeStatus:
    """N of M live instances have acknowledged ``entry``, the last of them X s after it."""
    now = now or timezone.now()
    timeout = ack_timeout()
    elapsed = max(0.0, (now - entry.created_at).total_seconds())
    rows = fleet_rows(now)
    live_rows = [r for r in rows if r.live]
    first_ack = dict(
        InstanceAck.objects.filter(
            instance__in=[r.instance.pk for r in live_rows], revision__gte=entry.revision
        )
        .values("instance_id")
        .annotate(first=Min("acked_at"))
        .values_list("instance_id", "first")
    )
    seconds: float | None = None
    for row in live_rows:
        acked_at = first_ack.get(row.instance.pk)
        row.acked = acked_at
        if acked_at is None:
            row.overdue = elapsed > timeout
        elif row.instance.first_seen_at <= entry.created_at:
            took = max(0.0, (acked_at - entry.created_at).total_seconds())
            seconds = took if seconds is None else max(seconds, took)
    acked = sum(1 for r in live_rows if r.acked is not None)
    settled = ChangeAck.objects.filter(audit_entry=entry).first()
    return ChangeStatus(
        entry=entry,
        live=len(live_rows),
        acked=acked,
        seconds=seconds,
        elapsed=elapsed,
        timeout=timeout,
        rows=rows,
        settled=settled,
    )


def settle_changes(now: datetime | None = None, *, window: timedelta = timedelta(hours=1)) -> int:
    """For each recent change not yet fully acknowledged: write its ChangeAck once every live
    instance has it, and flag live instances still behind after the timeout (once each, with an
    alert). Safe to run any number of times; returns the number of ChangeAck rows written."""
    now = now or timezone.now()
    pending = list(
        AuditEntry.objects.filter(
            action__in=CHANGE_ACTIONS,
            revision__isnull=False,
            created_at__gte=now - window,
            ack__isnull=True,
        )
        .select_related("rollout")
        .order_by("created_at")
    )
    written = 0
    for entry in pending:
        status = change_status(entry, now)
        if status.complete:
            ChangeAck.objects.get_or_create(
                audit_entry=entry,
                defaults={
                    "all_acked_at": max(r.acked for r in status.rows if r.acked is not None),
                    "seconds": status.seconds or 0.0,
                    "acked": status.acked,
                    "live": status.live,
                },
            )
            written += 1
        if status.overdue:
            _flag(entry, status.overdue, now)
    return written


ALERT_LISTS_INSTANCES = 5
"""An alert about instances that missed a change names this many and counts the rest."""


def _flag(entry: AuditEntry, rows: list[InstanceRow], now: datetime) -> None:
    """Record the instances that missed a change (once each), and alert once per change.

    Reports come with the bot's token, so anyone holding it can invent instance ids: one alert
    per change names the first instances and counts the rest, however many there are; instances
    flagged after it point at the same alert (issue 15). The change's audit row is locked while
    deciding, so two reports settling at once send one alert, not two.
    """
    with transaction.atomic():
        list(AuditEntry.objects.select_for_update().filter(pk=entry.pk).values_list("pk"))
        flagged = []
        for row in rows:
            inst = row.instance
            flag, created = UnackedInstance.objects.get_or_create(
                audit_entry=entry,
                instance_id=inst.instance_id,
                defaults={"host": inst.host, "revision": inst.revision, "flagged_at": now},
            )
            if created:
                flagged.append(flag)
        if not flagged or entry.rollout_id is None:
            return
        alert_id = (
            UnackedInstance.objects.filter(audit_entry=entry, alert_id__isnull=False)
            .values_list("alert_id", flat=True)
            .first()
        )
        if alert_id is None:
            alert_id = _send_alert(entry, [row.instance for row in rows])
        if alert_id is not None:
            UnackedInstance.objects.filter(pk__in=[f.pk for f in flagged]).update(alert_id=alert_id)


AlertChannel = Callable[[AuditEntry, list[Instance]], "int | None"]
_alert_channel: AlertChannel | None = None


def register_alert_channel(channel: AlertChannel | None) -> None:
    """Set where the alert about instances that missed a change goes (one channel; ``None``
    removes it). Called from an AppConfig.ready(): metrics registers its guardrail alerts
    (``metrics.guardrails.fleet_alerts``), so rollout never imports metrics."""
    global _alert_channel
    _alert_channel = channel


def _send_alert(entry: AuditEntry, instances: list[Instance]) -> int | None:
    """One alert about the instances that missed ``entry`` through the registered channel (the
    alert's id), or None without one."""
    if _alert_channel is None:
        logger.warning("%s instance(s) missed change %s; no alert channel", len(instances), entry)
        return None
    return _alert_channel(entry, instances)


# -- 3. sample-ratio check ------------------------------------------------------------------------


def chi2_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X chi-squared with ``df`` (a whole number) degrees of freedom.

    The closed form of the regularized upper incomplete gamma Q(df/2, statistic/2): for even df
    exp(-x) (1 + x + x²/2! + ... + x^(df/2-1)/(df/2-1)!), for odd df erfc(√x) plus the terms
    exp(-x) x^(k-1/2) / Γ(k+1/2), k = 1 .. (df-1)/2; with x = statistic/2. The check has at
    most three variants (df <= 2: exp(-x/2) for df 2, erfc(√(x/2)) for df 1).
    """
    if df <= 0:
        return 1.0
    x = max(0.0, statistic) / 2.0
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= x / k
            total += term
        return min(1.0, math.exp(-x) * total)
    total = math.erfc(math.sqrt(x))
    term = 2.0 * math.sqrt(x / math.pi) * math.exp(-x)  # x^(1/2) e^-x / Γ(3/2)
    for k in range(1, (df + 1) // 2):
        total += term
        term *= x / (k + 0.5)
    return min(1.0, total)


@dataclass
class SrmResult:
    """One chi-squared goodness-of-fit test of counts per variant against expected shares."""

    name: str
    observed: dict[str, int]
    expected: dict[str, float]  # expected counts
    total: int
    statistic: float | None
    df: int
    p_value: float | None
    verdict: str  # "ok", "mismatch" or "not enough data"
    note: str = ""

    @property
    def mismatch(self) -> bool:
        return self.verdict == "mismatch"

    def shares(self) -> list[tuple[str, float, float]]:
        """(variant, observed share, expected share) for display."""
        if not self.total:
            return [(v, 0.0, 0.0) for v in self.expected]
        return [
            (v, self.observed.get(v, 0) / self.total, self.expected.get(v, 0.0) / self.total)
            for v in sorted(set(self.expected) | set(self.observed), key=_variant_order(self))
        ]


def _variant_order(result: SrmResult):
    order = list(result.expected)
    return lambda v: (order.index(v) if v in order else len(order), v)


def srm_test(
    name: str,
    observed: Mapping[str, int],
    expected_shares: Mapping[str, float],
    *,
    threshold: float = SRM_THRESHOLD,
    min_expected: float = SRM_MIN_EXPECTED,
) -> SrmResult:
    """Chi-squared goodness of fit of ``observed`` counts against ``expected_shares`` (summing
    to 1). Counts in a variant whose expected share is 0 are a mismatch outright (p = 0) once
    there are at least ``min_expected`` of them; otherwise cells with expected >= min_expected
    decide, with df = cells - 1."""
    observed = {k: int(v) for k, v in observed.items() if int(v) > 0}
    total = sum(observed.values())
    share_sum = sum(expected_shares.values())
    expected = {
        v: (total * s / share_sum if share_sum else 0.0) for v, s in expected_shares.items()
    }
    impossible = sum(n for v, n in observed.items() if expected.get(v, 0.0) <= 0)
    if impossible >= min_expected:
        return SrmResult(
            name,
            observed,
            expected,
            total,
            math.inf,
            0,
            0.0,
            "mismatch",
            f"{impossible} in variants the rule gives no traffic",
        )
    cells = [v for v, e in expected.items() if e > 0]
    if total == 0 or len(cells) < 2 or any(expected[v] < min_expected for v in cells):
        note = f"fewer than {min_expected:g} expected in a variant" if total else "no data yet"
        if len(cells) < 2 and total and not impossible:
            note = "the rule gives all of it one variant, and all of it got that variant"
            return SrmResult(name, observed, expected, total, 0.0, 0, 1.0, "ok", note)
        return SrmResult(name, observed, expected, total, None, 0, None, "not enough data", note)
    statistic = sum((observed.get(v, 0) - expected[v]) ** 2 / expected[v] for v in cells)
    df = len(cells) - 1
    p = chi2_sf(statistic, df)
    return SrmResult(
        name, observed, expected, total, statistic, df, p, "mismatch" if p < threshold else "ok"
    )


def nominal_shares(rule: assignment.Rule) -> dict[str, float]:
    """Shares per variant if every channel had the same traffic: the percentages themselves."""
    if not rule.enabled:
        return {rule.control: 1.0, rule.treatment: 0.0, rule.simplified: 0.0}
    treated = rule.percentage / 100
    simplified = treated * rule.simplified_percentage / 100
    return {
        rule.control: 1 - treated,
        rule.treatment: treated - simplified,
        rule.simplified: simplified,
    }


def rule_shares(
    rule: assignment.Rule, traffic: Mapping[str, int], now: datetime
) -> dict[str, float]:
    """Share of the traffic the rule gives each variant, channel by channel (overrides and the
    kill switch included): sum of the traffic of the channels the rule sends to it."""
    volume = {v: 0 for v in rule.variants}
    for channel, n in traffic.items():
        variant, _ = assignment.decide(rule, channel, now)
        volume[variant] = volume.get(variant, 0) + n
    total = sum(volume.values())
    return {v: n / total for v, n in volume.items()} if total else nominal_shares(rule)


def reply_consistency(
    rule: assignment.Rule, replies: Iterable[tuple[str, str, int]], now: datetime
) -> tuple[dict[str, int], dict[str, int], int, int]:
    """From (channel, variant recorded, replies): observed replies per variant, the replies the
    rule gives each variant, and how many replies and channels got another variant."""
    observed: dict[str, int] = {}
    expected: dict[str, int] = {v: 0 for v in rule.variants}
    wrong_replies = 0
    wrong_channels: set[str] = set()
    for channel, variant, n in replies:
        should, _ = assignment.decide(rule, channel, now)
        observed[variant] = observed.get(variant, 0) + n
        expected[should] = expected.get(should, 0) + n
        if variant != should:
            wrong_replies += n
            wrong_channels.add(channel)
    return observed, expected, wrong_replies, len(wrong_channels)
