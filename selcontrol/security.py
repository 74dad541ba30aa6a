"""Security middleware: response headers (CSP and friends) and fixed-window rate limits.

``SecurityHeadersMiddleware`` adds a strict Content-Security-Policy to every response: scripts,
styles, fonts and fetches from the app's own origin only (static files are served by WhiteNoise
from the same origin), images also as ``data:`` URLs, no framing, no plugins. Inline
``<script>`` blocks, inline ``on*=`` handlers, ``style="..."`` attributes, ``eval``/``Function()``
(htmx's ``hx-on``) are refused by the browser under it. Django's SecurityMiddleware already sends
HSTS (over TLS only), ``X-Content-Type-Options``, ``Referrer-Policy`` and
``Cross-Origin-Opener-Policy``; this one adds ``Permissions-Policy`` and
``Cross-Origin-Resource-Policy`` too, and never overwrites a header a view set itself.

``RateLimitMiddleware`` counts, per fixed one-minute window in the Django cache (Redis in
production, so every web process shares the count):

* login POSTs (the console's and the admin's) per client IP and username, and per client IP;
* API calls (``/api/...``) per bearer token (a hash of it is the key, never the token), or per
  client IP for calls without a token.

Over the limit the caller gets 429 with one sentence and ``Retry-After``. When the cache is
unreachable the limiter lets requests through (fails open) and logs a warning at most once a
minute: a Redis outage must not take the bot's API down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import NoReverseMatch, reverse

from .cache import UNREACHABLE

logger = logging.getLogger("selcontrol.security")

DEFAULT_CSP: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}

DEFAULT_PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), interest-cohort=()"
)


def build_csp(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}".strip() for name, value in directives.items())


class SecurityHeadersMiddleware:
    """Adds Content-Security-Policy, Permissions-Policy and Cross-Origin-Resource-Policy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        directives = dict(DEFAULT_CSP)
        directives.update(settings.SELCONTROL_CSP or {})
        self.csp = build_csp(directives)
        self.csp_header = (
            "Content-Security-Policy-Report-Only"
            if settings.SELCONTROL_CSP_REPORT_ONLY
            else "Content-Security-Policy"
        )
        self.permissions_policy = getattr(
            settings, "SELCONTROL_PERMISSIONS_POLICY", DEFAULT_PERMISSIONS_POLICY
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault(self.csp_header, self.csp)
        response.headers.setdefault("Permissions-Policy", self.permissions_policy)
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


class ProbeMiddleware:
    """Answers the load balancer's and Prometheus's requests (``/healthz``, ``/readyz``,
    ``/metrics``) whatever Host header they carry.

    Load balancers and Prometheus address a backend by its IP (``Host: 10.0.3.7:8000``), which
    is not in ALLOWED_HOSTS, so Django would answer 400 and every instance would look down.
    These three read-only views are called directly, before the host check (CommonMiddleware),
    the HTTPS redirect and the session; every other path goes through the whole stack."""

    PATHS = ("/healthz", "/readyz", "/metrics")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.answer_probe = SecurityHeadersMiddleware(self._call_view)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in self.PATHS:
            return self.get_response(request)
        return self.answer_probe(request)

    @staticmethod
    def _call_view(request: HttpRequest) -> HttpResponse:
        from django.urls import resolve

        match = resolve(request.path_info)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)


