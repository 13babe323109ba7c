"""The store side of the SLA (`_sla`): `SlaMixin` (mixed into `store.SqlStore`) and when an
escalation reached its group (`arrived`).  It imports nothing of the store, so the store and the outbox
can import it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from ..storage.sql import Con

#: An escalation (`store.Escalation`) and an outbox entry (`store.NewNotification`); typed loosely here
#: because the store imports this module.
Escalation = Any
NewNotification = Any

#: Seconds of slack in the SLA's comparisons (float sums of epoch times are not exact).
EPS = 1e-3


def arrived(esc: Escalation) -> float:
    """When ``esc`` reached the group it is with: its latest ``rerouted`` event, else its creation
    (needs the history: ``store.get(..., history=True)``)."""
    times = [datetime.fromisoformat(e["at"]).timestamp() for e in esc.events if e["kind"] == "rerouted"]
    return max(times) if times else esc.created


def events_since(esc: Escalation, kind: str, start: float) -> list[dict[str, Any]]:
    return [e for e in esc.events if e["kind"] == kind and datetime.fromisoformat(e["at"]).timestamp() >= start]


class SlaMixin:
    """The store side of the SLA, mixed into `SqlStore` (uses its ``_write``, ``_load``, ``_event``,
    ``_enqueue``)."""

    _write: Callable[[], AbstractContextManager[Con]]

    def open_escalations(self, *, limit: int = 100_000) -> list[Escalation]:
        """Every open escalation with its history, oldest first (the SLA's candidates)."""
        with self._connect() as con:  # type: ignore[attr-defined]
            ids = [r[0] for r in con.execute("SELECT id FROM escalations WHERE status IN ('asked', 'escalated') "
                                             "ORDER BY created LIMIT ?", (limit,))]
            return [self._load(con, i, True) for i in ids]  # type: ignore[attr-defined]

    def add_sla_event(self, escalation_id: str, kind: str, *, group: str, since: float, limit: int,
                      detail: dict[str, Any], notify: Sequence[NewNotification], now: float) -> bool:
        """Record SLA event ``kind`` (``reminded`` / ``overdue``) with its notices, if the question is
        still open in ``group`` and has fewer than ``limit`` such events since ``since``; False if not
        (answered meanwhile, moved, or another run did it).  A reminder also sets ``reminded_at``."""
        with self._write() as con:
            row = con.execute(f"SELECT status, group_name FROM escalations WHERE id = ?{con.locking}",
                              (escalation_id,)).fetchone()
            if row is None or row[0] not in ("asked", "escalated") or row[1] != group:
                return False
            (done,) = con.execute("SELECT COUNT(*) FROM events WHERE escalation_id = ? AND kind = ? AND at >= ?",
                                  (escalation_id, kind, since)).fetchone()
            if done >= limit:
                return False
            for item in notify:
                self._enqueue(con, escalation_id, item, now)  # type: ignore[attr-defined]
            if kind == "reminded":
                con.execute("UPDATE escalations SET reminded_at = ? WHERE id = ?", (now, escalation_id))
            self._event(con, escalation_id, kind, None, detail, at=now)  # type: ignore[attr-defined]
            return True
