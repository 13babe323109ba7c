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


def test_similar_follow_and_reroute_over_http(server, h):
    ulla, max_, olga = (h.token_for("ulla", "staff"), h.token_for("max", "it-support"),
                        h.token_for("olga", "sales"))
    question = "the quillback scanner on floor 9 shows error E-77 after the firmware update"
    esc = server.api("POST", "escalations", token=ulla, json={"question": question, "group": "it-support"}).json()

    def similar(token: str | None) -> list[dict]:
        r = server.api("POST", "similar", token=token, json={"question": "quillback scanner error E-77"})
        assert r.status_code == 200, r.text
        return r.json()["questions"]

    assert [(q["id"], q["mine"]) for q in similar(ulla)] == [(esc["id"], True)]
    assert [q["id"] for q in similar(max_)] == [esc["id"]]
    assert similar(olga) == [] and similar(None) == []  # another group's open question: not even a hint
    assert server.api("POST", "similar", token=ulla, json={"question": ""}).status_code == 400

    assert server.api("POST", f"escalations/{esc['id']}/follow", token=olga).status_code == 403
    assert server.api("POST", f"escalations/{esc['id']}/follow").status_code == 403
    r = server.api("POST", f"escalations/{esc['id']}/follow", token=max_)
    assert r.status_code == 200 and r.json()["following"] is True
    assert similar(max_)[0]["following"] is True and similar(max_)[0]["followers"] == 1

    body = {"group": "facilities", "reason": "the scanners belong to the building services"}
    assert server.api("POST", f"escalations/{esc['id']}/reroute", token=olga, json=body).status_code == 403
    assert server.api("POST", f"escalations/{esc['id']}/reroute", token=ulla, json=body).status_code == 403
    r = server.api("POST", f"escalations/{esc['id']}/reroute", token=max_, json={"group": "facilities"})
    assert r.status_code == 400 and r.json()["type"] == "BadRequest"
    r = server.api("POST", f"escalations/{esc['id']}/reroute", token=max_, json={**body, "group": "nope"})
    assert r.status_code == 400 and r.json()["type"] == "InvalidEscalationError"
    r = server.api("POST", f"escalations/{esc['id']}/reroute", token=max_, json=body)
    assert r.status_code == 200, r.text
    mine = server.api("GET", f"escalations/{esc['id']}", token=ulla).json()
    assert mine["group"] == "facilities" and mine["rerouted_from"] == "it-support"
    assert mine["reroute_reason"] == body["reason"]
    # max is not in facilities: the question left his view and his follow ended with it.
    assert server.api("GET", f"escalations/{esc['id']}", token=max_).status_code == 403
    assert similar(max_) == []

    routed = server.api("POST", "route", token=ulla, json={"question": "the canteen menu parking room"})
    assert routed.status_code == 200 and set(routed.json()) == {"group", "confidence", "reason"}
    assert isinstance(routed.json()["group"], str) and routed.json()["reason"]
