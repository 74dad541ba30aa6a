"""What a bot's token can put into alerts, and odd input on POST /api/v1/instances/report (issue 15,
items 4 and 6): reports are cleaned when stored, alerts escaped for their chat and sent once per
change to a public Discord/Slack webhook only, and every bad report is a 4xx sentence."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from metrics.guardrails import alerts
from metrics.guardrails.models import Alert, AlertSettings
from metrics.guardrails.webhooks import (
    WebhookRefused,
    check_url,
    discord_text,
    mask_url,
    slack_text,
)
from rollout import fleet, services
from rollout.models import AuditEntry, Instance, UnackedInstance
from tests.conftest import SYSTEM
from tests.fleet.test_api import URL, _report
from tests.metrics.guardrails.test_guardrail_alerts import RECEIVER_ALLOWED, Receiver

pytestmark = pytest.mark.django_db

PHISHING_HOST = "@everyone [verify your account](http://evil.example/login)"
"""Exactly the issue's input."""


@pytest.fixture
def rollout(rollout):
    return services.update_rollout(
        rollout, actor=SYSTEM, reason="start the test rollout", enabled=True, percentage=20
    )


@pytest.fixture
def receiver(settings):
    for name, value in RECEIVER_ALLOWED.items():
        setattr(settings, name, value)
    settings.SELCONTROL_ALERT_ATTEMPTS = 1
    r = Receiver()
    yield r
    r.close()


def miss_a_change(reader, rollout, settings, *instance_ids: str) -> AuditEntry:
    """The instances report the current revision, a change follows, and the ack timeout passes."""
    settings.SELCONTROL_ACK_TIMEOUT_SECONDS = 5
    for instance_id in instance_ids:
        answer = reader.post(
            URL, _report(instance_id=instance_id, revision=rollout.revision, host=PHISHING_HOST)
        )
        assert answer.status_code == 200, answer.content
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="test rollback")
    entry = fleet.latest_change(rollout)
    later = entry.created_at + timedelta(seconds=6)
    Instance.objects.update(last_seen_at=later)
    fleet.settle_changes(later)
    return entry


# -- item 4: the alert carries no mention, markdown or link ------------------------------------


def test_report__phishing_host__stored_without_mention_markdown_or_link(reader, rollout):
    answer = reader.post(URL, _report(host=PHISHING_HOST))
    assert answer.status_code == 200
    host = Instance.objects.get().host
    assert host == "everyone-verify-your-account-http-evil.example-login"


@pytest.mark.parametrize("kind", ["discord", "slack"])
def test_alert__phishing_host_at_an_old_revision__webhook_gets_no_ping_and_no_link(
    reader, rollout, settings, receiver, kind, django_capture_on_commit_callbacks
):
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url, kind=kind)
    with django_capture_on_commit_callbacks(execute=True):
        miss_a_change(reader, rollout, settings, "bot-a")
    assert len(receiver.posts) == 1
    sent = json.dumps(receiver.posts[0], ensure_ascii=False)
    assert "@everyone" not in sent and "http://evil" not in sent and "](" not in sent
    assert "has not picked up the change" in sent
    if kind == "discord":
        assert receiver.posts[0]["allowed_mentions"] == {"parse": []}
    else:
        assert receiver.posts[0]["unfurl_links"] is False and "<!" not in sent


def test_alert_text__mentions_markdown_and_links__escaped_for_each_chat():
    text = "@everyone <@123> [login](http://evil.example) *bold* <!channel> a&b"
    discord = discord_text(text)
    assert "@everyone" not in discord and "](http" not in discord and "http://" not in discord
    assert "\\*bold\\*" in discord and "\\<@\u200b123\\>" in discord
    slack = slack_text(text)
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack and "a&amp;b" in slack
    assert "http://" not in slack


def test_alert__fifty_fake_instance_ids_miss_a_change__one_alert_naming_the_count(
    reader, rollout, settings, receiver, django_capture_on_commit_callbacks
):
    AlertSettings.objects.create(rollout=rollout, webhook_url=receiver.url, kind="discord")
    ids = [f"fake-{n}" for n in range(50)]
    with django_capture_on_commit_callbacks(execute=True):
        entry = miss_a_change(reader, rollout, settings, *ids)
        fleet.settle_changes(entry.created_at + timedelta(seconds=7))
    assert Alert.objects.count() == 1 and len(receiver.posts) == 1
    alert = Alert.objects.get()
    assert alert.title == "50 bot instances have not picked up the change"
    assert "and 45 more" in alert.message and alert.numbers["instances"] == 50
    flags = UnackedInstance.objects.filter(audit_entry=entry)
    assert flags.count() == 50 and set(flags.values_list("alert_id", flat=True)) == {alert.pk}


# -- item 4: the webhook setting refuses internal URLs, and is audited ---------------------------

