"""Claiming and assigning escalations: an expert takes a question so others see it is taken.

Three acts, each an event in the escalation's history and committed with its notices:

* **claim** (``claimed``): a person of the group takes an open question; refused (`ClaimConflictError`,
  409) while someone else holds it.
* **assign** (``assigned``): a question is handed to a named person of the group, by an expert of the
  group, by whoever holds it now (handing it on) or by the operator (``by=None``).
* **unclaim** (``unclaimed``): the holder, an expert or the operator gives it back.

A reroute ends the claim (the new group's people take it).  This module is the store side:
`ClaimsMixin` (one row per held question in table ``claims``, written in the store's write
transaction), mixed into `store.SqlStore`; it imports nothing of the store, so the store can import
it.  The rule side (who may do what, and the notices) is `_claim_rules.ClaimRules`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ..errors import InvalidEscalationError
from ..storage.sql import Con

#: An escalation (`store.Escalation`) and the store's ``notify`` callable (`store.Notify`); typed
#: loosely here because the store imports this module.
Escalation = Any
Notify = Callable[[Any, Any], Any]

log = logging.getLogger(__name__)

#: Outbox channel of an e-mail to one named person (the assignee; an SLA's lead), whatever the group's channels.
PERSON_CHANNEL = "@person"

CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    escalation_id TEXT PRIMARY KEY REFERENCES escalations (id),
    user_name TEXT NOT NULL,
    at {real} NOT NULL,
    by_user TEXT
);
"""


class ClaimsMixin:
    """The store side of claims, mixed into `SqlStore` (uses its ``_write``, ``_load``, ``_event``
    and ``_finish``): one transaction checks, changes, records the event and queues the notices."""

    _write: Callable[[], AbstractContextManager[Con]]

    @staticmethod
    def load_claim(con: Con, esc: Escalation) -> None:
        """Fill ``esc.claimed_by`` / ``claimed_at`` from the claims table (called by the store's load)."""
        row = con.execute("SELECT user_name, at, by_user FROM claims WHERE escalation_id = ?", (esc.id,)).fetchone()
        esc.claimed_by, esc.claimed_at, esc.assigned_by = (row[0], row[1], row[2]) if row else (None, None, None)

    @staticmethod
    def drop_claim(con: Con, escalation_id: str) -> str | None:
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
