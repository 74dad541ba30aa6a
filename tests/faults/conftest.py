"""Fault tests: a real PostgreSQL of the tests' own (restarted on purpose), a real Redis of their
own (killed on purpose), and real gunicorn servers (killed with SIGKILL), so that breaking them
never touches the machine's PostgreSQL on 5432 or Redis on 6379, or anyone else's tests.

Ports 8530-8539 belong to these tests (SELCONTROL_FAULTS_PORT_BASE moves them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PORT_BASE = int(os.environ.get("SELCONTROL_FAULTS_PORT_BASE", "8530"))
PG_PORT, REDIS_PORT, SERVER_PORT = PORT_BASE + 1, PORT_BASE, PORT_BASE + 2
PG_BIN = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])


def _as_postgres(*args: str, server: bool = False) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the postgres user. ``server=True`` for pg_ctl start/restart:
    the postmaster it leaves running must not hold our pipes open (we would wait forever)."""
    command = list(args) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
    if server:
        return subprocess.run(
            command,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb into a temporary directory) on 127.0.0.1:port."""

    def __init__(self, port: int):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="sc_faults_pg_"))
        self.data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.url = f"postgres://postgres@127.0.0.1:{port}/selcontrol"

    def init(self) -> None:
        _as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self.start()
        _as_postgres(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "selcontrol"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "start",
            server=True,
        )

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes back."""
        _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-m",
            "fast",
            "-w",
            "restart",
            server=True,
        )

    def ready(self) -> bool:
        done = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return done.returncode == 0

    def psql(self, sql: str) -> str:
        return _as_postgres(
            str(PG_BIN / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-d",
            "selcontrol",
            "-tAc",
            sql,
        ).stdout.strip()

    def destroy(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ]
            if os.geteuid() == 0
            else [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` on 127.0.0.1:port, no persistence; kill() is SIGKILL."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(self.ping, 10), "redis-server did not start"

    def ping(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() == "PONG"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


class Stack:
    """What a deployment needs: the database URL, the Redis URL, and ``manage.py`` against them."""

    def __init__(self, pg: PrivatePostgres, redis_url: str):
        self.pg = pg
        self.redis_url = redis_url

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": "fault-tests-" + "k" * 40,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    def manage(self, *args: str, **extra: str) -> str:
        done = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def token(self, name: str, *scopes: str) -> str:
        args = [a for scope in scopes for a in ("--scope", scope)]
        unique = f"{name}-{uuid.uuid4().hex[:8]}"  # token names are unique per database
        return self.manage("create_api_token", unique, *args).strip().splitlines()[-1]


class Server:
    """``gunicorn selcontrol.wsgi`` in a session of its own (so kill -9 takes master and worker)."""

    def __init__(self, stack: Stack, port: int, **env: str):
        self.stack, self.port, self.extra = stack, port, env
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(f"/tmp/sc_faults_server_{port}.log")

    def start(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "selcontrol.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "1",
                "-k",
                "gthread",
                "--threads",
                "16",
                "--timeout",
                "60",
                "--graceful-timeout",
                "2",
            ],
            cwd=ROOT,
            env=self.stack.env(**self.extra),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    """A bounded wait for something to happen (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """One migrated PostgreSQL cluster of the fault tests' own for the session."""
    pg = PrivatePostgres(PG_PORT)
    try:
        pg.init()
        Stack(pg, "redis://127.0.0.1:6379/0").manage("migrate", "--noinput")
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis(REDIS_PORT)
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture
def stack(private_pg) -> Stack:
    """The private database with a fresh default rollout state, and the tests' own Redis db."""
    private_pg.psql(
        "TRUNCATE metrics_responseevent, metrics_reactionevent, metrics_followupevent, "
        "metrics_hourlyrollup, metrics_dirtyhour, metrics_conversationstat CASCADE"
    )
    return Stack(private_pg, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()