INTERNAL_URLS = [
    "http://127.0.0.1:8000/api/v1/rollouts",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://10.0.0.5/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://100.64.0.1/hook",
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_webhook_setting__internal_address__422_sentence_nothing_saved_no_audit(
    operator_client, rollout, settings, url
):
    settings.SELCONTROL_ALERT_WEBHOOK_HOSTS = "*"  # even with every host admitted
    answer = operator_client.post(
        f"/metrics/{rollout.key}/guardrails/webhook/", {"webhook_url": url, "kind": "discord"}
    )
    assert answer.status_code == 422
    assert "internal address" in answer.content.decode() or "https://" in answer.content.decode()
    assert not AlertSettings.objects.exists()
    assert not AuditEntry.objects.filter(action="alert.webhook").exists()


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("https://evil.example/hook", "evil.example is not one"),
        ("http://discord.com/api/webhooks/1/abc", "must use https://"),
        ("https://user:pw@discord.com/api/webhooks/1/abc", "user name or password"),
        ("gopher://discord.com/x", "must start with https://"),
    ],
)
def test_check_url__not_a_public_discord_or_slack_webhook__refused_with_a_sentence(url, sentence):
    with pytest.raises(WebhookRefused, match=sentence.replace("+", r"\+")):
        check_url(url)


def test_check_url__public_address_with_every_host_admitted__accepted(settings):
    settings.SELCONTROL_ALERT_WEBHOOK_HOSTS = "*"
    assert check_url("https://93.184.215.14/hook") == ["93.184.215.14"]


def test_webhook_setting__changed__one_audit_row_with_the_token_masked(
    operator_client, rollout, settings
):
    for name, value in RECEIVER_ALLOWED.items():
        setattr(settings, name, value)
    url = "http://127.0.0.1:9/api/webhooks/42/s3cret-webhook-token"
    path = f"/metrics/{rollout.key}/guardrails/webhook/"
    for _ in range(2):  # the second save changes nothing: no second row
        answer = operator_client.post(path, {"webhook_url": url, "kind": "slack"})
        assert answer.status_code == 302
    entry = AuditEntry.objects.get(action="alert.webhook")
    assert (entry.actor, entry.rollout_id, entry.before) == ("alice", rollout.pk, {})
    assert entry.after == {
        "webhook_url": "http://127.0.0.1:9/api/webhooks/42/…oken",
        "kind": "slack",
    }
    assert "s3cret" not in json.dumps([entry.before, entry.after, entry.reason])
    assert AlertSettings.objects.get().webhook_url == url
    operator_client.post(path, {"webhook_url": "", "kind": "slack"})
    cleared = AuditEntry.objects.filter(action="alert.webhook").order_by("id").last()
    assert cleared.before["webhook_url"] == mask_url(url) and cleared.after["webhook_url"] == ""


def test_delivery__stored_webhook_now_internal__refused_at_send_time(
    rollout, settings, django_capture_on_commit_callbacks
):
    settings.SELCONTROL_ALERT_WEBHOOK_HOSTS = "*"
    receiver = Receiver()  # on 127.0.0.1, as a rebinding name would resolve
    try:
        url = receiver.url.replace("http://", "https://")
        AlertSettings.objects.create(rollout=rollout, webhook_url=url, kind="discord")
        alert = Alert.objects.create(rollout=rollout, title="t", message="m", numbers={})
        assert alerts.deliver(alert.pk) == Alert.Delivery.FAILED
        assert receiver.posts == []
    finally:
        receiver.close()
    alert.refresh_from_db()
    assert "internal address" in alert.last_error


# -- item 6: odd reports are 4xx sentences, nothing stored ---------------------------------------

STRING_FIELDS = ["host", "client_version", "config_source", "last_sync_error"]


@pytest.mark.parametrize("field", STRING_FIELDS)
@pytest.mark.parametrize("bad", ["x\x00y", "x\ud800y"], ids=["nul", "lone-surrogate"])
def test_report__nul_or_lone_surrogate_in_a_string__400_naming_it(reader, rollout, field, bad):
    answer = reader.post(URL, _report(**{field: bad}))
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"].startswith(field)
    assert not Instance.objects.exists()


@pytest.mark.parametrize("bad", ["x\x00y", "x\ud800y"], ids=["nul", "lone-surrogate"])
def test_report__nul_in_a_counter_name_or_variant__400(reader, rollout, bad):
    for body in (
        _report(events={bad: 1}),
        _report(exposures=[{"rollout": "prompts_v2", "revision": 1, "variant": bad, "count": 1}]),
    ):
        answer = reader.post(URL, body)
        assert answer.status_code == 400, answer.content
    assert not Instance.objects.exists()


@pytest.mark.parametrize("number", ["1e20", str(2**63), "100000000000000000000"])
def test_report__revision_out_of_range__400_naming_it(reader, rollout, number):
    body = json.dumps(_report(revision=12345)).replace('"revision": 12345', f'"revision": {number}')
    answer = reader.post(URL, body)
    assert answer.status_code == 400, answer.content
    assert "revision" in answer.json()["error"]
    exposure = [{"rollout": "prompts_v2", "revision": 12345, "variant": "v1", "count": 1}]
    body = json.dumps(_report(exposures=exposure)).replace("12345", number)
    assert reader.post(URL, body).status_code == 400
    assert not Instance.objects.exists()


@pytest.mark.parametrize(
    "started_at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z"]
)
def test_report__started_at_at_the_year_edges__400_sentence(reader, rollout, started_at):
    answer = reader.post(URL, _report(started_at=started_at))
    assert answer.status_code == 400, answer.content
    assert "started_at" in answer.json()["error"]
    assert not Instance.objects.exists()


def test_report__10_mb_body__413_sentence(reader, rollout):
    body = json.dumps(_report(last_sync_error="x" * 10_000_000))
    answer = reader.post(URL, body)
    assert answer.status_code == 413
    assert "MiB" in answer.json()["error"]
    assert not Instance.objects.exists()
