"""Channels as the unit of variance, and the crash guard (metrics.guardrails.rules;
docs/guardrails.md).

The variance is checked against a brute-force linearisation and a bootstrap over channels; the
crash guard against hand-made reply sequences and, end to end, against Alpha-like traffic that
goes through the real ingest path; the per-channel rollups against the raw events.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from metrics import rollups
from metrics.guardrails import rules as g
from metrics.guardrails import services as guardrail_services
from metrics.guardrails.models import GuardrailRule
from metrics.ingest.intake import record_events
from metrics.models import ChannelHourlyRollup, FollowupEvent, ReactionEvent, ResponseEvent
from rollout.models import AuditEntry
from selcontrol_client import assignment
from tests.metrics.conftest import response
from tests.metrics.guardrails.test_guardrail_rollback import T0, V1, V2, Traffic, run, start_phase


def _channels(rng: random.Random, count: int, *, rate: float, spread: float) -> list[tuple]:
    """(events, trials) per channel: Zipf-like traffic, each channel's own rate."""
    out = []
    for i in range(count):
        n = max(1, int(400 / (i + 1) ** 0.9 * rng.uniform(0.5, 1.5)))
        p = min(1.0, rate * math.exp(rng.gauss(0, spread)))
        out.append((sum(rng.random() < p for _ in range(n)), n))
    return out


# --- the variance --------------------------------------------------------------------------


def test_clusters__ratio_variance__equals_the_linearisation_over_channels():
    rng = random.Random(7)
    pairs = _channels(rng, 40, rate=0.05, spread=0.6)
    c = g.Clusters.of(pairs)
    r = sum(y for y, _ in pairs) / sum(n for _, n in pairs)
    total = sum(n for _, n in pairs)
    brute = len(pairs) / (len(pairs) - 1) * sum((y - r * n) ** 2 for y, n in pairs) / total**2
    assert c.channels == 40 and c.n == total
    assert c.ratio_variance() == pytest.approx(brute, rel=1e-9)


def test_clusters__ratio_variance__agrees_with_a_bootstrap_over_channels():
    rng = random.Random(11)
    pairs = _channels(rng, 80, rate=0.04, spread=0.7)
    robust = g.Clusters.of(pairs).ratio_variance()
    draws = []
    for _ in range(3000):
        sample = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        draws.append(sum(y for y, _ in sample) / sum(n for _, n in sample))
    mean = sum(draws) / len(draws)
    boot = sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)
    # the bootstrap has no C/(C-1) correction; the rest is the same quantity
    assert robust * (80 - 1) / 80 == pytest.approx(boot, rel=0.15)


def test_clusters__one_channel_or_none__no_robust_variance_binomial_used():
    assert g.Clusters.of([(3, 100)]).ratio_variance() is None
    assert g.Clusters.of([(0, 0), (1, 0)]).channels == 0
    binomial = g.arm_variance(3, 100, None)
    assert g.arm_variance(3, 100, g.Clusters.of([(3, 100)])) == binomial


def test_arm_variance__channels_without_events__never_below_the_binomial_one():
    clusters = g.Clusters.of([(0, 50)] * 20)  # no events anywhere: a robust variance of 0
    assert clusters.ratio_variance() == 0.0
    assert g.arm_variance(0, 1000, clusters) == g.arm_variance(0, 1000, None) > 0


def test_difference_variance__without_per_channel_totals__is_todays_binomial_variance():
    assert g.difference_variance(10, 1000, 20, 1000, 0.1) == g.binomial_variance(
        10, 1000, 20, 1000, 0.1
    )
    result = g.msprt(10, 1000, 20, 1000, margin=0.1)
    assert result == g.msprt(
        10, 1000, 20, 1000, margin=0.1, variance=g.binomial_variance(10, 1000, 20, 1000, 0.1)
    )


# --- rules on channel data --------------------------------------------------------------------


def _arm(variant: str, pairs: list[tuple], field: str = "errors") -> g.Arm:
    x = sum(y for y, _ in pairs)
    n = sum(m for _, m in pairs)
    return g.Arm(variant, responses=n, clusters={field: g.Clusters.of(pairs)}, **{field: x})


def test_evaluate__fixed_channels_that_differ__binomial_test_breaches_channel_test_does_not():
    # v2 happens to hold four busy channels with 3x the error rate: more replies never average
    # that away, and the test with channels as the unit sees it as the channels' spread
    v1 = [(12, 1000)] * 20
    v2 = [(36, 1000)] * 4 + [(12, 1000)] * 16
    spec = g.RuleSpec(g.ERROR_RATE, 0.0, 200)
    plain = {
        name: replace(_arm(name, pairs), clusters={}) for name, pairs in (("v1", v1), ("v2", v2))
    }
    clustered = {"v1": _arm("v1", v1), "v2": _arm("v2", v2)}
    assert g.evaluate(spec, plain, control="v1", treatments=["v2"]).status == g.BREACHED
    verdict = g.evaluate(spec, clustered, control="v1", treatments=["v2"])
    assert verdict.status == g.WARNING
    assert verdict.numbers["design_effect"] > 3
    assert verdict.numbers["channels_treatment"] == 20


