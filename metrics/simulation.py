"""A simulated Sel deployment: replies, reactions and follow-ups as the bot would send them.

Deterministic: the events of one UTC day come from a random generator seeded with (seed,
rollout, date), and their ids from the same, so replaying a day (or the demo, twice) adds
nothing. Variants come from the real assignment rule (selcontrol_client.assignment) applied to
a Rule for the event's time, so channels sit where the bot would put them.

Profiles follow the deployment guide: v2 sends ~3.4x the input tokens (~1750 vs ~500), is a bit
slower, and draws fewer corrections and fewer negative reactions (fewer hallucinations).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from selcontrol_client import assignment

MODEL = "anthropic/claude-3.5-sonnet"


@dataclass(frozen=True)
class Profile:
    input_tokens: float  # median
    output_tokens: float
    latency_ms: float  # median
    latency_sigma: float
    error_rate: float
    cache_hit_rate: float
    reaction_rate: float
    positive_share: float  # of non-neutral reactions
    followup_rate: float
    correction_share: float  # of follow-ups
    hallucination_rate: float = 0.0  # replies that state something wrong (demo texts)


PROFILES = {
    "v1": Profile(500, 190, 1350, 0.38, 0.012, 0.18, 0.13, 0.70, 0.34, 0.17, 0.20),
    "v2_full": Profile(1750, 240, 1600, 0.36, 0.014, 0.22, 0.14, 0.81, 0.34, 0.10, 0.07),
    "v2_simplified": Profile(1150, 220, 1480, 0.36, 0.013, 0.20, 0.135, 0.77, 0.34, 0.12, 0.10),
}
ERRORS = [("timeout", 0.5), ("rate_limited", 0.3), ("provider_error", 0.2)]
POSITIVE = ["👍", "👍", "👍", "❤️", "😀", "🔥", "👍🏽", "❤️"]  # the bot's four (skin tones count)
NEGATIVE = ["👎", "👎", "😕", "😡", "❌", "🙄"]
NEUTRAL = ["🤔", "👀"]
CORRECTIONS = [
    "actually it was 1969, not 1971",
    "no, that's the sequel",
    "No. Paris is the capital of France",
    "that's wrong, the command is /sel_cache_stats",
    "that's not right, check the docs",
    "you're wrong about the release date",
    "not true, it never said that",
    "nope",
    "wrong, it's 42",
    "I meant the other library",
    "actually the API changed last year",
    "that is incorrect",
    "no it's discord.py 2.x now",
    "uh no, that function doesn't exist",
    "i said python, not js",
]
FOLLOWUPS = [
    "thanks!",
    "ok cool",
    "can you explain more?",
    "what about the second part?",
    "lol",
    "makes sense",
    "and how do I install it?",
    "nice, that worked",
    "can you give an example?",
    "why though?",
    "interesting",
    "what's the source for that?",
    "ty sel",
    "and in rust?",
    "no worries, thanks",
    "perfect",
]
# What users ask and what Sel answers: 8 topics (the generator's draw picks one; the question, the
# wording and whether the reply gets a fact wrong come from a generator of the reply's own, so
# the rest of the traffic is the same whatever is written here). Each exchange: the question,
# two right answers, and a wrong one with its severity (minor: a detail; major: the substance),
# which the demo's review grades by (metrics.reviews.demo).
TOPICS: list[list[tuple[str, tuple[str, str], tuple[str, str]]]] = [
    [  # books and films
        (
            "who wrote dune?",
            (
                "Frank Herbert wrote *Dune* (1965).",
                "That's Frank Herbert: *Dune* came out in 1965 and won the first Nebula Award.",
            ),
            ("Dune was written by Isaac Asimov in 1959.", "major"),
        ),
        (
            "is the hobbit a prequel to lotr",
            (
                "Yes: *The Hobbit* (1937) is set about 60 years before *The Lord of the Rings*.",
                "It is. Bilbo finds the Ring in *The Hobbit*, decades before Frodo's story starts.",
            ),
            ("Yes, Tolkien wrote it in 1962, after the trilogy was finished.", "minor"),
        ),
        (
            "how many harry potter books are there",
            (
                "Seven, from *Philosopher's Stone* (1997) to *Deathly Hallows* (2007).",
                "There are seven main books; the play *Cursed Child* is separate.",
            ),
            ("There are eight books; the last one came out in 2009.", "major"),
        ),
    ],
    [  # geography
        (
            "what's the capital of australia",
            (
                "Canberra, not Sydney, a classic trick question.",
                "Canberra. It was built as a compromise between Sydney and Melbourne.",
            ),
            ("Sydney is the capital of Australia.", "major"),
        ),
        (
            "longest river in europe?",
            (
                "The Volga, about 3,530 km, all of it in Russia.",
                "That's the Volga (roughly 3,500 km). The Danube is second.",
            ),
            ("The Danube, at about 4,200 km.", "major"),
        ),
        (
            "what is the population of lyon",
            (
                "About 520,000 in the city itself, and around 2.3 million in the metro area.",
                "Roughly half a million in the city; the wider metro area is over 2 million.",
            ),
            ("About 520,000 in the city, and about 5 million in the metro area.", "minor"),
        ),
    ],
    [  # python
        (
            "how do i reverse a list in python",
            (
                "Use `items[::-1]` for a copy or `items.reverse()` in place.",
                "`list(reversed(items))` gives a new list; `items.reverse()` changes it in place.",
            ),
            ("Call `items.reversed()`, it returns the list backwards.", "major"),
        ),
        (
            "what does enumerate do",
            (
                "It pairs each item with its index: `for i, x in enumerate(items):`.",
                "`enumerate(items, start=1)` gives (1, first), (2, second), ...",
            ),
            ("It counts the items in a list, like `len()` but lazily.", "major"),
        ),
        (
            "when was python 3 released",
            (
                "Python 3.0 came out in December 2008.",
                "December 2008, with Python 2.7 kept alive until 2020.",
            ),
            ("Python 3.0 came out in 2010.", "minor"),
        ),
    ],
    [  # space
        (
            "when did apollo 11 land",
            (
                "July 20, 1969.",
                "On July 20, 1969: Armstrong and Aldrin landed while Collins stayed in orbit.",
            ),
            ("July 20, 1971, with Armstrong, Aldrin and Collins all walking on the Moon.", "major"),
        ),
        (
            "how far is the moon",
            (
                "About 384,400 km on average.",
                "Around 384,000 km; it varies by about 40,000 km over an orbit.",
            ),
            ("About 38,000 km on average.", "major"),
        ),
        (
            "is pluto a planet",
            (
                "Since 2006 the IAU classifies it as a dwarf planet.",
                "Not officially: in 2006 it became a dwarf planet.",
            ),
            ("Since 2012 the IAU calls it a dwarf planet.", "minor"),
        ),
    ],
    [  # programming ideas
        (
            "explain async/await like i'm five",
            (
                "You start a kettle, and instead of staring at it you go do other things until it "
                "whistles.",
                "You ask for a pizza and play until the doorbell rings, instead of waiting at the "
                "door.",
            ),
            ("async/await makes your code run on several CPU cores at once.", "major"),
        ),
        (
            "what's a race condition",
            (
                "Two things touching the same data at once, and the result depends on who goes "
                "first.",
                "When the outcome depends on timing: two writers, one value, no lock.",
            ),
            ("It's when a loop runs faster than the CPU can keep up.", "major"),
        ),
        (
            "tabs or spaces",
            (
                "PEP 8 says 4 spaces for Python; elsewhere, follow the project's style.",
                "Spaces for Python (PEP 8); the real rule is to never mix them.",
            ),
            ("PEP 8 requires tabs; spaces are only allowed in Python 2.", "major"),
        ),
    ],
    [  # the web
        (
            "what does HTTP 413 mean",
            (
                "Payload Too Large: the server refuses a request body over its limit.",
                "413 is Payload Too Large: send a smaller body or raise the server's limit.",
            ),
            ("413 means the server is overloaded; retry later.", "major"),
        ),
        (
            "difference between 401 and 403",
            (
                "401: we don't know who you are. 403: we know, and you may not.",
                "401 asks you to authenticate; 403 says your identity lacks permission.",
            ),
            ("They are the same; 403 is just the newer code.", "major"),
        ),
        (
            "what port does https use",
            ("443 by default.", "Port 443, unless the URL says otherwise."),
            ("Port 8443 by default.", "minor"),
        ),
    ],
    [  # food
        (
            "best pizza topping?",
            (
                "I'm not sure there is a *best*, but mushrooms have a strong case.",
                "Taste is personal; a good margherita is hard to beat though.",
            ),
            ("Pineapple: Italy voted it the national topping in 2015.", "major"),
        ),
        (
            "how long to boil an egg",
            (
                "About 6-7 minutes for a jammy yolk, 9-10 for hard-boiled.",
                "Soft: 6 min, medium: 8, hard: 10, from boiling water.",
            ),
            ("About 25 minutes for a soft yolk.", "major"),
        ),
        (
            "recommend a pasta dish for tonight",
            (
                "Cacio e pepe: pasta, pecorino, black pepper, done in 15 minutes.",
                "Aglio e olio: garlic, olive oil, chilli, parsley. Quick and cheap.",
            ),
            ("Carbonara, with cream and peas as in the original Roman recipe.", "minor"),
        ),
    ],
    [  # science
        (
            "is it true goldfish have a 3 second memory",
            (
                "Nope, a myth: goldfish remember things for months.",
                "No: they can be trained and remember for months.",
            ),
            ("Yes, studies measured it at about three seconds.", "major"),
        ),
        (
            "why is the sky blue",
            (
                "Rayleigh scattering: air scatters short blue wavelengths much more than red.",
                "Sunlight scatters off air molecules, and blue light scatters most.",
            ),
            ("Because it reflects the colour of the oceans.", "major"),
        ),
        (
            "speed of light?",
            (
                "About 299,792 km per second in a vacuum.",
                "Roughly 300,000 km/s, exactly 299,792,458 m/s.",
            ),
            ("About 186,000 km per second.", "minor"),
        ),
    ],
]
HALLUCINATED = {wrong: severity for topic in TOPICS for _, _, (wrong, severity) in topic}


def exchange(key: str, topic: int, hallucination_rate: float) -> tuple[str, str]:
    """The user's message and Sel's reply of the reply ``key``: a question of the topic, one of
    its right answers, or its wrong one at the version's hallucination rate."""
    rng = random.Random(f"text:{key}")
    question, answers, (wrong, _severity) = TOPICS[topic][rng.randrange(len(TOPICS[topic]))]
    if rng.random() < hallucination_rate:
        return question, wrong
    return question, answers[rng.randrange(len(answers))]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0, sigma))


