"""The asker hears back: an answer, a verification or a duplicate reaches the person who asked, by
e-mail (a real aiosmtpd server) and as an event on the group's webhook, committed with the change and
delivered exactly once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from kbsearch import KnowledgeBase
from kbsearch.errors import KbsearchError
from kbsearch.peers.service import answer_doc_id

from .conftest import MailSink, WebhookServer, peer_settings

LINK = "https://kb.example.com/#esc={id}"
ANSWER = "Hold Fn+F8 for five seconds; the wifi adapter comes back on."


def _mails_to(sink: MailSink, address: str) -> list[Any]:
    return [m["msg"] for m in sink.messages if m["to"] == [address]]


def _subject(msg: Any) -> str:
    return " ".join(str(msg["Subject"]).split())  # long headers arrive folded


def _body(msg: Any) -> str:
    return msg.get_payload(decode=True).decode()


def _open(tmp_path: Path, port: int | None, **peers: Any) -> KnowledgeBase:
    peers.setdefault("escalation_url", LINK)
    return KnowledgeBase.open(settings=peer_settings(tmp_path / "i", smtp_port=port, **peers))


def test_answer_reaches_the_asker_by_mail_and_webhook_once(tmp_path: Path, hook_env: WebhookServer,
                                                           smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port, deliver_on_escalate=False)
    esc = kb.escalate("my laptop wifi switched itself off", user="carl@example.com", group="it-support")
    kb.answer(esc.id, ANSWER, by="ana@example.com")
    # Committed with the answer, before any delivery: a crash now would lose nothing.
    queued = {n["key"]: n["status"] for n in kb.escalation(esc.id).notifications}
    assert queued[f"{esc.id}/it-support/@asker/answered/r1"] == "pending"
    assert queued[f"{esc.id}/it-support/webhook/answered/r1"] == "pending"
    assert sink.messages == [] and hook_env.requests == []

    kb.deliver_notifications()
    kb.deliver_notifications()  # a second run sends nothing again

    mails = _mails_to(sink, "carl@example.com")
    assert len(mails) == 1
    mail = mails[0]
    assert mail["X-Kbsearch-Idempotency-Key"] == f"{esc.id}/it-support/@asker/answered/r1"
    assert _subject(mail).startswith("[it-support] Your question answered: my laptop wifi")
    body = _body(mail)
    assert ANSWER in body and "Answer from ana@example.com" in body
    assert f"https://kb.example.com/#esc={esc.id}" in body
    # The team's own e-mail channel got the new question only, not the asker's news.
    assert [m["msg"]["X-Kbsearch-Idempotency-Key"] for m in sink.messages if m["to"] == ["it-team@example.com"]] \
        == [f"{esc.id}/it-support/mail/escalated"]

    events = [r["json"] for r in hook_env.requests if r["json"]["event"] == "escalation.answered"]
    assert len(events) == 1
    assert events[0]["escalation"]["asker"] == "carl@example.com"
    assert events[0]["escalation"]["answer"] == ANSWER
    assert events[0]["escalation"]["url"] == f"https://kb.example.com/#esc={esc.id}"
    assert "asker_email" not in events[0]["escalation"]  # the address goes to the mail server only
    assert sorted(hook_env.keys("/it")) == sorted([f"{esc.id}/it-support/webhook/escalated",
                                                  f"{esc.id}/it-support/webhook/answered/r1"])
    kb.close()


def test_verify_and_changed_answer_and_duplicate_each_tell_the_asker(tmp_path: Path, hook_env: WebhookServer,
                                                                     smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port)  # delivered right after each change (peers.deliver_on_escalate)
    esc = kb.escalate("outlook keeps asking for my password", user="carl@example.com", group="it-support")
    kb.answer(esc.id, "Remove the saved credential in the keychain.", by="ana@example.com")
    kb.review_answer(esc.id, verified=True, by="bo@example.com")
    kb.review_answer(esc.id, accepted=True, by="carl@example.com")  # the asker's own act: no notice
    kb.answer(esc.id, "Remove the saved credential, then sign in once with MFA.", by="bo@example.com")
    other = kb.escalate("outlook wants my password again and again", user="dora@example.com", group="it-support")
    kb.close_duplicate(other.id, answer_doc_id(esc.id), by="bo@example.com")
    kb.deliver_notifications()

    carl = _mails_to(sink, "carl@example.com")
    assert [m["X-Kbsearch-Idempotency-Key"].split("/", 2)[2] for m in carl] == [
        "@asker/answered/r1", "@asker/verified", "@asker/answered/r4"]
    assert "An expert of it-support verified the answer." in _body(carl[1])
    assert "then sign in once with MFA" in _body(carl[2]) and "(verified)" in _body(carl[2])
    dora = _mails_to(sink, "dora@example.com")
    assert len(dora) == 1 and "answered before" in _subject(dora[0])
    assert "then sign in once with MFA" in _body(dora[0])  # the earlier answer, public: shown in full
    assert f"#esc={other.id}" in _body(dora[0])
    events = [r["json"]["event"] for r in hook_env.requests]
    assert events.count("escalation.answered") == 2 and events.count("escalation.verified") == 1
    assert events.count("escalation.duplicate") == 1
    kb.close()


def test_duplicate_of_a_restricted_answer_names_it_without_its_text(tmp_path: Path, hook_env: WebhookServer,
                                                                    smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    settings = peer_settings(tmp_path / "i", smtp_port=port, escalation_url=LINK)
    settings.peers.groups[1]["answers_visible_to"] = ["hr"]
    with KnowledgeBase.open(settings=settings) as kb:
        first = kb.escalate("night shift bonus on weekends", user="hr-lead@example.com", group="hr")
        kb.answer(first.id, "The bonus is 25 percent.", by="hr-lead@example.com")
        other = kb.escalate("weekend night shift bonus rate", user="carl@example.com", group="hr")
        kb.close_duplicate(other.id, answer_doc_id(first.id))
        mails = _mails_to(sink, "carl@example.com")
        assert len(mails) == 1 and "25 percent" not in _body(mails[0])
        assert f"#esc={other.id}" in _body(mails[0])  # the page shows what carl may read
        slack = [r["json"] for r in hook_env.requests if r["path"] == "/hr-slack"]
        assert any("weekend night shift bonus rate" in s["text"] for s in slack)
        assert not any("25 percent" in str(s) for s in slack if "weekend night" in s["text"])


@pytest.mark.parametrize(("user", "domain", "mailed_to"), [
    ("carl", "", None),
    ("carl", "example.com", "carl@example.com"),
    ("carl@corp.example", "example.com", "carl@corp.example"),
    ("Carl Smith", "example.com", None),
], ids=["no-domain", "domain-added", "address-kept", "not-an-address"])
def test_asker_address_comes_from_the_user_name_or_the_domain(
        tmp_path: Path, hook_env: WebhookServer, smtp: tuple[MailSink, int], caplog: pytest.LogCaptureFixture,
        user: str, domain: str, mailed_to: str | None) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port, asker_email_domain=domain)
    esc = kb.escalate("printer on floor 2 is offline", user=user, group="it-support")
    with caplog.at_level(logging.INFO, logger="kbsearch.peers.outbox"):
        kb.answer(esc.id, "Power-cycle it; the print server re-adds it.", by="bo@example.com")
    asker_mail = [m for m in sink.messages if "/@asker/" in m["msg"]["X-Kbsearch-Idempotency-Key"]]
    if mailed_to is None:
        assert asker_mail == []
        assert any("has no e-mail address" in r.getMessage() for r in caplog.records)
    else:
        assert [m["to"] for m in asker_mail] == [[mailed_to]]
    # The webhook event names the asker either way.
    assert [r["json"]["escalation"]["asker"] for r in hook_env.requests
            if r["json"]["event"] == "escalation.answered"] == [user]
    kb.close()


def test_no_email_channel_means_no_mail_to_the_asker(tmp_path: Path, hook_env: WebhookServer,
                                                      smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    settings = peer_settings(tmp_path / "i", escalation_url=LINK)  # webhook only
    settings.peers.smtp_port = port  # a server would be there; the deployment just does not use e-mail
    with KnowledgeBase.open(settings=settings) as kb:
        esc = kb.escalate("wifi drops every hour", user="carl@example.com", group="it-support")
        kb.answer(esc.id, "Update the driver.", by="bo@example.com")
        assert sink.messages == []
        assert not any(n["channel"].endswith("@asker") for n in kb.escalation(esc.id).notifications)
        assert "escalation.answered" in [r["json"]["event"] for r in hook_env.requests]


def test_no_asker_no_notice_and_switch_off(tmp_path: Path, hook_env: WebhookServer,
                                           smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port, asker_email=False)
    anonymous = kb.escalate("vpn token lost", group="it-support")  # from the CLI: nobody to tell
    mine = kb.escalate("vpn token broken", user="carl@example.com", group="it-support")
    kb.answer(anonymous.id, "Ask for a new one at the desk.", by="bo@example.com")
    kb.answer(mine.id, "Ask for a new one at the desk.", by="bo@example.com")
    assert _mails_to(sink, "carl@example.com") == []  # peers.asker_email = false
    answered = [r["json"]["escalation"]["id"] for r in hook_env.requests
                if r["json"]["event"] == "escalation.answered"]
    assert answered == [mine.id]
    kb.close()


def test_answer_and_its_notices_are_one_transaction(tmp_path: Path, hook_env: WebhookServer) -> None:
    """If the notices cannot be written, the answer is not stored either (and the other way round)."""
    kb = _open(tmp_path, None, deliver_on_escalate=False)
    esc = kb.escalate("laptop fan is loud", user="carl@example.com", group="it-support")

    class Boom(KbsearchError):
        pass

    def broken(before: Any, after: Any) -> list[Any]:
        raise Boom("outbox unavailable")

    with pytest.raises(Boom):
        kb.peers.store.record_answer(esc.id, "Clean the vents.", by="bo@example.com", verified=False,
                                     notify=broken)
    stored = kb.escalation(esc.id)
    assert stored.answer is None and stored.open
    assert [n["kind"] for n in stored.notifications] == ["escalated"]
    kb.close()
