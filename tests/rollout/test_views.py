"""Operator console views: pages render for every role, changes go through services and answer
with the changed fragment plus HX-Trigger, reviewers and viewers get 403, CSRF is enforced, and
a stale revision answers 409 with what changed."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rollout import services
from rollout.checklist import ITEM_KEYS
from rollout.models import ApiToken, AuditEntry, ChannelOverride, ChecklistTick, Rollout
from tests.conftest import SYSTEM, ApiClient, changed_event

HX = {"HX-Request": "true"}
KEY = "prompts_v2"


def url(name: str, *args) -> str:
    return reverse(f"rollout:{name}", args=args)


def started(rollout: Rollout, order: int = 1) -> Rollout:
    return services.move_to_phase(rollout, phase=order, actor=SYSTEM, reason="start")


def fresh(rollout: Rollout) -> Rollout:
    return Rollout.objects.select_related("current_phase").get(pk=rollout.pk)


# --- every change view, with the POST data that makes it succeed -----------------------------


def change_requests(rollout: Rollout) -> list[tuple[str, dict]]:
    rev = str(rollout.revision)
    token = ApiToken.objects.create(
        name="t", token_hash="x" * 64, hint="sc_x", scopes=["config:read"]
    )
    return [
        (
            url("set_percentage", KEY),
            {"percentage": "20", "simplified_percentage": "0", "reason": "r", "revision": rev},
        ),
        (url("move_phase", KEY), {"phase": "1", "reason": "r", "revision": rev}),
        (url("hold", KEY), {"reason": "r", "revision": rev}),
        (url("tick", KEY), {"phase": "1", "item": "factual", "checked": "on"}),
        (
            url("add_override", KEY),
            {"channel_id": "420000000000000042", "variant": "v1", "reason": "r", "revision": rev},
        ),
        (url("remove_override", KEY, "420000000000000042"), {"reason": "r", "revision": rev}),
        (url("rollback", KEY), {"reason": "r"}),
        (url("reenable", KEY), {"percentage": "5", "reason": "r", "revision": rev}),
        (url("create_token"), {"name": "bot", "scopes": ["config:read"]}),
        (url("revoke_token", token.pk), {}),
    ]


@pytest.mark.parametrize("persona", ["reviewer_client", "viewer_client"])
def test_change_views__reviewer_or_viewer__403_and_nothing_changes(request, persona, rollout):
    client = request.getfixturevalue(persona)
    audit_before = AuditEntry.objects.count()
    for path, data in change_requests(rollout):
        response = client.post(path, data, headers=HX)
        assert response.status_code == 403, path
    assert AuditEntry.objects.count() == audit_before
    assert fresh(rollout).revision == rollout.revision


def test_change_view__viewer_form_post__403_page_says_why_and_where_to_go(viewer_client, rollout):
    """The 403 page says the sentence the server logs, who the user is, and where to go (not
    Django's bare "403 Forbidden")."""
    path, data = change_requests(rollout)[0]
    response = viewer_client.post(path, data)
    body = response.content.decode()
    assert response.status_code == 403
    assert "Only operators can change rollouts." in body
    assert "a <strong>viewer</strong>" in body and "ask an operator" in body
    assert f'href="{reverse("rollout:index")}"' in body and "403 Forbidden" not in body


def test_change_views__anonymous__redirected_to_login(client, rollout):
    for path, data in change_requests(rollout):
        response = client.post(path, data)
        assert response.status_code == 302 and "/login/" in response["Location"], path


def test_change_views__without_csrf_token__403(alice, rollout):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    for path, data in change_requests(rollout):
        assert client.post(path, data, headers=HX).status_code == 403, path
    assert not AuditEntry.objects.exclude(action__startswith="token").exists()


def test_percentage__with_csrf_header_from_page__saved(alice, rollout):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get(url("detail", KEY))
    token = page.context["csrf_token"]
    response = client.post(
        url("set_percentage", KEY),
        {
            "percentage": "20",
            "simplified_percentage": "0",
            "reason": "r",
            "revision": rollout.revision,
        },
        headers={**HX, "X-CSRFToken": str(token)},
    )
    assert response.status_code == 200
    assert fresh(rollout).percentage == 20


# --- pages -------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["operator_client", "reviewer_client", "viewer_client"])
def test_pages__any_role__render(request, persona, rollout):
    client = request.getfixturevalue(persona)
    for path in (url("detail", KEY), url("audit"), url("tokens")):
        assert client.get(path).status_code == 200, path
    for name in ("status", "timeline", "checklist", "percentage", "overrides"):
        assert client.get(url("section", KEY, name), headers=HX).status_code == 200, name


def test_index__one_rollout__redirects_to_it(operator_client, rollout):
    response = operator_client.get(url("index"))
    assert response.status_code == 302 and response["Location"] == url("detail", KEY)


def test_detail__operator__shows_change_forms_and_emergency_button(operator_client, rollout):
    started(rollout)
    html = operator_client.get(url("detail", KEY)).content.decode()
    assert "Save percentage" in html
    assert "Emergency rollback" in html
    assert "Add an override" in html
    assert "Guardrails" in html  # the slot issue 8 fills: partials/guardrails.html


@pytest.mark.parametrize("persona", ["reviewer_client", "viewer_client"])
def test_detail__reviewer_or_viewer__no_change_forms(request, persona, rollout):
    started(rollout)
    html = request.getfixturevalue(persona).get(url("detail", KEY)).content.decode()
    for text in (
        "Save percentage",
        "Emergency rollback",
        "Add an override",
        "Advance to",
        "Re-enable",
    ):
        assert text not in html, text
    assert 'type="checkbox" name="checked" value="on" disabled' in html


def test_detail__query_count__bounded(operator_client, rollout, django_assert_max_num_queries):
    started(rollout)
    services.set_override(rollout, "700000000000000007", variant="v1", actor=SYSTEM, reason="r")
    # 22 before the success criteria; they read the rules' states, evidence windows and figures
    # once for the guardrail panel and the phase gate together (metrics.guardrails.criteria,
    # per-channel totals included);
    # "Last 24 h" reads what was served and the fleet's decisions (2, then cached for a minute);
    # the console stamp (1, rollout/freshness.py)
    with django_assert_max_num_queries(33):
        operator_client.get(url("detail", KEY))


def test_detail__not_started__no_traffic_message(operator_client, rollout):
    html = operator_client.get(url("detail", KEY)).content.decode()
    assert "Not started" in html
    assert "No traffic seen yet" in html
    assert "Start Alpha" in html


def test_section__unknown_name__404(operator_client, rollout):
    assert operator_client.get(url("section", KEY, "nope")).status_code == 404


# --- percentage --------------------------------------------------------------------------------


def test_percentage__valid__saved_audited_and_triggers_refresh(operator_client, rollout):
    started(rollout)
    rollout = fresh(rollout)
    response = operator_client.post(
        url("set_percentage", KEY),
        {
            "percentage": "20",
            "simplified_percentage": "10",
            "reason": "beta",
            "revision": rollout.revision,
        },
        headers=HX,
    )
    assert response.status_code == 200
    assert changed_event(response)
    assert 'id="sec-percentage"' in response.content.decode()
    now = fresh(rollout)
    assert (now.percentage, now.simplified_percentage) == (20, 10)
    entry = AuditEntry.objects.latest("id")
    assert (entry.actor, entry.via, entry.reason) == ("alice", "web", "beta")
    assert entry.before["percentage"] == 5 and entry.after["percentage"] == 20


def test_percentage__stale_revision__409_with_who_changed_what(operator_client, rollout):
    stale = rollout.revision
    services.update_rollout(rollout, actor=services.Actor("dave"), reason="x", percentage=20)
    response = operator_client.post(
        url("set_percentage", KEY),
        {"percentage": "50", "simplified_percentage": "0", "reason": "r", "revision": stale},
        headers=HX,
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "dave changed the percentage to 20% (was 0%)" in html
    assert "retry" in html
    assert f'name="revision" value="{fresh(rollout).revision}"' in html
    assert fresh(rollout).percentage == 20


def test_percentage__out_of_range__422_naming_the_field(operator_client, rollout):
    response = operator_client.post(
        url("set_percentage", KEY),
        {
            "percentage": "101",
            "simplified_percentage": "0",
            "reason": "r",
            "revision": rollout.revision,
        },
        headers=HX,
    )
    assert response.status_code == 422
    assert "Percentage" in response.content.decode()
    assert fresh(rollout).percentage == 0


def test_percentage__missing_reason__422_and_unchanged(operator_client, rollout):
    response = operator_client.post(
        url("set_percentage", KEY),
        {
            "percentage": "10",
            "simplified_percentage": "0",
            "reason": "",
            "revision": rollout.revision,
        },
        headers=HX,
    )
    assert response.status_code == 422
    assert fresh(rollout).percentage == 0


def test_percentage__without_htmx__redirects_back_to_page(operator_client, rollout):
    response = operator_client.post(
        url("set_percentage", KEY),
        {
            "percentage": "10",
            "simplified_percentage": "0",
            "reason": "r",
            "revision": rollout.revision,
        },
    )
    assert response.status_code == 302 and response["Location"] == url("detail", KEY)
    assert fresh(rollout).percentage == 10


def test_preview__no_traffic__says_so(operator_client, rollout):
    started(rollout)
    response = operator_client.get(url("preview", KEY), {"percentage": "20"}, headers=HX)
    assert response.status_code == 200
    assert "No traffic seen yet" in response.content.decode()


def test_preview__bad_percentage__422(operator_client, rollout):
    response = operator_client.get(url("preview", KEY), {"percentage": "abc"}, headers=HX)
    assert response.status_code == 422


# --- phases and checklist ----------------------------------------------------------------------


def test_phase__start_alpha__enabled_at_5(operator_client, rollout):
    response = operator_client.post(
        url("move_phase", KEY),
        {"phase": "1", "reason": "go", "revision": rollout.revision},
        headers=HX,
    )
    assert response.status_code == 200 and changed_event(response)
    now = fresh(rollout)
    assert (now.current_phase.name, now.percentage, now.enabled) == ("Alpha", 5, True)


def test_phase__advance_before_watch_without_override__409_and_unchanged(operator_client, rollout):
    rollout = started(rollout)
    response = operator_client.post(
        url("move_phase", KEY),
        {"phase": "2", "reason": "go", "revision": rollout.revision},
        headers=HX,
    )
    assert response.status_code == 409
    assert "minimum watch" in response.content.decode()
    assert fresh(rollout).current_phase.name == "Alpha"


def test_phase__advance_with_override_reason__moves_and_audits_override(operator_client, rollout):
    rollout = started(rollout)
    response = operator_client.post(
        url("move_phase", KEY),
        {
            "phase": "2",
            "reason": "go",
            "gate_override_reason": "demo",
            "revision": rollout.revision,
        },
        headers=HX,
    )
    assert response.status_code == 200
    assert fresh(rollout).current_phase.name == "Beta"
    assert "gate override: demo" in AuditEntry.objects.latest("id").reason


def test_phase__timeline_shows_gate_problems_and_override_field(operator_client, rollout):
    started(rollout)
    html = operator_client.get(url("section", KEY, "timeline"), headers=HX).content.decode()
    assert "Not ready yet" in html and 'name="gate_override_reason"' in html


def test_phase__step_back__earlier_phase_percentage(operator_client, rollout):
    started(rollout)
    rollout = services.move_to_phase(
        rollout, phase=2, actor=SYSTEM, reason="r", gate_override_reason="t"
    )
    response = operator_client.post(
        url("move_phase", KEY),
        {"phase": "1", "reason": "quality", "revision": rollout.revision},
        headers=HX,
    )
    assert response.status_code == 200
    assert (fresh(rollout).current_phase.name, fresh(rollout).percentage) == ("Alpha", 5)


def test_hold__records_decision_without_changing_state(operator_client, rollout):
    rollout = started(rollout)
    response = operator_client.post(
        url("hold", KEY), {"reason": "more data", "revision": rollout.revision}, headers=HX
    )
    assert response.status_code == 200
    entry = AuditEntry.objects.latest("id")
    assert entry.after["decision"] == "hold" and entry.reason == "more data"
    assert fresh(rollout).revision == rollout.revision


def test_hold__not_started__422(operator_client, rollout):
    response = operator_client.post(
        url("hold", KEY), {"reason": "r", "revision": rollout.revision}, headers=HX
    )
    assert response.status_code == 422


def test_checklist__tick_and_clear__who_and_audit(operator_client, rollout):
    started(rollout)
    response = operator_client.post(
        url("tick", KEY), {"phase": "1", "item": "factual", "checked": "on"}, headers=HX
    )
    assert response.status_code == 200
    tick = ChecklistTick.objects.get()
    assert (tick.item, tick.checked_by) == ("factual", "alice")
    assert "alice" in response.content.decode()
    operator_client.post(url("tick", KEY), {"phase": "1", "item": "factual"}, headers=HX)
    assert not ChecklistTick.objects.exists()
    actions = list(
        AuditEntry.objects.filter(action="checklist.update").values_list("after", flat=True)
    )
    assert [a["checked"] for a in actions] == [False, True]


def test_checklist__all_ticked__gate_only_waits_for_watch(operator_client, rollout):
    started(rollout)
    for item in ITEM_KEYS:
        operator_client.post(
            url("tick", KEY), {"phase": "1", "item": item, "checked": "on"}, headers=HX
        )
    html = operator_client.get(url("section", KEY, "timeline"), headers=HX).content.decode()
    assert "unticked" not in html and "minimum watch" in html


def test_checklist__unknown_item__422(operator_client, rollout):
    started(rollout)
    response = operator_client.post(
        url("tick", KEY), {"phase": "1", "item": "nope", "checked": "on"}, headers=HX
    )
    assert response.status_code == 422
    assert not ChecklistTick.objects.exists()


# --- overrides and lookup ----------------------------------------------------------------------


def test_override__add__created_listed_and_audited(operator_client, rollout):
    response = operator_client.post(
        url("add_override", KEY),
        {
            "channel_id": "123456789012345678",
            "variant": "v2_full",
            "reason": "team",
            "revision": rollout.revision,
        },
        headers=HX,
    )
    assert response.status_code == 200 and changed_event(response)
    assert "123456789012345678" in response.content.decode()
    o = ChannelOverride.objects.get()
    assert (o.channel_id, o.variant, o.created_by) == ("123456789012345678", "v2_full", "alice")


def test_override__with_expiry__stored_as_utc(operator_client, rollout):
    operator_client.post(
        url("add_override", KEY),
        {
            "channel_id": "900000000000000009",
            "variant": "v1",
            "reason": "r",
            "revision": rollout.revision,
            "expires_at": "2099-01-02T03:04",
        },
        headers=HX,
    )
    assert ChannelOverride.objects.get().expires_at.isoformat() == "2099-01-02T03:04:00+00:00"


def test_override__bad_channel_id__422_naming_field(operator_client, rollout):
    response = operator_client.post(
        url("add_override", KEY),
        {"channel_id": "no spaces!", "variant": "v1", "reason": "r", "revision": rollout.revision},
        headers=HX,
    )
    assert response.status_code == 422
    assert "channel id" in response.content.decode()
    assert not ChannelOverride.objects.exists()


def test_override__unknown_variant__422(operator_client, rollout):
    response = operator_client.post(
        url("add_override", KEY),
        {
            "channel_id": "100000000000000001",
            "variant": "v9",
            "reason": "r",
            "revision": rollout.revision,
        },
        headers=HX,
    )
    assert response.status_code == 422


def test_override__stale_revision__409(operator_client, rollout):
    stale = rollout.revision
    services.update_rollout(rollout, actor=SYSTEM, reason="x", percentage=5)
    response = operator_client.post(
        url("add_override", KEY),
        {"channel_id": "100000000000000001", "variant": "v1", "reason": "r", "revision": stale},
        headers=HX,
    )
    assert response.status_code == 409
    assert not ChannelOverride.objects.exists()


def test_override__remove_with_prompt_reason__removed_and_audited(operator_client, rollout):
    services.set_override(rollout, "770000000000000077", variant="v1", actor=SYSTEM, reason="r")
    rollout = fresh(rollout)
    response = operator_client.post(
        url("remove_override", KEY, "770000000000000077"),
        {"revision": rollout.revision},
        headers={**HX, "HX-Prompt": "done testing"},
    )
    assert response.status_code == 200
    assert not ChannelOverride.objects.exists()
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.reason) == ("override.remove", "done testing")


def test_override__search__filters_rows(operator_client, rollout):
    for cid in ("111000000000000111", "222000000000000222"):
        services.set_override(rollout, cid, variant="v1", actor=SYSTEM, reason="r")
    html = operator_client.get(
        url("section", KEY, "overrides"), {"q": "22"}, headers=HX
    ).content.decode()
    assert "override-222000000000000222" in html and "override-111" not in html


def test_lookup__override__explains_who_and_why(operator_client, rollout):
    started(rollout)
    services.set_override(
        rollout, "550000000000000055", variant="v2_simplified", actor=SYSTEM, reason="vip"
    )
    html = operator_client.get(
        url("lookup", KEY), {"channel_id": "550000000000000055"}, headers=HX
    ).content.decode()
    assert "v2_simplified" in html and "override" in html and "vip" in html


def test_lookup__kill_switch__explains(operator_client, rollout):
    html = operator_client.get(
        url("lookup", KEY), {"channel_id": "550000000000000055"}, headers=HX
    ).content.decode()
    assert "kill switch is on" in html


def test_lookup__bad_channel__422(operator_client, rollout):
    response = operator_client.get(url("lookup", KEY), {"channel_id": "a b"}, headers=HX)
    assert response.status_code == 422
    assert "&#x27;a b&#x27; is not a channel id" in response.content.decode()


def test_lookup__empty_or_blank__asks_nothing_200(operator_client, rollout):
    for query in ({}, {"channel_id": "   "}):
        response = operator_client.get(url("lookup", KEY), query, headers=HX)
        assert response.status_code == 200
        assert "lookup-result" not in response.content.decode()


@pytest.mark.parametrize("query", ["", "?part=nope", "?part=banner&rollout=nope"])
def test_alerts__unknown_part_or_rollout__404(operator_client, rollout, query):
    assert operator_client.get(f"{url('alerts')}{query}", headers=HX).status_code == 404


def test_console_stamp__newest_audit_id__one_read__login_needed(viewer_client, rollout):
    """What the open console polls every 5 s (static/js/console.js): the newest audit id, with
    the session's reads and one more, and never cached."""
    started(rollout)
    with CaptureQueriesContext(connection) as queries:
        response = viewer_client.get(url("console_stamp"))
    assert response.status_code == 200
    newest = AuditEntry.objects.latest("id").pk
    assert response.json() == {"stamp": newest}
    assert response["X-Console-Stamp"] == str(newest)
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert sum("rollout_auditentry" in q["sql"] for q in queries.captured_queries) == 1
    assert len(queries.captured_queries) <= 3  # the session, the user, the stamp
    anonymous = Client().get(url("console_stamp"))
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


# --- emergency rollback and way back -------------------------------------------------------------


def test_rollback__post__kill_switch_on_audited_no_revision_needed(operator_client, rollout):
    started(rollout)
    response = operator_client.post(url("rollback", KEY), {"reason": "crashes"}, headers=HX)
    assert response.status_code == 204 and changed_event(response)
    assert fresh(rollout).enabled is False
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.actor, entry.reason) == ("kill_switch.engage", "alice", "crashes")


