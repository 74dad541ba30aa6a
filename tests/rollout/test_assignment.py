"""Property tests of the one assignment rule (bot-contract.md, section 1).

The expected answers are computed here from the contract's text, independently of the module,
so a change to the module that moves any channel fails these tests."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from selcontrol_client import assignment
from selcontrol_client.assignment import Override, Rule, bucket, decide

# Discord snowflakes: 17-20 digit numbers, sent as strings.
snowflakes = st.integers(min_value=10**16, max_value=10**20 - 1).map(str)
percentages = st.integers(min_value=0, max_value=100)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def contract_bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100


def contract_variant(channel: str, enabled: bool, pct: int, simplified: int) -> str:
    """The contract's rule, written out from its text."""
    if not enabled or pct == 0:
        return "v1"
    if not contract_bucket(channel) < pct:
        return "v1"
    if simplified <= 0:
        return "v2_full"
    if simplified >= 100:
        return "v2_simplified"
    return "v2_simplified" if contract_bucket(f"{channel}:simplified") < simplified else "v2_full"


def rule(pct: int, simplified: int = 0, enabled: bool = True, **kw) -> Rule:
    return Rule(
        key="prompts_v2", enabled=enabled, percentage=pct, simplified_percentage=simplified, **kw
    )


@settings(max_examples=2000)
@given(snowflakes, st.booleans(), percentages, percentages)
def test_decide__random_snowflakes__agrees_with_contract_formula(channel, enabled, pct, simplified):
    variant, _ = decide(rule(pct, simplified, enabled), channel, NOW)
    assert variant == contract_variant(channel, enabled, pct, simplified)


@given(snowflakes)
def test_bucket__any_key__is_contract_sha256_mod_100(channel):
    assert bucket(channel) == contract_bucket(channel)
    assert 0 <= bucket(channel) <= 99


@given(snowflakes, percentages, percentages)
def test_decide__repeated__same_answer(channel, pct, simplified):
    r = rule(pct, simplified)
    assert decide(r, channel, NOW) == decide(r, channel, NOW)


def test_bucket__fresh_processes__same_answers():
    """Never Python's salted hash(): two interpreters with different hash seeds agree."""
    code = (
        "from selcontrol_client.assignment import bucket; "
        "print([bucket(str(10**17 + i)) for i in range(50)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert len(outputs) == 1


@given(snowflakes, percentages, percentages)
def test_percentage__raised__never_moves_a_channel_out(channel, low, high):
    low, high = sorted((low, high))
    if decide(rule(low), channel, NOW)[0] != "v1":
        assert decide(rule(high), channel, NOW)[0] != "v1"


def test_percentage__alpha_channels__stay_in_at_beta():
    channels = [str(10**17 + i * 7919) for i in range(5000)]
    alpha = {c for c in channels if decide(rule(5), c, NOW)[0] != "v1"}
    beta = {c for c in channels if decide(rule(20), c, NOW)[0] != "v1"}
    assert alpha and alpha < beta
    assert 0.03 < len(alpha) / len(channels) < 0.07
    assert 0.17 < len(beta) / len(channels) < 0.23


@given(snowflakes, percentages, percentages, percentages)
def test_simplified_share__nested_inside_treatment(channel, pct, s_low, s_high):
    s_low, s_high = sorted((s_low, s_high))
    low, high = (
        decide(rule(pct, s_low), channel, NOW)[0],
        decide(rule(pct, s_high), channel, NOW)[0],
    )
    # the simplified share never changes who is treated ...
    assert (low == "v1") == (high == "v1")
    # ... and raising it only moves channels from full to simplified
    if low == "v2_simplified":
        assert high == "v2_simplified"


@given(snowflakes, percentages, st.sampled_from(["v1", "v2_full", "v2_simplified"]))
def test_precedence__override_beats_percentage(channel, pct, forced):
    r = rule(pct, overrides={channel: Override(forced)})
    assert decide(r, channel, NOW) == (forced, assignment.REASON_OVERRIDE)


@given(snowflakes, percentages, st.sampled_from(["v2_full", "v2_simplified"]))
def test_precedence__kill_switch_beats_override(channel, pct, forced):
    r = rule(pct, enabled=False, overrides={channel: Override(forced)})
    assert decide(r, channel, NOW) == ("v1", assignment.REASON_KILL_SWITCH)


def test_override__expired__falls_back_to_percentage():
    channel = next(str(n) for n in range(10**17, 10**18) if bucket(str(n)) >= 50)
    r = rule(50, overrides={channel: Override("v2_full", NOW - timedelta(seconds=1))})
    assert decide(r, channel, NOW) == ("v1", assignment.REASON_NOT_IN_ROLLOUT)
    r = rule(50, overrides={channel: Override("v2_full", NOW + timedelta(seconds=1))})
    assert decide(r, channel, NOW) == ("v2_full", assignment.REASON_OVERRIDE)


@given(
    snowflakes,
    percentages,
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_daily_rotation__follows_guide_formula(channel, pct, when):
    when = when.replace(tzinfo=UTC)
    day = when.timetuple().tm_yday
    expected_in = (contract_bucket(channel) + day) % 100 < pct
    variant, _ = decide(rule(pct, strategy=assignment.DAILY_ROTATION), channel, when)
    assert (variant != "v1") == expected_in


def test_reasons__each_path():
    channel = "123456789012345678"
    assert decide(rule(0), channel, NOW)[1] == assignment.REASON_NOT_IN_ROLLOUT
    assert decide(rule(100), channel, NOW)[1] == assignment.REASON_PERCENTAGE
    assert decide(rule(100, enabled=False), channel, NOW)[1] == assignment.REASON_KILL_SWITCH


def test_salted_rollout__independent_of_unsalted_buckets():
    channels = [str(10**17 + i) for i in range(2000)]
    plain = {c for c in channels if decide(rule(30), c, NOW)[0] != "v1"}
    salted = {c for c in channels if decide(rule(30, salt="other"), c, NOW)[0] != "v1"}
    assert plain != salted
    assert 0.25 < len(salted) / len(channels) < 0.35


def test_rule_from_config__round_trip():
    r = assignment.rule_from_config(
        {
            "key": "prompts_v2",
            "enabled": True,
            "percentage": 20,
            "simplified_percentage": 10,
            "strategy": "sticky",
            "salt": "",
            "revision": 7,
            "variants": {"control": "v1", "treatment": "v2_full", "simplified": "v2_simplified"},
            "overrides": {"42": {"variant": "v2_full", "expires_at": "2099-01-01T00:00:00Z"}},
        }
    )
    assert r.percentage == 20 and r.revision == 7
    assert r.overrides["42"].expires_at == datetime(2099, 1, 1, tzinfo=UTC)
    assert decide(r, "42", NOW) == ("v2_full", assignment.REASON_OVERRIDE)
