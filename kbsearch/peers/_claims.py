"""Claiming and assigning escalations: an expert takes a question so others see it is taken.

Three acts, each an event in the escalation's history and committed with its notices:

* **claim** (``claimed``): a person of the group takes an open question; refused (`ClaimConflictError`,
  409) while someone else holds it.
* **assign** (``assigned``): a question is handed to a named person of the group, by an expert of the
  group, by whoever holds it now (handing it on) or by the operator (``by=None``).
* **unclaim** (``unclaimed``): the holder, an expert or the operator gives it back.

A reroute ends the claim (the new group's people take it).  `ClaimsMixin` is the store side (one row
per held question in table ``claims``, written in the store's write transaction); `ClaimRules` is the
rule side used by `PeerLoop` (who may do what) and builds the notices: an ``escalation.claimed`` /
``.assigned`` / ``.unclaimed`` event on the group's webhook, Slack and Teams channels, and, when e-mail
is in use, an e-mail to the person a question was assigned to (outbox channel ``@person``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .._text import clean_text
from ..errors import ClaimConflictError, InvalidEscalationError, PermissionDeniedError

if TYPE_CHECKING:
    from .service import PeerLoop
    from .store import Escalation, NewNotification, Notify

log = logging.getLogger(__name__)

#: Outbox channel of an e-mail to one named person (the assignee; an SLA's lead), whatever the group's channels.
PERSON_CHANNEL = "@person"

CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    escalation_id TEXT PRIMARY KEY REFERENCES escalations (id),
    user_name TEXT NOT NULL,
    at REAL NOT NULL,
    by_user TEXT
);
"""


class ClaimsMixin:
    """The store side of claims, mixed into `SqliteStore` (uses its ``_write``, ``_load``, ``_event``
    and ``_finish``): one transaction checks, changes, records the event and queues the notices."""

    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    @staticmethod
    def load_claim(con: sqlite3.Connection, esc: Escalation) -> None:
        """Fill ``esc.claimed_by`` / ``claimed_at`` from the claims table (called by the store's load)."""
        row = con.execute("SELECT user_name, at, by_user FROM claims WHERE escalation_id = ?", (esc.id,)).fetchone()
        esc.claimed_by, esc.claimed_at, esc.assigned_by = (row[0], row[1], row[2]) if row else (None, None, None)

    @staticmethod
    def drop_claim(con: sqlite3.Connection, escalation_id: str) -> str | None:
        """End a claim inside the caller's transaction (a reroute); returns who held it."""
        row = con.execute("SELECT user_name FROM claims WHERE escalation_id = ?", (escalation_id,)).fetchone()
        if row:
            con.execute("DELETE FROM claims WHERE escalation_id = ?", (escalation_id,))
        return row[0] if row else None

    def set_claim(self, escalation_id: str, owner: str | None, *, by: str | None,
                  authorize: Callable[[Escalation], None] | None = None, notify: Notify | None = None,
                  now: float | None = None) -> Escalation:
        """Make ``owner`` (None: nobody) hold open escalation ``escalation_id``.

        ``authorize(current)`` runs inside the write transaction and raises to refuse; holding it
        already is a no-op (no event, no notice).  The event is ``claimed`` when ``owner`` is ``by``,
        ``assigned`` when someone else is named, ``unclaimed`` for None.
        """
        now = time.time() if now is None else now
        with self._write() as con:
            esc = self._load(con, escalation_id)  # type: ignore[attr-defined]
            if not esc.open:
                raise InvalidEscalationError(f"{escalation_id} is not open (status {esc.status}); "
                                             "only open questions are claimed")
            if authorize is not None:
                authorize(esc)
            if owner == esc.claimed_by:
                return esc
            if owner is None:
                con.execute("DELETE FROM claims WHERE escalation_id = ?", (escalation_id,))
                kind, detail = "unclaimed", {"from": esc.claimed_by}
            else:
                con.execute("INSERT INTO claims (escalation_id, user_name, at, by_user) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (escalation_id) DO UPDATE SET user_name = excluded.user_name, "
                            "at = excluded.at, by_user = excluded.by_user", (escalation_id, owner, now, by))
                kind = "claimed" if owner == by else "assigned"
                detail = {"to": owner, "from": esc.claimed_by}
            con.execute("UPDATE escalations SET updated = ? WHERE id = ?", (now, escalation_id))
            self._event(con, escalation_id, kind, by, detail, at=now)  # type: ignore[attr-defined]
            return self._finish(con, esc, notify, now)  # type: ignore[attr-defined,no-any-return]


