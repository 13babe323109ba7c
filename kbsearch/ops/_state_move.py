"""Move a knowledge base's mutable state from its SQLite files to the shared PostgreSQL
(``kbsearch move-to-postgresql``): the step from one machine to several.

The escalations (with their history, attachments, claims and outbox), the usage log and the crawl
state are copied table by table (`kbsearch.storage.copy`), after each file and the database are
brought to the newest schema.  Nothing is merged: when the database already holds any of these
rows, nothing is copied.  The files stay where they are (brought to the newest schema, as any start
of kbsearch would); with ``store.url`` set they are no longer read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, StoreError
from ..peers._open import STORE_FILE
from ..peers.store import SqlStore
from ..sources.crawl.state import STATE_FILE, CrawlState
from ..storage.copy import copy_sqlite, holding_rows, tables_of
from ..storage.sql import Database, SqliteDatabase
from ..storage.usage import FILE_NAME as USAGE_FILE
from ..storage.usage import UsageLog

log = logging.getLogger(__name__)


@dataclass
class MoveReport:
    """What `move_to_postgresql` copied: rows per table of each file, into which database."""

    #: The database, without its password.
    database: str
    #: File name → table → rows copied (files that do not exist are not listed).
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    #: File name → why it was left where it is (``peers.store = "sqlite"`` keeps the escalations in
    #: their file whatever the URL, so copying them would leave a second copy nothing reads).
    kept: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(sum(tables.values()) for tables in self.files.values())

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "rows": self.rows}


def _usage_schema(db: Database) -> None:
    UsageLog(db=db).ensure_schema()


def _peer_schema(db: Database) -> None:
    SqlStore(db)


def _crawl_schema(db: Database) -> None:
    CrawlState(db)


#: Each state file and how its store brings a database to the newest schema.
_FILES: tuple[tuple[str, Callable[[Database], None]], ...] = (
    (STORE_FILE, _peer_schema), (USAGE_FILE, _usage_schema), (STATE_FILE, _crawl_schema))


def _migrate_file(path: Path, schema: Callable[[Database], None]) -> None:
    """Bring the SQLite file at ``path`` to the newest schema (older files are adopted as they are)."""
    db = SqliteDatabase(path, durable=True)
    try:
        schema(db)
    finally:
        db.close()


def move_to_postgresql(root: str | Path, settings: Settings) -> MoveReport:
    """Copy the SQLite state files of the knowledge base at ``root`` into the PostgreSQL of
    ``settings.store.url``; `StoreError` (nothing copied) when that database already holds any of it.
    Nothing may write the files meanwhile (stop the server first)."""
    if not settings.store.url:
        raise ConfigError("store.url is not set: name the PostgreSQL to move to in KBSEARCH_DATABASE_URL")
    from ..storage.postgres import open_database

    started = time.perf_counter()
    root = Path(root)
    present = [(root / name, schema) for name, schema in _FILES if (root / name).is_file()]
    kept = {STORE_FILE: "peers.store is \"sqlite\": the escalations stay in their file"} \
        if settings.peers.store == "sqlite" and (root / STORE_FILE).is_file() else {}
    present = [(path, schema) for path, schema in present if path.name not in kept]
    cfg = settings.store
    db = open_database(cfg.url, pool_size=2, connect_timeout=cfg.connect_timeout)
    report = MoveReport(database=db.describe(), kept=kept)
    try:
        for path, schema in present:
            _migrate_file(path, schema)
        held = holding_rows(db, [t for path, _ in present for t in tables_of(path)])
        if held:
            listed = ", ".join(f"{n} in {t}" for t, n in sorted(held.items()))
            raise StoreError(f"{report.database} already holds kbsearch state ({listed}); nothing was copied")
        for path, schema in present:
            schema(db)
            report.files[path.name] = copy_sqlite(path, db)
            log.info("copied %s: %s", path.name, report.files[path.name])
    finally:
        db.close()
    report.seconds = time.perf_counter() - started
    return report
