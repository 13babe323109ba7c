"""`kbsearch crawl` through click, and web sources from crawlers/*.toml (the path reindex takes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbsearch import ConfigError, KnowledgeBase
from kbsearch.cli import main
from kbsearch.sources import Source, load_source_file, make_source
from kbsearch.sources.web import WebSource

REPO = Path(__file__).resolve().parents[2]
ENV = {"KBSEARCH_CRAWL_PARSE_WORKERS": "0", "KBSEARCH_CRAWL_READ_TIMEOUT": "2", "KBSEARCH_CRAWL_BACKOFF": "0.05"}


def test_cli_crawl_json_and_summary(intranet, tmp_path):
    site, _ = intranet
    index = str(tmp_path / "index")
    runner = CliRunner()
    result = runner.invoke(main, ["crawl", site.url("/"), "--index", index, "--json", "--exclude", "/auth/"], env=ENV)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["failed"] == 0 and report["complete"] and report["added"] > 15
    assert report["source"] == f"127.0.0.1:{site.port}"
    again = runner.invoke(main, ["crawl", site.url("/"), "--index", index, "--exclude", "/auth/"], env=ENV)
    assert again.exit_code == 0, again.output
    assert again.output.startswith("crawled ") and " 0 parsed" in again.output and "+0 ~0" in again.output
    hits = runner.invoke(main, ["search", "How do I reset my VPN password?", "--index", index, "--json"])
    assert json.loads(hits.output)[0]["url"] == site.url("/faq.html#reset-vpn")


def test_cli_crawl_reports_failures_with_exit_status(intranet, tmp_path):
    site, _ = intranet
    result = CliRunner().invoke(main, ["crawl", site.url("/"), "--index", str(tmp_path / "i"), "--max-pages", "40"],
                                env=ENV)
    assert result.exit_code == 1
    assert "1 failed" in result.output and "auth/area.html: HTTP 401" in result.output


def test_cli_crawl_rejects_bad_urls_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["crawl", "ftp://example/", "--index", str(tmp_path / "i")], env=ENV)
    assert result.exit_code == 1 and result.output.startswith("error: ") and "not an http(s) URL" in result.output


@pytest.mark.parametrize("path", sorted((REPO / "crawlers").glob("*.example.toml")), ids=lambda p: p.name)
def test_example_source_files_load(path):
    source = load_source_file(path)
    assert isinstance(source, WebSource) and isinstance(source, Source)
    assert source.start_urls and source.name == path.name.removesuffix(".toml")


def test_source_file_crawls_through_the_source_protocol(intranet, tmp_path, fast):
    site, _ = intranet
    spec = tmp_path / "docs.toml"
    spec.write_text(f'type = "web"\nstart_urls = ["{site.url("/guide/")}"]\nallowed_groups = ["staff"]\n'
                    f'group = "it"\nparse_workers = 0\nread_timeout = 2.0\n[crawl]\nmax_pages = 10\n')
    source = load_source_file(spec)
    assert source.name == "docs"
    with KnowledgeBase.open(tmp_path / "index") as kb:
        report = source.sync(kb)
        assert report.kind == "web" and report.complete and report.added == 4
        docs = list(kb.documents())
        assert {d.source for d in docs} == {"docs"} and {d.group for d in docs} == {"it"}
        assert all(d.allowed_groups == ("staff",) for d in docs)
        assert set(kb.ids(source="docs")) == {d.id for d in docs}


@pytest.mark.parametrize("table, message", [
    ({"type": "web"}, "start_urls is required"),
    ({"type": "web", "start_urls": ["gopher://x/"]}, r"not an http\(s\) URL"),
    ({"type": "web", "start_urls": ["http://x/"], "max_pagez": 3}, "unknown setting 'max_pagez'"),
    ({"type": "web", "start_urls": ["http://x/"], "delay": "soon"}, "crawl.delay: invalid value"),
    ({"type": "web", "start_urls": ["http://x/"], "auth": {"token": "abc"}}, "unknown auth setting"),
    ({"type": "web", "start_urls": ["http://x/"], "include": 5}, "include must be a list of strings"),
], ids=["no-start", "bad-scheme", "unknown-key", "bad-type", "bad-auth", "bad-include"])
def test_bad_source_definitions_are_clear_errors(table, message):
    with pytest.raises(ConfigError, match=message):
        make_source("bad", table)


def test_settings_precedence_for_crawl(tmp_path):
    from kbsearch import Settings

    config = tmp_path / "kbsearch.toml"
    config.write_text("[crawl]\ndelay = 0.5\nmax_pages = 7\n")
    settings = Settings.load(config_file=config, env={"KBSEARCH_CRAWL_MAX_PAGES": "9"})
    assert settings.crawl.delay == 0.5 and settings.crawl.max_pages == 9
    source = WebSource("s", ["http://x/"], max_pages=3)
    assert source.config(settings.crawl).max_pages == 3 and source.config(settings.crawl).delay == 0.5
    assert settings.crawl.max_pages == 9  # the base settings are not modified
