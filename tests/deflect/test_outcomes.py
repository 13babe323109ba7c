"""Learning from production outcomes: labels of logged decisions, and what the rebuild does with them.

Real knowledge bases (Whoosh index, usage log and escalation store in SQLite) in temporary folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kbsearch import KnowledgeBase
from kbsearch.deflect._outcomes import blend, collect, label, outcome_threshold, wilson_lower
from kbsearch.deflect._features import FEATURES
from kbsearch.errors import KbsearchError, PermissionDeniedError
from kbsearch.storage.usage import UsageError

from .conftest import make_kb, thread_docs


def _row(action: str, top: str | None, *, escalation: str | None = None, helpful: bool | None = None,
         helped: str | None = None) -> dict:
    return {"id": "d", "action": action, "answer_id": top, "ranked": [top] if top else [], "features": [0.0],
            "escalation_id": escalation, "helpful": helpful, "helped": helped}


def test_each_outcome_labels_the_best_candidate() -> None:
    assert label(_row("answer", "a", helpful=True), None) is True
    assert label(_row("answer", "a", helpful=False), None) is False
    assert label(_row("suggest", "a", helpful=True, helped="a"), None) is True
    assert label(_row("suggest", "a", helpful=True, helped="b"), None) is False
    assert label(_row("suggest", "a", helpful=True), None) is None  # which one helped is unknown
    assert label(_row("escalate", "a", escalation="e"), ("duplicate", "a")) is True
    assert label(_row("escalate", "a", escalation="e"), ("duplicate", "b")) is False
    assert label(_row("suggest", "a", escalation="e"), ("unanswerable", None)) is False
    assert label(_row("escalate", "a", escalation="e"), ("answered", "peer-e")) is False
    assert label(_row("escalate", "a", escalation="e"), None) is None  # still open
    assert label(_row("answer", "a", escalation="e"), None) is False  # escalated after the answer


def test_outcome_threshold_needs_the_lower_bound_to_reach_the_target() -> None:
    conf = np.linspace(0.99, 0.01, 100)
    ok = np.r_[np.ones(40), np.zeros(60)]
    t = outcome_threshold(conf, ok, 0.85)
    assert 0.55 < t < 0.65  # the 40 right ones, minus a few at the edge the bound does not trust
    assert outcome_threshold(conf[:3], ok[:3], 0.85) > 1.0  # three right answers vouch for nothing
    assert wilson_lower(np.array([9.0]), np.array([10.0]))[0] < 0.9
    # Outcomes right 93 % of the time overall, but wrong more often than right below 0.2: answering
    # those would cost more questions than it answers, so the threshold stays above them.
    conf2 = np.r_[np.linspace(0.99, 0.3, 200), np.linspace(0.19, 0.01, 20)]
    ok2 = np.r_[np.ones(200), np.tile([0, 0, 0, 1], 5)]
    assert 0.19 < outcome_threshold(conf2, ok2, 0.85) < 0.3
    # A few outcomes hardly move the hold-outs' threshold; many take it over.
    few = blend(0.3, conf[:10], ok[:10], 0.85, prior=200)
    many = blend(0.3, np.tile(conf, 5), np.tile(ok, 5), 0.85, prior=200)
    assert abs(few - 0.3) < 0.05 and many > 0.45


@pytest.fixture
def kb_on_store(tmp_path: Path, store_url: str) -> Iterator[KnowledgeBase]:
    """A knowledge base on each store: SQLite files, and PostgreSQL for escalations and the usage log."""
    with make_kb(tmp_path / "kb", thread_docs(), **{"store.url": store_url}) as base:
        yield base


def test_outcomes_flow_from_the_usage_log_and_the_store(kb_on_store: KnowledgeBase) -> None:
    kb = kb_on_store
    right = kb.ask("printer says paper jam on the third floor")
    assert right.answers and right.answers[0].id == "printer"
    kb.feedback(right.id, True)
    with pytest.raises(UsageError):
        kb.feedback(right.id, True, answer_id="no-such-answer")  # only an answer that was shown
    dup = kb.ask("my laptop battery drains overnight", escalate=True)
    assert dup.escalation is not None
    kb.close_duplicate(dup.escalation.id, "vpn")
    assert "my laptop battery drains overnight" in kb.get("vpn").questions  # phrasing added at once
    gone = kb.ask("what is the wifi password of the canteen")  # whatever it decided, the asker escalates
    esc = kb.escalate(gone.question, decision=gone, deliver=False)
    kb.usage.set_escalation(gone.id, str(esc.id))
    closed = kb.close_unanswerable(esc.id, reason="no such page")
    assert closed.status == "unanswerable" and not closed.open
    with pytest.raises(KbsearchError):
        kb.close_unanswerable(esc.id)  # closed already
    labelled, unanswerable = collect(kb.root, 100, len(FEATURES), kb.settings)
    assert sorted(r for _f, r in labelled) == [False, False, True]
    assert unanswerable == ["what is the wifi password of the canteen"]
    steps = kb.rebuild(list(kb.documents())).steps["deflect"]
    assert steps["outcomes"] == 3 and steps["feedback_examples"] == 3
    # The question confirmed helpful joined its answer's phrasings at the rebuild (once, however often).
    assert kb.get("printer").questions.count("printer says paper jam on the third floor") == 1
    kb.rebuild(list(kb.documents()))
    assert kb.get("printer").questions.count("printer says paper jam on the third floor") == 1
    if kb.settings.store.url:  # escalations and the usage log are in PostgreSQL: no SQLite file
        assert sorted(p.name for p in kb.root.glob("*.sqlite3")) == []


def test_only_experts_close_as_unanswerable(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb", thread_docs(), **{"peers.groups": [{"name": "it", "experts": ["erin"]}]})
    with kb:
        esc = kb.escalate("what colour is the new logo", user="al", group="it", deliver=False)
        with pytest.raises(PermissionDeniedError):
            kb.close_unanswerable(esc.id, by="al")
        assert kb.close_unanswerable(esc.id, by="erin").status == "unanswerable"


def test_unanswerable_outcomes_raise_the_threshold(tmp_path: Path) -> None:
    """Off-topic questions the archive answered with confidence, closed as unanswerable by experts,
    make the next rebuild answer them no more (the threshold moves to where the outcomes say)."""
    kb = make_kb(tmp_path / "kb", thread_docs(), **{"deflect.outcome_prior": 50})
    off_topic = [f"{subject} {verb}" for subject in ("the printer", "my password", "the vpn", "my badge",
                                                      "the parking garage", "the meeting room", "my payslip")
                 for verb in ("is painted blue", "was in the news today", "has a funny name", "smells of coffee",
                              "made my colleague laugh", "appears in the company song")]
    with kb:
        before = [kb.ask(q) for q in off_topic]
        answered_before = sum(d.action.value == "answer" for d in before)
        th_before = before[0].thresholds["answer"]
        for d in before:
            esc = kb.escalate(d.question, decision=d, deliver=False)
            kb.usage.set_escalation(d.id, str(esc.id))
            kb.close_unanswerable(esc.id)
        steps = kb.rebuild(list(kb.documents())).steps["deflect"]
        assert steps["outcomes"] == len(off_topic)
        after = [kb.ask(q) for q in off_topic]
        answered_after = sum(d.action.value == "answer" for d in after)
        assert after[0].thresholds["answer"] > th_before
        assert answered_before >= 5 and answered_after <= answered_before // 2, (answered_before, answered_after)
        on_topic = kb.ask("how do i clear a paper jam in the printer")
        assert on_topic.action.value == "answer" and on_topic.answers[0].id == "printer"


def test_cli_feedback_names_the_answer_and_closes_as_unanswerable(kb: KnowledgeBase) -> None:
    from click.testing import CliRunner

    from kbsearch.cli import main

    index = str(kb.root)
    d = kb.ask("paper stuck in the printer tray")
    runner = CliRunner()
    res = runner.invoke(main, ["feedback", d.id, "yes", "--answer", d.ranked[0], "--index", index, "--json"])
    assert res.exit_code == 0, res.output
    assert kb.usage.feedback(d.id)[-1].answer_id == d.ranked[0]
    esc = kb.escalate("is there a sauna in the building", deliver=False)
    res = runner.invoke(main, ["unanswerable", esc.id, "--reason", "no sauna", "--index", index])
    assert res.exit_code == 0 and "closed as unanswerable" in res.output, res.output
    assert kb.escalation(esc.id).status == "unanswerable"
