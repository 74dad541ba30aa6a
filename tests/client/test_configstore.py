"""ConfigStore: validation of config documents, fail-static, memo, files. No server needed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from selcontrol_client import SelControl, assignment, legacy_env_document
from selcontrol_client.configstore import ConfigStore, parse_document

from .conftest import ROOT, config_document


def test_import__package__needs_no_django():
    code = (
        "import sys, selcontrol_client; "
        "from selcontrol_client import SelControl, AsyncSelControl; "
        "assert 'django' not in sys.modules, 'django was imported'; "
        "assert 'ninja' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_variant__nothing_at_all__control():
    store = ConfigStore()
    assert store.variant("prompts_v2", "123") == "v1"
    assert store.decide("prompts_v2", "123") == ("v1", "no_config")


def test_variant__unknown_rollout__control():
    store = ConfigStore()
    store.apply(config_document(percentage=100), etag='"7"')
    assert store.variant("other", "123") == "v1"


@pytest.mark.parametrize(
    "document",
    [
        "not a dict",
        {"revision": 3},
        {"revision": "3", "rollouts": []},
        {"revision": 3, "rollouts": [{"key": "prompts_v2"}]},
        {"revision": 3, "rollouts": ["x"]},
        config_document(percentage=150),
        config_document(enabled="yes"),
        config_document(strategy="random"),
        config_document(overrides={"1": "v2_full"}),
        config_document(overrides={"1": {"variant": "v1", "expires_at": "tomorrow"}}),
    ],
    ids=lambda d: json.dumps(d)[:60],
)
def test_apply__bad_document__refused_and_last_good_kept(document):
    store = ConfigStore()
    assert store.apply(config_document(percentage=100), etag='"7"')
    assert not store.apply(document, etag='"8"')
    assert store.snapshot.etag == '"7"'
    assert store.variant("prompts_v2", "42") == "v2_full"
    assert store.refused == 1


def test_variant__weird_channel_ids__never_raise():
    store = ConfigStore()
    store.apply(config_document(percentage=100), etag=None)
    for channel in [None, "", [1, 2], {"a": 1}, object(), "x" * 10_000, -1, 3.5]:
        assert store.variant("prompts_v2", channel) in {"v1", "v2_full"}


def test_variant__same_as_assignment_decide_for_many_ids():
    document = config_document(percentage=37, simplified_percentage=41, revision=9)
    store = ConfigStore()
    store.apply(document, etag=None)
    rule = assignment.rule_from_config(document["rollouts"][0])
    for n in range(3000):
        channel = str(10**17 + n * 7919)
        assert store.variant("prompts_v2", channel) == assignment.decide(rule, channel)[0]
        assert store.variant("prompts_v2", channel) == assignment.decide(rule, channel)[0]


def test_memo__new_snapshot__decisions_follow_the_new_config():
    store = ConfigStore()
    store.apply(config_document(percentage=100), etag='"1"')
    assert store.variant("prompts_v2", "42") == "v2_full"
    store.apply(config_document(enabled=False, revision=8), etag='"8"')
    assert store.variant("prompts_v2", "42") == "v1"


def test_override_with_expiry__after_expiry__percentage_rule_again(time_machine):
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    time_machine.move_to(start, tick=False)
    expires = (start + timedelta(minutes=5)).isoformat()
    store = ConfigStore()
    store.apply(
        config_document(
            percentage=0, overrides={"42": {"variant": "v2_simplified", "expires_at": expires}}
        ),
        etag=None,
    )
    assert store.variant("prompts_v2", "42") == "v2_simplified"
    time_machine.move_to(start + timedelta(minutes=6), tick=False)
    assert store.variant("prompts_v2", "42") == "v1"


def test_daily_rotation__next_day__not_memoized(time_machine):
    day1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    store = ConfigStore()
    store.apply(config_document(percentage=1, strategy="daily_rotation"), etag=None)
    rule = assignment.rule_from_config(store.snapshot.document["rollouts"][0])
    channel = "777"
    answers = set()
    for day in range(100):
        time_machine.move_to(day1 + timedelta(days=day), tick=False)
        expected = assignment.decide(rule, channel)[0]
        assert store.variant("prompts_v2", channel) == expected
        answers.add(expected)
    assert answers == {"v1", "v2_full"}


def test_bootstrap_file__server_unreachable__decides_from_file(tmp_path):
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(json.dumps(config_document(percentage=100)))
    bot = SelControl(
        "http://127.0.0.1:8449",
        "token",
        bootstrap=bootstrap,
        config_cache=None,
        spool_dir=None,
    )
    try:
        assert bot.variant("prompts_v2", "42") == "v2_full"
        assert bot.stats()["config"]["source"] == "bootstrap"
    finally:
        bot.close(timeout=0)


def test_bootstrap_file__garbage__control(tmp_path):
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text("{not json")
    bot = SelControl(None, None, bootstrap=bootstrap, config_cache=None, spool_dir=None)
    assert bot.variant("prompts_v2", "42") == "v1"
    assert not bot.should_use_prompts_v2("42")
    bot.close(timeout=0)


def test_bootstrap_and_cache__both_present__newer_revision_wins(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(config_document(percentage=0, revision=3)))
    new.write_text(json.dumps(config_document(percentage=100, revision=9)))
    bot = SelControl(None, None, bootstrap=old, config_cache=new, spool_dir=None)
    assert bot.revision == 9
    bot = SelControl(None, None, bootstrap=new, config_cache=old, spool_dir=None)
    assert bot.revision == 9


def test_parse_document__server_shape__rules_per_key():
    rules = parse_document(config_document(percentage=20, salt="s"))
    assert rules["prompts_v2"].percentage == 20
    assert rules["prompts_v2"].salt == "s"


@pytest.mark.parametrize(
    "env",
    [
        {"ENABLE_PROMPTS_V2": "true", "PROMPTS_V2_ROLLOUT_PERCENTAGE": "20"},
        {
            "ENABLE_PROMPTS_V2": "1",
            "PROMPTS_V2_ROLLOUT_PERCENTAGE": "50",
            "PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE": "30",
        },
        {"ENABLE_PROMPTS_V2": "false", "PROMPTS_V2_ROLLOUT_PERCENTAGE": "50"},
        {},
    ],
)
def test_legacy_env_document__as_bootstrap__same_answers_as_the_bots_env_rule(env):
    def env_rule(channel: str) -> str:  # the bot's rule, restated from the contract
        enabled = env.get("ENABLE_PROMPTS_V2", "true").lower() in ("1", "true")
        pct = int(env.get("PROMPTS_V2_ROLLOUT_PERCENTAGE", 100))
        share = int(env.get("PROMPTS_V2_SIMPLIFIED_ROLLOUT_PERCENTAGE", 0))
        if not enabled or pct <= 0 or assignment.bucket(channel) >= pct:
            return "v1"
        if share <= 0:
            return "v2_full"
        if share >= 100:
            return "v2_simplified"
        return "v2_simplified" if assignment.bucket(f"{channel}:simplified") < share else "v2_full"

    bot = SelControl(
        None, None, bootstrap=legacy_env_document(env), config_cache=None, spool_dir=None
    )
    for n in range(2000):
        channel = str(10**17 + n * 7919)
        assert bot.variant("prompts_v2", channel) == env_rule(channel)
    assert bot.revision == 0


def _client_with_etag(push: bool, etag: str | None) -> SelControl:
    bot = SelControl(None, None, push=push, poll_interval=1.5, config_cache=None, spool_dir=None)
    bot.config.apply(config_document(), etag=etag)
    return bot


@pytest.mark.parametrize(
    ("push", "etag", "wait", "status", "elapsed", "pause"),
    [
        (True, '"7"', 0, 200, 0.01, 0.0),  # first fetch done: straight into the long-poll
        (True, '"7"', 20, 200, 3.0, 0.0),  # a change arrived: back into the long-poll
        (True, '"7"', 20, 304, 20.0, 0.0),  # the wait ran out: back into the long-poll
        (True, '"7"', 20, 304, 0.01, 1.5),  # the server ignored ?wait: poll instead
        (True, None, 0, 200, 0.01, 1.5),  # no ETag to wait on: poll
        (False, '"7"', 0, 304, 0.01, 1.5),  # push off: poll
    ],
)
def test_pause_after_sync__cases__long_poll_or_poll(push, etag, wait, status, elapsed, pause):
    bot = _client_with_etag(push, etag)
    assert bot._pause_after_sync(wait, status, elapsed) == pause
