"""Incremental recrawls: unchanged sites cost no parsing, changes land, deletions happen only when definitive."""

from __future__ import annotations

from kbsearch import KnowledgeBase
from kbsearch.sources.crawl.state import CrawlState


def _small_site(site, html_page):
    site.page("/", html_page("Home", '<h1 id="home">Home</h1><p>Welcome home.</p>'
                             '<a href="/a.html">a</a> <a href="/b.html">b</a> <a href="/c.html">c</a>'))
    site.page("/a.html", html_page("A", '<h1 id="a">Alpha</h1><p>Alpha text about aardvarks.</p>'
                                   '<h2 id="a2">Alpha two</h2><p>Second alpha section on anteaters.</p>'))
    # b: no ETag, only Last-Modified (If-Modified-Since path)
    site.page("/b.html", html_page("B", '<h1 id="b">Beta</h1><p>Beta text about badgers.</p>'), etag=False)
    # c: no validators at all (content-hash path)
    site.page("/c.html", html_page("C", '<h1 id="c">Gamma</h1><p>Gamma text about gazelles.</p>'),
              etag=False, last_modified=False)


def _crawl(kb: KnowledgeBase, site, fast, **kw):
    return kb.crawl([site.url("/")], name="small", **{**fast, "sitemaps": False, **kw})


def test_recrawl_cycle(kb, site, fast, html):
    _small_site(site, html)
    first = _crawl(kb, site, fast)
    assert first.complete and first.pages_parsed == 4 and first.added == 5
    ids_before = set(kb.ids(source="small"))

    # 1. Unchanged: every page is a 304 or an unchanged hash; nothing parsed, nothing written.
    second = _crawl(kb, site, fast)
    assert second.pages_parsed == 0
    assert second.not_modified == 3 and second.same_hash == 1  # /, a (ETag), b (Last-Modified); c (hash)
    assert (second.added, second.updated, second.deleted) == (0, 0, 0)
    assert second.unchanged == 5 and second.complete
    assert set(kb.ids(source="small")) == ids_before
    conditional = [h for p, h in site.requests if p == "/a.html"][-1]
    assert "if-none-match" in conditional
    assert "if-modified-since" in [h for p, h in site.requests if p == "/b.html"][-1]

    # 2. A changed page is updated; its removed section is deleted; a new section appears.
    site.page("/a.html", html("A", '<h1 id="a">Alpha</h1><p>Alpha text about armadillos now.</p>'
                                   '<h2 id="a3">Alpha three</h2><p>A brand new section on axolotls.</p>'))
    third = _crawl(kb, site, fast)
    assert third.pages_parsed == 1
    assert (third.added, third.updated, third.deleted) == (1, 1, 1)
    assert kb.search("armadillos")[0].url == site.url("/a.html#a")
    assert kb.search("axolotls")[0].url == site.url("/a.html#a3")
    assert not kb.search("anteaters")

    # 3. A deleted page disappears (404 on a later run), links to it or not.
    site.remove("/b.html")
    fourth = _crawl(kb, site, fast)
    assert fourth.pages_gone == 1 and fourth.deleted == 1
    assert not kb.search("badgers")
    assert site.url("/b.html") not in CrawlState.for_kb(kb.root).urls("small")

    # 4. A page that is no longer linked but still served stays (it is re-checked from the state).
    site.page("/", html("Home", '<h1 id="home">Home</h1><p>Welcome home.</p><a href="/a.html">a</a>'))
    fifth = _crawl(kb, site, fast)
    assert kb.search("gazelles")[0].url == site.url("/c.html#c")
    assert fifth.complete


def test_failed_run_deletes_nothing(tmp_path, make_site, fast, html):
    site = make_site()
    _small_site(site, html)
    kb = KnowledgeBase.open(tmp_path / "index")
    assert _crawl(kb, site, fast).complete
    before = sorted(kb.ids(source="small"))
    port = site.port
    site.stop()  # the server goes away entirely
    report = kb.crawl([f"http://127.0.0.1:{port}/"], name="small", **{**fast, "retries": 0, "sitemaps": False})
    assert not report.complete and report.failed >= 1
    assert report.deleted == 0
    assert sorted(kb.ids(source="small")) == before
    assert len(CrawlState.for_kb(kb.root).urls("small")) == 4
    kb.close()