def test_rollback__without_js__confirm_page_then_redirect(operator_client, rollout):
    started(rollout)
    page = operator_client.get(url("rollback", KEY))
    assert page.status_code == 200 and "Roll back now" in page.content.decode()
    response = operator_client.post(url("rollback", KEY), {"reason": "crashes"})
    assert response.status_code == 302
    assert fresh(rollout).enabled is False


def test_rollback__no_reason__422_and_still_live(operator_client, rollout):
    started(rollout)
    response = operator_client.post(url("rollback", KEY), {"reason": " "}, headers=HX)
    assert response.status_code == 422
    assert fresh(rollout).enabled is True


def test_rollback__banner_on_every_page_with_who(operator_client, rollout):
    started(rollout)
    services.engage_kill_switch(rollout, actor=services.Actor("dave"), reason="bad")
    for path in (url("detail", KEY), url("audit"), url("tokens")):
        html = operator_client.get(path).content.decode()
        assert "Kill switch ON" in html and "by dave" in html and "Re-enable" in html, path


def test_reenable__chosen_percentage__live_again(operator_client, rollout):
    rollout = started(rollout)
    rollout = services.engage_kill_switch(rollout, actor=SYSTEM, reason="bad")
    response = operator_client.post(
        url("reenable", KEY),
        {"percentage": "5", "reason": "fixed", "revision": rollout.revision},
        headers=HX,
    )
    assert response.status_code == 200 and changed_event(response)
    now = fresh(rollout)
    assert (now.enabled, now.percentage) == (True, 5)
    assert "Kill switch ON" not in response.content.decode()


