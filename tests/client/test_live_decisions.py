"""The client against a real selcontrol server process: local decisions equal the server's
decide endpoint, and an emergency rollback reaches a running client within 2 seconds."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from rollout import services
from rollout.models import ConfigState
from selcontrol_client import AsyncSelControl, SelControl
from tests.conftest import SYSTEM

from .conftest import wait_until

pytestmark = pytest.mark.live

ROLLBACK_DEADLINE = 2.0
# The rollback tests set the fallback ETag poll to 30 s: only the long-poll can meet the deadline.


def snowflakes(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(rng.randint(10**16, 2**63 - 1)) for _ in range(n)]


def current_revision() -> int:
    return ConfigState.objects.get(pk=1).revision


def test_variant__many_channels_and_configs__same_answers_as_decide_endpoint(
    server, rollout, bot_token, client_kwargs
):
    channels = snowflakes(150, seed=4)
    overridden = {channels[0]: "v2_simplified", channels[1]: "v1", channels[2]: "v2_full"}
    for channel, variant in overridden.items():
        services.set_override(rollout, channel, variant=variant, actor=SYSTEM, reason="test")
    services.set_override(
        rollout,
        channels[3],
        variant="v2_simplified",
        actor=SYSTEM,
        reason="test",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    configs = [
        {"enabled": True, "percentage": 5},
        {"enabled": True, "percentage": 20, "simplified_percentage": 30},
        {"enabled": True, "percentage": 50, "simplified_percentage": 100},
        {"enabled": True, "percentage": 73, "strategy": "daily_rotation"},
        {"enabled": False},
    ]
    bot = SelControl(server.url, bot_token, **client_kwargs)
    http = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {bot_token}"}, timeout=10
    )

    def served_decision(channel: str) -> dict:
        answer = http.get("/api/v1/rollouts/prompts_v2/decide", params={"channel_id": channel})
        assert answer.status_code == 200, answer.text
        return answer.json()

    try:
        compared = 0
        for config in configs:
            services.update_rollout(rollout, actor=SYSTEM, reason="test", **config)
            revision = current_revision()
            assert wait_until(lambda r=revision: bot.revision == r, 5), config
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(served_decision, channels))
            for channel, served in zip(channels, answers, strict=True):
                assert bot.decide("prompts_v2", channel) == (served["variant"], served["reason"])
                assert bot.variant("prompts_v2", channel) == served["variant"]
                assert bot.variant("prompts_v2", int(channel)) == served["variant"]
                compared += 1
        assert compared == len(channels) * len(configs)
    finally:
        http.close()
        bot.close(timeout=1)


def test_rollback__running_thread_client__sees_control_within_2s(
    server, rollout, bot_token, ops, client_kwargs
):
    services.update_rollout(rollout, actor=SYSTEM, reason="test", enabled=True, percentage=100)
    channel = "123456789012345678"
    with SelControl(server.url, bot_token, poll_interval=30, **client_kwargs) as bot:
        assert wait_until(lambda: bot.variant("prompts_v2", channel) == "v2_full", 5)
        time.sleep(0.3)  # let the client settle into its long-poll
        started = time.monotonic()
        answer = ops.post("/api/v1/rollouts/prompts_v2/rollback", json={"reason": "bad replies"})
        assert answer.status_code == 200
        seen = wait_until(lambda: bot.variant("prompts_v2", channel) == "v1", ROLLBACK_DEADLINE)
        assert seen, f"rollback not seen after {time.monotonic() - started:.2f}s"
        assert bot.decide("prompts_v2", channel) == ("v1", "kill_switch")


def test_rollback__running_async_client__sees_control_within_2s(
    server, rollout, bot_token, ops, client_kwargs
):
    services.update_rollout(rollout, actor=SYSTEM, reason="test", enabled=True, percentage=100)
    channel = "223456789012345678"

    async def scenario() -> bool:
        async with AsyncSelControl(server.url, bot_token, poll_interval=30, **client_kwargs) as bot:
            assert await bot.wait_until_synced(5)
            assert bot.variant("prompts_v2", channel) == "v2_full"
            await asyncio.sleep(0.3)
            answer = await asyncio.to_thread(
                ops.post, "/api/v1/rollouts/prompts_v2/rollback", json={"reason": "bad"}
            )
            assert answer.status_code == 200
            deadline = time.monotonic() + ROLLBACK_DEADLINE
            while time.monotonic() < deadline:
                if bot.variant("prompts_v2", channel) == "v1":
                    return True
                await asyncio.sleep(0.01)
            return False

    assert asyncio.run(scenario())


def test_should_use_prompts_v2__follows_percentage_from_server(
    server, rollout, bot_token, client_kwargs
):
    services.update_rollout(rollout, actor=SYSTEM, reason="test", enabled=True, percentage=100)
    with SelControl(server.url, bot_token, **client_kwargs) as bot:
        assert wait_until(lambda: bot.revision == current_revision(), 5)
        assert bot.should_use_prompts_v2("42")
        assert bot.prompt_variant("42") == "v2_full"


def test_config_cache__written_after_sync__lets_next_start_decide_offline(
    server, rollout, bot_token, client_kwargs
):
    services.update_rollout(rollout, actor=SYSTEM, reason="test", enabled=True, percentage=100)
    with SelControl(server.url, bot_token, **client_kwargs) as bot:
        assert wait_until(lambda: bot.revision == current_revision(), 5)
    offline = SelControl(None, None, **client_kwargs)
    assert offline.stats()["config"]["source"] == "bootstrap"
    assert offline.variant("prompts_v2", "42") == "v2_full"
    offline.close(timeout=0)


# -- the long-poll endpoint itself ---------------------------------------------------------------


def test_config_wait__no_change__304_after_the_wait(server, rollout, bot_token):
    headers = {"Authorization": f"Bearer {bot_token}"}
    first = httpx.get(f"{server.url}/api/v1/config", headers=headers)
    answer = httpx.get(
        f"{server.url}/api/v1/config",
        params={"wait": "0.3"},
        headers={**headers, "If-None-Match": first.headers["ETag"]},
        timeout=5,
    )
    assert answer.status_code == 304
    assert answer.headers["ETag"] == first.headers["ETag"]


def test_config_wait__change_while_waiting__200_with_new_config(server, rollout, bot_token):
    headers = {"Authorization": f"Bearer {bot_token}"}
    first = httpx.get(f"{server.url}/api/v1/config", headers=headers)

    def change() -> None:
        time.sleep(0.3)
        try:
            services.update_rollout(
                "prompts_v2", actor=SYSTEM, reason="test", enabled=True, percentage=10
            )
        finally:
            connection.close()

    thread = threading.Thread(target=change)
    thread.start()
    answer = httpx.get(
        f"{server.url}/api/v1/config",
        params={"wait": "10"},
        headers={**headers, "If-None-Match": first.headers["ETag"]},
        timeout=15,
    )
    thread.join()
    assert answer.status_code == 200
    assert answer.headers["ETag"] != first.headers["ETag"]
    assert answer.json()["revision"] == current_revision()


def test_config_wait__not_a_number__400_naming_wait(server, rollout, bot_token):
    answer = httpx.get(
        f"{server.url}/api/v1/config",
        params={"wait": "soon"},
        headers={"Authorization": f"Bearer {bot_token}"},
    )
    assert answer.status_code == 400
    assert "wait" in answer.json()["error"]
