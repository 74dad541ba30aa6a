"""The Redis cache degrades to misses while Redis is unreachable: the bot's API keeps answering
from PostgreSQL, and the rate limiter lets requests through."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from redis.exceptions import ConnectionError as RedisConnectionError

from selcontrol.cache import ResilientRedisCache

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "selcontrol.cache.ResilientRedisCache",
            "LOCATION": DOWN,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    return caches["default"]


def test_settings__redis_configured__resilient_backend_used():
    assert isinstance(caches["default"], ResilientRedisCache)


def test_cache__redis_up__stores_and_reads(db):
    cache = caches["default"]
    cache.set("ops-test", {"a": 1}, 30)
    assert cache.get("ops-test") == {"a": 1}
    assert cache.add("ops-test", 2) is False
    cache.set("ops-counter", 1, 30)
    assert cache.incr("ops-counter") == 2


def test_cache__redis_down__reads_miss_and_writes_are_noops(redis_down):
    assert redis_down.get("anything", "default") == "default"
    assert redis_down.set("k", 1) is None
    assert redis_down.add("k", 1) is False
    assert redis_down.get_many(["a", "b"]) == {}
    assert redis_down.delete("k") is False


def test_cache__redis_down__circuit_opens_for_a_few_seconds(redis_down):
    redis_down.get("first")
    assert not redis_down.available
    with pytest.raises(RedisConnectionError):
        redis_down.incr("counter")


def test_api__redis_down__config_and_decide_still_answer(redis_down, reader):
    config = reader.get("/api/v1/config")
    assert config.status_code == 200
    assert config.json()["rollouts"][0]["key"] == "prompts_v2"
    decide = reader.get("/api/v1/rollouts/prompts_v2/decide", channel_id="123456789012345678")
    assert decide.status_code == 200
    assert decide.json()["variant"] == "v1"


def test_api__redis_down__change_through_the_api_still_works(redis_down, operator_api, reader):
    etag = operator_api.get("/api/v1/rollouts/prompts_v2")["ETag"]
    response = operator_api.patch(
        "/api/v1/rollouts/prompts_v2",
        {"enabled": True, "percentage": 100, "reason": "redis down"},
        headers={"If-Match": etag},
    )
    assert response.status_code == 200
    decide = reader.get("/api/v1/rollouts/prompts_v2/decide", channel_id="123456789012345678")
    assert decide.json()["variant"] != "v1"


def test_console__redis_down__login_page_and_sign_in_work(redis_down, alice, client):
    from tests.conftest import PASSWORD

    assert client.get("/login/").status_code == 200
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
