"""Exact counts under concurrency, on PostgreSQL with committed data (transactional_db):
racing retries, a reply and its reaction racing, and a real Celery worker killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import close_old_connections, connection, connections

from metrics import rollups
from metrics.ingest.intake import record_events
from metrics.models import DirtyHour, HourlyRollup, ResponseEvent
from selcontrol.celery import app as celery_app

from .conftest import T0, reaction, response

ROOT = Path(__file__).resolve().parents[2]


def _in_threads(*jobs) -> list:
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list = []

    def run(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except Exception as exc:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_record_events__two_retries_race__counted_once(committed):
    batch = [response(f"race-{i}", ts=T0 + timedelta(seconds=i)) for i in range(1000)]
    batch += [reaction(f"m-race-{i}", eid=f"race-x-{i}") for i in range(200)]
    first, second = _in_threads(
        lambda: record_events(batch), lambda: record_events(list(reversed(batch)))
    )
    assert first.accepted + second.accepted == 1200
    assert first.duplicates + second.duplicates == 1200
    assert ResponseEvent.objects.count() == 1000
    figures = rollups.totals_by_variant(
        "prompts_v2", T0 - timedelta(hours=1), T0 + timedelta(hours=2)
    )
    assert (figures["v1"]["responses"], figures["v1"]["reactions_positive"]) == (1000, 200)


def test_record_events__reply_and_reaction_race__reaction_attributed(committed):
    for i in range(20):
        reply = response(f"pair-{i}", message_id=f"pm-{i}")
        _in_threads(
            lambda reply=reply: record_events([reply]),
            lambda i=i: record_events([reaction(f"pm-{i}", eid=f"px-{i}")]),
        )
    rollups.catch_up()
    figures = rollups.totals_by_variant(
        "prompts_v2", T0 - timedelta(hours=1), T0 + timedelta(hours=2)
    )
    assert figures["v1"]["reactions_positive"] == 20
    assert DirtyHour.objects.count() == 0


# --- a real Celery worker ---------------------------------------------------------------------


@pytest.fixture
def worker_env(committed) -> Iterator[dict]:
    """Celery non-eager for this test, the queue empty, and the env a worker subprocess needs to
    reach the test database."""
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DEBUG": "true",
    }
    yield env
    celery_app.conf.task_always_eager = eager


def _start_worker(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(ROOT / ".venv/bin/celery"),
            "-A",
            "selcontrol",
            "worker",
            "--pool",
            "solo",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _raw_equals_rollups() -> None:
    for row in HourlyRollup.objects.all():
        raw = rollups.aggregate(row.rollout_key, row.hour)[row.variant]
        assert rollups.figures_of_rollup(row) == raw, row


@pytest.mark.live
def test_rollups__worker_killed_mid_run__exact_after_restart(worker_env, tmp_path):
    hours = 240
    events = [
        response(
            f"w-{h}-{i}",
            ts=T0 + timedelta(hours=h, minutes=i),
            variant=("v1", "v2_full")[i % 2],
            latency_ms=200 + 10 * i,
        )
        for h in range(hours)
        for i in range(6)
    ]
    events += [reaction(f"m-w-{h}-0", "👎", eid=f"w-x-{h}") for h in range(hours)]
    log = tmp_path / "worker.log"
    worker = _start_worker(worker_env, log)
    try:
        assert record_events(events).accepted == len(events)  # schedules a run after the commit
        _wait(lambda: HourlyRollup.objects.exists(), 60, "the worker to start rolling up")
        os.killpg(worker.pid, signal.SIGKILL)  # mid-run: most hours are still dirty
        worker.wait(10)
        assert DirtyHour.objects.exists(), "the worker finished before it could be killed"

        # while it is down: more events, a retry of the whole batch, and exact figures anyway
        assert record_events(events).duplicates == len(events)
        record_events([response("late-1", ts=T0 + timedelta(hours=3, minutes=30))])
        expected = {"v1": hours * 3 + 1, "v2_full": hours * 3}
        window = (T0, T0 + timedelta(hours=hours))
        figures = rollups.totals_by_variant("prompts_v2", *window)
        assert {v: f["responses"] for v, f in figures.items()} == expected

        worker = _start_worker(worker_env, log)
        from metrics.tasks import update_rollups

        update_rollups.delay()  # what the beat entry does every 30 s
        _wait(lambda: not DirtyHour.objects.exists(), 90, "the restarted worker to catch up")
        figures = rollups.totals_by_variant("prompts_v2", *window)
        assert {v: f["responses"] for v, f in figures.items()} == expected
        assert figures["v1"]["reactions_negative"] == hours
        assert HourlyRollup.objects.filter(rollout_key="prompts_v2").count() == 2 * hours
        _raw_equals_rollups()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        sys.stdout.write(log.read_text()[-3000:] if log.exists() else "")