def test_reenable__stale_revision__409_still_off(operator_client, rollout):
    rollout = started(rollout)
    stale = rollout.revision
    services.engage_kill_switch(rollout, actor=SYSTEM, reason="bad")
    response = operator_client.post(
        url("reenable", KEY), {"percentage": "5", "reason": "fixed", "revision": stale}, headers=HX
    )
    assert response.status_code == 409
    assert fresh(rollout).enabled is False


def test_reenable__invalid_form__422_with_each_fields_errors_joined(operator_client, rollout):
    rollout = started(rollout)
    rollout = services.engage_kill_switch(rollout, actor=SYSTEM, reason="bad")
    response = operator_client.post(
        url("reenable", KEY), {"percentage": "500", "revision": rollout.revision}, headers=HX
    )
    assert response.status_code == 422
    assert (
        "Ensure this value is less than or equal to 100.; This field is required."
        in response.content.decode()
    )
    assert fresh(rollout).enabled is False


# --- audit log -----------------------------------------------------------------------------------


def test_audit_describe__checklist_rows__name_the_item_by_its_label_and_the_phase(rollout):
    from rollout.checklist import LABELS
    from selcontrol.console.templatetags.console import describe

    rollout = started(rollout)
    item = ITEM_KEYS[0]
    for checked in (True, False):
        services.tick_checklist_item(rollout, 1, item, actor=SYSTEM, checked=checked)
    cleared, ticked = AuditEntry.objects.filter(action=AuditEntry.Action.CHECKLIST).order_by("-id")
    phase = rollout.current_phase.name
    assert describe(ticked) == f"ticked “{LABELS[item]}” for {phase}"
    assert describe(cleared) == f"cleared “{LABELS[item]}” for {phase}"
    cleared.after = {}  # a row without an item or a phase: both read as None
    assert describe(cleared) == "cleared “None” for None"


