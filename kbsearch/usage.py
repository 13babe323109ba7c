"""The usage log: every question asked, what kbsearch decided, and whether the answer helped.

One SQLite file per knowledge base (``usage.sqlite3`` in the index directory, so it survives
rebuilds).  It feeds the next calibration ("did this answer your question?" and escalations after an
answer become labelled examples) and the deflection report (questions asked, answered, escalated).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import KbsearchError, NotFoundError
from .storage import sqlite

FILE_NAME = "usage.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS asks (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    question TEXT NOT NULL,
    action TEXT NOT NULL,
    confidence REAL NOT NULL,
    answer_id TEXT,
    ranked TEXT NOT NULL,
    user TEXT,
    groups TEXT NOT NULL,
    routed_group TEXT,
    escalation_id TEXT,
    generation TEXT,
    features TEXT NOT NULL,
    seconds REAL
);
CREATE INDEX IF NOT EXISTS asks_time ON asks(time);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL REFERENCES asks(id),
    time TEXT NOT NULL,
    helpful INTEGER NOT NULL,
    escalated INTEGER NOT NULL DEFAULT 0,
    user TEXT,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback(decision_id);
"""


class UsageError(KbsearchError):
    """The usage log cannot be read or written."""

    http_status = 500


@dataclass
class FeedbackRecord:
    """One stored "did this answer your question?" reply (or an escalation after an answer)."""

    id: int
    decision_id: str
    time: str
    helpful: bool
    escalated: bool
    user: str | None
    comment: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class UsageLog:
    """SQLite-backed log of asks and feedback; safe to share between threads and processes."""

    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._ready = False

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite.connect(self.path, durable=False, busy_timeout=self.busy_timeout)  # no fsync per ask
            except (sqlite3.Error, OSError) as exc:
                raise UsageError(f"cannot open the usage log {self.path}: {exc}") from None
            self._local.conn = conn
        if not self._ready:
            sqlite.create(conn, _SCHEMA)
            self._ready = True
        try:
            yield conn
        except sqlite3.Error as exc:
            raise UsageError(f"usage log {self.path}: {exc}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- writing -----------------------------------------------------------------------------------
    def log_ask(self, decision: Any, *, user: str | None, groups: list[str]) -> None:
        """Record one decision (`deflect.Decision`)."""
        answer = decision.answers[0].id if decision.answers else None
        escalation_id = getattr(decision.escalation, "id", None) if decision.escalation is not None else None
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO asks (id, time, question, action, confidence, answer_id, ranked, user,"
                " groups, routed_group, escalation_id, generation, features, seconds)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (decision.id, _now(), decision.question, decision.action.value, float(decision.confidence),
                 answer, json.dumps(decision.ranked), user, json.dumps(sorted(groups)), decision.group,
                 str(escalation_id) if escalation_id is not None else None, decision.generation,
                 json.dumps(decision.features), float(decision.seconds)),
            )

    def set_escalation(self, decision_id: str, escalation_id: str, *, user: str | None = None) -> None:
        """Link a logged decision to its escalation; escalating after an ANSWER counts as "not helpful"."""
        with self._db() as db:
            row = db.execute("SELECT action FROM asks WHERE id=?", (decision_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no decision with id {decision_id!r} in the usage log")
            db.execute("UPDATE asks SET escalation_id=? WHERE id=?", (escalation_id, decision_id))
            if row[0] == "answer":
                db.execute("INSERT INTO feedback (decision_id, time, helpful, escalated, user, comment)"
                           " VALUES (?,?,0,1,?,?)", (decision_id, _now(), user, f"escalated: {escalation_id}"))

    def add_feedback(self, decision_id: str, helpful: bool, *, escalated: bool = False, user: str | None = None,
                     comment: str | None = None) -> FeedbackRecord:
        """Store feedback on a logged decision; raises `NotFoundError` for an unknown decision."""
        if not isinstance(helpful, bool):
            raise UsageError("helpful must be true or false")
        if comment is not None and len(comment) > 5000:
            raise UsageError("the comment is too long (at most 5000 characters)")
        with self._db() as db:
            if db.execute("SELECT 1 FROM asks WHERE id=?", (decision_id,)).fetchone() is None:
                raise NotFoundError(f"no decision with id {decision_id!r} in the usage log")
            now = _now()
            cur = db.execute("INSERT INTO feedback (decision_id, time, helpful, escalated, user, comment)"
                             " VALUES (?,?,?,?,?,?)", (decision_id, now, int(helpful), int(escalated), user, comment))
            return FeedbackRecord(int(cur.lastrowid or 0), decision_id, now, helpful, escalated, user, comment)

    # -- reading -----------------------------------------------------------------------------------
    def asks(self, since: str | None = None, until: str | None = None) -> list[dict[str, Any]]:
        """Logged decisions (oldest first), optionally within [since, until) ISO times."""
        sql = "SELECT * FROM asks WHERE 1=1"
        args: list[Any] = []
        if since:
            sql += " AND time >= ?"
            args.append(since)
        if until:
            sql += " AND time < ?"
            args.append(until)
        with self._db() as db:
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute(sql + " ORDER BY time, rowid", args).fetchall()
            finally:
                db.row_factory = None
        out = []
        for row in rows:
            item = dict(row)
            item["ranked"] = json.loads(item["ranked"])
            item["groups"] = json.loads(item["groups"])
            item["features"] = json.loads(item["features"])
            out.append(item)
        return out

    def feedback(self, decision_id: str | None = None) -> list[FeedbackRecord]:
        sql = "SELECT id, decision_id, time, helpful, escalated, user, comment FROM feedback"
        args: tuple[Any, ...] = ()
        if decision_id is not None:
            sql += " WHERE decision_id=?"
            args = (decision_id,)
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        return [FeedbackRecord(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5], r[6]) for r in rows]

    def training_examples(self, limit: int) -> list[tuple[list[float], bool]]:
        """(features of the answer shown, helpful) for the newest ``limit`` feedback on shown answers.

        The latest feedback per decision counts; an escalation after an answer counts as not helpful.
        """
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute(
                "SELECT a.features, f.helpful FROM feedback f JOIN asks a ON a.id = f.decision_id"
                " WHERE f.id IN (SELECT MAX(id) FROM feedback GROUP BY decision_id) AND a.answer_id IS NOT NULL"
                " ORDER BY f.id DESC LIMIT ?", (int(limit),)).fetchall()
        out = []
        for features, helpful in rows:
            feats = json.loads(features)
            if feats:
                out.append((feats, bool(helpful)))
        return out

    def last_feedback_id(self) -> int:
        """The id of the newest feedback (0: none): a build records it to tell later whether any came in."""
        if not self.path.exists():
            return 0
        with self._db() as db:
            row = db.execute("SELECT MAX(id) FROM feedback").fetchone()
        return int(row[0] or 0)

    def recent_features(self, limit: int) -> list[list[float]]:
        """The best candidate's features of the newest ``limit`` logged questions ([]: nothing matched)."""
        if not self.path.exists():
            return []
        with self._db() as db:
            rows = db.execute("SELECT features FROM asks ORDER BY time DESC, rowid DESC LIMIT ?",
                              (int(limit),)).fetchall()
        return [json.loads(r[0]) for r in rows]


def open_usage(root: Path) -> UsageLog:
    """The usage log of the knowledge base in ``root``."""
    return UsageLog(Path(root) / FILE_NAME)

