"""The control plane's own metrics, served at ``/metrics`` in the Prometheus text format.

(Named ``telemetry`` so it is not confused with the ``metrics`` app, which holds the bot's
quality data.)

prometheus_client does the metric types (counting, histogram buckets), the registry, the
collector protocol and the text exposition (HELP/TYPE lines, escaping, ``_bucket``/``_sum``/
``_count``). What it does not do is kept here: a scrape through the load balancer must see the
sum over every web process of every host, not the one worker that happened to answer.
prometheus_client's multiprocess mode sums one host's processes through files in a shared
directory, which would mean scraping every pod; instead each process adds what its counters
gained to one Redis hash every SELCONTROL_TELEMETRY_FLUSH_SECONDS (and before each scrape), and
``SharedCounters`` serves that hash. Without Redis (the quick start, one process), or while it is
down, the process's own numbers are served. Gauges (config revision, rollout state, tokens,
queue length) are read at scrape time; other apps add theirs with ``register_collector``.

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
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

import prometheus_client
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

logger = logging.getLogger("selcontrol.telemetry")

REDIS_KEY = "selcontrol:telemetry:v1"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, str, Labels]  # (family, suffix, labels): one field of the Redis hash


def _le(bound: float) -> str:
    """A bucket's ``le`` as served since the first release ("1", not prometheus_client's "1.0"):
    the same series for Prometheus 2, and the same Redis fields as processes of older releases
    write during a rolling deploy."""
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if bound == int(bound) else repr(bound)


class _Process:
    """This process's side: a registry of its own metrics, the totals it has already added to
    Redis, and the thread that adds the rest. A forked child starts a new one (from zero)."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.flushed: dict[SampleKey, float] = {}
        self.touched: set[tuple[str, tuple[str, ...]]] = set()  # (family, label values) changed
        self.touched_lock = threading.Lock()  # since the last flush took the set
        self.flush_lock = threading.Lock()
        self.flusher: threading.Thread | None = None


_process = _Process()
FAMILIES: dict[str, _Family[Any]] = {}  # name -> the counter or histogram recorded under it


def _start_afresh() -> None:
    global _process
    _process = _Process()
    for family in FAMILIES.values():
        family.build(_process.registry)


os.register_at_fork(after_in_child=_start_afresh)


M = TypeVar("M", prometheus_client.Counter, prometheus_client.Histogram)


