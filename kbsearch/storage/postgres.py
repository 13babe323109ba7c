"""The shared database: PostgreSQL through psycopg 3 and its connection pool (`psycopg_pool`).

Several processes on several machines share it: each holds a small pool of connections; reads run in
autocommit, writes in one transaction each (`kbsearch.storage.sql.Database`).  psycopg is the
``postgresql`` extra and is imported only when a PostgreSQL URL is configured.  Errors come out as
`StoreError` (one line, the URL without its password): unreachable or refusing server, a lost
connection (503), a value PostgreSQL cannot hold, such as a NUL character in text (400).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import StoreError, StoreValueError
from .sql import Database, to_format

log = logging.getLogger(__name__)

#: Key of the transaction-level advisory lock that serialises schema migrations across processes.
MIGRATION_LOCK = 0x6B627363_68656D61 & 0x7FFFFFFFFFFFFFFF


class _PgCon:
    """A `sql.Con` over one psycopg connection (``?`` placeholders become ``%s``)."""

    dialect = "postgresql"

    def __init__(self, con: Any, locking: str = "") -> None:
        self.raw = con
        self.locking = locking

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.raw.execute(to_format(sql), tuple(args)) if args else self.raw.execute(sql)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(to_format(sql), [tuple(r) for r in rows])
        return cur


class PostgresDatabase:
    """A PostgreSQL database reached through a pool of ``pool_size`` connections."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StoreError("a PostgreSQL store needs psycopg 3: pip install 'kbsearch[postgresql]'") from None
        self._psycopg = psycopg
        self.url = url
        self._secret = _password(url)
        timeout = max(int(round(connect_timeout)), 1)
        # Fail now, in one clear line, when the server cannot be reached (the pool would retry quietly).
        with self._errors():
            psycopg.connect(url, connect_timeout=timeout, autocommit=True).close()
        # ``check``: a pooled connection is tested before it is handed out, so after a restart or a
        # failover of the server the next request reconnects instead of failing on a dead connection.
        self.pool = ConnectionPool(url, min_size=1, max_size=max(pool_size, 1), open=False, name="kbsearch",
                                   timeout=connect_timeout, check=ConnectionPool.check_connection,
                                   kwargs={"autocommit": True, "connect_timeout": timeout})
        self.pool.open(wait=False)
        log.info("store: PostgreSQL at %s (pool of up to %d connections)", redact(url), max(pool_size, 1))

    def describe(self) -> str:
        return redact(self.url)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's and the pool's errors as `StoreError` (their text never holds the password, but
        it is blanked out should a server echo it)."""
        from psycopg_pool import PoolTimeout

        psycopg = self._psycopg
        try:
            yield
        except psycopg.DataError as exc:
            raise StoreValueError(f"the store cannot hold this value: {self._line(exc)}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise StoreError(f"PostgreSQL store at {redact(self.url)}: {self._line(exc)}") from None

    def _line(self, exc: BaseException) -> str:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return text.replace(self._secret, "***") if self._secret else text

    @contextmanager
    def read(self) -> Iterator[_PgCon]:
        with self._errors(), self.pool.connection() as con:
            yield _PgCon(con)

    @contextmanager
    def write(self) -> Iterator[_PgCon]:
        """One transaction; rows read with ``con.locking`` are locked until it ends."""
        with self._errors(), self.pool.connection() as con, con.transaction():
            yield _PgCon(con, " FOR NO KEY UPDATE")

    @contextmanager
    def migrating(self) -> Iterator[_PgCon]:
        """A write transaction holding the migration advisory lock (two starting processes take turns)."""
        with self.write() as con:
            con.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            yield con

    def close(self) -> None:
        """Close the pool's connections (idempotent)."""
        if not self.pool.closed:
            self.pool.close()


#: A ``password=`` parameter: in a URL's query (up to ``&``) or a ``key=value`` conninfo string
#: (up to a space, or a quoted value).
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)")


def _password(url: str) -> str:
    """The password ``url`` carries (user part or ``password=`` parameter), to blank out of messages."""
    found = _PASSWORD_PARAM.search(url)
    if found:
        return unquote(found.group(2).strip("'"))
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password) if password else ""


_SCHEMES = ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` without its password, in the user part or a ``password=`` parameter (for messages and logs)."""
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (in its user part or as a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None or re.search(r"(^|[&?])password=", parts.query) is not None


def check_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database kbsearch can use; else `StoreError`."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in _SCHEMES:
        raise StoreError(f"store URL {redact(url)!r}: only postgresql://... URLs are supported "
                         "(leave it empty for the embedded SQLite files)")
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise StoreError(f"store URL {redact(url)!r} is malformed: {exc}") from None
    return url


class _Lease:
    """One user's handle on the process's pool for a URL (`open_database`): the peer store, the usage
    log and the crawl state of a server share one pool instead of opening one each (and `stats`, which
    reads the crawl state at every call, opens no connection of its own).  Closing the last lease
    closes the pool."""

    dialect = "postgresql"

    def __init__(self, key: tuple[int, str, float], db: PostgresDatabase, size: int) -> None:
        self._key, self._db, self._size = key, db, size
        self._closed = False

    def read(self) -> AbstractContextManager[_PgCon]:
        return self._db.read()

    def write(self) -> AbstractContextManager[_PgCon]:
        return self._db.write()

    def migrating(self) -> AbstractContextManager[_PgCon]:
        return self._db.migrating()

    def describe(self) -> str:
        return self._db.describe()

    def close(self) -> None:
        """Give the lease back (idempotent); the pool shrinks by its share and closes with the last one."""
        with _shared_lock:
            if self._closed:
                return
            self._closed = True
            shared = _shared.get(self._key)
            if shared is None or shared[0] is not self._db:
                return
            sizes = shared[1]
            sizes.remove(self._size)
            if sizes:
                self._db.pool.resize(min_size=1, max_size=sum(sizes))
                return
            del _shared[self._key]
        self._db.close()


#: The pools of this process by (pid, URL, connect timeout), with the pool size each lease asked for:
#: the pool holds their sum, so sharing it takes no connection away from anyone.
_shared: dict[tuple[int, str, float], tuple[PostgresDatabase, list[int]]] = {}
_shared_lock = threading.Lock()


def open_database(url: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> Database:
    """The PostgreSQL database at ``url`` (``pool_size`` more connections in this process's pool for
    it), reachable when first opened, or `StoreError` in one line naming the URL without its password."""
    size = max(pool_size, 1)
    key = (os.getpid(), check_url(url), float(connect_timeout))  # a forked child never uses its parent's pool
    with _shared_lock:
        shared = _shared.get(key)
        if shared is not None and not shared[0].pool.closed:
            shared[1].append(size)
            shared[0].pool.resize(min_size=1, max_size=sum(shared[1]))
            return _Lease(key, shared[0], size)
        db = PostgresDatabase(url, pool_size=size, connect_timeout=connect_timeout)
        _shared[key] = (db, [size])
        return _Lease(key, db, size)
