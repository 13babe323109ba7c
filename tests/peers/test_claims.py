"""Claim, assign, give back (issue 24, expert tools) on a real SQLite store, a real webhook server and a
real aiosmtpd server: who may do what, the history, the notices (delivered once), and a reroute ending
the claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kbsearch import KnowledgeBase
from kbsearch.errors import ClaimConflictError, InvalidEscalationError, PermissionDeniedError

from .conftest import MailSink, WebhookServer, peer_settings


def _events(kb: KnowledgeBase, esc_id: str) -> list[tuple[str, Any, Any]]:
    return [(e["kind"], e["actor"], e["detail"].get("to")) for e in kb.escalation(esc_id).events
            if e["kind"] in ("claimed", "assigned", "unclaimed")]


def _hook_events(webhook: WebhookServer) -> list[tuple[str, Any]]:
    return [(r["json"]["event"], r["json"]["escalation"].get("claimed_by")) for r in webhook.requests
            if r["path"] == "/it" and r["json"]["event"] in
            ("escalation.claimed", "escalation.assigned", "escalation.unclaimed")]


def test_claim_assign_unclaim_rules_history_and_notices(tmp_path: Path, hook_env: WebhookServer,
                                                         smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i", hook_env, smtp_port=port))
    esc = kb.escalate("the docking station does not charge my laptop", user="carl@example.com", group="it-support")
    assert esc.claimed_by is None

    held = kb.claim(esc.id, by="ana@example.com")
    assert (held.claimed_by, held.assigned_by) == ("ana@example.com", "ana@example.com")
    assert kb.escalation(esc.id).claimed_by == "ana@example.com"  # stored, not just returned
    assert kb.claim(esc.id, by="ana@example.com").claimed_by == "ana@example.com"  # again: no-op

    with pytest.raises(ClaimConflictError, match="already claimed by ana@example.com"):
        kb.claim(esc.id, by="bo@example.com")
    with pytest.raises(PermissionDeniedError):  # neither expert nor holder
        kb.assign(esc.id, "bo@example.com", by="carl@example.com")
    with pytest.raises(InvalidEscalationError, match="not a member or expert"):
        kb.assign(esc.id, "zed@example.com", by="bo@example.com")
    assert kb.escalation(esc.id).claimed_by == "ana@example.com"  # refusals changed nothing

    handed = kb.assign(esc.id, "bo@example.com", by="ana@example.com")  # the holder hands it on
    assert (handed.claimed_by, handed.assigned_by) == ("bo@example.com", "ana@example.com")
    with pytest.raises(PermissionDeniedError):  # ana no longer holds it and is no expert
        kb.unclaim(esc.id, by="ana@example.com")
    assert kb.unclaim(esc.id, by="bo@example.com").claimed_by is None

    assert _events(kb, esc.id) == [("claimed", "ana@example.com", "ana@example.com"),
                                   ("assigned", "ana@example.com", "bo@example.com"),
                                   ("unclaimed", "bo@example.com", None)]
    kb.deliver_notifications()
    kb.deliver_notifications()  # nothing twice
    assert _hook_events(hook_env) == [("escalation.claimed", "ana@example.com"),
                                      ("escalation.assigned", "bo@example.com"),
                                      ("escalation.unclaimed", None)]
    to_bo = [m["msg"] for m in sink.messages if m["to"] == ["bo@example.com"]]
    assert len(to_bo) == 1 and "Assigned to you" in str(to_bo[0]["Subject"])
    assert "docking station" in to_bo[0].get_payload(decode=True).decode() if not to_bo[0].is_multipart() \
        else "docking station" in to_bo[0].get_payload(0).get_payload(decode=True).decode()

    # An expert may take it from someone else by assigning; a reroute ends any claim.
    kb.claim(esc.id, by="ana@example.com")
    assert kb.assign(esc.id, "bo@example.com", by="bo@example.com").claimed_by == "bo@example.com"
    moved = kb.reroute(esc.id, "hr", reason="it is about the expenses of the dock")
    assert moved.claimed_by is None and moved.group == "hr"
    assert [e["detail"] for e in moved.events if e["kind"] == "unclaimed"][-1] == \
        {"from": "bo@example.com", "reason": "rerouted to hr"}

    kb.answer(esc.id, "Expense it as office equipment.", by="hr-lead@example.com")
    with pytest.raises(InvalidEscalationError, match="not open"):
        kb.claim(esc.id, by="hr-lead@example.com")
    kb.close()


def test_assign_to_anyone_when_the_group_names_nobody_but_operator_rules(tmp_path: Path,
                                                                        hook_env: WebhookServer) -> None:
    settings = peer_settings(tmp_path / "i", hook_env, deliver_on_escalate=False)
    kb = KnowledgeBase.open(settings=settings)
    esc = kb.escalate("where is the first aid kit", user="carl", group="general")
    assert kb.assign(esc.id, "dora", by=None).claimed_by == "dora"  # the operator; general names nobody
    with pytest.raises(PermissionDeniedError):
        kb.unclaim(esc.id, by="eve")
    assert kb.unclaim(esc.id).claimed_by is None  # the operator may
    with pytest.raises(InvalidEscalationError):
        kb.claim(esc.id, by="   ")
    kb.close()


def test_cli_claim_assign_unclaim_and_sla(tmp_path: Path, hook_env: WebhookServer) -> None:
    import json

    from click.testing import CliRunner

    from kbsearch.cli import main

    config = tmp_path / "kbsearch.toml"
    config.write_text('[peers]\nfallback_after_hours = 0.5\n[[groups]]\nname = "it-support"\n'
                      'experts = ["bo"]\nmembers = ["ana"]\n', encoding="utf-8")
    opts = ["--index", str(tmp_path / "index"), "--config", str(config)]
    runner = CliRunner()
    out = runner.invoke(main, ["escalate", "the scanner jams", "--group", "it-support", "--json", *opts])
    esc_id = json.loads(out.output)["id"]
    out = runner.invoke(main, ["claim", esc_id, "--by", "ana", *opts])
    assert out.exit_code == 0 and out.output == f"{esc_id}: held by ana\n"
    out = runner.invoke(main, ["claim", esc_id, "--by", "bo", *opts])
    assert out.exit_code == 1 and out.output.startswith("error: ") and out.output.count("\n") == 1
    out = runner.invoke(main, ["assign", esc_id, "bo", "--by", "bo", *opts])
    assert out.exit_code == 0 and out.output == f"{esc_id}: held by bo\n"
    out = runner.invoke(main, ["assign", esc_id, "ana", *opts])  # the operator
    assert out.exit_code == 0 and out.output == f"{esc_id}: held by ana\n"
    out = runner.invoke(main, ["unclaim", esc_id, "--by", "ana", "--json", *opts])
    assert out.exit_code == 0 and json.loads(out.output)["claimed_by"] is None
    out = runner.invoke(main, ["escalations", esc_id, *opts])
    assert "held by" not in out.output
    out = runner.invoke(main, ["groups", *opts])
    assert "   experts: bo; members: ana\n" in out.output
    out = runner.invoke(main, ["sla", "--json", *opts])
    assert out.exit_code == 0, out.output  # not yet half an hour old
    assert [(i["id"], i["overdue"]) for i in json.loads(out.output)] == [(esc_id, False)]