class _Family(Generic[M]):
    suffixes: tuple[str, ...] = ()
    le_of: dict[str, str] = {}  # prometheus_client's spelling of a bucket bound -> ours
    metric: M  # this process's, rebuilt in a forked child

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        FAMILIES[name] = self
        self.build(_process.registry)

    def build(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.metric = self._make(registry)
        self.children: dict[tuple[str, ...], M] = {}  # label values -> prometheus_client child

    def _make(self, registry: prometheus_client.CollectorRegistry) -> M:
        raise NotImplementedError

    def _child(self, labels: dict[str, str]) -> tuple[tuple[str, ...], M]:
        values = tuple(str(labels[n]) for n in self.labelnames)
        child = self.children.get(values)
        if child is None:
            child = self.metric.labels(*values) if values else self.metric
            self.children[values] = child
        return values, child

    def _touched(self, values: tuple[str, ...]) -> None:
        """After each change, so a flush that takes the set has seen the change."""
        process = _process
        with process.touched_lock:
            process.touched.add((self.name, values))
        if process.flusher is None and _redis_url():
            _start_flusher(process)

    def child_samples(self, values: tuple[str, ...]) -> Iterator[tuple[SampleKey, float]]:
        """One label set's totals (collected from its child alone: a flush costs what changed)."""
        plain: Labels = tuple(zip(self.labelnames, values, strict=True))
        for metric in self.children[values].collect():
            for sample in metric.samples:
                suffix = sample.name.removeprefix(self.name)
                if suffix in self.suffixes:  # not _created: a process's own, not summable
                    le = sample.labels.get("le")
                    labels = plain if le is None else (*plain, ("le", self.le_of[le]))
                    yield (self.name, suffix, labels), sample.value

    def local_samples(self) -> Iterator[tuple[SampleKey, float]]:
        for values in list(self.children):
            yield from self.child_samples(values)

    def family(self, samples: dict[SampleKey, float]) -> Metric:
        raise NotImplementedError


class Counter(_Family[prometheus_client.Counter]):
    suffixes = ("",)

    def _make(self, registry: prometheus_client.CollectorRegistry) -> prometheus_client.Counter:
        return prometheus_client.Counter(self.name, self.help, self.labelnames, registry=registry)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        values, child = self._child(labels)
        child.inc(amount)
        self._touched(values)

    def family(self, samples: dict[SampleKey, float]) -> Metric:
        counter = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        for (_, _, labels), value in sorted(samples.items()):
            counter.add_metric([v for _, v in labels], value)
        if not self.labelnames and not samples:
            counter.add_metric([], 0.0)
        return counter


class Histogram(_Family[prometheus_client.Histogram]):
    suffixes = ("_bucket", "_sum", "_count")

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Iterable[str] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self.buckets = buckets
        self.le_of = {floatToGoString(b): _le(b) for b in (*buckets, math.inf)}
        self.les = list(self.le_of.values())
        super().__init__(name, help_text, labelnames)

    def _make(self, registry: prometheus_client.CollectorRegistry) -> prometheus_client.Histogram:
        return prometheus_client.Histogram(
            self.name, self.help, self.labelnames, registry=registry, buckets=self.buckets
        )

    def observe(self, value: float, /, **labels: str) -> None:
        values, child = self._child(labels)
        child.observe(value)
        self._touched(values)

    def family(self, samples: dict[SampleKey, float]) -> Metric:
        """Every bucket is served, those no request has reached yet as 0."""
        buckets: dict[Labels, dict[str, float]] = {}
        sums: dict[Labels, float] = {}
        for (_, suffix, labels), value in samples.items():
            plain = tuple(pair for pair in labels if pair[0] != "le")
            if suffix == "_bucket":
                buckets.setdefault(plain, {})[dict(labels)["le"]] = value
            elif suffix == "_sum":
                sums[plain] = value
        histogram = HistogramMetricFamily(self.name, self.help, labels=self.labelnames)
        for plain in sorted(buckets):
            counts = buckets[plain]
            histogram.add_metric(
                [v for _, v in plain],
                [(le, counts.get(le, 0.0)) for le in self.les],
                sums.get(plain, 0.0),
            )
        return histogram


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


# --- the cluster-wide sums in Redis --------------------------------------------------------------

_redis_client: Any = None
_redis_client_url = None


def _redis_url() -> str:
    return getattr(settings, "REDIS_URL", "") or ""


def _redis() -> Any:
    global _redis_client, _redis_client_url
    url = _redis_url()
    if _redis_client is None or _redis_client_url != url:
        import redis

        _redis_client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        _redis_client_url = url
    return _redis_client


def _start_flusher(process: _Process) -> None:
    with process.touched_lock:
        if process.flusher is None:
            process.flusher = threading.Thread(
                target=_flush_loop, args=(process,), name="selcontrol-telemetry", daemon=True
            )
            process.flusher.start()


def _flush_loop(process: _Process) -> None:
    interval = float(settings.SELCONTROL_TELEMETRY_FLUSH_SECONDS)
    while _process is process:
        time.sleep(interval)
        flush()


def local_samples() -> dict[SampleKey, float]:
    """This process's own totals since it started."""
    return dict(pair for family in list(FAMILIES.values()) for pair in family.local_samples())


def _field(key: SampleKey) -> str:
    family, suffix, labels = key
    return json.dumps([family, suffix, [list(pair) for pair in labels]], separators=(",", ":"))


def _unfield(raw: bytes | str) -> SampleKey:
    family, suffix, labels = json.loads(raw)
    return family, suffix, tuple((k, v) for k, v in labels)


def flush() -> bool:
    """Add what this process's counters gained since the last flush to Redis. False when Redis
    fails: the gain is then added by the next flush that succeeds."""
    if not _redis_url():
        return False
    process = _process
    with process.flush_lock:
        with process.touched_lock:
            touched, process.touched = process.touched, set()
        totals = dict(
            pair for name, values in touched for pair in FAMILIES[name].child_samples(values)
        )
        gains = {k: v - process.flushed.get(k, 0.0) for k, v in totals.items()}
        gains = {k: gain for k, gain in gains.items() if gain}
        if gains:
            try:
                pipe = _redis().pipeline(transaction=False)
                for key, gain in gains.items():
                    pipe.hincrbyfloat(REDIS_KEY, _field(key), gain)
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - metrics must never break requests
                logger.warning("could not add metrics to Redis: %s", exc.__class__.__name__)
                with process.touched_lock:
                    process.touched |= touched  # added by the next flush that succeeds
                return False
        process.flushed.update(totals)
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


class SharedCounters:
    """The counters and histograms: summed over every process in Redis, or this process's own
    when Redis is absent or failing. A family no process knows (left by an older release) is
    served untyped."""

    def collect(self) -> Iterator[Metric]:
        samples = shared_samples()
        if samples is None:
            samples = local_samples()
        grouped: dict[str, dict[SampleKey, float]] = {}
        for key, value in samples.items():
            grouped.setdefault(key[0], {})[key] = value
        for name in sorted(set(FAMILIES) | set(grouped)):
            known = FAMILIES.get(name)
            if known is not None:
                yield known.family(grouped.get(name, {}))
                continue
            untyped = Metric(name, "", "unknown")
            for (_, suffix, labels), value in sorted(grouped[name].items()):
                untyped.add_sample(name + suffix, dict(labels), value)
            yield untyped


# --- gauges read at scrape time ------------------------------------------------------------------

Source = Callable[[], Iterable[Metric]]
COLLECTORS: list[Source] = []


def register_collector(collector: Source) -> Source:
    """Add a function called at every scrape that yields prometheus_client metric families
    (``GaugeMetricFamily`` ...). Usable as a decorator. One that raises is reported in
    ``selcontrol_scrape_collector_failed`` and the others are still served."""
    COLLECTORS.append(collector)
    return collector


def _version() -> str:
    try:
        return metadata.version("selcontrol")
    except metadata.PackageNotFoundError:
        return "unknown"


class Sources:
    """Build info, then every registered source, then which of them failed this scrape."""

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "selcontrol_build_info", "The running selcontrol version.", labels=["version"]
        )
        build.add_metric([_version()], 1)
        yield build
        failed: dict[str, int] = {}
        for source in list(COLLECTORS):
            name = source.__name__.lstrip("_")
            try:
                families = list(source())
            except Exception as exc:  # noqa: BLE001 - one broken source must not hide the others
                logger.warning("metrics collector %s failed: %s", name, exc)
                failed[name] = 1
                continue
            failed[name] = 0
            yield from families
        failures = GaugeMetricFamily(
            "selcontrol_scrape_collector_failed",
            "1 for a source that failed this scrape.",
            labels=["collector"],
        )
        for name, flag in failed.items():
            failures.add_metric([name], flag)
        yield failures


