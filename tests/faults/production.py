"""The production web topology as the Dockerfile and docker-compose.yml run it, on loopback ports:
gunicorn with ``selcontrol.gunicorn_conf`` (the same config file, the same worker class and
thread count) behind nginx with ``deploy/nginx.conf`` (the same file, its upstream and listen
lines and /tmp paths rewritten for this machine)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from .conftest import ROOT, Stack

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # .ci/run installs Debian's nginx-light
GUNICORN_COMMAND = [
    "gunicorn",
    "-c",
    "python:selcontrol.gunicorn_conf",
    "selcontrol.wsgi:application",
]
"""What the Dockerfile's CMD runs (tests/ops/test_deploy_files.py checks they agree)."""


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"did not start: {log.read_text()[-3000:]}")


_STATIC_ROOT: Path | None = None


def collected_static(stack: Stack) -> Path:
    """The static files collected once, as the Dockerfile's build does (``collectstatic``):
    without them the manifest storage answers every page with a 500."""
    global _STATIC_ROOT
    if _STATIC_ROOT is None:
        root = Path(tempfile.mkdtemp(prefix="sc_prod_static_"))
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=ROOT,
            env=stack.env(STATIC_ROOT=str(root)),
            check=True,
        )
        _STATIC_ROOT = root
    return _STATIC_ROOT


class ProductionServer:
    """gunicorn as the Dockerfile starts it, bound to 127.0.0.1:port."""

    def __init__(self, stack: Stack, port: int, *extra_args: str, **env: str):
        self.stack, self.port, self.extra_args = stack, port, extra_args
        self.env = {"SELCONTROL_BIND": f"127.0.0.1:{port}", **env}
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(tempfile.mkdtemp(prefix="sc_prod_gunicorn_")) / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ProductionServer:
        command = [str(ROOT / ".venv/bin" / GUNICORN_COMMAND[0]), *GUNICORN_COMMAND[1:]]
        static = {"STATIC_ROOT": str(collected_static(self.stack))}
        self.proc = subprocess.Popen(
            [*command, *self.extra_args],
            cwd=ROOT,
            env=self.stack.env(**static, **self.env),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_for(f"{self.url}/healthz", self.proc, self.log, timeout)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.log.parent, ignore_errors=True)


class Nginx:
    """``nginx -c deploy/nginx.conf`` (rewritten for loopback) in the foreground of its own
    process group, its temporary files and logs in a directory of its own."""

    def __init__(self, listen_port: int, upstream_port: int):
        self.port = listen_port
        self.url = f"http://127.0.0.1:{listen_port}"
        self.dir = Path(tempfile.mkdtemp(prefix="sc_nginx_"))
        self.dir.chmod(0o755)  # nginx's workers run as nobody when the test runs as root
        self.log = self.dir / "nginx.log"
        self.conf = self.dir / "nginx.conf"
        text = NGINX_CONF.read_text()
        text = text.replace("server web:8000;", f"server 127.0.0.1:{upstream_port};")
        text = text.replace("listen 8080 default_server;", f"listen 127.0.0.1:{listen_port};")
        text = re.sub(r"/tmp/(nginx[\w.-]*)", lambda m: str(self.dir / m.group(1)), text)
        assert f"127.0.0.1:{upstream_port}" in text and f"127.0.0.1:{listen_port}" in text
        self.conf.write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> Nginx:
        for name in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
            path = self.dir / f"nginx-{name}"
            path.mkdir(exist_ok=True)
            path.chmod(0o777)
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_for(f"{self.url}/healthz", self.proc, self.log, timeout)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
