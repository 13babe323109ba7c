"""End-to-end crawls of the fixture intranet served on 127.0.0.1: scope, conventions, extraction, auth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kbsearch import KnowledgeBase
from kbsearch.sources.crawl.state import STATE_FILE


def _docs_by_url(kb: KnowledgeBase) -> dict[str, object]:
    return {d.url: d for d in kb.documents()}


def test_crawl_indexes_sections_and_follows_the_conventions(kb, intranet, fast):
    site, external = intranet
    report = kb.crawl([site.url("/")], name="intranet", **fast)
    docs = _docs_by_url(kb)
    urls = set(docs)

    # Sections point at page#anchor; headings carry the path; chrome is gone.
    assert site.url("/guide/#badge") in urls
    badge = docs[site.url("/guide/#badge")]
    assert badge.title == "Badge"
    assert badge.headings[-2:] == ("Onboarding guide", "Accounts")
    assert badge.source == "intranet"
    all_text = " ".join(d.text + " " + d.title for d in docs.values())
    for chrome in ("NAVCHROME", "HEADERCHROME", "FOOTERCHROME", "SIDEBARCHROME", "SCRIPTCHROME", "¶"):
        assert chrome not in all_text
    assert set(kb.ids(source="intranet")) == {d.id for d in docs.values()}

    # robots.txt: /private/ never fetched, reported as skipped.
    assert site.count("/private/secret.html") == 0
    assert {"item": site.url("/private/secret.html"), "reason": "disallowed by robots.txt"} in report.skips
    # The User-Agent names kbsearch.
    assert all("kbsearch" in headers["user-agent"] for _, headers in site.requests)

    # Sitemap-only page found; out-of-scope site never contacted.
    assert site.url("/orphan.html") in urls
    assert report.sitemap_urls >= 1
    assert sum(external.hits.values()) == 0

    # noindex: not indexed but followed; nofollow: indexed, links not followed.
    assert not any("DRAFTTEXT" in d.text for d in docs.values())
    assert site.url("/from-draft.html") in urls
    assert site.url("/nofollow.html") in urls and site.count("/hidden.html") == 0
    assert report.skip_reasons["noindex"] == 1

    # One page, one fetch: /guide/ and /guide/index.html are the same page.
    assert site.count("/guide/") + site.count("/guide/index.html") == 1
    # Redirect followed within scope; the page is indexed under its new URL.
    assert site.url("/guide/new.html#new") in urls
    assert not any("/old-page" in u for u in urls)
    # rel=canonical: the printable copy is not indexed separately.
    assert not any("/print/" in u for u in urls)
    assert report.skip_reasons["duplicate of its canonical URL"] == 1

    # Encodings decoded from the bytes.
    assert "Café crème brûlée" in docs[site.url("/latin1.html")].text
    assert "naïve façade" in docs[site.url("/bom.html")].text
    assert "Привет мир" in docs[site.url("/cp1251.html")].text
    assert "résumé and café together" in docs[site.url("/mixed.html")].text

    # Non-HTML, directory listings, traps: skipped with reasons, bounded.
    assert site.count("/files/report.pdf") == 0
    assert report.skip_reasons["not HTML (.pdf)"] == 1
    assert report.skip_reasons["not HTML (application/json)"] == 1
    assert report.skip_reasons["directory listing"] == 1
    assert site.url("/listing/item.html") in urls
    calendar_hits = sum(n for path, n in site.hits.items() if path.startswith("/calendar"))
    assert calendar_hits <= 20
    assert any(r.startswith("query-string limit") for r in report.skip_reasons)
    assert sum(n for path, n in site.hits.items() if path.startswith("/loop/")) <= 4
    assert report.skip_reasons["repeated path segments (link loop)"] == 1

    # Without credentials the staff area fails with a reported 401; the rest is complete.
    assert {"item": site.url("/auth/area.html"), "reason": "HTTP 401 Unauthorized"} in report.errors
    assert report.failed == 1 and not report.complete
    assert report.pages_parsed >= 15 and report.added == len(docs)


def test_faq_question_finds_its_section_first(kb, intranet, fast):
    site, _ = intranet
    kb.crawl([site.url("/")], name="intranet", **fast)
    for question, anchor in [("How do I reset my VPN password?", "reset-vpn"),
                             ("Why does the third-floor printer jam on duplex jobs?", "printer"),
                             ("Which wifi network should guests use?", "wifi")]:
        hits = kb.search(question)
        assert hits, question
        assert hits[0].url == site.url(f"/faq.html#{anchor}"), (question, [h.url for h in hits[:3]])


def test_bearer_auth_from_env_is_used_and_never_stored_or_logged(kb, intranet, fast, monkeypatch, caplog, tmp_path):
    site, _ = intranet
    secret = "s3cret-T0KEN-xyz"
    monkeypatch.setenv("INTRANET_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    report = kb.crawl([site.url("/")], name="intranet", auth={"bearer_token_env": "INTRANET_TOKEN"},
                      allowed_groups=["staff"], **fast)
    assert report.failed == 0 and report.complete
    staff = [d for d in kb.documents() if "/auth/area.html" in d.url]
    assert staff and staff[0].allowed_groups == ("staff",)
    assert kb.search("staff handbook parental leave", user_groups=["staff"])[0].url.endswith("/auth/area.html#staff")
    assert not any("/auth/" in h.url for h in kb.search("staff handbook parental leave"))  # public: hidden
    # The secret is nowhere: not in the index files, the crawl state, the report or the logs.
    assert secret not in json.dumps(report.to_dict())
    assert secret not in caplog.text
    for path in Path(kb.root).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert (Path(kb.root) / STATE_FILE).is_file()


def test_missing_secret_is_a_clear_config_error(kb, intranet, fast, monkeypatch):
    site, _ = intranet
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    from kbsearch import ConfigError

    with pytest.raises(ConfigError, match="NO_SUCH_TOKEN_VAR is not set"):
        kb.crawl([site.url("/")], auth={"bearer_token_env": "NO_SUCH_TOKEN_VAR"}, **fast)
    assert sum(site.hits.values()) == 0


def test_basic_auth_and_cookies_from_a_secrets_file(kb, site, fast, tmp_path):
    import base64

    secrets = tmp_path / "secrets.env"
    secrets.write_text("# crawler secrets\nWIKI_USER=crawler\nWIKI_PASS='pa ss'\nWIKI_SESSION=abc123\n")

    expected = "Basic " + base64.b64encode(b"crawler:pa ss").decode()
    seen: list[tuple[str | None, str | None]] = []

    def handler(h):
        seen.append((h.headers.get("Authorization"), h.headers.get("Cookie")))
        body = b"<html><head><title>Wiki</title></head><body><p>wiki content for members</p></body></html>"
        status = 200 if h.headers.get("Authorization") == expected else 401
        h.send_response(status)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    site.route("/wiki/", handler)
    report = kb.crawl([site.url("/wiki/")], name="wiki", **fast,
                      auth={"username_env": "WIKI_USER", "password_env": "WIKI_PASS", "secrets_file": str(secrets),
                            "cookies_env": {"session": "WIKI_SESSION"}})
    assert report.failed == 0, report.errors
    assert seen and seen[0] == (expected, "session=abc123")
    assert any("wiki content" in d.text for d in kb.documents())


def test_parsing_in_worker_processes_gives_the_same_documents(tmp_path, intranet, fast):
    site, _ = intranet
    results = []
    for workers in (0, 2):
        kb = KnowledgeBase.open(tmp_path / f"index{workers}")
        report = kb.crawl([site.url("/")], name="intranet", **{**fast, "parse_workers": workers})
        results.append(({d.id: d.content_hash for d in kb.documents()}, report.pages_parsed))
        kb.close()
    assert results[0] == results[1]
    assert len(results[0][0]) > 15


class VirtualClock:
    """Stands in for the ``time`` module of `kbsearch.sources.crawl.fetch`: ``monotonic`` reads a virtual time
    that only ``sleep`` advances (and records), so spacing is checked exactly, without real waits."""

    def __init__(self) -> None:
        import threading

        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(seconds, 0.0)

    def __getattr__(self, name: str):
        import time

        return getattr(time, name)


def test_per_host_delay_spaces_requests(kb, site, fast, monkeypatch):
    from kbsearch.sources.crawl import fetch

    clock = VirtualClock()
    monkeypatch.setattr(fetch, "time", clock)
    stamps: list[float] = []

    def timed(h):
        stamps.append(clock.monotonic())  # requests follow one another (each page links the next)
        n = int(h.path.rpartition("/p")[2].partition(".")[0] or 0)
        body = f"<html><head><title>P{n}</title></head><body><p>page number {n}</p>" + \
            (f'<a href="/p{n + 1}.html">on to page {n + 1}</a>' if n < 5 else "") + "</body></html>"
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body.encode())))
        h.end_headers()
        h.wfile.write(body.encode())

    for n in range(6):
        site.route(f"/p{n}.html", timed)
    report = kb.crawl([site.url("/p0.html")], **{**fast, "delay": 0.15, "sitemaps": False, "respect_robots": False})
    assert report.pages_parsed == 6
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    # Virtual time moves only when the host gate waits: each request starts exactly `delay` after the last.
    assert gaps == pytest.approx([0.15] * 5), gaps
    assert sum(clock.slept) == pytest.approx(0.75)


def test_robots_crawl_delay_and_agent_specific_rules(kb, site, fast):
    site.page("/robots.txt", "User-agent: kbsearch\nDisallow: /internal-only/\n\nUser-agent: *\nDisallow: /\n",
              content_type="text/plain")
    site.page("/docs/a.html", '<html><title>A</title><body><p>alpha page</p><a href="/internal-only/x.html">x</a>'
              '<a href="/docs/b.html">b</a></body></html>')
    site.page("/docs/b.html", "<html><title>B</title><body><p>beta page</p></body></html>")
    site.page("/internal-only/x.html", "<html><title>X</title><body><p>x</p></body></html>")
    report = kb.crawl([site.url("/docs/a.html")], allowed_prefixes=[site.url("/")], **fast)
    assert report.pages_parsed == 2  # our group applies, not the catch-all "Disallow: /"
    assert site.count("/internal-only/x.html") == 0
