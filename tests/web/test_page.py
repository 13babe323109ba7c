"""The page employees use, driven in real headless Chromium against a real ``kbsearch serve``.

Screenshots of each main screen go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import struct
import zlib

import pytest

pytestmark = pytest.mark.slow

ESCALATED_QUESTION = "the badge reader at the north door of the warehouse blinks orange and beeps twice"
PEER_ANSWER = "Hold the badge flat for three seconds; orange twice means the badge needs re-encoding at reception."


def tiny_png(width: int = 160, height: int = 100) -> bytes:
    """A real PNG image (orange rectangle), made here so the test needs no binary fixture."""
    raw = b"".join(b"\x00" + b"\xff\x88\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def ask(page, question: str) -> str:
    page.fill("#question", question)
    page.click("#ask-button")
    page.wait_for_selector("body[data-state='shown']", timeout=15_000)
    return page.get_attribute("body", "data-decision") or ""


def test_ask_shows_the_answer_with_link_and_highlight(open_page, artifacts):
    page = open_page("ulla", "staff")
    decision = ask(page, "how do I reset my VPN password")
    assert decision in ("ANSWER", "SUGGEST")
    first = page.locator(".hit").first
    assert first.locator(".title").inner_text() == "Reset your VPN password"
    assert first.locator(".title").get_attribute("href") == "https://intranet.example/it/vpn.html#reset"
    marks = first.locator(".snippet mark").all_inner_texts()
    assert any(m.lower() in ("vpn", "password", "reset") for m in marks)
    # the page text says <script> literally: it was shown, not run, and no element was created from it
    assert "<script>" in first.locator(".snippet").inner_text()
    assert page.locator(".snippet script").count() == 0
    page.screenshot(path=str(artifacts / "page-answer.png"), full_page=True)
    # One feedback prompt for the answer set, not one per card.
    assert page.locator("#feedback").count() == 1 and page.locator(".hit .solved").count() == 0
    page.locator("#feedback .solved").click()
    page.wait_for_selector("#status.done")
    assert "Glad it helped" in page.inner_text("#status")
    assert page.inner_text("#feedback") == "Thanks! Glad it helped."
    assert page.errors == []


def test_escalate_with_photo_expert_answers_then_asking_again_shows_it(open_page, server, artifacts):
    asker = open_page("ulla", "staff")
    ask(asker, ESCALATED_QUESTION)
    if asker.locator("#escalate-form").is_hidden():
        asker.locator("#feedback .more").click()
    asker.wait_for_selector("#escalate-form:not([hidden])")
    options = asker.locator("#esc-group option").all_inner_texts()
    assert any(o.startswith("it-support") for o in options), options
    asker.select_option("#esc-group", "it-support")
    asker.fill("#esc-details", "Happens since Monday, only at the north door.")
    asker.set_input_files("#esc-photo", files=[{"name": "door.png", "mimeType": "image/png", "buffer": tiny_png()}])
    asker.screenshot(path=str(artifacts / "page-escalate.png"), full_page=True)
    asker.click("#esc-send")
    asker.wait_for_selector("#status.done")
    assert "Sent to it-support" in asker.inner_text("#status")

    expert = open_page("ivan", "it-support", view="expert")
    card = expert.locator(".esc", has_text=ESCALATED_QUESTION)
    card.wait_for(timeout=15_000)
    assert "Happens since Monday" in card.locator(".details").inner_text()
    photo = card.locator("img.photo")
    photo.wait_for(state="visible", timeout=10_000)
    assert expert.evaluate("(img) => img.naturalWidth", photo.element_handle()) == 160
    expert.screenshot(path=str(artifacts / "page-expert.png"), full_page=True)
    card.locator("textarea[name=text]").fill(PEER_ANSWER)
    card.locator("input[name=verify]").check()
    card.locator("button[type=submit]").click()
    card.wait_for(state="detached", timeout=15_000)  # answered: no longer in the open queue

    again = open_page("ulla", "staff")
    ask(again, ESCALATED_QUESTION)
    first = again.locator(".hit").first
    assert first.locator(".title").inner_text() == ESCALATED_QUESTION
    assert "peer answer" in first.locator(".badges").inner_text()
    assert "verified" in first.locator(".badges").inner_text()
    assert "re-encoding" in first.locator(".snippet").inner_text()
    again.screenshot(path=str(artifacts / "page-answered.png"), full_page=True)
    assert asker.errors == [] and expert.errors == [] and again.errors == []


def test_user_without_access_never_sees_restricted_text(open_page, artifacts, h):
    question = "payroll bank transfer routing number"
    for page in (open_page("ulla", "staff"), open_page()):
        ask(page, question)
        assert h.RESTRICTED_SECRET not in page.content()
        assert "payroll-bank" not in page.content()
    page.screenshot(path=str(artifacts / "page-restricted-outsider.png"), full_page=True)
    insider = open_page("fiona", "finance")
    ask(insider, question)
    assert h.RESTRICTED_SECRET in insider.locator("#results").inner_text()  # the same page can show it


def test_anonymous_visitor_cannot_escalate_and_sees_why(open_page):
    page = open_page()
    assert page.inner_text("#who") == "not signed in"
    assert page.locator("#tab-expert").is_hidden()
    # Words nothing in the index matches (other tests add peer answers to the shared index), so the
    # page offers to ask the peers at once.
    assert ask(page, "zorbling quixotic marmalade flumph") == "ESCALATE"
    assert page.locator("#escalate-form").is_hidden()
    assert re.search("Sign in through your portal", page.inner_text("#status"))


def test_mobile_screenshot_of_the_page(open_page, artifacts):
    page = open_page("ulla", "staff", mobile=True)
    ask(page, "how many holiday days do I get per year")
    assert page.locator(".hit").first.is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling on a phone
    page.screenshot(path=str(artifacts / "page-mobile.png"), full_page=False)
