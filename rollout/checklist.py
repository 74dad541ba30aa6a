"""The deployment guide's testing checklist, ticked per phase before advancing."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Phase, Rollout

# (key, label, what to look for) in the guide's order.
ITEMS: list[tuple[str, str, str]] = [
    ("factual", "Factual technical question", 'e.g. "How does DNS work?"'),
    ("unknown", "Unknown topic question", "should admit uncertainty"),
    ("structured", "Structured output request", 'e.g. "List the differences between X and Y"'),
    ("casual", "Casual conversation", "should maintain personality"),
    ("debugging", "Serious debugging request", "should show empathy + help"),
    ("followup", "Follow-up referencing prior context", "should maintain consistency"),
]
ITEM_KEYS = [key for key, _, _ in ITEMS]
LABELS = {key: label for key, label, _ in ITEMS}


def unchecked_items(rollout: Rollout, phase: Phase | None) -> list[str]:
    """Labels of the checklist items not yet ticked for ``phase`` (all of them if none)."""
    if phase is None:
        return []
    ticked = set(phase.checklist_ticks.values_list("item", flat=True))
    return [LABELS[key] for key in ITEM_KEYS if key not in ticked]
