"""The import graph of the app code holds the layout's rules (issue 17, items 1 to 3).

Every module of the app (selcontrol/, rollout/, metrics/, selcontrol_client/; migrations left
out) is parsed with ``ast``, and every import is an edge, at module level or inside a function
alike (a function-local import is a dependency that only shows later). The rules:

* data walks one way: ``rollout`` never imports ``metrics`` (metrics reads rollout);
* no import cycle among modules;
* no package folder holds more than 30% of the app's code lines (its own files, not its
  sub-packages): a folder that grows past that wants splitting by concept;
* templates hold the first rule too: no template of rollout's (``templates/rollout/``,
  ``rollout/templates/``) loads a metrics tag library or names a ``metrics:`` URL, and no rollout
  module names a template outside rollout's (the console's pages, which compose both domains,
  are in ``templates/console/``, rendered by ``selcontrol/console``).

Run as a script (``python tests/ops/test_import_graph.py``) it prints each folder's share.
"""

from __future__ import annotations

import ast
import re
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


TAG_LOAD = re.compile(r"{%-?\s*load\s+(.*?)\s*-?%}", re.S)
METRICS_URL = re.compile(r"""{%-?\s*url\s+["']metrics:""")


def tag_libraries(app: str) -> set[str]:
    """The names ``{% load %}`` takes for the app's template tag modules."""
    return {p.stem for p in (ROOT / app).rglob("templatetags/*.py") if p.stem != "__init__"}


def loaded_libraries(text: str) -> set[str]:
    """Every library a template loads: ``{% load a b %}`` and ``{% load x y from lib %}``."""
    names: set[str] = set()
    for body in TAG_LOAD.findall(text):
        words = body.split()
        names.update(words[-1:] if "from" in words else words)
    return names


def metrics_in_templates(folders: list[Path], libraries: set[str]) -> set[str]:
    """``path: what`` for every template in ``folders`` that loads one of ``libraries`` or
    names a metrics URL."""
    found = set()
    for folder in folders:
        for path in sorted(folder.rglob("*.html")) if folder.is_dir() else ():
            text = path.read_text(encoding="utf-8")
            for name in sorted(loaded_libraries(text) & libraries):
                found.add(f"{path.relative_to(folder.parent)}: loads {name}")
            if METRICS_URL.search(text):
                found.add(f"{path.relative_to(folder.parent)}: names a metrics: URL")
    return found


def template_names(path: Path) -> set[str]:
    """String constants in a module that name a template (end in .html)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    parts = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    for node in ast.walk(tree):
        if id(node) in parts:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.endswith(".html"):
                names.add(node.value)
        elif isinstance(node, ast.JoinedStr) and node.values:
            last = node.values[-1]
            if isinstance(last, ast.Constant) and str(last.value).endswith(".html"):
                first = node.values[0]
                names.add(first.value if isinstance(first, ast.Constant) else "{...}")
    return names


def test_rollout_templates__load_no_metrics_tag_library_and_name_no_metrics_url():
    folders = [ROOT / "templates" / "rollout", ROOT / "rollout" / "templates"]
    assert tag_libraries("metrics"), "metrics has template tags: the check has something to find"
    assert metrics_in_templates(folders, tag_libraries("metrics")) == set()


def test_rollout_modules__name_no_template_outside_rollouts_own():
    offenders = {
        f"{module}: {name}"
        for module, path in app_files().items()
        if module.split(".")[0] == "rollout"
        for name in template_names(path)
        if not name.startswith("rollout/")
    }
    assert not offenders, sorted(offenders)


def test_template_check__finds_a_metrics_library_loaded_among_others_or_by_from_and_a_url(
    tmp_path,
):
    """The checker itself: each way a template can reach metrics is found."""
    folder = tmp_path / "rollout"
    (folder / "partials").mkdir(parents=True)
    (folder / "a.html").write_text("{% load static guardrails %}{% guardrail_status r %}")
    (folder / "partials" / "b.html").write_text("{% load guardrail_status from guardrails %}")
    (folder / "c.html").write_text('<a href="{% url "metrics:projection" %}">')
    (folder / "d.html").write_text("{% load console static %}{% url 'rollout:index' %}")
    assert metrics_in_templates([folder, tmp_path / "absent"], {"guardrails"}) == {
        "rollout/a.html: loads guardrails",
        "rollout/partials/b.html: loads guardrails",
        "rollout/c.html: names a metrics: URL",
    }
    module = tmp_path / "views.py"
    module.write_text(
        'render(r, "console/detail.html")\nrender(r, f"rollout/partials/{name}.html")\n'
    )
    assert template_names(module) == {"console/detail.html", "rollout/partials/"}


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