def test_evaluate__too_few_channels__not_enough_data_says_so_plainly():
    spec = g.RuleSpec(g.ERROR_RATE, 0.0, 200)
    arms = {"v1": _arm("v1", [(30, 1000)] * 20), "v2": _arm("v2", [(300, 1000)] * 4)}
    verdict = g.evaluate(spec, arms, control="v1", treatments=["v2"])
    assert verdict.status == g.INSUFFICIENT
    assert verdict.summary.startswith("too few channels to judge: 4 on v2, 20 on v1")
    assert "10 needed per variant" in verdict.summary


def test_evaluate__a_real_regression_over_many_channels__breaches():
    spec = g.RuleSpec(g.ERROR_RATE, 0.0, 200)
    arms = {"v1": _arm("v1", [(12, 1000)] * 30), "v2": _arm("v2", [(60, 1000)] * 30)}
    assert g.evaluate(spec, arms, control="v1", treatments=["v2"]).status == g.BREACHED


def test_always_valid_bounds__exclude_zero_exactly_when_the_rule_breaches():
    rng = random.Random(3)
    spec = g.RuleSpec(g.NEGATIVE_REACTIONS, 0.10, 200)
    for _ in range(300):
        control = _channels(rng, 25, rate=0.04, spread=0.5)
        treatment = _channels(rng, 25, rate=0.04 * rng.uniform(0.8, 2.0), spread=0.5)
        arms = {
            "v1": _arm("v1", control, "reactions_negative"),
            "v2": _arm("v2", treatment, "reactions_negative"),
        }
        verdict = g.evaluate(spec, arms, control="v1", treatments=["v2"])
        (bound,) = g.always_valid_bounds(spec, arms, control="v1", treatments=["v2"])
        assert bound.floor_met and bound.lo < bound.estimate < bound.hi
        assert (verdict.status == g.BREACHED) == (bound.lo > 0)


def test_always_valid_bounds__below_a_floor__say_which_floor():
    spec = g.RuleSpec(g.ERROR_RATE, 0.0, 200)
    few = {"v1": _arm("v1", [(1, 10)] * 20), "v2": _arm("v2", [(1, 10)] * 19)}
    (bound,) = g.always_valid_bounds(spec, few, control="v1", treatments=["v2"])
    assert not bound.floor_met and bound.floor == "190 of 200 needed per variant"
    assert bound.lo < bound.estimate < bound.hi  # still given, not to be read as a verdict
    narrow = {"v1": _arm("v1", [(10, 1000)] * 20), "v2": _arm("v2", [(10, 1000)] * 3)}
    (bound,) = g.always_valid_bounds(spec, narrow, control="v1", treatments=["v2"])
    assert not bound.floor_met and bound.floor.startswith("too few channels: 3 on v2")
    cost = g.RuleSpec(g.DAILY_COST, 75)
    assert g.always_valid_bounds(cost, narrow, control="v1", treatments=["v2"]) == []


# --- the crash guard ---------------------------------------------------------------------------


def test_binomial_tail__equals_the_exact_sum():
    cases = [(3, 3, 0.1), (4, 20, 0.1), (9, 20, 0.15), (0, 5, 0.2), (6, 5, 0.2), (50, 400, 0.1)]
    for e, j, p in cases:
        exact = sum(math.comb(j, i) * p**i * (1 - p) ** (j - i) for i in range(e, j + 1))
        assert g.binomial_tail(e, j, p) == pytest.approx(exact, rel=1e-9) or exact == 0


CRASH = g.RuleSpec(g.CRASH, 0.10, 3)


def test_crash__half_of_the_last_replies_fail_across_channels__breached():
    recent = [(f"c{i % 7}", False) for i in range(10)] + [
        (f"c{i % 5}", i % 2 == 0) for i in range(10)
    ]
    verdict = g.evaluate_crash(CRASH, recent, (5, 400))
    assert verdict.status == g.BREACHED
    assert verdict.numbers["run_errors"] >= 3 and verdict.numbers["run_channels"] >= 2
    assert "v2 error rate 25.0% over its last 20 replies" in verdict.summary


def test_crash__errors_all_from_one_channel__not_a_crash_of_v2():
    recent = [("busy", True)] * 6 + [("quiet", False), ("other", False)]
    verdict = g.evaluate_crash(CRASH, recent, (5, 400))
    assert verdict.status == g.WARNING  # above 10%, but one channel's bad hour


def test_crash__v1_failing_as_much__not_a_crash_of_v2():
    recent = [(f"c{i}", i % 2 == 0) for i in range(30)]
    assert g.evaluate_crash(CRASH, recent, (5, 400)).status == g.BREACHED
    verdict = g.evaluate_crash(CRASH, recent, (200, 400))  # v1 at 50% too: the provider, not v2
    assert verdict.status == g.OK  # v2 at 50%, not above v1's 50%
    assert verdict.numbers["p0"] == 0.5


