"""A fault-injecting server: every fault leaves the good pages indexed and the failure reported."""

from __future__ import annotations

import threading
import time

from kbsearch import KnowledgeBase

GOOD = ["/good1.html", "/good2.html", "/flaky.html", "/ratelimited.html", "/malformed.html", "/reset-once.html"]
BAD = {
    "/always500.html": "HTTP 500",
    "/slow.html": "read timed out",
    "/reset.html": "connection reset",
    "/truncated.html": "truncated body",
    "/drip.html": "page took longer than page_timeout",
    "/loop1.html": "redirect loop",
    "/forbidden.html": "HTTP 403",
}
SKIPPED = {"/huge.html": "larger than max_bytes", "/huge-chunked.html": "larger than max_bytes"}


def _faulty_site(site, send, reset_connection, html):
    calls: dict[str, int] = {}
    stamps: dict[str, list[float]] = {}
    lock = threading.Lock()

    def count(path: str) -> int:
        with lock:
            calls[path] = calls.get(path, 0) + 1
            stamps.setdefault(path, []).append(time.monotonic())
            return calls[path]

    links = "".join(f'<a href="{p}">{p}</a> ' for p in [*GOOD, *BAD, *SKIPPED])
    site.page("/", html("Faulty", f"<h1>Fault index</h1><p>Links to every fault.</p>{links}"))
    site.page("/good1.html", html("Good one", "<h1 id='g1'>Good one</h1><p>Sturdy content about lighthouses.</p>"))
    site.page("/good2.html", html("Good two", "<h1 id='g2'>Good two</h1><p>Sturdy content about harbours.</p>"))

    def flaky(h):  # 503 twice, then fine
        if count("flaky") <= 2:
            send(h, 503, b"busy", headers={"Retry-After": "0"})
        else:
            send(h, 200, html("Flaky", "<h1 id='f'>Flaky</h1><p>Recovered content about tides.</p>").encode())

    def ratelimited(h):  # 429 with Retry-After: 1, then fine
        if count("ratelimited") == 1:
            send(h, 429, b"slow down", headers={"Retry-After": "1"})
        else:
            send(h, 200, html("Limited", "<h1 id='r'>Rate limited</h1><p>Patient content about buoys.</p>").encode())

    def always500(h):
        send(h, 500, b"broken")

    def slow(h):  # never answers within the read timeout
        time.sleep(3)
        send(h, 200, b"<html><body>too late</body></html>")

    def reset(h):
        reset_connection(h)

    def reset_once(h):
        if count("reset-once") == 1:
            reset_connection(h)
        else:
            send(h, 200, html("Reset once", "<h1 id='ro'>Reset once</h1><p>Resilient content about anchors.</p>").encode())

    def truncated(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "5000")
        h.end_headers()
        h.wfile.write(b"<html><body><p>only the beginning")
        h.close_connection = True
        h.connection.shutdown(2)

    def drip(h):  # one byte every 0.1 s: each read is quick, the page never ends in time
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            for _ in range(60):
                h.wfile.write(b"x")
                time.sleep(0.1)
        except OSError:
            pass
        h.close_connection = True

    def loop1(h):
        send(h, 302, b"", headers={"Location": "/loop2.html"})

    def loop2(h):
        send(h, 302, b"", headers={"Location": "/loop1.html"})

    def forbidden(h):
        send(h, 403, b"no")

    def huge(h):
        send(h, 200, b"<html><body>" + b"<p>big</p>" * 300_000 + b"</body></html>")

    def huge_chunked(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"<p>big</p>" * 10_000
        try:
            for _ in range(40):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        h.close_connection = True

    malformed = (b"<html><head><title>Broken</title><body><h2 id=m>Malformed <b>page</h2><p>Salvaged "
                 b"content about \x00 seagulls<div><table><tr><td>cell text<p>unclosed <i>italics "
                 b"</td></div></i></span><<<>>> trailing words about pelicans</body></html></html><<<")
    site.page("/malformed.html", malformed, content_type="text/html")
    for path, func in [("/flaky.html", flaky), ("/ratelimited.html", ratelimited), ("/always500.html", always500),
                       ("/slow.html", slow), ("/reset.html", reset), ("/reset-once.html", reset_once),
                       ("/truncated.html", truncated), ("/drip.html", drip), ("/loop1.html", loop1),
                       ("/loop2.html", loop2), ("/forbidden.html", forbidden), ("/huge.html", huge),
                       ("/huge-chunked.html", huge_chunked)]:
        site.route(path, func)
    return stamps


def test_every_fault_is_reported_and_good_pages_are_indexed(tmp_path, site, fast, html, raw):
    send, reset_connection = raw
    stamps = _faulty_site(site, send, reset_connection, html)
    kb = KnowledgeBase.open(tmp_path / "index")
    opts = {**fast, "read_timeout": 0.5, "page_timeout": 1.5, "retries": 2, "max_bytes": 1_000_000,
            "sitemaps": False, "respect_robots": False}
    started = time.monotonic()
    report = kb.crawl([site.url("/")], name="faulty", **opts)
    elapsed = time.monotonic() - started
    urls = {d.url.partition("#")[0] for d in kb.documents()}
    for path in GOOD:
        assert site.url(path) in urls, (path, report.errors)
    errors = {e["item"]: e["reason"] for e in report.errors}
    for path, reason in BAD.items():
        assert reason in errors.get(site.url(path), ""), (path, errors.get(site.url(path)))
    skips = {s["item"]: s["reason"] for s in report.skips}
    for path, reason in SKIPPED.items():
        assert reason in skips.get(site.url(path), ""), (path, skips.get(site.url(path)))
    assert report.failed == len(BAD) and not report.complete
    assert report.retries >= 4  # flaky twice, 429 once, reset-once once
    gap = stamps["ratelimited"][1] - stamps["ratelimited"][0]
    assert gap >= 0.9, f"Retry-After: 1 not honoured ({gap:.2f}s)"
    malformed = [d for d in kb.documents() if "/malformed.html" in d.url]
    text = " ".join(d.text for d in malformed)
    assert "seagulls" in text and "pelicans" in text
    assert elapsed < 30
    # A second run after the faults are fixed recrawls cleanly.
    for path in BAD:
        site.remove(path)
        site.page(path, html("Fixed", f"<h1 id='fixed'>Fixed {path}</h1><p>Now working fine: {path}.</p>"))
    again = kb.crawl([site.url("/")], name="faulty", **opts)
    assert again.failed == 0, again.errors
    assert {d.url.partition("#")[0] for d in kb.documents()} >= {site.url(p) for p in [*GOOD, *BAD]}
    kb.close()


def test_server_going_away_mid_crawl(tmp_path, site, fast, html, raw):
    send, reset_connection = raw
    pages = [f"/p{i}.html" for i in range(40)]
    site.page("/", html("Hub", "<p>hub</p>" + "".join(f'<a href="{p}">{p}</a>' for p in pages)))
    served = {"n": 0}
    lock = threading.Lock()

    def page(h):
        with lock:
            served["n"] += 1
            n = served["n"]
        if n == 10:
            threading.Thread(target=site.stop, daemon=True).start()  # the server shuts down mid-crawl
        if n >= 10:  # ...and its open keep-alive connections die with it
            reset_connection(h)
            return
        path = h.path
        send(h, 200, html(path, f"<h1 id='x'>{path}</h1><p>content of {path}</p>").encode())

    for p in pages:
        site.route(p, page)
    kb = KnowledgeBase.open(tmp_path / "index")
    report = kb.crawl([site.url("/")], name="going", **{**fast, "retries": 1, "host_failure_limit": 3,
                                                          "sitemaps": False, "respect_robots": False})
    assert 1 <= report.pages_parsed <= 40
    assert report.failed >= 1 and not report.complete
    assert report.failed + report.pages_parsed == 41
    assert any("host unreachable" in e["reason"] or "connection" in e["reason"] for e in report.errors)
    assert len(kb.ids(source="going")) == report.pages_parsed
    kb.close()