def test_cut_short_run_deletes_nothing_and_next_run_resumes(kb, site, fast, html):
    _small_site(site, html)
    assert _crawl(kb, site, fast).complete
    before = sorted(kb.ids(source="small"))
    short = _crawl(kb, site, fast, max_pages=2)
    assert not short.complete and short.stopped_early.startswith("max_pages")
    assert sorted(kb.ids(source="small")) == before
    again = _crawl(kb, site, fast)
    assert again.complete and sorted(kb.ids(source="small")) == before


def test_full_recrawl_reparses_but_changes_nothing(kb, site, fast, html):
    _small_site(site, html)
    _crawl(kb, site, fast)
    full = kb.crawl([site.url("/")], name="small", full=True, **{**fast, "sitemaps": False})
    assert full.pages_parsed == 4 and full.not_modified == 0
    assert (full.added, full.updated, full.deleted, full.unchanged) == (0, 0, 0, 5)


def test_page_turning_noindex_or_out_of_scope_leaves_the_index(kb, site, fast, html):
    _small_site(site, html)
    _crawl(kb, site, fast)
    site.page("/a.html", html("A", "<p>Alpha text about aardvarks.</p>", head='<meta name="robots" content="noindex">'))
    report = _crawl(kb, site, fast, exclude=[r"/c\.html$"])
    assert report.deleted == 3  # a's two sections (noindex) and c's one (excluded now)
    assert not kb.search("aardvarks") and not kb.search("gazelles")
    assert kb.search("badgers")


def test_dry_run_writes_nothing(kb, site, fast, html):
    _small_site(site, html)
    report = _crawl(kb, site, fast, dry_run=True)
    assert report.dry_run and report.pages_parsed == 4 and report.sections == 5
    assert kb.ids(source="small") == []
    assert CrawlState.for_kb(kb.root).urls("small") == []


def test_changed_extraction_settings_reparse_without_full(kb, site, fast, html):
    """Issue 24: a source's extraction settings changed (a class of page chrome to strip): the next
    incremental crawl parses every page again although the server answers 304, and the sections
    change; with the settings unchanged it goes back to conditional requests."""
    _small_site(site, html)
    site.page("/a.html", html("A", '<h1 id="a">Alpha</h1><p>Alpha text about aardvarks.</p>'
                                   '<div class="wiki-toolbar">Edit this page TOOLBARWORDS</div>'
                                   '<h2 id="a2">Alpha two</h2><p>Second alpha section on anteaters.</p>'))
    first = _crawl(kb, site, fast)
    assert first.pages_parsed == 4 and kb.search("TOOLBARWORDS")
    requests_before = len(site.requests)

    changed = _crawl(kb, site, fast, strip_classes=["wiki-toolbar"])
    assert changed.pages_parsed == 4 and changed.not_modified == 0 and changed.same_hash == 0
    assert not kb.search("TOOLBARWORDS")
    assert changed.updated == 1 and changed.failed == 0  # section a lost its toolbar text
    assert kb.search("aardvarks")[0].url == site.url("/a.html#a")
    fetched_again = [h for _, h in site.requests[requests_before:]]
    assert fetched_again and not any("if-none-match" in h or "if-modified-since" in h for h in fetched_again)

    same = _crawl(kb, site, fast, strip_classes=["wiki-toolbar"])
    assert same.pages_parsed == 0 and same.not_modified == 3 and same.same_hash == 1
    assert "if-none-match" in [h for p, h in site.requests if p == "/a.html"][-1]
    assert (same.added, same.updated, same.deleted) == (0, 0, 0)


def test_pages_parsed_by_another_extractor_version_are_parsed_again(kb, site, fast, html, monkeypatch):
    from kbsearch.sources.crawl import extract

    _small_site(site, html)
    assert _crawl(kb, site, fast).pages_parsed == 4
    assert _crawl(kb, site, fast).pages_parsed == 0
    monkeypatch.setattr(extract, "EXTRACT_VERSION", extract.EXTRACT_VERSION + 1)
    upgraded = _crawl(kb, site, fast)
    assert upgraded.pages_parsed == 4 and upgraded.not_modified == 0
    assert _crawl(kb, site, fast).pages_parsed == 0
