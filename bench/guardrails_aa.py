"""False alarms and detection times of the guardrails when whole channels are assigned.

Simulates phases of a rollout at the guide's traffic (10,000 replies a day) with the structure
real traffic has: 300 channels with Zipf-concentrated traffic (the weights of the project's
traffic simulator), heterogeneous channel rates (10% of channels with 3x the error rate;
lognormal spread of negative-reaction and correction rates), daily channel shocks (each
channel's rates times a lognormal factor per day), the daily and weekly cycle of
``metrics.simulation.hour_weight`` (phase start at a random minute of the week), whole channels
assigned to a variant for the phase, and the simplified split (half the v2 channels get
v2_simplified, so each v2 variant is tested at alpha/2). "Independent replies" is the same
traffic with every channel at the same rates and no shocks.

Every alarm is decided by the product's own code: ``metrics.guardrails.rules.evaluate`` (the rules'
mSPRT, floors, Bonferroni split) with arms that carry per-channel totals exactly as
``metrics.guardrails.services`` builds them, and ``metrics.guardrails.rules.evaluate_crash`` for the
crash guard. To keep 2 shared cores enough, the data are generated and reduced with numpy
(per-channel sums of n, y, n^2, y^2, n*y per arm and minute: what ``Clusters`` holds), and a
vectorised copy of the statistic only picks the looks where the product's code could breach
(likelihood ratio within 10x of 1/alpha, floors met; for the crash guard: enough errors in the
last hour); the product's code then decides at those looks, and a sample of the other looks is
also given to it to check that it never breaches there (the "cross-check" line). "Today" is the
same data judged by the rules before this change (arms without per-channel totals: every reply
independent; no crash guard).

    .venv/bin/python bench/guardrails_aa.py [--runs N] [--ab-runs N] [--seed S] [--quick]
        [--only aa|crash|ab|aa-crash] [--crash-runs N]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metrics.guardrails import rules as g  # noqa: E402

CHANNELS = 300
PER_DAY = 10_000
DAY = 1440
BASE = {"errors": 0.012, "reactions_negative": 0.036, "corrections": 0.058}
FIELDS = tuple(BASE)
RULES = {
    # key: (spec, numerator field); the guide's triggers as metrics.guardrails.services preloads
    "errors": (g.RuleSpec(g.ERROR_RATE, 0.0, 200), "errors"),
    "complaints": (g.RuleSpec(g.NEGATIVE_REACTIONS, 0.10, 200), "reactions_negative"),
    "corrections": (g.RuleSpec(g.CORRECTIONS, 0.10, 200), "corrections"),
}
CRASH_SPEC = g.RuleSpec(g.CRASH, 0.10, 2)  # as preloaded (0.10, 2 errors)
TREATMENTS = ["v2_full", "v2_simplified"]
VARIANTS = ["v1", *TREATMENTS]
PRESCREEN = math.log(10.0)  # looks within 10x of the breach line go to the product's code


@dataclass(frozen=True)
class Phase:
    name: str
    percentage: float
    days: float


PHASES = [
    Phase("Alpha 5% 24 h", 0.05, 1),
    Phase("Beta 20% 3 days", 0.20, 3),
    Phase("Beta 20% 7 days", 0.20, 7),
    Phase("Canary 50% 7 days", 0.50, 7),
]


@dataclass(frozen=True)
class Model:
    name: str
    channels: bool = True  # heterogeneous channel rates
    shocks: bool = True  # daily channel shocks
    split: bool = True  # the simplified split (two treatment variants)
    cycles: bool = True
    effect: dict | None = None  # {field: factor} on both v2 variants
    crash: float | None = None  # v2's error rate from the phase start


CHANNEL_MODEL = Model("channels (Zipf, 3x channels, shocks, cycles, split)")
INDEPENDENT = Model("independent replies (cycles, split)", channels=False, shocks=False)


def hour_weight(minute_of_week: np.ndarray) -> np.ndarray:
    """metrics.simulation.hour_weight on minutes since Monday 00:00 UTC (fractional hours)."""
    hour = (minute_of_week % DAY) / 60.0
    weekend = (minute_of_week // DAY) % 7 >= 5
    return (1 + 0.75 * np.cos((hour - 20) / 24 * 2 * np.pi)) * np.where(weekend, 1.2, 1.0)


MEAN_WEIGHT = float(hour_weight(np.arange(7 * DAY)).mean())
ZIPF = 1.0 / (np.arange(CHANNELS) + 1) ** 0.9  # as metrics.simulation.day_events
ZIPF_CUM = np.cumsum(ZIPF / ZIPF.sum())


def lognormal(rng, sigma, size):
    return np.exp(rng.normal(-sigma * sigma / 2, sigma, size))


def generate(model: Model, phase: Phase, runs: int, rng: np.random.Generator):
    """Events of ``runs`` phases: arrays (run, minute, channel, arm, outcomes) in time order per
    run, plus each run's channel-to-arm table."""
    minutes = int(phase.days * DAY)
    start = rng.integers(0, 7 * DAY, runs)
    t = start[:, None] + np.arange(minutes)[None, :]
    lam = PER_DAY / DAY * (hour_weight(t) / MEAN_WEIGHT if model.cycles else np.ones(t.shape))
    counts = rng.poisson(lam).ravel()
    run = np.repeat(np.repeat(np.arange(runs), minutes), counts)
    minute = np.repeat(np.tile(np.arange(minutes), runs), counts)
    channel = np.minimum(np.searchsorted(ZIPF_CUM, rng.random(run.size)), CHANNELS - 1)
    v2 = rng.random((runs, CHANNELS)) < phase.percentage
    simplified = rng.random((runs, CHANNELS)) < (0.5 if model.split else 0.0)
    arms = np.where(v2, np.where(simplified, 2, 1), 0)
    arm = arms[run, channel]
    day = (start[run] + minute) // DAY - start[run] // DAY
    outcomes = {}
    for name in FIELDS:
        p = np.full(run.size, BASE[name])
        if model.channels:
            if name == "errors":
                mult = np.where(rng.random((runs, CHANNELS)) < 0.10, 3.0, 1.0)
            else:
                mult = lognormal(rng, 0.5, (runs, CHANNELS))
            p *= mult[run, channel]
        if model.shocks:
            shock = lognormal(rng, 0.5, (runs, CHANNELS, int(phase.days) + 2))
            p *= shock[run, channel, day]
        if model.effect and name in model.effect:
            p = np.where(arm > 0, p * model.effect[name], p)
        if model.crash is not None and name == "errors":
            p = np.where(arm > 0, model.crash, p)
        outcomes[name] = rng.random(run.size) < np.minimum(p, 1.0)
    return run, minute, channel, arm, outcomes, arms


