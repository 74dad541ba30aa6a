"""Review pages: permissions, the blind queue, saving with htmx, the results list."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewGrade, ReviewItem, ReviewSample
from tests.conftest import SYSTEM
from tests.metrics.review_data import GOOD, WEEK, store_week

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def sample(db) -> ReviewSample:
    store_week({"v1": 3, "v2_full": 3, "v2_simplified": 3})
    return reviews.draw_sample(
        rollout_key="prompts_v2", week_start=WEEK, actor=SYSTEM, size=6, double_share=0
    )


def test_queue__viewer__is_forbidden(viewer_client, sample):
    assert viewer_client.get(reverse("metrics:review_queue", args=[sample.pk])).status_code == 403


def test_grade__viewer__is_forbidden(viewer_client, sample):
    item = sample.items.first()
    assert (
        viewer_client.post(reverse("metrics:review_grade", args=[item.pk]), GOOD).status_code == 403
    )
    assert not ReviewGrade.objects.exists()


def test_reviews_link__viewer__lands_on_the_results(viewer_client):
    response = viewer_client.get(reverse("metrics:reviews"))
    assert response.status_code == 302 and response.url == reverse("metrics:review_results")


def test_results__viewer__can_read(viewer_client):
    assert viewer_client.get(reverse("metrics:review_results")).status_code == 200


def test_queue_page__html__never_names_the_variant(reviewer_client, sample):
    for _ in range(6):
        html = reviewer_client.get(
            reverse("metrics:review_queue", args=[sample.pk])
        ).content.decode()
        main = html[html.index("<main") :]
        # as words: a random CSRF token or hold token may hold the letters "v1"
        assert not re.search(r"\b(v1|v2_full|v2_simplified)\b", main)
        assert "v2_full" not in html and "v2_simplified" not in html
        assert "100000000000000000"[:15] not in main  # nor the channel id, which would give it away
        item = ReviewItem.objects.get(held_by__username="bob")
        reviewer_client.post(reverse("metrics:review_grade", args=[item.pk]), GOOD, headers=HTMX)


def test_grade__saved__reveals_the_variant(reviewer_client, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.select_related("response").get(held_by__username="bob")
    response = reviewer_client.post(
        reverse("metrics:review_grade", args=[item.pk]), GOOD, headers=HTMX
    )
    assert response.status_code == 200
    assert f'id="review-variant">{item.response.variant}<' in response.content.decode()
    assert 'hx-swap-oob="true"' in response.content.decode()


def test_grade__incomplete__is_422_with_the_form_and_errors(reviewer_client, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by__username="bob")
    response = reviewer_client.post(
        reverse("metrics:review_grade", args=[item.pk]), {"hallucination": "minor"}, headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert "Format compliance is required." in html and "Say what was wrong" in html
    assert item.response.variant not in html


def test_queue__reload__shows_the_same_item_with_its_draft(reviewer_client, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by__username="bob")
    reviewer_client.post(
        reverse("metrics:review_draft", args=[item.pk]), {"hallucination": "major", "note": "hmm"}
    )
    html = reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk])).content.decode()
    assert f'action="{reverse("metrics:review_grade", args=[item.pk])}"' in html
    assert 'value="major" data-key="3" checked' in html and ">hmm</textarea>" in html


def test_queue__progress__counts_graded_items(reviewer_client, sample):
    for _ in range(2):
        reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
        item = ReviewItem.objects.get(held_by__username="bob")
        reviewer_client.post(reverse("metrics:review_grade", args=[item.pk]), GOOD, headers=HTMX)
    html = reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk])).content.decode()
    assert "<strong>2 of 6</strong> graded" in html


def test_reviews_index__each_sample__shows_its_graded_count_and_a_way_to_review(
    reviewer_client, sample
):
    for _ in range(2):
        reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
        item = ReviewItem.objects.get(held_by__username="bob")
        reviewer_client.post(reverse("metrics:review_grade", args=[item.pk]), GOOD, headers=HTMX)
    html = reviewer_client.get(reverse("metrics:reviews")).content.decode()
    assert '<progress max="6" value="2" aria-hidden="true"></progress> 2 of 6' in html
    assert f'href="{reverse("metrics:review_queue", args=[sample.pk])}">Review</a>' in html


def test_queue__everything_graded__says_the_sample_is_complete(reviewer_client, sample):
    for _ in range(6):
        reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
        item = ReviewItem.objects.get(held_by__username="bob")
        reviewer_client.post(reverse("metrics:review_grade", args=[item.pk]), GOOD, headers=HTMX)
    assert (
        "Sample complete"
        in reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk])).content.decode()
    )


def test_hold__another_reviewer_holds_it__is_409(operator_client, reviewer_client, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by__username="bob")
    assert operator_client.post(reverse("metrics:review_hold", args=[item.pk])).status_code == 409
    assert (
        operator_client.post(reverse("metrics:review_grade", args=[item.pk]), GOOD).status_code
        == 409
    )


def test_release__leave_button__frees_the_item(reviewer_client, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by__username="bob")
    response = reviewer_client.post(
        reverse("metrics:review_release", args=[item.pk]), {"token": item.hold_token, "leave": "1"}
    )
    assert response.status_code == 302
    assert ReviewItem.objects.get(pk=item.pk).held_by is None


def test_draw__reviewer__draws_and_lands_on_the_sample(reviewer_client, rollout):
    store_week({"v1": 5})
    response = reviewer_client.post(
        reverse("metrics:review_draw"),
        {
            "rollout": "prompts_v2",
            "week": "2026-03-04",
            "size": "4",
            "double_percent": "25",
            "reason": "",
        },
    )
    sample = ReviewSample.objects.get()
    assert response.status_code == 302 and response.url == reverse(
        "metrics:review_sample", args=[sample.pk]
    )
    assert (sample.week_start, sample.drawn, sample.double_share, sample.created_by) == (
        WEEK,
        4,
        0.25,
        "bob",
    )


def test_draw__bad_size__is_422_naming_the_field(reviewer_client, rollout):
    response = reviewer_client.post(
        reverse("metrics:review_draw"),
        {"rollout": "prompts_v2", "week": "2026-03-02", "size": "zero", "double_percent": "20"},
    )
    assert (
        response.status_code == 422 and "size must be a whole number" in response.content.decode()
    )
    assert not ReviewSample.objects.exists()


def test_sample_page__verify__says_it_reproduces(reviewer_client, sample):
    html = reviewer_client.get(
        reverse("metrics:review_sample", args=[sample.pk]) + "?verify=1"
    ).content.decode()
    assert "yes: same replies, same order" in html


def test_results__filter_by_hallucination__lists_only_those(viewer_client, bob, sample):
    for verdict in ("none", "major", "none"):
        item = reviews.next_item(sample, bob)
        reviews.submit_grade(
            item,
            bob,
            {
                **GOOD,
                "hallucination": verdict,
                "hallucination_note": "invented a law" if verdict == "major" else "",
            },
        )
    html = viewer_client.get(
        reverse("metrics:review_results"), {"hallucination": "major"}
    ).content.decode()
    assert "invented a law" in html and html.count('class="pill bad"') == 1


def test_results__bad_week__is_422_naming_the_field(viewer_client):
    response = viewer_client.get(reverse("metrics:review_results"), {"week": "last tuesday"})
    assert response.status_code == 422 and "week must be a date" in response.content.decode()


def test_results__rates_table__shows_rate_and_interval(viewer_client, bob, rollout):
    from datetime import UTC, datetime

    from metrics.ingest.intake import record_events
    from tests.metrics.review_data import reply

    now = datetime.now(UTC)
    events = [reply(n) for n in range(1, 5)]
    for event in events:
        event["ts"] = now.isoformat()
    record_events(events, now=now)
    sample = reviews.draw_sample(
        rollout_key="prompts_v2",
        week_start=reviews.week_start_of(now),
        actor=SYSTEM,
        size=4,
        double_share=0,
    )
    for verdict in ("major", "none", "none", "none"):
        item = reviews.next_item(sample, bob)
        reviews.submit_grade(
            item, bob, {**GOOD, "hallucination": verdict, "hallucination_note": "x"}
        )
    html = viewer_client.get(reverse("metrics:review_results")).content.decode()
    assert "<strong>25%</strong>" in html and "(5–70%)" in html


def test_grade__without_javascript__answers_the_whole_page_with_the_verdict(
    reviewer_client, sample
):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.select_related("response").get(held_by__username="bob")
    html = reviewer_client.post(
        reverse("metrics:review_grade", args=[item.pk]), GOOD
    ).content.decode()
    assert "<html" in html and f'id="review-variant">{item.response.variant}<' in html
    assert html.count('id="review-progress"') == 1


# --- issue 15 item 6: NUL and out-of-range dates answer a 4xx sentence, never a 500 ---------------


@pytest.mark.parametrize(
    ("query", "status", "sentence"),
    [
        # a NUL anywhere in the address is refused before any view runs (selcontrol.input_guard)
        ("q=x%00", 400, "The address holds a NUL character (%00)"),
        ("variant=x%00", 400, "The address holds a NUL character (%00)"),
        ("reviewer=x%00", 400, "The address holds a NUL character (%00)"),
        ("rollout=x%00", 400, "The address holds a NUL character (%00)"),
        ("hallucination=x%00", 400, "The address holds a NUL character (%00)"),
        ("week=x%00", 400, "The address holds a NUL character (%00)"),
        ("week=9999-12-31", 422, "The week of 27 Dec 9999 has not started yet"),
        ("sample=99999999999999999999", 422, "sample must be a sample number"),
        ("sample=%C2%B2", 422, "sample must be a sample number"),  # a digit int() refuses: was 500
    ],
)
def test_results__nul_or_date_edge_in_the_query__is_4xx_with_a_sentence(
    reviewer_client, rollout, sample, query, status, sentence
):
    response = reviewer_client.get(f"/metrics/reviews/results/?{query}")
    assert response.status_code == status
    assert sentence in response.content.decode()


def test_draw__week_9999_12_31__is_422_with_a_sentence_and_draws_nothing(reviewer_client, rollout):
    response = reviewer_client.post(
        reverse("metrics:review_draw"),
        {"rollout": "prompts_v2", "week": "9999-12-31", "size": "50", "double_percent": "20"},
    )
    assert response.status_code == 422
    assert "The week of 27 Dec 9999 has not started yet" in response.content.decode()
    assert not ReviewSample.objects.exists()


def test_draw__nul_in_the_reason__is_422_and_draws_nothing(reviewer_client, rollout):
    store_week({"v1": 4})
    response = reviewer_client.post(
        reverse("metrics:review_draw"),
        {"rollout": "prompts_v2", "week": "2026-03-02", "size": "4", "reason": "x\x00"},
    )
    assert response.status_code == 422 and "plain text" in response.content.decode()
    assert not ReviewSample.objects.exists()


def test_release__nul_in_the_token__answers_without_a_500(reviewer_client, bob, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by=bob)
    response = reviewer_client.post(
        reverse("metrics:review_release", args=[item.pk]), {"token": "x\x00"}
    )
    assert response.status_code == 204


def test_draw_command__week_9999_12_31__is_a_command_error_sentence(rollout):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="has not started yet"):
        call_command("draw_review_sample", "--week", "9999-12-31")
    assert not ReviewSample.objects.exists()


# --- issue 16 item 12: one sample per week, labelled by its origin, one nav item active --------


def draw_form(**extra) -> dict:
    return {
        "rollout": "prompts_v2",
        "week": "2026-03-04",
        "size": "4",
        "double_percent": "0",
        **extra,
    }


def test_draw__same_week_twice__is_409_naming_the_existing_sample(reviewer_client, rollout):
    store_week({"v1": 10})
    reviewer_client.post(reverse("metrics:review_draw"), draw_form())
    first = ReviewSample.objects.get()
    response = reviewer_client.post(reverse("metrics:review_draw"), draw_form())
    html = response.content.decode()
    assert response.status_code == 409
    assert f"The week of 2 Mar 2026 already has sample {first.pk} (4 replies, 0 graded)" in html
    assert f'href="{reverse("metrics:review_sample", args=[first.pk])}"' in html
    assert ReviewSample.objects.count() == 1


def test_draw__additional_sample_with_a_reason__draws_new_replies(reviewer_client, rollout):
    store_week({"v1": 10})
    reviewer_client.post(reverse("metrics:review_draw"), draw_form())
    response = reviewer_client.post(
        reverse("metrics:review_draw"), draw_form(additional="1", reason="first had a shortfall")
    )
    assert response.status_code == 302
    first, second = ReviewSample.objects.order_by("id")
    assert not set(reviews.sample_response_ids(first)) & set(reviews.sample_response_ids(second))


def test_draw__additional_sample_without_a_reason__is_422(reviewer_client, rollout):
    store_week({"v1": 10})
    reviewer_client.post(reverse("metrics:review_draw"), draw_form())
    response = reviewer_client.post(reverse("metrics:review_draw"), draw_form(additional="1"))
    assert response.status_code == 422 and "Say why" in response.content.decode()
    assert ReviewSample.objects.count() == 1


def test_draw_command__same_week_with_options_twice__refuses_naming_the_sample(rollout):
    from django.core.management import CommandError, call_command

    store_week({"v1": 10})
    call_command("draw_review_sample", "--week", "2026-03-02", "--size", "4")
    with pytest.raises(CommandError, match="already has sample"):
        call_command("draw_review_sample", "--week", "2026-03-02", "--size", "4")
    assert ReviewSample.objects.count() == 1


@pytest.mark.parametrize(
    ("origin", "label"),
    [
        ("command", "Weekly, drawn by manage.py draw_review_sample"),
        ("beat", "Weekly, drawn by Celery beat"),
        ("console", "On demand, drawn by the console"),
    ],
)
def test_sample_label__names_its_real_origin(reviewer_client, rollout, origin, label):
    import time_machine
    from django.core.management import call_command

    from metrics.tasks import draw_weekly_review_sample

    monday_after = "2026-03-09T00:10:00+00:00"
    with time_machine.travel("2026-03-08T23:00:00+00:00", tick=False):
        store_week({"v1": 10})
    with time_machine.travel(monday_after, tick=False):
        if origin == "command":
            call_command("draw_review_sample")
        elif origin == "beat":
            draw_weekly_review_sample.apply()
        else:
            reviewer_client.post(reverse("metrics:review_draw"), draw_form())
    sample = ReviewSample.objects.get()
    assert sample.origin == origin
    assert label in reviewer_client.get(reverse("metrics:reviews")).content.decode()
    page = reviewer_client.get(reverse("metrics:review_sample", args=[sample.pk])).content.decode()
    assert label in page and "Weekly (Celery beat)" not in page


@pytest.mark.parametrize(
    "name",
    ["metrics:reviews", "metrics:review_results", "metrics:review_sample", "metrics:review_queue"],
)
def test_nav__review_pages__mark_only_reviews_active(reviewer_client, sample, name):
    args = [sample.pk] if name in ("metrics:review_sample", "metrics:review_queue") else []
    html = reviewer_client.get(reverse(name, args=args)).content.decode()
    nav = html[html.index('class="mainnav"') : html.index("</nav>")]
    assert nav.count('aria-current="page"') == 1
    assert re.search(r'aria-current="page">Reviews</a>', nav)
