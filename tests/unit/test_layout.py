"""The dependency direction of the tree, read from the code's own imports.

Layers, lowest first: ``workers.settings`` ← ``workers.jobs`` (job machinery) ← ``workers.clients``
(outbound clients) ← the domains (``articles``, ``conversations``, ``contacts``) ←
``workers.tasks`` ← ``workers.ops`` (operator tools). A package may import its own layer's
package and any lower layer, never a higher one, and a domain never imports another domain. The
receiver (``app``) imports only the job machinery and settings: it enqueues by task name. Only the
sandbox itself and the operator tools that start it (``dev --sandbox``, ``send-test-webhook``)
import the sandbox; nothing in ``workers`` imports ``app``. No module imports itself back through
others (no cycles), lazy imports inside functions included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("workers.articles", "workers.conversations", "workers.contacts")
BELOW_DOMAINS = ("workers.settings", "workers.jobs", "workers.clients")

# package → the packages it may import (besides itself)
ALLOWED: dict[str, tuple[str, ...]] = {
    "workers.settings": (),
    "workers.jobs": ("workers.settings",),
    "workers.clients": ("workers.settings", "workers.jobs"),
    **{domain: BELOW_DOMAINS for domain in DOMAINS},
    "workers.tasks": (*BELOW_DOMAINS, *DOMAINS),
    "workers.sandbox": (*BELOW_DOMAINS, *DOMAINS),
    "workers.ops": (*BELOW_DOMAINS, *DOMAINS, "workers.tasks", "workers.sandbox"),
    "workers": ("workers.jobs",),  # the package face: ``celery -A workers`` finds the app there
    "app": ("workers.settings", "workers.jobs"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """The layer a module belongs to: the longest key of ``ALLOWED`` that names it or a parent."""
    best = None
    for package in ALLOWED:
        if (module == package or module.startswith(package + ".")) and (
            best is None or len(package) > len(best)
        ):
            best = package
    return best


def imports_of(path: Path, module: str) -> set[str]:
    """Every project module ``path`` imports, at any depth of the file (lazy imports count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("workers", "app")}


def project_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in ("app", "workers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            graph[module_name(path)] = imports_of(path, module_name(path))
    known = set(graph)
    # ``from workers.jobs import routing`` names a module; ``from x import name`` names x itself.
    return {mod: {name for name in names if name in known} - {mod} for mod, names in graph.items()}


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        source = package_of(module)
        if source is None:
            found.append(f"{module}: in no layer (add its package to ALLOWED)")
            continue
        for target in targets:
            dest = package_of(target)
            if dest is None or dest == source or target == "workers":
                continue
            if dest not in ALLOWED[source]:
                found.append(f"{module} imports {target}: {source} may not import {dest}")
    return sorted(found)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


# Package faces re-export their modules (``workers.contacts`` hands on its ``sources``):
# a module importing its own package's face is not a cycle worth reporting.
def without_face_edges(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    return {
        mod: {t for t in targets if not (mod.startswith(t + ".") or t.startswith(mod + "."))}
        for mod, targets in graph.items()
    }


def test_every_import_follows_the_layers() -> None:
    assert violations(project_imports()) == []


def test_no_import_cycles() -> None:
    assert cycles(without_face_edges(project_imports())) == []


def test_every_package_says_what_lives_there_and_what_it_may_import() -> None:
    for init in sorted((ROOT / "workers").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, f"{init.parent.name}/__init__.py has no docstring"
        assert "import" in doc.lower(), f"{init.parent.name}/__init__.py: what may it import?"


def test_the_root_of_workers_is_a_handful_of_names() -> None:
    modules = sorted(p.name for p in (ROOT / "workers").glob("*.py"))
    assert modules == ["__init__.py", "settings.py"]


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("workers.jobs.enqueue", "workers.articles.sync"),  # machinery importing a domain
        ("workers.clients.intercom", "workers.conversations.tagging"),
        ("workers.contacts.enrich", "workers.conversations.tagging"),  # domain → domain
        ("app.webhooks", "workers.clients.intercom"),  # receiver importing a client
        ("app.webhooks", "workers.sandbox.samples"),
        ("workers.articles.sync", "workers.sandbox.fake_intercom"),
        ("workers.jobs.logs", "app.webhooks"),
        ("workers.tasks.articles", "workers.ops.cli"),
    ],
)
def test_a_planted_wrong_import_is_caught(module: str, target: str) -> None:
    graph = {mod: set(targets) for mod, targets in project_imports().items()}
    graph[module].add(target)
    assert violations(graph) == [
        f"{module} imports {target}: {package_of(module)} may not import {package_of(target)}"
    ]


def test_a_planted_cycle_is_caught() -> None:
    graph = {mod: set(targets) for mod, targets in project_imports().items()}
    graph["workers.jobs.routing"].add("workers.jobs.enqueue")  # enqueue already imports routing
    assert ["workers.jobs.enqueue", "workers.jobs.routing"] in cycles(without_face_edges(graph))