def moments(run, minute, channel, arm, outcomes, runs: int, minutes: int):
    """Cumulative per-arm sums at the end of every minute: N, C (channels), NN, and per field
    Y, YY, NY over the channels (the Clusters of the product), shape [runs, 3, minutes]."""
    key = run * CHANNELS + channel
    order = np.argsort(key, kind="stable")  # per (run, channel), in time order
    k = key[order]
    first = np.ones(k.size, bool)
    first[1:] = k[1:] != k[:-1]
    start_idx = np.maximum.accumulate(np.where(first, np.arange(k.size), 0))
    n_before = np.arange(k.size) - start_idx
    cell = (run[order] * 3 + arm[order]) * minutes + minute[order]
    size = runs * 3 * minutes

    def summed(weights):
        return np.cumsum(
            np.bincount(cell, weights=weights, minlength=size).reshape(runs, 3, minutes), axis=2
        )

    out = {
        "N": summed(None),
        "C": summed(first.astype(float)),
        "NN": summed(2.0 * n_before + 1),
    }
    for name, y in outcomes.items():
        y = y[order].astype(float)
        cum = np.cumsum(y)
        y_before = cum - y - (cum - y)[start_idx]
        out[name] = {
            "Y": summed(y),
            "YY": summed(2 * y_before * y + y),
            "NY": summed(y_before + y * n_before + y),
        }
    return out


