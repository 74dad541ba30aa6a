"""The rollout domain: rollouts, their phase plan, channel overrides, API tokens and the audit log.

State changes go through ``rollout.services`` (atomic, audited, revision-checked); models hold
data and small derived properties only.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from selcontrol.timestamps import STORABLE_MAX, STORABLE_MIN
from selcontrol_client import assignment

CHANNEL_ID_RE = r"^[0-9A-Za-z_.:-]{1,64}$"
SNOWFLAKE_RE = r"^[0-9]{17,20}$"
# Rollouts whose channels are Discord channels (the Sel bot's): their channel ids are snowflakes.
SNOWFLAKE_ROLLOUTS = ("prompts_v2",)
SNOWFLAKE_HELP = (
    "Channel ids of {key} are Discord snowflakes: 17 to 20 digits, e.g. 1234567890123456789 "
    "(in Discord, turn on Developer Mode, right-click the channel, Copy Channel ID)."
)
channel_id_validator = RegexValidator(
    CHANNEL_ID_RE, "A channel id is 1-64 letters, digits, '_', '.', ':' or '-'."
)


class ConfigState(models.Model):
    """A single row holding the global config revision.

    Every write to any rollout bumps it in the same transaction, so ``GET /api/v1/config`` can
    answer 304 from one indexed read, and bots can report which revision they serve.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    revision = models.PositiveBigIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "config state"

    def __str__(self) -> str:
        return f"config revision {self.revision}"


