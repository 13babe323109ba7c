"""Where a crawl's time goes (the report's split) and link resolution done once per target."""

from __future__ import annotations

from kbsearch.sources.crawl.extract import extract_page


def test_report_splits_crawl_refit_and_after_build(kb, intranet, fast):
    site, _ = intranet
    first = kb.crawl([site.url("/")], name="intranet", **fast)
    assert first.added > 0
    assert 0 < first.write_seconds <= first.seconds  # the writer runs alongside the crawl
    assert first.refit_seconds > 0  # a new index: its model is fitted once, after the crawl
    assert first.after_build_seconds > 0 and {"route", "deflect"} <= set(first.after_build)
    assert "deferred" in first.after_build["deflect"]  # deflection waits for the next rebuild / reindex
    assert not (kb.generation_path / "deflect" / "model.json").exists()
    assert "routing and deflection" in first.summary()
    assert kb._current().model.fitted_on == kb.stats().documents
    decision = kb.ask("How do I reset my VPN password?")  # pages are found through search meanwhile
    assert decision.ranked and kb.get(decision.ranked[0]).url.endswith("#reset-vpn")
    assert "deflection waits for the next reindex" in first.summary()

    again = kb.crawl([site.url("/")], name="intranet", **fast)  # unchanged: nothing written, nothing refitted
    assert again.added == again.updated == 0
    assert again.refit_seconds == again.after_build_seconds == 0 and again.after_build == {}
    assert "routing and deflection" not in again.summary()


def test_dry_run_reports_no_writes(kb, intranet, fast):
    site, _ = intranet
    report = kb.crawl([site.url("/")], name="intranet", dry_run=True, **fast)
    assert report.pages_parsed > 0
    assert report.write_seconds == report.refit_seconds == report.after_build_seconds == 0


def test_links_to_one_target_resolve_once_in_page_order():
    links = "".join(f'<a href="ref.html#entry-{i}">entry {i}</a>' for i in range(500))
    body = f"""<html><head><title>Index</title></head><body><main><h1>Index</h1>
    <a href="b.html">b</a>{links}<a href="ref.html">again</a><a href="b.html#top">b again</a>
    <a href="sub/../c.html?x=1#f">c</a><a href="#local">here</a><a href="ref.html#">bare</a></main></body></html>"""
    page = extract_page(body.encode(), "http://intranet.example/docs/genindex.html")
    assert page.links == ["http://intranet.example/docs/b.html", "http://intranet.example/docs/ref.html",
                          "http://intranet.example/docs/c.html?x=1"]


def test_crawl_can_recalibrate_deflection_at_once(kb, intranet, fast):
    site, _ = intranet
    report = kb.crawl([site.url("/")], name="intranet", calibrate=True, **fast)
    assert report.added > 0
    assert report.after_build["deflect"].get("documents", 0) > 0
    assert (kb.generation_path / "deflect" / "model.json").is_file()
