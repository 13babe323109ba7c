"""End to end: ask → nothing good → escalated to the right group → webhook and e-mail arrive → a peer
answers → the same question asked again is answered from the index."""

from __future__ import annotations

from pathlib import Path

from kbsearch import Document, KnowledgeBase
from kbsearch.peers.service import answer_doc_id

from .conftest import PAGES, MailSink, WebhookServer, peer_settings

QUESTION = "The label printer in hall 3 prints only blank labels since the toner change"


def test_ask_escalate_notify_answer_ask_again(tmp_path: Path, hook_env: WebhookServer,
                                              smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "index", smtp_port=port))
    kb.rebuild(Document.from_dict(p) for p in PAGES)

    decision = kb.ask(QUESTION, user="ana@example.com", escalate=True)
    assert decision.action.value in ("escalate", "suggest")  # no good answer in the index
    if decision.action.value == "suggest":  # the asker clicks "ask the peers" under the suggestions
        esc = kb.escalate(QUESTION, user="ana@example.com", seen=decision.ranked[:3], decision=decision)
        assert [s["id"] for s in esc.seen] == decision.ranked[:3]
    else:
        esc = decision.escalation
    assert esc is not None and esc.group == "it-support" and esc.user == "ana@example.com"
    assert esc.decision is not None  # what the asker was told travels with the question

    # The group's webhook and e-mail channels got it, once each, with the question in them.
    assert hook_env.keys("/it") == [f"{esc.id}/it-support/webhook/escalated"]
    assert hook_env.requests[0]["json"]["escalation"]["question"] == QUESTION
    assert len(sink.messages) == 1 and sink.messages[0]["to"] == ["it-team@example.com"]
    assert QUESTION in sink.messages[0]["msg"].get_payload(decode=True).decode()
    assert kb.escalations(group="it-support", open_only=True)[0].id == esc.id

    answer = "Reload the label roll: the new toner cartridge needs the thermal labels, not plain paper."
    done = kb.answer(esc.id, answer, by="bo@example.com", verify=True)
    assert done.status == "verified" and done.indexed

    hits = kb.search(QUESTION)
    assert hits[0].id == answer_doc_id(esc.id) and hits[0].verified and hits[0].kind == "answer"
    # Deflection's answer model is refitted with the corpus (rebuild/reindex); after that, asking again
    # puts the peer answer first as well.
    kb.rebuild(kb.documents())
    again = kb.ask(QUESTION, user="carl@example.com")
    assert again.action.value in ("answer", "suggest")
    assert again.ranked[0] == answer_doc_id(esc.id)
    # The answer reached the asker (e-mail and an event naming them); asking again escalated nothing.
    assert hook_env.keys("/it") == [f"{esc.id}/it-support/webhook/escalated",
                                    f"{esc.id}/it-support/webhook/answered/r1"]
    assert hook_env.requests[1]["json"]["escalation"]["asker"] == "ana@example.com"
    assert [m["to"] for m in sink.messages] == [["it-team@example.com"], ["ana@example.com"]]
    assert answer in sink.messages[1]["msg"].get_payload(decode=True).decode()

    # Marked outdated: still findable (ranked lower), never used to answer.
    kb.mark_outdated(answer_doc_id(esc.id))
    stale = kb.ask(QUESTION, user="carl@example.com")
    assert stale.action.value != "answer" or answer_doc_id(esc.id) not in [a.id for a in stale.answers]
    assert kb.get(answer_doc_id(esc.id)).outdated
    kb.close()
