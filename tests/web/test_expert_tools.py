"""Expert tools over HTTP and on the page (issue 24): claim / assign / give back a question, and an
answer's earlier versions, against a real ``kbsearch serve`` and real headless Chromium."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _escalate(server, h, question: str) -> dict:
    r = server.api("POST", "escalations", token=h.token_for("ursula", "staff"),
                   json={"question": question, "group": "it-support"})
    assert r.status_code == 201, r.text
    return r.json()


def test_claim_assign_unclaim_over_http(server, h):
    esc = _escalate(server, h, "the vellumtrack badge reader at gate 4 blinks orange <i>twice</i>")
    max_, ivan, fay = h.token_for("max", "it-support"), h.token_for("ivan", "it-support"), h.token_for("fay", "finance")
    path = f"escalations/{esc['id']}"
    assert esc["claimed_by"] is None and esc["answer_history"] == []

    assert server.api("POST", path + "/claim", token=fay, json={}).status_code == 403  # not in the group
    assert server.api("POST", path + "/claim").status_code == 403  # anonymous
    r = server.api("POST", path + "/claim", token=max_, json={})
    assert r.status_code == 200 and r.json()["claimed_by"] == "max", r.text
    r = server.api("POST", path + "/claim", token=ivan, json={})
    assert r.status_code == 409 and r.json()["type"] == "ClaimConflictError" and "max" in r.json()["error"]
    r = server.api("POST", path + "/claim", token=ivan, json={"to": "zed"})
    assert r.status_code == 400 and "not a member or expert" in r.json()["error"]
    # The asker sees who has it and how long it waits (the SLA); the group sees it in its queue.
    one = server.api("GET", path, token=h.token_for("ursula", "staff")).json()
    assert one["claimed_by"] == "max"
    assert (one["sla"]["group"], one["sla"]["reminders"], one["sla"]["overdue"]) == ("it-support", 0, False)
    assert one["sla"]["next_reminder_at"] > one["created"] and one["sla"]["overdue_at"] is None
    queue = server.api("GET", "escalations?status=open", token=max_).json()["escalations"]
    assert [e["claimed_by"] for e in queue if e["id"] == esc["id"]] == ["max"]

    r = server.api("POST", path + "/claim", token=ivan, json={"to": "ivan"})  # the expert takes it over
    assert r.status_code == 200 and (r.json()["claimed_by"], r.json()["assigned_by"]) == ("ivan", "ivan")
    assert server.api("POST", path + "/unclaim", token=max_).status_code == 403  # no longer his
    r = server.api("POST", path + "/unclaim", token=ivan)
    assert r.status_code == 200 and r.json()["claimed_by"] is None
    groups = {g["name"]: g for g in server.api("GET", "groups", token=max_).json()["groups"]}
    assert groups["it-support"]["people"] == ["ivan", "max"] and "people" not in groups["finance"]


def test_page_claims_assigns_and_shows_earlier_answers(open_page, server, h, artifacts):
    esc = _escalate(server, h, "the quorrelite plotter in hall 2 pulls <b>two</b> sheets at once")
    member = open_page("max", "it-support", fragment=f"esc={esc['id']}")
    card = member.locator("#esc-one .esc")
    card.wait_for(timeout=15_000)
    assert card.locator(".claim-state").inner_text() == "Nobody has taken it yet."
    assert card.locator(".sla").inner_text().startswith("Waiting 0") and "next reminder" in card.locator(".sla").inner_text()
    card.locator("button.take").click()
    member.wait_for_selector("#esc-one .esc[data-acted='1']", timeout=15_000)
    card = member.locator("#esc-one .esc")
    assert card.locator(".claim-state").inner_text().startswith("You have taken it")
    assert card.locator("button.give-back").is_visible()
    assert card.locator("button.take").count() == 0

    expert = open_page("ivan", "it-support", fragment=f"esc={esc['id']}", mobile=True)
    card = expert.locator("#esc-one .esc")
    card.wait_for(timeout=15_000)
    assert card.locator(".claim-state").inner_text().startswith("Taken by max")
    assert card.locator("select.assign-to option").all_inner_texts() == ["ivan"]
    card.locator("button.assign").click()
    expert.wait_for_selector("#esc-one .esc[data-acted='1']", timeout=15_000)
    assert server.api("GET", f"escalations/{esc['id']}", token=h.token_for("ivan", "it-support")).json()[
        "claimed_by"] == "ivan"

    # Answer, then change it on the page: the earlier text stays visible under "earlier versions".
    first = "Open the side panel and set the label gap to 3 mm."
    r = server.api("POST", f"escalations/{esc['id']}/answer", token=h.token_for("ivan", "it-support"),
                   json={"text": first})
    assert r.status_code == 200, r.text
    expert.reload()
    expert.wait_for_selector("body[data-ready='1']")
    card = expert.locator("#esc-one .esc")
    card.wait_for(timeout=15_000)
    assert card.locator(".history").is_hidden()
    card.locator("button.edit-answer").click()
    card.locator(".edit-form textarea").fill("Set the label gap to 3 mm <script>x</script> in the side panel.")
    card.locator(".edit-form button[type=submit]").click()
    expert.wait_for_selector("#esc-one .esc[data-edited='1']", timeout=15_000)
    card = expert.locator("#esc-one .esc")
    assert card.locator(".answer-text").inner_text().startswith("Set the label gap to 3 mm <script>")
    assert card.locator(".history summary").inner_text().startswith("Edited once")
    card.locator(".history summary").click()
    assert card.locator(".history .old-text").inner_text() == first
    expert.screenshot(path=str(artifacts / "expert-tools-phone.png"), full_page=True)

    # The asker sees the history too; a member who did not answer gets no edit button (ivan answered).
    asker = open_page("ursula", "staff", fragment=f"esc={esc['id']}")
    card = asker.locator("#esc-one .esc")
    card.wait_for(timeout=15_000)
    assert card.locator(".history summary").inner_text().startswith("Edited once")
    assert card.locator("button.edit-answer").count() == 0
    other = open_page("max", "it-support", fragment=f"esc={esc['id']}")
    other.locator("#esc-one .esc").wait_for(timeout=15_000)
    assert other.locator("#esc-one button.edit-answer").count() == 0
    for page in (member, expert, asker, other):
        assert page.errors == []
