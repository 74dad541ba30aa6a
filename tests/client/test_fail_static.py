"""Fail-static: whatever the server sends (garbage, 500s, a config of the wrong shape, nothing at
all), the bot keeps deciding from the last good config. Real HTTP servers on 127.0.0.1 that
answer badly on purpose; no mock transport."""

from __future__ import annotations

import asyncio
import json

import pytest

from selcontrol_client import AsyncSelControl, SelControl

from .conftest import config_document, wait_until

CHANNELS = [str(10**17 + n * 104729) for n in range(500)]
GOOD = config_document(percentage=50, simplified_percentage=30, revision=7)

BAD_ANSWERS = {
    "html": (200, {"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"),
    "500": (500, {}, b'{"error": "boom"}'),
    "503": (503, {"Retry-After": "1"}, b""),
    "truncated": (200, {"ETag": '"8"'}, json.dumps(GOOD).encode()[:40]),
    "wrong shape": (200, {"ETag": '"8"'}, b'{"revision": 8, "rollouts": {"prompts_v2": 1}}'),
    "bad percentage": (
        200,
        {"ETag": '"8"'},
        json.dumps(config_document(percentage=500, revision=8)).encode(),
    ),
    "empty 200": (200, {"ETag": '"8"'}, b""),
    "json null": (200, {"ETag": '"8"'}, b"null"),
    "hang up": (None, {}, b""),
}


class Misbehaving:
    def __init__(self):
        self.mode = "good"
        self.config_requests = 0

    def __call__(self, method, path, body, headers):
        if path.startswith("/api/v1/config"):
            self.config_requests += 1
            if self.mode == "good":
                return (
                    200,
                    {"ETag": '"7"', "Content-Type": "application/json"},
                    json.dumps(GOOD).encode(),
                )
            return BAD_ANSWERS[self.mode]
        return 404, {}, b""


@pytest.fixture
def misbehaving(scripted):
    behaviour = Misbehaving()
    return behaviour, scripted(behaviour)


def fast_client_kwargs(tmp_path) -> dict:
    return dict(
        config_cache=tmp_path / "config.json",
        spool_dir=None,
        push=False,
        poll_interval=0.05,
        backoff_max=0.1,
    )


@pytest.mark.parametrize("mode", sorted(BAD_ANSWERS))
def test_bad_answers__after_a_good_config__decisions_untouched(misbehaving, tmp_path, mode):
    behaviour, server = misbehaving
    bot = SelControl(server.url, "t", **fast_client_kwargs(tmp_path))
    try:
        assert wait_until(lambda: bot.revision == 7, 5)
        before = [bot.variant("prompts_v2", c) for c in CHANNELS]
        assert set(before) == {"v1", "v2_full", "v2_simplified"}
        behaviour.mode = mode
        seen = behaviour.config_requests
        assert wait_until(lambda: behaviour.config_requests >= seen + 3, 10)
        assert [bot.variant("prompts_v2", c) for c in CHANNELS] == before
        assert bot.revision == 7
        assert bot.stats()["config"]["errors"] >= 1
    finally:
        bot.close(timeout=0)


def test_bad_answers__cached_config_file__never_overwritten_by_garbage(misbehaving, tmp_path):
    behaviour, server = misbehaving
    bot = SelControl(server.url, "t", **fast_client_kwargs(tmp_path))
    assert wait_until(lambda: bot.revision == 7, 5)
    behaviour.mode = "wrong shape"
    seen = behaviour.config_requests
    assert wait_until(lambda: behaviour.config_requests >= seen + 3, 10)
    bot.close(timeout=0)
    assert json.loads((tmp_path / "config.json").read_text()) == GOOD


def test_only_garbage_from_the_start__control_variant(misbehaving, tmp_path):
    behaviour, server = misbehaving
    behaviour.mode = "html"
    bot = SelControl(server.url, "t", **fast_client_kwargs(tmp_path))
    try:
        assert wait_until(lambda: behaviour.config_requests >= 3, 10)
        assert {bot.variant("prompts_v2", c) for c in CHANNELS} == {"v1"}
        assert not any(bot.should_use_prompts_v2(c) for c in CHANNELS)
    finally:
        bot.close(timeout=0)


def test_async_client__500s_after_a_good_config__decisions_untouched(misbehaving, tmp_path):
    behaviour, server = misbehaving

    async def scenario() -> None:
        bot = AsyncSelControl(server.url, "t", **fast_client_kwargs(tmp_path))
        await bot.start()
        try:
            assert await bot.wait_until_synced(5)
            before = [bot.variant("prompts_v2", c) for c in CHANNELS]
            behaviour.mode = "500"
            seen = behaviour.config_requests
            for _ in range(500):
                if behaviour.config_requests >= seen + 3:
                    break
                await asyncio.sleep(0.02)
            assert behaviour.config_requests >= seen + 3
            assert [bot.variant("prompts_v2", c) for c in CHANNELS] == before
        finally:
            await bot.close(timeout=0)

    asyncio.run(scenario())