def arm_variance(x, n, C, NN, YY, NY, clustered: bool):
    """Vectorised copy of metrics.guardrails.rules.arm_variance (for picking looks only)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (x + 0.5) / (n + 1.0)
        binomial = s * (1 - s) / n
        if not clustered:
            return binomial
        r = x / n
        robust = np.maximum(YY - 2 * r * NY + r * r * NN, 0) * C / (C - 1) / (n * n)
        return np.where(C >= 2, np.maximum(binomial, robust), binomial)


def candidates(m, field, spec, clustered: bool) -> np.ndarray:
    """[runs, minutes] looks where the rule could breach for some treatment variant."""
    alpha = spec.alpha / len(TREATMENTS)
    k = 1 + spec.threshold
    tau2 = g.TAU[spec.metric] ** 2
    f = m[field]
    x1, n1 = f["Y"][:, 0], m["N"][:, 0]
    v1 = arm_variance(x1, n1, m["C"][:, 0], m["NN"][:, 0], f["YY"][:, 0], f["NY"][:, 0], clustered)
    hit = np.zeros(x1.shape, bool)
    for a in (1, 2):
        x2, n2 = f["Y"][:, a], m["N"][:, a]
        v2 = arm_variance(
            x2, n2, m["C"][:, a], m["NN"][:, a], f["YY"][:, a], f["NY"][:, a], clustered
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = x2 / n2 - k * x1 / n1
            var = v2 + k * k * v1
            log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * theta**2 / (2 * var * (var + tau2))
        ok = (n1 >= spec.min_samples) & (n2 >= spec.min_samples) & (theta > 0)
        if clustered:
            ok &= (m["C"][:, 0] >= spec.min_channels) & (m["C"][:, a] >= spec.min_channels)
        hit |= ok & (log_lr >= math.log(1 / alpha) - PRESCREEN)
    return hit


def arms_at(m, r: int, t: int, clustered: bool) -> dict[str, g.Arm]:
    """The product's Arm per variant at minute t of run r, as guardrail_services builds them."""
    out = {}
    for a, variant in enumerate(VARIANTS):
        n = int(m["N"][r, a, t])
        if n == 0:
            continue
        counts = {name: int(m[name]["Y"][r, a, t]) for name in FIELDS}
        clusters = {}
        if clustered:
            for name in FIELDS:
                f = m[name]
                clusters[name] = g.Clusters(
                    int(m["C"][r, a, t]),
                    float(n),
                    float(f["Y"][r, a, t]),
                    float(m["NN"][r, a, t]),
                    float(f["YY"][r, a, t]),
                    float(f["NY"][r, a, t]),
                )
        out[variant] = g.Arm(variant, responses=n, clusters=clusters, **counts)
    return out


class Checks:
    looks = 0
    disagreements = 0


