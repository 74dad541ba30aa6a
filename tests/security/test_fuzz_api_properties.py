"""Property tests: hostile input at every API operation (issue 15, "how to make it last").

For each operation, hypothesis draws requests whose every field (path, query, body, If-Match) is
mostly valid and often hostile (tests/security/hostile.py). Whatever the input: the answer is a
2xx/3xx, or a 4xx whose body is ``{"error": "<sentence>"}``; never a 5xx. A 4xx stores nothing
(rollout state, overrides, audit log, events, instances: all as before). A 2xx write leaves one
audit row per change, and an events batch stores exactly what it says it accepted.

The run is derandomized so CI is reproducible; SELCONTROL_FUZZ_EXAMPLES=500 searches deeper.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from metrics.models import FollowupEvent, ReactionEvent, ResponseEvent
from rollout.models import ApiToken, AuditEntry, ChannelOverride, Instance, Rollout
from tests.conftest import ApiClient

from .hostile import (
    EDGE_TIMES,
    field,
    hostile_json_value,
    hostile_text,
    maybe,
    path_segment,
    query_string,
)

pytestmark = pytest.mark.django_db

KEY = "prompts_v2"
CHANNEL = "123456789012345678"
EXAMPLES = int(os.environ.get("SELCONTROL_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

keys = field([KEY, "nope"])
channels = field([CHANNEL, "42", "abc-1:2"])
reasons = field(["because", "x" * 2000, "x" * 2001])
times = field(["2026-03-02T10:00:00Z", "2099-01-01T00:00:00+02:00", None])
variants = field(["v1", "v2_full", "v2_simplified"])
percentages = field([0, 5, 20, 100, 101, -1])


@pytest.fixture
def api(make_token) -> ApiClient:
    return ApiClient(make_token(*ApiToken.Scope.values, name="fuzzer"))


def snapshot() -> dict[str, Any]:
    return {
        "rollouts": list(
            Rollout.objects.order_by("key").values_list(
                "key", "enabled", "percentage", "simplified_percentage", "strategy", "revision"
            )
        ),
        "overrides": list(
            ChannelOverride.objects.order_by("pk").values_list(
                "channel_id", "variant", "expires_at", "reason"
            )
        ),
        "audit": AuditEntry.objects.count(),
        "events": (
            ResponseEvent.objects.count(),
            ReactionEvent.objects.count(),
            FollowupEvent.objects.count(),
        ),
        "instances": list(Instance.objects.order_by("pk").values_list("instance_id", "revision")),
    }


def send(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: dict | None = None,
    body: Any = None,
    raw_body: str | None = None,
    headers: dict | None = None,
):
    url = path + (f"?{query_string(query)}" if query else "")
    kwargs: dict[str, Any] = {"headers": api._headers(headers)}
    if body is not None or raw_body is not None:
        kwargs["data"] = raw_body if raw_body is not None else json.dumps(body)
        kwargs["content_type"] = "application/json"
    return getattr(api.client, method)(url, **kwargs)


def check(answer, before: dict[str, Any]) -> None:
    """No 5xx; a 4xx is a JSON sentence and stored nothing."""
    assert answer.status_code < 500, (answer.status_code, answer.content[:300])
    if answer.status_code >= 400:
        body = answer.json()
        assert isinstance(body["error"], str) and body["error"].strip(), body
        assert snapshot() == before, answer.json()


def check_write(answer, before: dict[str, Any]) -> None:
    check(answer, before)
    if answer.status_code < 300:
        after = snapshot()
        changed = (
            after["rollouts"] != before["rollouts"] or after["overrides"] != before["overrides"]
        )
        assert after["audit"] - before["audit"] == (1 if changed else 0)


@FUZZ
@given(key=keys, channel_id=channels, wait=field([0, 0.0]))
@example(key="prompts_v2\x00", channel_id="1\x00", wait="1e20")  # issue 15, item 6
def test_reads__hostile_path_and_query__never_5xx(api, key, channel_id, wait):
    before = snapshot()
    k = path_segment(key)
    for method, path, query in [
        ("get", "/api/v1/config", {"wait": wait}),
        ("get", "/api/v1/rollouts", None),
        ("get", f"/api/v1/rollouts/{k}", None),
        ("get", f"/api/v1/rollouts/{k}/decide", {"channel_id": channel_id}),
        ("get", f"/api/v1/rollouts/{k}/overrides", None),
        ("get", "/api/v1/instances", None),
    ]:
        check(send(api, method, path, query=query), before)


@FUZZ
@given(
    key=keys,
    body=maybe(
        {
            "enabled": field([True, False]),
            "percentage": percentages,
            "simplified_percentage": percentages,
            "strategy": field(["sticky", "daily_rotation"]),
            "reason": reasons,
        }
    ),
    if_match=st.one_of(
        st.none(),
        st.sampled_from(["*", '"1"', 'W/"2"', "abc", '"99999999999999999999999"']),
        st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30),
    ),
)
def test_patch__hostile_fields__4xx_sentence_or_one_audited_change(api, key, body, if_match):
    before = snapshot()
    headers = {"If-Match": if_match} if if_match is not None else None
    answer = send(api, "patch", f"/api/v1/rollouts/{path_segment(key)}", body=body, headers=headers)
    check_write(answer, before)


@FUZZ
@given(key=keys, body=maybe({"reason": reasons}))
def test_rollback__hostile_reason__4xx_sentence_or_one_audited_change(api, key, body):
    before = snapshot()
    answer = send(api, "post", f"/api/v1/rollouts/{path_segment(key)}/rollback", body=body)
    check_write(answer, before)


@FUZZ
@given(
    key=keys,
    channel_id=channels,
    body=maybe({"variant": variants, "reason": reasons, "expires_at": times}),
    delete_reason=st.one_of(st.none(), hostile_text()),
)
@example(  # issue 15, item 1
    key=KEY,
    channel_id=CHANNEL,
    body={"variant": "v1", "reason": "x", "expires_at": "9999-12-31T23:59:59-14:00"},
    delete_reason="x\x00",
)
def test_overrides__hostile_put_and_delete__4xx_sentence_or_one_audited_change(
    api, key, channel_id, body, delete_reason
):
    path = f"/api/v1/rollouts/{path_segment(key)}/overrides/{path_segment(channel_id)}"
    before = snapshot()
    check_write(send(api, "put", path, body=body), before)
    before = snapshot()
    query = {"reason": delete_reason} if delete_reason is not None else None
    check_write(send(api, "delete", path, query=query), before)


def _event(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    common = {
        "id": field(["e-1", "e-2", "e-3"]),
        "type": field([kind]),
        "ts": field(["2026-03-02T10:00:00Z", *EDGE_TIMES[:4]]),
        "channel_id": channels,
        "message_id": field(["m-1", "m-2"]),
    }
    extra = {
        "response": {
            "rollout": keys,
            "variant": variants,
            "model": field(["anthropic/claude-3.5-sonnet"]),
            "input_tokens": field([0, 500]),
            "output_tokens": field([0, 200]),
            "cached_tokens": field([0, 10]),
            "cache_hit": field([True, None]),
            "latency_ms": field([0, 1200.5]),
            "error": field([None, "timeout"]),
            "conversation_id": field(["c-1", None]),
            "user_text": field(["hi"]),
            "response_text": field(["hello"]),
        },
        "reaction": {
            "emoji": field(["👍", "👎"]),
            "action": field(["add", "remove"]),
            "user_id": field(["u1"]),
        },
        "followup": {
            "reply_to": field(["m-1"]),
            "text": field(["actually no"]),
            "is_correction": field([True, None]),
        },
    }[kind]
    required = {k: common.pop(k) for k in ("id", "type")}
    # Whole events of the right type (so that every later check is reached), and events of any
    # shape missing any field.
    whole = {**required, "type": st.just(kind), **common, **extra}
    return st.one_of(
        st.fixed_dictionaries(whole),
        st.fixed_dictionaries(whole),
        st.fixed_dictionaries(required, optional={**common, **extra}),
    )


@FUZZ
@given(
    events=st.lists(
        st.one_of(_event("response"), _event("reaction"), _event("followup"), hostile_json_value()),
        min_size=1,
        max_size=8,
    )
)
@example(  # issue 15, item 2: one bad event among good ones
    events=[
        {
            "id": "ok",
            "type": "reaction",
            "ts": "2026-03-02T10:00:00Z",
            "channel_id": "1",
            "message_id": "m",
            "emoji": "x",
            "action": "add",
        },
        {
            "id": "bad",
            "type": "reaction",
            "ts": "9999-12-31T23:59:59-14:00",
            "channel_id": "1",
            "message_id": "m",
            "emoji": "x",
            "action": "add",
        },
        {
            "id": "bad-2",
            "type": "reaction",
            "ts": "2026-03-02T10:00:00Z",
            "channel_id": "1",
            "message_id": "\ud800",
            "emoji": "x",
            "action": "add",
        },
    ]
)
def test_events__hostile_batch__each_event_stored_or_rejected_by_index(api, events):
    before = snapshot()
    answer = send(api, "post", "/api/v1/events", body={"events": events})
    check(answer, before)
    if answer.status_code == 200:
        result = answer.json()
        assert result["accepted"] + result["duplicates"] + len(result["rejected"]) == len(events)
        assert [r["index"] for r in result["rejected"]] == sorted(
            r["index"] for r in result["rejected"]
        )
        assert all(r["error"].strip() for r in result["rejected"])
        stored = sum(snapshot()["events"]) - sum(before["events"])
        assert stored == result["accepted"]


@FUZZ
@given(
    body=st.one_of(hostile_json_value(), st.fixed_dictionaries({"events": hostile_json_value()}))
)
def test_events__hostile_body__never_5xx(api, body):
    before = snapshot()
    check(send(api, "post", "/api/v1/events", body=body), before)


@FUZZ
@given(key=keys, since=st.one_of(st.none(), times), until=st.one_of(st.none(), times))
@example(key=KEY, since="9999-12-31T23:59:59-14:00", until=None)  # issue 15, item 6
def test_summary__hostile_since_until__never_5xx(api, key, since, until):
    before = snapshot()
    query = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
    check(send(api, "get", f"/api/v1/rollouts/{path_segment(key)}/summary", query=query), before)


@FUZZ
@given(
    body=maybe(
        {
            "instance_id": field(["bot-1", "bot-2"]),
            "host": field(["sel-1"]),
            "pid": field([1, 2**31 - 1]),
            "client_version": field(["1.0"]),
            "started_at": times,
            "revision": field([0, 1]),
            "config_source": field(["server", ""]),
            "exposures": st.one_of(st.just([]), hostile_json_value()),
            "events": st.one_of(st.just({}), hostile_json_value()),
            "last_sync_error": field([None, "timeout"]),
        }
    )
)
def test_instances_report__hostile_fields__never_5xx(api, body):
    check(send(api, "post", "/api/v1/instances/report", body=body), snapshot())


@FUZZ
@given(raw=st.one_of(hostile_text(200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_every_write__hostile_raw_body__never_5xx(api, raw):
    """Bodies that are not JSON, or JSON of the wrong shape, at every operation taking one."""
    for method, path in [
        ("patch", f"/api/v1/rollouts/{KEY}"),
        ("post", f"/api/v1/rollouts/{KEY}/rollback"),
        ("put", f"/api/v1/rollouts/{KEY}/overrides/{CHANNEL}"),
        ("post", "/api/v1/events"),
        ("post", "/api/v1/instances/report"),
    ]:
        before = snapshot()
        check(send(api, method, path, raw_body=raw.encode("utf-8", "surrogatepass")), before)
