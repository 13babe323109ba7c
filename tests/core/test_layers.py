"""Imports flow one way: no import cycle in ``kbsearch/`` and nothing below the front door imports it.

Read from the source with `ast`, so every import counts: module level, inside functions (lazy) and
under ``if TYPE_CHECKING:``.  Services below `kbsearch.kb.KnowledgeBase` receive the small protocols
of `kbsearch._protocols` instead of importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kbsearch"

#: The modules that may import `kbsearch.kb`: the package's public names (resolved lazily), and the
#: front door's clients, which open a knowledge base themselves: the command line, the web app, and
#: `evaluate` (it builds a knowledge base from an evaluation archive and asks it questions).
FRONT_DOOR_CLIENTS = ("kbsearch", "kbsearch.cli", "kbsearch.cli._common", "kbsearch.evaluation.evaluate", "kbsearch.web")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The kbsearch modules an import statement loads (a name imported from a package may be a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
    out = []
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the kbsearch modules it imports anywhere in its source."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(name, path.name == "__init__.py", node, known)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_every_kind_of_import() -> None:
    """The check below is only as good as the graph: it holds module-level, lazy and type-only imports."""
    graph = import_graph()
    assert "kbsearch._kb_write" in graph["kbsearch.kb"]  # module level
    assert "kbsearch.ops.reindex" in graph["kbsearch.kb"]  # inside a method
    assert "kbsearch._protocols" in graph["kbsearch.sources.crawl.crawler"]  # under TYPE_CHECKING
    assert "kbsearch.sources" in graph["kbsearch.sources.jsonl"]  # "from . import Progress"
    assert "kbsearch.cli._crawl" in graph["kbsearch.cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_nothing_below_the_front_door_imports_it() -> None:
    importers = sorted(m for m, targets in import_graph().items() if "kbsearch.kb" in targets)
    below = [m for m in importers
             if not any(m == c or m.startswith(c + ".") for c in FRONT_DOOR_CLIENTS)]
    assert below == [], f"import kbsearch._protocols, not kbsearch.kb, in {below}"


def test_the_front_door_satisfies_the_protocols() -> None:
    """`KnowledgeBase` has every member the protocols name (what the services call on it)."""
    from kbsearch import _kb_write, _protocols
    from kbsearch.ops import report
    from kbsearch.kb import KnowledgeBase
    from kbsearch.sources.escalations import PeerStoreOwner

    protocols = [_protocols.DocumentStore, _protocols.Rebuildable, _protocols.DocumentReader,
                 _protocols.AnswerIndex, PeerStoreOwner, report.ReportSource, _kb_write.FrontDoor]
    instance_attributes = {"root", "settings"}  # set in __init__
    for proto in protocols:
        members = {n for klass in proto.__mro__ if klass.__module__.startswith("kbsearch")
                   for n in (*(n for n, v in vars(klass).items() if callable(v) or isinstance(v, property)),
                             *vars(klass).get("__annotations__", {}))
                   if not n.startswith("__")}
        assert members, proto
        missing = sorted(n for n in members if n not in instance_attributes and not hasattr(KnowledgeBase, n))
        assert missing == [], f"{proto.__name__}: KnowledgeBase lacks {missing}"
