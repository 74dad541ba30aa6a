"""Liveness and readiness for load balancers and orchestrators.

/healthz answers 200 while the process serves requests (no dependencies checked).
/readyz checks the database and, when one is configured, the Celery broker; 503 names what failed.
It also shows the worker's and beat's heartbeats (selcontrol/heartbeat.py) without failing on
them: a load balancer must not take the web processes out because a worker died.
/readyz?deep=1 (for monitoring) also answers 503 when the worker or beat stopped working.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import heartbeat  # also registers its /metrics gauge in the web process


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"database unreachable: {exc.__class__.__name__}"
    return None


def _check_broker() -> str | None:
    if not settings.CELERY_BROKER_URL:
        return None
    try:
        import redis

        client = redis.Redis.from_url(
            settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"broker unreachable: {exc.__class__.__name__}"
    return None


def _heartbeats() -> dict[str, tuple[bool, str]]:
    """The worker's and beat's heartbeats: (stale, sentence) each (selcontrol/heartbeat.py)."""
    if not heartbeat.watched():
        return {name: (False, "not watched (tasks run in-process)") for name in heartbeat.PROCESSES}
    return {name: (beat.stale, beat.describe()) for name, beat in heartbeat.status().items()}


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    deep = request.GET.get("deep", "") not in ("", "0", "false")
    checks = {"database": _check_database(), "broker": _check_broker()}
    problems = {name: problem for name, problem in checks.items() if problem}
    background = _heartbeats()
    if deep:
        problems.update({name: text for name, (stale, text) in background.items() if stale})
    shown = {name: (problem or "ok") for name, problem in checks.items()}
    if not settings.CELERY_BROKER_URL:
        shown["broker"] = "not configured (tasks run in-process)"
    shown.update({name: text for name, (_, text) in background.items()})
    body = {"status": "ready" if not problems else "not ready", "checks": shown}
    return JsonResponse(body, status=503 if problems else 200)