def test_crash__usual_error_rate__ok_and_no_replies__ok():
    rng = random.Random(5)
    recent = [(f"c{rng.randrange(20)}", rng.random() < 0.012) for _ in range(200)]
    assert g.evaluate_crash(CRASH, recent, (5, 400)).status == g.OK
    verdict = g.evaluate_crash(CRASH, [], (5, 400))
    assert verdict.status == g.OK and "no v2 replies" in verdict.summary


def test_crash__evaluate_refuses_it__it_reads_recent_replies():
    with pytest.raises(ValueError, match="evaluate_crash"):
        g.evaluate(CRASH, {}, control="v1", treatments=["v2"])


def test_crash_guard__alpha_traffic_with_v2_failing_half__kill_switch_within_the_hour(rollout):
    """Alpha (5%) at ~8 replies a minute overall: v2 gets ~24 replies an hour, as in the guide's
    Alpha; half of them fail. The errors rule (200-reply floor) cannot judge for hours; the
    crash guard engages the kill switch within the hour."""
    alpha = start_phase(rollout, 1)
    GuardrailRule.objects.filter(rollout=alpha).exclude(key__in=["crash", "errors"]).update(
        enabled=False
    )
    crashing = replace(V2, error_rate=0.5)
    traffic = Traffic(alpha, {"v1": V1, "v2_full": crashing}, per_minute=8, seed=4)
    minute, outcomes = run(traffic, alpha, minutes=60)
    assert minute is not None and minute <= 60
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["crash"]
    errors = next(o for o in outcomes if o.rule == "errors")
    assert errors.status == g.INSUFFICIENT
    entry = AuditEntry.objects.get(rollout=alpha, action=AuditEntry.Action.KILL_SWITCH_ENGAGE)
    assert entry.actor == "guardrail:crash"
    assert "error rate" in entry.reason


def test_crash_guard__alpha_traffic_usual_errors__stays_ok_for_a_day_of_looks(rollout):
    alpha = start_phase(rollout, 1)
    traffic = Traffic(alpha, {"v1": V1, "v2_full": V2}, per_minute=8, seed=9)
    minute, outcomes = run(traffic, alpha, minutes=90)
    assert minute is None
    assert next(o for o in outcomes if o.rule == "crash").status in (g.OK, g.WARNING)


# --- per-channel rollups -------------------------------------------------------------------------


def _raw_by_channel(since, until) -> dict:
    """Brute force from raw rows: {variant: {channel: figures}} for replies in [since, until)."""
    out: dict = {}
    replies = ResponseEvent.objects.filter(rollout_key="prompts_v2", ts__gte=since, ts__lt=until)
    owner = {}
    for r in replies:
        owner[r.message_id] = (r.variant, r.channel_id)
        f = out.setdefault(r.variant, {}).setdefault(r.channel_id, rollups.empty_channel())
        f["responses"] += 1
        f["errors"] += r.error is not None
        f["timeouts"] += r.error == "timeout"
        f["cache_hits"] += r.cache_hit is True
        f["cache_known"] += r.cache_hit is not None
    latest = {}
    for x in ReactionEvent.objects.filter(message_id__in=list(owner)).order_by("ts", "id"):
        key = (x.message_id, x.user_id, x.emoji)
        if key not in latest or (x.ts, x.action == "remove", x.id) > latest[key][0]:
            latest[key] = ((x.ts, x.action == "remove", x.id), x)
    for _order, x in latest.values():
        if x.action == "add" and x.sentiment:
            variant, channel = owner[x.message_id]
            name = "reactions_positive" if x.sentiment > 0 else "reactions_negative"
            out[variant][channel][name] += 1
    for f in FollowupEvent.objects.filter(reply_to__in=list(owner)):
        variant, channel = owner[f.reply_to]
        out[variant][channel]["followups"] += 1
        out[variant][channel]["corrections"] += f.is_correction
    return out


def test_channel_rollups__summed_over_a_window__equal_the_raw_events(rollout):
    canary = start_phase(rollout, 3)
    traffic = Traffic(
        canary,
        {"v1": replace(V1, positive_rate=0.1), "v2_full": replace(V2, positive_rate=0.1)},
        per_minute=20,
        channels=60,
    )
    for minute in range(0, 150, 3):  # two and a half hours
        now = T0 + timedelta(minutes=minute + 1)
        record_events(traffic.events(T0 + timedelta(minutes=minute)), now=now)
    rollups.catch_up(time_budget=60)
    assert ChannelHourlyRollup.objects.filter(rollout_key="prompts_v2").exists()
    # partial hours at both ends, clean whole hours between
    since, until = T0 + timedelta(minutes=17), T0 + timedelta(minutes=139)
    got = rollups.channel_totals("prompts_v2", since, until)
    want = _raw_by_channel(since, until)
    assert set(got) == set(want)
    for variant in want:
        assert {c: {k: f[k] for k in rollups.CHANNEL_FIELDS} for c, f in got[variant].items()} == {
            c: {k: f[k] for k in rollups.CHANNEL_FIELDS} for c, f in want[variant].items()
        }
    # and the channels add up to the variant totals the rest of the product reads
    totals = rollups.totals_by_variant("prompts_v2", since, until)
    for variant, channels in got.items():
        for name in ("responses", "errors", "reactions_negative", "corrections"):
            assert sum(f[name] for f in channels.values()) == totals[variant][name]