class Rollout(models.Model):
    class Strategy(models.TextChoices):
        STICKY = assignment.STICKY, "Sticky (hash of the channel id)"
        DAILY_ROTATION = assignment.DAILY_ROTATION, "Daily rotation (hash + day of year)"

    key = models.SlugField(
        max_length=64, unique=True, help_text="Stable identifier, e.g. prompts_v2"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    control_variant = models.CharField(max_length=64, default="v1")
    treatment_variant = models.CharField(max_length=64, default="v2_full")
    simplified_variant = models.CharField(max_length=64, default="v2_simplified")
    salt = models.CharField(
        max_length=64,
        blank=True,
        help_text="Empty for prompts_v2 (the bot's rule); other rollouts hash 'salt:channel_id'.",
    )
    enabled = models.BooleanField(
        default=False,
        help_text="False means the kill switch is engaged: every channel gets control.",
    )
    percentage = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    simplified_percentage = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(100)]
    )
    strategy = models.CharField(max_length=32, choices=Strategy.choices, default=Strategy.STICKY)
    current_phase = models.ForeignKey(
        "Phase", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    phase_started_at = models.DateTimeField(null=True, blank=True)
    revision = models.PositiveBigIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(percentage__lte=100), name="rollout_percentage_lte_100"
            ),
            models.CheckConstraint(
                condition=models.Q(simplified_percentage__lte=100),
                name="rollout_simplified_percentage_lte_100",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def variants(self) -> list[str]:
        return [self.control_variant, self.treatment_variant, self.simplified_variant]

    @property
    def channel_ids_are_snowflakes(self) -> bool:
        """The Sel bot's rollouts key on Discord channel ids, which are 17-20 digit snowflakes."""
        return self.key in SNOWFLAKE_ROLLOUTS

    def channel_id_problem(self, channel_id: str) -> str:
        """A sentence when ``channel_id`` cannot be one of this rollout's channels, else ''."""
        import re

        if self.channel_ids_are_snowflakes and not re.match(SNOWFLAKE_RE, channel_id):
            shown = channel_id[:40]
            return f"{shown!r} is not a Discord channel id. " + SNOWFLAKE_HELP.format(key=self.key)
        return ""

    @property
    def kill_switch_engaged(self) -> bool:
        return not self.enabled

    def phase_watch_ends_at(self) -> datetime | None:
        if self.current_phase is None or self.phase_started_at is None:
            return None
        return self.phase_started_at + self.current_phase.min_watch

    def on_plan(self) -> bool:
        """Live at the current phase's planned percentage (the only state its watch counts)."""
        phase = self.current_phase
        return bool(phase and self.enabled and self.percentage == phase.percentage)

    def off_plan(self) -> str:
        """'off plan: Full is 100%, serving 20%' when live at another percentage than the
        phase's plan (re-enabled at N% after a rollback, or the slider moved); else ''."""
        phase = self.current_phase
        if phase is None or not self.enabled or self.percentage == phase.percentage:
            return ""
        return f"off plan: {phase.name} is {phase.percentage}%, serving {self.percentage}%"

    def next_phase(self) -> Phase | None:
        """The phase after the current one (the first before Alpha; None at the last), read
        once per instance and current phase: a page asks it from several sections."""
        cached = getattr(self, "_next_phase", None)
        if cached is not None and cached[0] == self.current_phase_id:
            return cached[1]
        phases = self.phases.order_by("order")
        if self.current_phase is None:
            found = phases.first()
        else:
            found = phases.filter(order__gt=self.current_phase.order).first()
        self._next_phase = (self.current_phase_id, found)
        return found

    def to_rule(self, overrides: list[ChannelOverride] | None = None) -> assignment.Rule:
        if overrides is None:
            overrides = list(self.overrides.all())
        return assignment.Rule(
            key=self.key,
            enabled=self.enabled,
            percentage=self.percentage,
            simplified_percentage=self.simplified_percentage,
            strategy=self.strategy,
            salt=self.salt,
            control=self.control_variant,
            treatment=self.treatment_variant,
            simplified=self.simplified_variant,
            overrides={
                o.channel_id: assignment.Override(o.variant, o.expires_at) for o in overrides
            },
            revision=self.revision,
        )


class Phase(models.Model):
    """One step of a rollout's plan (the guide's Alpha, Beta, Canary, Full)."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="phases")
    order = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    percentage = models.PositiveSmallIntegerField(validators=[MaxValueValidator(100)])
    min_watch = models.DurationField(help_text="Minimum time to watch before advancing.")
    max_watch = models.DurationField(null=True, blank=True)
    goal = models.TextField(blank=True)
    success_criteria = models.TextField(blank=True, help_text="One criterion per line.")
    rollback_trigger = models.TextField(blank=True)

    class Meta:
        ordering = ["rollout", "order"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "order"], name="phase_unique_order"),
        ]

    def __str__(self) -> str:
        return f"{self.rollout.key}: {self.name} ({self.percentage}%)"

    def watch_label(self) -> str:
        def fmt(d: timedelta) -> str:
            hours = int(d.total_seconds() // 3600)
            return f"{hours} h" if hours < 48 else f"{hours // 24} days"

        if self.max_watch and self.max_watch != self.min_watch:
            lo, hi = fmt(self.min_watch), fmt(self.max_watch)
            if lo.endswith(" days") and hi.endswith(" days"):
                return f"{lo.removesuffix(' days')}-{hi}"
            return f"{lo} to {hi}"
        return fmt(self.min_watch)


class ChannelOverride(models.Model):
    """A channel forced to one variant, whatever the percentage says (below the kill switch)."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="overrides")
    channel_id = models.CharField(max_length=64, validators=[channel_id_validator])
    variant = models.CharField(max_length=64)
    reason = models.TextField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rollout", "channel_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "channel_id"], name="override_unique_channel"
            ),
            # Only times Python (and so every page and the config document) can read back.
            models.CheckConstraint(
                condition=models.Q(expires_at__isnull=True)
                | models.Q(expires_at__range=(STORABLE_MIN, STORABLE_MAX)),
                name="override_expires_at_readable",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout.key}/{self.channel_id} -> {self.variant}"

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class AuditEntry(models.Model):
    """An append-only record of one change: who, when, what before and after, and why."""

    class Action(models.TextChoices):
        ROLLOUT_UPDATE = "rollout.update", "Rollout settings changed"
        KILL_SWITCH_ENGAGE = "kill_switch.engage", "Emergency rollback (kill switch on)"
        KILL_SWITCH_RELEASE = "kill_switch.release", "Re-enabled after rollback"
        PHASE_CHANGE = "phase.change", "Phase changed"
        PHASE_EDIT = "phase.edit", "Phase plan edited"
        PHASE_HOLD = "phase.hold", "Held at a phase"
        CHECKLIST = "checklist.update", "Checklist ticked or cleared"
        OVERRIDE_SET = "override.set", "Channel override set"
        OVERRIDE_REMOVE = "override.remove", "Channel override removed"
        TOKEN_CREATE = "token.create", "API token created"
        TOKEN_REVOKE = "token.revoke", "API token revoked"
        REVIEW_SAMPLE = "review.sample", "Review sample drawn"
        GUARDRAIL_UPDATE = "guardrail.update", "Guardrail rule changed"
        GUARDRAIL_EVALUATE = "guardrail.evaluate", "Guardrails evaluated on demand"
        DEPLOYMENT_DECISION = "deployment.decision", "Post-deployment decision recorded"
        ALERT_WEBHOOK = "alert.webhook", "Alert webhook changed"

    rollout = models.ForeignKey(
        Rollout, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries"
    )
    action = models.CharField(max_length=64, choices=Action.choices, db_index=True)
    actor = models.CharField(max_length=150, db_index=True)
    via = models.CharField(max_length=16, default="web", help_text="web, api, admin or system")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    revision = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["rollout", "-created_at"], name="audit_rollout_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("Audit entries are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit entries are append-only and cannot be deleted.")

    def changed_fields(self) -> list[tuple[str, object, object]]:
        keys = sorted(set(self.before) | set(self.after))
        return [
            (k, self.before.get(k), self.after.get(k))
            for k in keys
            if self.before.get(k) != self.after.get(k)
        ]


