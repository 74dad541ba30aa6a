"""The services the console added to rollout.services: checklist ticks, hold, and the revision
check on override changes."""

from __future__ import annotations

import pytest

from rollout import services
from rollout.models import AuditEntry, ChannelOverride, ChecklistTick, Phase, Rollout
from tests.conftest import SYSTEM

ALICE = services.Actor("alice")


def started(rollout: Rollout) -> Rollout:
    return services.move_to_phase(rollout, phase=1, actor=SYSTEM, reason="start")


def test_tick__ticked__records_who_and_audits(rollout):
    tick = services.tick_checklist_item(rollout, 1, "factual", actor=ALICE, checked=True)
    assert (tick.item, tick.checked_by, tick.phase.name) == ("factual", "alice", "Alpha")
    entry = AuditEntry.objects.get(action="checklist.update")
    assert (entry.before["checked"], entry.after["checked"], entry.actor) == (False, True, "alice")


def test_tick__already_ticked__no_op_without_audit(rollout):
    services.tick_checklist_item(rollout, 1, "factual", actor=ALICE, checked=True)
    services.tick_checklist_item(rollout, 1, "factual", actor=SYSTEM, checked=True)
    assert ChecklistTick.objects.get().checked_by == "alice"
    assert AuditEntry.objects.filter(action="checklist.update").count() == 1


def test_tick__cleared__removed_and_audited(rollout):
    services.tick_checklist_item(rollout, 1, "factual", actor=ALICE, checked=True)
    assert services.tick_checklist_item(rollout, 1, "factual", actor=ALICE, checked=False) is None
    assert not ChecklistTick.objects.exists()
    assert AuditEntry.objects.filter(action="checklist.update").count() == 2


def test_tick__does_not_bump_the_config_revision(rollout):
    before = rollout.revision
    services.tick_checklist_item(rollout, 1, "factual", actor=ALICE, checked=True)
    assert Rollout.objects.get(pk=rollout.pk).revision == before


def test_tick__unknown_item__invalid(rollout):
    with pytest.raises(services.InvalidChange, match="item must be one of"):
        services.tick_checklist_item(rollout, 1, "nope", actor=ALICE, checked=True)


def test_tick__phase_of_another_rollout__invalid(rollout):
    other = Rollout.objects.create(key="other", name="Other")
    phase = Phase.objects.create(
        rollout=other, order=1, name="A", percentage=5, min_watch="1:00:00"
    )
    with pytest.raises(services.InvalidChange, match="another rollout"):
        services.tick_checklist_item(rollout, phase, "factual", actor=ALICE, checked=True)


def test_tick__all_items__clears_the_checklist_gate(rollout):
    from rollout.checklist import ITEM_KEYS

    rollout = started(rollout)
    for item in ITEM_KEYS:
        services.tick_checklist_item(rollout, 1, item, actor=ALICE, checked=True)
    problems = services.phase_gate_problems(rollout, rollout.next_phase())
    assert not any("checklist" in p for p in problems)


def test_hold__audits_decision_and_changes_nothing(rollout):
    rollout = started(rollout)
    entry = services.hold_phase(
        rollout, actor=ALICE, reason="more data", expected_revision=rollout.revision
    )
    assert entry.after["decision"] == "hold" and entry.before["phase"] == "Alpha"
    assert Rollout.objects.get(pk=rollout.pk).revision == rollout.revision


def test_hold__stale_revision__conflict(rollout):
    rollout = started(rollout)
    with pytest.raises(services.Conflict):
        services.hold_phase(
            rollout, actor=ALICE, reason="r", expected_revision=rollout.revision - 1
        )


def test_hold__without_reason__invalid(rollout):
    rollout = started(rollout)
    with pytest.raises(services.InvalidChange, match="reason"):
        services.hold_phase(rollout, actor=ALICE, reason=" ")


def test_set_override__stale_revision__conflict_nothing_written(rollout):
    stale = rollout.revision
    services.update_rollout(rollout, actor=SYSTEM, reason="r", percentage=5)
    with pytest.raises(services.Conflict):
        services.set_override(
            rollout, "1", variant="v1", actor=ALICE, reason="r", expected_revision=stale
        )
    assert not ChannelOverride.objects.exists()


def test_remove_override__stale_revision__conflict_override_kept(rollout):
    services.set_override(rollout, "100000000000000001", variant="v1", actor=SYSTEM, reason="r")
    stale = Rollout.objects.get(pk=rollout.pk).revision - 1
    with pytest.raises(services.Conflict):
        services.remove_override(
            rollout, "100000000000000001", actor=ALICE, reason="r", expected_revision=stale
        )
    assert ChannelOverride.objects.filter(channel_id="100000000000000001").exists()