def test_channel_rollups__dirty_hour__read_from_raw_rows_until_recomputed(rollout):
    start_phase(rollout, 3)
    record_events([response(ts=T0 + timedelta(minutes=5), channel_id="a", error="timeout")])
    rollups.catch_up(time_budget=30)
    record_events([response(ts=T0 + timedelta(minutes=6), channel_id="b")])  # hour dirty again
    got = rollups.channel_totals("prompts_v2", T0, T0 + timedelta(hours=1), latency=True)
    assert got["v1"]["a"]["errors"] == 1 and got["v1"]["a"]["timeouts"] == 1
    assert got["v1"]["b"]["responses"] == 1
    assert sum(got["v1"]["a"]["latency_hist"].values()) == 1


def test_arms__carry_channel_clusters_that_match_the_counts(rollout):
    canary = start_phase(rollout, 3)
    traffic = Traffic(canary, {"v1": V1, "v2_full": V2}, per_minute=30, channels=80)
    run(traffic, canary, minutes=20, stop_on_breach=False)
    arms = guardrail_services.arms(canary, T0, T0 + timedelta(minutes=20))
    for arm in arms.values():
        assert arm.clusters["errors"].n == arm.responses
        assert arm.clusters["errors"].y == arm.errors
        assert arm.clusters["reactions_negative"].y == arm.reactions_negative
        assert sum(sum(h.values()) for h in arm.channel_latency) == arm.responses
    bounds = guardrail_services.rule_bounds(canary, now=T0 + timedelta(minutes=20))
    assert {b.variant for b in bounds["errors"]} == {"v2_full"}
    assert bounds["cost"] == [] and bounds["crash"] == []


def _brute_force_breach(recent, p0, n_min, alpha) -> bool:
    """Every run of most recent replies, exact tails, no shortcuts."""
    several = len({c for c, _ in recent}) > 1
    for j in range(1, len(recent) + 1):
        run_ = recent[-j:]
        e = sum(x for _, x in run_)
        chans = {c for c, x in run_ if x}
        if e < n_min or (several and len(chans) < 2):
            continue
        tail = sum(math.comb(j, i) * p0**i * (1 - p0) ** (j - i) for i in range(e, j + 1))
        if tail * len(recent) <= alpha:
            return True
    return False


def test_crash_scan__shortcuts__decide_as_the_brute_force_scan():
    rng = random.Random(13)
    for _ in range(400):
        n = rng.randrange(1, 60)
        rate = rng.choice([0.02, 0.15, 0.3, 0.5])
        recent = [(f"c{rng.randrange(4)}", rng.random() < rate) for _ in range(n)]
        verdict = g.evaluate_crash(CRASH, recent, (0, 0))
        assert (verdict.status == g.BREACHED) == _brute_force_breach(recent, 0.10, 3, 0.05)


def test_crash_scan__two_errors_in_a_row_later_in_the_phase__not_enough_for_the_scan():
    """The scan restarts at every reply, each look a test at alpha: two errors in a row at a
    quiet hour happen at a usual error rate many times a week, so it needs three
    (CRASH_SCAN_MIN_ERRORS) even when the rule's floor is two (the onset test's)."""
    recent = [("c1", False), ("c2", False), ("c1", True), ("c2", True)]
    two = g.crash_scan(recent, 0.10, min_errors=2, alpha=0.05)
    assert two.adjusted == pytest.approx(0.04)  # 2 in 2 (1%) x 4 replies: it would breach
    verdict = g.evaluate_crash(g.RuleSpec(g.CRASH, 0.10, 2), recent, (5, 400))
    assert verdict.status == g.WARNING  # 50% over the hour, above 10%: not conclusive
    assert verdict.numbers["run_errors"] == 0  # no run with 3 errors: nothing scanned


# --- the onset test ----------------------------------------------------------------------------

CRASH2 = g.RuleSpec(g.CRASH, 0.10, 2)  # as preloaded


def test_crash_onset__v2s_first_two_replies_fail_in_two_channels__breached():
    first = [("a", True), ("b", True)]
    verdict = g.evaluate_crash(CRASH2, first, (0, 0), first=first)
    assert verdict.status == g.BREACHED
    # (3^2 + 5^2 + 7^2 + 9^2) / 4 = 41: the mixture's likelihood ratio, above 1/alpha = 20
    assert verdict.numbers["onset_likelihood_ratio"] == pytest.approx(41.0)
    assert "2 errors in its first 2 replies from 2 channels" in verdict.summary


