"""The import graph of the app code holds the layout's rules (issue 17, items 1 to 3).

Every module of the app (selcontrol/, rollout/, metrics/, selcontrol_client/; migrations left
out) is parsed with ``ast``, and every import is an edge, at module level or inside a function
alike (a function-local import is a dependency that only shows later). The rules:

* data walks one way: ``rollout`` never imports ``metrics`` (metrics reads rollout);
* no import cycle among modules;
* no package folder holds more than 30% of the app's code lines (its own files, not its
  sub-packages): a folder that grows past that wants splitting by concept.

Run as a script (``python tests/ops/test_import_graph.py``) it prints each folder's share.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("selcontrol", "rollout", "metrics", "selcontrol_client")
MAX_SHARE = 0.30


def app_files() -> dict[str, Path]:
    """Dotted module name -> file, for every app module (migrations left out)."""
    found = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The app modules ``module`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from package import submodule` imports the submodule, other names the source
            names = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def graph() -> dict[str, set[str]]:
    files = app_files()
    modules = set(files)
    return {module: imports_of(module, path, modules) for module, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def folder_lines() -> dict[str, int]:
    """Code lines (non-blank) per package folder, its own files only."""
    lines: dict[str, int] = defaultdict(int)
    for path in app_files().values():
        folder = path.parent.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        lines[folder] += sum(1 for line in text.splitlines() if line.strip())
    return dict(lines)


def test_rollout__never_imports_metrics_at_module_level_or_inside_a_function():
    offenders = {
        f"{module} -> {target}"
        for module, targets in graph().items()
        if module.split(".")[0] == "rollout"
        for target in targets
        if target.split(".")[0] == "metrics"
    }
    assert not offenders, sorted(offenders)


def test_app_modules__import_each_other_without_any_cycle():
    assert cycles(graph()) == []


def test_package_folders__none_holds_more_than_thirty_percent_of_the_app_code():
    lines = folder_lines()
    total = sum(lines.values())
    over = {folder: round(n / total, 3) for folder, n in lines.items() if n > MAX_SHARE * total}
    assert not over, over


def test_import_graph__sees_function_local_imports_and_relative_submodules(tmp_path):
    """The checker itself: a cycle made only of function-local relative imports is found."""
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    modules = {"pkg.a", "pkg.b"}
    edges = {
        "pkg.a": imports_of("pkg.a", tmp_path / "a.py", modules),
        "pkg.b": imports_of("pkg.b", tmp_path / "b.py", modules),
    }
    assert edges == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(edges) == [["pkg.a", "pkg.b"]]


if __name__ == "__main__":
    shares = folder_lines()
    total = sum(shares.values())
    for folder, n in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"{folder:40} {n:6} {n / total:6.1%}")
    print(f"{'total':40} {total:6}")
    for component in cycles(graph()):
        print("cycle:", " ".join(component))
    for module, targets in sorted(graph().items()):
        for target in sorted(targets):
            if module.startswith("rollout") and target.startswith("metrics"):
                print("rollout -> metrics:", module, "->", target)
