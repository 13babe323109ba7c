"""SIGKILL at named points of every write path leaves the previous version serving.

Each case copies one prepared knowledge base, runs a real write (add, a refitting add, delete, a peer
answer, verify, outdated, rebuild, reindex) in a subprocess that kills itself with SIGKILL at a
checkpoint (`kbsearch.storage._faults`), then checks in this process that search and ask give the
pre-crash results, that the next write works, and that clean-up left only complete versions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kbsearch import Document, KnowledgeBase, read_jsonl
from kbsearch.search import _generations as gens
from kbsearch.peers.service import answer_doc_id
from kbsearch.storage._faults import ENV

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
QUESTIONS = ["How do I order lunch from the cafeteria menu?", "The badge reader at gate B beeps red",
             "How long are backups of the shared drive kept?", "How do I connect to the VPN from home?"]

WRITER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from kbsearch import Document, KnowledgeBase
    from kbsearch.peers.service import answer_doc_id
    root, op, info = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    kb = KnowledgeBase.open(root, create=False)
    if op == "add":
        kb.add([Document(id="new-lunch", title="Cafeteria lunch menu", text="Order lunch from the cafeteria menu.")])
    elif op == "add-refit":  # the index more than doubles: its models are refitted with the add
        kb.add([Document(id=f"grow{i}", title=f"Cafeteria menu item {i}", text=f"lunch dish number {i} of the cafeteria")
                for i in range(2 * info["documents"] + 2)])
    elif op == "delete":
        kb.delete([info["delete"]])
    elif op == "answer":
        kb.answer(info["open"], "Badges expire yearly; renew yours at the front desk.")
    elif op == "verify":
        kb.review_answer(info["answered"], verified=True)
    elif op == "outdated":
        kb.mark_outdated(answer_doc_id(info["answered"]))
    elif op == "rebuild":
        kb.rebuild(kb.documents())
    elif op == "reindex":
        report = kb.reindex(info["crawlers"])
        assert report.build and "skipped" not in report.build, report.to_dict()
    print("finished", flush=True)
""")

# (write, checkpoint): 22 kills, at least two on every write path.
CASES = [
    ("add", "add.committed"), ("add", "add.before-switch"),
    ("add-refit", "refit.model-saved"), ("add-refit", "deflect.model-arrays-written"),
    ("add-refit", "refit.after-build"), ("add-refit", "add.before-switch"),
    ("delete", "delete.committed"), ("delete", "delete.before-switch"),
    ("answer", "add.committed"), ("answer", "add.before-switch"),
    ("verify", "add.committed"), ("verify", "add.before-switch"),
    ("outdated", "add.committed"), ("outdated", "add.before-switch"),
    ("rebuild", "rebuild.indexed"), ("rebuild", "deflect.model-arrays-written"),
    ("rebuild", "rebuild.after-build"), ("rebuild", "rebuild.before-switch"),
    ("reindex", "add.committed"), ("reindex", "rebuild.before-switch"),
    ("add", "add.vectors"), ("rebuild", "rebuild.vectors"),
]


def _observe(kb: KnowledgeBase) -> dict[str, Any]:
    """What a user sees: the top search hits and the deflection decision for each question."""
    out: dict[str, Any] = {}
    for question, decision in zip(QUESTIONS, kb.ask_many(QUESTIONS, groups=None)):
        out[question] = {"hits": [h.id for h in kb.search(question, limit=5)],
                         "action": decision.action.value, "answers": [a.id for a in decision.answers]}
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A knowledge base with pages, answers and two escalations (one answered), its sources, and what
    it answers before any crash."""
    base = tmp_path_factory.mktemp("crash")
    root = base / "kb"
    docs = [*read_jsonl(EXAMPLES / "intranet.jsonl"), *read_jsonl(EXAMPLES / "answers.jsonl")]
    with KnowledgeBase.open(root) as kb:
        kb.rebuild(docs)
        answered = kb.escalate("How long are backups of the shared drive kept?", deliver=False)
        kb.answer(answered.id, "Backups of the shared drive are kept for 30 days.")
        pending = kb.escalate("The badge reader at gate B beeps red", deliver=False)
        observed = _observe(kb)
        documents = len(kb.ids())
    crawlers = base / "crawlers"
    crawlers.mkdir()
    changed = [d.replace(text=d.text + " Updated for the reindex.") if i == 0 else d
               for i, d in enumerate(read_jsonl(EXAMPLES / "intranet.jsonl"))]
    with (base / "intranet.jsonl").open("w", encoding="utf-8") as out:
        for doc in changed:
            out.write(json.dumps(doc.to_dict()) + "\n")
    (crawlers / "intranet.toml").write_text(f'type = "jsonl"\npath = "{base / "intranet.jsonl"}"\n', encoding="utf-8")
    info = {"documents": documents, "delete": docs[0].id, "changed": changed[0].id, "open": pending.id, "answered": answered.id,
            "crawlers": str(crawlers)}
    return root, info, observed


def _complete_versions_only(root: Path) -> list[Path]:
    versions = sorted(p for p in root.glob(gens.PREFIX + "*") if p.is_dir())
    assert versions and all(gens.is_complete(p) for p in versions), [p.name for p in versions]
    return versions


@pytest.mark.parametrize(("op", "point"), CASES, ids=[f"{op}-at-{point}" for op, point in CASES])
def test_sigkill_during_a_write_leaves_the_previous_version_serving(
        prepared: tuple[Path, dict[str, Any], dict[str, Any]], tmp_path: Path, op: str, point: str) -> None:
    source, info, observed = prepared
    root = tmp_path / "kb"
    shutil.copytree(source, root)
    live = gens.current_generation(root)
    env = {**os.environ, ENV: point}
    proc = subprocess.run([sys.executable, "-c", WRITER, str(root), op, json.dumps(info)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, f"never reached {point}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    synced = op == "reindex" and point.startswith("rebuild")  # the sync's own versions were published
    assert (gens.current_generation(root) == live) != synced
    with KnowledgeBase.open(root, create=False) as kb:  # a fresh process would do the same
        if synced:  # the version the sync published serves (the half-built rebuild does not)
            assert kb.get(info["changed"]).text.endswith("Updated for the reindex.")
            assert len(_observe(kb)) == len(QUESTIONS)
        else:
            assert _observe(kb) == observed
        assert kb.get("new-lunch") is None and kb.get("grow0") is None
        if op == "answer":  # stored but not indexed: the delivery run indexes it
            assert kb.peers.index_pending() == 1
            assert kb.get(answer_doc_id(info["open"])) is not None
        kb.add([Document(id="after-crash", title="Parking permits", text="Parking permits are renewed in May.")])
        assert kb.search("parking permits renewed")[0].id == "after-crash"
        versions = _complete_versions_only(root)
        assert kb.generation_path in versions and len(versions) <= kb.settings.index.keep_generations
