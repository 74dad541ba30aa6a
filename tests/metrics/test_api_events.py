"""POST /api/v1/events through HTTP (Django's client): shape errors, limits, per-event
rejections."""

from __future__ import annotations

import json

import pytest

from metrics.models import TEXT_LIMIT, FollowupEvent, ReactionEvent, ResponseEvent

from .conftest import followup, reaction, response

pytestmark = pytest.mark.django_db
URL = "/api/v1/events"


def stored() -> int:
    return (
        ResponseEvent.objects.count()
        + ReactionEvent.objects.count()
        + FollowupEvent.objects.count()
    )


BAD_BODIES = [
    ("bad JSON", '{"events": [', "not valid JSON"),
    ("truncated JSON", json.dumps({"events": [response("a")]})[:-3], "not valid JSON"),
    ("not UTF-8", b'{"events": ["\xff\xfe"]}', "not valid JSON"),
    ("empty body", "", "empty"),
    ("JSON list", json.dumps([response("a")]), '{"events": [...]}'),
    ("no events key", json.dumps({"event": [response("a")]}), '{"events": [...]}'),
    ("events not a list", json.dumps({"events": response("a")}), "events must be a list"),
    ("JSON string", '"hello"', '{"events": [...]}'),
    ("deeply nested", '{"events": [' + "[" * 100_000 + "]" * 100_000 + "]}", "not valid JSON"),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_post_events__malformed_body__400_sentence_and_nothing_stored(bot, case, body, message):
    answer = bot.post(URL, body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert stored() == 0


def test_post_events__10_mb_body__413_and_nothing_stored(bot):
    events = [response(f"big-{i}", user_text="x" * 10_000) for i in range(1000)]
    body = json.dumps({"events": events})
    assert len(body) > 10_000_000
    answer = bot.post(URL, body)
    assert answer.status_code == 413
    assert "MiB" in answer.json()["error"]
    assert stored() == 0


def test_post_events__too_many_events__413_naming_the_limit(bot):
    answer = bot.post(URL, {"events": [reaction("m", eid=f"e{i}") for i in range(5001)]})
    assert answer.status_code == 413
    assert "at most 5000 events" in answer.json()["error"]
    assert stored() == 0


def test_post_events__1500_events_over_1_mib__all_accepted(bot):
    events = [response(f"ok-{i}", response_text="y" * 800) for i in range(1500)]
    body = json.dumps({"events": events})
    assert len(body) > 1024 * 1024
    answer = bot.post(URL, body)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 1500, "duplicates": 0, "rejected": []}
    assert ResponseEvent.objects.count() == 1500


def test_post_events__one_bad_event__rejected_alone_with_index_id_and_sentence(bot):
    good, bad = response("good"), response("bad", input_tokens="many")
    answer = bot.post(URL, {"events": [good, bad, reaction("m-good", eid="re")]})
    assert answer.status_code == 200
    assert answer.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {"index": 1, "id": "bad", "error": "input_tokens must be an integer >= 0; got 'many'."}
        ],
    }
    assert list(ResponseEvent.objects.values_list("event_id", flat=True)) == ["good"]


MALFORMED_EVENTS = [
    ("wrong type", {"input_tokens": [1]}, "input_tokens"),
    ("missing field", {"variant": None}, "variant"),
    ("huge id", {"id": "i" * 1_000_000}, "id is 1000000 characters long"),
    ("unknown type", {"type": "click"}, "type must be one of"),
    ("type not a string", {"type": {}}, "type must be one of"),
    ("type a list", {"type": ["response"]}, "type must be one of"),
    ("bad timestamp", {"ts": "2026-13-45T99:00:00Z"}, "not an RFC 3339 timestamp"),
    ("naive timestamp", {"ts": "2026-03-02 10:00:00"}, "has no time zone"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), MALFORMED_EVENTS, ids=[c[0] for c in MALFORMED_EVENTS]
)
def test_post_events__malformed_event__rejected_and_nothing_of_it_stored(
    bot, case, change, message
):
    event = {**response("victim"), **change}
    answer = bot.post(URL, {"events": [event]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == 0
    assert message in body["rejected"][0]["error"]
    assert len(body["rejected"][0]["id"] or "") <= 64
    assert stored() == 0


def test_post_events__huge_texts__truncated_and_stored(bot):
    answer = bot.post(
        URL, {"events": [response("long", user_text="u" * 100_000, response_text="r" * 20_000)]}
    )
    assert answer.json()["accepted"] == 1
    row = ResponseEvent.objects.get(event_id="long")
    assert (len(row.user_text), len(row.response_text)) == (TEXT_LIMIT, TEXT_LIMIT)


def test_post_events__retried_batch__counted_once(bot):
    batch = {"events": [response("a"), reaction("m-a", eid="b"), followup("m-a", eid="c")]}
    first, second = bot.post(URL, batch).json(), bot.post(URL, batch).json()
    assert first == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert second == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert stored() == 3


def test_post_events__same_id_twice_in_one_batch__second_is_duplicate(bot):
    answer = bot.post(URL, {"events": [response("dup"), response("dup", variant="v2_full")]})
    assert answer.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert ResponseEvent.objects.get().variant == "v1"


def test_post_events__no_token__401(db):
    from tests.conftest import ApiClient

    assert ApiClient(None).post(URL, {"events": []}).status_code == 401


def test_post_events__read_only_token__403_naming_scope(make_token):
    from tests.conftest import ApiClient

    answer = ApiClient(make_token("config:read")).post(URL, {"events": [response("a")]})
    assert answer.status_code == 403
    assert "events:write" in answer.json()["error"]
    assert stored() == 0


def test_post_events__empty_list__nothing_to_do(bot):
    assert bot.post(URL, {"events": []}).json() == {"accepted": 0, "duplicates": 0, "rejected": []}
