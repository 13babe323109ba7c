"""Durable crawl state per knowledge base: what each URL looked like last time it was crawled.

Kept where the knowledge base keeps its other mutable state: one SQLite file directly under the
knowledge base root (``crawl-state.sqlite3``; generations come and go on rebuild, this stays), or
the shared PostgreSQL of ``store.url`` (then no SQLite file is made, and every server reads the same
source health).  Per source and canonical URL it keeps the validators for conditional requests
(ETag, Last-Modified), a hash of the body, the ids of the documents the page produced (so changed
and vanished sections can be deleted), the page's links (so a 304 or an unchanged body still leads
the crawl on without parsing), the keys of its text blocks and which of them were site template
when it was parsed (`kbsearch.sources.crawl.template`), and the fingerprint of the extraction settings it
was parsed with (a page parsed under other settings is parsed again).  Only the writer thread
writes pages; each run is recorded in ``runs`` (for ``stats``' health).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import KbsearchError, StoreError
from ...storage import sql

if TYPE_CHECKING:
    from ...config import Settings

STATE_FILE = "crawl-state.sqlite3"

#: Version n of the crawl-state tables is ``_MIGRATIONS[n-1]`` (`kbsearch.storage.sql.migrate`).
_MIGRATIONS = ["""
CREATE TABLE IF NOT EXISTS crawl_pages (
    source        TEXT NOT NULL,
    url           TEXT NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    body_hash     TEXT,
    doc_ids       TEXT NOT NULL DEFAULT '[]',
    links         TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'indexed',
    crawled_at    {real} NOT NULL,
    blocks        TEXT NOT NULL DEFAULT '[]',
    template      TEXT NOT NULL DEFAULT '[]',
    extract_fp    TEXT,
    PRIMARY KEY (source, url)
);
CREATE TABLE IF NOT EXISTS crawl_runs (
    id        {serial},
    source    TEXT NOT NULL,
    started   {real} NOT NULL,
    finished  {real},
    complete  INTEGER,
    summary   TEXT
);
CREATE INDEX IF NOT EXISTS crawl_runs_source ON crawl_runs (source, id)
"""]

#: The tables of crawl-state files written before the versioned schema (``pages``, ``runs``), copied
#: into the versioned ones once; columns the oldest files lack are taken as their defaults.
_LEGACY_PAGE_COLUMNS = ("source", "url", "etag", "last_modified", "body_hash", "doc_ids", "links", "status",
                        "crawled_at", "blocks", "template", "extract_fp")


@dataclass
class PageState:
    """The remembered state of one crawled URL."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    doc_ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    #: indexed | noindex | listing | duplicate | empty | skipped
    status: str = "indexed"
    #: Distinct keys of the page's text blocks, and those that were site template when it was parsed.
    blocks: list[int] = field(default_factory=list)
    template: list[int] = field(default_factory=list)
    #: `ExtractOptions.fingerprint` of the settings the page was parsed with (None: before they were kept).
    extract_fp: str | None = None