def test_audit__filters_by_actor_and_kind(operator_client, rollout):
    services.update_rollout(rollout, actor=services.Actor("dave"), reason="a", percentage=5)
    services.set_override(
        rollout, "100000000000000001", variant="v1", actor=services.Actor("erin"), reason="b"
    )
    html = operator_client.get(url("audit"), {"actor": "erin"}, headers=HX).content.decode()
    assert "erin" in html and "dave" not in html
    html = operator_client.get(
        url("audit"), {"action": "rollout.update"}, headers=HX
    ).content.decode()
    assert "dave" in html and "erin" not in html


def test_audit__shows_before_and_after(operator_client, rollout):
    services.update_rollout(rollout, actor=services.Actor("dave"), reason="a", percentage=5)
    html = operator_client.get(url("audit")).content.decode()
    assert "<del>0</del> → <ins>5</ins>" in html


def test_audit__filter_by_rollout__excludes_token_rows(operator_client, rollout, make_token):
    make_token("config:read", name="botty")
    services.update_rollout(rollout, actor=SYSTEM, reason="a", percentage=5)
    html = operator_client.get(url("audit"), {"rollout": KEY}, headers=HX).content.decode()
    assert "botty" not in html and "percentage" in html


# --- API tokens ----------------------------------------------------------------------------------


