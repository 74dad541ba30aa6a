"""Shared fixtures: personas (operator alice, reviewer bob, viewer carol), API tokens, and an
API client that speaks JSON with a bearer token. Outbound HTTP beyond 127.0.0.1 is blocked."""

from __future__ import annotations

import json
import socket

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.db.models.signals import post_migrate
from django.test import Client

from rollout import config as rollout_config
from rollout import services
from rollout.models import Rollout

PASSWORD = "correct horse battery staple"
PROJECT_APPS = ("rollout", "metrics")


def replay_data_migrations(using: str = "default") -> None:
    """Re-run the forward RunPython steps of the project's migrations, in migration order.

    A transactional test (live servers, worker and browser tests) ends with a flush that empties
    every table, and with them what the data migrations created: the roles' groups, the
    prompts_v2 rollout and its phases, the config revision row, emoji sentiments, correction
    patterns, prices and guardrail rules. Each step is idempotent (get_or_create)."""
    from django.apps import apps
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations.special import RunPython

    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    plan: list[tuple[str, str]] = []
    for target in sorted(k for k in loader.graph.leaf_nodes() if k[0] in PROJECT_APPS):
        plan += [k for k in loader.graph.forwards_plan(target) if k not in plan]
    for key in plan:
        if key[0] in PROJECT_APPS:
            for operation in loader.graph.nodes[key].operations:
                if isinstance(operation, RunPython):
                    operation.code(apps, None)


def _replay_after_flush(sender, using: str = "default", **kwargs) -> None:
    # post_migrate is sent once per app after every migrate and every test flush; metrics is the
    # last project app, so by then every table exists again.
    if sender.name == PROJECT_APPS[-1]:
        replay_data_migrations(using)


post_migrate.connect(_replay_after_flush, dispatch_uid="tests.replay_data_migrations")


# -- the flush after a transactional test, made safe against live servers still at work -----------
#
# A live-server test (gunicorn, a Celery worker, a browser) can end while the server still answers
# a request its client sent last, e.g. the config a client fetches right after a rollback. The
# flush's TRUNCATE locks every table one by one; a multi-table SELECT running meanwhile holds one
# and waits for another, and PostgreSQL ends the deadlock by failing one side, sometimes the
# TRUNCATE ("Database test_selcontrol couldn't be flushed", CI at stop 20), and the next test then
# finds the last one's rows. So: wait until no other session on the test database is mid-query
# or mid-transaction (at most FLUSH_QUIET_SECONDS), and retry a flush that failed that way.

FLUSH_QUIET_SECONDS = 15.0
FLUSH_ATTEMPTS = 4


def wait_for_quiet_database(using: str = "default", timeout: float = FLUSH_QUIET_SECONDS) -> bool:
    """True once no other backend on this database is running a statement or holding a
    transaction open; False if that did not happen within ``timeout``."""
    import time

    from django.db import connections

    connection = connections[using]
    if connection.vendor != "postgresql":
        return True
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')"
            )
            (busy,) = cursor.fetchone()
        if not busy:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _install_patient_flush() -> None:
    import time

    from django.core.management.base import CommandError
    from django.db import connections
    from django.test import TransactionTestCase

    if getattr(TransactionTestCase._fixture_teardown, "patient", False):
        return
    flush = TransactionTestCase._fixture_teardown

    def patient_fixture_teardown(self) -> None:
        for attempt in range(1, FLUSH_ATTEMPTS + 1):
            for name in self._databases_names(include_mirrors=False):
                wait_for_quiet_database(name)
            try:
                return flush(self)
            except CommandError:
                if attempt == FLUSH_ATTEMPTS:
                    raise
                for name in self._databases_names(include_mirrors=False):
                    connections[name].close()  # a fresh session for the next try
                time.sleep(0.2 * attempt)

    patient_fixture_teardown.patient = True  # type: ignore[attr-defined]
    patient_fixture_teardown.plain = flush  # type: ignore[attr-defined]
    TransactionTestCase._fixture_teardown = patient_fixture_teardown


_install_patient_flush()


@pytest.fixture(autouse=True)
def _block_outbound_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ):
            raise RuntimeError(f"tests may not connect to {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()
    rollout_config._rules_memo.clear()
    yield
    rollout_config._rules_memo.clear()


def make_user(username: str, group: str | None) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def alice(db) -> User:
    """An operator."""
    return make_user("alice", "operators")


@pytest.fixture
def bob(db) -> User:
    """A reviewer."""
    return make_user("bob", "reviewers")


@pytest.fixture
def carol(db) -> User:
    """A viewer."""
    return make_user("carol", "viewers")


@pytest.fixture
def operator_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def reviewer_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


@pytest.fixture
def viewer_client(carol) -> Client:
    client = Client()
    client.force_login(carol)
    return client


@pytest.fixture
def rollout(db) -> Rollout:
    """The default prompts_v2 rollout created by the migration."""
    return Rollout.objects.get(key="prompts_v2")


SYSTEM = services.Actor("pytest", via="system")


def changed_event(response) -> bool:
    """Whether an answer triggers htmx's ``rollout-changed`` event, which the console's other
    sections listen for (django-htmx's ``trigger_client_event`` writes HX-Trigger as JSON)."""
    return json.loads(response.get("HX-Trigger") or "{}") == {"rollout-changed": {}}


class ApiClient:
    """Django's test client with a bearer token and JSON bodies."""

    def __init__(self, token: str | None):
        self.client = Client()
        self.token = token

    def _headers(self, extra: dict | None) -> dict:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def get(self, path: str, headers: dict | None = None, **params):
        return self.client.get(path, params, headers=self._headers(headers))

    def _send(self, method: str, path: str, body, headers: dict | None):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return getattr(self.client, method)(
            path, data=data, content_type="application/json", headers=self._headers(headers)
        )

    def post(self, path, body=None, headers=None):
        return self._send("post", path, body if body is not None else {}, headers)

    def patch(self, path, body=None, headers=None):
        return self._send("patch", path, body if body is not None else {}, headers)

    def put(self, path, body=None, headers=None):
        return self._send("put", path, body if body is not None else {}, headers)

    def delete(self, path, headers=None, **params):
        from urllib.parse import urlencode

        query = f"?{urlencode(params)}" if params else ""
        return self.client.delete(path + query, headers=self._headers(headers))


@pytest.fixture
def make_token(db):
    def factory(*scopes: str, name: str | None = None) -> str:
        factory.n += 1
        _, raw = services.create_api_token(
            name=name or f"token-{factory.n}", scopes=list(scopes), actor=SYSTEM
        )
        return raw

    factory.n = 0
    return factory


@pytest.fixture
def reader(make_token) -> ApiClient:
    """A bot's token: config:read and events:write."""
    return ApiClient(make_token("config:read", "events:write", name="bot"))


@pytest.fixture
def operator_api(make_token) -> ApiClient:
    """A chat-ops token: rollout:operate and config:read."""
    return ApiClient(make_token("rollout:operate", "config:read", name="chatops"))
