"""Who may call what: every console route (walked from the URLconf) and every API operation
(read from /api/v1/openapi.json) against every role and every kind of token.

The tables below are the policy. A route or operation that is not in them fails
``test_every_route_is_classified`` / ``test_every_api_operation_is_classified``: a new view must
be put in a table (and so be thought about) before the suite passes again.

Pages: anonymous → redirect to the login page; a role below the one required → 403; the required
role or above → anything but 401/403 (a 4xx for an empty form is fine: the door was open).
API: no token or a revoked/unknown one → 401; a token without the scope → 403; with it → not
401/403.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from metrics.guardrails.models import GuardrailRule
from metrics.reviews import services as reviews
from rollout import services
from rollout.models import ApiToken
from tests.conftest import SYSTEM, make_user
from tests.metrics.review_data import WEEK, store_week

pytestmark = pytest.mark.django_db

# --- the policy ----------------------------------------------------------------------------------

PUBLIC, LOGIN, REVIEWER, OPERATOR = "public", "login", "reviewer", "operator"
ROLES = ("anonymous", "viewer", "reviewer", "operator")  # lowest to highest
RANK = {LOGIN: 1, REVIEWER: 2, OPERATOR: 3}

# route name -> {method: who}. GET = read pages, POST = changes. Path parameters are filled in
# from PARAMS below with real objects.
PAGES: dict[str, dict[str, str]] = {
    # probes, scrape, sign-in: open to all
    "healthz": {"GET": PUBLIC},
    "readyz": {"GET": PUBLIC},
    "prometheus-metrics": {"GET": PUBLIC},
    "login": {"GET": PUBLIC},
    "logout": {"POST": PUBLIC},
    "api:openapi-json": {"GET": PUBLIC},
    "api:openapi-view": {"GET": PUBLIC},
    "api:api-root": {"GET": PUBLIC},
    "favicon": {"GET": PUBLIC},
    # the console
    "rollout:index": {"GET": LOGIN},
    "rollout:audit": {"GET": LOGIN},
    "rollout:tokens": {"GET": LOGIN},
    "rollout:create_token": {"POST": OPERATOR},
    "rollout:revoke_token": {"POST": OPERATOR},
    "rollout:alerts": {"GET": LOGIN},
    "rollout:detail": {"GET": LOGIN},
    "rollout:section": {"GET": LOGIN},
    "rollout:console_stamp": {"GET": LOGIN},
    "rollout:preview": {"GET": LOGIN},
    "rollout:lookup": {"GET": LOGIN},
    "rollout:set_percentage": {"POST": OPERATOR},
    "rollout:move_phase": {"POST": OPERATOR},
    "rollout:hold": {"POST": OPERATOR},
    "rollout:tick": {"POST": OPERATOR},
    "rollout:add_override": {"POST": OPERATOR},
    "rollout:remove_override": {"POST": OPERATOR},
    "rollout:rollback": {"GET": OPERATOR, "POST": OPERATOR},  # GET is the confirmation form
    "rollout:reenable": {"POST": OPERATOR},
    "rollout:fleet": {"GET": LOGIN},
    "rollout:fleet_srm": {"GET": LOGIN},
    # the comparison dashboard
    "metrics:home": {"GET": LOGIN},
    "metrics:projection": {"GET": LOGIN},
    "metrics:dashboard": {"GET": LOGIN},
    "metrics:chart-data": {"GET": LOGIN},
    "metrics:comparison-data": {"GET": LOGIN},
    "metrics:cost-data": {"GET": LOGIN},
    # human review: anyone signed in sees the queue page and results; grading is for reviewers
    "metrics:reviews": {"GET": LOGIN},
    "metrics:review_draw": {"POST": REVIEWER},
    "metrics:review_results": {"GET": LOGIN},
    "metrics:review_sample": {"GET": REVIEWER},
    "metrics:review_queue": {"GET": REVIEWER},
    "metrics:review_grade": {"POST": REVIEWER},
    "metrics:review_draft": {"POST": REVIEWER},
    "metrics:review_hold": {"POST": REVIEWER},
    "metrics:review_release": {"POST": REVIEWER},
    # guardrails and the post-deployment review
    "metrics:guardrails": {"GET": LOGIN},
    "metrics:guardrail_status": {"GET": LOGIN},
    "metrics:guardrail_webhook": {"POST": OPERATOR},
    "metrics:guardrail_update": {"POST": OPERATOR},
    "metrics:guardrail_reset": {"POST": OPERATOR},
    "metrics:guardrail_evaluate": {"POST": OPERATOR},
    "metrics:report": {"GET": LOGIN},
    "metrics:report_decide": {"POST": OPERATOR},
    "metrics:report_download": {"GET": LOGIN},
}

# "METHOD /api/v1/path" (as in the OpenAPI document) -> the token scope it needs
API: dict[str, str] = {
    "GET /api/v1/config": "config:read",
    "GET /api/v1/rollouts": "config:read",
    "GET /api/v1/rollouts/{key}/decide": "config:read",
    "GET /api/v1/rollouts/{key}": "config:read",
    "PATCH /api/v1/rollouts/{key}": "rollout:operate",
    "POST /api/v1/rollouts/{key}/rollback": "rollout:operate",
    "GET /api/v1/rollouts/{key}/overrides": "config:read",
    "PUT /api/v1/rollouts/{key}/overrides/{channel_id}": "rollout:operate",
    "DELETE /api/v1/rollouts/{key}/overrides/{channel_id}": "rollout:operate",
    "POST /api/v1/events": "events:write",
    "GET /api/v1/rollouts/{key}/summary": "config:read",
    "POST /api/v1/instances/report": "events:write",
    "GET /api/v1/instances": "config:read",
}
SCOPES = ("config:read", "events:write", "rollout:operate")
TOKEN_KINDS = ("anonymous", "unknown", "revoked", *SCOPES)

# --- walking the URLconf -------------------------------------------------------------------------

SKIPPED_PREFIXES = ("admin/", "static/")


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = ":".join(x for x in (namespace, p.namespace or "") if x)
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
            yield prefix + str(p.pattern), name


def url_routes() -> list[tuple[str, str]]:
    """(pattern, name) of every route but the admin's and static files'."""
    return [
        (pattern, name)
        for pattern, name in _walk(get_resolver().url_patterns)
        if not pattern.startswith(SKIPPED_PREFIXES)
    ]


def _openapi_path(pattern: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern)


def openapi_operations() -> list[str]:
    document = Client().get("/api/v1/openapi.json").json()
    return [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    ]


def page_cases() -> list[tuple[str, str, str]]:
    return [
        (name, method, who) for name, methods in PAGES.items() for method, who in methods.items()
    ]


def test_every_route_is_classified():
    api_paths = {op.split(" ", 1)[1] for op in API}
    unclassified = [
        f"{pattern} (name {name or 'none'})"
        for pattern, name in url_routes()
        if name not in PAGES and _openapi_path(pattern) not in api_paths
    ]
    assert not unclassified, (
        "routes nobody classified; add them to PAGES or API in "
        f"tests/security/test_permission_matrix.py: {unclassified}"
    )


def test_every_classified_route_exists():
    names = {name for _, name in url_routes()}
    assert not set(PAGES) - names, f"stale entries in PAGES: {sorted(set(PAGES) - names)}"


def test_every_api_operation_is_classified():
    operations = openapi_operations()
    assert not set(operations) - set(API), (
        f"unclassified API operations: {sorted(set(operations) - set(API))}"
    )
    assert not set(API) - set(operations), (
        f"stale entries in API: {sorted(set(API) - set(operations))}"
    )


# --- real objects for the path parameters -------------------------------------------------------


@pytest.fixture
def world(rollout, make_token):
    """Users of each role, tokens of each kind, and the objects the routes' parameters name."""
    users = {
        "viewer": make_user("vera", "viewers"),
        "reviewer": make_user("rex", "reviewers"),
        "operator": make_user("otto", "operators"),
    }
    store_week({"v1": 3, "v2_full": 3})
    sample = reviews.draw_sample(
        rollout_key=rollout.key, week_start=WEEK, actor=SYSTEM, size=4, seed=7
    )
    item = sample.items.first()
    rule = GuardrailRule.objects.filter(rollout=rollout).first()
    assert item is not None and rule is not None
    victim, _ = services.create_api_token(name="victim", scopes=["config:read"], actor=SYSTEM)
    services.set_override(
        rollout, "123456789012345678", variant="v2_full", actor=SYSTEM, reason="matrix"
    )
    params = {
        "key": rollout.key,
        "name": "overrides",
        "channel_id": "123456789012345678",
        "chart": "volume",
        "fmt": "json",
    }
    pks = {
        "rollout:revoke_token": victim.pk,
        "metrics:review_sample": sample.pk,
        "metrics:review_queue": sample.pk,
        "metrics:review_grade": item.pk,
        "metrics:review_draft": item.pk,
        "metrics:review_hold": item.pk,
        "metrics:review_release": item.pk,
        "metrics:guardrail_update": rule.pk,
        "metrics:guardrail_reset": rule.pk,
    }
    revoked_raw = make_token(*SCOPES, name="revoked")
    services.revoke_api_token(ApiToken.objects.get(name="revoked"), actor=SYSTEM)
    tokens = {scope: make_token(scope, name=f"only-{scope}") for scope in SCOPES}
    tokens.update(anonymous=None, unknown="sc_" + "x" * 40, revoked=revoked_raw)
    return {"users": users, "params": params, "pks": pks, "tokens": tokens}


