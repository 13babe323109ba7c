"""The answer loop through `KnowledgeBase`: lifecycle, attachments, answers in the index, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from kbsearch import Document, KnowledgeBase
from kbsearch.errors import (
    InvalidEscalationError,
    InvalidQuestionError,
    NotFoundError,
    PermissionDeniedError,
)
from kbsearch.peers.service import answer_doc_id

from .conftest import PAGES, WebhookServer, peer_settings

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


def _add_pages(kb: KnowledgeBase) -> None:
    kb.add(Document.from_dict(p) for p in PAGES)


def test_lifecycle_escalate_answer_verify(kb: KnowledgeBase, hook_env: WebhookServer) -> None:
    _add_pages(kb)
    esc = kb.escalate("My laptop VPN disconnects every ten minutes", user="ana@example.com",
                      seen=["p1"], attachments=[("screen.jpg", "image/jpeg", JPEG)], note="since Monday")
    assert esc.group == "it-support" and esc.status == "escalated" and esc.open
    assert esc.seen[0]["title"] == "Connecting to the office wifi"  # id enriched with title for peers
    assert [e["kind"] for e in esc.events] == ["asked", "escalated", "notified"]
    assert esc.attachments[0].size == len(JPEG)
    assert kb.attachment(esc.id, esc.attachments[0].id).data == JPEG
    assert [e.id for e in kb.escalations(open_only=True)] == [esc.id]

    done = kb.answer(esc.id, "Update the VPN client to 5.2.", by="ana@example.com")
    assert done.status == "answered" and done.indexed and not done.open
    doc = kb.get(answer_doc_id(esc.id))
    assert doc is not None and doc.kind == "answer" and doc.title == esc.question
    assert doc.group == "it-support" and doc.source == "escalations" and not doc.verified
    assert kb.escalations(open_only=True) == []

    with pytest.raises(PermissionDeniedError):
        kb.review_answer(esc.id, verified=True, by="ana@example.com")  # not an expert
    verified = kb.review_answer(esc.id, verified=True, by="bo@example.com")
    assert verified.status == "verified" and kb.get(answer_doc_id(esc.id)).verified
    # A second answer replaces the first in the index, under the same stable id.
    kb.answer(esc.id, "Update the VPN client to 5.3.", by="bo@example.com", verify=True)
    assert "5.3" in kb.get(answer_doc_id(esc.id)).text
    assert len([i for i in kb.ids(source="escalations")]) == 1


def test_verified_answer_ranks_above_unverified(kb: KnowledgeBase) -> None:
    a = kb.escalate("printer on floor 2 prints blank pages", group="it-support", deliver=False)
    b = kb.escalate("printer on floor 2 prints blank pages", group="it-support", deliver=False)
    kb.answer(a.id, "Replace the toner cartridge of the floor 2 printer.")
    kb.answer(b.id, "Replace the toner cartridge of the floor 2 printer.", by="bo@example.com", verify=True)
    hits = kb.search("printer floor 2 blank pages", user_groups=None)
    assert hits[0].id == answer_doc_id(b.id) and hits[0].verified


def test_close_duplicate_adds_phrasing_and_outdated(kb: KnowledgeBase) -> None:
    _add_pages(kb)
    esc = kb.escalate("I forgot my login secret, how do I get a new one", deliver=False)
    closed = kb.close_duplicate(esc.id, "a1", by="bo@example.com")
    assert closed.status == "duplicate" and closed.duplicate_of == "a1"
    assert esc.question in kb.get("a1").questions
    assert kb.search("I forgot my login secret, how do I get a new one")[0].id == "a1"
    with pytest.raises(InvalidEscalationError):
        kb.close_duplicate(kb.escalate("x y z printer", deliver=False).id, "p1")  # a page, not an answer
    with pytest.raises(NotFoundError):
        kb.close_duplicate(esc.id, "no-such-doc")

    assert kb.mark_outdated("a1").outdated and kb.get("a1").outdated
    hit = kb.search("reset my password")[0]
    assert hit.id == "a1" and hit.outdated and hit.parts.details.get("outdated", 0) < 0
    # Re-importing the source that owns a1 drops the marks; the escalations source re-applies them.
    kb.add([Document.from_dict(PAGES[2])])
    assert not kb.get("a1").outdated and esc.question not in kb.get("a1").questions
    report = kb.import_source("escalations")
    assert report.updated >= 2
    assert kb.get("a1").outdated and esc.question in kb.get("a1").questions


@pytest.mark.parametrize("attachment, message", [
    (("x.exe", "application/x-msdownload", b"MZ..."), "not accepted"),
    (("fake.jpg", "image/jpeg", b"GIF89a....."), "content is not image/jpeg"),
    (("big.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"0" * 2000), "over the limit"),
    (("empty.png", "image/png", b""), "empty"),
], ids=["wrong-type", "mismatched-content", "too-big", "empty"])
def test_bad_attachments_are_refused_and_nothing_is_stored(tmp_path: Path, hook_env: WebhookServer,
                                                          attachment: tuple, message: str) -> None:
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i", max_attachment_bytes=1000))
    with pytest.raises(InvalidEscalationError, match=message):
        kb.escalate("wifi is down", attachments=[attachment])
    assert kb.escalations() == []
    with pytest.raises(InvalidQuestionError):
        kb.escalate("   ")
    with pytest.raises(InvalidEscalationError, match="empty"):
        kb.answer(kb.escalate("wifi is down", deliver=False).id, " ")
    kb.close()


def test_store_is_sqlite_wal_and_survives_reopen(tmp_path: Path, hook_env: WebhookServer) -> None:
    settings = peer_settings(tmp_path / "i")
    with KnowledgeBase.open(settings=settings) as kb:
        esc = kb.escalate("how do I claim travel expenses", user="u1", deliver=False)
        assert esc.group == "hr"
    path = tmp_path / "i" / "peers.sqlite3"
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with KnowledgeBase.open(settings=settings) as kb:
        again = kb.escalation(esc.id)
        assert again.question == esc.question and again.user == "u1"
        assert again.notifications[0]["status"] == "pending"


def test_twenty_threads_escalating_and_answering(kb: KnowledgeBase, hook_env: WebhookServer) -> None:
    errors: list[BaseException] = []
    made: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def work(n: int) -> None:
        try:
            start.wait()
            for k in range(3):
                esc = kb.escalate(f"thread {n} question {k}: my laptop {n * 10 + k} will not boot",
                                  user=f"user{n}", group="it-support" if n % 2 else "hr",
                                  attachments=[(f"p{n}-{k}.jpg", "image/jpeg", JPEG + bytes([n, k]))])
                with lock:
                    made.append(esc.id)
                if k != 1:
                    kb.answer(esc.id, f"answer {n}-{k}: hold the power button for {n + k} seconds", by=f"peer{n}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(made) == len(set(made)) == 60
    stored = {e.id: e for e in kb.escalations(limit=1000)}
    assert set(stored) == set(made)
    answered = [e for e in stored.values() if e.answered]
    assert len(answered) == 40 and all(e.indexed for e in answered)
    assert sum(e.open for e in stored.values()) == 20
    for esc in answered:  # every answer is in the index with its own text, nothing mixed up
        doc = kb.get(answer_doc_id(esc.id))
        assert doc is not None and doc.text == esc.answer and doc.title == esc.question
        assert kb.attachment(esc.id, esc.attachments[0].id).data[-2:] == bytes(
            [int(esc.user[4:]), int(esc.question.split("question ")[1][0])])
    # Every notification was written and delivered exactly once.
    assert kb.deliver_notifications().pending == 0
    keys = hook_env.keys()
    assert len(keys) == len(set(keys)) == 60 + 40  # each new question, and each answer for its asker
    assert sum(k.endswith("/escalated") for k in keys) == 60 and sum("/answered/" in k for k in keys) == 40
    if kb.settings.store.url:  # PostgreSQL holds it all: no SQLite state file was created
        assert not (kb.root / "peers.sqlite3").exists()
    else:
        with sqlite3.connect(kb.root / "peers.sqlite3") as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("visible_to", [[], ["hr"]], ids=["answers-public", "answers-for-hr-only"])
def test_group_answers_are_visible_to_the_configured_groups(tmp_path: Path, hook_env: WebhookServer,
                                                             visible_to: list[str]) -> None:
    """A group's answers flow back into the index with the group's ``answers_visible_to``: search and
    ask of other users never see an answer restricted to HR."""
    settings = peer_settings(tmp_path / "index", hook_env)
    settings.peers.groups[1]["answers_visible_to"] = visible_to
    with KnowledgeBase.open(settings=settings) as kb:
        esc = kb.escalate("what is the night shift bonus for weekend work", group="hr", deliver=False)
        kb.answer(esc.id, "The night shift bonus is 25 % on weekends.", by="hr-lead@example.com")
        doc_id = answer_doc_id(esc.id)
        assert kb.get(doc_id).allowed_groups == tuple(visible_to)
        hr_hits = [h.id for h in kb.search("night shift bonus weekend", user_groups=["hr"])]
        public_hits = [h.id for h in kb.search("night shift bonus weekend", user_groups=[])]
        asked = kb.ask("night shift bonus weekend", groups=["sales"])
        assert doc_id in hr_hits
        if visible_to:
            assert doc_id not in public_hits and doc_id not in asked.ranked
        else:
            assert doc_id in public_hits
