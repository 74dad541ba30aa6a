"""The review queue in Debian's Chromium: a whole sample graded with the keyboard, two reviewers
at once, the version hidden until the grade is saved, the grades on the dashboard's chart."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from metrics.ingest.intake import record_events
from metrics.reviews import services as reviews
from metrics.reviews.models import ReviewGrade, ReviewItem, ReviewSample
from tests.conftest import SYSTEM, make_user
from tests.e2e.conftest import login, screenshot

pytestmark = pytest.mark.e2e

EXCHANGES = [
    (
        "When did the Apollo 11 crew land on the Moon?",
        "July 20, 1969! Neil Armstrong and Buzz Aldrin touched down in the Sea of Tranquility "
        "while Michael Collins orbited above. Wild to think they had less computing power than "
        "your fridge.",
    ),
    (
        "can you give me 3 steps to reset my router",
        "Sure:\n1. Unplug it for 30 seconds.\n2. Plug it back in and wait for the lights to "
        "settle.\n3. If it still misbehaves, hold the reset pin for 10 seconds (this wipes your "
        "settings).",
    ),
    (
        "what's the population of Lyon?",
        "Lyon proper has about 520,000 people, and the metro area is around 2.3 million. "
        "I'm fairly sure of the city figure; the metro one depends on how you draw the line.",
    ),
    (
        "is it true that goldfish have a 3 second memory",
        "Nope, that's a myth! Goldfish can remember things for months, and they can be trained to "
        "respond to sounds and colours.",
    ),
    (
        "who wrote the book Dune",
        "Dune was written by Frank Herbert and published in 1965. It won the first Nebula Award.",
    ),
    (
        "recommend a pasta dish for tonight",
        "Cacio e pepe: pasta, pecorino, black pepper, done in 15 minutes. Trust me on this one.",
    ),
]
VARIANTS = ["v1", "v2_full", "v1", "v2_full", "v1", "v2_full"]


def store_replies(n: int, *, start: int = 0, ago: timedelta = timedelta(0)) -> None:
    now = timezone.now()
    events = []
    for i in range(start, start + n):
        user, bot = EXCHANGES[i % len(EXCHANGES)]
        ts = now - ago - timedelta(minutes=5 + i)
        events.append(
            {
                "id": f"e2e-review-{i}",
                "type": "response",
                "ts": ts.isoformat(),
                "channel_id": str(200000000000000000 + i % 3),
                "message_id": f"e2e-msg-{i}",
                "rollout": "prompts_v2",
                "variant": VARIANTS[i % len(VARIANTS)],
                "model": "anthropic/claude-3.5-sonnet",
                "input_tokens": 900,
                "output_tokens": 80,
                "latency_ms": 1100.0,
                "error": None,
                "user_text": user,
                "response_text": bot,
            }
        )
    result = record_events(events, now=now)
    assert not result.rejected


def draw(size: int, double_share: float = 0.0, *, additional: bool = False) -> ReviewSample:
    return reviews.draw_sample(
        rollout_key="prompts_v2",
        week_start=reviews.week_start_of(timezone.now()),
        actor=SYSTEM,
        size=size,
        double_share=double_share,
        seed=2026,
        additional=additional,
        reason="e2e: another sample of the week" if additional else "",
    )


def reply_text(page) -> str:
    return page.locator("#reply-text").inner_text()


def keys(page, sequence: str) -> None:
    for key in sequence.split():
        page.keyboard.press(key)


def grade_with_keyboard(page, sequence: str = "h 1 f 1 u 1 c 1 s 4") -> None:
    keys(page, sequence)
    page.keyboard.press("Enter")
    page.locator("#review-variant").wait_for()


@pytest.fixture
def dave(console):
    return make_user("dave", "reviewers")


def test_review_queue__keyboard_only__grades_whole_sample_blind_and_feeds_the_dashboard(
    page, console, bob
):
    store_replies(6)
    sample = draw(size=6)
    login(page, bob)
    page.goto(f"/metrics/reviews/samples/{sample.pk}/queue/")
    for n in range(1, 7):
        expect_progress = f"{n - 1} of 6"
        assert expect_progress in page.locator("#review-progress").inner_text()
        html = page.content()
        main = html[html.index("<main") :]
        assert "v2_full" not in html and not re.search(r"\bv1\b", main), (
            "the version leaked before saving"
        )
        if n == 1:
            keys(page, "h 3")  # major: the note field takes the focus
            assert page.evaluate("document.activeElement.id") == "hallucination_note"
            page.keyboard.type("States a precise figure as fact; the source says otherwise.")
            page.keyboard.press("Escape")
            keys(page, "f 3 u 2 c 1 s 3")
            screenshot(page, "review-queue-desktop")
            page.keyboard.press("Enter")
            page.locator("#review-variant").wait_for()
            screenshot(page, "review-saved-desktop")
        else:
            grade_with_keyboard(page)
        latest = (
            ReviewGrade.objects.filter(reviewer=bob)
            .select_related("item__response")
            .latest("submitted_at")
        )
        assert page.locator("#review-variant").inner_text() == latest.item.response.variant
        assert f"{n} of 6" in page.locator("#review-progress").inner_text()
        page.keyboard.press("n")
        page.wait_for_load_state()
    page.locator("#review-empty").wait_for()
    assert "Sample complete" in page.locator("#review-empty").inner_text()
    assert ReviewGrade.objects.filter(submitted_at__isnull=False).count() == 6
    assert ReviewGrade.objects.get(hallucination="major").uncertainty == "overconfident"

    # the dashboard's review chart reads the grades
    page.goto("/metrics/prompts_v2/?range=7d")
    page.locator("#chart-reviews .main-svg").first.wait_for()
    data = page.request.get("/metrics/prompts_v2/charts/reviews.json?range=7d").json()
    rates = {row["variant"]: (row["graded"], row["hallucination_rate"]) for row in data["rows"]}
    graded = (
        ReviewItem.objects.select_related("response")
        .get(grades__hallucination="major")
        .response.variant
    )
    assert rates[graded] == (3, pytest.approx(1 / 3, abs=1e-4))
    other = "v1" if graded == "v2_full" else "v2_full"
    assert rates[other] == (3, 0.0)


def test_review_queue__two_reviewers_at_once__never_get_the_same_reply(browser, console, bob, dave):
    from tests.e2e.conftest import DESKTOP, _new_page

    store_replies(6)
    sample = draw(size=6)
    pages = {}
    for user in (bob, dave):
        pages[user.username] = _new_page(browser, console, viewport=DESKTOP)
        login(pages[user.username], user)
        pages[user.username].goto(f"/metrics/reviews/samples/{sample.pk}/queue/")
    try:
        seen: dict[str, list[str]] = {"bob": [], "dave": []}
        for _ in range(3):
            texts = {name: reply_text(p) for name, p in pages.items()}
            assert texts["bob"] != texts["dave"], "two reviewers were shown the same reply"
            for name, p in pages.items():
                seen[name].append(texts[name])
                grade_with_keyboard(p, "h 1 f 3 u 4 c 1 s 5")
            for p in pages.values():
                p.keyboard.press("n")
                p.wait_for_load_state()
        for p in pages.values():
            p.locator("#review-empty").wait_for()
        assert not set(seen["bob"]) & set(seen["dave"])
        graded = ReviewGrade.objects.filter(submitted_at__isnull=False)
        assert graded.count() == 6 and graded.values("item").distinct().count() == 6
    finally:
        for p in pages.values():
            p.context.close()


def test_review_queue__reload__keeps_the_reply_and_the_draft(page, console, bob):
    store_replies(3)
    sample = draw(size=3)
    login(page, bob)
    page.goto(f"/metrics/reviews/samples/{sample.pk}/queue/")
    before = reply_text(page)
    with page.expect_response(lambda r: "/draft/" in r.url and r.status == 204):
        keys(page, "h 2")
    page.keyboard.type("Wrong year")
    with page.expect_response(lambda r: "/draft/" in r.url and r.status == 204):
        page.keyboard.press("Escape")
        keys(page, "s 2")
    page.reload()
    assert reply_text(page) == before
    assert page.locator('input[name="hallucination"][value="minor"]').is_checked()
    assert page.locator('input[name="sounds_like_sel"][value="2"]').is_checked()
    assert page.locator("#hallucination_note").input_value() == "Wrong year"


def test_review_pages__screenshots_of_sample_kappa_and_results(
    page, phone_page, console, bob, dave, carol
):
    store_replies(12)
    sample = draw(size=10, double_share=0.5)
    rubric = {
        "format": "followed",
        "uncertainty": "appropriate",
        "consistent": "yes",
        "sounds_like_sel": "4",
    }
    bob_says = "none none minor none major none none minor none none".split()
    formats = "followed na followed not_followed na followed na followed followed na".split()
    for verdict, fmt in zip(bob_says, formats, strict=True):
        item = reviews.next_item(sample, bob)
        note = "" if verdict == "none" else "Invented a date"
        reviews.submit_grade(
            item,
            bob,
            {**rubric, "format": fmt, "hallucination": verdict, "hallucination_note": note},
        )
    flips = {"none": "minor", "minor": "none", "major": "major"}
    for n in range(5):  # the second reviewer agrees, except on two replies
        item = reviews.next_item(sample, dave)
        first = ReviewGrade.objects.get(item=item, reviewer=bob)
        verdict = flips[first.hallucination] if n in (1, 3) else first.hallucination
        note = "" if verdict == "none" else "Wrong figure"
        reviews.submit_grade(
            item,
            dave,
            {
                **rubric,
                "format": first.format,
                "hallucination": verdict,
                "hallucination_note": note,
            },
        )
    login(page, bob)
    page.goto("/metrics/reviews/")
    screenshot(page, "review-index-desktop")
    page.goto(f"/metrics/reviews/samples/{sample.pk}/")
    assert "kappa" in page.locator("#agreement").inner_text().lower()
    screenshot(page, "review-sample-desktop")
    page.goto("/metrics/reviews/results/?order=downvoted")
    page.locator("#review-results").wait_for()
    screenshot(page, "review-results-desktop")
    login(phone_page, carol)
    phone_page.goto("/metrics/reviews/")
    phone_page.locator("#review-results").wait_for()  # a viewer lands on the results
    screenshot(phone_page, "review-results-phone")
    login(phone_page, bob)
    store_replies(2, start=100)
    phone_page.goto(f"/metrics/reviews/samples/{draw(size=2, additional=True).pk}/queue/")
    keys(phone_page, "h 1 f 1")
    screenshot(phone_page, "review-queue-phone")


def test_review_queue__page_left__releases_the_hold(page, console, bob):
    store_replies(2)
    sample = draw(size=2)
    login(page, bob)
    page.goto(f"/metrics/reviews/samples/{sample.pk}/queue/")
    assert ReviewItem.objects.filter(held_by=bob).count() == 1
    page.goto("/metrics/reviews/results/")
    for _ in range(50):  # the beacon is sent as the page goes; wait for it to land
        if not ReviewItem.objects.filter(held_by=bob).exists():
            break
        page.wait_for_timeout(100)
    assert not ReviewItem.objects.filter(held_by=bob).exists()


# --- issue 16 items 4 and 12, issue 15 item 3: what a person sees --------------------------------


def no_sideways_scroll(page) -> bool:
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def active_nav(page) -> list[str]:
    return page.locator('.mainnav a[aria-current="page"]').all_inner_texts()


def test_review_pages__phone__no_sideways_scroll_and_one_nav_item_active(
    phone_page, console, bob, dave
):
    store_replies(12)
    sample = draw(size=10, double_share=0.5)
    for _ in range(6):
        reviews.submit_grade(reviews.next_item(sample, dave), dave, {**GRADE, "note": "ok"})
    login(phone_page, bob)
    pages = {
        "review-index-phone": "/metrics/reviews/",
        "review-sample-phone": f"/metrics/reviews/samples/{sample.pk}/",
        "review-results-reviewer-phone": "/metrics/reviews/results/",
        "review-queue-blind-phone": f"/metrics/reviews/samples/{sample.pk}/queue/",
    }
    for name, url in pages.items():
        phone_page.goto(url)
        phone_page.wait_for_load_state("networkidle")
        screenshot(phone_page, name)
        assert no_sideways_scroll(phone_page), f"{url} scrolls sideways on a phone"
        assert active_nav(phone_page) == ["Reviews"], url


def test_review_pages__desktop__one_nav_item_active(page, console, bob):
    store_replies(2)
    sample = draw(size=2)
    login(page, bob)
    for url in (
        "/metrics/reviews/",
        f"/metrics/reviews/samples/{sample.pk}/",
        "/metrics/reviews/results/",
        f"/metrics/reviews/samples/{sample.pk}/queue/",
    ):
        page.goto(url)
        assert active_nav(page) == ["Reviews"], url
    page.goto("/metrics/prompts_v2/?range=24h")
    assert active_nav(page) == ["Dashboard"]


GRADE = {
    "hallucination": "none",
    "format": "followed",
    "uncertainty": "appropriate",
    "consistent": "yes",
    "sounds_like_sel": "4",
}


def test_review_blind__second_grader__finds_no_version_no_time_no_first_grade(
    page, console, bob, dave
):
    store_replies(6)
    sample = draw(size=6, double_share=1.0)
    item = reviews.next_item(sample, dave)
    reviews.submit_grade(item, dave, {**GRADE, "note": "dave was here"})
    words = item.response.response_text.split()[0:3]
    login(page, bob)
    page.goto(f"/metrics/reviews/samples/{sample.pk}/queue/")
    main = page.locator("main").inner_text()
    assert not re.search(r"\b\d{1,2}:\d{2}\b", main), "a time of day is in the queue"
    assert "sent" not in main.lower() and "v2_full" not in page.content()
    page.goto("/metrics/reviews/results/?q=" + "+".join(words))
    results = page.locator("#review-results").inner_text()
    assert "dave was here" not in results and "v1" not in results and "v2_full" not in results
    assert "No graded replies match." in results
    assert (
        "1 graded reply left out while you review blind"
        in page.locator("#results-hidden").inner_text()
    )
    screenshot(page, "review-results-blind-desktop")
    page.goto("/metrics/prompts_v2/?range=7d")
    alert = page.locator("[role=alert]").first.inner_text()
    assert "hidden from you while you review it" in alert
    assert page.locator(".chart-grid").count() == 0
    screenshot(page, "review-dashboard-blind-desktop")
    assert page.request.get("/metrics/prompts_v2/charts/reviews.json?range=7d").status == 403
    assert page.request.get("/metrics/prompts_v2/charts/responses.csv?range=7d").status == 403


def test_review_draw__same_week_again__says_which_sample_exists(page, console, bob):
    store_replies(8)
    first = draw(size=4)
    login(page, bob)
    page.goto("/metrics/reviews/")
    page.fill("#draw-week", timezone.now().date().isoformat())
    page.fill("#draw-size", "4")
    page.click("text=Draw sample")
    refused = page.locator("#draw-refused")
    refused.wait_for()
    assert f"already has sample {first.pk}" in refused.inner_text()
    screenshot(page, "review-draw-refused-desktop")
    assert ReviewSample.objects.count() == 1
    page.click(f"text=Open sample {first.pk}")
    page.wait_for_url(f"**/metrics/reviews/samples/{first.pk}/")
    assert "Weekly" not in page.locator("#drawn-by").inner_text()
    assert "On demand, drawn by" in page.locator("#drawn-by").inner_text()


def test_review_blind__reviewer_picks_a_range_holding_the_week__sees_the_sentence_not_old_charts(
    page, console, bob
):
    store_replies(4, ago=timedelta(days=8))
    last_week = reviews.week_start_of(timezone.now() - timedelta(days=8))
    reviews.draw_sample(
        rollout_key="prompts_v2", week_start=last_week, actor=SYSTEM, size=4, double_share=0
    )
    login(page, bob)
    page.goto("/metrics/prompts_v2/?range=custom&start=2025-01-06&end=2025-01-07")
    page.locator(".chart-grid").wait_for()
    # 30 days always holds the week of 8 days ago; 7 days does not on a Monday (UTC), when that
    # week ended more than 7 days before the hour that the range ends on
    page.click("label[for=range-30d]")
    alert = page.locator("#dash-input-error")
    alert.wait_for()
    assert "hidden from you while you review it" in alert.inner_text()
    page.locator("#dash-body .chart-grid").wait_for(state="detached")
    assert "Choose a range above" in page.locator("#dash-body").inner_text()
