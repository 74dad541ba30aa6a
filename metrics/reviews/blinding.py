"""What a grader may not see yet: the blind review's rules for every page outside the queue.

Two rules (docs/reviews.md, "Blind"):

1. **Item level, every grader.** An item is *open to* a user who can grade (reviewers and
   operators) while it still needs a grade and they have not saved one of it: the queue may
   still give it to them. Nothing shows an item open to a user with its version or another
   reviewer's grade: the results list leaves such replies out (``open_to``, ``visible_grades``).
2. **Week level, reviewers.** A reviewer (not an operator: operators run the rollout on the
   per-version figures, so their grades are not blind anyway) does not see per-version figures
   of a week whose sample has replies open to them: a reply's content can date it, and a
   quiet bot's hourly chart, or the first grades per version, then give its version away. The
   dashboard (``hidden_weeks_notice``, called by metrics.dashboard.views.parse_params for the page,
   the charts and their CSV/JSON) and the results page's rates table ask this module.

Pure reads; no writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from rollout.roles import is_operator, is_reviewer

from .models import ReviewGrade, ReviewItem


def open_to(user) -> QuerySet[ReviewItem]:
    """Items the queue may still give ``user``: fewer saved grades than needed, none by them.
    Empty for users who cannot grade (viewers). Correlated subqueries, no join: safe to group
    and count over (metrics.reviews.services' own condition for the queue)."""
    from .services import _still_open

    if not is_reviewer(user):
        return ReviewItem.objects.none()
    return ReviewItem.objects.filter(*_still_open(user))


def visible_grades(grades: QuerySet[ReviewGrade], user) -> QuerySet[ReviewGrade]:
    """``grades`` without those of items still open to ``user`` (rule 1) and, for a reviewer,
    without the others of a week they are grading (rule 2: a list of that week's graded replies
    with their versions and send times is per-version figures of the week too); replies they
    graded themselves stay."""
    if not is_reviewer(user):
        return grades
    grades = grades.exclude(item__in=open_to(user).values("pk"))
    graded_by_user = Exists(
        ReviewGrade.objects.filter(item=OuterRef("item"), reviewer=user, submitted_at__isnull=False)
    )
    hidden = Q()
    for week in hidden_weeks(user):
        hidden |= Q(
            item__sample__rollout_key=week.rollout_key, item__sample__week_start=week.week_start
        )
    # replies the user graded stay: saving showed them the version already
    return grades.exclude(hidden & ~graded_by_user) if hidden else grades


def hidden_grade_count(user) -> int:
    """How many saved grades ``visible_grades`` leaves out for ``user``."""
    if not is_reviewer(user):
        return 0
    saved = ReviewGrade.objects.filter(submitted_at__isnull=False)
    return saved.count() - visible_grades(saved, user).count()


@dataclass(frozen=True)
class HiddenWeek:
    rollout_key: str
    week_start: date
    sample_id: int
    open_items: int  # replies of the week's samples still open to the user


def hidden_weeks(user, rollout_key: str | None = None) -> list[HiddenWeek]:
    """Weeks (of ``rollout_key``, or of every rollout) whose per-version figures ``user`` may
    not see (rule 2), oldest first. Empty for operators and viewers."""
    if is_operator(user) or not is_reviewer(user):
        return []
    items = open_to(user)
    if rollout_key is not None:
        items = items.filter(sample__rollout_key=rollout_key)
    rows = (
        items.values("sample_id", "sample__rollout_key", "sample__week_start")
        .annotate(n=Count("id"))
        .order_by("sample__week_start", "sample_id")
    )
    weeks: dict[tuple[str, date], HiddenWeek] = {}
    for row in rows:
        key = (row["sample__rollout_key"], row["sample__week_start"])
        prior = weeks.get(key)
        weeks[key] = HiddenWeek(
            key[0],
            key[1],
            prior.sample_id if prior else row["sample_id"],
            (prior.open_items if prior else 0) + row["n"],
        )
    return list(weeks.values())


def hidden_weeks_notice(user, rollout_key: str, since: datetime, until: datetime) -> str | None:
    """One sentence when [since, until) overlaps a week hidden from ``user``, else None."""
    from .services import week_bounds

    for week in hidden_weeks(user, rollout_key):
        start, end = week_bounds(week.week_start)
        if start < until and since < end:
            return (
                f"Per-version figures of the week of {week.week_start:%-d %b %Y} are hidden from "
                f"you while you review it: sample {week.sample_id} has {week.open_items} "
                f"repl{'y' if week.open_items == 1 else 'ies'} you may still grade, blind. "
                f"Choose a range that ends before {start:%-d %b} or starts on {end:%-d %b} or "
                "later, or come back when the sample is complete."
            )
    return None


def is_hidden_week(user, rollout_key: str, week: date) -> bool:
    return any(h.week_start == week for h in hidden_weeks(user, rollout_key))
