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