class CrawlState:
    """The crawl-state store of one knowledge base, on a `kbsearch.storage.sql.Database` (thread-safe:
    each operation takes its own connection)."""

    def __init__(self, db: sql.Database) -> None:
        self.db = db
        try:
            sql.migrate(db, "crawl_state", _MIGRATIONS)
            if db.dialect == "sqlite":
                _adopt_legacy_tables(db)
        except (sqlite3.Error, OSError) as exc:
            db.close()
            raise KbsearchError(f"cannot open crawl state {db.describe()}: {exc}") from None
        except StoreError:
            db.close()
            raise

    @property
    def path(self) -> str:
        """Where the state lives (a file, or the database URL without its password)."""
        return self.db.describe()

    @classmethod
    def for_kb(cls, root: str | Path, settings: Settings | None = None) -> CrawlState:
        """The crawl state of the knowledge base at ``root``: PostgreSQL when ``settings.store.url`` is
        set, else ``crawl-state.sqlite3`` there."""
        if settings is not None and settings.store.url:
            from ...storage.postgres import open_database

            cfg = settings.store
            return cls(open_database(cfg.url, pool_size=min(cfg.pool_size, 4), connect_timeout=cfg.connect_timeout))
        try:
            db = sql.SqliteDatabase(Path(root) / STATE_FILE, durable=False)
        except (sqlite3.Error, OSError) as exc:
            raise KbsearchError(f"cannot open crawl state {Path(root) / STATE_FILE}: {exc}") from None
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CrawlState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------
    def get(self, source: str, url: str) -> PageState | None:
        with self.db.read() as con:
            row = con.execute(
                "SELECT url, etag, last_modified, body_hash, doc_ids, links, status, blocks, template, extract_fp "
                "FROM crawl_pages WHERE source = ? AND url = ?", (source, url)).fetchone()
        if row is None:
            return None
        return PageState(row[0], row[1], row[2], row[3], json.loads(row[4]), json.loads(row[5]), row[6],
                         json.loads(row[7]), json.loads(row[8]), row[9])

    def block_keys(self, source: str) -> Iterator[tuple[str, list[int], list[int]]]:
        """(url, block keys, template keys when parsed) of every page of ``source`` with blocks."""
        with self.db.read() as con:
            rows = con.execute("SELECT url, blocks, template FROM crawl_pages WHERE source = ? AND blocks != '[]' "
                               "ORDER BY url", (source,)).fetchall()
        for url, blocks, template in rows:
            yield url, json.loads(blocks), json.loads(template)

    def urls(self, source: str) -> list[str]:
        """Every URL remembered for ``source``."""
        with self.db.read() as con:
            return [r[0] for r in con.execute("SELECT url FROM crawl_pages WHERE source = ? ORDER BY url",
                                              (source,)).fetchall()]

    def count(self, source: str) -> int:
        with self.db.read() as con:
            return int(con.execute("SELECT count(*) FROM crawl_pages WHERE source = ?", (source,)).fetchone()[0])

    # -- writing -------------------------------------------------------------------------------
    def apply(self, source: str, puts: Iterable[PageState], deletes: Iterable[str]) -> None:
        """Write page states and forget URLs in one transaction."""
        now = time.time()
        rows = [(source, p.url, p.etag, p.last_modified, p.body_hash, json.dumps(p.doc_ids), json.dumps(p.links),
                 p.status, now, json.dumps(p.blocks), json.dumps(p.template), p.extract_fp) for p in puts]
        gone = [(source, u) for u in deletes]
        try:
            with self.db.write() as con:
                if rows:
                    con.executemany(
                        "INSERT INTO crawl_pages (source, url, etag, last_modified, body_hash, doc_ids, links, status, "
                        "crawled_at, blocks, template, extract_fp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (source, url) DO UPDATE SET etag = excluded.etag, "
                        "last_modified = excluded.last_modified, body_hash = excluded.body_hash, "
                        "doc_ids = excluded.doc_ids, links = excluded.links, status = excluded.status, "
                        "crawled_at = excluded.crawled_at, blocks = excluded.blocks, template = excluded.template, "
                        "extract_fp = excluded.extract_fp", rows)
                if gone:
                    con.executemany("DELETE FROM crawl_pages WHERE source = ? AND url = ?", gone)
        except sqlite3.Error as exc:
            raise KbsearchError(f"cannot write crawl state {self.path}: {exc}") from None

    def begin_run(self, source: str) -> int:
        """Record that a sync of ``source`` starts (see `kbsearch.ops._source_runs`)."""
        returning = " RETURNING id" if self.db.dialect == "postgresql" else ""
        with self.db.write() as con:
            cur = con.execute(f"INSERT INTO crawl_runs (source, started) VALUES (?, ?){returning}",
                              (source, time.time()))
            return int(cur.fetchone()[0] if returning else cur.lastrowid or 0)

    def finish_run(self, run_id: int, complete: bool, summary: dict[str, object]) -> None:
        with self.db.write() as con:
            con.execute("UPDATE crawl_runs SET finished = ?, complete = ?, summary = ? WHERE id = ?",
                        (time.time(), int(complete), json.dumps(summary, default=str), run_id))

    def run_sources(self) -> list[str]:
        """Every source with a recorded run."""
        with self.db.read() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT source FROM crawl_runs ORDER BY source").fetchall()]

    def last_runs(self, source: str, limit: int = 5) -> list[dict[str, object]]:
        """The most recent runs of ``source`` (newest first) with their summaries."""
        with self.db.read() as con:
            rows = con.execute("SELECT id, started, finished, complete, summary FROM crawl_runs WHERE source = ? "
                               "ORDER BY id DESC LIMIT ?", (source, limit)).fetchall()
        return [{"id": r[0], "started": r[1], "finished": r[2], "complete": bool(r[3]) if r[3] is not None else None,
                 "summary": json.loads(r[4]) if r[4] else None} for r in rows]


def _adopt_legacy_tables(db: sql.Database) -> None:
    """Copy a crawl-state file written before the versioned schema (tables ``pages`` and ``runs``) into
    the versioned tables, once, in one transaction, and drop the old tables."""
    legacy = {"pages", "runs"}
    with db.read() as con:
        if not legacy & {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}:
            return
    with db.write() as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        if "pages" in tables:
            have = {r[1] for r in con.execute("PRAGMA table_info(pages)").fetchall()}
            cols = ", ".join(c for c in _LEGACY_PAGE_COLUMNS if c in have)
            con.execute(f"INSERT OR IGNORE INTO crawl_pages ({cols}) SELECT {cols} FROM pages")
            con.execute("DROP TABLE pages")
        if "runs" in tables:
            con.execute("INSERT OR IGNORE INTO crawl_runs (id, source, started, finished, complete, summary) "
                        "SELECT id, source, started, finished, complete, summary FROM runs")
            con.execute("DROP TABLE runs")
