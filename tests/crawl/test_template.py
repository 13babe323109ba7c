"""Site template (issue 24): text a site's theme repeats on most pages is dropped at extraction.

A real HTTP server on 127.0.0.1 serves a small site whose pages share a banner, a navigation bar
with per-page "Prev / Next" links and a footer, all in elements no built-in chrome rule knows, so
only the per-source counting can find them.  Real content on one page, and content repeated on two
pages, must stay; an incremental crawl must end where a full crawl ends.
"""

from __future__ import annotations

from kbsearch import KnowledgeBase, Settings
from kbsearch.sources.crawl import CrawlState

TEMPLATE_TEXT = ["Acme Intranet", "Download the handbook", "Up", "Home", "Prev:", "Next:",
                 "2026 Acme Corp", "All rights reserved"]
SHARED_NOTE = "Badge readers in building C reset every night at two."
TOPICS = ["printers", "vpn", "payroll", "badges", "parking", "laptops", "wifi", "travel"]


def themed(n: int, count: int, body: str) -> str:
    """Page ``n`` of ``count``: the theme's banner, pager and footer around ``body``."""
    prev = f'<li class="prev"><a href="/p{n - 1}.html">Prev: {TOPICS[n - 1].title()}</a></li>' if n else ""
    nxt = f'<li class="next"><a href="/p{n + 1}.html">Next: {TOPICS[n + 1].title()}</a></li>' if n + 1 < count else ""
    pager = f'<ul class="pager">{prev}<li><a href="/p0.html">Up</a></li><li>Home</li>{nxt}</ul>'
    return (f"<html><head><title>{TOPICS[n].title()}</title></head><body>"
            f'<div class="masthead"><a href="/p0.html">Download the handbook</a></div>'
            f'<div class="brand">Acme Intranet</div>{pager}'
            f'<div class="content"><h1 id="top">{TOPICS[n].title()}</h1>{body}</div>'
            f"{pager}<div class='legal'><p>© 2026 Acme Corp. All rights reserved.</p></div></body></html>")


def serve(site, count: int) -> None:
    for n in range(count):
        body = f"<p>The {TOPICS[n]} guide: fact number {n} that only this page states.</p>"
        if TOPICS[n] in ("badges", "parking"):
            body += f"<h2 id='note'>Note</h2><p>{SHARED_NOTE}</p>"
        site.page(f"/p{n}.html", themed(n, count, body))


def crawl(root, site, **kw):
    with KnowledgeBase.open(root, settings=Settings.load(config_file=None, env={})) as kb:
        report = kb.crawl([site.url("/p0.html")], name="acme", **{"sitemaps": False, "respect_robots": False,
                                                                  "parse_workers": 0, **kw})
        docs = {d.id: (d.url, d.title, d.text) for d in kb.documents()}
    return report, docs


def test_template_text_is_dropped_and_content_kept(tmp_path, site):
    serve(site, 8)
    report, docs = crawl(tmp_path / "index", site)
    assert report.failed == 0 and report.pages_parsed == 8
    texts = [text for _, _, text in docs.values()]
    for text in texts:  # no section is (or carries) template text
        assert not any(t in text for t in TEMPLATE_TEXT), text
    for n, topic in enumerate(TOPICS):  # each page's own content is there, once
        assert sum(f"fact number {n} that only this page states" in t for t in texts) == 1
    # Content repeated on two pages of eight is content, not template.
    noted = sorted(url for url, _, text in docs.values() if SHARED_NOTE in text)
    assert noted == [site.url("/p3.html#note"), site.url("/p4.html#note")]
    assert len(docs) == 10
    # The first pages were parsed before the counts knew the theme: parsed again at the end, from
    # the run's own copy (no second fetch).
    assert report.template_reparsed >= 1 and report.template_blocks >= 5
    assert report.fetched == 8 and all(site.count(f"/p{n}.html") == 1 for n in range(8))

    again, same = crawl(tmp_path / "index", site)  # nothing changed: nothing re-parsed
    assert same == docs
    assert again.pages_parsed == 0 and again.not_modified == 8 and again.template_reparsed == 0
    assert (again.added, again.updated, again.deleted) == (0, 0, 0)


def test_incremental_crawl_ends_where_a_full_crawl_ends(tmp_path, site):
    """Four pages are too few for a template (min 5 pages): the theme is indexed.  Once the site has
    eight, an incremental crawl drops it from the four unchanged pages too (fetched again: their
    copies are from the earlier run), exactly as a fresh crawl of the eight pages does."""
    serve(site, 4)
    first, docs = crawl(tmp_path / "incremental", site)
    assert first.template_blocks == 0 and any("Acme Intranet" in t for _, _, t in docs.values())
    serve(site, 8)  # pages 0-3 change too (their pager gains a "Next"): keep them as they were
    for n in range(4):
        site.page(f"/p{n}.html", site.pages[f"/p{n}.html"].body)
    before = {n: site.count(f"/p{n}.html") for n in range(8)}
    report, incremental = crawl(tmp_path / "incremental", site)
    assert report.failed == 0 and report.template_blocks >= 5
    _, full = crawl(tmp_path / "full", site)
    assert incremental == full
    assert not any("Acme Intranet" in t for _, _, t in incremental.values())
    # The pages left from the first run were re-parsed with the new template.
    assert report.template_reparsed >= 4
    assert all(site.count(f"/p{n}.html") - before[n] >= 1 for n in range(8))
    with CrawlState.for_kb(tmp_path / "incremental") as state:
        kept = {url: template for url, _, template in state.block_keys("acme")}
    assert len(kept) == 8 and all(kept.values())


def test_template_share_zero_keeps_everything(tmp_path, site):
    serve(site, 8)
    report, docs = crawl(tmp_path / "off", site, template_share=0)
    assert report.template_blocks == 0 and report.template_reparsed == 0
    assert sum("Acme Intranet" in t for _, _, t in docs.values()) == 8


def test_turning_the_template_off_restores_the_text_incrementally(tmp_path, site):
    """The template settings changed: pages parsed under the old decision are parsed again (the
    server's 304 notwithstanding), with no --full."""
    serve(site, 8)
    _, docs = crawl(tmp_path / "index", site)
    assert not any("Acme Intranet" in t for _, _, t in docs.values())
    report, docs = crawl(tmp_path / "index", site, template_share=0)
    assert report.not_modified == 8 and report.template_reparsed == 8
    assert sum("Acme Intranet" in t for _, _, t in docs.values()) == 8
    assert all(site.count(f"/p{n}.html") == 3 for n in range(8))  # first crawl, 304, re-parse
