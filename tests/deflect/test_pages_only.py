"""A handful of intranet pages and no peer answers: the rebuild calibrates (it used to fail with
"cannot reshape array of size 0" when every page's heading was held out and nothing had a phrasing)."""

from __future__ import annotations

from pathlib import Path

from kbsearch import Document, KnowledgeBase, Settings

PAGES = [
    Document(id="monitor", kind="page", title="Monitor shows no signal", text="Check the docking station cable."),
    Document(id="printer", kind="page", title="Paper jam in the third-floor printer", text="Open tray 2, remove the sheet."),
    Document(id="expenses", kind="page", title="Submitting expense reports", text="Use the travel portal within 30 days."),
    Document(id="vpn", kind="page", title="Connecting to the VPN from home", text="Start the client and sign in."),
    Document(id="lunch", kind="page", title="Ordering lunch at the cafeteria", text="The menu changes every Monday."),
]


def test_five_pages_calibrate_and_the_right_page_comes_first(tmp_path: Path) -> None:
    with KnowledgeBase.open(settings=Settings.load(env={}, index_path=tmp_path / "kb")) as kb:
        report = kb.rebuild(PAGES)
        assert "error" not in report.steps["deflect"], report.steps["deflect"]
        decision = kb.ask("the printer on the third floor has a paper jam")
        assert decision.ranked[0] == "printer" and decision.action.value in ("answer", "suggest")
