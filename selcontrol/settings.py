"""selcontrol settings, read from the environment (12-factor).

With nothing set, a checkout runs on SQLite with Celery tasks executed in-process, which is what
the quick start uses. Production sets DATABASE_URL (PostgreSQL), REDIS_URL (broker and cache),
SECRET_KEY and ALLOWED_HOSTS. Every variable is listed in the README's configuration table.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from selcontrol.logging import logging_config  # stdlib-only at import time

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false.")


def _at_least(name: str, raw: str, value: float, minimum: float | None, above: bool) -> None:
    if minimum is None:
        return
    if above and not value > minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be more than {minimum:g}.")
    if not above and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum:g}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    _at_least(name, raw, value, minimum, above=False)
    return value


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> float:
    """A number of the environment; ``minimum`` (inclusive), ``above`` (exclusive), ``maximum``."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number.")
    _at_least(name, raw, value, minimum, above=False)
    _at_least(name, raw, value, above, above=True)
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at most {maximum:g}.")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
TESTING = "pytest" in sys.modules
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and TESTING:
    SECRET_KEY = "test-only-secret-key-" + "x" * 40
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (a long random string), or DEBUG=true for "
            "local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])  # old keys while rotating SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "rollout",
    "metrics",
    "ninja",  # /api/v1/docs from our own static files, not a CDN (CSP)
]

# selcontrol/logging.py, selcontrol/telemetry.py, selcontrol/security.py, selcontrol/input_guard.py
# (docs/operations.md).
MIDDLEWARE = [
    "selcontrol.logging.RequestIdMiddleware",  # first: every later log line has the request id
    "selcontrol.telemetry.TelemetryMiddleware",
    "selcontrol.security.ProbeMiddleware",  # probes and scrapes answered whatever their Host
    "django.middleware.security.SecurityMiddleware",
    "selcontrol.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "selcontrol.security.RateLimitMiddleware",
    "selcontrol.input_guard.InputGuardMiddleware",  # NUL in the address: 400; API 404/405 as JSON
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "selcontrol.urls"
WSGI_APPLICATION = "selcontrol.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "rollout.context_processors.roles",
            ],
            # the console is not an app (selcontrol/console/__init__.py): its tags by name
            "libraries": {"console": "selcontrol.console.templatetags.console"},
        },
    },
]

# Database: SQLite by default; DATABASE_URL=postgres://... for PostgreSQL (psycopg 3, pooled).
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL)
_pool_min = env_int("SELCONTROL_DB_POOL_MIN", 1, minimum=0)
_pool_max = env_int("SELCONTROL_DB_POOL_MAX", 10, minimum=1)
if _pool_min > _pool_max:
    raise ImproperlyConfigured(
        f"SELCONTROL_DB_POOL_MIN={_pool_min} is more than SELCONTROL_DB_POOL_MAX={_pool_max}."
    )
