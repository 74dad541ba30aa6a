"""Issue 15, items 2 and 7: one bad character, timestamp or variant in one event rejects that
event by index with a sentence; the rest of the batch is stored. CSV cells never carry a
formula."""

from __future__ import annotations

import csv
import io
import json

import pytest

from metrics.dashboard.views import _csv_response
from metrics.models import ResponseEvent
from tests.metrics.conftest import followup, reaction, response

pytestmark = pytest.mark.django_db
URL = "/api/v1/events"
LONE = "\ud800"


def _post(bot, events: list[dict]) -> dict:
    answer = bot.post(URL, {"events": events})
    assert answer.status_code == 200, answer.content
    return answer.json()


@pytest.mark.parametrize(
    "field",
    ["user_text", "response_text", "variant", "model", "id", "message_id", "conversation_id"],
)
def test_post_events__lone_surrogate_in_one_field__that_event_rejected_by_index_rest_stored(
    bot, field
):
    bad = response("bad-1")
    bad[field] = f"a{LONE}b"
    result = _post(bot, [response("ok-1"), bad, response("ok-2")])
    assert result["accepted"] == 2
    [rejected] = result["rejected"]
    assert rejected["index"] == 1
    assert rejected["error"].startswith(f"{field} holds a lone surrogate")
    assert sorted(ResponseEvent.objects.values_list("event_id", flat=True)) == ["ok-1", "ok-2"]


@pytest.mark.parametrize("make", [reaction, followup], ids=["reaction", "followup"])
def test_post_events__lone_surrogate_in_feedback__rejected_by_index(bot, make):
    bad = make("m-1")
    bad["message_id"] = LONE
    result = _post(bot, [bad, make("m-2")])
    assert result["accepted"] == 1
    assert result["rejected"][0]["index"] == 0
    assert "lone surrogate" in result["rejected"][0]["error"]


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_post_events__ts_at_the_calendar_edge__rejected_by_index_rest_stored(bot, ts):
    bad = response("edge")
    bad["ts"] = ts
    result = _post(bot, [response("ok-1"), bad])
    assert result["accepted"] == 1
    assert result["rejected"] == [
        {
            "index": 1,
            "id": "edge",
            "error": f"ts {ts!r} is outside the times selcontrol can keep: its UTC value must "
            "fall between 0001-01-02 and 9999-12-30.",
        }
    ]


@pytest.mark.parametrize("ts", ["2025-W23-1T12:00:00Z", "20250601T120000Z", "2025-06-01"])
def test_post_events__ts_not_rfc_3339__rejected_with_sentence(bot, ts):
    bad = response("iso-only")
    bad["ts"] = ts
    result = _post(bot, [bad])
    assert result["accepted"] == 0
    assert (
        "is not an RFC 3339 timestamp such as 2025-01-31T12:00:00Z"
        in result["rejected"][0]["error"]
    )


def test_post_events__rfc_3339_lower_case_t_and_z__accepted(bot):
    event = response("lower")
    event["ts"] = event["ts"].replace("T", "t").replace("Z", "z")
    assert _post(bot, [event]) == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_post_events__surrogate_id__rejection_echoes_no_id(bot):
    """The answer itself must stay valid UTF-8 for the client that reads it."""
    bad = response("x")
    bad["id"] = LONE
    answer = bot.post(URL, {"events": [bad]})
    answer.content.decode("utf-8")
    assert answer.json()["rejected"][0]["id"] is None


@pytest.mark.parametrize("variant", ['=HYPERLINK("http://evil.example")', "@SUM(1)", "v3"])
def test_post_events__variant_not_of_its_rollout__rejected_naming_the_variants(bot, variant):
    result = _post(bot, [response("ok", variant="v2_full"), response("bad", variant=variant)])
    assert result["accepted"] == 1
    [rejected] = result["rejected"]
    assert rejected["index"] == 1
    assert rejected["error"].endswith("use one of v1, v2_full, v2_simplified.")
    assert not ResponseEvent.objects.filter(event_id="bad").exists()


def test_post_events__unknown_rollout__rejected_by_index(bot):
    result = _post(bot, [response("bad", rollout="nope")])
    assert result["rejected"][0]["error"] == (
        "rollout 'nope' does not exist here; the rollouts are prompts_v2."
    )


@pytest.mark.parametrize(
    "cell",
    ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"],
)
def test_csv_export__cell_starting_a_formula__neutralised_as_text(cell):
    response_ = _csv_response("x.csv", ["variant", "change"], [{"variant": cell, "change": -0.25}])
    rows = list(csv.reader(io.StringIO(response_.content.decode())))
    assert rows[1] == ["'" + cell, "-0.25"]  # text is quoted; a negative number stays a number


def test_csv_export__list_cell_as_json__neutralised_when_it_would_start_a_formula():
    response_ = _csv_response("x.csv", ["v"], [{"v": ["=1"]}, {"v": {"a": 1}}])
    rows = list(csv.reader(io.StringIO(response_.content.decode())))
    assert rows[1:] == [[json.dumps(["=1"])], [json.dumps({"a": 1})]]
