"""Events through a real selcontrol server process to the summary: nothing lost, nothing counted
twice, across a server outage and a bot restart in the middle of it."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from rollout import services
from selcontrol_client import AsyncSelControl, SelControl
from tests.conftest import SYSTEM

from .conftest import ServerProcess, free_port, wait_until

pytestmark = pytest.mark.live

CHANNELS = ["123456789012345678", "223456789012345678", "323456789012345678"]


class Ledger:
    """What the bot recorded, to compare with the summary."""

    def __init__(self):
        self.base = random.randrange(10**17, 9 * 10**17)  # message ids unique to this test
        self.responses: dict[str, int] = {}
        self.input_tokens: dict[str, int] = {}
        self.positive: dict[str, int] = {}
        self.n = 0

    def reply(self, bot, *, react: bool = True) -> None:
        self.n += 1
        channel = CHANNELS[self.n % len(CHANNELS)]
        variant = "v2_full" if self.n % 3 == 0 else "v1"
        message = str(self.base + self.n)
        tokens = 1000 + self.n
        assert bot.record_response(
            channel_id=channel,
            message_id=message,
            variant=variant,
            model="anthropic/claude-3.5-sonnet",
            input_tokens=tokens,
            output_tokens=50,
            latency_ms=800 + self.n,
        )
        self.responses[variant] = self.responses.get(variant, 0) + 1
        self.input_tokens[variant] = self.input_tokens.get(variant, 0) + tokens
        if react:
            bot.record_reaction(channel_id=channel, message_id=message, emoji="👍", user_id=7)
            self.positive[variant] = self.positive.get(variant, 0) + 1


def summary(url: str, token: str, since: datetime) -> dict:
    until = datetime.now(UTC) + timedelta(minutes=1)
    answer = httpx.get(
        f"{url}/api/v1/rollouts/prompts_v2/summary",
        params={"since": since.isoformat(), "until": until.isoformat()},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["variants"]


def matches(ledger: Ledger, variants: dict) -> bool:
    for variant, count in ledger.responses.items():
        figures = variants.get(variant)
        if figures is None or figures["responses"] != count:
            return False
        if figures["input_tokens"] != ledger.input_tokens[variant]:
            return False
        if figures["reactions"]["positive"] != ledger.positive.get(variant, 0):
            return False
    return set(variants) <= set(ledger.responses)


@pytest.fixture
def own_server(django_db_setup, rollout):
    """A server of this test's own, to stop and restart."""
    proc = ServerProcess(free_port(8402, 8409))
    proc.start()
    yield proc
    proc.stop()


def test_server_stopped_and_restarted__every_event_counted_exactly_once(
    own_server, bot_token, tmp_path
):
    since = datetime.now(UTC) - timedelta(minutes=1)
    ledger = Ledger()
    options = dict(
        config_cache=tmp_path / "config.json",
        spool_dir=tmp_path / "spool",
        spool_after=0.3,
        backoff_max=0.5,
        flush_interval=0.1,
    )
    bot = SelControl(own_server.url, bot_token, **options)
    for _ in range(20):
        ledger.reply(bot)
    assert bot.flush(15)

    own_server.stop()
    for _ in range(30):
        ledger.reply(bot)
    assert wait_until(lambda: bot.stats()["events"]["spooled"] >= 60, 10)
    for _ in range(5):
        ledger.reply(bot)
    first_life = bot.close(timeout=0.5)["events"]  # the bot restarts while the server is down
    assert first_life["dropped"] == 0 and first_life["rejected"] == 0

    bot = SelControl(own_server.url, bot_token, **options)
    for _ in range(10):
        ledger.reply(bot)
    # A reply recorded twice with the same id (e.g. the bot's own retry) counts once.
    twice = {
        "id": "same-event-id-0001",
        "type": "response",
        "ts": datetime.now(UTC).isoformat(),
        "channel_id": CHANNELS[0],
        "message_id": "990000000000000001",
        "rollout": "prompts_v2",
        "variant": "v1",
        "model": "m",
        "input_tokens": 5,
        "output_tokens": 1,
        "latency_ms": 1,
        "error": None,
    }
    bot.record(twice)
    bot.record(dict(twice))
    ledger.responses["v1"] += 1
    ledger.input_tokens["v1"] += 5

    # While the server is down, an operator raises the percentage (straight in the database).
    services.update_rollout("prompts_v2", actor=SYSTEM, reason="test", enabled=True, percentage=100)
    assert bot.variant("prompts_v2", CHANNELS[0]) == "v1"  # still the last good config

    own_server.start()
    assert wait_until(lambda: bot.variant("prompts_v2", CHANNELS[0]) == "v2_full", 10)
    assert bot.flush(20), bot.stats()
    second_life = bot.close()["events"]
    assert second_life["replayed"] > 0 and second_life["dropped"] == 0
    assert second_life["rejected"] == 0
    assert wait_until(lambda: matches(ledger, summary(own_server.url, bot_token, since)), 10), (
        summary(own_server.url, bot_token, since),
        ledger.responses,
    )


def test_async_client__events__counted_once_in_summary(server, rollout, bot_token, tmp_path):
    since = datetime.now(UTC) - timedelta(minutes=1)
    ledger = Ledger()

    async def scenario() -> dict:
        async with AsyncSelControl(
            server.url, bot_token, config_cache=None, spool_dir=tmp_path / "spool"
        ) as bot:
            for _ in range(12):
                ledger.reply(bot)
            assert await bot.flush(10)
            return bot.stats()["events"]

    stats = asyncio.run(scenario())
    assert stats["sent"] == 24
    assert wait_until(lambda: matches(ledger, summary(server.url, bot_token, since)), 10), (
        [v["reactions"] for v in summary(server.url, bot_token, since).values()],
        ledger.positive,
    )
