"""Fixtures for the fleet's live tests: a real gunicorn server of our own (port 8452 by default,
SELCONTROL_FLEET_TEST_SERVER_PORT to change it) with short fleet timeouts, and the client tests'
fixtures (committed prompts_v2 rollout, bot and chat-ops tokens, client files under tmp)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from rollout import services
from tests.client.conftest import (  # noqa: F401  (fixtures reused)
    ServerProcess,
    bot_token,
    client_kwargs,
    ops_token,
    rollout,
)
from tests.conftest import SYSTEM

FLEET_ENV = {
    "SELCONTROL_ACK_TIMEOUT_SECONDS": "3",  # flag an instance 3 s after a change it lacks
    "SELCONTROL_FLEET_LIVE_SECONDS": "4",  # not live after 4 s without a report (reports: 1 s)
}


@pytest.fixture(scope="module")
def fleet_env() -> Iterator[dict[str, str]]:
    """The short fleet timeouts, for the server process and for this test process alike."""
    from django.conf import settings  # read once at start: the test process gets them here

    saved = {k: os.environ.get(k) for k in FLEET_ENV}
    saved_settings = {k: getattr(settings, k) for k in FLEET_ENV}
    os.environ.update(FLEET_ENV)
    for key, value in FLEET_ENV.items():
        setattr(settings, key, float(value))
    yield FLEET_ENV
    for key, value in saved_settings.items():
        setattr(settings, key, value)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def fleet_server(django_db_setup, django_db_blocker, fleet_env) -> Iterator[ServerProcess]:
    proc = ServerProcess(int(os.environ.get("SELCONTROL_FLEET_TEST_SERVER_PORT", "8452")))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def live_rollout(rollout):  # noqa: F811
    """prompts_v2 at 50% (the migration leaves it with the kill switch on)."""
    return services.update_rollout(
        rollout, actor=SYSTEM, reason="start the fleet test", enabled=True, percentage=50
    )


@pytest.fixture
def chatops(fleet_server, ops_token) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(
        base_url=fleet_server.url, headers={"Authorization": f"Bearer {ops_token}"}, timeout=10
    ) as client:
        yield client
