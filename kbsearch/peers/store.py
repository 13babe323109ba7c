"""The escalation store: questions sent to peers, their lifecycle, attachments and the outbox.

Lifecycle: ``asked`` → ``escalated`` (to a group) → ``answered`` → ``accepted`` / ``verified``; the
answer is ``indexed`` (a timestamp, set once the answer document is searchable); or ``duplicate`` when
closed as a duplicate of an existing answer; or ``unanswerable`` when an expert closes it as nothing
the group can answer.  Every step is also an event in the history.

`EscalationStore` is the interface (`_records`, with the records); `SqlStore` implements it once over `kbsearch.storage.sql`'s
narrow layer, on either database: `SqliteStore` (WAL, one file ``peers.sqlite3`` in the index
directory, the embedded default) or a shared PostgreSQL (``store.url``, see docs/postgresql.md), whose
outbox is claimed with ``FOR UPDATE SKIP LOCKED`` (`_outbox_store`).  The tables are versioned
migrations (`_schema`).  Notifications are written to the outbox in the same transaction as the
escalation they announce.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..errors import IdempotencyKeyError, InvalidEscalationError, NotFoundError, StoreError
from ..storage.sql import Con, Database, SqliteDatabase, migrate
from . import _schema
from ._claims import ClaimsMixin
from ._outbox_store import NewNotification, Notification, OutboxMixin, iso
from ._records import (
    ANSWERED_STATUSES,
    CLOSED_STATUSES,
    OPEN_STATUSES,
    STATUSES,
    Attachment,
    Escalation,
    EscalationStore,
    Notify,
)
from ._sla_store import SlaMixin

log = logging.getLogger(__name__)

_COLUMNS = ("id, question, user_name, group_name, status, created, updated, note, routing, decision, seen, "
            "answer, answered_by, answered_at, verified, verified_by, accepted, doc_id, duplicate_of, "
            "indexed_at, reminded_at, revision")


class _KeyTaken(Exception):
    """Inside `SqlStore.create`: another transaction stored the key first (this one rolls back)."""


def new_escalation_id() -> str:
    """A short random id that is safe in URLs and command lines."""
    return "esc-" + secrets.token_hex(6)


class SqlStore(ClaimsMixin, SlaMixin, OutboxMixin):
    """`EscalationStore` over a `Database` (SQLite or PostgreSQL); safe across threads and processes.

    Reads take a connection per operation; each change is one write transaction in which the
    escalation is read with ``con.locking`` (a row lock on PostgreSQL; SQLite's write lock covers the
    whole file), so the check and the change see the same state in every process.  The schema is
    migrated on open (`_schema.MIGRATIONS`).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        try:
            migrate(db, _schema.COMPONENT, _schema.MIGRATIONS)
        except BaseException:
            db.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------
    def _connect(self) -> AbstractContextManager[Con]:
        return self.db.read()

    def _write(self) -> AbstractContextManager[Con]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        return self.db.write()

    def close(self) -> None:
        """Release the database's connections (a pool on PostgreSQL; nothing stays open on SQLite)."""
        self.db.close()

    @staticmethod
    def _event(con: Con, escalation_id: str, kind: str, actor: str | None,
               detail: dict[str, Any] | None = None, at: float | None = None) -> None:
        con.execute("INSERT INTO events (escalation_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)",
                    (escalation_id, at or time.time(), kind, actor, json.dumps(detail or {}, ensure_ascii=False)))

    @staticmethod
    def _row(row: Sequence[Any]) -> Escalation:
        (eid, question, user, group, status, created, updated, note, routing, decision, seen, answer,
         answered_by, answered_at, verified, verified_by, accepted, doc_id, duplicate_of, indexed_at,
         reminded_at, revision) = row
        return Escalation(
            id=eid, question=question, user=user, group=group, status=status, created=created,
            updated=updated, note=note, routing=json.loads(routing), decision=json.loads(decision) if decision else None,
            seen=json.loads(seen), answer=answer, answered_by=answered_by, answered_at=answered_at,
            verified=bool(verified), verified_by=verified_by, accepted=bool(accepted), doc_id=doc_id,
            duplicate_of=duplicate_of, indexed_at=indexed_at, reminded_at=reminded_at, revision=revision,
        )

    def _load(self, con: Con, escalation_id: str, history: bool = False) -> Escalation:
        """The escalation with its attachments, followers and claim (and its history); inside a write
        transaction its row stays locked until the transaction ends (``con.locking``)."""
        row = con.execute(f"SELECT {_COLUMNS} FROM escalations WHERE id = ?{con.locking}",
                          (escalation_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no escalation {escalation_id!r}")
        esc = self._row(row)
        esc.attachments = [
            Attachment(id=a, filename=f, content_type=c, size=s, sha256=h)
            for a, f, c, s, h in con.execute(
                "SELECT id, filename, content_type, size, sha256 FROM attachments WHERE escalation_id = ? "
                "ORDER BY length(id), id",
                (escalation_id,))
        ]
        esc.followers = [u for (u,) in con.execute(
            "SELECT user_name FROM followers WHERE escalation_id = ? ORDER BY at, user_name", (escalation_id,))]
        self.load_claim(con, esc)
        if history:
            esc.events = [
                {"at": iso(at), "kind": kind, "actor": actor, "detail": json.loads(detail)}
                for at, kind, actor, detail in con.execute(
                    "SELECT at, kind, actor, detail FROM events WHERE escalation_id = ? ORDER BY id", (escalation_id,))
            ]
            esc.notifications = [
                {"key": key, "channel": f"{g}/{ch}", "kind": kind, "status": st, "attempts": n,
                 "last_error": err, "delivered_at": iso(d)}
                for key, g, ch, kind, st, n, err, d in con.execute(
                    "SELECT key, group_name, channel, kind, status, attempts, last_error, delivered_at "
                    "FROM outbox WHERE escalation_id = ? ORDER BY id", (escalation_id,))
            ]
        return esc

    # -- escalations ------------------------------------------------------------------------
    def create(self, question: str, *, group: str, user: str | None, note: str, routing: dict[str, Any],
               decision: dict[str, Any] | None, seen: list[dict[str, Any]],
               attachments: Sequence[tuple[str, str, bytes]],
               notify: Callable[[Escalation], Sequence[NewNotification]],
               key: str | None = None, fingerprint: str = "") -> Escalation:
        """Write the escalation, its attachments and its outbox entries (``notify(escalation)``) in one
        transaction.  With an idempotency ``key`` already used by ``user``, nothing is written: the
        escalation stored then comes back with ``replayed`` set (`IdempotencyKeyError` when its
        ``fingerprint``, the request it was made for, differs).  Two processes racing with one key
        store one escalation: the loser's transaction is rolled back and it returns the winner's."""
        if key is not None:
            earlier = self._keyed(user, key, fingerprint)
            if earlier is not None:
                return earlier
        now = time.time()
        eid = new_escalation_id()
        try:
            with self._write() as con:
                con.execute(
                    "INSERT INTO escalations (id, question, user_name, group_name, status, created, updated, note, "
                    "routing, decision, seen) VALUES (?, ?, ?, ?, 'escalated', ?, ?, ?, ?, ?, ?)",
                    (eid, question, user, group, now, now, note, json.dumps(routing, ensure_ascii=False),
                     json.dumps(decision, ensure_ascii=False, default=str) if decision is not None else None,
                     json.dumps(seen, ensure_ascii=False, default=str)))
                if key is not None:
                    taken = con.execute(  # waits for a racing transaction holding the key to end
                        "INSERT INTO escalation_keys (user_name, key, escalation_id, fingerprint, created) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_name, key) DO NOTHING",
                        (user or "", key, eid, fingerprint, now)).rowcount == 0
                    if taken:
                        raise _KeyTaken
                self._event(con, eid, "asked", user, {"question": question}, at=now)
                self._event(con, eid, "escalated", None, {"group": group, "reason": routing.get("reason", "")}, at=now)
                for n, (filename, content_type, data) in enumerate(attachments):
                    con.execute(
                        "INSERT INTO attachments (id, escalation_id, filename, content_type, size, sha256, data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (f"{eid}-a{n + 1}", eid, filename, content_type, len(data),
                         hashlib.sha256(data).hexdigest(), bytes(data)))
                esc = self._load(con, eid)
                for item in notify(esc):
                    self._enqueue(con, eid, item, now)
                return esc
        except _KeyTaken:
            earlier = self._keyed(user, str(key), fingerprint)
            if earlier is None:
                raise StoreError(f"idempotency key {key!r} was taken and then lost") from None
            return earlier

    def _keyed(self, user: str | None, key: str, fingerprint: str) -> Escalation | None:
        """The escalation ``user`` stored with idempotency ``key``, marked replayed, or None."""
        with self._connect() as con:
            row = con.execute("SELECT escalation_id, fingerprint FROM escalation_keys WHERE user_name = ? AND key = ?",
                              (user or "", key)).fetchone()
            if row is None:
                return None
            if row[1] != fingerprint:
                raise IdempotencyKeyError(f"idempotency key {key!r} was used for another request (escalation "
                                          f"{row[0]}): the question, group, details or attachments differ; use a "
                                          "new key for each question")
            esc = self._load(con, row[0], history=True)
        esc.replayed = True
        return esc

    def _finish(self, con: Con, before: Escalation, notify: Notify | None, now: float) -> Escalation:
        """The changed escalation, with the outbox entries ``notify`` gives for the change written in the
        caller's transaction (an error in ``notify`` rolls the change back: no change without its notices)."""
        after = self._load(con, before.id)
        if notify is not None:
            for item in notify(before, after):
                self._enqueue(con, before.id, item, now)
        return after

    def get(self, escalation_id: str, *, history: bool = False) -> Escalation:
        with self._connect() as con:
            return self._load(con, escalation_id, history)

    def list(self, *, group: str | None = None, status: str | None = None, open_only: bool = False,
             user: str | None = None, limit: int = 100) -> list[Escalation]:
        """Escalations, newest first, filtered by group, status, openness or asker."""
        where, args = [], []
        if group:
            where.append("group_name = ?")
            args.append(group)
        if status:
            if status not in STATUSES:
                raise InvalidEscalationError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
            where.append("status = ?")
            args.append(status)
        if open_only:
            where.append("status IN ('asked', 'escalated')")
        if user:
            where.append("user_name = ?")
            args.append(user)
        sql = f"SELECT id FROM escalations {'WHERE ' + ' AND '.join(where) if where else ''} " \
              "ORDER BY created DESC, id LIMIT ?"
        with self._connect() as con:
            ids = [r[0] for r in con.execute(sql, (*args, max(int(limit), 0)))]
            return [self._load(con, i) for i in ids]

    def record_answer(self, escalation_id: str, text: str, *, by: str | None, verified: bool,
                      authorize: Callable[[Escalation], bool] | None = None,
                      notify: Notify | None = None) -> Escalation:
        """Store a peer's answer; a later answer replaces the earlier one, which stays in the history.

        ``authorize(current)`` runs inside the write transaction, so the check and the change see the
        same state: it raises to refuse the change and returns whether an existing verified mark
        survives it (without ``authorize`` it does not).  ``verified`` marks the new text verified.
        ``notify(before, after)`` gives the outbox entries written in the same transaction.
        """
        now = time.time()
        with self._write() as con:
            esc = self._load(con, escalation_id)
            if esc.status == "duplicate":
                raise InvalidEscalationError(f"{escalation_id} was closed as a duplicate of {esc.duplicate_of}")
            keeps_mark = authorize(esc) if authorize is not None else False
            is_verified = verified or (esc.verified and keeps_mark)
            status = "verified" if is_verified else ("accepted" if esc.accepted else "answered")
            con.execute(
                "UPDATE escalations SET answer = ?, answered_by = ?, answered_at = ?, status = ?, updated = ?, "
                "verified = ?, verified_by = ?, indexed_at = NULL, revision = revision + 1 WHERE id = ?",
                (text, by, now, status, now, int(is_verified),
                 by if verified else (esc.verified_by if is_verified else None), escalation_id))
            if esc.answer is None:
                self._event(con, escalation_id, "answered", by, {"chars": len(text)}, at=now)
            else:  # the replaced text, its author and time stay in the history
                self._event(con, escalation_id, "answer_changed", by,
                            {"chars": len(text), "previous": esc.answer, "previous_by": esc.answered_by,
                             "previous_at": iso(esc.answered_at), "revision": esc.revision + 1}, at=now)
            if verified:
                self._event(con, escalation_id, "verified", by, at=now)
            elif esc.verified and not is_verified:
                self._event(con, escalation_id, "unverified", by,
                            {"reason": "the verified answer was changed by someone who may not verify it"}, at=now)
            return self._finish(con, esc, notify, now)

    def review(self, escalation_id: str, *, verified: bool | None, accepted: bool | None,
               by: str | None, notify: Notify | None = None) -> Escalation:
        """Mark an answer accepted (by the asker) and/or verified (by an expert); ``notify`` as in `record_answer`."""
        now = time.time()
        with self._write() as con:
            esc = self._load(con, escalation_id)
            if not esc.answered:
                raise InvalidEscalationError(f"{escalation_id} has no answer to review (status {esc.status})")
            v = esc.verified if verified is None else verified
            a = esc.accepted if accepted is None else accepted
            status = "verified" if v else ("accepted" if a else "answered")
            con.execute("UPDATE escalations SET verified = ?, verified_by = ?, accepted = ?, status = ?, "
                        "updated = ?, indexed_at = NULL, revision = revision + 1 WHERE id = ?",
                        (int(v), by if verified else esc.verified_by, int(a), status, now, escalation_id))
            if verified is not None:
                self._event(con, escalation_id, "verified" if verified else "unverified", by, at=now)
            if accepted is not None:
                self._event(con, escalation_id, "accepted" if accepted else "unaccepted", by, at=now)
            return self._finish(con, esc, notify, now)

    def mark_indexed(self, escalation_id: str, doc_id: str, revision: int) -> bool:
        """Record that ``revision`` of the answer is searchable (False if a newer one arrived meanwhile)."""
        now = time.time()
        with self._write() as con:
            cur = con.execute("UPDATE escalations SET doc_id = ?, indexed_at = ?, updated = ? "
                              "WHERE id = ? AND revision = ?", (doc_id, now, now, escalation_id, revision))
            if cur.rowcount:
                self._event(con, escalation_id, "indexed", None, {"doc_id": doc_id, "revision": revision}, at=now)
            return bool(cur.rowcount)

    def close_duplicate(self, escalation_id: str, doc_id: str, *, by: str | None,
                        notify: Notify | None = None) -> Escalation:
        """Close an open escalation as a duplicate of answer ``doc_id``; ``notify`` as in `record_answer`."""
        now = time.time()
        with self._write() as con:
            esc = self._load(con, escalation_id)
            if esc.answered:
                raise InvalidEscalationError(f"{escalation_id} is already answered")
            con.execute("UPDATE escalations SET status = 'duplicate', duplicate_of = ?, updated = ? WHERE id = ?",
                        (doc_id, now, escalation_id))
            self._event(con, escalation_id, "closed_duplicate", by, {"doc_id": doc_id}, at=now)
            return self._finish(con, esc, notify, now)

    def close_unanswerable(self, escalation_id: str, *, by: str | None, reason: str = "") -> Escalation:
        """Close an open escalation as unanswerable (no answer exists or will be written)."""
        now = time.time()
        with self._write() as con:
            esc = self._load(con, escalation_id)
            if not esc.open:
                raise InvalidEscalationError(f"{escalation_id} is already {esc.status}")
            con.execute("UPDATE escalations SET status = 'unanswerable', updated = ? WHERE id = ?", (now, escalation_id))
            self._event(con, escalation_id, "closed_unanswerable", by, {"reason": reason[:500]}, at=now)
            return self._load(con, escalation_id)

    def outcomes(self) -> dict[str, tuple[str, str | None]]:
        """Escalation id -> (status, the document that answers it: the duplicate's or the new answer's)
        of every closed or answered escalation (what deflection learns from at the next rebuild)."""
        with self._connect() as con:
            return {i: (s, d or a) for i, s, d, a in con.execute(
                "SELECT id, status, duplicate_of, doc_id FROM escalations WHERE status NOT IN ('asked', 'escalated')")}

    def follow(self, escalation_id: str, user: str, *,
               groups: Sequence[str] | None) -> tuple[Escalation, bool]:
        """Add ``user`` (a member of ``groups``; None: trusted, all) to an open escalation's followers;
        (escalation, whether they were new).

        Followers get the asker's notices (see `outbox.asker_notices`), written with each change; their
        groups are kept so a reroute to a group they are not in stops them hearing of it (`reroute`)."""
        now = time.time()
        with self._write() as con:
            esc = self._load(con, escalation_id)
            if not esc.open:
                raise InvalidEscalationError(f"{escalation_id} is not open (status {esc.status}); nothing to follow")
            cur = con.execute("INSERT INTO followers (escalation_id, user_name, at, groups) VALUES (?, ?, ?, ?) "
                              "ON CONFLICT (escalation_id, user_name) DO NOTHING",
                              (escalation_id, user, now, None if groups is None else json.dumps(sorted(groups))))
            if cur.rowcount:
                self._event(con, escalation_id, "followed", user, at=now)
            return self._load(con, escalation_id), bool(cur.rowcount)

    def reroute(self, escalation_id: str, group: str, *, reason: str, by: str | None,
                notify: Notify, now: float | None = None, detail: dict[str, Any] | None = None,
                seen: list[dict[str, Any]] | None = None) -> Escalation:
        """Move an open escalation to ``group`` with ``reason``: its routing, its history (``rerouted``)
        and the outbox entries ``notify(before, after)`` gives (new group, asker) change in one transaction.

        The reminder clock restarts, so the new group's experts are reminded if it waits there too long,
        and a claim ends (the new group's people take it).  ``now``: the time recorded (default: the clock);
        ``detail`` joins the ``rerouted`` event's detail (the SLA's reason, `_sla`); ``seen`` replaces
        what the asker was shown (cut to what the new group may see, `PeerLoop.seen_for`)."""
        now = time.time() if now is None else now
        with self._write() as con:
            esc = self._load(con, escalation_id)
            if not esc.open:
                raise InvalidEscalationError(f"{escalation_id} is not open (status {esc.status}); it cannot be rerouted")
            if esc.group == group:
                raise InvalidEscalationError(f"{escalation_id} is already with {group}")
            count = int(esc.routing.get("reroutes", 0) or 0) + 1
            first = esc.routing.get("first_routing") or {k: esc.routing.get(k) for k in ("group", "confidence", "reason")}
            routing = {"group": group, "confidence": 1.0, "explicit": True,
                       "reason": f"rerouted from {esc.group}" + (f" by {by}" if by else "") + f": {reason}",
                       "rerouted_from": esc.group, "reroute_reason": reason, "reroutes": count, "first_routing": first}
            con.execute("UPDATE escalations SET group_name = ?, routing = ?, updated = ?, reminded_at = NULL "
                        "WHERE id = ?", (group, json.dumps(routing, ensure_ascii=False), now, escalation_id))
            if seen is not None and seen != esc.seen:
                con.execute("UPDATE escalations SET seen = ? WHERE id = ?",
                            (json.dumps(seen, ensure_ascii=False, default=str), escalation_id))
            self._event(con, escalation_id, "rerouted", by,
                        {"from": esc.group, "to": group, "reason": reason, **(detail or {})}, at=now)
            held = self.drop_claim(con, escalation_id)
            if held is not None:
                self._event(con, escalation_id, "unclaimed", by, {"from": held, "reason": f"rerouted to {group}"}, at=now)
            for user, groups in con.execute("SELECT user_name, groups FROM followers WHERE escalation_id = ?",
                                            (escalation_id,)).fetchall():
                if groups is not None and group not in json.loads(groups) and user != esc.user:
                    # Not in the new group: may no longer see the question, so hears no more of it.
                    con.execute("DELETE FROM followers WHERE escalation_id = ? AND user_name = ?", (escalation_id, user))
                    self._event(con, escalation_id, "unfollowed", user, {"reason": f"not in {group}"}, at=now)
            return self._finish(con, esc, notify, now)

    def recent(self, *, limit: int) -> list[Escalation]:
        """The newest open and answered escalations with their followers (no attachments or history),
        newest first: the candidates of similar questions."""
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM escalations WHERE status IN ('asked', 'escalated', 'answered', "
                "'accepted', 'verified') ORDER BY created DESC, id LIMIT ?", (max(int(limit), 0),)).fetchall()
            out = [self._row(r) for r in rows]
            by_id = {e.id: e for e in out}
            if by_id:
                marks = ",".join("?" * len(by_id))
                for eid, user in con.execute(f"SELECT escalation_id, user_name FROM followers WHERE escalation_id "
                                             f"IN ({marks}) ORDER BY at", tuple(by_id)):
                    by_id[eid].followers.append(user)
            return out

    def unindexed(self) -> list[Escalation]:
        """Answered escalations whose current answer is not in the index yet."""
        with self._connect() as con:
            ids = [r[0] for r in con.execute(
                "SELECT id FROM escalations WHERE status IN ('answered', 'accepted', 'verified') "
                "AND indexed_at IS NULL ORDER BY answered_at")]
            return [self._load(con, i) for i in ids]

    def answered(self) -> Iterator[Escalation]:
        with self._connect() as con:
            ids = [r[0] for r in con.execute(
                "SELECT id FROM escalations WHERE status IN ('answered', 'accepted', 'verified') ORDER BY created")]
        for start in range(0, len(ids), 500):
            with self._connect() as con:
                batch = [self._load(con, i) for i in ids[start:start + 500]]
            yield from batch

    def duplicates(self) -> list[tuple[str, str]]:
        """(answer document id, the asker's wording) of every escalation closed as a duplicate."""
        with self._connect() as con:
            return [(d, q) for d, q in con.execute(
                "SELECT duplicate_of, question FROM escalations WHERE status = 'duplicate' ORDER BY created")]

    def set_outdated(self, doc_id: str, outdated: bool, *, by: str | None) -> None:
        with self._write() as con:
            con.execute("INSERT INTO doc_marks (doc_id, outdated, at, actor) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (doc_id) DO UPDATE SET outdated = excluded.outdated, at = excluded.at, "
                        "actor = excluded.actor", (doc_id, int(outdated), time.time(), by))

    def outdated_marks(self) -> dict[str, bool]:
        with self._connect() as con:
            return {d: bool(o) for d, o in con.execute("SELECT doc_id, outdated FROM doc_marks")}

    def attachment(self, escalation_id: str, attachment_id: str) -> Attachment:
        with self._connect() as con:
            row = con.execute("SELECT id, filename, content_type, size, sha256, data FROM attachments "
                              "WHERE escalation_id = ? AND id = ?", (escalation_id, attachment_id)).fetchone()
        if row is None:
            raise NotFoundError(f"no attachment {attachment_id!r} on escalation {escalation_id!r}")
        return Attachment(id=row[0], filename=row[1], content_type=row[2], size=row[3], sha256=row[4],
                          data=bytes(row[5]))


class SqliteStore(SqlStore):
    """The embedded store: one SQLite file (``peers.sqlite3`` in the index directory) in WAL mode."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        super().__init__(SqliteDatabase(self.path, durable=True, busy_timeout=busy_timeout))


__all__ = ["ANSWERED_STATUSES", "CLOSED_STATUSES", "OPEN_STATUSES", "STATUSES", "Attachment", "Escalation",
           "EscalationStore", "NewNotification", "Notification", "Notify", "SqlStore", "SqliteStore",
           "iso", "new_escalation_id"]
