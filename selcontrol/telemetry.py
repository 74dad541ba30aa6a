"""The control plane's own metrics, served at ``/metrics`` in the Prometheus text format.

(Named ``telemetry`` so it is not confused with the ``metrics`` app, which holds the bot's
quality data.)

Counters and histograms are kept in memory per process and, when REDIS_URL is set, added to one
Redis hash by a background thread every SELCONTROL_TELEMETRY_FLUSH_SECONDS (and before each
scrape), so a scrape through the load balancer sees the sum over every web process, not the one
worker that happened to answer. Without Redis (the quick start, one process) the process's own
numbers are served. Gauges (config revision, rollout state, tokens, queue length) are read at
scrape time; other apps can add theirs with ``register_collector``.

``TelemetryMiddleware`` records every request: count and latency histogram by URL pattern (the
route, never the raw path, so scanners cannot blow up the label set), method and status; API
authentication failures (401/403 under /api/) are counted too. Login failures come from Django's
``user_login_failed`` signal.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from importlib import metadata

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger("selcontrol.telemetry")

REDIS_KEY = "selcontrol:telemetry:v1"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, str, Labels]  # (family, suffix, labels)


class Store:
    """Per-process totals plus the deltas not yet added to Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[SampleKey, float] = {}
        self.pending: dict[SampleKey, float] = {}
        self.pid = os.getpid()
        self.flusher: threading.Thread | None = None

    def add(self, key: SampleKey, amount: float) -> None:
        self.add_many([(key, amount)])

    def add_many(self, items: list[tuple[SampleKey, float]]) -> None:
        with self.lock:
            self._after_fork()
            for key, amount in items:
                self.totals[key] = self.totals.get(key, 0.0) + amount
                self.pending[key] = self.pending.get(key, 0.0) + amount
        if self.flusher is None and _redis_url():
            self._start_flusher()

    def _after_fork(self) -> None:
        if self.pid != os.getpid():  # a forked worker starts from zero, without the parent's thread
            self.pid = os.getpid()
            self.totals.clear()
            self.pending.clear()
            self.flusher = None

    def take_pending(self) -> dict[SampleKey, float]:
        with self.lock:
            self._after_fork()
            pending, self.pending = self.pending, {}
        return pending

    def give_back(self, pending: dict[SampleKey, float]) -> None:
        with self.lock:
            for key, amount in pending.items():
                self.pending[key] = self.pending.get(key, 0.0) + amount

    def snapshot(self) -> dict[SampleKey, float]:
        with self.lock:
            self._after_fork()
            return dict(self.totals)

    def _start_flusher(self) -> None:
        with self.lock:
            if self.flusher is not None:
                return
            self.flusher = threading.Thread(
                target=self._flush_loop, name="selcontrol-telemetry", daemon=True
            )
            self.flusher.start()

    def _flush_loop(self) -> None:
        interval = float(settings.SELCONTROL_TELEMETRY_FLUSH_SECONDS)
        me = threading.current_thread()
        while self.flusher is me and self.pid == os.getpid():
            time.sleep(interval)
            flush()


STORE = Store()
_redis_client = None
_redis_client_url = None


def _redis_url() -> str:
    return getattr(settings, "REDIS_URL", "") or ""


def _redis():
    global _redis_client, _redis_client_url
    url = _redis_url()
    if _redis_client is None or _redis_client_url != url:
        import redis

        _redis_client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        _redis_client_url = url
    return _redis_client


def _field(key: SampleKey) -> str:
    family, suffix, labels = key
    return json.dumps([family, suffix, [list(pair) for pair in labels]], separators=(",", ":"))


def _unfield(raw: bytes | str) -> SampleKey:
    family, suffix, labels = json.loads(raw)
    return family, suffix, tuple((k, v) for k, v in labels)


def flush() -> bool:
    """Add this process's pending deltas to Redis. False (deltas kept) when Redis fails."""
    if not _redis_url():
        return False
    pending = STORE.take_pending()
    if not pending:
        return True
    try:
        pipe = _redis().pipeline(transaction=False)
        for key, amount in pending.items():
            pipe.hincrbyfloat(REDIS_KEY, _field(key), amount)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics must never break requests
        STORE.give_back(pending)
        logger.warning("could not add metrics to Redis: %s", exc.__class__.__name__)
        return False
    return True


