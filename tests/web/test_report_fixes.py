"""The report's figures from a scripted history equal hand counts (issue 24): "this solved it" counts as
deflected, gaps drop off once peers answered them, time to the *first* peer answer per group (median and
p90) survives a later edit, and the HTML fits a phone and has legends.  Real usage log and escalation
store (SQLite); the history's times are set in the store's own file, like a store that has run for days."""

from __future__ import annotations

import sqlite3
import time

import pytest

from kbsearch import KnowledgeBase
from kbsearch.deflect import Action, Decision
from kbsearch.ops.report import _p90, render_html

H = 3600.0
#: One long unbroken word: it must wrap on a phone, not widen the page.
LONG = "where-is-the-pneumonoultramicroscopicsilicovolcanoconiosis-filter-replacement-procedure-for-hall-7"


def _decision(n: int, question: str, action: Action) -> Decision:
    return Decision(id=f"fix-{n}", question=question, action=action, confidence=0.5, answers=[], why="test")


def _backdate(kb: KnowledgeBase, esc_id: str, created_hours_ago: float, answered_hours_ago: float | None) -> None:
    """Move an escalation's creation (and its first answer) into the past, in the store's file."""
    now = time.time()
    with sqlite3.connect(kb.root / "peers.sqlite3") as con:
        con.execute("UPDATE escalations SET created = ? WHERE id = ?", (now - created_hours_ago * H, esc_id))
        con.execute("UPDATE events SET at = ? WHERE escalation_id = ? AND kind IN ('asked', 'escalated')",
                    (now - created_hours_ago * H, esc_id))
        if answered_hours_ago is not None:
            con.execute("UPDATE escalations SET answered_at = ? WHERE id = ?", (now - answered_hours_ago * H, esc_id))
            con.execute("UPDATE events SET at = ? WHERE escalation_id = ? AND kind = 'answered'",
                        (now - answered_hours_ago * H, esc_id))


@pytest.fixture(scope="module")
def history(tmp_path_factory, h):
    base = tmp_path_factory.mktemp("report-fixes")
    config = base / "kbsearch.toml"
    config.write_text(h.GROUPS_TOML, encoding="utf-8")
    kb = KnowledgeBase.open(h.build_index(base / "idx"), create=False, config_file=config)
    asks = [_decision(1, "how do I reset my VPN password", Action.ANSWER),
            _decision(2, "printer jammed again", Action.SUGGEST),
            _decision(3, "where is the zeppelin hangar", Action.SUGGEST),
            _decision(4, "the forklift battery swells", Action.ESCALATE),
            _decision(5, "the canteen dishwasher floods the floor", Action.ESCALATE),
            _decision(6, LONG, Action.SUGGEST)]
    for d in asks:
        kb.usage.log_ask(d, user="ulla", groups=["staff"])
    kb.feedback("fix-1", True, user="ulla")
    kb.feedback("fix-2", True, user="ulla")  # "This solved it" on a suggestion
    e1 = kb.escalate("the forklift battery swells", user="ulla", group="facilities")
    kb.usage.set_escalation("fix-4", e1.id)
    e2 = kb.escalate("the canteen dishwasher floods the floor", user="ulla", group="facilities")
    kb.usage.set_escalation("fix-5", e2.id)
    kb.answer(e1.id, "Park it outside and call the supplier.", by="fred")
    _backdate(kb, e1.id, 10, 8)  # first answer after 2 h ...
    kb.answer(e1.id, "Park it outside, away from the building, and call the supplier.", by="fred")  # ... edited now
    for hours in (3, 1, 30):
        esc = kb.escalate(f"it question open for {hours} hours", user="vera", group="it-support")
        kb.answer(esc.id, "Done.", by="ivan")
        _backdate(kb, esc.id, hours, 0)
    yield kb, e1, e2
    kb.close()


def test_figures_equal_hand_counts(history) -> None:
    kb, e1, e2 = history
    rep = kb.report(days=30)
    t = rep.totals
    assert (t.asked, t.answered, t.suggested, t.escalated) == (6, 1, 3, 5)
    assert t.deflected == 2 and rep.to_dict()["deflection_rate"] == pytest.approx(2 / 6, abs=1e-3)  # answer + solved
    gaps = sorted(g["question"] for g in rep.content_gaps)
    # the forklift question was answered by a peer: no gap any more; the open dishwasher one stays
    assert gaps == sorted(["the canteen dishwasher floods the floor", LONG, "where is the zeppelin hangar"])
    groups = {b.key: b for b in rep.per_group}
    fac, it = groups["facilities"], groups["it-support"]
    assert fac.median_answer_hours == pytest.approx(2.0, abs=0.01)  # the first answer, not the edit
    assert fac.p90_answer_hours == pytest.approx(2.0, abs=0.01)
    assert it.median_answer_hours == pytest.approx(3.0, abs=0.01) and it.p90_answer_hours == pytest.approx(30.0, abs=0.01)
    assert rep.median_answer_hours == pytest.approx(2.5, abs=0.01) and rep.p90_answer_hours == pytest.approx(30.0, abs=0.01)
    assert rep.to_dict()["p90_answer_hours"] == rep.p90_answer_hours
    assert (rep.answered_escalations, rep.open_escalations) == (4, 1)


def test_p90_is_the_nearest_rank() -> None:
    assert _p90([]) is None and _p90([5.0]) == 5.0
    assert _p90([float(i) for i in range(1, 11)]) == 9.0 and _p90([float(i) for i in range(1, 12)]) == 10.0


def test_html_report_fits_a_phone_and_has_legends(history, browser, artifacts, tmp_path) -> None:
    kb, _e1, _e2 = history
    page_html = render_html(kb.report(days=30))
    assert page_html.count("class='legend'") == 2 and "deflected (answered, no escalation)" in page_html
    path = tmp_path / "report.html"
    path.write_text(page_html, encoding="utf-8")
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = ctx.new_page()
        page.goto(path.as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts / "report-phone.png"), full_page=True)
    finally:
        ctx.close()
