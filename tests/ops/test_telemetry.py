"""/metrics: the control plane's own numbers in the Prometheus text format."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rollout import services
from tests.conftest import SYSTEM

SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})? "
    r"(?P<value>[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|Inf|NaN|\+Inf))$"
)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """A strict reader of the exposition format: HELP and TYPE before a family's samples, each
    family in one block, no duplicate samples, every line well-formed."""
    samples: dict[tuple[str, tuple], float] = {}
    typed: dict[str, str] = {}
    seen_families: list[str] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name not in typed, f"family {name} typed twice"
            typed[name] = kind
            seen_families.append(name)
            continue
        match = SAMPLE.match(line)
        assert match, f"malformed line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family == seen_families[-1], f"{name} outside its family's block"
        labels = tuple(LABEL.findall(match["labels"] or ""))
        key = (name, labels)
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(match["value"].replace("+Inf", "inf"))
    return samples


def value(samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and wanted <= set(ls)]
    return sum(found)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.content.decode())


DECIDE = "/api/v1/rollouts/<key>/decide"


def test_metrics__api_call__counted_by_route_pattern_and_status(client, reader):
    before = value(scrape(client), "selcontrol_http_requests_total", route=DECIDE, status="200")
    for channel in ("111111111111111111", "222222222222222222"):
        assert (
            reader.get("/api/v1/rollouts/prompts_v2/decide", channel_id=channel).status_code == 200
        )
    after = scrape(client)
    assert value(after, "selcontrol_http_requests_total", route=DECIDE, status="200") == before + 2
    assert not [
        k for k in after if "prompts_v2" in str(k[1]) and k[0].startswith("selcontrol_http")
    ]


def test_metrics__latency_histogram__buckets_are_cumulative_and_inf_equals_count(client, reader):
    reader.get("/api/v1/config")
    samples = scrape(client)
    labels = {"route": "/api/v1/config", "method": "GET", "status": "200"}
    buckets = sorted(
        (float(dict(ls)["le"].replace("+Inf", "inf")), v)
        for (n, ls), v in samples.items()
        if n == "selcontrol_http_request_duration_seconds_bucket" and set(labels.items()) <= set(ls)
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert buckets[-1][0] == float("inf")
    count = value(samples, "selcontrol_http_request_duration_seconds_count", **labels)
    assert buckets[-1][1] == count >= 1
    assert value(samples, "selcontrol_http_request_duration_seconds_sum", **labels) > 0


def test_metrics__unknown_paths__share_one_label(client):
    before = value(scrape(client), "selcontrol_http_requests_total", route="unmatched")
    client.get("/wp-login.php")
    client.get("/.env")
    samples = scrape(client)
    assert value(samples, "selcontrol_http_requests_total", route="unmatched") == before + 2
    assert not [k for k in samples if "wp-login" in str(k)]


def test_metrics__bad_and_unscoped_tokens__counted_as_auth_failures(client, make_token):
    from tests.conftest import ApiClient

    before = scrape(client)
    ApiClient("sc_not_a_real_token_at_all").get("/api/v1/config")
    ApiClient(make_token("events:write")).get("/api/v1/config")
    after = scrape(client)
    for status in ("401", "403"):
        name = "selcontrol_api_auth_failures_total"
        assert value(after, name, status=status) == value(before, name, status=status) + 1


def test_metrics__failed_sign_in__counted(client, alice):
    before = value(scrape(client), "selcontrol_login_failures_total")
    client.post("/login/", {"username": "alice", "password": "wrong"})
    assert value(scrape(client), "selcontrol_login_failures_total") == before + 1


def test_metrics__rollout_changed__gauges_follow(client, rollout):
    services.update_rollout(
        rollout, actor=SYSTEM, reason="metrics test", enabled=True, percentage=20
    )
    rollout.refresh_from_db()
    samples = scrape(client)
    from rollout.models import ConfigState

    assert value(samples, "selcontrol_config_revision") == ConfigState.objects.get(pk=1).revision
    assert value(samples, "selcontrol_rollout_percentage", rollout="prompts_v2") == 20
    assert value(samples, "selcontrol_rollout_enabled", rollout="prompts_v2") == 1
    assert value(samples, "selcontrol_rollout_revision", rollout="prompts_v2") == rollout.revision
    assert value(samples, "selcontrol_scrape_collector_failed", collector="rollout_gauges") == 0


def test_metrics__active_tokens__counted(client, make_token):
    make_token("config:read")
    make_token("config:read")
    assert value(scrape(client), "selcontrol_api_tokens_active") == 2


def test_metrics__broker_configured__queue_length_reported(client, settings, db):
    import redis

    settings.CELERY_BROKER_URL = os.environ["REDIS_URL"]
    conn = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    conn.delete("celery")
    conn.rpush("celery", "a", "b", "c")
    try:
        assert value(scrape(client), "selcontrol_celery_queue_length", queue="celery") == 3
    finally:
        conn.delete("celery")


def test_metrics__broker_down__other_numbers_still_served(client, settings, db):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    samples = scrape(client)
    assert value(samples, "selcontrol_scrape_collector_failed", collector="queue_gauges") == 1
    assert value(samples, "selcontrol_scrape_collector_failed", collector="rollout_gauges") == 0


def test_metrics__redis_down__this_process_numbers_served(client, settings, db):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    client.get("/healthz")
    samples = scrape(client)
    assert value(samples, "selcontrol_http_requests_total", route="/healthz") >= 1


def test_metrics__token_configured__scrape_without_it__401(client, settings, db):
    settings.SELCONTROL_METRICS_TOKEN = "scrape-secret-0123456789"
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics__token_configured__scrape_with_it__200(client, settings, db):
    settings.SELCONTROL_METRICS_TOKEN = "scrape-secret-0123456789"
    headers = {"Authorization": "Bearer scrape-secret-0123456789"}
    assert client.get("/metrics", headers=headers).status_code == 200


def test_metrics__post__405(client, db):
    assert client.post("/metrics").status_code == 405


SECOND_PROCESS = textwrap.dedent(
    """
    import django, os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")
    django.setup()
    from selcontrol import telemetry
    for _ in range(7):
        telemetry.HTTP_REQUESTS.inc(route="/from-another-process", method="GET", status="200")
    assert telemetry.flush()
    """
)


def test_metrics__another_process_counted__scrape_shows_the_sum(client, db):
    """Every web process adds its numbers to Redis, so a scrape through the load balancer sees
    them all, whichever process answers."""
    client.get("/healthz")  # this process has numbers of its own too
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SECRET_KEY": "x" * 60}
    subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS], cwd=root, env=env, check=True, timeout=60
    )
    samples = scrape(client)
    assert value(samples, "selcontrol_http_requests_total", route="/from-another-process") == 7
    assert value(samples, "selcontrol_http_requests_total", route="/healthz") >= 1


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes__https_redirect_on__answered_over_plain_http(client, settings, db, path):
    """Load balancers probe over plain HTTP; a redirect to HTTPS would mark every instance down."""
    settings.SECURE_SSL_REDIRECT = True
    settings.CELERY_BROKER_URL = ""
    assert client.get(path).status_code == 200
    assert client.get("/login/").status_code == 301


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes__host_is_the_instance_ip__answered(client, settings, db, path):
    """Load balancers and Prometheus send the backend's IP as Host, which ALLOWED_HOSTS lacks."""
    settings.ALLOWED_HOSTS = ["selcontrol.example.org"]
    settings.CELERY_BROKER_URL = ""
    response = client.get(path, HTTP_HOST="10.0.3.7:8000")
    assert response.status_code == 200
    assert response["X-Request-ID"]


