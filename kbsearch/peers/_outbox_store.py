"""The outbox side of the peer store: entries queued with the change they announce (`OutboxMixin`,
mixed into `store.SqlStore`), claimed for a lease by whoever delivers, then marked delivered or failed.

Each entry has an idempotency key (`NewNotification.key`: one message of a kind per escalation and
channel, ever), so queueing twice keeps one and a receiver can drop a repeated attempt.  Claims never
hand one entry to two deliverers at once: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on
SQLite.  It imports nothing of the store, so the store can import it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from ..storage.sql import Con

#: An escalation (`store.Escalation`); typed loosely here because the store imports this module.
Escalation = Any

_NOTE_COLUMNS = ("id, key, escalation_id, group_name, channel, kind, payload, status, attempts, "
                 "next_attempt, last_error")


def iso(ts: float | None) -> str | None:
    """``ts`` (epoch seconds) as an ISO 8601 UTC time; None stays None."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat() if ts is not None else None


@dataclass
class Notification:
    """One outbox entry: a message for one channel about one escalation, delivered at least once."""

    id: int
    key: str
    escalation_id: str
    group: str
    channel: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt: float
    last_error: str = ""
    delivered_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["next_attempt"] = iso(self.next_attempt)
        out["delivered_at"] = iso(self.delivered_at)
        return out


@dataclass(frozen=True)
class NewNotification:
    """What to put in the outbox with a new escalation, a reminder or a notice to the asker."""

    group: str
    channel: str
    kind: str
    payload: dict[str, Any]
    #: Distinguishes repeatable notices of one kind (``r3``: the answer's third revision); empty: once ever.
    tag: str = ""

    def key(self, escalation_id: str) -> str:
        """The idempotency key: one message of a kind (and tag) per escalation and channel, ever."""
        key = f"{escalation_id}/{self.group}/{self.channel}/{self.kind}"
        return f"{key}/{self.tag}" if self.tag else key


class OutboxMixin:
    """The outbox half of `store.SqlStore` (uses its ``_connect``, ``_write``, ``_load`` and ``_event``)."""

    _write: Callable[[], AbstractContextManager[Con]]
    _connect: Callable[[], AbstractContextManager[Con]]

    @staticmethod
    def _enqueue(con: Con, eid: str, item: NewNotification, now: float) -> None:
        con.execute(
            "INSERT INTO outbox (key, escalation_id, group_name, channel, kind, payload, next_attempt, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (item.key(eid), eid, item.group, item.channel, item.kind,
             json.dumps(item.payload, ensure_ascii=False), now, now))

    def claim(self, *, now: float, lease: float, limit: int,
              escalation_id: str | None = None) -> list[Notification]:
        """Take up to ``limit`` due notifications for ``lease`` seconds (others skip them meanwhile).

        On PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED`` and leased in the same
        statement, so processes claiming at once each get different rows; on SQLite the write lock
        serialises the claims."""
        only = " AND escalation_id = ?" if escalation_id else ""
        args = (now, now, *((escalation_id,) if escalation_id else ()), limit)
        due = ("SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= ? "
               f"AND claimed_until <= ?{only} ORDER BY next_attempt, id LIMIT ?")
        with self._write() as con:
            if con.dialect == "postgresql":
                rows = con.execute(f"UPDATE outbox SET claimed_until = ? WHERE id IN ({due} FOR UPDATE SKIP LOCKED) "
                                   f"RETURNING {_NOTE_COLUMNS}", (now + lease, *args)).fetchall()
                rows.sort(key=lambda r: (r[9], r[0]))
            else:
                rows = con.execute(f"SELECT {_NOTE_COLUMNS} FROM outbox WHERE id IN ({due}) "
                                   "ORDER BY next_attempt, id", args).fetchall()
                con.executemany("UPDATE outbox SET claimed_until = ? WHERE id = ?",
                                [(now + lease, r[0]) for r in rows])
        return [Notification(id=r[0], key=r[1], escalation_id=r[2], group=r[3], channel=r[4], kind=r[5],
                             payload=json.loads(r[6]), status=r[7], attempts=r[8], next_attempt=r[9],
                             last_error=r[10]) for r in rows]

    def delivered(self, notification_id: int, *, now: float) -> None:
        with self._write() as con:
            row = con.execute("SELECT escalation_id, group_name, channel, kind FROM outbox WHERE id = ?",
                              (notification_id,)).fetchone()
            con.execute("UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1, "
                        "claimed_until = 0, last_error = '' WHERE id = ?", (now, notification_id))
            if row:
                self._event(con, row[0], "notified", None,  # type: ignore[attr-defined]
                            {"channel": f"{row[1]}/{row[2]}", "kind": row[3]}, at=now)

    def failed(self, notification_id: int, error: str, *, retry_at: float | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up (status ``failed``) when None."""
        with self._write() as con:
            if retry_at is None:
                con.execute("UPDATE outbox SET status = 'failed', attempts = attempts + 1, claimed_until = 0, "
                            "last_error = ? WHERE id = ?", (error[:500], notification_id))
            else:
                con.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, claimed_until = 0, "
                            "last_error = ? WHERE id = ?", (retry_at, error[:500], notification_id))

    def due_reminders(self, cutoff: float) -> list[Escalation]:
        """Open escalations created before ``cutoff`` whose experts were not reminded yet."""
        with self._connect() as con:
            ids = [r[0] for r in con.execute(
                "SELECT id FROM escalations WHERE status IN ('asked', 'escalated') AND reminded_at IS NULL "
                "AND created <= ? ORDER BY created", (cutoff,))]
            return [self._load(con, i) for i in ids]  # type: ignore[attr-defined]

    def add_reminders(self, escalation_id: str, notify: Sequence[NewNotification], *,
                      now: float | None = None) -> bool:
        """Queue the reminders and mark the escalation reminded, once (False if already done);
        ``now``: the time recorded (default: the clock)."""
        now = time.time() if now is None else now
        with self._write() as con:
            cur = con.execute("UPDATE escalations SET reminded_at = ? WHERE id = ? AND reminded_at IS NULL "
                              "AND status IN ('asked', 'escalated')", (now, escalation_id))
            if cur.rowcount == 0:
                return False
            for item in notify:
                self._enqueue(con, escalation_id, item, now)
            self._event(con, escalation_id, "reminded", None,  # type: ignore[attr-defined]
                        {"channels": [n.channel for n in notify]}, at=now)
            return True

    def outbox_counts(self) -> dict[str, int]:
        with self._connect() as con:
            counts = {"pending": 0, "delivered": 0, "failed": 0}
            counts.update({s: n for s, n in con.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")})
            return counts
