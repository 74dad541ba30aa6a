"""The review stays blind (issue 15 item 3, issue 16 item 4): the exact requests that un-blinded
it, refused; nothing shows a reply's version, send time or another reviewer's grade to a grader
it is still open to; reviewers kept from the per-version figures of the weeks they grade."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewGrade, ReviewItem, ReviewSample
from tests.conftest import SYSTEM, make_user
from tests.metrics.review_data import GOOD, WEEK, store_week

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
BAD = {**GOOD, "hallucination": "major", "hallucination_note": "throw-away"}
VARIANTS = ("v1", "v2_full", "v2_simplified")


@pytest.fixture
def sample(db) -> ReviewSample:
    store_week({"v1": 3, "v2_full": 3})
    return reviews.draw_sample(
        rollout_key="prompts_v2", week_start=WEEK, actor=SYSTEM, size=6, double_share=0
    )


@pytest.fixture
def double_sample(db) -> ReviewSample:
    store_week({"v1": 2, "v2_full": 2})
    return reviews.draw_sample(
        rollout_key="prompts_v2", week_start=WEEK, actor=SYSTEM, size=4, double_share=1.0
    )


@pytest.fixture
def dave(db):
    return make_user("dave", "reviewers")


@pytest.fixture
def dave_client(dave):
    from django.test import Client

    client = Client()
    client.force_login(dave)
    return client


def grade_url(item: ReviewItem) -> str:
    return reverse("metrics:review_grade", args=[item.pk])


def names_a_variant(html: str) -> bool:
    main = html[html.index("<main") :] if "<main" in html else html
    return any(re.search(rf"\b{v}\b", main) for v in VARIANTS)


# --- issue 15 item 3: a throw-away grade to any item id, then another over it --------------------


def test_grade__item_id_never_given_to_the_reviewer__is_409_without_the_version(
    reviewer_client, sample
):
    item = sample.items.get(position=4)  # not in bob's hands: held by nobody
    response = reviewer_client.post(grade_url(item), BAD, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 409
    assert "You can only grade the reply the queue gives you" in html
    assert not names_a_variant(html) and item.response.response_text not in html
    assert not ReviewGrade.objects.exists()


def test_grade__item_id_never_given__without_javascript__is_409_page_without_the_version(
    reviewer_client, sample
):
    item = sample.items.get(position=4)
    response = reviewer_client.post(grade_url(item), BAD)
    assert response.status_code == 409 and "<html" in response.content.decode()
    assert not names_a_variant(response.content.decode())
    assert not ReviewGrade.objects.exists()


def test_grade__second_post_with_other_values_after_the_reveal__is_409_and_the_grade_stands(
    reviewer_client, bob, sample
):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by=bob)
    first = reviewer_client.post(grade_url(item), BAD, headers=HTMX)
    assert first.status_code == 200 and 'id="review-variant"' in first.content.decode()
    second = reviewer_client.post(grade_url(item), GOOD, headers=HTMX)
    assert second.status_code == 409
    assert "is final: saving it showed you the version" in second.content.decode()
    grade = ReviewGrade.objects.get()
    assert (grade.hallucination, grade.hallucination_note) == ("major", "throw-away")


def test_grade__same_values_posted_again__is_an_idempotent_200(reviewer_client, bob, sample):
    reviewer_client.get(reverse("metrics:review_queue", args=[sample.pk]))
    item = ReviewItem.objects.get(held_by=bob)
    reviewer_client.post(grade_url(item), GOOD, headers=HTMX)
    saved_at = ReviewGrade.objects.get().submitted_at
    again = reviewer_client.post(grade_url(item), GOOD, headers=HTMX)
    assert again.status_code == 200
    assert ReviewGrade.objects.get().submitted_at == saved_at


def test_grade__throw_away_then_overwrite_on_any_id__neither_is_stored(reviewer_client, sample):
    """The attack as filed: grade an item nobody holds, read the version, grade it again."""
    for item in sample.items.all():
        for data in (BAD, GOOD):
            response = reviewer_client.post(grade_url(item), data, headers=HTMX)
            assert response.status_code == 409
            assert not names_a_variant(response.content.decode())
    assert not ReviewGrade.objects.exists()


def test_draft__item_id_never_given__is_409_and_stores_nothing(reviewer_client, sample):
    item = sample.items.get(position=3)
    response = reviewer_client.post(
        reverse("metrics:review_draft", args=[item.pk]), {"hallucination": "none"}
    )
    assert response.status_code == 409 and not ReviewGrade.objects.exists()


def test_hold__item_id_never_given__is_409_and_does_not_take_it(reviewer_client, sample):
    item = sample.items.get(position=5)
    response = reviewer_client.post(reverse("metrics:review_hold", args=[item.pk]))
    assert response.status_code == 409
    assert ReviewItem.objects.get(pk=item.pk).held_by is None


def test_hold__page_back_after_its_release__takes_its_item_again(bob, sample):
    item = reviews.next_item(sample, bob)
    token = item.hold_token
    reviews.release_hold(item, bob, token=token)  # the page's beacon as it was hidden
    assert reviews.renew_hold(item, bob, token=token)  # the page is shown again (bfcache)
    held = ReviewItem.objects.get(pk=item.pk)
    assert held.held_by == bob and held.hold_token == token


def test_hold__page_back__item_no_longer_next__is_not_taken(bob, dave, sample):
    item = reviews.next_item(sample, bob)
    reviews.release_hold(item, bob, token=item.hold_token)
    reviews.next_item(sample, dave)  # dave's queue gives him the freed item
    assert not reviews.renew_hold(item, bob, token=item.hold_token)
    assert ReviewItem.objects.get(pk=item.pk).held_by.username == "dave"


# --- issue 15 item 3: the second grader searches the results for the first grader's reveal -------


def first_grade(sample, user, data=None) -> ReviewItem:
    item = reviews.next_item(sample, user)
    reviews.submit_grade(item, user, data or {**GOOD, "note": "checked the capital"})
    return item


def test_results__second_grader_searches_the_reply__first_grade_and_version_left_out(
    dave_client, bob, double_sample
):
    item = first_grade(double_sample, bob)
    words = item.response.response_text.split(":")[0]  # "Answer 3"
    html = dave_client.get(
        f"/metrics/reviews/results/?q={words.replace(' ', '+')}"
    ).content.decode()
    assert item.response.response_text not in html and "checked the capital" not in html
    assert not re.search(r'<span class="variant">', html)
    assert "1 graded reply left out" in html
    by_variant = dave_client.get(
        f"/metrics/reviews/results/?variant={item.response.variant}&q={words.replace(' ', '+')}"
    ).content.decode()
    assert item.response.response_text not in by_variant


def test_results__after_the_second_grade__the_reply_shows_to_both(
    dave_client, bob, dave, double_sample
):
    item = first_grade(double_sample, bob)
    assert reviews.next_item(double_sample, dave).pk == item.pk
    reviews.submit_grade(item, dave, GOOD)
    html = dave_client.get(
        "/metrics/reviews/results/", {"q": item.response.response_text}
    ).content.decode()
    assert html.count(item.response.response_text) >= 2  # both grades listed
    assert f'<span class="variant">{item.response.variant}</span>' in html


def test_results__first_grader__sees_their_own_grade(reviewer_client, bob, double_sample):
    item = first_grade(double_sample, bob)
    html = reviewer_client.get("/metrics/reviews/results/").content.decode()
    assert "checked the capital" in html and item.response.response_text in html


def test_results__viewer_who_cannot_grade__sees_the_first_grade(viewer_client, bob, double_sample):
    first_grade(double_sample, bob)
    assert "checked the capital" in viewer_client.get("/metrics/reviews/results/").content.decode()


def test_results__operator_who_may_still_grade_it__does_not_see_it(
    operator_client, bob, double_sample
):
    first_grade(double_sample, bob)
    assert (
        "checked the capital"
        not in operator_client.get("/metrics/reviews/results/").content.decode()
    )


# --- issue 16 item 4: no send time in the queue; reviewers kept from the week's figures ----------


def test_queue_page__shows_no_send_date_or_time(reviewer_client, bob, sample):
    for _ in range(6):
        html = reviewer_client.get(
            reverse("metrics:review_queue", args=[sample.pk])
        ).content.decode()
        item = ReviewItem.objects.select_related("response").get(held_by=bob)
        main = html[html.index("<main") :]
        ts = item.response.ts
        assert not re.search(r"\b\d{1,2}:\d{2}\b", main), "a time of day is in the queue"
        assert f"{ts:%a} {ts.day} {ts:%b}" not in main and ts.date().isoformat() not in main
        assert "sent" not in main.lower()
        reviewer_client.post(grade_url(item), GOOD, headers=HTMX)


def custom(week_start) -> str:
    from datetime import timedelta

    end = week_start + timedelta(days=6)
    return f"range=custom&start={week_start.isoformat()}&end={end.isoformat()}"


DASHBOARD_URLS = (
    "/metrics/prompts_v2/?{q}",
    "/metrics/prompts_v2/charts/responses.json?{q}",
    "/metrics/prompts_v2/charts/responses.csv?{q}",
    "/metrics/prompts_v2/charts/reviews.json?{q}",
    "/metrics/prompts_v2/comparison.json?{q}",
    "/metrics/prompts_v2/comparison.csv?{q}",
)


def test_dashboard__reviewer_with_replies_open_in_the_week__is_403_with_a_sentence(
    reviewer_client, rollout, sample
):
    for url in DASHBOARD_URLS:
        response = reviewer_client.get(url.format(q=custom(WEEK)))
        assert response.status_code == 403, url
        assert "are hidden from you while you review it" in response.content.decode(), url


def test_dashboard__reviewer__other_weeks_stay_open(reviewer_client, rollout, sample):
    from datetime import timedelta

    later = custom(WEEK + timedelta(days=7))
    for url in DASHBOARD_URLS:
        assert reviewer_client.get(url.format(q=later)).status_code == 200, url


def test_dashboard__operator_and_viewer__see_the_week(
    operator_client, viewer_client, rollout, sample
):
    for client in (operator_client, viewer_client):
        assert client.get(DASHBOARD_URLS[0].format(q=custom(WEEK))).status_code == 200


def test_dashboard__sample_complete__reviewer_sees_the_week(reviewer_client, bob, rollout, sample):
    for _ in range(6):
        reviews.submit_grade(reviews.next_item(sample, bob), bob, GOOD)
    assert reviewer_client.get(DASHBOARD_URLS[0].format(q=custom(WEEK))).status_code == 200


def test_results__rates_of_a_week_under_review__hidden_from_the_reviewer(
    dave_client, operator_client, bob, double_sample
):
    first_grade(double_sample, bob)
    from datetime import timedelta

    from django.utils import timezone

    # the rates table covers the last 12 weeks: look at the sample's week through its rollout
    with_rates = operator_client.get("/metrics/reviews/results/").content.decode()
    hidden = dave_client.get("/metrics/reviews/results/").content.decode()
    if WEEK >= (timezone.now() - timedelta(weeks=12)).date():
        assert "2 Mar 2026</td>" in with_rates
    assert "2 Mar 2026</td>" not in hidden
    assert f'id="rates-hidden-{WEEK.isoformat()}"' in hidden


# --- the queue's order says nothing of the version ------------------------------------------------


def test_queue_order__many_samples__does_not_cluster_by_version():
    """Across 200 seeds of 25 v1 and 25 v2 replies, the mean number of runs (maximal stretches
    of one version in queue order) is the 26 a random order gives, and v2 is half of the first
    half: ordered or blocked queues give 2 runs, and v2 all first or all last."""
    from datetime import date

    from metrics.reviews import sampling as review_sampling

    candidates = [
        review_sampling.Candidate(
            id=n,
            variant="v1" if n % 2 else "v2_full",
            day=date(2026, 3, 2 + n % 7),
            channel_id=str(n % 5),
        )
        for n in range(200)
    ]
    variant = {c.id: c.variant for c in candidates}
    runs, first_half = [], []
    for seed in range(200):
        ids = review_sampling.draw(candidates, 50, seed).ids
        order = [variant[i] for i in ids]
        runs.append(1 + sum(a != b for a, b in zip(order, order[1:], strict=False)))
        first_half.append(order[:25].count("v2_full") / 25)
    assert abs(sum(runs) / len(runs) - 26) < 0.8
    assert abs(sum(first_half) / len(first_half) - 0.5) < 0.03


def test_dashboard__others_graded_part_of_the_sample__week_still_hidden_from_the_reviewer(
    dave_client, bob, rollout, sample
):
    for _ in range(2):  # bob grades two of six: four are still open to dave
        reviews.submit_grade(reviews.next_item(sample, bob), bob, GOOD)
    response = dave_client.get(DASHBOARD_URLS[0].format(q=custom(WEEK)))
    assert response.status_code == 403
    assert f"sample {sample.pk} has 4 replies you may still grade" in (response.content.decode())


def test_results__reviewer_grading_a_week__sees_none_of_its_other_graded_replies(
    dave_client, bob, dave, rollout, sample
):
    """Complete replies of the week (graded by bob) would show their versions and send times:
    per-version figures of a week dave still grades. His own grade stays."""
    graded_by_bob = [first_grade(sample, bob) for _ in range(2)]
    mine = reviews.next_item(sample, dave)
    reviews.submit_grade(mine, dave, {**GOOD, "note": "dave graded it"})
    html = dave_client.get("/metrics/reviews/results/").content.decode()
    for item in graded_by_bob:
        assert item.response.response_text not in html
    assert "dave graded it" in html and mine.response.response_text in html
    assert "2 graded replies left out while you review blind" in html
    assert "the rest of the week you are grading (2 Mar 2026)" in html


def test_dashboard__htmx_range_change_to_the_week__is_a_422_fragment_the_page_swaps_in(
    reviewer_client, rollout, sample
):
    response = reviewer_client.get(DASHBOARD_URLS[0].format(q=custom(WEEK)), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 422 and "<html" not in html
    assert "are hidden from you while you review it" in html
