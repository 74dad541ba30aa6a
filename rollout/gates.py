"""Gates other apps add to the phase gate, without the rollout domain importing them.

``rollout.services.phase_gate_problems`` lists what stands between a rollout and the next phase
(the minimum watch, the testing checklist, an off-plan percentage) and then asks every gate
registered here. The metrics app registers its success criteria (``metrics.guardrails.criteria``)
in its AppConfig, so every way a phase moves forward (console, API, shell) is gated the same way
while ``metrics`` may read ``rollout`` and never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Gate = Callable[..., list[str]]  # gate(rollout, target_phase, now) -> problems
_gates: dict[str, Gate] = {}


def register(name: str, gate: Gate) -> None:
    """Add (or replace) a gate under ``name``; called from an AppConfig.ready()."""
    _gates[name] = gate


def problems(rollout, target, now: datetime | None = None) -> list[str]:
    """Every registered gate's problems for moving ``rollout`` to ``target``, in order."""
    out: list[str] = []
    for gate in _gates.values():
        out.extend(gate(rollout, target, now))
    return out