def shared_samples() -> dict[SampleKey, float] | None:
    """Every process's counters from Redis, or None when there is no Redis or it failed."""
    if not _redis_url() or not flush():
        return None
    try:
        raw = _redis().hgetall(REDIS_KEY)
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not read metrics from Redis: %s", exc.__class__.__name__)
        return None
    return {_unfield(field): float(value) for field, value in raw.items()}


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# --- metric families -----------------------------------------------------------------------------

FAMILIES: dict[str, tuple[str, str]] = {}  # name -> (type, help)


class Counter:
    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()):
        self.name = name
        self.labelnames = tuple(labelnames)
        FAMILIES[name] = ("counter", help_text)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple((n, str(labels[n])) for n in self.labelnames)
        STORE.add((self.name, "", key), amount)


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Iterable[str] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ):
        self.name = name
        self.labelnames = tuple(labelnames)
        self.buckets = buckets
        self._bounds = [(b, _num(b)) for b in buckets] + [(math.inf, "+Inf")]
        FAMILIES[name] = ("histogram", help_text)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple((n, str(labels[n])) for n in self.labelnames)
        items: list[tuple[SampleKey, float]] = [
            ((self.name, "_bucket", key + (("le", le),)), 1)
            for bound, le in self._bounds
            if value <= bound
        ]
        items.append(((self.name, "_sum", key), value))
        items.append(((self.name, "_count", key), 1))
        STORE.add_many(items)


HTTP_REQUESTS = Counter(
    "selcontrol_http_requests_total",
    "HTTP requests answered, by URL pattern, method and status.",
    ("route", "method", "status"),
)
HTTP_DURATION = Histogram(
    "selcontrol_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL pattern, method and status.",
    ("route", "method", "status"),
)
API_AUTH_FAILURES = Counter(
    "selcontrol_api_auth_failures_total",
    "API calls refused for their token: 401 missing/unknown/revoked, 403 missing scope.",
    ("status",),
)
LOGIN_FAILURES = Counter("selcontrol_login_failures_total", "Failed sign-ins (console and admin).")
RATE_LIMITED = Counter(
    "selcontrol_rate_limited_total", "Requests refused with 429 by the rate limiter.", ("scope",)
)


# --- gauges read at scrape time ------------------------------------------------------------------

Sample = tuple[str, dict[str, str], float]
Collector = Callable[[], Iterable[tuple[str, str, str, list[Sample]]]]
COLLECTORS: list[Collector] = []


def register_collector(collector: Collector) -> Collector:
    """Add a function returning ``[(name, type, help, [(name, labels, value), ...]), ...]``,
    called at every scrape. Usable as a decorator."""
    COLLECTORS.append(collector)
    return collector


@register_collector
def _rollout_gauges():
    from rollout.models import ApiToken, ConfigState, Rollout

    state = ConfigState.objects.filter(pk=1).values_list("revision", flat=True).first()
    rollouts = list(
        Rollout.objects.values_list(
            "key", "enabled", "percentage", "simplified_percentage", "revision"
        )
    )
    yield (
        "selcontrol_config_revision",
        "gauge",
        "The config document's global revision (what the bot's ETag carries).",
        [("selcontrol_config_revision", {}, float(state or 0))],
    )
    yield (
        "selcontrol_rollout_enabled",
        "gauge",
        "1 while the rollout is enabled, 0 while its kill switch is engaged.",
        [("selcontrol_rollout_enabled", {"rollout": k}, float(e)) for k, e, *_ in rollouts],
    )
    yield (
        "selcontrol_rollout_percentage",
        "gauge",
        "Share of channels (percent) given the treatment variant.",
        [("selcontrol_rollout_percentage", {"rollout": r[0]}, float(r[2])) for r in rollouts],
    )
    yield (
        "selcontrol_rollout_simplified_percentage",
        "gauge",
        "Share (percent) of treated channels given the simplified variant.",
        [
            ("selcontrol_rollout_simplified_percentage", {"rollout": r[0]}, float(r[3]))
            for r in rollouts
        ],
    )
    yield (
        "selcontrol_rollout_revision",
        "gauge",
        "The rollout's revision (bumped by every change).",
        [("selcontrol_rollout_revision", {"rollout": r[0]}, float(r[4])) for r in rollouts],
    )
    yield (
        "selcontrol_api_tokens_active",
        "gauge",
        "API tokens not revoked.",
        [
            (
                "selcontrol_api_tokens_active",
                {},
                float(ApiToken.objects.filter(revoked_at__isnull=True).count()),
            )
        ],
    )