def hour_weight(ts: datetime) -> float:
    """Daily cycle peaking at 20:00 UTC (0.25x at the trough), a bit busier at weekends."""
    daily = 1 + 0.75 * math.cos((ts.hour - 20) / 24 * 2 * math.pi)
    return daily * (1.2 if ts.weekday() >= 5 else 1.0)


def channel_ids(seed: int, n: int) -> list[str]:
    rng = random.Random(f"channels:{seed}")
    return [str(rng.randrange(10**17, 10**18)) for _ in range(n)]


@dataclass
class Plan:
    rollout: str
    channels: list[str]
    per_day: int
    seed: int
    rule_at: Callable[[datetime], assignment.Rule]
    with_text: bool = True


def day_events(plan: Plan, day: datetime, until: datetime) -> Iterator[dict]:
    """Every event of one UTC day (replies, then their reactions and follow-ups), up to until."""
    day = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(f"{plan.seed}:{plan.rollout}:{day.date().isoformat()}")
    weights = [1 / (i + 1) ** 0.9 for i in range(len(plan.channels))]  # a few busy channels
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    mean_weight = sum(hour_weight(day + timedelta(hours=h)) for h in range(24)) / 24
    tag = f"{plan.seed}-{day:%Y%m%d}"
    n = 0
    last_conversation: dict[str, tuple[str, datetime]] = {}
    for hour in range(24):
        start = day + timedelta(hours=hour)
        expected = plan.per_day / 24 * hour_weight(start) / mean_weight
        count = int(expected) + (1 if rng.random() < expected - int(expected) else 0)
        offsets = sorted(rng.random() * 3600 for _ in range(count))
        for offset in offsets:
            ts = start + timedelta(seconds=offset)
            n += 1
            channel = plan.channels[_pick(cumulative, rng.random() * total)]
            variant, _ = assignment.decide(plan.rule_at(ts), channel, ts)
            profile = PROFILES.get(variant, PROFILES["v1"])
            yield from _reply_and_feedback(
                plan, rng, profile, variant, channel, ts, f"{tag}-{n}", until, last_conversation
            )


