"""The SLA of unanswered questions (issue 24): repeated reminders, then a fallback group and the lead,
on a real SQLite store, a real webhook server and a real aiosmtpd server, driven by an injected clock
(``deliver(now=...)``, no sleeps).  Every step happens once even when two ticks run at the same time,
and a question with nowhere left to go stays listed as overdue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbsearch import KnowledgeBase
from kbsearch.errors import ConfigError

from .conftest import MailSink, WebhookServer, peer_settings

H = 3600.0


def _open(tmp_path: Path, port: int) -> KnowledgeBase:
    settings = peer_settings(tmp_path / "i", smtp_port=port, deliver_on_escalate=False, remind_after_hours=1.0,
                             remind_every_hours=2.0, max_reminders=3, fallback_after_hours=10.0,
                             sla_lead="lead@example.com")
    settings.peers.groups[0].update(fallback_after_hours=8.0, fallback_group="hr")  # it-support's own SLA
    return KnowledgeBase.open(settings=settings)


def _kinds(webhook: WebhookServer, path: str, esc_id: str) -> list[str]:
    return [r["json"]["event"] for r in webhook.requests
            if r["path"] == path and r["json"]["escalation"]["id"] == esc_id]


def test_reminders_repeat_then_fallback_group_then_lead_once_each(tmp_path: Path, hook_env: WebhookServer,
                                                                   smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = _open(tmp_path, port)
    esc = kb.escalate("the plotter in room 12 prints everything in magenta", user="carl@example.com",
                      group="it-support")
    t0 = esc.created

    def tick(hours: float) -> dict:
        report = kb.deliver_notifications(now=t0 + hours * H)
        assert report.failed == 0, report.errors
        return {"first": report.reminders, **report.sla}

    assert tick(0.5)["reminders"] == 0 and tick(0.5)["first"] == 0
    assert tick(1.0)["first"] == 1  # the outbox's first reminder
    assert tick(2.0)["reminders"] == 0  # one hour since it: not yet
    assert tick(3.0)["reminders"] == 1 and tick(3.0)["reminders"] == 0  # the second, once
    assert tick(5.0)["reminders"] == 1  # the third
    assert tick(7.0)["reminders"] == 0  # max_reminders = 3
    reminders = [e["detail"].get("number") for e in kb.escalation(esc.id).events if e["kind"] == "reminded"]
    assert reminders == [None, 2, 3]
    assert _kinds(hook_env, "/it", esc.id) == ["escalation.created"] + ["escalation.reminder"] * 3
    state = kb.sla_status(now=t0 + 7 * H)
    assert [(s["id"], s["group"], s["reminders"], s["overdue"], s["fallback_group"]) for s in state] == \
        [(esc.id, "it-support", 3, False, "hr")]

    # 8 hours in it-support (its own SLA): handed to hr; hr hears of a new question, the asker and
    # the lead by e-mail, it-support's webhook gets escalation.overdue.
    first = tick(8.0)
    assert first["handed_on"] == [{"id": esc.id, "from": "it-support", "to": "hr", "hours_open": 8.0}]
    assert tick(8.0)["handed_on"] == []  # a second tick at the same time: done already
    moved = kb.escalation(esc.id)
    assert moved.group == "hr" and moved.routing["reroute_reason"] == "SLA: unanswered for 8 hours in it-support"
    rerouted = [e for e in moved.events if e["kind"] == "rerouted"]
    assert rerouted[-1]["detail"]["sla"]["action"] == "handed to hr" and rerouted[-1]["actor"] is None
    assert _kinds(hook_env, "/it", esc.id)[-1] == "escalation.overdue"
    to_hr = [r["json"]["text"] for r in hook_env.requests if r["path"] == "/hr-slack" and esc.id in json.dumps(r["json"])]
    assert len(to_hr) == 1 and "New question" in to_hr[0]  # Slack: one message, as of a new question
    lead_mail = [m["msg"] for m in sink.messages if m["to"] == ["lead@example.com"]]
    assert len(lead_mail) == 1 and str(lead_mail[0]["Subject"]).startswith("[it-support] Overdue question")
    assert any(m["to"] == ["carl@example.com"] and "sent on" in str(m["msg"]["Subject"]) for m in sink.messages)

    # In hr its clock starts again: no immediate reminder, the first one an hour after it arrived.
    assert tick(8.5)["first"] == 0
    assert tick(9.0)["first"] == 1
    # hr has the [peers] SLA (10 h) and no fallback of its own: the default group (general) is next.
    assert tick(17.9)["handed_on"] == []
    assert tick(18.0)["handed_on"] == [{"id": esc.id, "from": "hr", "to": "general", "hours_open": 10.0}]
    # From general there is nowhere new to go: marked overdue, the lead told once, listed on every run.
    last = tick(28.0)
    assert last["handed_on"] == [] and last["overdue"] == [{"id": esc.id, "group": "general", "hours_open": 10.0}]
    assert tick(30.0)["overdue"] == [{"id": esc.id, "group": "general", "hours_open": 12.0}]
    assert len([m for m in sink.messages if m["to"] == ["lead@example.com"]]) == 3
    overdue = [e["detail"] for e in kb.escalation(esc.id).events if e["kind"] == "overdue"]
    assert overdue == [{"group": "general", "hours": 10.0, "action": "nowhere to hand it to",
                        "lead": "lead@example.com"}]
    assert kb.sla_status(now=t0 + 30 * H)[0]["overdue"] is True

    # Answered: the SLA lets go.
    kb.answer(esc.id, "Replace the magenta cartridge; it leaks into the others.", by="someone")
    assert kb.sla_status(now=t0 + 40 * H) == [] and kb.escalation_sla(kb.escalation(esc.id)) is None
    assert tick(40.0) == {"first": 0, "reminders": 0, "handed_on": [], "leads_told": 0, "overdue": []}
    kb.close()


def test_sla_settings_are_checked(tmp_path: Path, hook_env: WebhookServer) -> None:
    settings = peer_settings(tmp_path / "i", hook_env)
    settings.peers.groups[0]["fallback_group"] = "nobody-here"
    with pytest.raises(ConfigError, match="fallback_group 'nobody-here' is not a group"):
        KnowledgeBase.open(settings=settings).groups()
    settings.peers.groups[0]["fallback_group"] = "hr"
    settings.peers.groups[0]["fallback_after_hours"] = "soon"
    with pytest.raises(ConfigError, match="fallback_after_hours must be a number"):
        KnowledgeBase.open(settings=settings).groups()
