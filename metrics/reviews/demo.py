"""The quick start's review: last week's sample, partly graded by two demo reviewers.

``make run`` (scripts/run) calls ``manage.py seed_demo_reviews`` after the simulated traffic:
last week's sample is drawn as the Monday beat entry would (one per week, 40% double graded so
that agreement has pairs to show), then ``reviewer2`` gives the first grade of 30 replies and
``reviewer3`` the second grade of the double-graded ones among them, through the same services
as the queue (``next_item``, ``submit_grade``). The rest is left for a person signed in as
``reviewer``. The demo graders grade by the simulated truth (metrics.simulation.HALLUCINATED:
which replies state something wrong) and, like people, sometimes miss or over-call one, so the
sample page has a kappa to read. Idempotent: a sample that has grades is left as it is.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model

from .. import simulation
from . import services as reviews
from .models import ReviewItem, ReviewSample

GRADERS = ("reviewer2", "reviewer3")
FIRST_GRADES = 30
DOUBLE_SHARE = 0.4
SLIP = 0.12  # how often a demo grader misjudges a reply's hallucination


class MissingGraders(Exception):
    """The demo reviewer accounts do not exist (seed_demo creates them)."""


def demo_grade(item: ReviewItem, username: str) -> dict[str, Any]:
    """The rubric a demo grader gives the item: the simulated truth, with the odd slip."""
    reply = item.response
    rng = random.Random(f"{reply.event_id}:{username}")
    truth = simulation.HALLUCINATED.get(reply.response_text, "none")
    verdict = truth
    if rng.random() < SLIP:
        verdict = {"none": "minor", "minor": "none", "major": "minor"}[truth]
    wrong = verdict != "none"
    note = ""
    if wrong:
        note = (
            f"States as fact: {reply.response_text[:80]}"
            if truth != "none"
            else "Not sure this is right; I could not confirm it."
        )
    return {
        "hallucination": verdict,
        "hallucination_note": note,
        "format": rng.choices(["followed", "not_followed", "na"], [0.85, 0.1, 0.05])[0],
        "uncertainty": (
            "overconfident"
            if wrong and rng.random() < 0.7
            else rng.choices(["appropriate", "overcautious", "na"], [0.85, 0.1, 0.05])[0]
        ),
        "consistent": "yes" if rng.random() < 0.92 else "no",
        "sounds_like_sel": str(rng.choice([2, 3, 3]) if wrong else rng.choice([3, 4, 4, 5])),
    }


def seed(*, rollout_key: str, now: datetime | None = None) -> tuple[ReviewSample, int]:
    """Last week's sample of ``rollout_key`` and how many demo grades were saved now (0 when it
    had grades already)."""
    from rollout.services import Actor

    users = {u.username: u for u in get_user_model().objects.filter(username__in=GRADERS)}
    if len(users) < len(GRADERS):
        raise MissingGraders(
            f"The demo reviewers {', '.join(GRADERS)} do not exist; run manage.py seed_demo first."
        )
    week = reviews.previous_week(now)
    sample = reviews.draw_sample(
        rollout_key=rollout_key,
        week_start=week,
        seed=int(week.strftime("%Y%m%d")),  # the same demo sample for the same week
        kind=ReviewSample.Kind.SCHEDULED,
        origin=ReviewSample.Origin.DEMO,
        double_share=DOUBLE_SHARE,
        actor=Actor("seed_demo", via="system"),
        reason="Demo: last week's review sample",
        now=now,
    )
    if sample.items.filter(grades__submitted_at__isnull=False).exists():
        return sample, 0
    first, second = (users[name] for name in GRADERS)
    saved = 0
    for _ in range(FIRST_GRADES):
        item = reviews.next_item(sample, first, now=now)
        if item is None:
            break
        reviews.submit_grade(item, first, demo_grade(item, first.username), now=now)
        saved += 1
    while (item := reviews.next_item(sample, second, now=now)) is not None:
        if not item.grades.filter(submitted_at__isnull=False).exists():
            reviews.release_hold(item, second)  # a first grade: left for a person
            break
        reviews.submit_grade(item, second, demo_grade(item, second.username), now=now)
        saved += 1
    return sample, saved
