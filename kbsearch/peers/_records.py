"""The peer store's records and its interface: statuses, `Attachment`, `Escalation`, `Notify` and the
`EscalationStore` Protocol that `store.SqlStore` implements (on SQLite or PostgreSQL).  Kept apart from
the SQL so callers and tests read what a store promises in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._outbox_store import NewNotification, Notification, iso

OPEN_STATUSES = ("asked", "escalated")
ANSWERED_STATUSES = ("answered", "accepted", "verified")
#: Closed without an answer: nothing the group knows answers it (deflection learns it was unanswerable).
CLOSED_STATUSES = ("duplicate", "unanswerable")
STATUSES = (*OPEN_STATUSES, *ANSWERED_STATUSES, *CLOSED_STATUSES)


@dataclass(frozen=True)
class Attachment:
    """A file sent with an escalation (e.g. a phone photo); ``data`` is only loaded on request."""

    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "filename": self.filename, "content_type": self.content_type,
                "size": self.size, "sha256": self.sha256}


@dataclass
class Escalation:
    """A question sent to a peer group, and everything that happened to it since."""

    id: str
    question: str
    group: str
    status: str
    created: float
    updated: float
    user: str | None = None
    note: str = ""
    routing: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    answered_by: str | None = None
    answered_at: float | None = None
    verified: bool = False
    verified_by: str | None = None
    accepted: bool = False
    doc_id: str | None = None
    duplicate_of: str | None = None
    indexed_at: float | None = None
    reminded_at: float | None = None
    #: Bumped by every change to the answer; the index records which revision it holds.
    revision: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    #: Users who follow the question (`follow`): they hear what the asker hears.
    followers: list[str] = field(default_factory=list)
    #: Who holds the question now (`_claims`), since when, and who gave it to them (themselves: a claim).
    claimed_by: str | None = None
    claimed_at: float | None = None
    assigned_by: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    #: True when this call stored nothing: an earlier request with the same idempotency key stored it.
    replayed: bool = field(default=False, compare=False)

    @property
    def open(self) -> bool:
        """True while the question waits for a peer's answer."""
        return self.status in OPEN_STATUSES

    @property
    def answered(self) -> bool:
        return self.status in ANSWERED_STATUSES

    @property
    def indexed(self) -> bool:
        return self.indexed_at is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["replayed"]  # about this call, not the escalation
        for key in ("created", "updated", "answered_at", "indexed_at", "reminded_at", "claimed_at"):
            out[key] = iso(out[key])
        out["attachments"] = [a.to_dict() for a in self.attachments]
        out["open"] = self.open
        out["indexed"] = self.indexed
        return out


#: Called inside a write transaction with the escalation before and after the change; returns the
#: outbox entries committed with it (the asker's notices), so a change and its notices are never apart.
Notify = Callable[[Escalation, Escalation], Sequence[NewNotification]]


@runtime_checkable
class EscalationStore(Protocol):
    """Durable escalations and their outbox; SQLite now, a shared PostgreSQL later."""

    def create(self, question: str, *, group: str, user: str | None, note: str, routing: dict[str, Any],
               decision: dict[str, Any] | None, seen: list[dict[str, Any]],
               attachments: Sequence[tuple[str, str, bytes]],
               notify: Callable[[Escalation], Sequence[NewNotification]],
               key: str | None = None, fingerprint: str = "") -> Escalation: ...
    def get(self, escalation_id: str, *, history: bool = False) -> Escalation: ...
    def list(self, *, group: str | None = None, status: str | None = None, open_only: bool = False,
             user: str | None = None, limit: int = 100) -> list[Escalation]: ...
    def record_answer(self, escalation_id: str, text: str, *, by: str | None, verified: bool,
                      authorize: Callable[[Escalation], bool] | None = None,
                      notify: Notify | None = None) -> Escalation: ...
    def review(self, escalation_id: str, *, verified: bool | None, accepted: bool | None,
               by: str | None, notify: Notify | None = None) -> Escalation: ...
    def mark_indexed(self, escalation_id: str, doc_id: str, revision: int) -> bool: ...
    def close_duplicate(self, escalation_id: str, doc_id: str, *, by: str | None,
                        notify: Notify | None = None) -> Escalation: ...
    def follow(self, escalation_id: str, user: str, *,
               groups: Sequence[str] | None) -> tuple[Escalation, bool]: ...
    def reroute(self, escalation_id: str, group: str, *, reason: str, by: str | None,
                notify: Notify, now: float | None = None, detail: dict[str, Any] | None = None,
                seen: list[dict[str, Any]] | None = None) -> Escalation: ...
    def set_claim(self, escalation_id: str, owner: str | None, *, by: str | None,
                  authorize: Callable[[Escalation], None] | None = None, notify: Notify | None = None,
                  now: float | None = None) -> Escalation: ...
    def recent(self, *, limit: int) -> list[Escalation]: ...
    def unindexed(self) -> list[Escalation]: ...
    def answered(self) -> Iterator[Escalation]: ...
    def duplicates(self) -> list[tuple[str, str]]: ...
    def close_unanswerable(self, escalation_id: str, *, by: str | None, reason: str = "") -> Escalation: ...
    def outcomes(self) -> dict[str, tuple[str, str | None]]: ...
    def set_outdated(self, doc_id: str, outdated: bool, *, by: str | None) -> None: ...
    def outdated_marks(self) -> dict[str, bool]: ...
    def attachment(self, escalation_id: str, attachment_id: str) -> Attachment: ...
    def claim(self, *, now: float, lease: float, limit: int,
              escalation_id: str | None = None) -> list[Notification]: ...
    def delivered(self, notification_id: int, *, now: float) -> None: ...
    def failed(self, notification_id: int, error: str, *, retry_at: float | None) -> None: ...
    def due_reminders(self, cutoff: float) -> list[Escalation]: ...
    def add_reminders(self, escalation_id: str, notify: Sequence[NewNotification], *,
                      now: float | None = None) -> bool: ...
    def open_escalations(self, *, limit: int = 100_000) -> list[Escalation]: ...
    def add_sla_event(self, escalation_id: str, kind: str, *, group: str, since: float, limit: int,
                      detail: dict[str, Any], notify: Sequence[NewNotification], now: float) -> bool: ...
    def outbox_counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...