def test_console__host_not_allowed__still_400(client, settings, db):
    settings.ALLOWED_HOSTS = ["selcontrol.example.org"]
    assert client.get("/login/", HTTP_HOST="10.0.3.7:8000").status_code == 400
    assert client.get("/api/v1/config", HTTP_HOST="10.0.3.7:8000").status_code == 400


def test_probe__counted_under_its_route(client, db):
    before = value(scrape(client), "selcontrol_http_requests_total", route="/healthz")
    client.get("/healthz")
    assert value(scrape(client), "selcontrol_http_requests_total", route="/healthz") == before + 1


# --- read by prometheus_client's own parser, as Prometheus reads it ----------------------------


def families(client) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def series(family, **labels: str) -> dict[str, float]:
    """A family's samples whose labels include these, by sample name (summed over the rest)."""
    found: dict[str, float] = {}
    for sample in family.samples:
        if set(labels.items()) <= set(sample.labels.items()):
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def test_metrics__parsed_by_prometheus_client__counts_equal_the_requests_made(client, db):
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    before = families(client)
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    for _ in range(3):
        assert client.get("/no-such-page-at-all").status_code == 404
    after = families(client)
    requests_before = series(before["selcontrol_http_requests"], **healthz)
    requests_after = series(after["selcontrol_http_requests"], **healthz)
    gained = requests_after["selcontrol_http_requests_total"] - requests_before.get(
        "selcontrol_http_requests_total", 0
    )
    assert gained == 5
    unmatched = [
        series(f["selcontrol_http_requests"], route="unmatched", status="404").get(
            "selcontrol_http_requests_total", 0
        )
        for f in (before, after)
    ]
    assert unmatched[1] - unmatched[0] == 3
    latency = series(after["selcontrol_http_request_duration_seconds"], **healthz)
    assert (
        latency["selcontrol_http_request_duration_seconds_count"]
        == (requests_after["selcontrol_http_requests_total"])
    )
    assert after["selcontrol_http_requests"].type == "counter"
    assert after["selcontrol_http_request_duration_seconds"].type == "histogram"
    assert after["selcontrol_build_info"].type == "gauge"
    assert after["selcontrol_http_requests"].documentation == (
        "HTTP requests answered, by URL pattern, method and status."
    )


