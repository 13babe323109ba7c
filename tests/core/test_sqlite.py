"""One SQLite setup for the three databases: WAL, foreign keys, a busy timeout, and ``synchronous``
FULL only where the records are people's (the peer store)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from kbsearch.sources.crawl.state import CrawlState
from kbsearch.peers.store import SqliteStore
from kbsearch.storage import sqlite
from kbsearch.storage.usage import UsageLog

FULL, NORMAL = 2, 1


def _pragmas(con: sqlite3.Connection) -> tuple[str, int, int, int]:
    return (con.execute("PRAGMA journal_mode").fetchone()[0], con.execute("PRAGMA synchronous").fetchone()[0],
            con.execute("PRAGMA foreign_keys").fetchone()[0], con.execute("PRAGMA busy_timeout").fetchone()[0])


@pytest.mark.parametrize(("durable", "synchronous"), [(True, FULL), (False, NORMAL)])
def test_connect_and_create(tmp_path: Path, durable: bool, synchronous: int) -> None:
    con = sqlite.connect(tmp_path / "x.db", durable=durable, busy_timeout=2.5)
    try:
        sqlite.create(con, "CREATE TABLE IF NOT EXISTS a (id TEXT PRIMARY KEY);"
                           "CREATE TABLE IF NOT EXISTS b (a_id TEXT NOT NULL REFERENCES a(id));")
        assert _pragmas(con) == ("wal", synchronous, 1, 2500)
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO b VALUES ('missing')")
        assert con.in_transaction is False  # autocommit: callers begin their own transactions
    finally:
        con.close()


def test_a_shared_connection_may_be_used_from_another_thread(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    for shared in (True, False):
        con = sqlite.connect(tmp_path / "y.db", durable=False, shared=shared)

        def use(c: sqlite3.Connection = con) -> None:
            try:
                c.execute("SELECT 1").fetchone()
            except sqlite3.ProgrammingError as exc:
                errors.append(exc)

        t = threading.Thread(target=use)
        t.start()
        t.join()
        con.close()
    assert len(errors) == 1  # only the connection that is not shared refuses


def test_each_store_uses_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "peers.db", busy_timeout=4.0)
    with store._connect() as con:
        assert _pragmas(con) == ("wal", FULL, 1, 4000)
    usage = UsageLog(tmp_path / "usage.db", busy_timeout=3.0)
    try:
        with usage._db() as con:
            assert _pragmas(con) == ("wal", NORMAL, 1, 3000)
    finally:
        usage.close()
    with CrawlState.for_kb(tmp_path) as state, state.db.read() as con:
        assert _pragmas(con.raw) == ("wal", NORMAL, 1, int(sqlite.DEFAULT_BUSY_TIMEOUT * 1000))


def test_a_new_file_switches_to_wal_even_while_another_connection_holds_its_lock(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite answers "database is locked" at once, without its busy timeout, to a switch to WAL while
    another connection holds a lock (eight stores opening a new file together failed now and then):
    the switch waits and tries again."""
    path = tmp_path / "new.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    con = sqlite.connect(path, durable=True, busy_timeout=30)
    waits: list[float] = []

    def holder_lets_go(seconds: float) -> None:  # instead of sleeping: the other connection commits
        waits.append(seconds)
        holder.execute("COMMIT")

    monkeypatch.setattr(sqlite.time, "sleep", holder_lets_go)
    started = time.monotonic()
    sqlite.use_wal(con, 30)
    assert waits == [sqlite.WAL_RETRY] and time.monotonic() - started < 5  # not the busy timeout
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    holder.close()
