"""The usage log: every ask logged, feedback validated; on both stores (``store_url``: a real SQLite
file beside the index, and a database of the test PostgreSQL cluster)."""

from __future__ import annotations

import sqlite3

import pytest

from collections.abc import Iterator
from pathlib import Path

from kbsearch import KnowledgeBase, NotFoundError
from kbsearch.storage.usage import UsageError, UsageLog

from .conftest import make_kb, thread_docs


@pytest.fixture
def kb(tmp_path: Path, store_url: str) -> Iterator[KnowledgeBase]:
    with make_kb(tmp_path / "kb", thread_docs(), **{"store.url": store_url}) as base:
        yield base


def test_every_ask_is_logged(kb: KnowledgeBase) -> None:
    d1 = kb.ask("i forgot my password", user="carol", groups=["staff", "it"])
    d2 = kb.ask("what is the boiling point of mercury")
    rows = kb.usage.asks()
    assert [r["id"] for r in rows] == [d1.id, d2.id]
    first = rows[0]
    assert first["question"] == "i forgot my password"
    assert first["action"] == d1.action.value and first["answer_id"] == "password"
    assert first["user"] == "carol" and first["groups"] == ["it", "staff"]
    assert abs(first["confidence"] - d1.confidence) < 1e-9
    assert rows[1]["answer_id"] is None and rows[1]["routed_group"] == d2.group
    if kb.settings.store.url:  # PostgreSQL holds the log: no SQLite file is created
        assert not (kb.root / "usage.sqlite3").exists()
        import psycopg

        with psycopg.connect(kb.settings.store.url) as db:
            assert db.execute("SELECT COUNT(*) FROM asks").fetchone() == (2,)
    else:
        assert (kb.root / "usage.sqlite3").is_file()
        with sqlite3.connect(kb.root / "usage.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM asks").fetchone()[0] == 2


def test_feedback_on_unknown_decision_is_an_error(kb: KnowledgeBase) -> None:
    with pytest.raises(NotFoundError):
        kb.feedback("no-such-decision", True)
    d = kb.ask("printer jam")
    with pytest.raises(UsageError):
        kb.feedback(d.id, "yes")  # type: ignore[arg-type]
    assert kb.usage.feedback() == []


def test_usage_log_survives_a_rebuild(kb: KnowledgeBase) -> None:
    d = kb.ask("printer jam")
    kb.rebuild(kb.documents())
    assert [r["id"] for r in kb.usage.asks()] == [d.id]


def test_training_examples_use_the_latest_feedback(tmp_path) -> None:
    log = UsageLog(tmp_path / "usage.sqlite3")

    class D:  # the attributes `log_ask` reads from a Decision
        id = "d1"
        question = "q"
        action = type("A", (), {"value": "answer"})()
        confidence = 0.9
        answers = [type("Ans", (), {"id": "x"})()]
        ranked = ["x"]
        group = None
        escalation = None
        generation = "gen-1"
        features = [0.5] * 13
        seconds = 0.01

    log.log_ask(D(), user=None, groups=[])
    log.add_feedback("d1", True)
    log.add_feedback("d1", False, escalated=True)
    assert log.training_examples(10) == [([0.5] * 13, False)]
    log.close()


def test_escalation_after_an_answer_counts_as_not_helpful(kb: KnowledgeBase) -> None:
    d = kb.ask("i forgot my password")
    assert d.action.value == "answer"
    esc = kb.escalate(d.question, user="erin", decision=d)
    kb.usage.set_escalation(d.id, str(esc.id), user="erin")
    [fb] = kb.usage.feedback(d.id)
    assert fb.escalated and not fb.helpful and fb.user == "erin"
    assert kb.usage.training_examples(10) == [(d.features, False)]
    with pytest.raises(NotFoundError):
        kb.usage.set_escalation("unknown", "x")