def _pick(cumulative: list[float], x: float) -> int:
    lo, hi = 0, len(cumulative) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _reply_and_feedback(
    plan, rng, profile: Profile, variant, channel, ts, key, until, conversations
):
    # random draws happen whether or not the event is past `until`, so a day is always the same
    input_tokens = max(50, int(_lognormal(rng, profile.input_tokens, 0.18)))
    output_tokens = max(5, int(_lognormal(rng, profile.output_tokens, 0.5)))
    latency = round(
        _lognormal(rng, profile.latency_ms, profile.latency_sigma) * (0.9 + input_tokens / 10_000),
        1,
    )
    error = None
    if rng.random() < profile.error_rate:
        x, error = rng.random(), ERRORS[-1][0]
        for code, share in ERRORS:
            if x < share:
                error = code
                break
            x -= share
        output_tokens = 0
        if error == "timeout":
            latency = round(30_000 + rng.random() * 500, 1)
    cache_hit = rng.random() < profile.cache_hit_rate
    cached = int(input_tokens * rng.uniform(0.5, 0.8)) if cache_hit else 0
    previous = conversations.get(channel)
    if previous and ts - previous[1] < timedelta(minutes=10) and rng.random() < 0.7:
        conversation = previous[0]
    else:
        conversation = f"c-{key}"
    conversations[channel] = (conversation, ts)
    topic = rng.randrange(len(TOPICS))
    question, answer = exchange(key, topic, profile.hallucination_rate)
    message_id = f"m-{key}"
    events = []
    if ts <= until:
        reply = {
            "id": f"sim-{key}",
            "type": "response",
            "ts": _iso(ts),
            "channel_id": channel,
            "message_id": message_id,
            "rollout": plan.rollout,
            "variant": variant,
            "model": MODEL,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached,
            "cache_hit": cache_hit,
            "latency_ms": latency,
            "error": error,
            "conversation_id": conversation,
        }
        if plan.with_text:
            reply["user_text"] = question
            reply["response_text"] = answer if error is None else ""
        events.append(reply)
    if error is None and rng.random() < profile.reaction_rate:
        x = rng.random()
        if x < 0.08:
            emoji = NEUTRAL[rng.randrange(len(NEUTRAL))]
        elif rng.random() < profile.positive_share:
            emoji = POSITIVE[rng.randrange(len(POSITIVE))]
        else:
            emoji = NEGATIVE[rng.randrange(len(NEGATIVE))]
        rts = ts + timedelta(seconds=rng.expovariate(1 / 180))
        user = f"u{rng.randrange(10_000)}"
        if rts <= until:
            events.append(
                {
                    "id": f"sim-{key}-r",
                    "type": "reaction",
                    "ts": _iso(rts),
                    "channel_id": channel,
                    "message_id": message_id,
                    "emoji": emoji,
                    "action": "add",
                    "user_id": user,
                }
            )
        if rng.random() < 0.04:  # changed their mind
            rts2 = rts + timedelta(seconds=rng.expovariate(1 / 120))
            if rts2 <= until:
                events.append(
                    {
                        "id": f"sim-{key}-rr",
                        "type": "reaction",
                        "ts": _iso(rts2),
                        "channel_id": channel,
                        "message_id": message_id,
                        "emoji": emoji,
                        "action": "remove",
                        "user_id": user,
                    }
                )
    if error is None and rng.random() < profile.followup_rate:
        correction = rng.random() < profile.correction_share
        pool = CORRECTIONS if correction else FOLLOWUPS
        fts = ts + timedelta(seconds=20 + rng.expovariate(1 / 90))
        if fts <= until:
            events.append(
                {
                    "id": f"sim-{key}-f",
                    "type": "followup",
                    "ts": _iso(fts),
                    "channel_id": channel,
                    "message_id": f"u-{key}",
                    "reply_to": message_id,
                    "text": pool[rng.randrange(len(pool))],
                }
            )
    return events