@register_collector
def _queue_gauges():
    broker = getattr(settings, "CELERY_BROKER_URL", "")
    if not broker.startswith(("redis://", "rediss://")):
        return
    import redis

    client = redis.Redis.from_url(broker, socket_timeout=1, socket_connect_timeout=1)
    queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    yield (
        "selcontrol_celery_queue_length",
        "gauge",
        "Tasks waiting in the Celery queue (not yet taken by a worker).",
        [("selcontrol_celery_queue_length", {"queue": queue}, float(client.llen(queue)))],
    )


def _version() -> str:
    try:
        return metadata.version("selcontrol")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- rendering ----------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    pairs = list(labels)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _bucket_order(key: SampleKey) -> tuple:
    family, suffix, labels = key
    plain = tuple(pair for pair in labels if pair[0] != "le")
    le = dict(labels).get("le")
    bound = math.inf if le in (None, "+Inf") else float(le)
    return (plain, {"_bucket": 0, "_sum": 1, "_count": 2}.get(suffix, 3), bound)


def render() -> str:
    samples = shared_samples()
    if samples is None:
        samples = STORE.snapshot()
    by_family: dict[str, list[SampleKey]] = {}
    for key in samples:
        by_family.setdefault(key[0], []).append(key)
    lines: list[str] = []
    for name in sorted(set(FAMILIES) | set(by_family)):
        kind, help_text = FAMILIES.get(name, ("untyped", ""))
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for key in sorted(by_family.get(name, []), key=_bucket_order):
            lines.append(f"{name}{key[1]}{_labels(key[2])} {_num(samples[key])}")
    lines.append("# HELP selcontrol_build_info The running selcontrol version.")
    lines.append("# TYPE selcontrol_build_info gauge")
    lines.append(f'selcontrol_build_info{{version="{_escape(_version())}"}} 1')
    errors: list[str] = []
    for collector in COLLECTORS:
        try:
            families = list(collector())
        except Exception as exc:  # noqa: BLE001 - one broken source must not hide the others
            logger.warning("metrics collector %s failed: %s", collector.__name__, exc)
            errors.append(collector.__name__.lstrip("_"))
            continue
        for name, kind, help_text, family_samples in families:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for sample_name, labels, value in family_samples:
                lines.append(f"{sample_name}{_labels(sorted(labels.items()))} {_num(value)}")
    lines.append(
        "# HELP selcontrol_scrape_collector_failed 1 for a source that failed this scrape."
    )
    lines.append("# TYPE selcontrol_scrape_collector_failed gauge")
    for collector in COLLECTORS:
        name = collector.__name__.lstrip("_")
        failed = 1 if name in errors else 0
        lines.append(f'selcontrol_scrape_collector_failed{{collector="{name}"}} {failed}')
    return "\n".join(lines) + "\n"


# --- request recording and the view --------------------------------------------------------------


def route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None or not getattr(match, "route", None):
        static = "/" + settings.STATIC_URL.lstrip("/")
        return static if request.path_info.startswith(static) else "unmatched"
    return "/" + match.route.lstrip("^").rstrip("$")


class TelemetryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.api_prefix = settings.SELCONTROL_API_PREFIX

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        duration = time.perf_counter() - started
        try:
            labels = {
                "route": route_of(request),
                "method": request.method if request.method in _METHODS else "other",
                "status": str(response.status_code),
            }
            HTTP_REQUESTS.inc(**labels)
            HTTP_DURATION.observe(duration, **labels)
            if request.path_info.startswith(self.api_prefix) and response.status_code in (401, 403):
                API_AUTH_FAILURES.inc(status=str(response.status_code))
        except Exception:  # noqa: BLE001 - never fail a request for its metrics
            logger.exception("recording request metrics failed")
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _on_login_failed(sender, credentials=None, request=None, **kwargs) -> None:
    LOGIN_FAILURES.inc()


user_login_failed.connect(_on_login_failed, dispatch_uid="selcontrol.telemetry.login_failed")


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape target. With SELCONTROL_METRICS_TOKEN set, it wants
    ``Authorization: Bearer <that token>`` (Prometheus: ``authorization: {credentials: ...}``)."""
    expected = settings.SELCONTROL_METRICS_TOKEN
    if expected:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            response = HttpResponse(
                "Send SELCONTROL_METRICS_TOKEN as 'Authorization: Bearer <token>'.\n",
                status=401,
                content_type="text/plain; charset=utf-8",
            )
            response["WWW-Authenticate"] = 'Bearer realm="selcontrol-metrics"'
            return response
    return HttpResponse(render(), content_type=CONTENT_TYPE)
