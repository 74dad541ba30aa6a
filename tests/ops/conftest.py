"""Log capture through the real logging configuration (filters and formatter included)."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from selcontrol.logging import logging_config


class CapturedLog:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]

    def access(self) -> list[dict]:
        return [r for r in self.records() if r["logger"] == "selcontrol.request"]


def _capture(log_format: str, settings) -> tuple[CapturedLog, logging.Handler]:
    logging.config.dictConfig(logging_config(log_format, "INFO"))
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream = io.StringIO()
    handler.setStream(stream)
    return CapturedLog(stream), handler


@pytest.fixture
def json_log(settings):
    """Everything logged during the test, as LOG_FORMAT=json writes it."""
    captured, _ = _capture("json", settings)
    yield captured
    logging.config.dictConfig(settings.LOGGING)


@pytest.fixture
def plain_log(settings):
    captured, _ = _capture("plain", settings)
    yield captured
    logging.config.dictConfig(settings.LOGGING)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Sign-in tests hash passwords many times; PBKDF2's cost is not what they test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
