"""rollout.exposure: pure figures behind the console's shares, preview and lookup."""

from __future__ import annotations

from datetime import UTC, datetime

from rollout import exposure
from selcontrol_client import assignment

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def rule(**kw) -> assignment.Rule:
    return assignment.Rule(
        key="prompts_v2", enabled=kw.pop("enabled", True), percentage=kw.pop("percentage", 20), **kw
    )


def test_variant_shares__counts_every_known_channel_once():
    channels = [str(i) for i in range(200)]
    shares = exposure.variant_shares(rule(), channels, {"1": 3}, NOW)
    assert sum(s.channels for s in shares) == 200
    assert [s.variant for s in shares] == ["v1", "v2_full", "v2_simplified"]


def test_variant_shares__channel_only_in_traffic__still_counted():
    shares = exposure.variant_shares(rule(enabled=False), [], {"7": 4}, NOW)
    assert shares[0].channels == 1 and shares[0].traffic_share == 1.0


def test_variant_shares__no_traffic__zero_shares():
    shares = exposure.variant_shares(rule(), ["1"], {}, NOW)
    assert all(s.traffic_share == 0.0 for s in shares)


def test_preview__same_rule__nothing_moves():
    r = rule()
    p = exposure.preview_change(r, r, [str(i) for i in range(100)], {}, NOW)
    assert p.moves == [] and p.moved_channels == 0 and p.moved_traffic_share == 0.0


def test_preview__raise__only_v1_to_treatment_and_matches_decide():
    channels = [str(i) for i in range(500)]
    before, after = rule(percentage=5), rule(percentage=20)
    p = exposure.preview_change(before, after, channels, {}, NOW)
    expected = sum(
        1
        for c in channels
        if assignment.decide(before, c, NOW)[0] != assignment.decide(after, c, NOW)[0]
    )
    assert p.moved_channels == expected > 0
    assert {m.source for m in p.moves} == {"v1"}


def test_preview__override__channel_does_not_move():
    over = {"3": assignment.Override("v1")}
    p = exposure.preview_change(
        rule(percentage=0, overrides=over), rule(percentage=100, overrides=over), ["3"], {}, NOW
    )
    assert p.moves == []


def test_explain__reports_bucket_and_reason():
    out = exposure.explain(rule(percentage=100), "42", NOW)
    assert out["reason"] == "percentage" and out["bucket"] == assignment.bucket("42")
