"""The one way kbsearch opens a SQLite database (peer store, usage log, crawl state).

Every database is in WAL mode (readers never wait for the writer), in autocommit mode (callers say
``BEGIN IMMEDIATE`` where they need a transaction), with foreign keys enforced and a busy timeout, so
writers from other threads and processes queue on SQLite's lock instead of failing.  What differs is
said by one flag, ``durable``:

* ``durable=True`` (``synchronous=FULL``): every commit is on disk before it returns.  For records
  people were told are kept: escalations, answers, notifications (`kbsearch.peers.store`).
* ``durable=False`` (``synchronous=NORMAL``): WAL stays consistent after a crash or power loss, but
  the last commits may be lost; no fsync per commit.  For what is re-created or merely counted: the
  usage log (one write per question asked) and the crawl state (a lost entry re-checks a page).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

#: Seconds a connection waits for another writer's lock before SQLite reports "database is locked".
DEFAULT_BUSY_TIMEOUT = 30.0


def connect(path: str | Path, *, durable: bool, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
            shared: bool = False) -> sqlite3.Connection:
    """A configured connection to the database at ``path`` (see the module docstring).

    ``shared``: the connection may be used from other threads than the one that opened it (the caller
    serialises its use, e.g. with a lock).  Raises `sqlite3.Error` / `OSError` as `sqlite3` does.
    """
    con = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=not shared)
    try:
        con.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        con.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        con.close()
        raise
    return con


#: Seconds between attempts to switch a new file to WAL while another connection holds its lock.
WAL_RETRY = 0.01


def use_wal(con: sqlite3.Connection, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
    """Put the database of ``con`` in WAL mode (a property of the file).  Switching a new file needs
    its exclusive lock, and SQLite reports "database is locked" at once, without waiting out the busy
    timeout, while another connection holds a lock (several processes opening a new index together):
    the switch is tried again until ``busy_timeout`` has passed."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY)


def create(con: sqlite3.Connection, schema: str) -> None:
    """Put the database of ``con`` in WAL mode (`use_wal`) and create ``schema``
    (``CREATE ... IF NOT EXISTS`` statements)."""
    use_wal(con)
    con.executescript(schema)