def _path(name: str, world) -> str:
    pattern = next(p for p, n in url_routes() if n == name)
    values = {**world["params"], "pk": world["pks"].get(name)}

    def fill(match: re.Match) -> str:
        value = values[match.group(1)]
        assert value is not None, f"no value for <{match.group(1)}> of {name}"
        return str(value)

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, pattern)


def _allowed(role: str, who: str) -> bool:
    if who == PUBLIC:
        return True
    return role != "anonymous" and ROLES.index(role) >= RANK[who]


@pytest.mark.parametrize(("name", "method", "who"), page_cases(), ids=lambda v: str(v))
def test_page__each_role__allowed_or_refused_as_the_table_says(world, name, method, who):
    path = _path(name, world)
    wrong = []
    for role in ROLES:  # lowest first, so an operator's change comes last
        client = Client()
        if role != "anonymous":
            client.force_login(world["users"][role])
        response = getattr(client, method.lower())(path)
        status = response.status_code
        if who == PUBLIC:
            ok = status not in (401, 403)
        elif _allowed(role, who):
            ok = status not in (401, 403) and not (
                status == 302 and response["Location"].startswith("/login/")
            )
        elif role == "anonymous":
            ok = status == 302 and response["Location"].startswith("/login/?next=")
        else:
            ok = status == 403
        if not ok:
            wrong.append(f"{role}: {status}")
    assert not wrong, f"{method} {path} (needs {who}): {wrong}"


@pytest.mark.parametrize(("operation", "scope"), sorted(API.items()))
def test_api__each_token_kind__allowed_or_refused_as_the_table_says(world, operation, scope):
    method, template = operation.split(" ", 1)
    path = template.format(key=world["params"]["key"], channel_id=world["params"]["channel_id"])
    wrong = []
    for kind in TOKEN_KINDS:
        raw = world["tokens"][kind]
        headers = {"Authorization": f"Bearer {raw}"} if raw else {}
        kwargs = {"headers": headers}
        if method in ("POST", "PUT", "PATCH"):
            kwargs.update(data="{}", content_type="application/json")
        response = getattr(Client(), method.lower())(path, **kwargs)
        status = response.status_code
        if kind in ("anonymous", "unknown", "revoked"):
            expected = "401"
            ok = status == 401
        elif kind == scope:
            expected = "not 401/403"
            ok = status not in (401, 403)
        else:
            expected = "403"
            ok = status == 403
        if ok and status in (401, 403):
            ok = "error" in response.json()
        if not ok:
            wrong.append(f"{kind}: {status} (expected {expected})")
    assert not wrong, f"{operation} (needs {scope}): {wrong}"
