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
   dashboard (``hidden_weeks_notice``, called by metrics.views.parse_params for the page, the
   charts and their CSV/JSON) and the results page's rates table ask this module.

Pure reads; no writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Count, QuerySet

from rollout.roles import is_operator, is_reviewer

from .review_models import ReviewGrade, ReviewItem


def open_to(user) -> QuerySet[ReviewItem]:
    """Items the queue may still give ``user``: fewer saved grades than needed, none by them.
    Empty for users who cannot grade (viewers). Correlated subqueries, no join: safe to group
    and count over (metrics.reviews' own condition for the queue)."""
    from .reviews import _still_open

    if not is_reviewer(user):
        return ReviewItem.objects.none()
    return ReviewItem.objects.filter(*_still_open(user))


def visible_grades(grades: QuerySet[ReviewGrade], user) -> QuerySet[ReviewGrade]:
    """``grades`` without those of items still open to ``user`` (rule 1)."""
    if not is_reviewer(user):
        return grades
    return grades.exclude(item__in=open_to(user).values("pk"))


def hidden_grade_count(user, rollout_key: str = "") -> int:
    """How many saved grades ``visible_grades`` leaves out for ``user``."""
    if not is_reviewer(user):
        return 0
    grades = ReviewGrade.objects.filter(
        submitted_at__isnull=False, item__in=open_to(user).values("pk")
    )
    if rollout_key:
        grades = grades.filter(item__sample__rollout_key=rollout_key)
    return grades.count()


@dataclass(frozen=True)
class HiddenWeek:
    week_start: date
    sample_id: int
    open_items: int  # replies of the sample still open to the user


def hidden_weeks(user, rollout_key: str) -> list[HiddenWeek]:
    """Weeks of ``rollout_key`` whose per-version figures ``user`` may not see (rule 2),
    oldest first. Empty for operators and viewers."""
    if is_operator(user) or not is_reviewer(user):
        return []
    rows = (
        open_to(user)
        .filter(sample__rollout_key=rollout_key)
        .values("sample_id", "sample__week_start")
        .annotate(n=Count("id", distinct=True))
        .order_by("sample__week_start", "sample_id")
    )
    weeks: dict[date, HiddenWeek] = {}
    for row in rows:
        week = row["sample__week_start"]
        if week in weeks:
            prior = weeks[week]
            weeks[week] = HiddenWeek(week, prior.sample_id, prior.open_items + row["n"])
        else:
            weeks[week] = HiddenWeek(week, row["sample_id"], row["n"])
    return list(weeks.values())


def hidden_weeks_notice(user, rollout_key: str, since: datetime, until: datetime) -> str | None:
    """One sentence when [since, until) overlaps a week hidden from ``user``, else None."""
    from .reviews import week_bounds

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
