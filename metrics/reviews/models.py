"""Human review of bot replies: weekly samples, the items in them and the reviewers' grades.

A ``ReviewSample`` is one draw (metrics.reviews.sampling's rule, a recorded seed, the window and
the cut-off of what had arrived), a ``ReviewItem`` one reply in it (a reply is in at most one
sample, ever: the unique ``response``), a ``ReviewGrade`` one reviewer's rubric for one item
(a draft until ``submitted_at`` is set; unique per item and reviewer, so saving is idempotent).
Items are held by one reviewer at a time with a lease (``held_by`` / ``held_until``), taken
with a conditional UPDATE in metrics.reviews.services. See docs/reviews.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ReviewSample(models.Model):
    class Kind(models.TextChoices):
        SCHEDULED = "scheduled", "Weekly"
        ON_DEMAND = "on_demand", "On demand"

    class Origin(models.TextChoices):
        BEAT = "beat", "Celery beat"
        COMMAND = "command", "manage.py draw_review_sample"
        CONSOLE = "console", "the console"
        DEMO = "demo", "the demo seed"

    rollout_key = models.CharField(max_length=64)
    week_start = models.DateField(help_text="Monday (UTC) of the week the replies were sent")
    since = models.DateTimeField()
    until = models.DateTimeField()
    cutoff = models.DateTimeField(help_text="Replies received after this are not candidates")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    origin = models.CharField(
        max_length=16,
        choices=Origin.choices,
        default=Origin.CONSOLE,
        help_text="What drew it: the beat entry, the management command, or a person",
    )
    rule = models.CharField(max_length=64, help_text="Name and version of the sampling rule")
    seed = models.BigIntegerField()
    requested = models.PositiveIntegerField()
    drawn = models.PositiveIntegerField(default=0)
    shortfall = models.PositiveIntegerField(default=0)
    double_share = models.FloatField(default=0.0)
    allocation = models.JSONField(
        default=dict, blank=True, help_text="{variant: {available, target, drawn, days, channels}}"
    )
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-week_start", "-id"]
        constraints = [
            # the weekly beat entry draws at most one scheduled sample per rollout and week
            models.UniqueConstraint(
                fields=["rollout_key", "week_start"],
                condition=models.Q(kind="scheduled"),
                name="review_one_scheduled_per_week",
            ),
        ]

    def __str__(self) -> str:
        return f"review sample {self.pk} {self.rollout_key} week of {self.week_start}"

    @property
    def origin_label(self) -> str:
        """How the sample came to be, by its real origin: "Weekly, drawn by Celery beat",
        "On demand, drawn by manage.py draw_review_sample", "On demand, drawn in the console"."""
        return f"{self.get_kind_display()}, drawn by {self.get_origin_display()}"


class ReviewItem(models.Model):
    sample = models.ForeignKey(ReviewSample, on_delete=models.CASCADE, related_name="items")
    response = models.OneToOneField(
        "metrics.ResponseEvent", on_delete=models.PROTECT, related_name="review_item"
    )
    position = models.PositiveIntegerField(
        help_text="Queue order (shuffled: says nothing of the variant)"
    )
    grades_needed = models.PositiveSmallIntegerField(default=1, help_text="2 when double graded")
    held_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    held_until = models.DateTimeField(null=True, blank=True)
    hold_token = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["sample", "position"]
        constraints = [
            models.UniqueConstraint(fields=["sample", "position"], name="review_item_position"),
        ]

    def __str__(self) -> str:
        return f"review item {self.pk} (sample {self.sample_id} #{self.position})"


class ReviewGrade(models.Model):
    class Hallucination(models.TextChoices):
        NONE = "none", "None"
        MINOR = "minor", "Minor"
        MAJOR = "major", "Major"

    class Format(models.TextChoices):
        FOLLOWED = "followed", "Followed"
        NOT_FOLLOWED = "not_followed", "Not followed"
        NA = "na", "Not applicable"

    class Uncertainty(models.TextChoices):
        APPROPRIATE = "appropriate", "Appropriate"
        OVERCONFIDENT = "overconfident", "Overconfident"
        OVERCAUTIOUS = "overcautious", "Overcautious"
        NA = "na", "Not applicable"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="grades")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    hallucination = models.CharField(max_length=8, choices=Hallucination.choices, blank=True)
    hallucination_note = models.TextField(blank=True)
    format = models.CharField(max_length=16, choices=Format.choices, blank=True)
    uncertainty = models.CharField(max_length=16, choices=Uncertainty.choices, blank=True)
    consistent = models.BooleanField(null=True, blank=True)
    sounds_like_sel = models.PositiveSmallIntegerField(null=True, blank=True)
    note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True, help_text="Empty while a draft")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["item", "submitted_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "reviewer"], name="review_grade_once_per_reviewer"
            ),
            models.CheckConstraint(
                condition=models.Q(sounds_like_sel__isnull=True)
                | models.Q(sounds_like_sel__gte=1, sounds_like_sel__lte=5),
                name="review_sel_1_to_5",
            ),
        ]
        indexes = [models.Index(fields=["submitted_at"], name="review_grade_submitted")]

    def __str__(self) -> str:
        state = "saved" if self.submitted_at else "draft"
        return f"grade of item {self.item_id} by {self.reviewer_id} ({state})"
