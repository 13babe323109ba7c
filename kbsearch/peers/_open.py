"""Which escalation store a knowledge base uses, by its settings: the SQLite file in the index
directory (``peers.sqlite3``, the embedded default) or the shared PostgreSQL named by ``store.url``
(``KBSEARCH_DATABASE_URL``).  With PostgreSQL no SQLite file is created for escalations."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .store import EscalationStore, SqliteStore, SqlStore

#: The embedded store's file in the index directory.
STORE_FILE = "peers.sqlite3"

_KINDS = ("auto", "sqlite", "postgresql")


def uses_postgresql(settings: Settings) -> bool:
    """Whether escalations live in PostgreSQL (``peers.store`` and ``store.url``; see `config.PeersConfig`)."""
    kind = settings.peers.store
    if kind not in _KINDS:
        raise ConfigError(f"peers.store {kind!r} is not available (one of {', '.join(_KINDS)})")
    if kind == "postgresql" and not settings.store.url:
        raise ConfigError("peers.store is 'postgresql' but store.url (KBSEARCH_DATABASE_URL) is not set")
    return kind != "sqlite" and bool(settings.store.url)


def open_store(root: str | Path, settings: Settings, *, existing_only: bool = False) -> EscalationStore | None:
    """The escalation store of the knowledge base at ``root``; with ``existing_only``, None when it is
    the embedded one and its file does not exist yet (nothing was ever escalated: do not create it)."""
    if uses_postgresql(settings):
        from ..storage.postgres import open_database

        cfg = settings.store
        return SqlStore(open_database(cfg.url, pool_size=cfg.pool_size, connect_timeout=cfg.connect_timeout))
    path = Path(root) / STORE_FILE
    if existing_only and not path.is_file():
        return None
    return SqliteStore(path, busy_timeout=settings.peers.busy_timeout)
