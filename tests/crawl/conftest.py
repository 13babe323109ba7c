"""Real HTTP servers on 127.0.0.1 for the crawler tests: a programmable site and its fault routes.

`SiteServer` serves pages from a dict the test can change between crawls (to test incremental
recrawls), supports ETag / Last-Modified (conditional GET, 304) per page, records every request
(path and headers) and lets a route be any function writing a raw response (faults).
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kbsearch import KnowledgeBase, Settings

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    etag: bool = True
    last_modified: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    version: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # faults close sockets on purpose; keep the test output clean


class SiteServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with programmable routes."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.handlers: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._clock = 1_700_000_000
        site = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site._dispatch(self)

        self._server = _Server(("127.0.0.1", 0), RequestHandler)
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def page(self, path: str, html: str | bytes, *, encoding: str = "utf-8", **kw: object) -> None:
        """Serve ``html`` at ``path`` (replacing any earlier page there: a new version)."""
        body = html.encode(encoding) if isinstance(html, str) else html
        old = self.pages.get(path)
        self._clock += 100
        self.pages[path] = Page(body=body, version=(old.version + 1 if old else 0), **kw)  # type: ignore[arg-type]
        self.pages[path].headers.setdefault("X-Version", str(self._clock))

    def route(self, path: str, handler: Handler) -> None:
        self.handlers[path] = handler

    def remove(self, path: str) -> None:
        self.pages.pop(path, None)
        self.handlers.pop(path, None)

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits[path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- serving -------------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.hits[h.path] += 1
            self.requests.append((h.path, {k.lower(): v for k, v in h.headers.items()}))
        bare = h.path.partition("?")[0]
        handler = self.handlers.get(h.path) or self.handlers.get(bare)
        if handler is not None:
            handler(h)
            return
        page = self.pages.get(h.path)
        if page is None:
            send(h, 404, b"<html><body>not found</body></html>")
            return
        etag = '"' + hashlib.blake2b(page.body, digest_size=8).hexdigest() + '"'
        lastmod = formatdate(int(page.headers["X-Version"]), usegmt=True)
        headers = {k: v for k, v in page.headers.items() if k != "X-Version"}
        if page.etag:
            headers["ETag"] = etag
            if h.headers.get("If-None-Match") == etag:
                send(h, 304, b"", headers=headers)
                return
        if page.last_modified:
            headers["Last-Modified"] = lastmod
            if not page.etag and h.headers.get("If-Modified-Since") == lastmod:
                send(h, 304, b"", headers=headers)
                return
        send(h, page.status, page.body, content_type=page.content_type, headers=headers)


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, *, content_type: str | None = "text/html; charset=utf-8",
         headers: dict[str, str] | None = None) -> None:
    """Write a complete response with Content-Length."""
    h.send_response(status)
    if content_type and status not in (304,):
        h.send_header("Content-Type", content_type)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    if status != 304:
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if body and status != 304:
        h.wfile.write(body)


def reset_connection(h: BaseHTTPRequestHandler) -> None:
    """Abort the TCP connection with a RST (no response at all)."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.connection.close()


def html_page(title: str, body: str, head: str = "") -> str:
    """A page with typical chrome (nav, header, footer, sidebar) around ``body``."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>{head}</head>
<body>
<header class="site-header">HEADERCHROME Intranet</header>
<nav><a href="/">Home</a> NAVCHROME</nav>
<div class="sidebar">SIDEBARCHROME</div>
<main>{body}</main>
<footer>FOOTERCHROME © Example</footer>
<script>var SCRIPTCHROME = 1;</script>
</body></html>"""


@pytest.fixture
def site() -> Iterator[SiteServer]:
    server = SiteServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_site() -> Iterator[Callable[[], SiteServer]]:
    servers: list[SiteServer] = []

    def make() -> SiteServer:
        servers.append(SiteServer())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