def test_crash_onset__two_errors_in_five_replies__not_conclusive():
    first = [("a", True), ("b", False), ("c", False), ("d", True), ("e", False)]
    onset = g.crash_onset(first, 0.10, min_errors=2, alpha=0.05)
    # the largest over the prefixes with 2 errors: the first four replies (2 errors, 2 not)
    expected = sum((p / 0.1) ** 2 * ((1 - p) / 0.9) ** 2 for p in g.CRASH_ONSET_RATES) / 4
    assert onset.likelihood_ratio == pytest.approx(expected) and expected < 20
    assert (onset.at_reply, onset.at_errors, onset.at_channels) == (4, 2, 2)
    assert not onset.crossed


def test_crash_onset__path_counts__a_crossing_stays_when_later_replies_succeed():
    first = [("a", True), ("b", True), ("c", True)] + [(f"c{i}", False) for i in range(30)]
    onset = g.crash_onset(first, 0.10, min_errors=2, alpha=0.05)
    assert onset.crossed and onset.at_reply == 3 and onset.at_errors == 3


def test_crash_onset__one_channels_burst_while_v2_replies_in_others__not_a_crash():
    first = [("busy", True)] * 8 + [("quiet", False), ("other", False)]
    onset = g.crash_onset(first, 0.10, min_errors=2, alpha=0.05)
    assert not onset.crossed and onset.likelihood_ratio == 1.0
    verdict = g.evaluate_crash(CRASH2, first, (5, 400), first=first)
    assert verdict.status == g.WARNING  # above 10%, but one channel's bad start


def test_crash_onset__at_the_threshold_rate__crosses_at_most_alpha_of_the_time():
    """Ville's inequality, checked: v2's first 200 replies each failing at exactly p0 (10%), the
    likelihood ratio ever reaches 1/alpha in at most alpha of 4,000 simulated phases."""
    rng = random.Random(3)
    crossed = 0
    for _ in range(4000):
        first = [("c", rng.random() < 0.10) for _ in range(g.CRASH_ONSET_REPLIES)]
        crossed += g.crash_onset(first, 0.10, min_errors=1, alpha=0.05).crossed
    assert 0 < crossed / 4000 <= 0.05


def test_crash_onset__v1_failing_as_much__not_a_crash_of_v2():
    first = [(f"c{i}", i % 2 == 0) for i in range(20)]
    assert g.evaluate_crash(CRASH2, [], (5, 400), first=first).status == g.BREACHED
    verdict = g.evaluate_crash(CRASH2, [], (200, 400), first=first)
    assert verdict.status != g.BREACHED and verdict.numbers["p0"] == 0.5


def _v2_channels(rollout, count: int, at) -> list[str]:
    rule = rollout.to_rule(overrides=[])
    found = []
    for i in range(5000):
        channel = str(10**17 + 7_000_000 + i)
        if assignment.decide(rule, channel, at)[0] == "v2_full":
            found.append(channel)
            if len(found) == count:
                return found
    raise AssertionError("too few v2 channels found")


def test_crash_guard__one_v2_channels_burst_of_errors__no_rollback(rollout):
    """In Alpha, one v2 channel fails every reply for 40 minutes (3 a minute) while v2's other
    channels and v1 reply normally: one channel's trouble, not a crash of v2. The crash guard
    warns and never rolls back (both of its tests need errors from two channels)."""
    alpha = start_phase(rollout, 1)
    GuardrailRule.objects.filter(rollout=alpha).exclude(key="crash").update(enabled=False)
    bad, *good = _v2_channels(alpha, 6, T0)
    statuses = []
    for minute in range(40):
        begin = T0 + timedelta(minutes=minute)
        now = begin + timedelta(minutes=1)
        events = [
            response(ts=begin + timedelta(seconds=s), variant="v2_full", channel_id=bad,
                     error="provider_error")
            for s in (5, 25, 45)
        ] + [
            response(ts=begin + timedelta(seconds=50), variant="v2_full",
                     channel_id=good[minute % len(good)]),
            response(ts=begin + timedelta(seconds=55), variant="v1", channel_id="v1-channel"),
        ]  # fmt: skip
        with time_machine.travel(now, tick=False):
            assert not record_events(events, now=now).rejected
            (outcome,) = [
                o for o in guardrail_services.evaluate_rollout(alpha, now=now) if o.rule == "crash"
            ]
        statuses.append(outcome.status)
    assert set(statuses) == {g.WARNING}
    alpha.refresh_from_db()
    assert alpha.enabled
    assert not AuditEntry.objects.filter(
        rollout=alpha, action=AuditEntry.Action.KILL_SWITCH_ENGAGE
    ).exists()