def test_tokens__create__raw_shown_once_hash_stored(operator_client, db):
    response = operator_client.post(
        url("create_token"),
        {"name": "sel-bot", "scopes": ["config:read", "events:write"]},
        headers=HX,
    )
    assert response.status_code == 200
    raw = response.context["raw_token"]
    assert raw in response.content.decode()
    token = ApiToken.objects.get(name="sel-bot")
    assert token.token_hash == ApiToken.hash(raw) and token.scopes == [
        "config:read",
        "events:write",
    ]
    assert raw not in operator_client.get(url("tokens")).content.decode()


def test_tokens__created_token__works_against_api(operator_client, rollout):
    response = operator_client.post(
        url("create_token"), {"name": "b", "scopes": ["config:read"]}, headers=HX
    )
    raw = response.context["raw_token"]
    api = Client().get(
        f"/api/v1/rollouts/{KEY}/decide",
        {"channel_id": "1"},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert api.status_code == 200


def test_tokens__no_scope__422(operator_client, db):
    response = operator_client.post(url("create_token"), {"name": "x"}, headers=HX)
    assert response.status_code == 422
    assert not ApiToken.objects.exists()


def test_tokens__duplicate_name__error(operator_client, make_token):
    make_token("config:read", name="dup")
    response = operator_client.post(
        url("create_token"), {"name": "dup", "scopes": ["config:read"]}, headers=HX
    )
    assert response.status_code == 422
    assert "exists already" in response.content.decode()


def test_tokens__revoke__marked_revoked(operator_client, make_token):
    make_token("config:read", name="old")
    token = ApiToken.objects.get(name="old")
    response = operator_client.post(url("revoke_token", token.pk), headers=HX)
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in response.content.decode()


# --- the console stamp (rollout/freshness.py) --------------------------------------------------


def _stamps(html: str) -> dict[str, int]:
    return {
        m[0]: int(m[1]) for m in re.findall(r'id="([\w-]+)"[^>]*data-console-stamp="(\d+)"', html)
    }


def test_console_stamp__every_refreshing_fragment_carries_the_newest_audit_row(
    operator_client, rollout
):
    started(rollout)
    newest = AuditEntry.objects.latest("id").pk
    page = operator_client.get(f"/rollouts/{KEY}/").content.decode()
    stamps = _stamps(page)
    for part in (
        "sec-status",
        "sec-timeline",
        "sec-checklist",
        "sec-percentage",
        "sec-overrides",
        "banner",
        "emergency",
    ):
        assert stamps[part] == newest, part
    section = operator_client.get(f"/rollouts/{KEY}/sections/timeline/", headers=HX)
    assert _stamps(section.content.decode()) == {"sec-timeline": newest}
    for name in ("fleet", "fleet_srm"):
        fragment = operator_client.get(url(name, KEY), headers=HX).content.decode()
        assert set(_stamps(fragment).values()) == {newest}


def test_console_stamp__change_answers__carry_the_stamp_after_the_change(operator_client, rollout):
    started(rollout)
    before = AuditEntry.objects.latest("id").pk
    response = operator_client.post(
        url("tick", KEY), {"phase": "1", "item": "factual", "checked": "on"}, headers=HX
    )
    tick = AuditEntry.objects.latest("id").pk
    assert tick > before
    assert changed_event(response)
    assert response["X-Console-Stamp"] == str(tick)
    assert _stamps(response.content.decode()) == {"sec-checklist": tick}
    response = operator_client.post(url("rollback", KEY), {"reason": "crashes"}, headers=HX)
    assert response.status_code == 204
    assert response["X-Console-Stamp"] == str(AuditEntry.objects.latest("id").pk) != str(tick)


def test_console_stamp__a_refresh_answer__tells_its_stamp_without_the_change_event(
    operator_client, rollout, make_token
):
    """A change made elsewhere (here through the API) is news to a page when one of its
    sections refreshes (the status section every minute): its answer names the newer stamp,
    which console.js takes as a change to catch up with; no rollout-changed event."""
    started(rollout)
    before = AuditEntry.objects.latest("id").pk
    api = ApiClient(make_token("rollout:operate", "config:read"))
    answer = api.patch(f"/api/v1/rollouts/{KEY}", {"percentage": 12, "reason": "from chat-ops"})
    assert answer.status_code == 200, answer.content
    newest = AuditEntry.objects.latest("id").pk
    assert newest > before
    for path in (
        f"/rollouts/{KEY}/sections/status/",
        f"/rollouts/{KEY}/sections/percentage/",
        f"{url('alerts')}?part=banner&rollout={KEY}",
        f"{url('alerts')}?part=emergency",
    ):
        response = operator_client.get(path, headers=HX)
        assert response.status_code == 200, path
        assert response["X-Console-Stamp"] == str(newest), path
        assert "HX-Trigger" not in response, path


def test_console_stamp__a_read__is_taken_before_the_state_it_describes(operator_client, rollout):
    """A change committed while a fragment is drawn may make it look older (one more fetch),
    never newer: the stamp is read first."""
    started(rollout)
    for path in (
        f"/rollouts/{KEY}/",
        f"/rollouts/{KEY}/sections/percentage/",
        url("fleet", KEY),
        url("fleet_srm", KEY),
    ):
        with CaptureQueriesContext(connection) as queries:
            assert operator_client.get(path, headers=HX).status_code == 200
        sql = [q["sql"] for q in queries.captured_queries]
        stamp = next(i for i, q in enumerate(sql) if 'FROM "rollout_auditentry"' in q)
        state = next(i for i, q in enumerate(sql) if 'FROM "rollout_rollout"' in q)
        assert stamp < state, path