EXPOSITION = prometheus_client.CollectorRegistry()
EXPOSITION.register(SharedCounters())
EXPOSITION.register(Sources())


def render() -> str:
    return prometheus_client.generate_latest(EXPOSITION).decode()


def _gauge(name: str, help_text: str, label: str | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=[label] if label else None)


@register_collector
def _rollout_gauges() -> Iterator[Metric]:
    from rollout.models import ApiToken, ConfigState, Rollout

    state = ConfigState.objects.filter(pk=1).values_list("revision", flat=True).first()
    rollouts = list(
        Rollout.objects.values_list(
            "key", "enabled", "percentage", "simplified_percentage", "revision"
        )
    )
    revision = _gauge(
        "selcontrol_config_revision",
        "The config document's global revision (what the bot's ETag carries).",
    )
    revision.add_metric([], float(state or 0))
    yield revision
    per_rollout = [
        ("enabled", 1, "1 while the rollout is enabled, 0 while its kill switch is engaged."),
        ("percentage", 2, "Share of channels (percent) given the treatment variant."),
        (
            "simplified_percentage",
            3,
            "Share (percent) of treated channels given the simplified variant.",
        ),
        ("revision", 4, "The rollout's revision (bumped by every change)."),
    ]
    for suffix, column, help_text in per_rollout:
        gauge = _gauge(f"selcontrol_rollout_{suffix}", help_text, "rollout")
        for row in rollouts:
            gauge.add_metric([row[0]], float(row[column]))
        yield gauge
    tokens = _gauge("selcontrol_api_tokens_active", "API tokens not revoked.")
    tokens.add_metric([], float(ApiToken.objects.filter(revoked_at__isnull=True).count()))
    yield tokens


@register_collector
def _queue_gauges() -> Iterator[Metric]:
    broker = getattr(settings, "CELERY_BROKER_URL", "")
    if not broker.startswith(("redis://", "rediss://")):
        return
    import redis

    client = redis.Redis.from_url(broker, socket_timeout=1, socket_connect_timeout=1)
    queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    gauge = _gauge(
        "selcontrol_celery_queue_length",
        "Tasks waiting in the Celery queue (not yet taken by a worker).",
        "queue",
    )
    gauge.add_metric([queue], float(client.llen(queue)))
    yield gauge


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
    return HttpResponse(prometheus_client.generate_latest(EXPOSITION), content_type=CONTENT_TYPE)