def test_crash_guard__v2s_first_two_replies_fail_in_two_channels__kill_switch_at_once(rollout):
    alpha = start_phase(rollout, 1)
    one, two = _v2_channels(alpha, 2, T0)
    now = T0 + timedelta(minutes=1)
    events = [
        response(ts=T0 + timedelta(seconds=10), variant="v2_full", channel_id=one,
                 error="provider_error"),
        response(ts=T0 + timedelta(seconds=30), variant="v2_full", channel_id=two,
                 error="provider_error"),
        response(ts=T0 + timedelta(seconds=40), variant="v1", channel_id="v1-channel"),
    ]  # fmt: skip
    with time_machine.travel(now, tick=False):
        assert not record_events(events, now=now).rejected
        outcomes = guardrail_services.evaluate_rollout(alpha, now=now)
    assert [o.rule for o in outcomes if o.status == g.BREACHED] == ["crash"]
    entry = AuditEntry.objects.get(rollout=alpha, action=AuditEntry.Action.KILL_SWITCH_ENGAGE)
    assert entry.actor == "guardrail:crash"
    assert "first replies of the window fail: 2 errors in its first 2 replies" in entry.reason


def test_crash_guard__preloaded_floor_is_two_errors(rollout):
    rule = GuardrailRule.objects.get(rollout=rollout, key="crash")
    assert (rule.threshold, rule.min_samples) == (0.10, 2)
    assert "first replies" in rule.note


def test_channel_aggregate__portable_path__equals_the_postgresql_one(rollout, monkeypatch):
    """SQLite (make run) computes the per-channel rows with the ORM and Python."""
    canary = start_phase(rollout, 3)
    traffic = Traffic(
        canary, {"v1": replace(V1, positive_rate=0.2), "v2_full": V2}, per_minute=30, channels=25
    )
    record_events(traffic.events(T0), now=T0 + timedelta(minutes=1))
    record_events(
        [
            {"id": "rm-1", "type": "reaction", "ts": "2026-03-02T10:05:00Z", "channel_id": "x",
             "message_id": "s1-m1", "emoji": "👍", "action": "remove", "user_id": "u2"},
        ]
    )  # fmt: skip
    sql = rollups.channel_aggregate("prompts_v2", T0)
    monkeypatch.setattr(rollups, "is_postgres", lambda: False)
    assert rollups.channel_aggregate("prompts_v2", T0) == sql
    assert sum(f["responses"] for f in sql.values()) == 30


def _days_of_traffic() -> None:
    from tests.metrics.conftest import reaction

    events = []
    for i in range(400):  # three days and a bit, a reply every 12 minutes
        e = response(
            f"day-{i}",
            ts=T0 + timedelta(minutes=12 * i, seconds=i % 50),
            channel_id=f"ch{i % 17}",
            variant="v2_full" if i % 17 < 6 else "v1",
            latency_ms=300.0 + 37 * (i % 23),
            error="timeout" if i % 11 == 0 else None,
        )
        events.append(e)
        if i % 4 == 0:
            events.append(reaction(e["message_id"], "👎" if i % 8 else "👍"))
    record_events(events)
    rollups.catch_up(time_budget=120)


def test_channel_rollups__window_of_days__daily_rows_and_raw_events_agree(rollout):
    _days_of_traffic()
    from metrics.models import ChannelDailyRollup

    day = rollups.day_of(T0) + timedelta(days=1)
    daily = {
        (r.variant, r.channel_id): (r.responses, r.errors, r.reactions_negative, r.latency_hist)
        for r in ChannelDailyRollup.objects.filter(day=day)
    }
    hourly: dict = {}
    for r in ChannelHourlyRollup.objects.filter(hour__gte=day, hour__lt=day + timedelta(days=1)):
        f = hourly.setdefault((r.variant, r.channel_id), [0, 0, 0, {}])
        f[0] += r.responses
        f[1] += r.errors
        f[2] += r.reactions_negative
        for k, n in r.latency_hist.items():
            f[3][k] = f[3].get(k, 0) + n
    assert daily == {key: tuple(f) for key, f in hourly.items()}
    # a window over whole days (daily rows) with partial hours at both ends (raw rows)
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(days=3, minutes=10)
    got = rollups.channel_totals("prompts_v2", since, until, latency=True)
    want = _raw_by_channel(since, until)
    for variant in want:
        assert {c: {k: f[k] for k in rollups.CHANNEL_FIELDS} for c, f in got[variant].items()} == {
            c: {k: f[k] for k in rollups.CHANNEL_FIELDS} for c, f in want[variant].items()
        }
    responses = ResponseEvent.objects.filter(ts__gte=since, ts__lt=until).count()
    assert sum(sum(f["latency_hist"].values()) for ch in got.values() for f in ch.values()) == (
        responses
    )


def test_channel_day__portable_rebuild__equals_the_postgresql_one(rollout, monkeypatch):
    _days_of_traffic()
    from metrics.models import ChannelDailyRollup

    day = rollups.day_of(T0) + timedelta(days=1)

    def rows():
        return sorted(
            ChannelDailyRollup.objects.filter(day=day).values_list(
                "variant", "channel_id", *rollups.CHANNEL_FIELDS, "latency_hist"
            )
        )

    sql = rows()
    monkeypatch.setattr(rollups, "is_postgres", lambda: False)
    rollups._recompute_channel_day("prompts_v2", day)
    assert rows() == sql and sql