if _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not hold them as well
    _db.setdefault("OPTIONS", {})
    # No JIT compilation: every statement of selcontrol's is short (rollups, one hour of raw
    # events), and PostgreSQL compiles whenever a statement's estimated cost passes
    # jit_above_cost, which an hour of 10,000 replies does: 27 ms of compiling for a 40 ms
    # statement (docs/operations.md). Options given in DATABASE_URL come after, so they win.
    _db["OPTIONS"]["options"] = f"-c jit=off {_db['OPTIONS'].get('options', '')}".strip()
    if env_bool("SELCONTROL_DB_POOL", True):
        _db["OPTIONS"]["pool"] = {"min_size": _pool_min, "max_size": _pool_max, "timeout": 10}
        # Django gives the pool check=ConnectionPool.check_connection when health checks are on:
        # each connection is tested (a cheap round trip) as it leaves the pool and a dead one is
        # replaced. Without it, after a PostgreSQL restart every idle pooled connection answered
        # one request with a 500 (tests/faults/test_faults.py, the restart test).
        _db["CONN_HEALTH_CHECKS"] = True
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    _db.setdefault("OPTIONS", {})
    # WAL lets the demo's simulator write while pages read; IMMEDIATE avoids lock upgrades.
    _db["OPTIONS"].update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# metrics' covering index (INCLUDE) is PostgreSQL-only; SQLite builds it without the extra column.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# Redis: broker for Celery and the shared cache. Without it, tasks run in-process.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:  # a hung Redis must cost a request a second at most, not forever; and while
    # it is down the cache is a miss, not an error (selcontrol/cache.py)
    CACHES = {
        "default": {
            "BACKEND": "selcontrol.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "TIMEOUT": 300,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery (selcontrol/celery.py). Every periodic job is in CELERY_BEAT_SCHEDULE below.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the task to be re-run
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Ride out broker (Redis) outages (issue 15; docs/operations.md, "Workers and beat"): retry the
# connection for ever (the default gives up after 100 tries and the worker exits), give up on a
# dead socket within seconds instead of hanging, and on a lost connection cancel running tasks
# instead of acknowledging them later over the dead connection (acks_late: they are redelivered,
# and every task is idempotent; Celery 6's default).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "socket_keepalive": True,
    "health_check_interval": 10,
}
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# kombu's Redis transport with the guards that keep the worker alive when Redis dies while it is
# busy (issue 15 item 9; the cause, step by step: selcontrol/broker.py). Only for redis:// URLs:
# naming a transport class overrides the URL's scheme, and rediss:// (TLS) and sentinel:// need
# kombu's own choice.
CELERY_BROKER_TRANSPORT = (
    "selcontrol.broker:Transport" if CELERY_BROKER_URL.startswith("redis://") else None
)
# Heartbeats of the worker and beat, read by /readyz and the console (selcontrol/heartbeat.py).
CELERY_INCLUDE = ["selcontrol.heartbeat"]
CELERY_BEAT_SCHEDULER = "selcontrol.heartbeat:HeartbeatScheduler"
SELCONTROL_HEARTBEAT_SECONDS = env_float("SELCONTROL_HEARTBEAT_SECONDS", 30.0, above=0)
SELCONTROL_HEARTBEAT_STALE_SECONDS = env_float("SELCONTROL_HEARTBEAT_STALE_SECONDS", 90.0, above=0)
SELCONTROL_ROLLUP_CATCH_UP_SECONDS = 30.0
SELCONTROL_GUARDRAIL_SECONDS = 60.0
# The periodic jobs, in one place: Celery beat sends them (`make beat`), and the quick start's
# `manage.py run_scheduler` (metrics/scheduler.py) runs the same entries in-process. An entry's
# expiry drops a tick no worker picked up in time: the next one does the same work.
CELERY_BEAT_SCHEDULE = {
    # heartbeats of the worker and beat (selcontrol/heartbeat.py)
    "selcontrol-heartbeat": {
        "task": "selcontrol.heartbeat",
        "schedule": SELCONTROL_HEARTBEAT_SECONDS,
        "options": {"expires": SELCONTROL_HEARTBEAT_SECONDS},
    },
    # rollups' catch-up; ingest also queues a run after each commit (metrics/tasks.py)
    "metrics-update-rollups": {
        "task": "metrics.tasks.update_rollups",
        "schedule": SELCONTROL_ROLLUP_CATCH_UP_SECONDS,
        "options": {"expires": SELCONTROL_ROLLUP_CATCH_UP_SECONDS - 5},
    },
    # every guardrail rule, and alerts left pending (metrics/guardrails/services.py, alerts.py)
    "metrics-evaluate-guardrails": {
        "task": "metrics.tasks.evaluate_guardrails",
        "schedule": SELCONTROL_GUARDRAIL_SECONDS,
        "options": {"expires": SELCONTROL_GUARDRAIL_SECONDS - 5},
    },
    # last week's review sample, Monday 00:10 UTC (metrics/reviews/services.py, docs/reviews.md);
    # a tick not run within 6 hours is dropped
    "metrics-weekly-review-sample": {
        "task": "metrics.tasks.draw_weekly_review_sample",
        "schedule": crontab(minute=10, hour=0, day_of_week="mon"),
        "options": {"expires": 6 * 3600},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "rollout:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not (DEBUG or TESTING)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
# plotly.js for the dashboard, served from the installed plotly wheel (metrics/vendor_static.py)
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "metrics.vendor_static.PlotlyFinder",
]

# Security (selcontrol/security.py). HTTPS settings are on when SELCONTROL_HTTPS=true (behind TLS
# or a TLS proxy).
HTTPS = env_bool("SELCONTROL_HTTPS", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS and env_bool("SELCONTROL_SSL_REDIRECT", True)
# Load balancers probe over plain HTTP: never redirect the probes and the scrape to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SELCONTROL_HSTS_SECONDS", 31536000, minimum=0) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # pages send the token from the form/hx-headers, never from JS
SELCONTROL_CSP: dict[str, str] = {}  # per-directive overrides of selcontrol.security.DEFAULT_CSP
SELCONTROL_CSP_REPORT_ONLY = env_bool("SELCONTROL_CSP_REPORT_ONLY", False)
# Rate limits: fixed one-minute windows in the shared cache; 0 turns a limit off.
SELCONTROL_API_RATE_LIMIT = env_int("SELCONTROL_API_RATE_LIMIT", 6000, minimum=0)  # per token
SELCONTROL_LOGIN_RATE_LIMIT = env_int("SELCONTROL_LOGIN_RATE_LIMIT", 10, minimum=0)  # per IP+user
SELCONTROL_LOGIN_IP_RATE_LIMIT = env_int("SELCONTROL_LOGIN_IP_RATE_LIMIT", 60, minimum=0)  # per IP
SELCONTROL_TRUSTED_PROXY_HOPS = env_int("SELCONTROL_TRUSTED_PROXY_HOPS", 0, minimum=0)
SELCONTROL_API_PREFIX = "/api/"

# Logs (selcontrol/logging.py): plain text or JSON lines, secrets redacted, with the request id.
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", tuple(logging.getLevelNamesMapping()))
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)

# /metrics (selcontrol/telemetry.py)
SELCONTROL_METRICS_TOKEN = env_str("SELCONTROL_METRICS_TOKEN")
SELCONTROL_TELEMETRY_FLUSH_SECONDS = env_float("SELCONTROL_TELEMETRY_FLUSH_SECONDS", 2.0, above=0)

# Product knobs.
SELCONTROL_DEFAULT_ROLLOUT = env_str("SELCONTROL_DEFAULT_ROLLOUT", "prompts_v2")
SELCONTROL_DEMO_PASSWORD = env_str("SELCONTROL_DEMO_PASSWORD", "selcontrol-demo")  # seed_demo
SELCONTROL_DEMO_TOKEN_FILE = env_str("SELCONTROL_DEMO_TOKEN_FILE", ".demo-bot-token")  # seed_demo
# POST /api/v1/events (metrics/api.py): the largest body and batch accepted.
SELCONTROL_EVENTS_MAX_BYTES = 8 * 1024 * 1024
SELCONTROL_EVENTS_MAX_BATCH = 5000

# Fleet of bot instances (rollout/fleet.py, docs/fleet.md).
SELCONTROL_ACK_TIMEOUT_SECONDS = env_float("SELCONTROL_ACK_TIMEOUT_SECONDS", 10.0, minimum=0)
SELCONTROL_FLEET_LIVE_SECONDS = env_float("SELCONTROL_FLEET_LIVE_SECONDS", 45.0, above=0)
SELCONTROL_FLEET_DROP_SECONDS = env_float("SELCONTROL_FLEET_DROP_SECONDS", 300.0, above=0)

# Guardrail alerts to a webhook (metrics/guardrails/alerts.py and webhooks.py, docs/guardrails.md).
SELCONTROL_ALERT_WEBHOOK_URL = env_str("SELCONTROL_ALERT_WEBHOOK_URL")
if SELCONTROL_ALERT_WEBHOOK_URL and not SELCONTROL_ALERT_WEBHOOK_URL.startswith(
    ("https://", "http://")
):
    raise ImproperlyConfigured(
        f"SELCONTROL_ALERT_WEBHOOK_URL={SELCONTROL_ALERT_WEBHOOK_URL!r} is not an http(s) URL."
    )
SELCONTROL_ALERT_WEBHOOK_KIND = env_choice(
    "SELCONTROL_ALERT_WEBHOOK_KIND", "", ("", "discord", "slack")
)
SELCONTROL_ALERT_TIMEOUT = env_float("SELCONTROL_ALERT_TIMEOUT", 5.0, above=0)
SELCONTROL_ALERT_ATTEMPTS = env_int("SELCONTROL_ALERT_ATTEMPTS", 3, minimum=1)
SELCONTROL_ALERT_BACKOFF = env_float("SELCONTROL_ALERT_BACKOFF", 1.0, minimum=0)
SELCONTROL_BASE_URL = env_str("SELCONTROL_BASE_URL")
SELCONTROL_ALERT_WEBHOOK_HOSTS = env_list(
    "SELCONTROL_ALERT_WEBHOOK_HOSTS",
    ["discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com", "hooks.slack.com"],
)
SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE = env_bool("SELCONTROL_ALERT_WEBHOOK_ALLOW_PRIVATE", False)

# Weekly human review (metrics/reviews/services.py, docs/reviews.md).
SELCONTROL_REVIEW_SAMPLE_SIZE = env_int("SELCONTROL_REVIEW_SAMPLE_SIZE", 50, minimum=1)
SELCONTROL_REVIEW_DOUBLE_SHARE = env_float(
    "SELCONTROL_REVIEW_DOUBLE_SHARE", 0.2, minimum=0, maximum=1
)
SELCONTROL_REVIEW_LEASE_SECONDS = env_int("SELCONTROL_REVIEW_LEASE_SECONDS", 600, minimum=1)