def first_breach(m, spec, hits, r: int, clustered: bool, rng) -> int | None:
    """The product's decision at the picked looks of run r: the first breached minute."""
    for t in np.flatnonzero(hits[r]):
        arms = arms_at(m, r, int(t), clustered)
        verdict = g.evaluate(spec, arms, control="v1", treatments=TREATMENTS)
        if verdict.status == g.BREACHED:
            return int(t) + 1
    # cross-check: a few looks that were not picked must not breach in the product's code
    minutes = hits.shape[1]
    for t in rng.integers(spec.min_samples // 4, minutes, 2):
        if hits[r, t]:
            continue
        verdict = g.evaluate(
            spec, arms_at(m, r, int(t), clustered), control="v1", treatments=TREATMENTS
        )
        Checks.looks += 1
        Checks.disagreements += verdict.status == g.BREACHED
    return None


TAIL_ERRORS = 8  # runs with more errors than this are always handed to the product's code


def _tail_table(p: float, size: int) -> np.ndarray:
    """P(Bin(j, p) >= e) for e < TAIL_ERRORS, j < size (metrics.guardrails.rules.binomial_tail)."""
    table = np.ones((TAIL_ERRORS, size))
    for e in range(1, TAIL_ERRORS):
        table[e] = [g.binomial_tail(e, j, p) for j in range(size)]
    return table


def _crash_possible(run, minute, treated, errors, n2, e2, runs, minutes, spec) -> np.ndarray:
    """[runs, minutes]: looks where evaluate_crash could breach. A run of the most recent
    replies holding e errors reaches back at least to the minute of the e-th most recent error,
    so it has at least j_lb = (v2 replies after that minute) + 1 replies, and its tail is at
    least P(Bin(j_lb, threshold) >= e) (p0 is never below the threshold); a look is handed to
    the product's code when that bound x the replies in the lookback can reach alpha for some
    e from the scan's minimum errors on (always when the lookback has TAIL_ERRORS errors or
    more)."""
    size = runs * minutes
    per_min_n = np.bincount(run[treated] * minutes + minute[treated], minlength=size)
    per_min_e = np.bincount(
        run[treated & errors] * minutes + minute[treated & errors], minlength=size
    )
    cum_n = np.cumsum(per_min_n.reshape(runs, minutes), axis=1)
    cum_e = np.cumsum(per_min_e.reshape(runs, minutes), axis=1)
    table = _tail_table(spec.threshold, int(n2.max()) + 2)
    possible = e2 >= TAIL_ERRORS
    idx = np.arange(minutes)
    for e in range(max(spec.min_samples, g.CRASH_SCAN_MIN_ERRORS), TAIL_ERRORS):
        for r in range(runs):
            # the minute holding the e-th most recent error: first m with cum_e[m] > cum_e[t] - e
            m_star = np.searchsorted(cum_e[r], cum_e[r] - e, side="right")
            m_star = np.minimum(m_star, idx)
            j_lb = cum_n[r] - cum_n[r][m_star] + 1
            ok = (e2[r] >= e) & (
                table[e][np.minimum(j_lb, table.shape[1] - 1)] * n2[r] <= spec.alpha
            )
            possible[r] |= ok
    return possible


def _timeline(mins: np.ndarray, replies: list) -> dict:
    """When v2 replied and failed in a run (minutes since the phase start, each + 1: the end
    of the minute, when the guard looks): its first reply, its 20th reply, and the first
    minute by which it had 1 error, or 2 errors from 2 channels (from 1 when v2 had replied in
    one only): the earliest any rule needing that much evidence could act."""
    out = {"first": None, "20th": None, "1 error": None, "2 errors": None}
    seen, failed = set(), set()
    errors = 0
    for i, ((ch, err), m) in enumerate(zip(replies, mins.tolist(), strict=True)):
        seen.add(ch)
        if i == 0:
            out["first"] = m + 1
        if i == 19:
            out["20th"] = m + 1
        if err:
            errors += 1
            failed.add(ch)
            if out["1 error"] is None:
                out["1 error"] = m + 1
            if out["2 errors"] is None and errors >= 2 and (len(failed) >= 2 or len(seen) == 1):
                out["2 errors"] = m + 1
        if out["20th"] is not None and out["2 errors"] is not None:
            break
    return out


def _onset_from(mins: np.ndarray, replies: list, spec) -> list[int]:
    """Minutes where the onset test could breach: its likelihood ratio over a prefix of v2's
    first replies (the channel rule aside) reached 1/alpha by then; from that minute to the
    one of v2's last reply the test reads (after it, the test's answer no longer changes)."""
    first = replies[: g.CRASH_ONSET_REPLIES]
    if not first:
        return []
    err = np.array([e for _c, e in first], dtype=float)
    k = np.arange(1, err.size + 1)
    e = np.cumsum(err)
    p0 = spec.threshold
    logs = np.array(
        [e * math.log(p / p0) + (k - e) * math.log((1 - p) / (1 - p0)) for p in g.CRASH_ONSET_RATES]
    )
    top = logs.max(axis=0)
    log_lr = top + np.log(np.exp(logs - top).mean(axis=0))
    over = np.flatnonzero((log_lr >= math.log(1 / spec.alpha)) & (e >= spec.min_samples))
    if not over.size:
        return []
    return list(range(int(mins[over[0]]), int(mins[len(first) - 1]) + 1))


def crash_breach(run_events, runs: int, minutes: int, spec=CRASH_SPEC) -> list[int | None]:
    """The crash guard (pooled v2: its first replies of the phase and its last 60 minutes),
    decided by metrics.guardrails.rules.evaluate_crash at every minute where it could breach."""
    run, minute, channel, arm, errors = run_events
    lookback = g.CRASH_LOOKBACK_MINUTES
    size = runs * minutes
    treated = arm > 0

    def per_minute(mask):
        return np.bincount(run[mask] * minutes + minute[mask], minlength=size).reshape(
            runs, minutes
        )

    def rolling(a):
        c = np.cumsum(a, axis=1)
        c[:, lookback:] -= c[:, :-lookback].copy()
        return c

    n2, e2 = rolling(per_minute(treated)), rolling(per_minute(treated & errors))
    n1, e1 = rolling(per_minute(~treated)), rolling(per_minute(~treated & errors))
    possible = _crash_possible(run, minute, treated, errors, n2, e2, runs, minutes, spec)
    bounds = np.searchsorted(run, np.arange(runs + 1))
    out: list[int | None] = []
    crash_breach.timelines = []
    for r in range(runs):
        found = None
        lo, hi = bounds[r], bounds[r + 1]
        sel = treated[lo:hi]
        mins = minute[lo:hi][sel]  # v2's replies of this run, in time order
        replies = list(zip(channel[lo:hi][sel].tolist(), errors[lo:hi][sel].tolist(), strict=True))
        crash_breach.timelines.append(_timeline(mins, replies))
        onset = set(_onset_from(mins, replies, spec))
        for t in sorted({*np.flatnonzero(possible[r]).tolist(), *onset}):
            a = np.searchsorted(mins, t - lookback + 1)
            b = np.searchsorted(mins, t, side="right")
            # the onset test cannot breach outside ``onset``: not read there (speed only)
            first = replies[: min(b, g.CRASH_ONSET_REPLIES)] if t in onset else None
            control = (int(e1[r, t]), int(n1[r, t]))
            verdict = g.evaluate_crash(spec, replies[a:b], control, first=first)
            if verdict.status == g.BREACHED:
                found = int(t) + 1
                break
        out.append(found)
    return out


def simulate(
    model: Model, phase: Phase, runs: int, seed: int, *, chunk: int = 20, rules: bool = True
):
    """Per run: the first breach minute per rule (new and today's), and the crash guard's
    (``rules=False``: the crash guard only; the same data, as the generator runs first)."""
    rng = np.random.default_rng(seed)
    minutes = int(phase.days * DAY)
    rules_new: dict[str, list] = {key: [] for key in RULES}
    rules_old: dict[str, list] = {key: [] for key in RULES}
    crash: list = []
    first_hour: list = []  # v2 replies in the phase's first hour, per run
    timelines: list = []
    for done in range(0, runs, chunk):
        r_n = min(chunk, runs - done)
        run, minute, channel, arm, outcomes, _arms = generate(model, phase, r_n, rng)
        first_hour += np.bincount(run[(arm > 0) & (minute < 60)], minlength=r_n).tolist()
        if rules:
            m = moments(run, minute, channel, arm, outcomes, r_n, minutes)
            for key, (spec, field) in RULES.items():
                for clustered, sink in ((True, rules_new), (False, rules_old)):
                    hits = candidates(m, field, spec, clustered)
                    sink[key] += [
                        first_breach(m, spec, hits, r, clustered, rng) for r in range(r_n)
                    ]
        crash += crash_breach((run, minute, channel, arm, outcomes["errors"]), r_n, minutes)
        timelines += crash_breach.timelines
    simulate.first_hour = first_hour
    simulate.timelines = timelines
    return rules_new, rules_old, crash


def rate(hits: list) -> tuple[float, float, float]:
    """Share of runs with a breach and its Wilson 95% interval."""
    n = len(hits)
    k = sum(h is not None for h in hits)
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def hours(hits: list, q: float) -> str:
    found = sorted(h for h in hits if h is not None)
    if len(found) < len(hits) * q:
        return "-"
    return f"{found[max(0, math.ceil(q * len(hits)) - 1)] / 60:.1f} h"


def aa(runs: int, seed: int, phases, models) -> None:
    print(f"A/A (v1 and v2 identical): share of phases with a false alarm per rule, {runs} phases")
    print("each, Wilson 95% interval; alpha 0.05 per rule per phase (0.025 per v2 variant)\n")
    head = f"{'model / phase':58} {'rule':12} {'now':>7} {'95% interval':>16} {'today':>7}"
    print(head)
    for model in models:
        for i, phase in enumerate(phases):
            started = time.perf_counter()
            new, old, crash = simulate(model, phase, runs, seed + 101 * i)
            label = f"{model.name[:34]} | {phase.name}"
            for key in RULES:
                p, lo, hi = rate(new[key])
                today = rate(old[key])[0]
                print(f"{label:58} {key:12} {p:7.2%} [{lo:6.2%}, {hi:6.2%}] {today:7.2%}")
            p, lo, hi = rate(crash)
            print(f"{label:58} {'crash':12} {p:7.2%} [{lo:6.2%}, {hi:6.2%}] {'-':>7}")
            any_new = [
                next((h for h in hs if h is not None), None)
                for hs in zip(*new.values(), crash, strict=True)
            ]
            any_old = [
                next((h for h in hs if h is not None), None)
                for hs in zip(*old.values(), strict=True)
            ]
            print(
                f"{label:58} {'any rule':12} {rate(any_new)[0]:7.2%} {'':16} "
                f"{rate(any_old)[0]:7.2%}"
                f"   ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


def ab(runs: int, seed: int) -> None:
    print(f"\nDetection (channel model, real regressions on both v2 variants), {runs} phases each:")
    print("share caught within the phase, median and 90th percentile time to the breach\n")
    print(
        f"{'scenario':50} {'rule':12} {'caught':>7} {'median':>8} {'p90':>8}"
        "  today: caught, median, p90"
    )
    cases = [
        ("errors x2", {"errors": 2.0}, "errors"),
        ("errors x5", {"errors": 5.0}, "errors"),
        ("negative reactions +50%", {"reactions_negative": 1.5}, "complaints"),
    ]
    for phase in (PHASES[2], PHASES[3]):
        for i, (name, effect, rule) in enumerate(cases):
            model = replace(CHANNEL_MODEL, effect=effect)
            new, old, crash = simulate(model, phase, runs, seed + 7 * i)
            for key, hits in ((rule, new[rule]),) + (
                (("crash", crash),) if rule == "errors" else ()
            ):
                today = old[rule] if key == rule else None
                t = (
                    f"{rate(today)[0]:7.1%} {hours(today, 0.5):>8} {hours(today, 0.9):>8}"
                    if today
                    else ""
                )
                print(
                    f"{phase.name + ', ' + name:50} {key:12} {rate(hits)[0]:7.1%} "
                    f"{hours(hits, 0.5):>8} {hours(hits, 0.9):>8}  {t}",
                    flush=True,
                )


def crash_alpha(runs: int, seed: int) -> None:
    print(f"\nCrash in Alpha: v2 errors 50% from the phase start, {runs} phases each")
    print("(v2's traffic varies from run to run: which channels land in the 5% decides it; the")
    print("columns 'at >= 15/h' and '< 15/h' split the runs by v2's replies in the first hour;")
    print("'1st reply + 1 h': within an hour of v2's first reply; 'by 20th': by v2's 20th reply,")
    print("about an hour at the guide's Alpha traffic; 'ceiling': share of runs with 2 errors from")
    print("2 channels (1 error) within the first hour, the most any rule needing them can catch)")
    print(
        f"{'model':44} {'within 1 h':>10} {'2 h':>6} {'median':>8} {'at >= 15/h':>12} "
        f"{'< 15/h':>12} {'1st reply + 1 h':>15} {'by 20th':>8} {'ceiling':>13}  "
        "errors rule (median)"
    )
    for model in (
        replace(CHANNEL_MODEL, crash=0.5),
        replace(CHANNEL_MODEL, crash=0.5, cycles=False, name="channels, flat traffic (no cycles)"),
        replace(CHANNEL_MODEL, crash=0.5, split=False, name="channels, no split"),
    ):
        new, old, crash = simulate(model, PHASES[0], runs, seed)
        lines = simulate.timelines
        within = [h is not None and h <= 60 for h in crash]
        within2 = [h is not None and h <= 120 for h in crash]
        med = sorted(h if h is not None else 10**9 for h in crash)[len(crash) // 2]
        busy = [w for w, n in zip(within, simulate.first_hour, strict=True) if n >= 15]
        quiet = [w for w, n in zip(within, simulate.first_hour, strict=True) if n < 15]
        first = [h is not None and h <= t["first"] + 60 for h, t in zip(crash, lines, strict=True)]
        by20 = [
            (h is not None and h <= t["20th"])
            for h, t in zip(crash, lines, strict=True)
            if t["20th"] is not None
        ]
        ceil2 = sum(t["2 errors"] is not None and t["2 errors"] <= 60 for t in lines) / runs
        ceil1 = sum(t["1 error"] is not None and t["1 error"] <= 60 for t in lines) / runs
        print(
            f"{model.name[:44]:44} {sum(within) / runs:10.1%} {sum(within2) / runs:6.1%} "
            f"{med:4d} min {sum(busy) / max(1, len(busy)):6.1%} ({len(busy)}) "
            f"{sum(quiet) / max(1, len(quiet)):6.1%} ({len(quiet)}) {sum(first) / runs:15.1%} "
            f"{sum(by20) / max(1, len(by20)):8.1%} {ceil2:6.1%} ({ceil1:.1%})  "
            f"{hours(old['errors'], 0.5)}",
            flush=True,
        )


def aa_crash(runs: int, seed: int, phases, models) -> None:
    """A/A of the crash guard alone (its data generated as in ``aa``, without the other rules:
    fast enough for more phases per cell)."""
    print(f"\nA/A, crash guard only: share of phases with a false alarm, {runs} phases each,")
    print("Wilson 95% interval; alpha 0.05 per look (the scan's p-value), measured per phase\n")
    print(f"{'model / phase':58} {'rule':12} {'now':>7} {'95% interval':>16}")
    for model in models:
        for i, phase in enumerate(phases):
            started = time.perf_counter()
            _new, _old, crash = simulate(model, phase, runs, seed + 101 * i, rules=False)
            p, lo, hi = rate(crash)
            label = f"{model.name[:34]} | {phase.name}"
            print(
                f"{label:58} {'crash':12} {p:7.2%} [{lo:6.2%}, {hi:6.2%}]"
                f"   ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="A/A phases per model and phase")
    parser.add_argument("--ab-runs", type=int, default=300, help="phases per detection scenario")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--quick", action="store_true", help="100 / 50 phases, for a smoke run")
    parser.add_argument("--only", choices=["aa", "ab", "crash", "aa-crash"], default=None)
    parser.add_argument(
        "--crash-runs", type=int, default=2000, help="A/A phases per cell for --only aa-crash"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.ab_runs = 100, 50
    started = time.perf_counter()
    if args.only in (None, "aa"):
        aa(args.runs, args.seed, PHASES, [CHANNEL_MODEL, INDEPENDENT])
    if args.only == "aa-crash":
        aa_crash(args.crash_runs, args.seed, PHASES, [CHANNEL_MODEL, INDEPENDENT])
    if args.only in (None, "crash"):
        crash_alpha(args.ab_runs * 2, args.seed + 3)
    if args.only in (None, "ab"):
        ab(args.ab_runs, args.seed + 5)
    print(
        f"\ncross-check: the product's code breached at {Checks.disagreements} of {Checks.looks} "
        f"looks the vectorised copy did not pick; {time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    main()
