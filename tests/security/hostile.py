"""Hypothesis strategies for hostile input (issue 15, "how to make it last"), shared by the
property tests of the API and of the console and by the schemathesis run.

Each field is drawn from a mix of valid values (so the deeper code paths are reached) and
hostile ones: any Unicode character including lone surrogates, NUL and the bidi controls;
huge strings; numbers at and past every integer width, NaN and infinities; timestamps at the
calendar's edges and in ISO 8601 forms that are not RFC 3339; and a few classics (formulas,
SQL, markup, path traversal, percent-escapes).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

EDGE_TIMES = [
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2025-W23-1T12:00:00Z",
    "20250601T120000Z",
    "2025-06-01",
    "2025-06-01T12:00:00",
    "2025-02-30T00:00:00Z",
    "2025-06-01T24:00:00Z",
    "2025-06-01T12:00:60Z",
    "2025-06-01T12:00:00+99:99",
    "2025-06-01t12:00:00z",
    "+275760-09-13T00:00:00Z",
    "1e20",
]
CLASSICS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\ud83d",
    "\u202eevil\u202c",
    "\u200f\u061c",
    "\ufeff",
    "%00",
    "%ED%A0%80",
    '=HYPERLINK("http://evil.example","x")',
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "\tx",
    "\rx",
    "'; DROP TABLE rollout_rollout; --",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "../../etc/passwd",
    "@everyone",
    "NaN",
    "-0",
    "99999999999999999999999999",
]
POISON = ["\x00"] * 3 + ["\ud800", "\udfff"] * 2 + ["\u202e", "\U0010ffff", "\r\n", "%00"]
BIG_INTS = [2**31, 2**31 - 1, -(2**31), 2**63, 2**63 - 1, -(2**63) - 1, 2**64, 10**20, -1]


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any characters (surrogates, NUL, controls, RTL), the classics, and huge strings."""
    poisoned = st.tuples(st.text(max_size=8), st.sampled_from(POISON), st.text(max_size=8)).map(
        "".join
    )
    classics = st.sampled_from(CLASSICS + EDGE_TIMES)
    huge = st.sampled_from([2_001, 70_000, 300_000]).map(lambda n: "\u202e\U0001d54f" * (n // 2))
    # one_of picks a branch evenly: repeating one weighs it.
    return st.one_of(
        st.text(st.characters(), max_size=max_size),
        poisoned,
        poisoned,
        poisoned,
        classics,
        classics,
        huge,
    )


def hostile_number() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(),
        st.sampled_from(BIG_INTS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
    )


def hostile_json_value() -> st.SearchStrategy[Any]:
    """Any JSON-ish value, hostile at every level."""
    scalar = st.one_of(hostile_text(), hostile_number())
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(hostile_text(8), inner, max_size=4)
        ),
        max_leaves=8,
    )


def field(valid: st.SearchStrategy[Any] | list[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid, often hostile: each field of a request."""
    valid_strategy = st.sampled_from(valid) if isinstance(valid, list) else valid
    return st.one_of(
        valid_strategy,
        valid_strategy,
        hostile_text(),
        hostile_number(),
        st.sampled_from(EDGE_TIMES),
    )


def maybe(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict where each key is present or not."""
    return st.fixed_dictionaries({}, optional=fields)


def as_text(value: Any) -> str:
    """A form or query value as a browser would send it (numbers as their text)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def query_string(params: dict[str, Any]) -> str:
    """URL-encoded, lone surrogates as the invalid UTF-8 bytes a raw client would send."""
    return urlencode(
        {k: as_text(v) for k, v in params.items()}, encoding="utf-8", errors="surrogatepass"
    )


def path_segment(value: Any) -> str:
    return quote(as_text(value), safe="", encoding="utf-8", errors="surrogatepass")
