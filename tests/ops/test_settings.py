"""Every setting is read once, in selcontrol/settings.py, and checked there (issue 17, item 4): a
bad value stops the process at start-up with a sentence naming the variable, instead of failing
later inside a Celery task; and the variables the README and docs list are the ones it reads,
with the defaults they say."""

from __future__ import annotations

import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "selcontrol" / "settings.py"
GUNICORN = {"SELCONTROL_BIND", "WEB_CONCURRENCY", "SELCONTROL_WEB_THREADS"}
"""Read by selcontrol/gunicorn_conf.py: gunicorn's own configuration, before Django starts."""


def load_settings(monkeypatch, **env: str) -> dict:
    """settings.py run afresh with ``env`` on top of a clean environment."""
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def settings_variables() -> set[str]:
    return set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', SETTINGS.read_text()))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SELCONTROL_ACK_TIMEOUT_SECONDS",
            "ten",
            "SELCONTROL_ACK_TIMEOUT_SECONDS='ten' is not a number",
        ),
        ("SELCONTROL_ACK_TIMEOUT_SECONDS", "-1", "must be at least 0"),
        (
            "SELCONTROL_FLEET_LIVE_SECONDS",
            "0",
            "SELCONTROL_FLEET_LIVE_SECONDS='0' must be more than 0",
        ),
        (
            "SELCONTROL_FLEET_DROP_SECONDS",
            "nan",
            "SELCONTROL_FLEET_DROP_SECONDS='nan' is not a finite",
        ),
        (
            "SELCONTROL_ALERT_ATTEMPTS",
            "three",
            "SELCONTROL_ALERT_ATTEMPTS='three' is not an integer",
        ),
        ("SELCONTROL_ALERT_ATTEMPTS", "0", "SELCONTROL_ALERT_ATTEMPTS='0' must be at least 1"),
        ("SELCONTROL_ALERT_BACKOFF", "1s", "SELCONTROL_ALERT_BACKOFF='1s' is not a number"),
        ("SELCONTROL_ALERT_TIMEOUT", "0", "SELCONTROL_ALERT_TIMEOUT='0' must be more than 0"),
        (
            "SELCONTROL_ALERT_WEBHOOK_KIND",
            "teams",
            "SELCONTROL_ALERT_WEBHOOK_KIND='teams' is not one",
        ),
        ("SELCONTROL_ALERT_WEBHOOK_URL", "discord.com/api/webhooks/1/x", "not an http(s) URL"),
        ("SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE", "maybe", "is not a boolean"),
        (
            "SELCONTROL_HEARTBEAT_SECONDS",
            "-5",
            "SELCONTROL_HEARTBEAT_SECONDS='-5' must be more than 0",
        ),
        ("SELCONTROL_HEARTBEAT_STALE_SECONDS", "ninety", "SELCONTROL_HEARTBEAT_STALE_SECONDS"),
        ("SELCONTROL_TELEMETRY_FLUSH_SECONDS", "2s", "SELCONTROL_TELEMETRY_FLUSH_SECONDS='2s'"),
        (
            "SELCONTROL_REVIEW_DOUBLE_SHARE",
            "1.5",
            "SELCONTROL_REVIEW_DOUBLE_SHARE='1.5' must be at most 1",
        ),
        (
            "SELCONTROL_REVIEW_SAMPLE_SIZE",
            "0",
            "SELCONTROL_REVIEW_SAMPLE_SIZE='0' must be at least 1",
        ),
        ("SELCONTROL_API_RATE_LIMIT", "-1", "SELCONTROL_API_RATE_LIMIT='-1' must be at least 0"),
        ("SELCONTROL_DB_POOL_MAX", "0", "SELCONTROL_DB_POOL_MAX='0' must be at least 1"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD' is not one of"),
        ("LOG_FORMAT", "yaml", "LOG_FORMAT='yaml' is not one of"),
    ],
)
def test_settings__bad_value__fails_at_start_naming_the_variable(monkeypatch, name, value, message):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        load_settings(monkeypatch, **{name: value})


def test_settings__pool_min_above_max__fails_at_start_naming_both(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="SELCONTROL_DB_POOL_MIN=5 is more than"):
        load_settings(monkeypatch, SELCONTROL_DB_POOL_MIN="5", SELCONTROL_DB_POOL_MAX="2")