def test_migration_0009__moves_the_preloaded_crash_floor_to_two_and_leaves_edited_rules(rollout):
    """The data step of metrics/0009: a crash guard still as 0007 preloaded it (3 errors, the old
    note) gets the onset test's floor and note; one an operator changed keeps its values; the
    reverse step puts the old ones back."""
    import importlib

    from django.apps import apps

    step = importlib.import_module("metrics.migrations.0009_crash_guard_onset_floor")
    rule = GuardrailRule.objects.get(rollout=rollout, key="crash")
    GuardrailRule.objects.filter(pk=rule.pk).update(min_samples=step.OLD[0], note=step.OLD[1])
    step.forwards(apps, None)
    rule.refresh_from_db()
    assert (rule.min_samples, rule.note) == step.NEW
    step.backwards(apps, None)
    rule.refresh_from_db()
    assert (rule.min_samples, rule.note) == step.OLD
    GuardrailRule.objects.filter(pk=rule.pk).update(min_samples=5)  # an operator's choice
    step.forwards(apps, None)
    rule.refresh_from_db()
    assert rule.min_samples == 5


def _no_hists(channels: dict) -> dict:
    return {key: {**f, "latency_hist": {}} for key, f in channels.items()}


def test_aggregate_with_channels__one_query__equals_aggregate_and_channel_aggregate(
    rollout, monkeypatch
):
    """A dirty hour's figures per variant and per channel come from one statement on the
    dashboard (issue 16's speed goal): the same figures as the two separate aggregations."""
    from tests.metrics.conftest import followup, reaction

    canary = start_phase(rollout, 3)
    traffic = Traffic(
        canary,
        {"v1": replace(V1, positive_rate=0.2, error_rate=0.2), "v2_full": V2},
        per_minute=60,
        channels=25,
    )
    record_events(traffic.events(T0), now=T0 + timedelta(minutes=1))
    replies = list(ResponseEvent.objects.order_by("ts")[:3])
    record_events(
        [
            reaction(replies[0].message_id, "🤔", user_id="u7"),  # neutral
            reaction(replies[1].message_id, "👍", user_id="u8"),
            reaction(replies[1].message_id, "👍", "remove", user_id="u8",
                     ts=T0 + timedelta(minutes=3)),
            followup(replies[2].message_id, "no, that is wrong", is_correction=True),
        ]
    )  # fmt: skip
    key = "prompts_v2"
    for ts_from, ts_to in ((None, None), (T0 + timedelta(seconds=20), None)):
        by_variant, by_channel = rollups.aggregate_with_channels(key, T0, ts_from, ts_to)
        assert by_variant == rollups.aggregate(key, T0, ts_from, ts_to)
        assert by_channel == _no_hists(rollups.channel_aggregate(key, T0, ts_from, ts_to))
    every = list(by_channel.values())
    for name in ("responses", "errors", "reactions_positive", "reactions_negative", "corrections"):
        assert sum(f[name] for f in every) > 0, name  # every branch of the statement counted
    sql = rollups.aggregate_with_channels(key, T0)
    monkeypatch.setattr(rollups, "is_postgres", lambda: False)
    portable = rollups.aggregate_with_channels(key, T0)
    for variant, figures in sql[0].items():
        for name, value in figures.items():
            # latency_sum: float sums in another order (SQL and Python) differ in the last bit
            assert portable[0][variant][name] == pytest.approx(value), (variant, name)
    assert portable[1] == sql[1]


