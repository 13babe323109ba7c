"""A reindex costs what changed (an unchanged one rebuilds nothing), and ``index add --rebuild``
keeps the peer answers the escalation store holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kbsearch import Document, KnowledgeBase, Settings, read_jsonl

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def _sources(tmp_path: Path, docs: list[Document]) -> Path:
    data = tmp_path / "intranet.jsonl"
    data.write_text("".join(json.dumps(d.to_dict()) + "\n" for d in docs), encoding="utf-8")
    crawlers = tmp_path / "crawlers"
    crawlers.mkdir(exist_ok=True)
    (crawlers / "intranet.toml").write_text(f'type = "jsonl"\npath = "{data}"\n', encoding="utf-8")
    return crawlers


def test_an_unchanged_reindex_skips_the_rebuild_and_a_change_does_not(kb: KnowledgeBase, tmp_path: Path) -> None:
    docs = list(read_jsonl(EXAMPLES / "intranet.jsonl"))
    crawlers = _sources(tmp_path, docs)
    first = kb.reindex(crawlers)
    assert first.exit_code == 0 and "skipped" not in first.build
    built = kb.generation_path

    again = kb.reindex(crawlers)
    assert again.exit_code == 0 and again.build["skipped"] == "nothing changed"
    assert kb.generation_path == built and again.build["documents"] == len(docs)

    _sources(tmp_path, [docs[0].replace(text=docs[0].text + " Now on floor 3."), *docs[1:]])
    changed = kb.reindex(crawlers)
    assert "skipped" not in changed.build and kb.generation_path != built
    assert kb.reindex(crawlers).build.get("skipped") == "nothing changed"

    kb.add([Document(id="peer-1", kind="answer", title="Where do I park?", text="Garage C.")])
    assert "skipped" not in kb.reindex(crawlers).build  # a document written since the last build

    decision = kb.ask("Where can I find the printer toner?")
    kb.feedback(decision.id, helpful=True)
    assert "skipped" not in kb.reindex(crawlers).build  # feedback the calibration has not seen

    assert kb.reindex(crawlers, full=True).build.get("skipped") is None  # --full always rebuilds


def test_changed_model_settings_rebuild(tmp_path: Path) -> None:
    crawlers = _sources(tmp_path, list(read_jsonl(EXAMPLES / "intranet.jsonl")))
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.reindex(crawlers)
        assert kb.reindex(crawlers).build.get("skipped")
    settings = Settings.load(config_file=None, env={})
    settings.deflect.target_precision = 0.8 if settings.deflect.target_precision != 0.8 else 0.85
    with KnowledgeBase.open(tmp_path / "kb", settings=settings) as kb:
        assert "skipped" not in kb.reindex(crawlers).build


def test_index_add_rebuild_keeps_the_peer_answers(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as kb:
        kb.add(list(read_jsonl(EXAMPLES / "intranet.jsonl")))
        badge = kb.escalate("The badge reader at gate B beeps red", deliver=False)
        kb.answer(badge.id, "Badges expire yearly; renew yours at the front desk.")
        backup = kb.escalate("How long are backups of the shared drive kept?", deliver=False)
        kb.answer(backup.id, "Backups of the shared drive are kept for 30 days.")
        answers = sorted(kb.ids(source="escalations"))
        assert len(answers) == 2
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "p1", "title": "Parking permits", "text": "Renewed every May."}) + "\n",
                     encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", "from kbsearch.cli import main; main()", "index", "add",
                          "--rebuild", str(other), "--index", str(root), "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["answers_kept"] == 2
    with KnowledgeBase.open(root, create=False) as kb:
        assert sorted(kb.ids(source="escalations")) == answers and kb.get("p1") is not None
        assert kb.search("badge reader gate B beeps red")[0].id in answers
        assert kb.search("backups shared drive kept")[0].id in answers
        assert all(kb.escalation(e).indexed for e in (badge.id, backup.id))  # the store is still right
