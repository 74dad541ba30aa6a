"""False alarms and detection speed of the guardrails' sequential test, over many simulated phases.

Pure simulation of the test statistic (metrics.guardrails.msprt, the function the rules use),
no database: each run is one phase with a look every minute, replies arriving per minute on
both arms, the data floor before the first judgement and the running always-valid p-value,
exactly as metrics.guardrail_services applies it. Scenarios:

* A/A (v1 and v2 identical) over a whole phase: the share of runs with any breach is the
  false-alarm rate; it must stay under alpha (0.05 per rule per phase; 0.025 per treatment
  variant when the rollout has two, as prompts_v2 does).
* The same A/A data judged by a naive fixed-sample one-sided z-test at 5% looked at every
  minute: what the sequential test protects against.
* A/B with a real regression: how many runs catch it, and how fast (minutes of phase time).

    .venv/bin/python bench/guardrails_aa.py [--runs N] [--seed S]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metrics.guardrails import TAU, msprt  # noqa: E402

Z95_ONE_SIDED = 1.6448536269514722


@dataclass(frozen=True)
class Scenario:
    name: str
    p_control: float
    p_treatment: float
    per_minute: float  # replies per minute on each arm
    minutes: int  # the phase's length
    margin: float = 0.0
    tau: float = TAU["error_rate"]
    alpha: float = 0.025  # 0.05 split between v2_full and v2_simplified
    floor: int = 200


def simulate(s: Scenario, rng: random.Random, *, naive: bool = False) -> int | None:
    """The minute of the first breach in one phase, or None."""
    n1 = n2 = x1 = x2 = 0
    carry1 = carry2 = 0.0
    p_min = 1.0
    for minute in range(1, s.minutes + 1):
        carry1 += s.per_minute
        carry2 += s.per_minute
        a, b = int(carry1), int(carry2)
        carry1 -= a
        carry2 -= b
        rnd = rng.random
        x1 += sum(1 for _ in range(a) if rnd() < s.p_control)
        x2 += sum(1 for _ in range(b) if rnd() < s.p_treatment)
        n1 += a
        n2 += b
        if min(n1, n2) < s.floor:
            continue
        if naive:
            p1, p2 = x1 / n1, x2 / n2
            pooled = (x1 + x2) / (n1 + n2)
            se = math.sqrt(max(pooled * (1 - pooled) * (1 / n1 + 1 / n2), 1e-12))
            if p2 - (1 + s.margin) * p1 > Z95_ONE_SIDED * se:
                return minute
            continue
        result = msprt(x1, n1, x2, n2, margin=s.margin, tau=s.tau, alpha=s.alpha)
        p_min = min(p_min, result.p_value)
        if result.rejected or (p_min <= s.alpha and result.estimate > 0):
            return minute
    return None


def run(s: Scenario, runs: int, seed: int, *, naive: bool = False) -> dict:
    rng = random.Random(seed)
    started = time.perf_counter()
    hits = [simulate(s, rng, naive=naive) for _ in range(runs)]
    found = [m for m in hits if m is not None]
    rate = len(found) / runs
    se = math.sqrt(rate * (1 - rate) / runs)
    return {
        "rate": rate,
        "hi": rate + 1.96 * se,
        "median": statistics.median(found) if found else None,
        "p90": sorted(found)[int(0.9 * (len(found) - 1))] if found else None,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    day = 24 * 60
    # The guide: 10,000 requests/day; Canary (50%) splits them evenly: ~3.5 replies/min per arm.
    aa = [
        Scenario("A/A errors 1.2%, Canary 7 days, 3.5/min/arm", 0.012, 0.012, 3.47, 7 * day),
        Scenario("A/A errors 1.2%, 1 day, 40/min/arm (busy bot)", 0.012, 0.012, 40, day),
        Scenario(
            "A/A negative reactions 8%, +10% margin, 7 days",
            0.08,
            0.08,
            3.47,
            7 * day,
            margin=0.10,
            tau=TAU["negative_reaction_rate"],
        ),
        Scenario(
            "A/A corrections 5%, alpha 0.05 (one v2 variant), 7 days",
            0.05,
            0.05,
            3.47,
            7 * day,
            alpha=0.05,
            tau=TAU["correction_rate"],
        ),
    ]
    ab = [
        Scenario("errors 1.2% -> 6% (crash-like), 3.5/min/arm", 0.012, 0.06, 3.47, 7 * day),
        Scenario("errors 1.2% -> 2.4%, 3.5/min/arm", 0.012, 0.024, 3.47, 7 * day),
        Scenario("errors 1.2% -> 6%, 40/min/arm", 0.012, 0.06, 40, day),
        Scenario(
            "negative reactions 8% -> 12%, margin 10%",
            0.08,
            0.12,
            3.47,
            7 * day,
            margin=0.10,
            tau=TAU["negative_reaction_rate"],
        ),
    ]
    print(f"runs per scenario: {args.runs}, seed {args.seed}; a look every minute of the phase\n")
    print(f"{'A/A scenario':58} {'alarms':>8} {'95% hi':>8} {'alpha':>6} {'s':>6}")
    for s in aa:
        r = run(s, args.runs, args.seed)
        print(f"{s.name:58} {r['rate']:8.2%} {r['hi']:8.2%} {s.alpha:6.3f} {r['seconds']:6.1f}")
    s = aa[0]
    naive_runs = max(100, args.runs // 4)
    r = run(s, naive_runs, args.seed, naive=True)
    print(
        f"{'naive z-test at 5% every minute, ' + s.name[4:30]:58} {r['rate']:8.2%} "
        f"{r['hi']:8.2%} {0.05:6.3f} {r['seconds']:6.1f}  ({naive_runs} runs)"
    )
    print(f"\n{'A/B scenario (real regression)':58} {'caught':>8} {'median':>8} {'p90':>8}")
    for s in ab:
        r = run(s, max(100, args.runs // 4), args.seed + 1)
        med = f"{r['median']:.0f} min" if r["median"] else "-"
        p90 = f"{r['p90']:.0f} min" if r["p90"] else "-"
        print(f"{s.name:58} {r['rate']:8.1%} {med:>8} {p90:>8}")


if __name__ == "__main__":
    main()