#: Crawl settings that keep tests fast: in-process parsing, short timeouts, quick back-off.
FAST = dict(parse_workers=0, fetch_threads=4, connect_timeout=2.0, read_timeout=2.0, page_timeout=5.0,
            retries=2, backoff=0.05, retry_after_max=2.0, batch_size=50)


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    settings = Settings.load(config_file=None, env={})
    base = KnowledgeBase.open(tmp_path / "index", settings=settings)
    try:
        yield base
    finally:
        base.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def fast() -> dict[str, object]:
    """Crawl options for tests (a fresh copy each time)."""
    return dict(FAST)


FAQ_BODY = """
<h1 id="faq">Intranet FAQ</h1>
<p>Answers to the questions the help desk hears most.</p>
<section id="reset-vpn"><h2>How do I reset my VPN password?<a class="headerlink" href="#reset-vpn">¶</a></h2>
<p>Open the self-service portal, choose <b>VPN</b> and follow the reset wizard; the new password
works within five minutes.</p></section>
<section id="printer"><h2>Why does the third-floor printer jam on duplex jobs?</h2>
<p>The duplex unit needs 80 g/m² paper; thinner paper curls and jams. Load the right tray.</p></section>
<section id="expenses"><h2>Where do I submit travel expenses?</h2>
<p>In the finance tool under Expenses, with scanned receipts attached, within thirty days.</p></section>
<h2><a id="wifi"></a>Which wifi network should guests use?</h2>
<p>Guests use the network named Visitors; the password is printed at reception.</p>
"""


