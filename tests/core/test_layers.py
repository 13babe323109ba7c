"""The house: imports flow one way down the layers, no import cycle, no module over 500 lines, and
the README's module map names exactly the tree.

Read from the source with `ast`, so every import counts: module level, inside functions (lazy) and
under ``if TYPE_CHECKING:``.  Services below `kbsearch.kb.KnowledgeBase` receive the small protocols
of `kbsearch._protocols` instead of importing it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kbsearch"

#: The modules that may import `kbsearch.kb`: the package's public names (resolved lazily), and the
#: front door's clients, which open a knowledge base themselves: the command line, the web app, and
#: `evaluate` (it builds a knowledge base from an evaluation archive and asks it questions).
FRONT_DOOR_CLIENTS = ("kbsearch", "kbsearch.cli", "kbsearch.evaluation", "kbsearch.web")

#: The layer of each unit (a top-level module or package of ``kbsearch``), lowest first: a module
#: imports only modules of its own unit or of a lower layer.  A new module or package gets a layer
#: here (the test below fails until it has one).
LAYERS: dict[str, int] = {
    # leaves
    "errors": 0, "_version": 0, "_text": 0, "_content_types": 0, "_memory": 0, "_workers": 0,
    "documents": 1, "config": 1, "_build_reports": 1,
    "_protocols": 2,  # what services need of a knowledge base: protocols only
    "storage": 3,  # versions on disk, SQLite / PostgreSQL, the usage log
    "index": 4,  # the only Whoosh importer
    "access": 5,  # what a caller may see (reads the index's terms)
    "search": 6,  # retrieval, re-ranking, sentence vectors, one opened version
    "peers": 7,  # escalations, notifications, routing
    "deflect": 8, "sources": 8,  # answering from the index; sources and the crawler
    "ops": 9,  # reindex, report, per-source admin
    "_kb_write": 10, "_kb_peers": 10, "kb": 11,  # the front door
    "evaluation": 12,  # builds knowledge bases and asks them
    "web": 13, "cli": 14,
    "__main__": 15, "": 15,  # "": the package's lazy public names
}

README = PACKAGE.parent / "README.md"
MAX_LINES = 500


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


def unit(module: str) -> str:
    """The layer unit of a module: its top-level module or package under ``kbsearch``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_sees_every_kind_of_import() -> None:
    """The check below is only as good as the graph: it holds module-level, lazy and type-only imports."""
    graph = import_graph()
    assert "kbsearch._kb_write" in graph["kbsearch.kb"]  # module level
    assert "kbsearch.ops.reindex" in graph["kbsearch.kb"]  # inside a method
    assert "kbsearch.deflect" in graph["kbsearch.kb"]  # "from . import deflect" inside a method
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


def test_every_unit_has_a_layer() -> None:
    units = {unit(m) for m in import_graph()}
    assert sorted(units - set(LAYERS)) == [], "give each new module or package a layer in LAYERS"
    assert sorted(set(LAYERS) - units) == [], "LAYERS names a unit that no longer exists"


def test_imports_flow_down_the_layers() -> None:
    """No module imports a module of a higher layer (or of another unit of its own layer)."""
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if unit(t) != unit(m) and LAYERS[unit(t)] >= LAYERS[unit(m)])
    assert upward == []


def test_the_layer_check_can_fail() -> None:
    assert LAYERS["index"] < LAYERS["search"] < LAYERS["deflect"] < LAYERS["kb"] < LAYERS["cli"]
    assert unit("kbsearch.sources.crawl.crawler") == "sources" and unit("kbsearch") == ""


def test_no_module_over_500_lines() -> None:
    long = sorted(f"{path.relative_to(PACKAGE.parent)}: {n}" for path in PACKAGE.rglob("*.py")
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES)
    assert long == [], f"split these along a real seam: {long}"


def module_map() -> list[str]:
    """The paths in the first column of the README's module map (section "How it works")."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## How it works", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(kbsearch/[^`]*)` \|", section, flags=re.MULTILINE)


def test_the_readme_module_map_matches_the_tree() -> None:
    """Each row of the map is a path that exists, and each top-level module and package has a row."""
    rows = module_map()
    assert len(rows) == len(set(rows)), "a path is listed twice"
    missing_paths = [r for r in rows if not (PACKAGE.parent / r).exists()]
    assert missing_paths == [], f"the README lists paths that do not exist: {missing_paths}"
    tops = {f"kbsearch/{p.name}" + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists())
            or (p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))}
    assert sorted(tops - set(rows)) == [], "add a row for each module and package to the README's module map"
