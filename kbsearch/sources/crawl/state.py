"""Durable crawl state per knowledge base: what each URL looked like last time it was crawled.

One SQLite file directly under the knowledge base root (``crawl-state.sqlite3``; generations come
and go on rebuild, this stays).  Per source and canonical URL it keeps the validators for
conditional requests (ETag, Last-Modified), a hash of the body, the ids of the documents the page
produced (so changed and vanished sections can be deleted), the page's links (so a 304 or an
unchanged body still leads the crawl on without parsing), the keys of its text blocks and which of
them were site template when it was parsed (`kbsearch.sources.crawl.template`), and the fingerprint of the
extraction settings it was parsed with (a page parsed under other settings is parsed again).
Only the writer thread writes pages; each run is recorded in ``runs`` (for ``stats``' health).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import KbsearchError
from ...storage import sqlite

STATE_FILE = "crawl-state.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    source        TEXT NOT NULL,
    url           TEXT NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    body_hash     TEXT,
    doc_ids       TEXT NOT NULL DEFAULT '[]',
    links         TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'indexed',
    crawled_at    REAL NOT NULL,
    blocks        TEXT NOT NULL DEFAULT '[]',
    template      TEXT NOT NULL DEFAULT '[]',
    extract_fp    TEXT,
    PRIMARY KEY (source, url)
);
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    source    TEXT NOT NULL,
    started   REAL NOT NULL,
    finished  REAL,
    complete  INTEGER,
    summary   TEXT
);
"""


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
    """The crawl-state store of one knowledge base (thread-safe; one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite.connect(self.path, durable=False, shared=True)  # shared: behind self._lock
            sqlite.create(self._db, _SCHEMA)
            _add_columns(self._db)
        except sqlite3.Error as exc:
            raise KbsearchError(f"cannot open crawl state {self.path}: {exc}") from None

    @classmethod
    def for_kb(cls, root: str | Path) -> CrawlState:
        return cls(Path(root) / STATE_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CrawlState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------
    def get(self, source: str, url: str) -> PageState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT url, etag, last_modified, body_hash, doc_ids, links, status, blocks, template, extract_fp "
                "FROM pages WHERE source = ? AND url = ?", (source, url)).fetchone()
        if row is None:
            return None
        return PageState(row[0], row[1], row[2], row[3], json.loads(row[4]), json.loads(row[5]), row[6],
                         json.loads(row[7]), json.loads(row[8]), row[9])

    def block_keys(self, source: str) -> Iterator[tuple[str, list[int], list[int]]]:
        """(url, block keys, template keys when parsed) of every page of ``source`` with blocks."""
        with self._lock:
            rows = self._db.execute("SELECT url, blocks, template FROM pages WHERE source = ? AND blocks != '[]' "
                                    "ORDER BY url", (source,)).fetchall()
        for url, blocks, template in rows:
            yield url, json.loads(blocks), json.loads(template)

    def urls(self, source: str) -> list[str]:
        """Every URL remembered for ``source``."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT url FROM pages WHERE source = ? ORDER BY url", (source,))]

    def count(self, source: str) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pages WHERE source = ?", (source,)).fetchone()[0])

    # -- writing -------------------------------------------------------------------------------
    def apply(self, source: str, puts: Iterable[PageState], deletes: Iterable[str]) -> None:
        """Write page states and forget URLs in one transaction."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO pages (source, url, etag, last_modified, body_hash, doc_ids, "
                    "links, status, crawled_at, blocks, template, extract_fp) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(source, p.url, p.etag, p.last_modified, p.body_hash, json.dumps(p.doc_ids),
                      json.dumps(p.links), p.status, now, json.dumps(p.blocks), json.dumps(p.template),
                      p.extract_fp) for p in puts])
                self._db.executemany("DELETE FROM pages WHERE source = ? AND url = ?",
                                     [(source, u) for u in deletes])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise KbsearchError(f"cannot write crawl state {self.path}: {exc}") from None

    def begin_run(self, source: str) -> int:
        """Record that a sync of ``source`` starts (see `kbsearch.ops._source_runs`)."""
        with self._lock:
            cur = self._db.execute("INSERT INTO runs (source, started) VALUES (?, ?)", (source, time.time()))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, complete: bool, summary: dict[str, object]) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET finished = ?, complete = ?, summary = ? WHERE id = ?",
                             (time.time(), int(complete), json.dumps(summary, default=str), run_id))

    def run_sources(self) -> list[str]:
        """Every source with a recorded run."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT source FROM runs ORDER BY source")]

    def last_runs(self, source: str, limit: int = 5) -> list[dict[str, object]]:
        """The most recent runs of ``source`` (newest first) with their summaries."""
        with self._lock:
            rows = self._db.execute("SELECT id, started, finished, complete, summary FROM runs WHERE source = ? "
                                    "ORDER BY id DESC LIMIT ?", (source, limit)).fetchall()
        return [{"id": r[0], "started": r[1], "finished": r[2], "complete": bool(r[3]) if r[3] is not None else None,
                 "summary": json.loads(r[4]) if r[4] else None} for r in rows]


def _add_columns(db: sqlite3.Connection) -> None:
    """Columns added since the first crawl-state files were written (older files gain them)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(pages)")}
    for name, decl in (("blocks", "TEXT NOT NULL DEFAULT '[]'"), ("template", "TEXT NOT NULL DEFAULT '[]'"),
                       ("extract_fp", "TEXT")):
        if name not in have:
            db.execute(f"ALTER TABLE pages ADD COLUMN {name} {decl}")