# --- rate limits ---------------------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The caller's address. Behind N trusted proxies (SELCONTROL_TRUSTED_PROXY_HOPS=N) it is the
    N-th address from the right of X-Forwarded-For; the client can forge anything left of it."""
    hops = settings.SELCONTROL_TRUSTED_PROXY_HOPS
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < hops:
        return forwarded[0] if forwarded else remote
    return forwarded[-hops]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    count: int
    limit: int
    retry_after: int


class FixedWindowLimiter:
    """``limit`` hits per ``window`` seconds per key, counted in the Django cache.

    With Redis a count costs one round trip (INCRBY and EXPIRE in a pipeline); with another
    cache backend it uses ``add`` then ``incr``. Large limits (the API's) are counted in batches:
    each process adds its hits to the shared count every ``batch`` hits or every second, so
    ordinary traffic costs Redis one round trip per batch rather than per request, and a limit
    can be overshot by at most ``batch`` hits per process. Limits under 100 (sign-in) count
    every hit. Any cache error lets the hit through."""

    SYNC_SECONDS = 1.0
    _last_warning = 0.0

    def __init__(self, scope: str, limit: int, window: int = 60):
        self.scope = scope
        self.limit = limit
        self.window = window
        self.batch = max(1, min(20, limit // 100))
        self._lock = threading.Lock()
        self._window_start = -1
        self._local: dict[str, list[float]] = {}  # key -> [pending hits, shared count, synced]

    def hit(self, ident: str, now: float | None = None) -> Verdict:
        if self.limit <= 0:
            return Verdict(True, 0, self.limit, 0)
        now = time.time() if now is None else now
        window_start = int(now // self.window) * self.window
        retry_after = max(1, math.ceil(window_start + self.window - now))
        key = f"ratelimit:{self.scope}:{window_start}:{ident}"
        with self._lock:
            if window_start != self._window_start:  # a new window: the old counts are done
                self._window_start = window_start
                self._local.clear()
            entry = self._local.setdefault(key, [0, 0, -math.inf])
            entry[0] += 1
            clock = time.monotonic()
            if entry[0] < self.batch and clock - entry[2] < self.SYNC_SECONDS:
                count = int(entry[0] + entry[1])
                return Verdict(count <= self.limit, count, self.limit, retry_after)
            pending, entry[0], entry[2] = int(entry[0]), 0, clock
        try:
            count = self._incr(key, pending)
        except Exception as exc:  # noqa: BLE001 - fail open, see the module docstring
            self._warn(exc)
            return Verdict(True, 0, self.limit, 0)
        with self._lock:
            entry[1] = max(entry[1], count)
            count = int(entry[1] + entry[0])
        return Verdict(count <= self.limit, count, self.limit, retry_after)

    def _incr(self, key: str, amount: int = 1) -> int:
        raw = _raw_redis(key)
        if raw is not None:
            backend, client, full_key = raw
            if not getattr(backend, "available", True):  # selcontrol.cache's circuit breaker
                raise ConnectionError("the cache is marked unreachable for a few seconds")
            try:
                pipe = client.pipeline(transaction=False)
                pipe.incrby(full_key, amount)
                # The window is part of the key; the TTL only clears old keys away (so refreshing
                # it on every hit is harmless, and works on Redis 6, which lacks EXPIRE NX).
                pipe.expire(full_key, self.window + 5)
                count, _ = pipe.execute()
            except UNREACHABLE as exc:
                if hasattr(backend, "_failed"):
                    backend._failed(exc)
                raise
            return int(count)
        if cache.add(key, amount, timeout=self.window + 5):
            return amount
        try:
            return int(cache.incr(key, amount))
        except ValueError:  # expired between add and incr
            cache.add(key, amount, timeout=self.window + 5)
            return amount

    @classmethod
    def _warn(cls, exc: Exception) -> None:
        now = time.monotonic()
        if now - cls._last_warning > 60:
            cls._last_warning = now
            logger.warning(
                "rate limiting is off: the cache is unreachable (%s); requests are let through",
                exc.__class__.__name__,
            )


def _raw_redis(key: str):
    """(backend, redis client, prefixed key) when the default cache is Django's RedisCache."""
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    full_key = backend.make_and_validate_key(key)
    # Django keeps the raw client in the private _cache (not in its stubs); INCR with an expiry in
    # one round trip needs it.
    client = backend._cache.get_client(full_key, write=True)  # type: ignore[attr-defined]
    return backend, client, full_key


def _too_many(message: str, retry_after: int, as_json: bool) -> HttpResponse:
    if as_json:
        response: HttpResponse = JsonResponse({"error": message}, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


def _token_key(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    return "token:" + hashlib.sha256(header.encode("utf-8", "replace")).hexdigest()[:32]


class RateLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.login = FixedWindowLimiter("login", settings.SELCONTROL_LOGIN_RATE_LIMIT)
        self.login_ip = FixedWindowLimiter("login-ip", settings.SELCONTROL_LOGIN_IP_RATE_LIMIT)
        self.api = FixedWindowLimiter("api", settings.SELCONTROL_API_RATE_LIMIT)
        self.api_prefix = settings.SELCONTROL_API_PREFIX
        self._login_paths: set[str] | None = None

    def login_paths(self) -> set[str]:
        if self._login_paths is None:
            paths = set()
            for name in ("login", "admin:login"):
                try:
                    paths.add(reverse(name))
                except NoReverseMatch:
                    pass
            self._login_paths = paths
        return self._login_paths

    def __call__(self, request: HttpRequest) -> HttpResponse:
        blocked = self.check(request)
        if blocked is not None:
            return blocked
        return self.get_response(request)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        from . import telemetry

        path = request.path_info
        if path.startswith(self.api_prefix):
            ident = _token_key(request) or f"ip:{client_ip(request)}"
            verdict = self.api.hit(ident)
            if not verdict.allowed:
                telemetry.RATE_LIMITED.inc(scope="api")
                return _too_many(
                    f"Too many API requests: this token may make {verdict.limit} per minute "
                    f"(SELCONTROL_API_RATE_LIMIT); retry in {verdict.retry_after} seconds.",
                    verdict.retry_after,
                    as_json=True,
                )
            return None
        if request.method == "POST" and path in self.login_paths():
            ip = client_ip(request)
            username = (request.POST.get("username") or "").strip().lower()[:150]
            user_key = hashlib.sha256(f"{ip}|{username}".encode()).hexdigest()[:32]
            for limiter, ident in ((self.login_ip, ip), (self.login, user_key)):
                verdict = limiter.hit(ident)
                if not verdict.allowed:
                    telemetry.RATE_LIMITED.inc(scope="login")
                    logger.warning("login attempts throttled for a client (%s)", limiter.scope)
                    return _too_many(
                        "Too many sign-in attempts; wait "
                        f"{verdict.retry_after} seconds and try again.",
                        verdict.retry_after,
                        as_json=False,
                    )
        return None