class ApiToken(models.Model):
    """A bearer token for the bot or chat-ops. Only its SHA-256 is stored."""

    class Scope(models.TextChoices):
        CONFIG_READ = "config:read", "config:read (decide, config, state, summary)"
        EVENTS_WRITE = "events:write", "events:write (send events)"
        ROLLOUT_OPERATE = "rollout:operate", "rollout:operate (change rollouts, rollback)"

    PREFIX = "sc_"

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(
        max_length=16, editable=False, help_text="First characters, to recognise it"
    )
    scopes = models.JSONField(default=list)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ChecklistTick(models.Model):
    """One item of the guide's testing checklist ticked for one phase of a rollout."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="checklist_ticks")
    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="checklist_ticks")
    item = models.CharField(max_length=64)
    checked_by = models.CharField(max_length=150)
    checked_at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["phase", "item"]
        constraints = [
            models.UniqueConstraint(fields=["phase", "item"], name="checklist_unique_item"),
        ]

    def __str__(self) -> str:
        return f"{self.phase}: {self.item} by {self.checked_by}"


# -- Fleet: which configuration each running bot serves (docs/fleet.md; rollout/fleet.py) ---------


class Instance(models.Model):
    """One running ``selcontrol_client`` (a bot process), as its last report described it.

    One row per process start (the client makes a fresh instance id each start); rows not seen
    for a while are hidden by the fleet panel and deleted by ``rollout.fleet.forget_instances``.
    """

    instance_id = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    client_version = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    token_name = models.CharField(max_length=100, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    revision = models.PositiveBigIntegerField(default=0)
    revision_since = models.DateTimeField(
        default=timezone.now, help_text="First report with the current revision."
    )
    config_source = models.CharField(max_length=16, blank=True)
    events = models.JSONField(default=dict, blank=True)
    last_sync_error = models.TextField(blank=True)
    reports = models.PositiveIntegerField(default=0)
    exposure_totals = models.JSONField(
        default=dict,
        blank=True,
        help_text="Cumulative decisions last reported, 'rule_revision|rollout|variant' -> count "
        "(the server adds the difference to ExposureCount, so a resent report counts once).",
    )

    class Meta:
        ordering = ["host", "pid", "instance_id"]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} ({self.instance_id})"


class InstanceAck(models.Model):
    """The first report of an instance serving a config revision: when the change reached it."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="acks")
    revision = models.PositiveBigIntegerField()
    acked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["instance", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "revision"], name="instance_ack_unique"),
        ]
        indexes = [models.Index(fields=["revision", "acked_at"], name="instance_ack_rev")]

    def __str__(self) -> str:
        return f"{self.instance_id} r{self.revision} at {self.acked_at:%H:%M:%S}"


class ExposureCount(models.Model):
    """Decisions per rollout, rule revision, variant and hour, summed over the fleet (upserted)."""

    rollout_key = models.CharField(max_length=64)
    rule_revision = models.PositiveBigIntegerField()
    variant = models.CharField(max_length=64)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_key", "rule_revision", "variant", "hour"],
                name="exposure_count_bucket",
            ),
        ]
        indexes = [models.Index(fields=["rollout_key", "hour"], name="exposure_rollout_hour")]

    def __str__(self) -> str:
        hour = f"{self.hour:%Y-%m-%d %H}h"
        return f"{self.rollout_key} r{self.rule_revision} {self.variant} {hour}: {self.count}"


class ChangeAck(models.Model):
    """When a change (an audit entry that moved the config revision) had reached every live
    instance. Audit entries are append-only, so this is kept beside them, written once."""

    audit_entry = models.OneToOneField(AuditEntry, on_delete=models.PROTECT, related_name="ack")
    all_acked_at = models.DateTimeField()
    seconds = models.FloatField(help_text="all_acked_at - the change's created_at")
    acked = models.PositiveIntegerField()
    live = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"change {self.audit_entry_id}: {self.acked}/{self.live} in {self.seconds:.1f} s"


class UnackedInstance(models.Model):
    """An instance that had not acknowledged a change within SELCONTROL_ACK_TIMEOUT_SECONDS,
    recorded once per (change, instance); ``alert_id`` is the guardrail alert sent for it."""

    audit_entry = models.ForeignKey(AuditEntry, on_delete=models.PROTECT, related_name="+")
    instance_id = models.CharField(max_length=100)
    host = models.CharField(max_length=255)
    revision = models.PositiveBigIntegerField(help_text="What the instance served when flagged.")
    flagged_at = models.DateTimeField(default=timezone.now)
    alert_id = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-flagged_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["audit_entry", "instance_id"], name="unacked_instance_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} missed change {self.audit_entry_id}"
