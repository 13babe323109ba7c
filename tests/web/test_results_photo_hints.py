"""Results people can scan, phone photos that fit, and the server's "asked before" hint (issue 24),
against real ``kbsearch serve`` processes and real headless Chromium."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbsearch import Document

pytestmark = pytest.mark.slow

OFFICE = Document(id="handbook-office", title="13.7. Office Suites", kind="page",
                  text="LibreOffice is the office suite of the handbook's workstation: writer, calc and impress "
                       "open the usual documents and spreadsheets.",
                  headings=("The Debian Administrator's Handbook", "13. Workstation", "13.7. Office Suites"),
                  url="https://handbook.example/sect.office.html", updated="2026-05-04", group="it-support")


def noise_png(width: int, height: int) -> bytes:
    """A real PNG of random pixels (does not compress: about 3 bytes per pixel)."""
    raw = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def handbook_server(tmp_path_factory: pytest.TempPathFactory, h) -> Iterator[object]:
    index = h.build_index(tmp_path_factory.mktemp("handbook") / "idx", [*h.DOCS, OFFICE])
    srv = h.Server(index, tmp_path_factory.mktemp("handbook-serve"))
    try:
        yield srv
    finally:
        srv.stop()
    assert "Traceback" not in srv.logs(), srv.logs()


def test_results_show_page_breadcrumb_site_and_date(browser, handbook_server, h) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = ctx.new_page()
        page.goto(handbook_server.url + "#token=" + h.token_for("ulla", "staff"))
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        page.fill("#question", "which office suite opens spreadsheets, libreoffice calc?")
        page.click("#ask-button")
        page.wait_for_selector("body[data-state='shown']", timeout=15_000)
        card = page.locator(".hit[data-doc-id='handbook-office']")
        card.wait_for(timeout=15_000)
        assert card.locator(".crumbs").inner_text() == "The Debian Administrator's Handbook › 13. Workstation"
        assert card.locator(".title").inner_text() == "13.7. Office Suites"
        assert card.locator(".source").inner_text() == "handbook.example · updated 2026-05-04"
        # A result without headings or date shows neither line.
        other = page.locator(".hit:not([data-doc-id='handbook-office'])")
        if other.count():
            assert other.first.locator(".crumbs").is_hidden()
    finally:
        ctx.close()
    # The API gives ask's answers the same context (read through the caller's access filter).
    r = handbook_server.api("POST", "ask", token=h.token_for("ulla", "staff"),
                            json={"question": "which office suite opens spreadsheets, libreoffice calc?"})
    items = [a for a in r.json()["answers"] + r.json().get("closest", []) if a["id"] == "handbook-office"]
    assert items and items[0]["headings"][1] == "13. Workstation" and items[0]["updated"].startswith("2026-05-04")


def test_escalating_again_gets_the_servers_asked_before_hint(server, h) -> None:
    question = "the brindlecorn coffee machine on floor 3 blinks code C-19 every morning"
    ulla, max_ = h.token_for("uma", "staff"), h.token_for("max", "it-support")
    first = server.api("POST", "escalations", token=ulla, json={"question": question, "group": "it-support"})
    assert first.status_code == 201 and first.json()["similar"] == []
    again = server.api("POST", "escalations", token=max_, json={"question": "brindlecorn coffee machine blinks C-19"})
    assert again.status_code == 201
    assert [q["id"] for q in again.json()["similar"]] == [first.json()["id"]]
    # Someone who may not see the first one (another group's, not theirs) gets no hint of it.
    olga = server.api("POST", "escalations", token=h.token_for("oskar", "sales"),
                      json={"question": "brindlecorn coffee machine blinks C-19 again", "group": "facilities"})
    assert olga.status_code == 201 and olga.json()["similar"] == []


def test_photos_of_megabytes_are_taken(server, h) -> None:
    """A 1.4 MB and a 4.9 MB JPEG (under ``web.max_photo_bytes``) are stored, not refused as too large."""
    limit = server.api("GET", "health").json()["limits"]["max_photo_bytes"]
    for size in (1_400_000, limit - 200_000):
        data = b"\xff\xd8\xff" + os.urandom(size)
        r = server.api("POST", "escalations", token=h.token_for("uma", "staff"),
                       data={"question": "the tarnwell belt in hall 9 squeaks", "group": "it-support"},
                       files={"photo": ("belt.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
        assert r.json()["attachments"][0]["size"] == len(data)
    r = server.api("POST", "escalations", token=h.token_for("uma", "staff"),
                   data={"question": "the tarnwell belt in hall 9 squeaks", "group": "it-support"},
                   files={"photo": ("belt.jpg", b"\xff\xd8\xff" + os.urandom(limit), "image/jpeg")})
    assert r.status_code == 413 and r.json()["type"] == "RequestTooLarge"


def _to_form(page, question: str) -> None:
    page.fill("#question", question)
    page.click("#ask-button")
    page.wait_for_selector("body[data-state='shown']", timeout=15_000)
    if page.locator("#escalate-form").is_hidden():
        page.locator("#feedback .more").click()
    page.wait_for_selector("#escalate-form:not([hidden])")


def test_big_phone_photo_is_downscaled_and_a_413_shows_beside_the_form(open_page, server, h, artifacts,
                                                                      tmp_path: Path) -> None:
    big = noise_png(1400, 1400)
    limit = server.api("GET", "health").json()["limits"]["max_photo_bytes"]
    assert len(big) > limit  # sent as it is, the server would refuse it
    page = open_page("uma", "staff", mobile=True)
    _to_form(page, "the tarnwell conveyor belt in hall 5 squeaks")
    page.set_input_files("#esc-photo", files=[{"name": "IMG_2041.png", "mimeType": "image/png", "buffer": big}])
    page.click("#esc-send")
    page.wait_for_selector("#status.done #sent-ref", timeout=30_000)
    assert page.evaluate("document.body.dataset.photoResized") == "1"
    esc_id = page.inner_text("#sent-ref")
    esc = server.api("GET", f"escalations/{esc_id}", token=h.token_for("uma", "staff")).json()
    [att] = esc["attachments"]
    assert att["content_type"] == "image/jpeg" and att["filename"] == "IMG_2041.jpg"
    assert att["size"] <= 1500 * 1024

    # Bytes the browser cannot decode are sent as they are: the server's 413 appears in the form.
    junk = b"\x89PNG\r\n\x1a\n" + os.urandom(limit + 1000)
    _to_form(page, "the tarnwell conveyor belt in hall 6 squeaks too")
    page.set_input_files("#esc-photo", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": junk}])
    page.click("#esc-send")
    error = page.locator("#escalate-form #esc-error")
    error.wait_for(state="visible", timeout=30_000)
    assert error.inner_text().startswith("The photo is too large to send: request too large")
    assert page.locator("#escalate-form").is_visible() and error.is_visible()
    box = error.bounding_box()
    assert box is not None and 0 <= box["y"] < 844  # on screen, beside the form, not far above it
    page.screenshot(path=str(artifacts / "photo-413-phone.png"))
    assert page.errors == []
