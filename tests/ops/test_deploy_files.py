"""The Dockerfile and docker-compose.yml run what the live tests run (docker is not available to
the tests, so these pin the files to the commands and config files that are tested)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from tests.faults.production import GUNICORN_COMMAND

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_dockerfile__cmd__is_the_tested_gunicorn_command():
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1)) == GUNICORN_COMMAND


def test_compose_web__command__migrates_then_execs_the_tested_gunicorn_command():
    command = compose()["services"]["web"]["command"]
    assert shlex.join(GUNICORN_COMMAND) in " ".join(command.split())
    assert "--access-logfile" not in command


def test_compose_proxy__serves_the_tested_nginx_conf_in_front_of_web():
    services = compose()["services"]
    proxy = services["proxy"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert proxy["ports"] == ["${PORT:-8000}:8080"]
    assert "ports" not in services["web"]  # only the proxy is reachable from outside
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server web:8000;" in conf and "listen 8080 default_server;" in conf
    assert services["web"]["environment"]["SELCONTROL_TRUSTED_PROXY_HOPS"] == "1"


def test_compose_worker_and_beat__restart_and_heartbeat_health_checks():
    services = compose()["services"]
    for name in ("worker", "beat"):
        service = services[name]
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"] == [
            "CMD",
            "python",
            "manage.py",
            "heartbeat",
            "check",
            name,
        ]
