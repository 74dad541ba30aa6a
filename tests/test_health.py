import time

import pytest


def test_healthz__no_dependencies__200(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz__database_and_broker_up__200(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "worker": "not watched (tasks run in-process)",
        "beat": "not watched (tasks run in-process)",
    }


@pytest.mark.django_db
def test_readyz__broker_down__503_naming_it(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("broker unreachable")


@pytest.mark.django_db
def test_readyz__worker_and_beat_heartbeats_stale__200_but_deep_503_naming_them(client, settings):
    from selcontrol import heartbeat

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    heartbeat.beat("worker", at=time.time() - 600)
    heartbeat.beat("beat")
    shallow = client.get("/readyz")
    assert shallow.status_code == 200  # a dead worker must not take the web processes out
    assert shallow.json()["checks"]["worker"].startswith("stale: the worker last worked 600 s ago")
    deep = client.get("/readyz", {"deep": 1})
    assert deep.status_code == 503
    assert deep.json()["checks"]["beat"].startswith("ok")


@pytest.mark.django_db
def test_readyz__no_heartbeat_ever__deep_503_asking_whether_a_worker_runs(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/1"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    deep = client.get("/readyz", {"deep": 1})
    assert deep.status_code == 503
    assert deep.json()["checks"]["worker"] == "no worker heartbeat yet: is a worker running?"
