"""A question sent on to another group (by a person or by the SLA) tells that group only of documents
it may see: the asker's "already shown" list was cut for the first group's readers, not the new one's.
Real SQLite store and a real webhook server receiving the new group's Slack message."""

from __future__ import annotations

import json
from pathlib import Path

from kbsearch import Document, KnowledgeBase

from .conftest import WebhookServer, peer_settings

H = 3600.0
SECRET_TITLE = "VPN concentrator admin passwords"


def _kb(tmp_path: Path, hook: WebhookServer, **peers) -> KnowledgeBase:
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i", hook, deliver_on_escalate=False, **peers))
    kb.add([Document(id="it-only", title=SECRET_TITLE, text="The concentrator admin password rotates monthly.",
                     allowed_groups=("it-support",)),
            Document(id="wifi", title="Connecting to the office wifi", text="Choose CORP and sign in.")])
    return kb


def _to_hr(hook: WebhookServer, esc_id: str) -> list[str]:
    return [json.dumps(r["json"]) for r in hook.requests if r["path"] == "/hr-slack" and esc_id in json.dumps(r["json"])]


def test_a_rerouted_question_names_only_what_the_new_group_may_see(tmp_path: Path, hook_env: WebhookServer) -> None:
    kb = _kb(tmp_path, hook_env)
    esc = kb.escalate("the vpn drops every hour", user="carl", group="it-support", seen=["it-only", "wifi"])
    assert [s["id"] for s in esc.seen] == ["it-only", "wifi"]  # it-support may see both
    kb.reroute(esc.id, "hr", reason="it is about working hours", by="bo@example.com")
    kb.deliver_notifications()
    [message] = _to_hr(hook_env, esc.id)
    assert "Connecting to the office wifi" in message and SECRET_TITLE not in message
    # What the question keeps is cut too, so later reminders to hr name nothing of it either.
    assert [s["id"] for s in kb.escalation(esc.id).seen] == ["wifi"]
    kb.deliver_notifications(now=esc.created + 25 * H)
    reminders = [m for m in _to_hr(hook_env, esc.id) if "Reminder" in m]
    assert len(reminders) == 1 and SECRET_TITLE not in reminders[0]
    kb.close()


def test_the_sla_hands_on_without_what_the_new_group_may_not_see(tmp_path: Path, hook_env: WebhookServer) -> None:
    kb = _kb(tmp_path, hook_env, fallback_after_hours=2.0, fallback_group="hr")
    esc = kb.escalate("the vpn drops every two hours", user="carl", group="it-support", seen=["it-only", "wifi"])
    report = kb.deliver_notifications(now=esc.created + 2 * H)
    assert [h["to"] for h in report.sla["handed_on"]] == ["hr"]
    [message] = _to_hr(hook_env, esc.id)
    assert "Connecting to the office wifi" in message and SECRET_TITLE not in message
    kb.close()
