"""Structured logs: a JSON-lines formatter, a redacting filter and the request-id middleware.

LOG_FORMAT=json writes one JSON object per line (ts, level, logger, message, request_id and,
for the access line, method, path, route, status, duration_ms, user or token); LOG_FORMAT=plain
(the default) writes the same facts as readable text. Either way:

* every record passes ``RedactSecretsFilter``, which replaces anything that looks like an API
  token (``sc_...``), a ``Bearer ...`` credential, or a ``password=...``/``"password": ...``
  value with ``[redacted]``, in the message, its arguments and the formatted traceback;
* the access line logs the path without its query string, the user's name or the token's *name*,
  never the Authorization header, cookies or request bodies.

``RequestIdMiddleware`` takes a well-formed ``X-Request-ID`` from the load balancer or makes
one, puts it on every log line written while the request is handled, answers with it, and writes
the access line (logger ``selcontrol.request``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings.py imports this module: keep Django out of its import time
    from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
access_logger = logging.getLogger("selcontrol.request")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_SECRET_PATTERNS = [
    (re.compile(r"\bsc_[A-Za-z0-9_\-]{8,}"), "sc_[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 [redacted]"),
    (
        re.compile(
            r"""(?i)(["']?(?:password|passwd|secret|api[_-]?key)["']?\s*[:=]\s*)(["']?)[^\s"',&}]+"""
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record so that no token, bearer credential or password survives in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string still gets logged
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        # Django's error logging attaches the request; a handler that renders it (mail_admins)
        # would show headers. Keep only what the log line needs.
        if hasattr(record, "request"):
            request = record.request
            record.request = None
            record.method = getattr(request, "method", None)
            record.path = getattr(request, "path", None)
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            # Django logs 4xx/5xx after the middleware chain returned; its record has the request.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", "") or request_id_var.get()
        return True


# Fields of the access line and of Django's request records that the formatters show.
EXTRA_FIELDS = ("method", "path", "route", "status", "duration_ms", "user", "token", "client_ip")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "") or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        status_code = getattr(record, "status_code", None)  # Django's request loggers add it
        if status_code is not None and "status" not in entry:
            entry["status"] = status_code
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", "") or request_id_var.get()
        if request_id:
            first, sep, rest = text.partition("\n")
            text = f"{first} [{request_id}]{sep}{rest}"
        return text


def logging_config(log_format: str, level: str) -> dict:
    """The LOGGING dict for settings.py."""
    if log_format not in ("json", "plain"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT={log_format!r} is not one of json, plain.")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "selcontrol.logging.RedactSecretsFilter"},
            "request_id": {"()": "selcontrol.logging.RequestIdFilter"},
        },
        "formatters": {
            "json": {"()": "selcontrol.logging.JsonFormatter"},
            "plain": {"()": "selcontrol.logging.PlainFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id", "redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own loggers go to the same handler, once (no propagation to root, no
            # mail_admins, no debug-only console).
            "django": {"handlers": ["console"], "level": level, "propagate": False},
            "django.server": {"handlers": ["console"], "level": level, "propagate": False},
            "django.db.backends": {"level": "WARNING"},
            "selcontrol.request": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }


class RequestIdMiddleware:
    """X-Request-ID in and out, and one access line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        # Read by RequestIdFilter: Django logs 4xx/5xx after this middleware has returned.
        request.request_id = request_id  # type: ignore[attr-defined]  # no such field in stubs
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            self.log(request, response, started, request_id)
            return response
        finally:
            request_id_var.reset(token)

    def log(
        self, request: HttpRequest, response: HttpResponse, started: float, request_id: str
    ) -> None:
        from .security import client_ip
        from .telemetry import route_of

        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        extra: dict[str, object] = {
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "route": route_of(request),
            "status": response.status_code,
            "duration_ms": duration_ms,
            "client_ip": client_ip(request),
        }
        user = getattr(request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            extra["user"] = user.get_username()
        auth = getattr(request, "auth", None)  # django-ninja's authenticated ApiToken
        if auth is not None and getattr(auth, "name", None):
            extra["token"] = auth.name
        level = logging.INFO
        if response.status_code >= 500:
            level = logging.ERROR
        access_logger.log(
            level,
            "%s %s %s %sms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra=extra,
        )
