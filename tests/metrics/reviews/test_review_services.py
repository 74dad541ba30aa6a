"""Review services on PostgreSQL: drawing samples, holds, grades, figures."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from metrics import selectors
from metrics.models import ResponseEvent
from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewGrade, ReviewItem, ReviewSample
from rollout.models import AuditEntry
from tests.conftest import SYSTEM, make_user
from tests.metrics.review_data import GOOD, WEEK, reply, store_week

pytestmark = pytest.mark.django_db


def draw(**kwargs) -> ReviewSample:
    options = {
        "rollout_key": "prompts_v2",
        "week_start": WEEK,
        "actor": SYSTEM,
        "size": 10,
        "double_share": 0.0,
    }
    options.update(kwargs)
    return reviews.draw_sample(**options)


def variants_of(sample: ReviewSample) -> Counter:
    return Counter(sample.items.values_list("response__variant", flat=True))


def test_draw_sample__records_seed_rule_and_audit_row(rollout):
    store_week({"v1": 30, "v2_full": 30})
    sample = draw(seed=42, reason="first look")
    assert (sample.seed, sample.rule, sample.drawn, sample.shortfall) == (
        42,
        "equal-variant/day/channel v1",
        10,
        0,
    )
    entry = AuditEntry.objects.get(action="review.sample")
    assert entry.after["seed"] == 42 and entry.reason == "first look" and entry.rollout == rollout


def test_draw_sample__skewed_traffic__equal_share_per_variant():
    store_week({"v1": 60, "v2_full": 4, "v2_simplified": 6})
    sample = draw(size=12)
    assert variants_of(sample) == {"v1": 4, "v2_full": 4, "v2_simplified": 4}


def test_draw_sample__replies_without_text__are_not_candidates():
    store_week({"v1": 5}, text=False)
    store_week({"v1": 3}, start=100)
    sample = draw(size=10)
    assert sample.drawn == 3 and sample.shortfall == 7


def test_draw_sample__additional_draw__never_repeats_a_reply():
    store_week({"v1": 12, "v2_full": 12})
    first = draw(size=16)
    second = draw(size=16, additional=True, reason="more replies")
    firsts = set(first.items.values_list("response_id", flat=True))
    seconds = set(second.items.values_list("response_id", flat=True))
    assert not firsts & seconds
    assert len(firsts | seconds) == 24 and second.shortfall == 8


def test_reproduce__same_seed_and_cutoff__gives_the_same_items_in_order():
    store_week({"v1": 40, "v2_full": 40})
    earlier = draw(size=10)
    sample = draw(size=20, additional=True, reason="more replies")
    store_week({"v1": 10}, start=500)  # arrived after the draw: not candidates on reproduction
    assert reviews.reproduce(sample) == reviews.sample_response_ids(sample)
    assert reviews.reproduce(earlier) == reviews.sample_response_ids(earlier)


def test_draw_sample__scheduled_twice__returns_the_first():
    store_week({"v1": 10})
    first = draw(kind=ReviewSample.Kind.SCHEDULED)
    assert draw(kind=ReviewSample.Kind.SCHEDULED).pk == first.pk
    assert ReviewSample.objects.count() == 1


def test_draw_sample__not_a_monday__is_refused():
    with pytest.raises(reviews.ReviewError, match="week_start must be a Monday"):
        draw(week_start=WEEK + timedelta(days=1))


def test_weekly_task__draws_last_weeks_sample_once(rollout, settings):
    from metrics.tasks import draw_weekly_review_sample

    settings.SELCONTROL_REVIEW_SAMPLE_SIZE = 6
    monday_after = datetime.combine(
        WEEK + timedelta(days=7), datetime.min.time(), tzinfo=UTC
    ) + timedelta(minutes=10)
    with time_machine.travel(monday_after - timedelta(hours=1), tick=False):
        store_week({"v1": 10, "v2_full": 10})  # received before the draw
    with time_machine.travel(monday_after, tick=False):
        draw_weekly_review_sample.apply()
        draw_weekly_review_sample.apply()
    sample = ReviewSample.objects.get()
    assert (sample.week_start, sample.kind, sample.drawn) == (WEEK, "scheduled", 6)


def test_draw_command__prints_the_sample_and_verifies_it(capsys):
    store_week({"v1": 10, "v2_full": 10})
    call_command("draw_review_sample", "--week", WEEK.isoformat(), "--size", "8", "--seed", "7")
    sample = ReviewSample.objects.get()
    call_command("draw_review_sample", "--verify", str(sample.pk))
    out = capsys.readouterr().out
    assert f"sample {sample.pk}" in out and "seed 7" in out and "reproduced: yes" in out


# --- holds ---------------------------------------------------------------------------------------


@pytest.fixture
def dave(db):
    return make_user("dave", "reviewers")


def test_next_item__two_reviewers__get_different_items(bob, dave):
    store_week({"v1": 5, "v2_full": 5})
    sample = draw(size=4)
    assert reviews.next_item(sample, bob).pk != reviews.next_item(sample, dave).pk


def test_next_item__asked_again__gives_the_held_item(bob):
    store_week({"v1": 5})
    sample = draw(size=4)
    assert reviews.next_item(sample, bob).pk == reviews.next_item(sample, bob).pk


def test_next_item__lease_expired__another_reviewer_takes_it(bob, dave):
    store_week({"v1": 1})
    sample = draw(size=1)
    held = reviews.next_item(sample, bob)
    assert reviews.next_item(sample, dave) is None
    later = held.held_until + timedelta(seconds=1)
    assert reviews.next_item(sample, dave, now=later).pk == held.pk


def test_release_hold__stale_token__keeps_the_hold(bob):
    store_week({"v1": 2})
    sample = draw(size=2)
    first = reviews.next_item(sample, bob)
    again = reviews.next_item(sample, bob)  # a reload: a new token
    assert not reviews.release_hold(first, bob, token=first.hold_token)
    assert reviews.release_hold(again, bob, token=again.hold_token)
    assert ReviewItem.objects.get(pk=again.pk).held_by is None


def test_next_item__a_draft_left_behind__comes_back_first(bob):
    store_week({"v1": 5})
    sample = draw(size=5)
    item = reviews.next_item(sample, bob)
    reviews.save_draft(item, bob, {"hallucination": "minor"})
    reviews.release_hold(item, bob)
    assert reviews.next_item(sample, bob).pk == item.pk


@pytest.mark.django_db(transaction=True)
def test_next_item__two_reviewers_at_once_on_threads__never_share_an_item():
    bob = make_user("bob", "reviewers")
    dave = make_user("dave", "reviewers")
    store_week({"v1": 8, "v2_full": 8})
    sample = draw(size=8)
    got: dict[str, list[int]] = {"bob": [], "dave": []}
    barrier = threading.Barrier(2)

    def work(user, name):
        try:
            for _ in range(4):
                barrier.wait(timeout=10)
                item = reviews.next_item(sample, user)
                got[name].append(item.pk)
                reviews.submit_grade(item, user, GOOD)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(u, n)) for u, n in ((bob, "bob"), (dave, "dave"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got["bob"]) == len(got["dave"]) == 4
    assert not set(got["bob"]) & set(got["dave"])
    assert ReviewGrade.objects.filter(submitted_at__isnull=False).count() == 8


# --- grades --------------------------------------------------------------------------------------


def test_submit_grade__twice__keeps_one_row(bob):
    store_week({"v1": 2})
    item = reviews.next_item(draw(size=2), bob)
    reviews.submit_grade(item, bob, GOOD)
    again = reviews.submit_grade(item, bob, GOOD)
    assert not again.changed
    assert ReviewGrade.objects.count() == 1


def test_submit_grade__missing_grades__names_them(bob):
    store_week({"v1": 2})
    item = reviews.next_item(draw(size=2), bob)
    with pytest.raises(reviews.ReviewError) as caught:
        reviews.submit_grade(item, bob, {"hallucination": "major"})
    assert set(caught.value.errors) == {
        "format",
        "uncertainty",
        "consistent",
        "sounds_like_sel",
        "hallucination_note",
    }
    assert not ReviewGrade.objects.filter(submitted_at__isnull=False).exists()


def test_submit_grade__held_by_another__is_409(bob, dave):
    store_week({"v1": 1})
    sample = draw(size=1)
    item = reviews.next_item(sample, bob)
    with pytest.raises(reviews.HeldByOther):
        reviews.submit_grade(item, dave, GOOD)


def test_submit_grade__single_item_already_graded__is_409_and_keeps_the_grade(bob, dave):
    store_week({"v1": 1})
    item = reviews.next_item(draw(size=1), bob)
    reviews.submit_grade(item, bob, GOOD)
    with pytest.raises(reviews.NotYours):
        reviews.submit_grade(
            item, dave, {**GOOD, "hallucination": "major", "hallucination_note": "x"}
        )
    assert list(ReviewGrade.objects.values_list("reviewer__username", "hallucination")) == [
        ("bob", "none")
    ]


def test_save_draft__then_reload__shows_the_draft(bob):
    store_week({"v1": 1})
    item = reviews.next_item(draw(size=1), bob)
    reviews.save_draft(
        item, bob, {"hallucination": "minor", "note": "half done", "format": "bogus"}
    )
    grade = ReviewGrade.objects.get()
    assert reviews.grade_form_values(grade)["hallucination"] == "minor"
    assert grade.note == "half done" and grade.format == "" and grade.submitted_at is None


def test_double_graded_item__second_reviewer__gets_it_after_the_first(bob, dave):
    store_week({"v1": 1})
    sample = draw(size=1, double_share=1.0)
    item = reviews.next_item(sample, bob)
    reviews.submit_grade(item, bob, GOOD)
    assert reviews.next_item(sample, bob) is None
    assert reviews.next_item(sample, dave).pk == item.pk


def test_sample_agreement__double_grades__kappa_on_hallucination(bob, dave):
    store_week({"v1": 4, "v2_full": 4})
    sample = draw(size=4, double_share=1.0)
    verdicts = {
        "bob": ["none", "none", "major", "minor"],
        "dave": ["none", "minor", "major", "minor"],
    }
    for user in (bob, dave):
        for verdict in verdicts[user.username]:
            item = reviews.next_item(sample, user)
            note = "" if verdict == "none" else "wrong date"
            reviews.submit_grade(
                item, user, {**GOOD, "hallucination": verdict, "hallucination_note": note}
            )
    agreement = reviews.sample_agreement(sample)
    assert agreement["pairs"] == 4
    # p_o = 3/4; bob none2 minor1 major1, dave none1 minor2 major1: p_e = (2+2+1)/16
    assert agreement["hallucination"]["kappa"] == pytest.approx(
        (0.75 - 5 / 16) / (1 - 5 / 16), abs=1e-3
    )


# --- figures -------------------------------------------------------------------------------------


def grade_all(sample, user, verdicts):
    for verdict in verdicts:
        item = reviews.next_item(sample, user)
        note = "" if verdict == "none" else "made it up"
        reviews.submit_grade(
            item,
            user,
            {
                **GOOD,
                "hallucination": verdict,
                "hallucination_note": note,
                "format": "na" if verdict == "major" else "followed",
            },
        )


def test_review_counts__graded_replies__count_minor_and_major_as_hallucinations(bob):
    store_week({"v1": 3})
    grade_all(draw(size=3), bob, ["none", "minor", "major"])
    since = datetime.combine(WEEK, datetime.min.time(), tzinfo=UTC)
    assert selectors.review_counts("prompts_v2", since, since + timedelta(days=7)) == {
        "v1": {"graded": 3, "hallucinations": 2}
    }


def test_summary_api__reviews__show_the_grades(bob, reader):
    store_week({"v1": 2, "v2_full": 2})
    sample = draw(size=4)
    for _ in range(4):
        item = reviews.next_item(sample, bob)
        bad = item.response.variant == "v2_full"
        reviews.submit_grade(
            item,
            bob,
            {
                **GOOD,
                "hallucination": "major" if bad else "none",
                "hallucination_note": "x" if bad else "",
            },
        )
    body = reader.get(
        "/api/v1/rollouts/prompts_v2/summary",
        since="2026-03-02T00:00:00Z",
        until="2026-03-09T00:00:00Z",
    ).json()
    assert body["variants"]["v1"]["reviews"] == {"graded": 2, "hallucinations": 0}
    assert body["variants"]["v2_full"]["reviews"] == {"graded": 2, "hallucinations": 2}


def test_weekly_review_rates__rates_and_interval_per_week_and_variant(bob):
    store_week({"v1": 4})
    grade_all(draw(size=4), bob, ["none", "none", "minor", "major"])
    since = datetime.combine(WEEK, datetime.min.time(), tzinfo=UTC)
    [row] = reviews.weekly_review_rates("prompts_v2", since, since + timedelta(days=7))
    assert (
        row["week"],
        row["variant"],
        row["graded"],
        row["hallucinations"],
        row["minor"],
        row["major"],
    ) == (WEEK, "v1", 4, 2, 1, 1)
    assert (row["format_followed"], row["format_applicable"]) == (3, 3)
    assert (
        row["hallucination_rate"] == 0.5
        and row["hallucination_ci"][0] < 0.5 < row["hallucination_ci"][1]
    )


def test_review_counts__double_graded__counts_the_first_grade_once(bob, dave):
    store_week({"v1": 1})
    sample = draw(size=1, double_share=1.0)
    reviews.submit_grade(reviews.next_item(sample, bob), bob, GOOD)
    reviews.submit_grade(
        reviews.next_item(sample, dave),
        dave,
        {**GOOD, "hallucination": "major", "hallucination_note": "x"},
    )
    since = datetime.combine(WEEK, datetime.min.time(), tzinfo=UTC)
    assert reviews.review_counts("prompts_v2", since, since + timedelta(days=7)) == {
        "v1": {"graded": 1, "hallucinations": 0}
    }


def test_conversation_before__shows_the_earlier_exchanges(bob):
    from metrics.ingest.intake import record_events

    record_events(
        [reply(n, conversation="conv-1", hour=10 + n) for n in range(1, 6)],
        now=datetime(2026, 3, 20, tzinfo=UTC),
    )
    last = ResponseEvent.objects.get(event_id="rv-prompts_v2-5")
    assert [r.event_id for r in reviews.conversation_before(last)] == [
        "rv-prompts_v2-2",
        "rv-prompts_v2-3",
        "rv-prompts_v2-4",
    ]


def test_beat_schedule__weekly_review_entry__monday_0010_utc_with_expiry():
    from celery.schedules import crontab

    from selcontrol.celery import app

    entry = app.conf.beat_schedule["metrics-weekly-review-sample"]
    assert entry["task"] == "metrics.tasks.draw_weekly_review_sample"
    assert entry["schedule"] == crontab(minute=10, hour=0, day_of_week="mon")
    assert entry["options"]["expires"] > 0


def test_next_item__draft_on_a_double_item_another_saved__still_comes_back(bob, dave):
    store_week({"v1": 1})
    sample = draw(size=1, double_share=1.0)
    item = reviews.next_item(sample, bob)
    reviews.save_draft(item, bob, {"hallucination": "none"})
    reviews.release_hold(item, bob)
    reviews.submit_grade(reviews.next_item(sample, dave), dave, GOOD)
    assert reviews.next_item(sample, bob).pk == item.pk


def test_claim__item_fully_graded_meanwhile__is_not_held_again(bob, dave):
    store_week({"v1": 1})
    sample = draw(size=1)
    item = reviews.next_item(sample, bob)
    later = item.held_until + timedelta(seconds=1)
    reviews.submit_grade(reviews.next_item(sample, dave, now=later), dave, GOOD, now=later)
    assert not reviews.renew_hold(item, bob, now=later)
    assert reviews.next_item(sample, bob, now=later) is None
