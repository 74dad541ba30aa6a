"""Guardrails: rules per rollout and phase, their current state, alerts, and the post-deployment
review's decision. Evaluation is in metrics.guardrails.services (the pure part in
metrics.guardrails.rules); see docs/guardrails.md."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from . import rules as g


class GuardrailRule(models.Model):
    """One rollback trigger of the guide, watched every minute from ``from_phase`` on."""

    class Metric(models.TextChoices):
        ERROR_RATE = g.ERROR_RATE, "Error rate of v2 above v1"
        NEGATIVE_REACTIONS = (
            g.NEGATIVE_REACTIONS,
            "Negative-reaction rate of v2 up more than the margin",
        )
        CORRECTIONS = g.CORRECTIONS, "Correction rate of v2 up more than the margin"
        HALLUCINATIONS = g.HALLUCINATIONS, "Hallucination rate of v2 (reviews) above v1"
        LATENCY_P95 = g.LATENCY_P95, "p95 latency of v2 above v1 by a factor"
        DAILY_COST = g.DAILY_COST, "Daily cost at 100% v2 above a budget"
        CRASH = g.CRASH, "Crash guard: error rate of v2's last hour of replies above a rate"

    class Action(models.TextChoices):
        ALERT = "alert", "Alert only"
        ROLLBACK_PHASE = "rollback_phase", "Alert and step back one phase (gradual rollback)"
        KILL_SWITCH = "kill_switch", "Alert and engage the kill switch (emergency rollback)"

    rollout = models.ForeignKey(
        "rollout.Rollout", on_delete=models.CASCADE, related_name="guardrail_rules"
    )
    key = models.SlugField(
        max_length=64, help_text="Short name, e.g. error-rate; used as the actor guardrail:<key>"
    )
    metric = models.CharField(max_length=32, choices=Metric.choices)
    from_phase = models.ForeignKey(
        "rollout.Phase",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Watched in this phase and every later one; empty: every phase.",
    )
    enabled = models.BooleanField(default=True)
    threshold = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0)],
        help_text="Rates: relative margin (0.10 = up more than 10%; 0 = above v1). "
        "Latency: factor (1.5). Cost: dollars per day. Crash guard: absolute error rate (0.10).",
    )
    min_samples = models.PositiveIntegerField(
        default=200,
        help_text="Replies per variant (reviews for hallucinations) before it may judge; "
        "for the crash guard, the errors needed.",
    )
    alpha = models.FloatField(
        default=g.DEFAULT_ALPHA,
        validators=[MinValueValidator(0.0001), MaxValueValidator(0.5)],
        help_text="False-alarm rate allowed per phase (always-valid sequential test).",
    )
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.ALERT)
    note = models.CharField(max_length=300, blank=True, help_text="The guide's wording, or why")
    reset_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Evidence before this time is ignored (set when the rule changes).",
    )
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rollout", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "key"], name="guardrail_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.rollout.key}: {self.key}"

    def spec(self) -> g.RuleSpec:
        return g.RuleSpec(
            metric=self.metric,
            threshold=self.threshold,
            min_samples=self.min_samples,
            alpha=self.alpha,
        )

    def describe(self) -> str:
        """The rule in one line, e.g. 'correction rate of v2 up more than 10% relative'."""
        label = g.METRIC_LABELS.get(self.metric, self.metric)
        if self.metric == g.LATENCY_P95:
            return f"p95 latency of v2 above {self.threshold:g}x v1's"
        if self.metric == g.DAILY_COST:
            return f"daily cost at 100% v2 above ${self.threshold:,.2f}"
        if self.metric == g.CRASH:
            return (
                f"error rate of v2's first replies or of its last {g.CRASH_LOOKBACK_MINUTES} "
                f"minutes of replies above {self.threshold * 100:g}% (or v1's), from "
                f"{self.min_samples} errors"
            )
        if self.threshold:
            return f"{label} of v2 up more than {self.threshold * 100:g}% relative to v1"
        return f"{label} of v2 above v1's"

    def applies_in(self, phase) -> bool:
        if not self.enabled or phase is None:
            return False
        return self.from_phase is None or phase.order >= self.from_phase.order


class GuardrailState(models.Model):
    """A rule's latest evaluation: status and the numbers behind it, over its evidence window."""

    rule = models.OneToOneField(GuardrailRule, on_delete=models.CASCADE, related_name="state")
    status = models.CharField(max_length=16, default=g.OFF)
    summary = models.TextField(blank=True)
    numbers = models.JSONField(default=dict, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    p_min = models.JSONField(
        default=dict, blank=True, help_text="Running always-valid p per variant"
    )
    breached_at = models.DateTimeField(null=True, blank=True)
    acted_at = models.DateTimeField(
        null=True, blank=True, help_text="When its action ran in this window"
    )
    action_taken = models.CharField(max_length=300, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.rule}: {self.status}"

    @property
    def status_label(self) -> str:
        return g.STATUS_LABELS.get(self.status, self.status)


class GuardrailTransition(models.Model):
    """A change of a rule's status (the history; evaluations that change nothing are not kept)."""

    rule = models.ForeignKey(GuardrailRule, on_delete=models.CASCADE, related_name="transitions")
    status_from = models.CharField(max_length=16)
    status_to = models.CharField(max_length=16)
    summary = models.TextField(blank=True)
    numbers = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.rule}: {self.status_from} -> {self.status_to} at {self.at:%Y-%m-%d %H:%M}"


class AlertSettings(models.Model):
    """Where a rollout's alerts go. Without a URL here, SELCONTROL_ALERT_WEBHOOK_URL is used."""

    class Kind(models.TextChoices):
        DISCORD = "discord", "Discord webhook"
        SLACK = "slack", "Slack incoming webhook"

    rollout = models.OneToOneField(
        "rollout.Rollout", on_delete=models.CASCADE, related_name="alert_settings"
    )
    webhook_url = models.URLField(max_length=500, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DISCORD)
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"alerts of {self.rollout.key}"


class Alert(models.Model):
    """A breach told to people: shown on the console, sent to the webhook after the commit."""

    class Delivery(models.TextChoices):
        PENDING = "pending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        NOT_CONFIGURED = "not_configured", "No webhook configured"

    rollout = models.ForeignKey("rollout.Rollout", on_delete=models.CASCADE, related_name="alerts")
    rule = models.ForeignKey(
        GuardrailRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    title = models.CharField(max_length=200)
    message = models.TextField()
    numbers = models.JSONField(default=dict, blank=True)
    action_taken = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rollout.key}: {self.title}"


class DeploymentDecision(models.Model):
    """The post-deployment review's decision, with who and why, and the figures it saw."""

    class Decision(models.TextChoices):
        SUCCESS = "success", "Success: make v2 permanent, retire v1"
        PARTIAL = "partial", "Partial success: iterate, plan v3"
        FAILURE = "failure", "Failure: revert to v1, document lessons"

    rollout = models.ForeignKey(
        "rollout.Rollout", on_delete=models.PROTECT, related_name="deployment_decisions"
    )
    decision = models.CharField(max_length=16, choices=Decision.choices)
    reason = models.TextField()
    decided_by = models.CharField(max_length=150)
    decided_at = models.DateTimeField(default=timezone.now)
    report = models.JSONField(
        default=dict, blank=True, help_text="The report's figures when decided"
    )

    class Meta:
        ordering = ["-decided_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rollout.key}: {self.decision} by {self.decided_by}"
