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
    parser.add_argument("--n", type=int, default=200_000, help="calls per method per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=5_000)
    args = parser.parse_args()
    rng = random.Random(1)
    rule = assignment.rule_from_config(DOCUMENT["rollouts"][0])
    hot = [str(rng.randrange(10**17, 10**19)) for _ in range(5000)]

    # The machine is shared: methods run in alternating chunks of --chunk calls, so a burst of
    # load hits all of them alike, and each chunk's ratio is taken against the floor chunk that
    # ran just before it. Reported: ns/call (best chunk, median chunk) and the median ratio.
    per_call: dict[str, list[float]] = {"floor": [], "new": [], "hot": [], "decide": []}
    ratios: dict[str, list[float]] = {"new": [], "hot": [], "decide": []}
    for _ in range(args.rounds):
        client = SelControl(None, None, config_cache=None, spool_dir=None)
        client.config.apply(DOCUMENT, etag='"42"')
        client_variant(client, hot)  # the hot working set is in the memo
        for _ in range(args.n // args.chunk):
            fresh = [str(rng.randrange(10**17, 10**19)) for _ in range(args.chunk)]
            hot_ids = [rng.choice(hot) for _ in range(args.chunk)]
            floor_ns = floor(fresh) / args.chunk
            timings = {
                "new": client_variant(client, fresh) / args.chunk,
                "hot": client_variant(client, hot_ids) / args.chunk,
                "decide": bare_decide(rule, fresh) / args.chunk,
            }
            per_call["floor"].append(floor_ns)
            for key, ns in timings.items():
                per_call[key].append(ns)
                ratios[key].append(ns / floor_ns)
        client.close(timeout=0)

    print(
        f"local decisions: {args.rounds} rounds x {args.n} calls per method, in alternating "
        f"chunks of {args.chunk}; Python {sys.version.split()[0]}"
    )
    print(f"{'what':<34} {'best ns':>8} {'median ns':>10} {'x floor (median)':>17}")
    rows = [
        ("bare sha256 rule (floor)", "floor"),
        ("client.variant, new ids (miss)", "new"),
        ("client.variant, 5k hot ids (hit)", "hot"),
        ("assignment.decide (no client)", "decide"),
    ]
    for label, key in rows:
        ratio = statistics.median(ratios[key]) if key in ratios else 1.0
        print(
            f"{label:<34} {min(per_call[key]):>8.0f} {statistics.median(per_call[key]):>10.0f} "
            f"{ratio:>16.2f}x"
        )
    worst = max(statistics.median(ratios["new"]), statistics.median(ratios["hot"]))
    print(
        f"goal: within 3x of the floor -> worst client path {worst:.2f}x "
        f"({'met' if worst <= 3 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
