"""The asker hears back on the page: "Sent to <group> — reference <id>", the "My questions" view and
``#esc=<id>`` deep links, in real Chromium against a real ``kbsearch serve``; the verify box is
offered only to those who may verify (``GET /api/me``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

#: Words no document has (other tests share the index), with markup that must stay text.
QUESTION = "the glimmerwick sorter in bay 7 hums <b>loudly</b> at night"
ANSWER = "Glimmerwick sorters hum when the belt tensioner is loose: tighten it two turns."


def test_me_says_where_the_caller_may_verify(server, h):
    ivan = server.api("GET", "me", token=h.token_for("ivan", "it-support")).json()
    assert ivan["expert_of"] == ["it-support"] and ivan["may_verify"] == ["it-support"]
    max_ = server.api("GET", "me", token=h.token_for("max", "it-support", "finance")).json()
    # it-support has experts and max is not one; finance has none, so any member may verify there.
    assert max_["expert_of"] == [] and max_["may_verify"] == ["finance"]
    assert server.api("GET", "me").json()["may_verify"] == []


def test_asker_gets_a_reference_and_finds_the_answer_by_deep_link_and_my_questions(open_page, server, h,
                                                                                  artifacts):
    asker = open_page("ulla", "staff")
    asker.fill("#question", QUESTION)
    asker.click("#ask-button")
    asker.wait_for_selector("body[data-state='shown']", timeout=15_000)
    if asker.locator("#escalate-form").is_hidden():
        asker.locator("#feedback .more").click()
    asker.wait_for_selector("#escalate-form:not([hidden])")
    asker.select_option("#esc-group", "it-support")
    asker.click("#esc-send")
    asker.wait_for_selector("#status.done #sent-ref")
    esc_id = asker.inner_text("#sent-ref")
    assert esc_id.startswith("esc-")
    assert asker.inner_text("#status").startswith(f"Sent to it-support — reference {esc_id}")
    assert asker.get_attribute("#sent-ref", "href") == f"#esc={esc_id}"

    # The link in the group's message: a member who is not an expert gets the form without the verify box.
    member = open_page("max", "it-support", fragment=f"esc={esc_id}")
    card = member.locator("#esc-one .esc")
    card.wait_for(timeout=15_000)
    assert card.locator(".q").inner_text() == QUESTION  # markup shown as text
    assert card.locator(".q b").count() == 0
    assert card.locator("textarea[name=text]").is_visible()
    assert card.locator("input[name=verify]").count() == 0
    # The token left the address bar; the deep link stayed.
    assert member.evaluate("location.hash") == f"#esc={esc_id}"

    expert = open_page("ivan", "it-support", fragment=f"esc={esc_id}")
    card = expert.locator("#esc-one .esc")
    card.wait_for(timeout=15_000)
    card.locator("textarea[name=text]").fill(ANSWER)
    card.locator("input[name=verify]").check()
    card.locator("button[type=submit]").click()
    expert.wait_for_selector("#esc-one .esc.answered", timeout=15_000)
    assert expert.locator("#esc-one .status.error").count() == 0

    # Back on the asker's page, the reference opens the question with its answer.
    asker.click("#sent-ref")
    one = asker.locator(f"#esc-one .esc[data-esc-id='{esc_id}']")
    one.wait_for(timeout=15_000)
    assert one.locator(".answer-text").inner_text() == ANSWER
    assert "verified" in one.locator(".answer-by").inner_text()
    assert one.locator(".answer-form").count() == 0  # the asker is not in the group: nothing to answer

    # A fresh visit from the e-mail's link shows the same; "My questions" lists it with its state.
    fresh = open_page("ulla", "staff", fragment=f"esc={esc_id}")
    fresh.wait_for_selector(f"#esc-one .esc[data-esc-id='{esc_id}'] .answer-text")
    assert fresh.locator("#esc-one .answer-text").inner_text() == ANSWER
    fresh.wait_for_selector("body[data-mine='loaded']")
    listed = fresh.locator(f"#mine .esc[data-esc-id='{esc_id}']")
    assert listed.locator(".state").inner_text() == "answered · verified"
    assert listed.locator(".answer-text").inner_text() == ANSWER
    fresh.screenshot(path=str(artifacts / "page-my-questions.png"), full_page=True)

    tab = open_page("ulla", "staff")
    tab.click("#tab-mine")
    tab.wait_for_selector(f"#mine .esc[data-esc-id='{esc_id}'] .answer-text", timeout=15_000)
    assert tab.locator("#view-ask").is_hidden()

    # Someone else's question by link: refused by the server, and the page says so.
    outsider = open_page("olga", "sales", fragment=f"esc={esc_id}")
    outsider.wait_for_selector("#esc-one .status.error", timeout=15_000)
    assert ANSWER not in outsider.content()
    for page in (asker, member, expert, fresh, tab, outsider):
        assert page.errors == []