def test_metrics__latency_histogram__every_bucket_served_the_empty_ones_as_zero(client, db):
    from selcontrol import telemetry

    labels = {"route": "/bench/every-bucket", "method": "GET", "status": "200"}
    telemetry.HTTP_DURATION.observe(0.3, **labels)
    family = families(client)["selcontrol_http_request_duration_seconds"]
    buckets = {
        s.labels["le"]: s.value
        for s in family.samples
        if s.name.endswith("_bucket") and set(labels.items()) <= set(s.labels.items())
    }
    expected_les = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5"]
    assert list(buckets) == expected_les + ["10", "+Inf"]
    assert all(buckets[le] == 0 for le in expected_les[:6])
    assert all(buckets[le] >= 1 for le in expected_les[6:] + ["10", "+Inf"])


def test_metrics__label_value_with_quote_backslash_newline__read_back_intact(client, db):
    from selcontrol import telemetry

    route = '/odd"route\\with\nnewline'
    telemetry.HTTP_REQUESTS.inc(route=route, method="GET", status="200")
    family = families(client)["selcontrol_http_requests"]
    assert series(family, route=route)["selcontrol_http_requests_total"] >= 1


def test_metrics__redis_field_format__unchanged_for_processes_of_the_last_release(client, db):
    """During a rolling deploy old and new processes add to the same hash: same fields."""
    import redis

    from selcontrol import telemetry

    telemetry.HTTP_DURATION.observe(0.7, route="/field-format", method="GET", status="200")
    assert telemetry.flush()
    fields = redis.Redis.from_url(os.environ["REDIS_URL"]).hkeys(telemetry.REDIS_KEY)
    expected = (
        '["selcontrol_http_request_duration_seconds","_bucket",[["route","/field-format"],'
        '["method","GET"],["status","200"],["le","1"]]]'
    )
    assert expected.encode() in fields
    assert not [f for f in fields if b'"le","1.0"' in f]


def test_metrics__family_left_by_an_older_release__served_untyped(client, db):
    import redis

    from selcontrol import telemetry

    conn = redis.Redis.from_url(os.environ["REDIS_URL"])
    field = '["selcontrol_retired_total","",[["kind","old"]]]'
    conn.hset(telemetry.REDIS_KEY, field, 4)
    try:
        family = families(client)["selcontrol_retired_total"]
    finally:
        conn.hdel(telemetry.REDIS_KEY, field)
    assert family.type == "unknown"
    assert series(family, kind="old") == {"selcontrol_retired_total": 4}


