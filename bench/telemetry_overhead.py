"""What ``/metrics`` costs: microseconds added to each request by ``TelemetryMiddleware``, and
milliseconds to flush to Redis and to render a scrape.

All figures are CPU time of the benchmark process (``time.process_time``), so the other work on
a shared machine does not enter them; Redis's own time does not either.

- ``request``: a trivial view called through the middleware (route resolved, counter +
  latency histogram recorded) minus the same view called bare, on a mix of 60 routes x 3
  statuses x 2 methods (360 label sets, more than the console and API have), in alternating
  chunks so the machine's noise hits both sides alike;
- ``flush``: adding one process's numbers to the Redis hash, when all 360 label sets changed
  since the last flush and when 10 did (a quiet 2 s);
- ``scrape``: rendering the exposition of the request counters and histograms summed in Redis
  (the database gauges are left out: they cost the same whatever renders them).

No database. Redis at REDIS_URL (default redis://127.0.0.1:6379/13); the telemetry hash there is
deleted before and after.

    .venv/bin/python bench/telemetry_overhead.py [--n 60000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["SELCONTROL_TELEMETRY_FLUSH_SECONDS"] = "3600"  # flushes are timed here, not mid-run

import django  # noqa: E402

django.setup()

from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.urls import ResolverMatch  # noqa: E402

from selcontrol import telemetry  # noqa: E402


def requests(count: int) -> list:
    factory = RequestFactory()
    made = []
    for i in range(count):  # 60 routes x 3 statuses x 2 methods, every 360 requests
        route, status, method = i % 60, (i // 60) % 3, (i // 180) % 2
        request = factory.generic(("GET", "POST")[method], f"/bench/{route}/")
        request.resolver_match = ResolverMatch(
            lambda r: None, (), {}, route=f"bench/<int:n{route}>/"
        )
        request.bench_status = (200, 302, 404)[status]
        made.append(request)
    return made


def view(request):
    return HttpResponse(status=request.bench_status)


def per_request_us(callable_, batch) -> float:
    """CPU time of this process per call: other processes on the machine do not count."""
    started = time.process_time()
    for request in batch:
        callable_(request)
    return (time.process_time() - started) / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    telemetry.COLLECTORS.clear()  # database gauges: not what is measured here
    redis = telemetry._redis()
    redis.delete(telemetry.REDIS_KEY)
    middleware = telemetry.TelemetryMiddleware(view)
    batch = requests(5000)
    bare, wrapped = [], []
    for _ in range(args.rounds):
        for _ in range(max(1, args.n // len(batch))):
            bare.append(per_request_us(view, batch))
            wrapped.append(per_request_us(middleware, batch))
    overhead = [w - b for w, b in zip(wrapped, bare, strict=True)]
    flushes, scrapes = [], []
    for _ in range(20):
        for request in batch[:360]:
            middleware(request)
        started = time.process_time()
        assert telemetry.flush()
        flushes.append((time.process_time() - started) * 1e3)
        started = time.process_time()
        text = telemetry.render()
        scrapes.append((time.process_time() - started) * 1e3)
    few = []
    for _ in range(20):
        for request in batch[:10]:
            middleware(request)
        started = time.process_time()
        assert telemetry.flush()
        few.append((time.process_time() - started) * 1e3)
    redis.delete(telemetry.REDIS_KEY)
    lines = len(text.splitlines())
    print(f"telemetry.py: {len(Path(telemetry.__file__).read_text().splitlines())} lines")
    print("CPU time of this process (median / best of chunks of 5,000 requests)")
    for label, values, unit in (
        ("bare view", bare, "us/request"),
        ("through middleware", wrapped, "us/request"),
        ("middleware overhead", overhead, "us/request"),
        ("flush (360 changed)", flushes, "ms"),
        ("flush (10 of 360)", few, "ms"),
        (f"scrape ({lines} lines)", scrapes, "ms"),
    ):
        print(f"{label:22} {statistics.median(values):7.2f} / {min(values):7.2f} {unit}")


if __name__ == "__main__":
    main()