def test_dashboard_comparison__dirty_hour__per_channel_counts_from_the_windows_query(rollout):
    """The comparison's per-channel totals over a window with a dirty hour: its per-channel
    counts come from the window's own raw query (no second aggregation), and all of them equal
    the raw events."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from metrics.dashboard import series

    canary = start_phase(rollout, 3)
    traffic = Traffic(
        canary, {"v1": replace(V1, positive_rate=0.1), "v2_full": V2}, per_minute=20, channels=30
    )
    for minute in range(0, 180, 3):
        record_events(traffic.events(T0 + timedelta(minutes=minute)))
    rollups.catch_up(time_budget=60)
    dirty = T0 + timedelta(hours=1)
    record_events(traffic.events(dirty + timedelta(minutes=40)))  # no worker: the hour is dirty
    since, until = T0 - timedelta(hours=2), T0 + timedelta(hours=4)
    window = series.load_window(canary, since, until, "day", now=until)
    assert set(window.live_channels) == {dirty}
    with CaptureQueriesContext(connection) as queries:
        got = series.channel_clusters(window, "v1", "v2_full")
    assert not [q for q in queries if "metrics_responseevent" in q["sql"]]
    want = _raw_by_channel(since, until)
    rates = {"error_rate": ("errors", "responses"), "correction_rate": ("corrections", "responses")}
    for metric, (num, den) in rates.items():
        for i, variant in enumerate(("v1", "v2_full")):
            expected = g.Clusters.of((f[num], f[den]) for f in want[variant].values())
            assert got[metric][i] == expected, (metric, variant)
    assert window.totals()["v1"]["responses"] == sum(f["responses"] for f in want["v1"].values())


def test_channel_totals__whole_days__cached_until_a_day_is_recomputed(rollout):
    """Whole days' per-channel sums are kept by their daily rows' stamps: read again without
    summing the per-channel rows, and a recomputed day gives the new figures."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _days_of_traffic()
    day = rollups.day_of(T0) + timedelta(days=1)
    since, until = day, day + timedelta(days=2)  # two whole days
    first = rollups.channel_totals("prompts_v2", since, until)
    with CaptureQueriesContext(connection) as queries:
        again = rollups.channel_totals("prompts_v2", since, until)
    assert again == first
    assert not [q for q in queries if "metrics_channeldailyrollup" in q["sql"]]
    record_events([response("late-1", ts=day + timedelta(hours=5), channel_id="ch10")])
    rollups.catch_up(time_budget=30)
    later = rollups.channel_totals("prompts_v2", since, until)
    assert later["v1"]["ch10"]["responses"] == first["v1"]["ch10"]["responses"] + 1
    want = _raw_by_channel(since, until)
    assert {v: {c: {k: f[k] for k in rollups.CHANNEL_FIELDS} for c, f in ch.items()}
            for v, ch in later.items()} == {
        v: {c: {k: f[k] for k in rollups.CHANNEL_FIELDS} for c, f in ch.items()}
        for v, ch in want.items()
    }  # fmt: skip


def test_crash__no_v2_reply_in_the_window__says_none_yet_and_since_when():
    began = datetime(2026, 11, 29, 14, 5, tzinfo=UTC)
    verdict = g.evaluate_crash(CRASH, [], (5, 400), first=[], window_start=began)
    assert verdict.summary == "no v2 replies yet (this window began Nov 29, 14:05 UTC)."
    assert verdict.numbers["replies"] == 0
    earlier = [("c1", False)] * 30  # v2 replied earlier in the window, not in the last hour
    verdict = g.evaluate_crash(CRASH, [], (5, 400), first=earlier, window_start=began)
    assert verdict.summary == "no v2 replies in the last 60 minutes: nothing crashing."


def test_evaluate__no_treatment_replies__says_since_when_the_window_counts():
    spec = g.RuleSpec(g.ERROR_RATE, 0.0, 10)
    arms = {"v1": g.Arm("v1", responses=400, errors=4)}
    began = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    verdict = g.evaluate(spec, arms, control="v1", treatments=["v2"], window_start=began)
    assert verdict.status == g.INSUFFICIENT
    assert verdict.summary == (
        "no replies from v2 yet (this window began Nov 29, 09:00 UTC; 10 needed per variant)."
    )


def test_channel_totals__hours_around_whole_days__cached_until_an_hour_is_recomputed(rollout):
    """The hours outside whole days (a range from mid-day to mid-day) are kept by their hourly
    rows' stamps: read again without summing the per-channel hourly rows, and a recomputed hour
    gives the new figures, equal to the raw events."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _days_of_traffic()
    day = rollups.day_of(T0) + timedelta(days=1)
    since, until = day + timedelta(hours=14), day + timedelta(days=1, hours=9)  # no whole day
    first = rollups.channel_totals("prompts_v2", since, until)
    assert first and first == _raw_by_channel_counts(since, until)
    with CaptureQueriesContext(connection) as queries:
        again = rollups.channel_totals("prompts_v2", since, until)
    assert again == first
    assert not [q for q in queries if "metrics_channelhourlyrollup" in q["sql"]]
    record_events([response("late-h", ts=day + timedelta(hours=20), channel_id="ch10")])
    rollups.catch_up(time_budget=30)
    later = rollups.channel_totals("prompts_v2", since, until)
    assert later["v1"]["ch10"]["responses"] == first["v1"]["ch10"]["responses"] + 1
    assert later == _raw_by_channel_counts(since, until)


def _raw_by_channel_counts(since, until) -> dict:
    want = _raw_by_channel(since, until)
    return {
        v: {
            c: {**{k: f[k] for k in rollups.CHANNEL_FIELDS}, "latency_hist": {}}
            for c, f in ch.items()
        }
        for v, ch in want.items()
    }


def test_channel_counts_indexes__carry_every_counter_the_sums_read():
    """The covering indexes (channel_daily_counts, channel_hourly_counts) hold every counter
    ``_channel_sums`` adds up, so PostgreSQL sums them from the index alone."""
    from metrics.models import CHANNEL_COUNTS, ChannelDailyRollup, ChannelHourlyRollup

    assert CHANNEL_COUNTS == rollups.CHANNEL_FIELDS
    for model in (ChannelDailyRollup, ChannelHourlyRollup):
        (index,) = model._meta.indexes
        assert set(index.include) == {"variant", "channel_id", *rollups.CHANNEL_FIELDS}