def test_metrics__source_yielding_a_prometheus_client_family__served(client, db):
    from prometheus_client.core import GaugeMetricFamily

    from selcontrol import telemetry

    def _widgets():
        gauge = GaugeMetricFamily("selcontrol_test_widgets", "Widgets.", labels=["colour"])
        gauge.add_metric(["blue"], 3)
        yield gauge

    telemetry.register_collector(_widgets)
    try:
        parsed = families(client)
    finally:
        telemetry.COLLECTORS.remove(_widgets)
    assert series(parsed["selcontrol_test_widgets"], colour="blue") == {
        "selcontrol_test_widgets": 3
    }
    failed = series(parsed["selcontrol_scrape_collector_failed"], collector="widgets")
    assert failed == {"selcontrol_scrape_collector_failed": 0}


def test_metrics__redis_back_after_an_outage__counts_made_during_it_added_once(
    client, settings, db
):
    from selcontrol import telemetry

    route = "/during-the-outage"
    before = value(scrape(client), "selcontrol_http_requests_total", route=route)
    real = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(4):
        telemetry.HTTP_REQUESTS.inc(route=route, method="GET", status="200")
    assert not telemetry.flush()
    settings.REDIS_URL = real
    assert telemetry.flush()
    assert telemetry.flush()
    assert value(scrape(client), "selcontrol_http_requests_total", route=route) == before + 4


FORKED = textwrap.dedent(
    """
    import django, os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")
    django.setup()
    from selcontrol import telemetry
    for _ in range(5):  # the parent's, not yet in Redis when it forks
        telemetry.HTTP_REQUESTS.inc(route="/forked", method="GET", status="200")
    child = os.fork()
    if child == 0:
        telemetry.HTTP_REQUESTS.inc(2, route="/forked", method="GET", status="200")
        os._exit(0 if telemetry.flush() else 1)
    assert os.waitpid(child, 0)[1] == 0
    assert telemetry.flush()
    """
)


def test_metrics__forked_worker__starts_from_zero_parent_counts_added_once(client, db):
    import redis

    from selcontrol import telemetry

    redis.Redis.from_url(os.environ["REDIS_URL"]).hdel(
        telemetry.REDIS_KEY,
        '["selcontrol_http_requests_total","",[["route","/forked"],'
        '["method","GET"],["status","200"]]]',
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SECRET_KEY": "x" * 60}
    subprocess.run([sys.executable, "-c", FORKED], cwd=root, env=env, check=True, timeout=60)
    assert value(scrape(client), "selcontrol_http_requests_total", route="/forked") == 7


NO_REDIS = textwrap.dedent(
    """
    import django, os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "selcontrol.settings")
    django.setup()
    from selcontrol import telemetry
    telemetry.COLLECTORS.clear()  # no database in this process
    import sys
    sys.stdout.write(telemetry.render())
    """
)


def test_metrics__without_redis_no_failed_sign_in_yet__login_failures_served_as_zero(db):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SECRET_KEY": "x" * 60, "REDIS_URL": "", "CELERY_BROKER_URL": ""}
    out = subprocess.run(
        [sys.executable, "-c", NO_REDIS],
        cwd=root,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    samples = parse(out)
    assert samples[("selcontrol_login_failures_total", ())] == 0


def test_metrics__threads_record_while_flushes_run__redis_sum_equals_every_count(client, db):
    import threading

    from selcontrol import telemetry

    route = f"/threads-{os.getpid()}-{threading.get_ident()}"
    first = scrape(client)
    before = value(first, "selcontrol_http_requests_total", route=route)
    count_before = value(first, "selcontrol_http_request_duration_seconds_count", route=route)
    done = threading.Event()

    def record() -> None:
        for n in range(1500):
            telemetry.HTTP_REQUESTS.inc(route=route, method="GET", status=str(200 + n % 3))
            telemetry.HTTP_DURATION.observe(0.001, route=route, method="GET", status="200")

    def flush_all_along() -> None:
        while not done.is_set():
            assert telemetry.flush()

    flusher = threading.Thread(target=flush_all_along)
    flusher.start()
    workers = [threading.Thread(target=record) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    flusher.join()
    samples = scrape(client)
    assert value(samples, "selcontrol_http_requests_total", route=route) == before + 6000
    count = value(samples, "selcontrol_http_request_duration_seconds_count", route=route)
    assert count == count_before + 6000
