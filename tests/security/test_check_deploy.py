"""`manage.py check --deploy` is clean with production settings, and notices when they are not."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DEBUG": "false",
        "SELCONTROL_HTTPS": "true",
        "ALLOWED_HOSTS": "selcontrol.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://selcontrol.example.org",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "LOG_FORMAT": "json",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy__production_settings__clean():
    result = check_deploy(production_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_check_deploy__without_https__fails_naming_hsts_and_cookies():
    result = check_deploy(production_env(SELCONTROL_HTTPS="false"))
    assert result.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in result.stderr


def test_check_deploy__short_secret_key__fails():
    result = check_deploy(production_env(SECRET_KEY="short"))
    assert result.returncode != 0
    assert "security.W009" in result.stderr


def test_settings__no_secret_key_and_debug_off__refuse_to_start():
    result = check_deploy(production_env(SECRET_KEY=""))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
