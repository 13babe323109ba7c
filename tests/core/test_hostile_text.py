"""Issue 21, item 7: text that should be refused is refused, and what is shown cannot drive a terminal.

Documents need a title (and a page a text) that is not empty once control characters are removed,
refused by ``index add`` and ``import jsonl`` with the line named; the CLI never prints a question's
or a document's escape sequences raw (``--json`` included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbsearch import Document, InvalidDocumentError, KnowledgeBase
from kbsearch.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Clear screen, set the window title, an 8-bit CSI, a bidi override, a line separator.
EVIL = "\x1b[2J\x1b]0;pwned\x07 \x9b31m \u202e \u2028"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2028")


def write_jsonl(path: Path, *docs: dict) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("bad, message", [
    ({"id": "b", "title": "", "text": "A body about printers."}, "title: required, must not be empty"),
    ({"id": "b", "title": "\u0000\u0000", "text": "A body about printers."}, "title: required, must not be empty"),
    ({"id": "b", "title": "Printers", "text": " \t\x00 "}, "text: required, must not be empty"),
])
def test_index_add_refuses_a_blank_title_or_text_naming_the_line(runner, tmp_path, bad, message):
    path = write_jsonl(tmp_path / "docs.jsonl", {"id": "a", "title": "Fine", "text": "A fine document."}, bad)
    result = runner.invoke(main, ["index", "add", str(path), "--index", str(tmp_path / "kb")])
    assert result.exit_code == 1
    assert f"error: {path}:2: {message}" in result.output, result.output
    assert "added" not in result.output


def test_import_jsonl_reports_the_line_and_imports_the_rest(runner, tmp_path):
    path = write_jsonl(tmp_path / "faq.jsonl", {"id": "a", "kind": "answer", "title": "How do I book a desk?",
                                                "text": "In the desk booking app."},
                       {"id": "b", "kind": "answer", "title": "", "text": "Orphan answer."})
    result = runner.invoke(main, ["import", "jsonl", str(path), "--index", str(tmp_path / "kb")])
    assert result.exit_code == 1
    assert "1 added" in result.output and "1 failed" in result.output
    assert "failed faq.jsonl:2: title: required, must not be empty" in result.output
    with KnowledgeBase.open(tmp_path / "kb", create=False) as kb:
        assert kb.get("a") is not None and kb.get("b") is None


def test_archive_answers_without_text_still_import():
    """The eval archives (clinc150: every thread) hold questions without recorded answers."""
    doc = Document.from_dict({"id": "t", "title": "what is my balance", "questions": ["balance please"],
                              "answer": "", "group": "g"})
    assert doc.kind == "answer" and doc.text == ""
    with pytest.raises(InvalidDocumentError, match="title"):
        Document.from_dict({"id": "t", "title": "\x00", "answer": "", "group": "g"})


def test_library_add_refuses_a_blank_title_naming_the_document(tmp_path):
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        with pytest.raises(InvalidDocumentError, match=r"document 'x': title: required"):
            kb.add([Document(id="x", title="\x00", text="body")])
        with pytest.raises(InvalidDocumentError, match=r"document 'y': title: required"):
            kb.rebuild(iter([Document(id="y", title="  ", text="body", questions=("q",))]))


def test_cli_escalations_shows_stored_escape_sequences_neutralised(runner, tmp_path):
    index = tmp_path / "kb"
    with KnowledgeBase.open(index) as kb:
        # Stored as-is (as before questions were cleaned, or written by another tool): the listing must cope.
        esc = kb.peers.store.create(f"printer {EVIL} jams", group="general", user="eve", note="", routing={},
                                    decision=None, seen=[], attachments=[], notify=lambda e: [])
        kb.answer(esc.id, "Pull the green lever.", by="ivan")
    for args in (["escalations"], ["escalations", esc.id]):
        result = runner.invoke(main, [*args, "--index", str(index)])
        assert result.exit_code == 0, result.output
        assert not any(ch in result.output for ch in RAW), repr(result.output)
        assert "printer \\x1b[2J\\x1b]0;pwned\\x07" in result.output
    result = runner.invoke(main, ["escalations", esc.id, "--json", "--index", str(index)])
    assert not any(ch in result.output for ch in RAW), repr(result.output)
    assert json.loads(result.output)["question"] == f"printer {EVIL} jams"  # the JSON still says exactly what is stored


def test_cli_search_shows_document_escape_sequences_neutralised(runner, tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl",
                       {"id": "evil", "title": f"Printer {EVIL} help", "text": f"Printer toner {EVIL} replacement guide.",
                        "url": "https://intranet.example/p\x1b[2J"},
                       {"id": "fine", "title": "Canteen menu", "text": "Soup of the day."})
    index = str(tmp_path / "kb")
    assert runner.invoke(main, ["index", "add", str(path), "--index", index]).exit_code == 0
    for extra in ([], ["--json"]):
        result = runner.invoke(main, ["search", "printer toner", "--index", index, *extra])
        assert result.exit_code == 0 and "Printer" in result.output
        assert not any(ch in result.output for ch in RAW), repr(result.output)
    assert json.loads(result.output)[0]["title"] == f"Printer {EVIL} help"


def test_cli_error_line_is_neutralised(runner, tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", {"id": "a", "title": "T", "text": "x", "\x1b]0;pwned\x07": 1})
    result = runner.invoke(main, ["index", "add", str(path), "--index", str(tmp_path / "kb")])
    assert result.exit_code == 1 and "unknown field" in result.output
    assert not any(ch in result.output for ch in RAW), repr(result.output)


def test_text_helpers():
    from kbsearch._text import clean_text, json_safe, terminal_safe

    assert clean_text("\x00\x00") == "" and clean_text(" a\r\nb\x1bc\ud800 ") == "a\nb c"
    assert clean_text("ｆｕｌｌ ｗｉｄｔｈ") == "full width"
    assert terminal_safe("a\x1b[2Jb\nc") == "a\\x1b[2Jb c" and terminal_safe("a\nb", multiline=True) == "a\nb"
    dumped = json.dumps({"k": EVIL + "\U000e0001"}, ensure_ascii=False, indent=2)
    assert json.loads(json_safe(dumped)) == json.loads(dumped)
    assert not any(ch in json_safe(dumped) for ch in RAW)
