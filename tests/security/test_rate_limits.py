"""Login and API rate limits: fixed one-minute windows in the shared cache (Redis here)."""

from __future__ import annotations

import pytest
from django.test import Client

from selcontrol.security import FixedWindowLimiter, client_ip
from tests.conftest import PASSWORD, ApiClient


def _login(client: Client, username: str, password: str = "wrong", ip: str = "10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.mark.django_db
def test_login__over_the_limit__429_with_retry_after_and_a_sentence(settings, alice):
    settings.SELCONTROL_LOGIN_RATE_LIMIT = 3
    client = Client()
    for _ in range(3):
        assert _login(client, "alice").status_code == 200  # the form again, with its error
    response = _login(client, "alice")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "Too many sign-in attempts" in response.content.decode()


@pytest.mark.django_db
def test_login__over_the_limit__even_the_right_password_is_refused(settings, alice):
    settings.SELCONTROL_LOGIN_RATE_LIMIT = 2
    client = Client()
    _login(client, "alice")
    _login(client, "alice")
    assert _login(client, "alice", PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_login__one_user_throttled__another_user_from_the_same_ip_signs_in(settings, alice, bob):
    settings.SELCONTROL_LOGIN_RATE_LIMIT = 2
    client = Client()
    for _ in range(3):
        _login(client, "alice")
    response = _login(client, "bob", PASSWORD)
    assert response.status_code == 302


@pytest.mark.django_db
def test_login__username_case_varied__counts_as_one_user(settings, alice):
    settings.SELCONTROL_LOGIN_RATE_LIMIT = 2
    client = Client()
    _login(client, "alice")
    _login(client, "ALICE")
    assert _login(client, "Alice").status_code == 429


@pytest.mark.django_db
def test_login__many_usernames_from_one_ip__ip_limit_applies(settings):
    settings.SELCONTROL_LOGIN_IP_RATE_LIMIT = 3
    client = Client()
    statuses = [_login(client, f"user{i}").status_code for i in range(4)]
    assert statuses == [200] * 3 + [429]
    assert _login(client, "someone", ip="10.0.0.2").status_code == 200


@pytest.mark.django_db
def test_admin_login__over_the_limit__429(settings, alice):
    settings.SELCONTROL_LOGIN_RATE_LIMIT = 1
    client = Client()
    client.post("/admin/login/", {"username": "alice", "password": "x"})
    assert client.post("/admin/login/", {"username": "alice", "password": "x"}).status_code == 429


@pytest.mark.django_db
def test_login_page__get__never_counted(settings):
    settings.SELCONTROL_LOGIN_RATE_LIMIT = 1
    settings.SELCONTROL_LOGIN_IP_RATE_LIMIT = 1
    client = Client()
    assert [client.get("/login/").status_code for _ in range(5)] == [200] * 5


@pytest.mark.django_db
def test_api__over_the_limit__429_json_error_with_retry_after(settings, make_token):
    settings.SELCONTROL_API_RATE_LIMIT = 4
    api = ApiClient(make_token("config:read"))
    assert [api.get("/api/v1/config").status_code for _ in range(4)] == [200] * 4
    response = api.get("/api/v1/config")
    assert response.status_code == 429
    assert "SELCONTROL_API_RATE_LIMIT" in response.json()["error"]
    assert 1 <= int(response["Retry-After"]) <= 60


@pytest.mark.django_db
def test_api__one_token_throttled__another_token_unaffected(settings, make_token):
    settings.SELCONTROL_API_RATE_LIMIT = 2
    busy, quiet = ApiClient(make_token("config:read")), ApiClient(make_token("config:read"))
    for _ in range(3):
        busy.get("/api/v1/config")
    assert busy.get("/api/v1/config").status_code == 429
    assert quiet.get("/api/v1/config").status_code == 200


@pytest.mark.django_db
def test_api__default_limit__a_bots_burst_is_never_throttled(make_token):
    """200 config polls and decides in a row (a bot makes a few a minute)."""
    api = ApiClient(make_token("config:read", "events:write"))
    statuses = {api.get("/api/v1/config").status_code for _ in range(100)}
    statuses |= {
        api.get("/api/v1/rollouts/prompts_v2/decide", channel_id="123456789012345678").status_code
        for _ in range(100)
    }
    assert statuses == {200}


@pytest.mark.django_db
def test_api__limit_zero__turns_limiting_off(settings, make_token):
    settings.SELCONTROL_API_RATE_LIMIT = 0
    api = ApiClient(make_token("config:read"))
    assert {api.get("/api/v1/config").status_code for _ in range(20)} == {200}


@pytest.mark.django_db
def test_api__cache_unreachable__requests_let_through(settings, make_token, json_log):
    settings.SELCONTROL_API_RATE_LIMIT = 1
    token = make_token("config:read")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    FixedWindowLimiter._last_warning = 0.0
    api = ApiClient(token)
    assert [api.get("/api/v1/rollouts").status_code for _ in range(3)] == [200] * 3
    assert "rate limiting is off: the cache is unreachable" in json_log.text


def test_limiter__next_window__counts_from_zero(db):
    limiter = FixedWindowLimiter("unit", limit=2, window=60)
    start = 1_800_000_000 - 1_800_000_000 % 60
    assert [limiter.hit("k", now=start + s).allowed for s in (1, 2, 3)] == [True, True, False]
    verdict = limiter.hit("k", now=start + 61)
    assert verdict.allowed and verdict.count == 1


def test_limiter__retry_after__is_the_rest_of_the_window(db):
    limiter = FixedWindowLimiter("unit-retry", limit=1, window=60)
    start = 1_800_000_000 - 1_800_000_000 % 60
    limiter.hit("k", now=start + 15)
    assert limiter.hit("k", now=start + 15.5).retry_after == 45


def test_client_ip__no_trusted_proxy__forwarded_for_is_ignored(rf, settings):
    settings.SELCONTROL_TRUSTED_PROXY_HOPS = 0
    request = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_ip(request) == "10.0.0.9"


def test_client_ip__one_trusted_proxy__rightmost_forwarded_address(rf, settings):
    settings.SELCONTROL_TRUSTED_PROXY_HOPS = 1
    request = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    assert client_ip(request) == "203.0.113.7"


def test_limiter__large_limit__adds_to_the_shared_count_in_batches(db):
    from django.core.cache import cache

    limiter = FixedWindowLimiter("unit-batch", limit=6000, window=60)
    assert limiter.batch == 20
    start = 1_800_000_000 - 1_800_000_000 % 60
    key = f"ratelimit:unit-batch:{start}:k"
    limiter.hit("k", now=start + 1)  # the first hit of a window always goes to the cache
    assert cache.get(key) == 1
    for _ in range(19):
        assert limiter.hit("k", now=start + 1).allowed
    assert cache.get(key) == 1  # 19 hits held locally...
    verdict = limiter.hit("k", now=start + 1)
    assert cache.get(key) == 21  # ...and added with the 20th
    assert verdict.count == 21


def test_limiter__large_limit__another_processs_hits_count(db):
    """Two limiters stand for two web processes sharing Redis."""
    one, two = FixedWindowLimiter("unit-shared", 200), FixedWindowLimiter("unit-shared", 200)
    start = 1_800_000_000 - 1_800_000_000 % 60
    for _ in range(150):
        one.hit("k", now=start + 1)
    one.SYNC_SECONDS = two.SYNC_SECONDS = 0  # sync every hit from here on
    one.hit("k", now=start + 1)
    verdicts = [two.hit("k", now=start + 2) for _ in range(60)]
    assert verdicts[0].allowed
    assert not verdicts[-1].allowed