class ClaimRules:
    """Who may claim, assign and give back a question of `PeerLoop`'s groups, and what is told."""

    def __init__(self, loop: PeerLoop) -> None:
        self.loop = loop

    @staticmethod
    def _person(name: Any, what: str) -> str:
        if not isinstance(name, str) or not clean_text(name).strip():
            raise InvalidEscalationError(f"{what}: name a person")
        name = clean_text(name).strip()
        if len(name) > 200:
            raise InvalidEscalationError(f"{what}: a name of at most 200 characters")
        return name

    def people(self, group_name: str) -> tuple[str, ...]:
        """The named people of a group (experts first, then members); empty when it names nobody."""
        group = self.loop.groups.get(group_name)
        return tuple(dict.fromkeys((*group.experts, *group.members))) if group is not None else ()

    def claim(self, escalation_id: str, *, by: str, now: float | None = None) -> Escalation:
        """``by`` takes the question; `ClaimConflictError` while someone else holds it."""
        by = self._person(by, "claim")

        def authorize(esc: Escalation) -> None:
            if esc.claimed_by is not None and esc.claimed_by != by:
                raise ClaimConflictError(f"{esc.id} is already claimed by {esc.claimed_by}; an expert of "
                                         f"{esc.group} can assign it, or {esc.claimed_by} can give it back")
        return self._apply(escalation_id, by, by=by, authorize=authorize, now=now)

    def assign(self, escalation_id: str, to: str, *, by: str | None, now: float | None = None) -> Escalation:
        """Hand the question to ``to``, a person of its group when the group names its people."""
        to = self._person(to, "assign")

        def authorize(esc: Escalation) -> None:
            people = self.people(esc.group)
            if people and to not in people:
                raise InvalidEscalationError(f"{to} is not a member or expert of {esc.group} "
                                             f"(one of {', '.join(people)})")
            if by is not None and not self.loop.is_expert(esc, by) and esc.claimed_by != by:
                raise PermissionDeniedError(f"only experts of {esc.group} or the person holding {esc.id} "
                                            "may assign it")
        return self._apply(escalation_id, to, by=by, authorize=authorize, now=now)

    def unclaim(self, escalation_id: str, *, by: str | None, now: float | None = None) -> Escalation:
        """Give the question back (the holder, an expert of its group, or the operator)."""
        def authorize(esc: Escalation) -> None:
            if esc.claimed_by is not None and by is not None and by != esc.claimed_by \
                    and not self.loop.is_expert(esc, by):
                raise PermissionDeniedError(f"{esc.id} is held by {esc.claimed_by}; only they or an expert of "
                                            f"{esc.group} may give it back")
        return self._apply(escalation_id, None, by=by, authorize=authorize, now=now)

    def _apply(self, escalation_id: str, owner: str | None, *, by: str | None,
               authorize: Callable[[Escalation], None], now: float | None) -> Escalation:
        def notify(before: Escalation, after: Escalation) -> list[NewNotification]:
            return self.notices(before, after, by)

        esc = self.loop.store.set_claim(escalation_id, owner, by=by, authorize=authorize,  # type: ignore[attr-defined]
                                        notify=notify, now=now)
        log.info("%s of %s: %s (by %s)", "claim" if owner else "unclaim", escalation_id, owner, by)
        self.loop._deliver_now(escalation_id)
        return self.loop.store.get(esc.id, history=True)

    def notices(self, before: Escalation, after: Escalation, by: str | None) -> list[NewNotification]:
        """The outbox entries of a claim change: an event on the group's webhook, Slack and Teams channels
        (naming who holds it), and an e-mail to a person it was assigned to when e-mail is in use."""
        from .outbox import asker_address, email_in_use, escalation_summary
        from .store import NewNotification

        if after.claimed_by == before.claimed_by:
            return []
        kind = "unclaimed" if after.claimed_by is None else ("claimed" if by == after.claimed_by else "assigned")
        summary = escalation_summary(after, self.loop.cfg)
        summary.update(claimed_by=after.claimed_by, claimed_from=before.claimed_by, claim_changed_by=by)
        tag = f"{after.claimed_by or '-'}@{after.updated:.3f}"
        target = self.loop.groups.notify_group(after.group)
        out = [NewNotification(group=target.name, channel=spec.name, kind=kind, payload=summary, tag=tag)
               for spec in target.channels if spec.type != "email"]
        if kind == "assigned" and self.loop.cfg.asker_email and email_in_use(self.loop.groups):
            address = asker_address(after.claimed_by, self.loop.cfg)
            if address is None:
                log.info("escalation %s: assignee %r has no e-mail address; told on the group's channels only",
                         after.id, after.claimed_by)
            else:
                out.append(NewNotification(group=after.group, channel=PERSON_CHANNEL, kind=kind,
                                           payload={**summary, "person_email": address}, tag=tag))
        return out

