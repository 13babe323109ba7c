"""The whole loop on a phone (issue 24, "done when"), all real: a ``kbsearch serve`` process, an aiosmtpd
SMTP server, headless Chromium at 390×844.

ask → "not sure — closest matches" → escalate with a photo → the team's e-mail → the expert takes the
question and answers on the expert view (seeing what the asker was shown) → the asker's e-mail →
"My questions" shows the answer → the next person asking in other words finds it.  Screenshots go to
tests/artifacts/walk-*.png (copies are in docs/).
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

pytestmark = pytest.mark.slow

QUESTION = "the hydraulic press on line 4 leaks oil near the valve"
OTHER_WORDS = "oil is dripping from the press on line four"
ANSWER = "Close valve V-12, replace the O-ring behind it (kit 4417 in the blue cabinet) and refill with HLP 46."


class Sink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.messages.append({"to": list(envelope.rcpt_tos), "msg": message_from_bytes(envelope.content)})
        return "250 OK"

    def wait_for(self, address: str, timeout: float = 20.0) -> Any:
        """The first message to ``address`` (the server delivers it in its own process, so we wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if m["to"] == [address]:
                        return m["msg"]
            time.sleep(0.1)
        raise AssertionError(f"no e-mail to {address}; got {[m['to'] for m in self.messages]}")


def body(msg: Any) -> str:
    part = msg.get_payload(0) if msg.is_multipart() else msg
    return part.get_payload(decode=True).decode("utf-8")


def png(width: int = 320, height: int = 200) -> bytes:
    raw = b"".join(b"\x00" + b"\x40\x60\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory, h) -> Iterator[tuple[Any, Sink]]:
    sink = Sink()
    port = h.free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    config = f"""
[peers]
smtp_host = "127.0.0.1"
smtp_port = {port}
asker_email_domain = "example.com"
escalation_url = "https://kb.example/#esc={{id}}"
{h.GROUPS_TOML}
[[groups]]
name = "maintenance"
description = "Machines, presses, conveyors and hydraulic leaks in the plants"
keywords = ["hydraulic", "press", "conveyor", "leak", "oil", "valve"]
experts = ["mara"]
  [[groups.channels]]
  type = "email"
  name = "mail"
  to = ["maint-team@example.com"]
"""
    index = h.build_index(tmp_path_factory.mktemp("plant") / "idx")
    srv = h.Server(index, tmp_path_factory.mktemp("plant-serve"), config=config)
    try:
        yield srv, sink
    finally:
        srv.stop()
        controller.stop()
    assert "Traceback" not in srv.logs(), srv.logs()


def test_the_whole_loop_on_a_phone(browser, plant, h, artifacts) -> None:
    server, sink = plant
    contexts = []

    def phone(user: str, *groups: str, view: str = ""):
        ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        contexts.append(ctx)
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(server.url + (f"?view={view}" if view else "") + "#token=" + h.token_for(user, *groups))
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        return page

    try:
        # 1. Ask: search is not sure, but still shows the closest matches and the form.
        asker = phone("ulla", "staff")
        asker.fill("#question", QUESTION)
        asker.click("#ask-button")
        asker.wait_for_selector("body[data-state='shown']", timeout=15_000)
        assert asker.get_attribute("body", "data-decision") == "ESCALATE"
        assert asker.inner_text("#closest-heading") == "Not sure — closest matches"
        shown = asker.locator("#results .hit").count()
        assert shown >= 1
        asker.wait_for_selector("#escalate-form:not([hidden])")
        asker.screenshot(path=str(artifacts / "walk-1-closest.png"), full_page=True)

        # 2. Escalate with a photo to maintenance.
        asker.select_option("#esc-group", "maintenance")
        asker.fill("#esc-details", "Puddle under the press since the night shift.")
        asker.set_input_files("#esc-photo", files=[{"name": "leak.png", "mimeType": "image/png", "buffer": png()}])
        asker.click("#esc-send")
        asker.wait_for_selector("#status.done #sent-ref", timeout=15_000)
        esc_id = asker.inner_text("#sent-ref")
        assert asker.inner_text("#status").startswith(f"Sent to maintenance — reference {esc_id}")
        asker.screenshot(path=str(artifacts / "walk-2-sent.png"))
        team = sink.wait_for("maint-team@example.com")
        assert QUESTION in body(team) and esc_id in body(team)

        # 3. The expert's view: the question, its photo, what the asker was shown; take it, answer it.
        expert = phone("mara", "maintenance", view="expert")
        card = expert.locator(".esc", has_text=QUESTION)
        card.wait_for(timeout=15_000)
        card.locator("img.photo").wait_for(state="visible", timeout=10_000)
        assert card.locator(".seen summary").inner_text() == f"Already shown to the asker ({shown})"
        card.locator("button.take").click()
        expert.wait_for_selector(".esc[data-acted='1']", timeout=15_000)
        card = expert.locator(".esc", has_text=QUESTION)
        assert card.locator(".claim-state").inner_text().startswith("You have taken it")
        card.locator("textarea[name=text]").fill(ANSWER)
        card.locator("input[name=verify]").check()
        expert.screenshot(path=str(artifacts / "walk-3-expert.png"), full_page=True)
        card.locator("button[type=submit]").click()
        expert.locator(".esc", has_text=QUESTION).wait_for(state="detached", timeout=15_000)  # answered: out of the queue
        done = server.api("GET", f"escalations/{esc_id}", token=h.token_for("mara", "maintenance")).json()
        assert (done["status"], done["answered_by"], done["claimed_by"]) == ("verified", "mara", "mara")
        assert expert.errors == []

        # 4. The asker hears back by e-mail (their name + asker_email_domain) ...
        mail = sink.wait_for("ulla@example.com")
        assert "Your question answered" in " ".join(str(mail["Subject"]).split())
        assert ANSWER in body(mail) and f"https://kb.example/#esc={esc_id}" in body(mail)
        # ... and finds the answer under "My questions".
        mine = phone("ulla", "staff", view="mine")
        mine.wait_for_selector("body[data-mine='loaded']", timeout=15_000)
        card = mine.locator(f"#mine .esc[data-esc-id='{esc_id}']")
        assert card.locator(".answer-text").inner_text() == ANSWER
        assert card.locator(".state").inner_text() == "answered · verified"
        mine.screenshot(path=str(artifacts / "walk-4-my-questions.png"), full_page=True)

        # 5. The next person, in other words, gets the answer first.
        other = phone("vera", "staff")
        other.fill("#question", OTHER_WORDS)
        other.click("#ask-button")
        other.wait_for_selector("body[data-state='shown']", timeout=15_000)
        first = other.locator("#results .hit").first
        assert first.locator(".title").inner_text() == QUESTION
        assert "verified" in first.locator(".badges").inner_text()
        assert "O-ring" in first.locator(".snippet").inner_text()
        other.screenshot(path=str(artifacts / "walk-5-next-asker.png"), full_page=True)
        for page in (asker, mine, other):
            assert page.errors == []
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    finally:
        for ctx in contexts:
            ctx.close()
