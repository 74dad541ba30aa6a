"""Property tests: hostile input in every console form and query parameter (issue 15, "how to
make it last"); the review pages (/metrics/reviews/*) have theirs with the review tests.

An operator (every form is open to them) sends each form and each page's query parameters with
fields drawn from tests/security/hostile.py, encoded as a raw client would (a lone surrogate
becomes the invalid UTF-8 it encodes to). Whatever the input: no 5xx; a 4xx stores nothing
(rollout state, overrides, audit log, tokens, guardrail rules, decisions all as before); a
change that went through wrote one audit row.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from metrics.guardrails.models import DeploymentDecision, GuardrailRule
from rollout.models import ApiToken, AuditEntry, ChannelOverride, ChecklistTick, Rollout

from .hostile import field, hostile_text, maybe, path_segment, query_string

pytestmark = pytest.mark.django_db

KEY = "prompts_v2"
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
percentages = field([0, 5, 20, 100, 101, -1])
reasons = field(["because", "x" * 2000, "x" * 2001])
dates = field(["2026-03-01", "2026-03-02", "2026-03-02T10:00", "9999-12-31", "0001-01-01"])
ranges = field(["24h", "7d", "30d", "custom"])


def snapshot() -> dict[str, Any]:
    return {
        "rollouts": list(
            Rollout.objects.order_by("key").values_list(
                "key",
                "enabled",
                "percentage",
                "simplified_percentage",
                "strategy",
                "revision",
                "current_phase_id",
            )
        ),
        "overrides": list(
            ChannelOverride.objects.order_by("pk").values_list(
                "channel_id", "variant", "expires_at"
            )
        ),
        "audit": AuditEntry.objects.count(),
        "ticks": ChecklistTick.objects.count(),
        "tokens": list(ApiToken.objects.order_by("pk").values_list("name", "revoked_at")),
        "rules": list(
            GuardrailRule.objects.order_by("pk").values_list(
                "enabled", "threshold", "min_samples", "alpha", "action", "from_phase_id"
            )
        ),
        "decisions": DeploymentDecision.objects.count(),
    }


@pytest.fixture
def operator(operator_client) -> Client:
    return operator_client


def get(client: Client, path: str, params: dict[str, Any], htmx: bool):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.get(f"{path}?{query_string(params)}", headers=headers)


def post(client: Client, path: str, data: dict[str, Any], htmx: bool):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.generic(
        "POST",
        path,
        query_string(data).encode("ascii"),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def check(answer, before: dict[str, Any]) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.content[:300])
    if answer.status_code >= 400:
        assert answer.content.strip(), "a 4xx needs a body saying why"
        assert snapshot() == before


def check_change(answer, before: dict[str, Any]) -> None:
    check(answer, before)
    if answer.status_code < 400:
        after = snapshot()
        changed = {k for k in before if k not in ("audit",) and before[k] != after[k]}
        assert after["audit"] - before["audit"] == (1 if changed - {"decisions"} else 0) or (
            changed == {"decisions"}
        )


htmx = st.booleans()


SECTIONS = ["status", "timeline", "checklist", "percentage", "overrides"]


@FUZZ
@given(
    key=keys,
    section=field(SECTIONS),
    q=hostile_text(),
    part=field(["banner", "emergency"]),
    alert_rollout=keys,
    preview=maybe({"percentage": percentages, "simplified_percentage": percentages}),
    channel_id=field(["123456789012345678", "42"]),
    audit=maybe(
        {
            "rollout": keys,
            "actor": field(["alice"]),
            "action": field(["rollout.update"]),
            "page": field([1, 2, 999]),
        }
    ),
    htmx=htmx,
)
@example(  # the inputs of issue 15, item 6, always among the examples
    key=KEY,
    section="overrides",
    q="x\x00",
    part="banner",
    alert_rollout="x\x00",
    preview={"percentage": "5\x00"},
    channel_id="1\x00",
    audit={"actor": "x\x00"},
    htmx=True,
)
def test_rollout_pages__hostile_query__never_5xx(
    operator, key, section, q, part, alert_rollout, preview, channel_id, audit, htmx
):
    before = snapshot()
    k = path_segment(key)
    for path, params in [
        (f"/rollouts/{k}/", {}),
        (f"/rollouts/{k}/sections/{path_segment(section)}/", {"q": q}),
        *[(f"/rollouts/{KEY}/sections/{name}/", {"q": q}) for name in SECTIONS],
        ("/console/alerts/", {"part": part, "rollout": alert_rollout}),
        ("/console/alerts/", {"part": "banner", "rollout": q}),
        (f"/rollouts/{k}/preview/", preview),
        (f"/rollouts/{k}/lookup/", {"channel_id": channel_id}),
        ("/audit/", audit),
        ("/tokens/", {}),
        (f"/rollouts/{k}/fleet/", {}),
        (f"/rollouts/{k}/fleet/srm/", {}),
    ]:
        check(get(operator, path, params, htmx), before)


@FUZZ
@given(
    key=keys,
    params=maybe(
        {
            "range": ranges,
            "start": dates,
            "end": dates,
            "granularity": field(["hour", "day"]),
            "compare": field(["v2_full", "v2_simplified"]),
        }
    ),
    chart=field(["responses", "errors", "latency", "cost"]),
    fmt=field(["csv", "json"]),
    projection=maybe(
        {"rollout": keys, "percentage": percentages, "simplified_percentage": percentages}
    ),
    start=st.one_of(dates, st.sampled_from(["2026-03-01", "9999-12-30", "0001-01-01"])),
    end=st.one_of(dates, st.sampled_from(["2026-03-02", "9999-12-31", "0001-01-02"])),
    htmx=htmx,
)
@example(  # the inputs of issue 15, item 6, always among the examples
    key=KEY,
    params={"range": "custom", "start": "9999-12-30", "end": "9999-12-31"},
    chart="responses",
    fmt="csv",
    projection={"rollout": "x\x00"},
    start="9999-12-30",
    end="9999-12-31",
    htmx=False,
)
def test_dashboard__hostile_query__never_5xx(
    operator, key, params, chart, fmt, projection, start, end, htmx
):
    before = snapshot()
    k, f = path_segment(key), path_segment(fmt)
    custom = {"range": "custom", "start": start, "end": end}
    for path, query in [
        (f"/metrics/{k}/", params),
        (f"/metrics/{KEY}/", custom),
        (f"/metrics/{k}/charts/{path_segment(chart)}.{f}", params),
        (f"/metrics/{KEY}/charts/responses.csv", custom),
        (f"/metrics/{k}/comparison.{f}", params),
        (f"/metrics/{KEY}/comparison.json", custom),
        (f"/metrics/{k}/cost.{f}", params),
        ("/metrics/projection", projection),
        (f"/metrics/{k}/guardrails/", {}),
        (f"/metrics/{k}/guardrails/status/", {}),
        (f"/metrics/{k}/report/", {}),
        (f"/metrics/{k}/report.{path_segment(field_text(fmt))}", {}),
    ]:
        check(get(operator, path, query, htmx), before)


def field_text(fmt: Any) -> str:
    return {"csv": "md", "json": "json"}.get(fmt, str(fmt))


def _revision() -> int:
    return Rollout.objects.get(key=KEY).revision


revision = st.one_of(st.none(), field([0, 1, 999999999999999999999]))


@FUZZ
@given(
    form=st.sampled_from(
        ["percentage", "phase", "hold", "checklist", "overrides", "reenable", "rollback"]
    ),
    data=maybe(
        {
            "percentage": percentages,
            "simplified_percentage": percentages,
            "reason": reasons,
            "phase": field([1, 2, 3, 4, 5, 0]),
            "gate_override_reason": reasons,
            "item": field(["Unit tests pass", "x"]),
            "checked": field(["on", ""]),
            "channel_id": field(["123456789012345678", "42"]),
            "variant": field(["v1", "v2_full"]),
            "expires_at": dates,
        }
    ),
    current_revision=st.booleans(),
    bad_revision=revision,
    key=keys,
    htmx=htmx,
)
def test_rollout_forms__hostile_fields__4xx_stores_nothing_or_one_audited_change(
    operator, form, data, current_revision, bad_revision, key, htmx
):
    data = dict(data)
    data["revision"] = _revision() if current_revision else bad_revision
    if data["revision"] is None:
        del data["revision"]
    before = snapshot()
    path = {"checklist": "checklist", "overrides": "overrides"}.get(form, form)
    check_change(post(operator, f"/rollouts/{path_segment(key)}/{path}/", data, htmx), before)


@FUZZ
@given(
    channel_id=field(["123456789012345678", "42"]),
    reason=reasons,
    current_revision=st.booleans(),
    htmx=htmx,
)
def test_remove_override__hostile_channel_and_reason__never_5xx(
    operator, channel_id, reason, current_revision, htmx
):
    from rollout import services
    from tests.conftest import SYSTEM

    services.set_override(KEY, "123456789012345678", variant="v1", actor=SYSTEM, reason="fixture")
    data = {"reason": reason, "revision": _revision() if current_revision else 0}
    before = snapshot()
    path = f"/rollouts/{KEY}/overrides/{path_segment(channel_id)}/remove/"
    check_change(post(operator, path, data, htmx), before)


@FUZZ
@given(
    name=field(["sel-bot", "x" * 100, "x" * 101]),
    scopes=st.lists(field(["config:read", "events:write", "rollout:operate"]), max_size=3),
    pk=field([1, 2, 10**20]),
    htmx=htmx,
)
def test_tokens__hostile_create_and_revoke__never_5xx(operator, name, scopes, pk, htmx):
    before = snapshot()
    answer = operator.generic(
        "POST",
        "/tokens/new/",
        "&".join(
            [query_string({"name": name})] + [query_string({"scopes": s}) for s in scopes]
        ).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"HX-Request": "true"} if htmx else {},
    )
    check_change(answer, before)
    before = snapshot()
    check_change(post(operator, f"/tokens/{path_segment(pk)}/revoke/", {}, htmx), before)


@FUZZ
@given(
    rule=maybe(
        {
            "enabled": field(["on", ""]),
            "threshold": field([0.1, 1.5, 100, -1, "1e308", "inf", "nan"]),
            "min_samples": field([0, 100, 2**31, 2**63]),
            "alpha": field([0.05, 0, 1, 2]),
            "action": field(["kill_switch", "step_back", "warn"]),
            "from_phase": field(["", 1, 2]),
        }
    ),
    decision=maybe({"decision": field(["success", "partial", "failure"]), "reason": reasons}),
    htmx=htmx,
)
def test_guardrail_and_report_forms__hostile_fields__never_5xx(operator, rule, decision, htmx):
    target = GuardrailRule.objects.filter(rollout__key=KEY).order_by("pk").first()
    prefixed = {f"r{target.pk}-{name}": value for name, value in rule.items()}
    before = snapshot()
    check(post(operator, f"/metrics/{KEY}/guardrails/{target.pk}/", prefixed, htmx), before)
    before = snapshot()
    check(post(operator, f"/metrics/{KEY}/report/decision/", decision, htmx), before)