def test_settings__good_values__are_read_as_numbers_and_lists(monkeypatch):
    values = load_settings(
        monkeypatch,
        SELCONTROL_ACK_TIMEOUT_SECONDS="2.5",
        SELCONTROL_ALERT_ATTEMPTS="5",
        SELCONTROL_ALERT_WEBHOOK_HOSTS="relay.example.org, hooks.slack.com",
        SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE="yes",
        SELCONTROL_HEARTBEAT_SECONDS="7",
    )
    assert values["SELCONTROL_ACK_TIMEOUT_SECONDS"] == 2.5
    assert values["SELCONTROL_ALERT_ATTEMPTS"] == 5
    assert values["SELCONTROL_ALERT_WEBHOOK_HOSTS"] == ["relay.example.org", "hooks.slack.com"]
    assert values["SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE"] is True
    beat = values["CELERY_BEAT_SCHEDULE"]["selcontrol-heartbeat"]
    assert beat["schedule"] == 7.0 and beat["options"]["expires"] == 7.0


@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "check"],
        ["-m", "celery", "-A", "selcontrol", "worker", "--pool", "solo"],
    ],
    ids=["web", "worker"],
)
def test_process_start__bad_value__exits_at_once_with_the_variable_named(command):
    env = {**os.environ, "DEBUG": "true", "SELCONTROL_ALERT_ATTEMPTS": "three"}
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "ImproperlyConfigured: SELCONTROL_ALERT_ATTEMPTS='three' is not an integer." in (
        done.stderr
    )
    assert "ready" not in done.stdout.lower()  # the worker never started consuming


def expand(first: str, name: str) -> str:
    """``_STALE_SECONDS`` after ``SELCONTROL_HEARTBEAT_SECONDS``: the first name's head with
    this tail, the head being as long as still makes a variable settings.py reads."""
    if not name.startswith("_"):
        return name
    parts = first.split("_")
    known = settings_variables() | GUNICORN
    candidates = ["_".join(parts[:k]) + name for k in range(len(parts) - 1, 0, -1)]
    return next((c for c in candidates if c in known), candidates[0])


def documented_rows(path: Path) -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the markdown tables in ``path`` whose first cell names
    variables in backticks; ``A_B_C`` / ``_D`` is short for A_B_C and A_B_D."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        raw = re.findall(r"`([A-Z_][A-Z0-9_]*)`", cells[0])
        if not raw or not raw[0][0].isalpha():
            continue
        names = [raw[0]] + [expand(raw[0], name) for name in raw[1:]]
        defaults = [d.strip(" `") for d in re.split(r" / |, ", cells[1])]
        rows.append((names, defaults))
    return rows


DOCS = [ROOT / "README.md", ROOT / "docs" / "fleet.md", ROOT / "docs" / "guardrails.md"]


def test_readme_table__lists_every_variable_settings_reads_and_no_other():
    documented = {n for names, _ in documented_rows(ROOT / "README.md") for n in names}
    assert documented - GUNICORN == settings_variables()
    gunicorn_conf = (ROOT / "selcontrol" / "gunicorn_conf.py").read_text()
    assert all(f'"{name}"' in gunicorn_conf for name in GUNICORN)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_tables__numeric_defaults__are_the_ones_settings_uses(monkeypatch, doc):
    values = load_settings(monkeypatch, DEBUG="false", SECRET_KEY="x" * 50)
    checked = 0
    for names, defaults in documented_rows(doc):
        if len(names) != len(defaults) or set(names) & GUNICORN:
            continue
        for name, default in zip(names, defaults, strict=True):
            if not re.fullmatch(r"\d+(\.\d+)?", default) or name not in values:
                continue
            assert float(values[name]) == float(default), name
            checked += 1
    assert checked >= 3


SETUP_ONLY = {"settings.py", "gunicorn_conf.py", "celery.py", "wsgi.py", "asgi.py"}
"""settings.py reads the environment; gunicorn's config runs before Django; the entry points only
set DJANGO_SETTINGS_MODULE."""


@pytest.mark.parametrize("app", ["selcontrol", "rollout", "metrics"])
def test_app_code__outside_settings__never_reads_the_environment(app):
    readers = []
    for path in sorted((ROOT / app).rglob("*.py")):
        if path.name in SETUP_ONLY and path.parent.name == "selcontrol":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and node.name == "_setting":
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno} _setting()")
    assert readers == []
