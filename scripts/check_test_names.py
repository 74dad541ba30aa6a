#!/usr/bin/env python3
"""Check that every test's name reads as a sentence about behaviour (run by `make lint`).

The house style is ``test_<subject>__<what happens>`` (e.g.
``test_kill_switch__off_needs_a_percentage_and_a_reason``): the double underscore separates what
is exercised from what must hold. A name without it must still be a sentence of at least four
words (``test_every_route_is_classified``). Names like ``test_views`` or ``test_it_works2`` say
nothing when they fail in CI, so they are refused, with the file and line to fix.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MIN_WORDS = 4


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        name = node.name
        if not name.startswith("test_"):
            continue
        words = [w for w in name.removeprefix("test_").split("_") if w]
        if "__" in name.removeprefix("test_"):
            subject, _, behaviour = name.removeprefix("test_").partition("__")
            if subject.strip("_") and len([w for w in behaviour.split("_") if w]) >= 2:
                continue
            found.append(
                f"{path}:{node.lineno}: {name}: say what must hold after '__' (two words or more)"
            )
        elif len(words) < MIN_WORDS:
            found.append(
                f"{path}:{node.lineno}: {name}: name the behaviour, e.g. test_<subject>__<what "
                "happens>"
            )
    return found


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("tests")]
    found = [p for root in roots for f in sorted(root.rglob("test_*.py")) for p in problems(f)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} test name(s) do not read as a sentence.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
