"""The crawl state (validators, page ids, template keys, source runs) on both stores: the SQLite file
in the index directory, or the shared PostgreSQL of ``store.url``, where every server reads the same
source health and no SQLite file is made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kbsearch import KnowledgeBase, Settings
from kbsearch.sources.crawl.state import STATE_FILE, CrawlState, PageState


def _settings(root: Path, store_url: str) -> Settings:
    settings = Settings.load(config_file=None, env={})
    settings.index.path = root
    settings.store.url = store_url
    return settings


def test_the_contract_on_both_stores(tmp_path: Path, store_url: str) -> None:
    root = tmp_path / "index"
    root.mkdir()
    settings = _settings(root, store_url)
    with CrawlState.for_kb(root, settings) as state:
        a = PageState("https://intra/a", etag='"1"', last_modified="Mon", body_hash="h1", doc_ids=["a#1", "a#2"],
                      links=["https://intra/b"], blocks=[3, 5, 8], template=[5], extract_fp="fp1")
        b = PageState("https://intra/b", status="listing")
        state.apply("wiki", [a, b], [])
        state.apply("other", [PageState("https://intra/a", body_hash="elsewhere")], [])
        assert state.get("wiki", a.url) == a and state.get("wiki", b.url) == b
        assert state.get("other", a.url).body_hash == "elsewhere" and state.get("wiki", "https://intra/c") is None
        assert state.urls("wiki") == [a.url, b.url] and state.count("wiki") == 2
        assert list(state.block_keys("wiki")) == [(a.url, [3, 5, 8], [5])]
        changed = PageState(a.url, etag='"2"', doc_ids=["a#1"])
        state.apply("wiki", [changed], [b.url])  # one transaction: a replaced, b forgotten
        assert state.get("wiki", a.url) == changed and state.urls("wiki") == [a.url]
        first = state.begin_run("wiki")
        state.finish_run(first, False, {"reason": "boom", "fetched": 2})
        second = state.begin_run("wiki")
        state.finish_run(second, True, {"fetched": 3})
        state.begin_run("other")  # still running: no end yet
        assert second > first
        runs = state.last_runs("wiki")
        assert [r["id"] for r in runs] == [second, first]
        assert runs[0]["complete"] is True and runs[0]["summary"] == {"fetched": 3}
        assert runs[1]["complete"] is False and runs[1]["summary"]["reason"] == "boom"
        assert state.last_runs("other")[0]["complete"] is None and state.last_runs("other")[0]["finished"] is None
        assert state.run_sources() == ["other", "wiki"]
    with CrawlState.for_kb(root, settings) as again:  # it outlives the process's handle
        assert again.get("wiki", a.url) == changed and len(again.last_runs("wiki")) == 2
    assert (root / STATE_FILE).exists() == (not store_url)


def test_with_postgresql_every_server_reads_the_same_health_and_no_file_is_made(tmp_path: Path, pg_url: str,
                                                                               site, fast, html) -> None:
    site.page("/", html("Home", '<h1 id="home">Home</h1><p>Welcome to the garden wiki.</p><a href="/a.html">a</a>'))
    site.page("/a.html", html("A", '<h1 id="a">Aphids</h1><p>Spray soapy water on aphids.</p>'))
    indexer = tmp_path / "indexer"
    with KnowledgeBase.open(indexer, settings=_settings(indexer, pg_url)) as kb:
        assert kb.crawl([site.url("/")], name="garden", **{**fast, "sitemaps": False}).complete
        before = len(site.requests)
        again = kb.crawl([site.url("/")], name="garden", **{**fast, "sitemaps": False})  # validators from PostgreSQL
        assert again.complete and again.pages_parsed == 0 and again.not_modified == 2 and len(site.requests) > before
    assert not list(indexer.glob("*.sqlite3"))  # crawl state, escalations, usage: all in PostgreSQL
    other = tmp_path / "another-server"  # another machine: its own directory, the same database
    with KnowledgeBase.open(other, settings=_settings(other, pg_url)) as kb:
        health = next(h for h in kb.source_health() if h.source == "garden")
        assert (health.health, health.fetched, health.changed) == ("ok", 2, 0)


def test_a_file_from_before_the_versioned_schema_is_adopted(tmp_path: Path) -> None:
    """Files written by earlier versions (tables ``pages`` and ``runs``, some without the newer
    columns) keep what they knew: nothing is crawled again from scratch after an upgrade."""
    con = sqlite3.connect(tmp_path / STATE_FILE)
    con.executescript("""
        CREATE TABLE pages (source TEXT NOT NULL, url TEXT NOT NULL, etag TEXT, last_modified TEXT,
            body_hash TEXT, doc_ids TEXT NOT NULL DEFAULT '[]', links TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL DEFAULT 'indexed', crawled_at REAL NOT NULL, PRIMARY KEY (source, url));
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, started REAL NOT NULL,
            finished REAL, complete INTEGER, summary TEXT);
        INSERT INTO pages (source, url, etag, body_hash, doc_ids, crawled_at)
            VALUES ('wiki', 'https://intra/a', '"7"', 'h', '["a#1"]', 1.0);
        INSERT INTO runs (source, started, finished, complete, summary) VALUES ('wiki', 1.0, 2.0, 1, '{"fetched": 1}');
    """)
    con.commit()
    con.close()
    with CrawlState.for_kb(tmp_path) as state:
        page = state.get("wiki", "https://intra/a")
        assert (page.etag, page.doc_ids, page.blocks, page.extract_fp) == ('"7"', ["a#1"], [], None)
        assert state.last_runs("wiki")[0]["summary"] == {"fetched": 1}
        new_run = state.begin_run("wiki")
        assert new_run > state.last_runs("wiki")[1]["id"]
    with sqlite3.connect(tmp_path / STATE_FILE) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "pages" not in tables and "runs" not in tables


def test_on_postgresql_source_health_borrows_the_servers_pool_and_close_gives_it_back(
        tmp_path: Path, pg_url: str, monkeypatch) -> None:
    """A server reads source health at every ``/api/stats``: it borrows the pool the peer store holds
    (no new connection per call), and closing the knowledge base closes that pool."""
    import psycopg

    from kbsearch.storage import postgres

    root = tmp_path / "kb"
    with KnowledgeBase.open(root, settings=_settings(root, pg_url)) as kb:
        kb.escalations()  # the peer store is open, as in a running server
        kb.source_health(sources=["garden"])
        made: list[str] = []
        real_connect = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]

        def counting(cls, *args, **kwargs):  # the real connect, counted
            made.append(str(args[0]) if args else "")
            return real_connect(cls, *args, **kwargs)

        monkeypatch.setattr(psycopg.Connection, "connect", classmethod(counting))
        monkeypatch.setattr(psycopg, "connect", lambda *a, **k: counting(psycopg.Connection, *a, **k))
        for _ in range(10):
            assert [h.source for h in kb.source_health(sources=["garden"])] == ["garden"]
        assert made == []
        assert len([key for key in postgres._shared if key[1] == pg_url]) == 1
    assert not [key for key in postgres._shared if key[1] == pg_url]  # closed with the last lease
