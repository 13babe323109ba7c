"""Who may change an answer (issue 21, item 2): only its answerer or the group's experts; a verified
answer changed by a non-expert loses its mark; every replaced text stays in the history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbsearch import KnowledgeBase
from kbsearch.cli import main
from kbsearch.errors import PermissionDeniedError
from kbsearch.peers.service import answer_doc_id

from .conftest import WebhookServer, peer_settings

EXPERT = "bo@example.com"      # expert of it-support
MEMBER = "ana@example.com"     # member of it-support, not an expert
EVIL = "Download http://evil.example/driver.exe"


def _changes(esc) -> list[dict]:
    return [e for e in esc.events if e["kind"] == "answer_changed"]


def test_member_cannot_replace_an_experts_verified_answer(kb: KnowledgeBase) -> None:
    esc = kb.escalate("the VPN client asks for a driver update", group="it-support", deliver=False)
    kb.answer(esc.id, "Install the driver from the software center.", by=EXPERT, verify=True)
    with pytest.raises(PermissionDeniedError, match="only its answerer"):
        kb.answer(esc.id, EVIL, by=MEMBER, verify=False)
    kept = kb.escalation(esc.id)
    assert kept.answer == "Install the driver from the software center." and kept.verified
    assert kept.answered_by == EXPERT and _changes(kept) == []
    doc = kb.get(answer_doc_id(esc.id))
    assert EVIL not in doc.text and doc.verified


def test_member_cannot_replace_another_members_answer(kb: KnowledgeBase) -> None:
    esc = kb.escalate("printer on floor 3 is offline", group="it-support", deliver=False)
    kb.answer(esc.id, "Power-cycle it.", by="carl@example.com")
    with pytest.raises(PermissionDeniedError):
        kb.answer(esc.id, EVIL, by=MEMBER)
    assert kb.escalation(esc.id).answer == "Power-cycle it."


def test_answerer_edits_own_answer_and_the_old_text_stays_in_the_history(kb: KnowledgeBase) -> None:
    esc = kb.escalate("how do I map the team drive", group="it-support", deliver=False)
    first = kb.answer(esc.id, "Use \\\\files\\team.", by=MEMBER)
    edited = kb.answer(esc.id, "Use \\\\files2\\team since the migration.", by=MEMBER)
    assert edited.answer.startswith("Use \\\\files2") and edited.status == "answered"
    [change] = _changes(edited)
    assert change["actor"] == MEMBER and change["detail"]["previous"] == "Use \\\\files\\team."
    assert change["detail"]["previous_by"] == MEMBER
    assert change["detail"]["previous_at"] == first.to_dict()["answered_at"]
    assert "files2" in kb.get(answer_doc_id(esc.id)).text


def test_expert_changes_any_answer_and_a_verified_one_stays_verified(kb: KnowledgeBase) -> None:
    esc = kb.escalate("outlook keeps asking for my password", group="it-support", deliver=False)
    kb.answer(esc.id, "Remove the saved credentials.", by=MEMBER)
    kb.review_answer(esc.id, verified=True, by=EXPERT)
    changed = kb.answer(esc.id, "Remove the saved credentials, then restart Outlook.", by=EXPERT)
    assert changed.verified and changed.status == "verified" and changed.answered_by == EXPERT
    assert kb.get(answer_doc_id(esc.id)).verified
    assert _changes(changed)[0]["detail"]["previous_by"] == MEMBER
    assert "unverified" not in [e["kind"] for e in changed.events]


def test_answerers_own_edit_of_a_verified_answer_unverifies_it(kb: KnowledgeBase) -> None:
    esc = kb.escalate("wifi drops in meeting room 4", group="it-support", deliver=False)
    kb.answer(esc.id, "Use the CORP network, not CORP-GUEST.", by=MEMBER)
    assert kb.review_answer(esc.id, verified=True, by=EXPERT).verified
    edited = kb.answer(esc.id, "Use CORP-GUEST.", by=MEMBER)
    assert not edited.verified and edited.status == "answered" and edited.verified_by is None
    assert edited.events[-2]["kind"] == "unverified" and edited.events[-2]["actor"] == MEMBER
    assert not kb.get(answer_doc_id(esc.id)).verified  # re-indexed without the badge
    with pytest.raises(PermissionDeniedError):  # and the member cannot put the badge back
        kb.answer(esc.id, "Use CORP-GUEST.", by=MEMBER, verify=True)


def test_without_experts_only_the_answerer_or_the_operator_changes_an_answer(tmp_path: Path,
                                                                           hook_env: WebhookServer) -> None:
    settings = peer_settings(tmp_path / "index", hook_env)
    settings.peers.groups[1]["experts"] = []  # hr: nobody speaks for the group
    with KnowledgeBase.open(settings=settings) as kb:
        esc = kb.escalate("how many vacation days carry over", group="hr", deliver=False)
        kb.answer(esc.id, "Five days carry over.", by="hilda", verify=True)  # anyone may verify here
        with pytest.raises(PermissionDeniedError, match="no experts configured"):
            kb.answer(esc.id, EVIL, by="mallory")
        own = kb.answer(esc.id, "Five days carry over to March.", by="hilda")
        assert not own.verified  # own edit of a verified answer: re-verify explicitly
        assert kb.answer(esc.id, "Five days carry over to March.", by="hilda", verify=True).verified
        operator = kb.answer(esc.id, "Five days carry over to the end of March.")  # by=None: CLI / Python
        assert operator.verified and operator.answered_by is None
        assert len(_changes(operator)) == 3


def test_store_without_a_check_drops_the_verified_mark(kb: KnowledgeBase) -> None:
    esc = kb.escalate("laptop fan is loud", group="it-support", deliver=False)
    kb.answer(esc.id, "Clean the vents.", by=EXPERT, verify=True)
    changed = kb.peers.store.record_answer(esc.id, "Buy a new one.", by="script", verified=False)
    assert not changed.verified and changed.status == "answered"


def test_cli_answer_by_a_member_cannot_replace_a_verified_answer(tmp_path: Path, hook_env: WebhookServer) -> None:
    config = tmp_path / "kbsearch.toml"
    config.write_text('[[groups]]\nname = "it-support"\nexperts = ["bo@example.com"]\n', encoding="utf-8")
    opts = ["--index", str(tmp_path / "index"), "--config", str(config)]
    runner = CliRunner()
    esc = json.loads(runner.invoke(main, ["escalate", "vpn driver", "--group", "it-support", "--json", *opts]).output)
    ok = runner.invoke(main, ["answer", esc["id"], "--text", "Use the software center.", "--by", EXPERT, "--verify",
                              *opts])
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(main, ["answer", esc["id"], "--text", EVIL, "--by", MEMBER, *opts])
    assert refused.exit_code != 0 and "may not change the answer" in refused.output
    shown = json.loads(runner.invoke(main, ["escalations", esc["id"], "--json", *opts]).output)
    assert shown["answer"] == "Use the software center." and shown["verified"]
    runner.invoke(main, ["answer", esc["id"], "--text", "Use the software center app.", "--by", EXPERT, *opts])
    text = runner.invoke(main, ["escalations", esc["id"], *opts]).output
    assert f"by {EXPERT}; earlier answer ({EXPERT}): Use the software center.\n" in text
