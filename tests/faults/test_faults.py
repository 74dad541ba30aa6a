"""Production faults with real processes: PostgreSQL restarted while events stream in, Redis
killed under ingest and decisions, and the web process killed while the bot keeps deciding.

(A Celery worker killed mid-task is covered by tests/metrics/test_concurrency.py::
test_rollups__worker_killed_mid_run__exact_after_restart.)
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.db import connections

from selcontrol_client import SelControl
from tests.client.test_live_events import Ledger, matches

from .conftest import SERVER_PORT, Server, wait_until

pytestmark = pytest.mark.live

CHANNELS = [str(100000000000000000 + 7919 * n) for n in range(200)]


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


def burst(url: str, token: str, n: int = 16) -> list[int]:
    """n decide calls at once (each holds a pooled database connection while it runs)."""

    def one(channel: str) -> int:
        answer = httpx.get(
            f"{url}/api/v1/rollouts/prompts_v2/decide",
            params={"channel_id": channel},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return answer.status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, CHANNELS[:n]))


def bot_options(tmp_path) -> dict:
    return dict(
        config_cache=tmp_path / "config.json",
        spool_dir=tmp_path / "spool",
        spool_after=0.5,
        backoff_max=0.5,
        flush_interval=0.1,
        poll_interval=0.2,
        long_poll_wait=2.0,
        report=False,
    )


class Recorder(threading.Thread):
    """Records replies (and a reaction to each) until stopped, like a busy bot."""

    def __init__(self, bot: SelControl, ledger: Ledger):
        super().__init__(daemon=True)
        self.bot, self.ledger = bot, ledger
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.ledger.reply(self.bot)
            self.halt.wait(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def test_postgres_restarted_while_events_stream__every_event_counted_exactly_once(
    stack, servers, tmp_path
):
    connections.close_all()  # this process holds no connection into the restart
    bot_token = stack.token("sel-bot", "config:read", "events:write")
    server = Server(stack, SERVER_PORT)
    servers.append(server)
    server.start()
    since = datetime.now(UTC) - timedelta(minutes=1)
    ledger = Ledger()
    bot = SelControl(server.url, bot_token, **bot_options(tmp_path))
    recorder = Recorder(bot, ledger)
    recorder.start()
    assert wait_until(lambda: bot.stats()["events"]["sent"] >= 100, 30), bot.stats()

    assert all(s == 200 for s in burst(server.url, bot_token))  # the pool holds many connections
    stack.pg.restart()  # pg_ctl restart -m fast: every connection of the server's pool is cut
    assert wait_until(stack.pg.ready, 30)
    # The pool recovered at once: a burst right after the restart meets no dead connection.
    assert burst(server.url, bot_token) == [200] * 16
    sent_at_restart = bot.stats()["events"]["sent"]
    assert wait_until(lambda: bot.stats()["events"]["sent"] >= sent_at_restart + 100, 30), (
        bot.stats()
    )
    recorder.stop()

    assert bot.flush(30), bot.stats()
    events = bot.close()["events"]
    assert events["dropped"] == 0 and events["rejected"] == 0, events
    assert wait_until(lambda: matches(ledger, summary(server.url, bot_token, since)), 15), (
        summary(server.url, bot_token, since),
        ledger.responses,
        ledger.positive,
    )
    # The pool recovered: after the restart, a run of requests is answered without one 5xx.
    with httpx.Client(headers={"Authorization": f"Bearer {bot_token}"}, timeout=10) as http:
        statuses = [
            http.get(
                f"{server.url}/api/v1/rollouts/prompts_v2/decide", params={"channel_id": c}
            ).status_code
            for c in CHANNELS[:30]
        ]
    assert statuses == [200] * 30


def test_redis_killed__ingest_and_decisions_work__rollups_catch_up_exactly(
    stack, private_redis, servers, tmp_path
):
    stack.redis_url = private_redis.url
    bot_token = stack.token("sel-bot", "config:read", "events:write")
    # Real broker (no eager tasks): ingest queues its rollup run in this Redis; no worker runs
    # them, so the rollups are only made by the catch-up at the end.
    server = Server(stack, SERVER_PORT, CELERY_TASK_ALWAYS_EAGER="false")
    servers.append(server)
    server.start()
    since = datetime.now(UTC) - timedelta(minutes=1)
    ledger = Ledger()
    bot = SelControl(server.url, bot_token, **bot_options(tmp_path))
    for _ in range(20):
        ledger.reply(bot)
    assert bot.flush(20), bot.stats()
    http = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {bot_token}"}, timeout=10
    )

    def decisions() -> dict[str, str]:
        out = {}
        for channel in CHANNELS[:40]:
            answer = http.get("/api/v1/rollouts/prompts_v2/decide", params={"channel_id": channel})
            assert answer.status_code == 200, answer.text
            out[channel] = answer.json()["variant"]
        return out

    before = decisions()

    private_redis.kill()
    for _ in range(30):
        ledger.reply(bot)
    assert bot.flush(30), bot.stats()  # POST /api/v1/events answered while Redis is down
    assert decisions() == before
    assert http.get("/api/v1/config").status_code == 200
    stats = bot.stats()["events"]
    assert stats["dropped"] == 0 and stats["rejected"] == 0, stats
    assert int(stack.pg.psql("SELECT count(*) FROM metrics_dirtyhour")) > 0

    private_redis.start()
    stack.manage("update_rollups")  # what the beat's catch-up runs
    assert int(stack.pg.psql("SELECT count(*) FROM metrics_dirtyhour")) == 0
    assert matches(ledger, summary(server.url, bot_token, since)), (
        summary(server.url, bot_token, since),
        ledger.responses,
    )
    bot.close()
    http.close()


def test_web_killed__bot_keeps_deciding_from_last_config__resyncs_after_restart(
    stack, servers, tmp_path
):
    bot_token = stack.token("sel-bot", "config:read", "events:write")
    ops_token = stack.token("chatops", "rollout:operate", "config:read")
    server = Server(stack, SERVER_PORT)
    servers.append(server)
    server.start()
    ops = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ops_token}"}, timeout=10
    )
    state = ops.get("/api/v1/rollouts/prompts_v2")
    answer = ops.patch(
        "/api/v1/rollouts/prompts_v2",
        json={"enabled": True, "percentage": 50, "reason": "fault test: half on v2"},
        headers={"If-Match": state.headers["ETag"]},
    )
    assert answer.status_code == 200, answer.text
    revision = answer.json()["revision"]

    bot = SelControl(server.url, bot_token, **bot_options(tmp_path))
    assert wait_until(lambda: bot.stats()["config"]["revision"] >= revision, 15), bot.stats()
    before = {c: bot.variant("prompts_v2", c) for c in CHANNELS}
    assert set(before.values()) == {"v1", "v2_full"}  # both arms present: a real split

    server.kill9()
    errors = bot.stats()["config"]["errors"]
    assert wait_until(lambda: bot.stats()["config"]["errors"] >= errors + 3, 30), bot.stats()
    for _ in range(3):  # the server is gone, sync fails again and again: nothing changes
        assert {c: bot.variant("prompts_v2", c) for c in CHANNELS} == before

    server.start()
    answer = ops.post("/api/v1/rollouts/prompts_v2/rollback", json={"reason": "fault test"})
    assert answer.status_code == 200, answer.text
    assert wait_until(lambda: all(bot.variant("prompts_v2", c) == "v1" for c in CHANNELS), 20), (
        bot.stats()
    )
    assert bot.stats()["config"]["revision"] == answer.json()["revision"]
    bot.close()
    ops.close()