def build_intranet(site: SiteServer, external: SiteServer | None = None) -> SiteServer:
    """The fixture intranet: links, robots.txt, sitemap, redirects, canonical, noindex, encodings."""
    ext = external.url("/outside.html") if external else "http://192.0.2.1/never.html"
    site.page("/robots.txt", f"User-agent: *\nDisallow: /private/\nSitemap: {site.url('/sitemap.xml')}\n",
              content_type="text/plain")
    site.page("/sitemap.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{site.url('/orphan.html')}</loc></url>
  <url><loc>{ext}</loc></url>
</urlset>""", content_type="application/xml")
    site.page("/", html_page("Intranet home", f"""
<h1>Welcome to the intranet</h1><p>Start here for guides and answers.</p>
<ul>
<li><a href="/guide/">Guide</a> <a href="/guide/index.html">Guide again</a> <a href="guide/index.html#top">and again</a></li>
<li><a href="/faq.html">FAQ</a> <a href="/print/faq.html">printable FAQ</a></li>
<li><a href="/private/secret.html">private</a></li>
<li><a href="/noindex.html">draft</a> <a href="/nofollow.html">links page</a></li>
<li><a href="/old-page">old page</a></li>
<li><a href="/latin1.html">latin1</a> <a href="/bom.html">bom</a> <a href="/cp1251.html">cp1251</a>
    <a href="/mixed.html">mixed</a></li>
<li><a href="/files/report.pdf">pdf</a> <a href="/data">data</a> <a href="/listing/">listing</a></li>
<li><a href="/calendar?month=1">calendar</a> <a href="/loop/">loop</a></li>
<li><a href="{ext}">outside</a> <a href="mailto:help@example.com">mail</a>
    <a href="javascript:void(0)">js</a></li>
<li><a href="/auth/area.html">staff area</a></li>
</ul>"""))
    site.page("/guide/", html_page("Guide", """
<h1 id="guide">Onboarding guide</h1><p>Everything a new colleague needs in the first week.</p>
<h2 id="accounts">Accounts</h2><p>Your accounts are created by IT before your first day.</p>
<h3 id="badge">Badge</h3><p>Collect your badge at reception with photo identification.</p>
<h2 id="laptop">Laptop setup</h2><p>Install the device management profile, then sync the wiki.</p>
"""))
    site.page("/faq.html", html_page("FAQ", FAQ_BODY))
    site.page("/print/faq.html", html_page("FAQ (print)", FAQ_BODY,
                                          head=f'<link rel="canonical" href="{site.url("/faq.html")}">'))
    site.page("/private/secret.html", html_page("Secret", "<p>robots say no</p>"))
    site.page("/noindex.html", html_page("Draft", '<p>DRAFTTEXT do not index</p><a href="/from-draft.html">x</a>',
                                         head='<meta name="robots" content="noindex">'))
    site.page("/from-draft.html", html_page("Reached from a draft", "<p>Followed from a noindex page.</p>"))
    site.page("/nofollow.html", html_page("Links", '<p>Link collection page.</p><a href="/hidden.html">h</a>',
                                          head='<meta name="robots" content="nofollow">'))
    site.page("/hidden.html", html_page("Hidden", "<p>never reached</p>"))
    site.route("/old-page", lambda h: send(h, 301, b"", headers={"Location": "/guide/new.html"}))
    site.page("/guide/new.html", html_page("New page", '<h1 id="new">Moved here</h1><p>The relocated policy text.</p>'))
    site.page("/orphan.html", html_page("Orphan", "<h1>Orphan page</h1><p>Only the sitemap knows the orphanage.</p>"))
    site.page("/latin1.html", '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head>'
              '<body><p>Caf\xe9 cr\xe8me br\xfbl\xe9e in the canteen</p></body></html>', encoding="latin-1",
              content_type="text/html")
    site.page("/bom.html", b"\xef\xbb\xbf<html><head><title>BOM</title></head><body><p>na\xc3\xafve fa\xc3\xa7ade"
              b" policy</p></body></html>", content_type="text/html")
    site.page("/cp1251.html", "<html><head><title>Cyrillic</title></head><body><p>Привет мир отдел кадров</p>"
              "</body></html>", encoding="cp1251", content_type="text/html; charset=windows-1251")
    site.page("/mixed.html", "<html><head><meta charset='utf-8'><title>Mixed</title></head><body><p>résumé "
              "and ".encode() + b"caf\xe9 together</p></body></html>", content_type="text/html")
    site.page("/files/report.pdf", b"%PDF-1.4 not fetched", content_type="application/pdf")
    site.page("/data", b'{"json": true}', content_type="application/json")
    site.page("/listing/", "<html><head><title>Directory listing for /listing/</title></head><body>"
              "<ul><li><a href='/listing/item.html'>item.html</a></li></ul></body></html>")
    site.page("/listing/item.html", html_page("Item", "<p>Found through a directory listing.</p>"))

    def calendar(h: object) -> None:
        month = int(h.path.partition("=")[2] or 0)  # type: ignore[attr-defined]
        send(h, 200, html_page(f"Month {month}", f'<p>Events in month {month}</p>'  # type: ignore[arg-type]
                               f'<a href="/calendar?month={month + 1}">next</a>').encode())
    site.route("/calendar", calendar)

    def loop(h: object) -> None:
        send(h, 200, html_page("Loop", '<p>relative link loop</p><a href="a/">deeper</a>').encode())  # type: ignore[arg-type]
    site.route("/loop/", loop)
    for depth in range(1, 8):
        site.route("/loop/" + "a/" * depth, loop)

    def auth_area(h: object) -> None:
        if h.headers.get("Authorization") == "Bearer s3cret-T0KEN-xyz":  # type: ignore[attr-defined]
            send(h, 200, html_page("Staff area", "<h1 id='staff'>Staff handbook</h1>"  # type: ignore[arg-type]
                                   "<p>The staff handbook covers parental leave.</p>").encode())
        else:
            send(h, 401, b"<html><body>login required</body></html>", headers={"WWW-Authenticate": "Bearer"})  # type: ignore[arg-type]
    site.route("/auth/area.html", auth_area)
    if external is not None:
        external.page("/outside.html", html_page("Outside", "<p>outside the scope</p>"))
    return site


@pytest.fixture
def intranet(make_site: Callable[[], SiteServer]) -> tuple[SiteServer, SiteServer]:
    """(intranet site, an external site it links to that must never be fetched)."""
    external = make_site()
    return build_intranet(make_site(), external), external


@pytest.fixture
def html() -> Callable[..., str]:
    """`html_page`: a page with typical chrome around a body."""
    return html_page


@pytest.fixture
def raw() -> tuple[Callable[..., None], Callable[..., None]]:
    """(`send`, `reset_connection`) for fault routes."""
    return send, reset_connection
