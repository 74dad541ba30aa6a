"""The client against a real selcontrol server process: nothing a bot records blocks its other
events (issue 15, item 2: the exact input, then a hypothesis fuzz), and every part of a
multi-part reply counts for the one reply (issue 14)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics.models import ReactionEvent, ResponseEvent
from selcontrol_client import SelControl

from .conftest import wait_until
from .test_live_events import summary

pytestmark = pytest.mark.live

CHANNEL = "123456789012345678"
FAST = dict(flush_interval=0.05, backoff_max=0.5, push=False, report=False)


def base_id() -> int:
    return random.randrange(10**17, 9 * 10**17)


def reply(bot, message_id: int, **extra) -> str | None:
    values = dict(
        channel_id=CHANNEL,
        message_id=message_id,
        variant="v1",
        model="anthropic/claude-3-5-sonnet-20241022",
        input_tokens=1000,
        output_tokens=100,
        latency_ms=800,
    )
    values.update(extra)
    return bot.record_response(**values)


def test_lone_surrogate_reply_then_twenty__all_twenty_one_stored(
    server, rollout, bot_token, tmp_path
):
    base = base_id()
    bot = SelControl(server.url, bot_token, config_cache=None, spool_dir=tmp_path / "s", **FAST)
    reply(bot, base, user_text="hi \ud800 there", response_text="\udfff", conversation_id="c\ud800")
    for n in range(1, 21):
        reply(bot, base + n)
    assert bot.flush(20), bot.stats()
    stats = bot.close()["events"]
    ids = [str(base + n) for n in range(21)]
    assert ResponseEvent.objects.filter(message_id__in=ids).count() == 21
    assert ResponseEvent.objects.get(message_id=str(base)).user_text == "hi \ufffd there"
    assert (stats["rejected"], stats["dropped"], stats["quarantined"]) == (0, 0, 0)


def test_absurd_timestamps_in_replies__stored_with_the_time_recorded(
    server, rollout, bot_token, tmp_path
):
    base = base_id()
    bot = SelControl(server.url, bot_token, config_cache=None, spool_dir=tmp_path / "s", **FAST)
    reply(bot, base, ts="9999-12-31T23:59:59-14:00")
    reply(bot, base + 1, ts="0001-01-01T00:00:00+14:00")
    reply(bot, base + 2)
    assert bot.flush(20), bot.stats()
    bot.close()
    stored = ResponseEvent.objects.filter(message_id__in=[str(base + n) for n in range(3)])
    assert stored.count() == 3
    assert all(abs(r.ts - datetime.now(UTC)) < timedelta(minutes=5) for r in stored)


def test_multi_part_reply__three_thumbs_on_three_parts__three_on_one_reply(
    server, rollout, bot_token, tmp_path
):
    since = datetime.now(UTC) - timedelta(minutes=1)
    base = base_id()
    bot = SelControl(server.url, bot_token, config_cache=None, spool_dir=tmp_path / "s", **FAST)
    reply(bot, base, extra_message_ids=[base + 1, base + 2])
    for part in range(3):
        bot.record_reaction(channel_id=CHANNEL, message_id=base + part, emoji="👍", user_id=part)
    bot.record_followup(
        channel_id=CHANNEL, message_id=base + 9, reply_to=base + 2, text="actually no"
    )
    assert bot.flush(20), bot.stats()
    bot.close()

    def counted() -> bool:
        figures = summary(server.url, bot_token, since).get("v1") or {}
        return figures.get("reactions", {}).get("positive") == 3 and figures.get("corrections") == 1

    assert wait_until(counted, 10), summary(server.url, bot_token, since)
    assert figures_cost(summary(server.url, bot_token, since)) > 0  # priced for the bot's model
    assert ReactionEvent.objects.filter(message_id=str(base)).count() == 3


def figures_cost(variants: dict) -> float:
    return float(variants["v1"]["cost_usd"])


# -- fuzz: nothing a bot records may block its other events ----------------------------------------

anything = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=30),
    st.text(min_size=5000, max_size=9000),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(),
    st.none(),
    st.booleans(),
)
surrogates = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
texts = st.one_of(st.text(), surrogates, st.just("\x00"), st.text(min_size=10_000, max_size=20_000))
times = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "", "yesterday"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True)
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["response", "reaction", "followup"]),
    text=texts,
    ident=st.one_of(st.integers(min_value=0, max_value=2**70), texts),
    number=numbers,
    ts=times,
    emoji=anything,
)
def _fuzz(bot, sentinels, base, kind, text, ident, number, ts, emoji):
    if kind == "response":
        reply(bot, ident, user_text=text, response_text=text, variant=text[:10] or "v1",
              model=text or "m", input_tokens=number, output_tokens=number, latency_ms=number,
              conversation_id=text, ts=ts)  # fmt: skip
    elif kind == "reaction":
        bot.record_reaction(channel_id=ident, message_id=ident, emoji=emoji, user_id=text, ts=ts)
    else:
        bot.record_followup(channel_id=CHANNEL, message_id=ident, reply_to=text, text=text, ts=ts)
    sentinel = base + len(sentinels)
    sentinels.append(str(sentinel))
    assert reply(bot, sentinel)  # a normal reply right behind it


def test_fuzz__any_values_through_record__every_normal_reply_still_stored(
    server, rollout, bot_token, tmp_path
):
    bot = SelControl(server.url, bot_token, config_cache=None, spool_dir=tmp_path / "s", **FAST)
    sentinels: list[str] = []
    _fuzz(bot, sentinels, base_id())
    assert bot.flush(60), bot.stats()
    stats = bot.close()["events"]
    assert ResponseEvent.objects.filter(message_id__in=sentinels).count() == len(sentinels)
    assert (stats["buffered"], stats["spool_pending"]) == (0, 0)
