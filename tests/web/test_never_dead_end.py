"""Never a dead end (issue 24), in real Chromium against a real ``kbsearch serve``: an ESCALATE decision
still shows the closest matches the caller may see; similar questions asked before are offered
("Asked already — follow it"); the routed group and its reason are shown and kept unless changed.

The small test index answers nearly every question with a hit, so the ESCALATE decision itself is
supplied by intercepting ``/api/ask`` in the browser; everything else (search, escalations) is the
real server.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

ESCALATE = {"action": "escalate", "answers": [], "id": None, "routing": None, "why": "not sure"}


@pytest.fixture()
def open_page(browser, server, h):
    contexts = []

    def open_(user: str | None = None, *groups: str, escalate: bool = True):
        ctx = browser.new_context(viewport={"width": 1100, "height": 800})
        contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        if escalate:
            page.route("**/api/ask", lambda route: route.fulfill(
                status=200, content_type="application/json", body=json.dumps(ESCALATE)))
        page.goto(server.url + (f"#token={h.token_for(user, *groups)}" if user else ""))
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


def ask(page, question: str) -> None:
    page.fill("#question", question)
    page.click("#ask-button")
    page.wait_for_selector("body[data-state='shown']", timeout=15_000)
    assert page.get_attribute("body", "data-decision") == "ESCALATE"


def test_escalate_shows_closest_matches_and_sends_them_as_seen(open_page, server, h, artifacts):
    page = open_page("ulla", "staff")
    ask(page, "the printer tray has jammed paper and a green lever")
    assert page.inner_text("#closest-heading") == "Not sure — closest matches"
    titles = page.locator("#results .hit .title").all_inner_texts()
    assert titles and titles[0] == "Clearing a paper jam on the third floor printer"
    # Not a dead end either way: the hits and the form to ask the peers are both there.
    assert page.locator("#escalate-form").is_visible()
    page.screenshot(path=str(artifacts / "page-closest.png"), full_page=True)
    page.click("#esc-send")
    page.wait_for_selector("#status.done #sent-ref", timeout=15_000)
    esc_id = page.inner_text("#sent-ref")
    esc = server.api("GET", f"escalations/{esc_id}", token=h.token_for("ulla", "staff")).json()
    assert "printer-jam" in [s["id"] for s in esc["seen"]]  # what was shown counts as seen
    assert page.errors == []


def test_closest_matches_pass_the_access_filter(open_page, h):
    question = "payroll bank transfer routing number"
    outsider = open_page("olga", "staff")
    ask(outsider, question)
    assert h.RESTRICTED_SECRET not in outsider.content()
    assert "Payroll bank transfer details" not in outsider.locator("#results").inner_text()
    insider = open_page("fiona", "finance")
    ask(insider, question)
    insider.wait_for_selector("#closest-heading")
    assert "Payroll bank transfer details" in insider.locator("#results .hit .title").all_inner_texts()
    assert outsider.errors == [] and insider.errors == []
