"""What the Sel bot's real flows need from the client (issue 14) and what no recorded value may
do (issue 15, item 2): cleaned strings and times, an event the server fails on never holding up
the others, spooling on time during back-off, shutdown, multi-part replies, proactive messages
and the bot's legacy rollout values. Against small real HTTP servers scripted per test (the
live server is in test_live_bot_flows.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from selcontrol_client import (
    AsyncSelControl,
    SelControl,
    legacy_env_document,
    legacy_settings_document,
)
from selcontrol_client.aliases import MessageAliases
from selcontrol_client.assignment import decide, rule_from_config
from selcontrol_client.events import clean_string, response_event

from .conftest import free_port, wait_until
from .test_events import accept_all, response

FAST = dict(flush_interval=0.05, backoff_max=0.2, config_cache=None, push=False, report=False)


def accept_unless(marker: str):
    """A server that answers 500 to any batch holding ``marker`` in a text (as a server without
    issue 15's fix answers a lone surrogate), and accepts everything else."""

    def handler(method, path, body, headers):
        if method != "POST":
            return 404, {}, b"{}"
        if marker.encode() in body:
            return 500, {"Content-Type": "application/json"}, b'{"error": "server error"}'
        return accept_all(method, path, body, headers)

    return handler


def delivered(server) -> list[dict]:
    """Events in answers the server accepted (a 500'd batch's events are not delivered)."""
    out = []
    for method, _path, body in server.requests:
        if method == "POST" and b"POISON" not in body:
            out.extend(json.loads(body)["events"])
    return out


# -- cleaning before sending ---------------------------------------------------------------------


def test_clean_string__lone_surrogates_and_nul__replaced_and_removed():
    assert clean_string("a\ud800b\udfffc\x00d") == "a\ufffdb\ufffdc" + "d"
    assert clean_string("😀 ok") == "😀 ok"  # a real astral character is kept


def test_response_event__surrogate_in_every_string__encodes_as_utf8():
    bad = "x\ud83d"
    event = response_event(**response(variant=bad, model=bad), user_text=bad, response_text=bad,
                           conversation_id=bad, error=bad, event_id="id" + bad)  # fmt: skip
    json.dumps(event, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    assert all("\ud83d" not in str(v) for v in event.values())


@pytest.mark.parametrize(
    "ts",
    ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "not a time", "2010-01-01T00:00:00Z",
     datetime(9999, 12, 31, 23, 59, tzinfo=UTC), datetime.now(UTC) + timedelta(days=3), 12345],
)  # fmt: skip
def test_response_event__absurd_ts__replaced_by_now(ts):
    event = response_event(**response(), ts=ts)
    stamp = datetime.fromisoformat(event["ts"])
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 5


def test_response_event__naive_and_offset_ts__kept_in_utc():
    naive = datetime(2025, 6, 1, 12, 0)
    assert response_event(**response(), ts=naive)["ts"] == "2025-06-01T12:00:00+00:00"
    assert response_event(**response(), ts="2025-06-01T14:00:00+02:00")["ts"].startswith(
        "2025-06-01T12:00:00"
    )


@pytest.mark.parametrize(
    "values",
    [dict(latency_ms=float("nan")), dict(latency_ms=float("inf")), dict(input_tokens=10**20),
     dict(output_tokens=float("inf")), dict(input_tokens=-1)],
)  # fmt: skip
def test_record_response__impossible_numbers__dropped_and_others_still_sent(
    scripted, tmp_path, values
):
    server = scripted(accept_all)
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    assert bot.record_response(**response(1, **values)) is None
    assert bot.record_response(**response(2))
    assert bot.flush(5)
    assert [e["message_id"] for e in server.posted_events()] == ["900000000000000002"]
    assert bot.close()["events"]["dropped"] == 1


def test_record__ready_made_event_with_surrogate__cleaned_before_sending(scripted, tmp_path):
    server = scripted(accept_all)
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    event = response_event(**response(1))
    event["user_text"] = "hi \udc80"
    bot.record(event)
    assert bot.flush(5)
    assert server.posted_events()[0]["user_text"] == "hi \ufffd"
    bot.close()


# -- one event never holds up the others ---------------------------------------------------------


def test_sender__server_fails_on_one_event__the_other_twenty_delivered_and_it_set_aside(
    scripted, tmp_path
):
    server = scripted(accept_unless("POISON"))
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    bot.record_response(**response(0), user_text="POISON")
    for n in range(1, 21):
        bot.record_response(**response(n))
    assert wait_until(lambda: len(delivered(server)) == 20, 15), bot.stats()
    assert wait_until(lambda: bot.stats()["events"]["quarantined"] == 1, 10), bot.stats()
    stats = bot.close()["events"]
    assert len({e["id"] for e in delivered(server)}) == 20
    assert (stats["sent"], stats["buffered"], stats["spool_pending"]) == (20, 0, 0)
    quarantined = (tmp_path / "spool" / "quarantine").glob("*.jsonl")
    assert [
        json.loads(line)["user_text"] for f in quarantined for line in f.read_text().split()
    ] == ["POISON"]


def test_sender__poison_event_replayed_from_spool__others_delivered_and_it_set_aside(
    scripted, tmp_path
):
    offline = SelControl(None, None, spool_dir=tmp_path / "spool", **FAST)
    offline.record_response(**response(0), user_text="POISON")
    for n in range(1, 11):
        offline.record_response(**response(n))
    offline.close()
    server = scripted(accept_unless("POISON"))
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    assert wait_until(lambda: len(delivered(server)) == 10, 15), bot.stats()
    assert wait_until(lambda: bot.stats()["events"]["quarantined"] == 1, 10), bot.stats()
    assert bot.close()["events"]["spool_pending"] == 0


def test_sender__server_fails_on_everything__nothing_set_aside_all_delivered_when_back(
    scripted, tmp_path
):
    broken = threading.Event()
    broken.set()

    def handler(method, path, body, headers):
        if broken.is_set():
            return 500, {}, b'{"error": "database unavailable"}'
        return accept_all(method, path, body, headers)

    server = scripted(handler)
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", spool_after=60, **FAST)
    for n in range(8):
        bot.record_response(**response(n))
    assert wait_until(lambda: len(server.requests) >= 12, 15)
    assert bot.stats()["events"]["quarantined"] == 0
    broken.clear()
    assert bot.flush(15), bot.stats()
    stats = bot.close()["events"]
    assert (stats["sent"], stats["quarantined"]) == (8, 0)


def test_sender__proxy_502_to_504__never_blamed_on_the_events(scripted, tmp_path):
    server = scripted(lambda *a: (503, {}, b""))
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", spool_after=60, **FAST)
    for n in range(4):
        bot.record_response(**response(n))
    posts = lambda: [json.loads(b)["events"] for m, _, b in server.requests if m == "POST"]  # noqa: E731
    assert wait_until(lambda: len(posts()) >= 6, 15)
    assert {len(batch) for batch in posts()} == {4}  # never split
    assert bot.close(timeout=0.2)["events"]["quarantined"] == 0


# -- spooling on time during back-off ------------------------------------------------------------


def test_sender__long_backoff__events_on_disk_within_spool_after(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send fails at once
    bot = SelControl(down, "t", spool_dir=tmp_path / "spool", flush_interval=0.05,
                     backoff_max=30.0, spool_after=0.5, config_cache=None, push=False,
                     report=False)  # fmt: skip
    bot.record_response(**response(0))
    assert wait_until(lambda: bot.events.failures >= 4, 20)  # back-off is now seconds long
    recorded = time.monotonic()
    bot.record_response(**response(1))
    assert wait_until(lambda: bot.stats()["events"]["spool_pending"] == 2, 2), bot.stats()
    assert time.monotonic() - recorded <= 0.5 + 0.3  # spool_after, plus the watcher's step
    bot.close(timeout=0.2)


def test_async_sender__long_backoff__events_on_disk_within_spool_after(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> float:
        bot = AsyncSelControl(down, "t", spool_dir=tmp_path / "spool", flush_interval=0.05,
                              backoff_max=30.0, spool_after=0.5, config_cache=None, push=False,
                              report=False)  # fmt: skip
        await bot.start()
        bot.record_response(**response(0))
        while bot.events.failures < 4:  # back-off is now seconds long
            await asyncio.sleep(0.01)
        recorded = time.monotonic()
        bot.record_response(**response(1))
        while bot.stats()["events"]["spool_pending"] < 2:
            await asyncio.sleep(0.01)
        took = time.monotonic() - recorded
        await bot.close(timeout=0.2)
        return took

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) <= 0.5 + 0.3


# -- shutdown --------------------------------------------------------------------------------------


def test_close__server_down__returns_fast_with_every_event_on_disk(tmp_path):
    down = f"http://127.0.0.1:{free_port()}"
    bot = SelControl(down, "t", spool_dir=tmp_path / "spool", spool_after=60, **FAST)
    for n in range(5):
        bot.record_response(**response(n))
    assert wait_until(lambda: bot.events.failures >= 1, 5)
    started = time.monotonic()
    stats = bot.close(timeout=10)["events"]
    assert time.monotonic() - started < 3
    assert (stats["spool_pending"], stats["dropped"]) == (5, 0)


def test_close__event_recorded_after_close__spooled_and_sent_at_next_start(scripted, tmp_path):
    server = scripted(accept_all)
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    bot.close()
    assert bot.record_response(**response(7))  # a reply that finished during shutdown
    assert bot.stats()["events"]["spool_pending"] == 1
    again = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    assert again.flush(5)
    assert [e["message_id"] for e in server.posted_events()] == ["900000000000000007"]
    again.close()


def test_async_close__request_hangs__batch_spooled_not_lost(scripted, tmp_path):
    release = threading.Event()

    def hang(method, path, body, headers):
        release.wait(10)
        return None, {}, b""

    server = scripted(hang)

    async def scenario() -> dict:
        bot = AsyncSelControl(server.url, "t", spool_dir=tmp_path / "spool", timeout=1.0,
                              spool_after=60, **FAST)  # fmt: skip
        await bot.start()
        for n in range(3):
            bot.record_response(**response(n))
        await asyncio.sleep(0.3)  # the batch is in flight
        stats = await bot.close(timeout=0.5)
        bot.record_response(**response(9))  # after close: straight to disk
        return bot.stats()["events"] | {"at_close": stats["events"]["spool_pending"]}

    stats = asyncio.run(scenario())
    release.set()
    assert (stats["at_close"], stats["spool_pending"], stats["dropped"]) == (3, 4, 0)


# -- multi-part replies and proactive messages -----------------------------------------------------


def test_multi_part_reply__reactions_and_followups_on_any_part__point_at_the_reply(
    scripted, tmp_path
):
    server = scripted(accept_all)
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    bot.record_response(**response(1), extra_message_ids=[901, 902])
    for part in (900000000000000001, 901, 902):
        bot.record_reaction(channel_id=1, message_id=part, emoji="👍", user_id=part)
    bot.record_followup(channel_id=1, message_id=55, reply_to=902, text="actually no")
    bot.record_reaction(channel_id=1, message_id=12345, emoji="👍")  # not a part: unchanged
    assert bot.flush(5)
    feedback = [e for e in server.posted_events() if e["type"] != "response"]
    targets = [e.get("message_id") if e["type"] == "reaction" else e["reply_to"] for e in feedback]
    assert targets == ["900000000000000001"] * 4 + ["12345"]
    bot.close()


def test_multi_part_reply__reaction_after_a_restart__still_finds_the_reply(scripted, tmp_path):
    server = scripted(accept_all)
    options = dict(FAST, config_cache=tmp_path / "config.json", spool_dir=tmp_path / "spool")
    first = SelControl(server.url, "t", **options)
    first.record_response(**response(1))
    first.add_message_parts(900000000000000001, ["777000000000000002"])  # sent after recording
    first.close()
    second = SelControl(server.url, "t", **options)
    second.record_reaction(channel_id=1, message_id=777000000000000002, emoji="🔥")
    assert second.flush(5)
    assert server.posted_events()[-1]["message_id"] == "900000000000000001"
    second.close()


def test_message_aliases__beyond_the_limit__oldest_forgotten_and_file_compacted(tmp_path):
    path = tmp_path / "parts.jsonl"
    aliases = MessageAliases(path, limit=10)
    for n in range(50):
        aliases.add(f"r{n}", [f"p{n}"])
    assert len(aliases) == 10 and aliases.resolve("p49") == "r49" and aliases.resolve("p0") == "p0"
    assert len(path.read_text().splitlines()) <= 20
    assert MessageAliases(path, limit=10).resolve("p45") == "r45"


def test_record_proactive__ping__a_reply_without_user_text(scripted, tmp_path):
    server = scripted(accept_all)
    bot = SelControl(server.url, "t", spool_dir=tmp_path / "spool", **FAST)
    bot.record_proactive(**response(3), user_text="ignored", response_text="hey, long time!")
    assert bot.flush(5)
    [event] = server.posted_events()
    assert (event["type"], event["response_text"], "user_text" in event) == (
        "response",
        "hey, long time!",
        False,
    )
    bot.close()


# -- the bot's legacy rollout values -------------------------------------------------------------


def _variants(document: dict) -> list[str]:
    rule = rule_from_config(document["rollouts"][0])
    return [decide(rule, str(10**17 + n * 7919))[0] for n in range(300)]


def bot_rule(enabled: bool, percentage: int, simplified: int) -> list[str]:
    """Settings.select_prompt_variant of the Sel bot (config.py), over the same channels."""
    import hashlib

    def bucket(key: str) -> int:
        return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100

    out = []
    for n in range(300):
        cid = str(10**17 + n * 7919)
        if not enabled or percentage <= 0 or bucket(cid) >= percentage:
            out.append("v1")
        elif simplified <= 0:
            out.append("v2_full")
        elif simplified >= 100:
            out.append("v2_simplified")
        else:
            out.append("v2_simplified" if bucket(f"{cid}:simplified") < simplified else "v2_full")
    return out


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"ENABLE_PROMPTS_V2": "", "PROMPTS_V2_ROLLOUT_PERCENTAGE": ""}, (True, 100, 0)),
        ({"enable_prompts_v2": "FALSE"}, (False, 100, 0)),
        ({"PROMPTS_V2_ROLLOUT_PERCENTAGE": " 20 "}, (True, 20, 0)),
        ({"PROMPTS_V2_ROLLOUT_PERCENTAGE": "50.0"}, (True, 50, 0)),
        ({"PROMPTS_V2_ROLLOUT_PERCENTAGE": "150"}, (True, 150, 0)),
        ({"PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE": "30", "ENABLE_PROMPTS_V2": "on"},
         (True, 100, 30)),
    ],
)  # fmt: skip
def test_legacy_env_document__values_as_pydantic_reads_them__decides_as_the_bot(environ, expected):
    assert _variants(legacy_env_document(environ)) == bot_rule(*expected)


def test_legacy_env_document__env_file__read_with_the_environment_first(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# the bot's .env\nPROMPTS_V2_ROLLOUT_PERCENTAGE=20\n"
        "export PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE='40'\nENABLE_PROMPTS_V2=true # on\n"
    )
    document = legacy_env_document({"PROMPTS_V2_ROLLOUT_PERCENTAGE": "5"}, env_file=env_file)
    assert _variants(document) == bot_rule(True, 5, 40)
    empty_env = {"PROMPTS_V2_ROLLOUT_PERCENTAGE": ""}  # empty: ignored, the file's value applies
    assert _variants(legacy_env_document(empty_env, env_file=env_file)) == bot_rule(True, 20, 40)


def test_legacy_settings_document__bot_settings_object__decides_as_its_rule():
    settings = SimpleNamespace(
        enable_prompts_v2=True,
        prompts_v2_rollout_percentage=35,
        prompts_v2_simplified_rollout_percentage=50,
    )
    assert _variants(legacy_settings_document(settings)) == bot_rule(True, 35, 50)
