"""Copy the tables of one of kbsearch's SQLite files into another database (the move from one
machine to several: SQLite files in the index directory → the shared PostgreSQL).

The target's tables must exist already (each store migrates its own schema on open) and be empty:
a copy never merges into live data.  Every table of the file is copied, parents before the tables
whose foreign keys name them, in the file's row order, in one transaction of the target: a copy
that fails leaves the target as empty as it was.  Identity columns continue after the copied ids.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StoreError
from . import sqlite
from .sql import Con, Database

#: Rows sent to the target per statement batch.
BATCH = 1000


def tables_of(path: str | Path) -> list[str]:
    """The tables `copy_sqlite` copies from the SQLite file at ``path``, in the order it copies them."""
    con = sqlite.connect(Path(path), durable=False)
    try:
        return _tables(con)
    finally:
        con.close()


def holding_rows(db: Database, tables: list[str]) -> dict[str, int]:
    """Those of ``tables`` that hold rows in ``db`` (a table it lacks counts as empty)."""
    out = {}
    for table in tables:
        try:
            with db.read() as con:
                rows = _count(con, table)
        except Exception:  # noqa: BLE001 - each driver's "no such table": created when its store opens
            continue
        if rows:
            out[table] = rows
    return out


def _tables(con: sqlite3.Connection) -> list[str]:
    """The file's tables, each after the tables its foreign keys reference (Kahn's order, by name)."""
    names = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' AND name != 'schema_version'"))
    parents = {t: {r[2] for r in con.execute(f'PRAGMA foreign_key_list("{t}")')} & set(names) - {t} for t in names}
    ordered: list[str] = []
    while parents:
        ready = sorted(t for t, p in parents.items() if not p - set(ordered))
        if not ready:
            raise StoreError(f"the tables {sorted(parents)} reference each other in a cycle")
        ordered.extend(ready)
        for t in ready:
            del parents[t]
    return ordered


def _count(con: Con, table: str) -> int:
    return int(con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def copy_sqlite(source: str | Path, target: Database) -> dict[str, int]:
    """Copy every table of the SQLite file ``source`` into ``target``; returns rows copied per table.

    Raises `StoreError` when a table is missing from the target or already holds rows."""
    src = sqlite.connect(Path(source), durable=False)
    copied: dict[str, int] = {}
    try:
        tables = _tables(src)
        with target.write() as dst:
            for table in tables:
                try:
                    rows = _count(dst, table)
                except Exception as exc:  # noqa: BLE001 - each driver's "no such table"
                    raise StoreError(f"{target.describe()} has no table {table!r} (open the store there first): "
                                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
                if rows:
                    raise StoreError(f"{target.describe()} already holds {rows} rows in {table!r}; "
                                     "kbsearch copies into empty tables only")
            for table in tables:
                columns = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
                names = ", ".join(f'"{c}"' for c in columns)
                insert = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'
                cursor = src.execute(f'SELECT {names} FROM "{table}" ORDER BY rowid')
                copied[table] = 0
                while batch := cursor.fetchmany(BATCH):
                    dst.executemany(insert, batch)
                    copied[table] += len(batch)
                if target.dialect == "postgresql" and "id" in columns:
                    # An identity column continues after the copied ids (a text id has no sequence).
                    sequence = dst.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0]
                    if sequence:
                        dst.execute(f'SELECT setval(?, (SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"), false)',
                                    (sequence,))
            for table in tables:
                if _count(dst, table) != copied[table]:
                    raise StoreError(f"{target.describe()}: {table!r} holds {_count(dst, table)} rows after copying "
                                     f"{copied[table]}")
    finally:
        src.close()
    return copied
