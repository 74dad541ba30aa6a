"""Nanoseconds per local decision in selcontrol_client, against the bare sha256 rule as the floor.

The floor is the contract's rule alone, ``int(sha256(key.encode()).hexdigest(), 16) % 100``, on
the same channel ids in the same run. Measured:

- ``variant (new ids)``: every call a channel the client has not seen (memo miss): the rule,
  the precedence checks, the nested split for treated channels, plus the memo write;
- ``variant (hot ids)``: a working set of 5,000 channels asked again and again (memo hit), which
  is what a bot answering in a few thousand channels does;
- ``assignment.decide``: the shared rule without the client around it.

No database or server: decisions are local by design, so the config document (the same JSON the
server's ``GET /api/v1/config`` returns) is loaded into a client directly.

    .venv/bin/python bench/client_decide.py [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selcontrol_client import SelControl, assignment  # noqa: E402

DOCUMENT = {
    "revision": 42,
    "rollouts": [
        {
            "key": "prompts_v2",
            "enabled": True,
            "percentage": 20,
            "simplified_percentage": 30,
            "strategy": "sticky",
            "salt": "",
            "variants": {"control": "v1", "treatment": "v2_full", "simplified": "v2_simplified"},
            "overrides": {"123456789012345678": {"variant": "v2_full", "expires_at": None}},
            "revision": 42,
        }
    ],
}


def floor(ids: list[str]) -> int:
    sha256 = hashlib.sha256
    start = time.perf_counter_ns()
    for key in ids:
        int(sha256(key.encode("utf-8")).hexdigest(), 16) % 100
    return time.perf_counter_ns() - start


def client_variant(client: SelControl, ids: list[str]) -> int:
    variant = client.variant
    start = time.perf_counter_ns()
    for key in ids:
        variant("prompts_v2", key)
    return time.perf_counter_ns() - start


def bare_decide(rule: assignment.Rule, ids: list[str]) -> int:
    decide = assignment.decide
    start = time.perf_counter_ns()
    for key in ids:
        decide(rule, key)
    return time.perf_counter_ns() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(1)
    rule = assignment.rule_from_config(DOCUMENT["rollouts"][0])
    hot = [str(rng.randrange(10**17, 10**19)) for _ in range(5000)]
    hot_ids = [rng.choice(hot) for _ in range(args.n)]

    results: dict[str, list[float]] = {
        "floor": [],
        "new": [],
        "hot": [],
        "decide": [],
    }
    for _ in range(args.rounds):
        fresh = [str(rng.randrange(10**17, 10**19)) for _ in range(args.n)]
        client = SelControl(None, None, config_cache=None, spool_dir=None)
        client.config.apply(DOCUMENT, etag='"42"')
        results["floor"].append(floor(fresh) / args.n)
        results["new"].append(client_variant(client, fresh) / args.n)
        results["decide"].append(bare_decide(rule, fresh) / args.n)
        client_variant(client, hot)  # fill the memo
        results["hot"].append(client_variant(client, hot_ids) / args.n)
        client.close(timeout=0)

    best = {k: min(v) for k, v in results.items()}
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"local decisions: {args.n} calls x {args.rounds} rounds, Python "
        f"{sys.version.split()[0]}; best round (median round)"
    )
    print(f"{'what':<34} {'ns/call':>9} {'median':>9} {'x floor':>8}")
    rows = [
        ("bare sha256 rule (floor)", "floor"),
        ("client.variant, new ids (miss)", "new"),
        ("client.variant, 5k hot ids (hit)", "hot"),
        ("assignment.decide (no client)", "decide"),
    ]
    for label, key in rows:
        print(f"{label:<34} {best[key]:>9.0f} {med[key]:>9.0f} {best[key] / best['floor']:>7.2f}x")
    worst = max(best["new"], best["hot"]) / best["floor"]
    print(
        f"goal: within 3x of the floor -> worst client path {worst:.2f}x "
        f"({'met' if worst <= 3 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
