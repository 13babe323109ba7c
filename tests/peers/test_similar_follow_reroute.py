"""Never a dead end and expert tools (issue 24), on real SQLite stores, a real aiosmtpd server and a real
webhook server: similar questions show only what the caller may see, followers hear what the asker
hears (committed with the change, delivered once), and a reroute moves the question, tells the new
group and the asker, and teaches routing where such questions are answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch import KnowledgeBase
from kbsearch.errors import InvalidEscalationError, KbsearchError, PermissionDeniedError
from kbsearch.peers.service import answer_doc_id

from .conftest import MailSink, WebhookServer, peer_settings

LINK = "https://kb.example.com/#esc={id}"


def _open(tmp_path: Path, port: int | None = None, *, hr_answers_for: list[str] | None = None,
          **peers: Any) -> KnowledgeBase:
    peers.setdefault("escalation_url", LINK)
    settings = peer_settings(tmp_path / "i", smtp_port=port, **peers)
    if hr_answers_for is not None:
        settings.peers.groups[1]["answers_visible_to"] = hr_answers_for
    return KnowledgeBase.open(settings=settings)


def _mails_to(sink: MailSink, address: str) -> list[Any]:
    return [m["msg"] for m in sink.messages if m["to"] == [address]]


def _subject(msg: Any) -> str:
    return " ".join(str(msg["Subject"]).split())


def test_similar_questions_show_only_what_the_caller_may_see(tmp_path: Path, hook_env: WebhookServer) -> None:
    kb = _open(tmp_path, hr_answers_for=["hr"], deliver_on_escalate=False)
    wifi = kb.escalate("my laptop wifi keeps dropping in the big meeting room", user="carl", group="it-support")
    pay = kb.escalate("my payslip shows the wrong salary for March", user="dana", group="hr")
    kb.escalate("where do I park my bicycle", user="carl", group="it-support")

    found = kb.similar_questions("laptop wifi dropping in the meeting room", user="eve", groups=["it-support"])
    assert [q["id"] for q in found] == [wifi.id]  # the unrelated bicycle question is below the threshold
    assert found[0]["status"] == "escalated" and found[0]["open"] and "answer" not in found[0]

    # Another group's open question is never shown, however similar (not even its existence).
    assert kb.similar_questions("payslip shows the wrong salary for March", user="eve", groups=["it-support"]) == []
    # Its asker sees their own; its group's members see it.
    assert [q["id"] for q in kb.similar_questions("wrong salary on my payslip", user="dana", groups=[])] == [pay.id]
    assert [q["id"] for q in kb.similar_questions("wrong salary on my payslip", user="x", groups=["hr"])] == [pay.id]

    # Answered: shown with its answer to those who may read the answer document (hr only here).
    kb.answer(pay.id, "Payroll corrects it with the next run; tell hr-lead.", by="hr-lead@example.com")
    assert kb.similar_questions("wrong salary on my payslip", user="eve", groups=["it-support"]) == []
    hr_view = kb.similar_questions("wrong salary on my payslip", user="x", groups=["hr"])
    assert hr_view[0]["answer"].startswith("Payroll corrects it")
    kb.close()

    # With the group's answers public, an answered question is shown to everyone (its answer is searchable).
    kb = _open(tmp_path, deliver_on_escalate=False)
    assert kb.similar_questions("wrong salary on my payslip", user="eve", groups=["it-support"]) == []
    assert kb.peers.index_answer(pay.id)  # re-indexed: the answer document is public now
    public = kb.similar_questions("wrong salary on my payslip", user="eve", groups=["it-support"])
    assert [q["id"] for q in public] == [pay.id] and public[0]["status"] == "answered"
    with pytest.raises(KbsearchError):
        kb.similar_questions("   ", user="eve", groups=[])
    kb.close()


def test_followers_hear_what_the_asker_hears_once(tmp_path: Path, hook_env: WebhookServer,
                                                  smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port, deliver_on_escalate=False)
    esc = kb.escalate("outlook crashes when I open a shared calendar", user="carl@example.com", group="it-support")
    kb.follow(esc.id, user="fred@example.com", groups=["it-support"])
    kb.follow(esc.id, user="fred@example.com", groups=["it-support"])  # a second +1 changes nothing
    with pytest.raises(PermissionDeniedError):  # a question of a group the caller is not in
        kb.follow(esc.id, user="olga@example.com", groups=["sales"])
    assert kb.escalation(esc.id).followers == ["fred@example.com"]
    assert [e["kind"] for e in kb.escalation(esc.id).events].count("followed") == 1

    kb.answer(esc.id, "Remove and re-add the shared calendar.", by="ana@example.com")
    queued = {n["key"]: n["status"] for n in kb.escalation(esc.id).notifications}
    # Committed with the answer, before any delivery.
    assert queued[f"{esc.id}/it-support/@follower/answered/r1/fred@example.com"] == "pending"
    kb.deliver_notifications()
    kb.deliver_notifications()
    mails = _mails_to(sink, "fred@example.com")
    assert len(mails) == 1
    assert _subject(mails[0]).startswith("[it-support] A question you follow answered: outlook crashes")
    assert "Remove and re-add the shared calendar." in mails[0].get_payload(decode=True).decode()
    assert len(_mails_to(sink, "carl@example.com")) == 1  # the asker still hears, once
    event = next(r["json"] for r in hook_env.requests if r["json"]["event"] == "escalation.answered")
    assert event["escalation"]["followers"] == ["fred@example.com"]
    with pytest.raises(InvalidEscalationError):  # answered: nothing left to follow
        kb.follow(esc.id, user="hal@example.com", groups=["it-support"])
    kb.close()


QUESTION = "the laptop docking station webcam is not detected"


def test_reroute_tells_the_new_group_and_the_asker_and_routing_learns(tmp_path: Path, hook_env: WebhookServer,
                                                                      smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port, deliver_on_escalate=False)
    assert kb.route(QUESTION).group == "it-support"  # "laptop" is an it-support keyword
    esc = kb.escalate(QUESTION, user="carl@example.com")
    assert esc.group == "it-support"
    with pytest.raises(InvalidEscalationError):
        kb.reroute(esc.id, "hr", reason="   ", by="bo@example.com")
    with pytest.raises(InvalidEscalationError):
        kb.reroute(esc.id, "no-such-group", reason="x", by="bo@example.com")
    with pytest.raises(InvalidEscalationError):
        kb.reroute(esc.id, "it-support", reason="already there", by="bo@example.com")

    kb.follow(esc.id, user="fred@example.com", groups=["it-support"])
    kb.follow(esc.id, user="gail@example.com", groups=["it-support", "hr"])
    moved = kb.reroute(esc.id, "hr", reason="webcams for new starters are ordered by HR", by="bo@example.com")
    assert moved.group == "hr" and moved.open
    assert moved.routing["rerouted_from"] == "it-support"
    # fred is not in hr: he may no longer see the question, so he stops hearing of it; gail stays.
    assert moved.followers == ["gail@example.com"]
    assert [e["actor"] for e in moved.events if e["kind"] == "unfollowed"] == ["fred@example.com"]
    assert "webcams for new starters are ordered by HR" in moved.routing["reason"]
    rerouted = [e for e in moved.events if e["kind"] == "rerouted"]
    assert rerouted == [{"at": rerouted[0]["at"], "kind": "rerouted", "actor": "bo@example.com",
                         "detail": {"from": "it-support", "to": "hr",
                                    "reason": "webcams for new starters are ordered by HR"}}]
    queued = {n["key"] for n in moved.notifications}
    assert {f"{esc.id}/hr/slack/escalated/g1", f"{esc.id}/hr/@asker/rerouted/g1"} <= queued
    assert f"{esc.id}/hr/slack/rerouted/g1" not in queued  # hr's people hear it once, as a new question

    kb.deliver_notifications()
    slack = [r["json"] for r in hook_env.requests if r["path"] == "/hr-slack"]
    assert slack and "laptop docking station" in str(slack[0])  # hr hears of it like of a new question
    mails = _mails_to(sink, "carl@example.com")
    assert len(mails) == 1 and _subject(mails[0]).startswith("[hr] Your question sent on:")
    assert _mails_to(sink, "fred@example.com") == []
    gail = _mails_to(sink, "gail@example.com")
    assert len(gail) == 1 and _subject(gail[0]).startswith("[hr] A question you follow sent on:")
    body = mails[0].get_payload(decode=True).decode()
    assert "from it-support to hr: webcams for new starters are ordered by HR" in body

    # Answered in its final group: the answer document and the router learn hr.
    kb.answer(esc.id, "Order it in the HR portal under equipment.", by="hr-lead@example.com")
    assert kb.get(answer_doc_id(esc.id)).group == "hr"
    assert kb.route(QUESTION).group == "hr"
    with pytest.raises(InvalidEscalationError):  # answered questions stay where they were answered
        kb.reroute(esc.id, "it-support", reason="back", by="bo@example.com")
    kb.close()
