"""selcontrol settings, read from the environment (12-factor).

With nothing set, a checkout runs on SQLite with Celery tasks executed in-process, which is what
the quick start uses. Production sets DATABASE_URL (PostgreSQL), REDIS_URL (broker and cache),
SECRET_KEY and ALLOWED_HOSTS. Every variable is listed in the README's configuration table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None


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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
        },
    },
]

# Database: SQLite by default; DATABASE_URL=postgres://... for PostgreSQL (psycopg 3, pooled).
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL)
if _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not hold them as well
    _db.setdefault("OPTIONS", {})
    if env_bool("SELCONTROL_DB_POOL", True):
        _db["OPTIONS"]["pool"] = {
            "min_size": env_int("SELCONTROL_DB_POOL_MIN", 1),
            "max_size": env_int("SELCONTROL_DB_POOL_MAX", 10),
            "timeout": 10,
        }
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
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}  # each app adds its entries in its tasks module

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "TIMEOUT": 300,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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

# Security. HTTPS settings are on when SELCONTROL_HTTPS=true (behind TLS or a TLS proxy).
HTTPS = env_bool("SELCONTROL_HTTPS", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS and env_bool("SELCONTROL_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SELCONTROL_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Product knobs.
SELCONTROL_DEFAULT_ROLLOUT = env_str("SELCONTROL_DEFAULT_ROLLOUT", "prompts_v2")

# --- Production readiness: security headers, rate limits, structured logs, /metrics -------------
# (selcontrol/security.py, selcontrol/logging.py, selcontrol/telemetry.py; docs/operations.md)
from selcontrol.logging import logging_config  # noqa: E402  (stdlib-only at import time)

MIDDLEWARE[0:0] = [
    "selcontrol.logging.RequestIdMiddleware",  # first: every later log line has the request id
    "selcontrol.telemetry.TelemetryMiddleware",
    "selcontrol.security.ProbeMiddleware",  # probes and scrapes answered whatever their Host
]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "selcontrol.security.SecurityHeadersMiddleware",
)
MIDDLEWARE.insert(
    MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware") + 1,
    "selcontrol.security.RateLimitMiddleware",
)
MIDDLEWARE.insert(  # NUL in the address: 400; the API's 404/405 as JSON
    MIDDLEWARE.index("selcontrol.security.RateLimitMiddleware") + 1,
    "selcontrol.input_guard.InputGuardMiddleware",
)
INSTALLED_APPS.append("ninja")  # /api/v1/docs from our own static files, not a CDN (CSP)

LOG_FORMAT = env_str("LOG_FORMAT", "plain")
LOGGING = logging_config(LOG_FORMAT, env_str("LOG_LEVEL", "INFO"))

# Fixed one-minute windows in the shared cache; 0 turns a limit off.
SELCONTROL_API_RATE_LIMIT = env_int("SELCONTROL_API_RATE_LIMIT", 6000)  # per token
SELCONTROL_LOGIN_RATE_LIMIT = env_int("SELCONTROL_LOGIN_RATE_LIMIT", 10)  # per IP and username
SELCONTROL_LOGIN_IP_RATE_LIMIT = env_int("SELCONTROL_LOGIN_IP_RATE_LIMIT", 60)  # per IP
SELCONTROL_TRUSTED_PROXY_HOPS = env_int("SELCONTROL_TRUSTED_PROXY_HOPS", 0)
SELCONTROL_API_PREFIX = "/api/"
SELCONTROL_CSP: dict[str, str] = {}  # per-directive overrides of selcontrol.security.DEFAULT_CSP
SELCONTROL_CSP_REPORT_ONLY = env_bool("SELCONTROL_CSP_REPORT_ONLY", False)
SELCONTROL_METRICS_TOKEN = env_str("SELCONTROL_METRICS_TOKEN")
SELCONTROL_TELEMETRY_FLUSH_SECONDS = float(env_str("SELCONTROL_TELEMETRY_FLUSH_SECONDS", "2"))

SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])  # old keys while rotating SECRET_KEY
CSRF_COOKIE_HTTPONLY = True  # pages send the token from the form/hx-headers, never from JS
# Load balancers probe over plain HTTP: never redirect the probes and the scrape to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
if REDIS_URL:  # a hung Redis must cost a request a second at most, not forever; and while
    # it is down the cache is a miss, not an error (selcontrol/cache.py)
    CACHES["default"]["BACKEND"] = "selcontrol.cache.ResilientRedisCache"
    CACHES["default"].setdefault("OPTIONS", {}).update(
        {"socket_connect_timeout": 1, "socket_timeout": 1}
    )

# plotly.js for the dashboard, served from the installed plotly wheel (metrics/vendor_static.py)
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "metrics.vendor_static.PlotlyFinder",
]

# Weekly human review (metrics/reviews.py, docs/reviews.md)
SELCONTROL_REVIEW_SAMPLE_SIZE = env_int("SELCONTROL_REVIEW_SAMPLE_SIZE", 50)
SELCONTROL_REVIEW_DOUBLE_SHARE = float(env_str("SELCONTROL_REVIEW_DOUBLE_SHARE", "0.2"))
SELCONTROL_REVIEW_LEASE_SECONDS = env_int("SELCONTROL_REVIEW_LEASE_SECONDS", 600)
