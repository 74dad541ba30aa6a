"""The Celery worker and beat against a broker (Redis) outage, with the real processes (issue 15,
item 9): the worker started as docker-compose starts it rides out Redis being killed while it
works and processes new tasks when Redis is back; and a worker or beat that stopped working shows
in /readyz?deep=1 and in `manage.py heartbeat check` (the containers' health checks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery

from .conftest import ROOT, SERVER_PORT, PrivateRedis, Server, Stack, wait_until

pytestmark = pytest.mark.live

WORKER = ["celery", "-A", "selcontrol", "worker", "--loglevel", "INFO", "--concurrency", "2"]
BEAT = ["celery", "-A", "selcontrol", "beat", "--loglevel", "INFO"]
"""docker-compose's commands (beat's --schedule file goes to the test's directory)."""
OUTAGE_SECONDS = 12


class Process:
    """A Celery process in a session of its own, its output in a file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin" / command[0]), *command[1:]],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_stack(stack, private_redis) -> Stack:
    """The fault tests' database with the private Redis as broker and cache."""
    return Stack(stack.pg, private_redis.url)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def celery_env(stack: Stack, **extra: str) -> dict[str, str]:
    return stack.env(CELERY_TASK_ALWAYS_EAGER="false", LOG_LEVEL="INFO", **extra)


def ran(worker: Process) -> int:
    """Heartbeat tasks the worker has run (its log says so for each)."""
    return sum(
        1
        for line in worker.output().splitlines()
        if "Task selcontrol.heartbeat[" in line and "succeeded" in line
    )


def heartbeat_ok(stack: Stack, process: str, **extra: str) -> bool:
    """``manage.py heartbeat check <process>``: the containers' health check."""
    done = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "heartbeat", "check", process],
        cwd=ROOT,
        env=celery_env(stack, **extra),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def test_worker__redis_killed_twice_while_busy__survives_and_runs_new_tasks(
    celery_stack, private_redis: PrivateRedis, processes, tmp_path
):
    worker = Process(WORKER, celery_env(celery_stack), tmp_path / "worker.log")
    processes.append(worker)
    sender = Celery(broker=private_redis.url)
    sender.conf.broker_connection_retry_on_startup = True

    def send_work() -> None:
        for _ in range(10):
            sender.send_task("metrics.tasks.update_rollups")
            sender.send_task("selcontrol.heartbeat")

    assert wait_until(lambda: "ready." in worker.output(), 60), worker.output()[-3000:]
    for outage in range(2):
        send_work()
        assert wait_until(lambda: heartbeat_ok(celery_stack, "worker"), 30), worker.output()[-3000:]
        send_work()  # busy when Redis goes away
        time.sleep(0.5 * outage)
        private_redis.kill()
        time.sleep(OUTAGE_SECONDS)
        assert worker.alive, worker.output()[-3000:]
        private_redis.start()  # empty: the heartbeat key is gone until the worker writes it
        done_before = ran(worker)
        send_work()
        target = done_before + 10
        assert wait_until(lambda n=target: ran(worker) >= n, 60), worker.output()[-3000:]
        assert heartbeat_ok(celery_stack, "worker")
    assert worker.alive
    assert "Unrecoverable error" not in worker.output()
    assert worker.output().count("Connection to broker lost") >= 2


def test_heartbeats__worker_or_beat_killed__readyz_deep_503_naming_it(
    celery_stack, processes, servers, tmp_path
):
    quick = {"SELCONTROL_HEARTBEAT_SECONDS": "1", "SELCONTROL_HEARTBEAT_STALE_SECONDS": "5"}
    env = celery_env(celery_stack, **quick)
    worker = Process(WORKER, env, tmp_path / "worker.log")
    schedule = str(tmp_path / "beat-schedule")
    beat = Process([*BEAT, "--schedule", schedule], env, tmp_path / "beat.log")
    processes.extend([worker, beat])
    server = Server(celery_stack, SERVER_PORT, CELERY_TASK_ALWAYS_EAGER="false", **quick)
    servers.append(server)
    server.start()

    def readyz(deep: bool = True) -> httpx.Response:
        return httpx.get(f"{server.url}/readyz", params={"deep": 1} if deep else {}, timeout=10)

    assert wait_until(lambda: readyz().status_code == 200, 60), (readyz().json(), beat.output())
    assert readyz().json()["checks"]["worker"].startswith("ok")
    assert heartbeat_ok(celery_stack, "beat", **quick)
    assert heartbeat_ok(celery_stack, "worker", **quick)

    beat.kill()
    assert wait_until(lambda: readyz().status_code == 503, 30)
    checks = readyz().json()["checks"]
    assert checks["beat"].startswith("stale: the beat last worked")
    assert checks["worker"].startswith("ok")  # the worker's own heartbeat goes on
    assert readyz(deep=False).status_code == 200  # the load balancer keeps the web process
    assert not heartbeat_ok(celery_stack, "beat", **quick)

    worker.kill()
    assert wait_until(lambda: readyz().json()["checks"]["worker"].startswith("stale"), 30)
    assert readyz().status_code == 503
    assert not heartbeat_ok(celery_stack, "worker", **quick)
