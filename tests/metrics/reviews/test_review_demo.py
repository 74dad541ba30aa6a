"""The quick start's review (make run): varied replies, three reviewer accounts, and last week's
sample partly graded twice so that double grading and kappa show (issue 16 item 12)."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command

from metrics import simulation
from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewGrade, ReviewSample

NOW = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)  # a Wednesday: last week is 9-16 March


@pytest.fixture
def demo(db, tmp_path, settings):
    settings.SELCONTROL_DEMO_TOKEN_FILE = str(tmp_path / "token")
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", stdout=StringIO())
        call_command(
            "simulate_traffic", "--demo", "--per-day", "150", "--channels", "60", stdout=StringIO()
        )
        out = StringIO()
        call_command("seed_demo_reviews", stdout=out)
    return out.getvalue()


def test_demo__three_reviewers_and_last_weeks_sample_of_varied_replies(demo):
    reviewers = User.objects.filter(groups__name="reviewers").values_list("username", flat=True)
    assert sorted(reviewers) == ["reviewer", "reviewer2", "reviewer3"]
    sample = ReviewSample.objects.get()
    assert sample.week_start.isoformat() == "2026-03-09"
    assert sample.origin_label == "Weekly, drawn by the demo seed"
    texts = set(sample.items.values_list("response__response_text", flat=True))
    assert sample.drawn == 50 and len(texts) >= 30  # was 8 distinct texts for 50 replies
    assert len(set(sample.items.values_list("response__user_text", flat=True))) >= 15


def test_demo_sample__double_graded_pairs_and_a_kappa(demo):
    sample = ReviewSample.objects.get()
    agreement = reviews.sample_agreement(sample)
    assert agreement["pairs"] >= 6 and agreement["hallucination_any"]["kappa"] is not None
    pairs = ReviewGrade.objects.filter(item__sample=sample, reviewer__username="reviewer3")
    assert pairs.count() == agreement["pairs"]
    assert f"{agreement['pairs']} double-graded pairs" in demo


def test_demo_sample__30_graded_by_the_simulated_truth__the_rest_left_for_reviewer(demo):
    grades = ReviewGrade.objects.filter(reviewer__username="reviewer2").select_related(
        "item__response"
    )
    table = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for g in grades:
        wrong = g.item.response.response_text in simulation.HALLUCINATED
        table[(wrong, g.hallucination != "none")] += 1
    assert grades.count() == 30 and table[(True, True)] + table[(True, False)] >= 3
    assert table[(True, True)] / (table[(True, True)] + table[(True, False)]) >= 0.75
    assert table[(False, False)] / (table[(False, False)] + table[(False, True)]) >= 0.75
    sample = ReviewSample.objects.get()
    progress = reviews.sample_progress(sample)
    assert progress["graded"] == 30 and progress["total"] == 50
    person = User.objects.get(username="reviewer")
    assert reviews.next_item(sample, person) is not None


def test_seed_demo_reviews__run_again__changes_nothing(demo):
    count = ReviewGrade.objects.count()
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("seed_demo_reviews", stdout=out)
    assert ReviewGrade.objects.count() == count and "0 demo grades saved" in out.getvalue()
    assert ReviewSample.objects.count() == 1
