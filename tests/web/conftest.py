"""Fixtures of the web/ops area: a small real index, a real `kbsearch serve` subprocess, real Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kbsearch import Document, KnowledgeBase

SECRET = "test-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
KBSEARCH = str(Path(sys.executable).with_name("kbsearch"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: What only the finance group may read; must never reach anyone else.
RESTRICTED_SECRET = "4417-23-ZQX"

DOCS = [
    Document(id="vpn-reset", title="Reset your VPN password", kind="page",
             text="To reset your VPN password open the self-service portal at selfservice.example and choose "
                  "Reset VPN password. You will get a text message with a one-time code. "
                  "Note: <script>alert('x')</script> is not a password.",
             url="https://intranet.example/it/vpn.html#reset", group="it-support"),
    Document(id="printer-jam", title="Clearing a paper jam on the third floor printer", kind="page",
             text="Open tray 2, pull the green lever and remove the jammed paper gently. Close the tray.",
             url="https://intranet.example/it/printer.html#jam", group="it-support"),
    Document(id="expenses", title="Submitting travel expenses", kind="page",
             text="Submit travel expenses within 30 days in the expenses app with photos of every receipt.",
             url="https://intranet.example/finance/expenses.html", group="finance"),
    Document(id="payroll-bank", title="Payroll bank transfer details", kind="page",
             text=f"The payroll bank transfer routing number is {RESTRICTED_SECRET} at the central bank. Confidential.",
             url="https://intranet.example/finance/payroll.html", group="finance", allowed_groups=("finance",)),
    Document(id="holiday", title="How many holiday days do I get", kind="answer",
             text="Full-time staff get 28 holiday days a year plus public holidays.",
             questions=("annual leave allowance", "how much vacation do I have"), group="hr", accepted=True),
]
# Filler pages so TF-IDF statistics and calibration have something to work with.
_TOPICS = ["parking permit", "canteen menu", "fire drill", "badge replacement", "laptop loan", "meeting room booking",
           "visitor registration", "mobile phone contract", "coffee machine cleaning", "first aid kit",
           "bicycle storage", "office plants", "recycling rules", "desk booking", "lost and found"]
DOCS += [Document(id=f"filler-{i}", title=f"About the {t}", kind="page", group="facilities",
                  text=f"The {t} procedure: contact the facilities desk, fill in form F-{i} and wait for approval. "
                       f"Questions about the {t} go to the facilities team.",
                  url=f"https://intranet.example/facilities/{i}.html") for i, t in enumerate(_TOPICS)]


#: Peer groups of the test portal (kbsearch.toml in the server's working directory).
GROUPS_TOML = """
[[groups]]
name = "it-support"
description = "Laptops, VPN, passwords, badges, printers and door access"
keywords = ["vpn", "password", "laptop", "printer", "badge", "door"]
experts = ["ivan"]
members = ["max"]

[[groups]]
name = "finance"
description = "Payroll, expenses, invoices"
keywords = ["payroll", "expenses", "invoice"]

[[groups]]
name = "facilities"
description = "Buildings, parking, canteen, rooms"
keywords = ["parking", "canteen", "room"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_index(path: Path, docs: list[Document] = DOCS) -> Path:
    with KnowledgeBase.open(path) as kb:
        kb.rebuild(iter(docs))
    return path


def token_for(user: str, *groups: str) -> str:
    from kbsearch.web import make_token

    return make_token(user, groups, secret=SECRET)


class Server:
    """A real ``kbsearch serve`` subprocess on 127.0.0.1."""

    def __init__(self, index: Path, workdir: Path, extra_env: dict[str, str] | None = None,
                 config: str = GROUPS_TOML) -> None:
        self.index = index
        (workdir / "kbsearch.toml").write_text(config, encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        # The outbox loop stays off unless a test turns it on: tests run `deliver` when they mean to.
        env = dict(os.environ, KBSEARCH_WEB_SECRET=SECRET, KBSEARCH_PEERS_DELIVER_EVERY="0")
        env.update(extra_env or {})
        env.pop("KBSEARCH_CONFIG", None)
        self.log_path = workdir / f"serve-{self.port}.log"
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([KBSEARCH, "serve", "--index", str(index), "--port", str(self.port)],
                                     cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kbsearch serve exited: {self.logs()}")
            try:
                if requests.get(self.url + "api/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("kbsearch serve did not come up in 60 s")
            time.sleep(0.2)

    def api(self, method: str, path: str, *, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + "api/" + path, headers=headers, timeout=30, **kw)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("web-index") / "idx")


@pytest.fixture(scope="session")
def server(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(index_dir, tmp_path_factory.mktemp("web-serve"))
    try:
        yield srv
    finally:
        srv.stop()
    assert "Traceback" not in srv.logs(), srv.logs()  # no request ended in an unexpected error


@pytest.fixture(scope="module")
def kb(index_dir: Path) -> Iterator[KnowledgeBase]:
    """The session's test index, opened in this process (modules that need their own define ``kb``)."""
    with KnowledgeBase.open(index_dir, create=False) as base:
        yield base


@pytest.fixture(scope="module")
def client(kb: KnowledgeBase) -> object:
    """The WSGI app over ``kb`` through werkzeug's test client: the code path waitress runs."""
    from werkzeug.test import Client

    from kbsearch.web import create_app

    return Client(create_app(kb, secret=SECRET))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _fulfil_with(body: object):
    """A playwright route handler answering with ``body`` as JSON."""
    def handler(route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
    return handler


@pytest.fixture()
def open_page(browser, server, h):
    """Open the page in a fresh browser context: ``open_page(user, *groups, view=, fragment=, mobile=,
    fake=)``; ``fake`` maps an API path to the JSON it answers with (the rest is the real server).
    Each page collects its JavaScript errors in ``page.errors``."""
    contexts = []

    def open_(user: str | None = None, *groups: str, view: str = "", fragment: str = "", mobile: bool = False,
              fake: dict[str, object] | None = None):
        ctx = browser.new_context(viewport={"width": 390, "height": 844} if mobile else {"width": 1100, "height": 800},
                                  device_scale_factor=2 if mobile else 1)
        contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        for path, body in (fake or {}).items():
            page.route("**" + path, _fulfil_with(body))
        parts = ([f"token={h.token_for(user, *groups)}"] if user else []) + ([fragment] if fragment else [])
        page.goto(server.url + (f"?view={view}" if view else "") + ("#" + "&".join(parts) if parts else ""))
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


@pytest.fixture()
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def h():
    """The helpers of this conftest (tests import nothing from it: pytest runs with importlib mode)."""
    return sys.modules[__name__]
