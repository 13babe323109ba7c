"""Deletes since the rebuild: the answer model keeps what it was fitted on, the decisions must not.

Found by trying the demo as a new user: after `index delete`, an answer written next was never a
candidate (the count of documents was what the model knew), and a page lost to the deleted answer's
ghost in every margin.
"""

from __future__ import annotations

from pathlib import Path

from kbsearch import Document, KnowledgeBase, Settings, read_jsonl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PAGE = "page:maint/compressor#c40-alarms"


def _kb(path: Path, docs: list[Document]) -> KnowledgeBase:
    kb = KnowledgeBase.open(settings=Settings.load(env={}, index_path=path))
    kb.rebuild(docs)
    return kb


def _examples() -> list[Document]:
    return [*read_jsonl(EXAMPLES / "intranet.jsonl"), *read_jsonl(EXAMPLES / "answers.jsonl")]


def test_an_answer_written_after_a_delete_is_a_candidate(tmp_path: Path) -> None:
    with _kb(tmp_path / "kb", _examples()) as kb:
        assert kb.delete(["answer:9"]) == 1
        new = Document(id="answer:p300", kind="answer", group="maintenance",
                       title="P300 pump makes a grinding noise when starting",
                       text="Check the impeller for debris and the bearing for play; replace the bearing kit.")
        kb.add([new], refit=False)
        assert kb.stats().documents == len(_examples())  # one out, one in: the count the model knows
        decision = kb.ask("P300 pump makes a grinding noise when starting")
        assert decision.ranked[0] == "answer:p300"


def test_a_deleted_answer_is_no_rival_of_the_page_that_still_answers(tmp_path: Path) -> None:
    question = "what does alarm E02 mean on the C40"
    with _kb(tmp_path / "fresh", [d for d in _examples() if d.id != "answer:9"]) as fresh:
        expected = fresh.ask(question)
    with _kb(tmp_path / "kb", _examples()) as kb:
        kb.delete(["answer:9"])
        got = kb.ask(question)
    assert "answer:9" not in got.ranked
    assert got.ranked[0] == expected.ranked[0] == PAGE
    page = next(a for a in got.answers + got.closest if a.id == PAGE)
    assert page.signals["bm25_norm"] == 1.0  # normalised by what is there, not by the deleted answer
    assert got.action == expected.action
