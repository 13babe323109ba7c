"""The peers' part of the front door: `KnowledgeBase`'s methods of the answer loop (route, escalate,
answer, review, claim, notify), each a call on `peers.service.PeerLoop`.

A base class of `KnowledgeBase`, kept apart so the front door reads as its areas; nothing else uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .config import Settings
from .documents import Document
from .search import ALL_GROUPS

if TYPE_CHECKING:
    from .deflect import Decision
    from .peers import Attachment, DeliveryReport, Escalation, Group
    from .peers.route import Routing
    from .peers._intake import AttachmentInput, SeenItem
    from .peers.service import PeerLoop


class PeerDesk:
    """`KnowledgeBase`'s peer methods (the state they use is the knowledge base's)."""

    settings: Settings
    _lock: threading.RLock

    @property
    def peers(self) -> PeerLoop:
        """The answer loop (`peers.service.PeerLoop`): groups, router, escalation store, outbox."""
        loop = getattr(self, "_peer_loop", None)
        if loop is None:
            with self._lock:
                loop = getattr(self, "_peer_loop", None)
                if loop is None:
                    from .peers.service import PeerLoop

                    loop = self._peer_loop = PeerLoop(self)
        return loop

    def groups(self) -> list[Group]:
        """The peer groups (`peers.Group`) from ``[[groups]]`` in the config, plus the default group."""
        return list(self.peers.groups)

    def route(self, question: str, *, group: str | None = None,
              groups: Iterable[str] | None | object = ALL_GROUPS) -> Routing:
        """Rank the peer groups for ``question`` (`route.Routing`: group, confidence, ranked, reason).

        An explicit ``group`` chosen by the asker always wins.  ``groups``: the asker's (routing then
        reads only words of documents they may see; default: no filter, for trusted callers).
        """
        return self.peers.route(question, group=group, groups=groups)

    def escalate(self, question: str, *, user: str | None = None, group: str | None = None,
                 groups: Iterable[str] | None | object = ALL_GROUPS, seen: Iterable[SeenItem] = (),
                 attachments: Iterable[AttachmentInput] = (), decision: Decision | Mapping[str, object] | None = None,
                 note: str = "", deliver: bool | None = None, idempotency_key: str | None = None) -> Escalation:
        """Send ``question`` to a peer group (routed unless ``group`` is given); returns the `Escalation`.

        ``groups``: the asker's (default: no filter, for trusted callers); ``seen``: the hits the asker
        saw and rejected, kept only where the asker and the receiving group may both see them;
        ``attachments``: (filename, content_type, bytes)
        tuples or file paths; ``decision``: the deflection decision that led here.  The escalation and
        its notifications are stored in one transaction before any delivery is tried.
        ``idempotency_key``: a client's key for this question (a retry after a lost response sends it
        again): a second call with it returns the first call's escalation, ``replayed``, and stores
        and sends nothing; with another question, group, note or attachments it is `IdempotencyKeyError`.
        Keys are per ``user``.
        """
        return self.peers.escalate(question, user=user, group=group, groups=groups, seen=seen,
                                   attachments=attachments, decision=decision, note=note, deliver=deliver,
                                   idempotency_key=idempotency_key)

    def escalations(self, *, group: str | None = None, status: str | None = None, open_only: bool = False,
                    user: str | None = None, limit: int = 100) -> list[Escalation]:
        """Escalations, newest first, filtered by group, status, still open, or asker."""
        return self.peers.store.list(group=group, status=status, open_only=open_only, user=user, limit=limit)

    def escalation(self, escalation_id: str) -> Escalation:
        """One escalation with its history and notification states; `NotFoundError` if unknown."""
        return self.peers.store.get(escalation_id, history=True)

    def attachment(self, escalation_id: str, attachment_id: str) -> Attachment:
        """An escalation's attachment with its bytes (`peers.Attachment`)."""
        return self.peers.store.attachment(escalation_id, attachment_id)

    def answer(self, escalation_id: str, text: str, *, by: str | None = None, verify: bool = False) -> Escalation:
        """Record a peer's answer and make it searchable at once (kind "answer", title = the question).

        ``verify=True`` marks it verified (only the group's experts may, when experts are configured).
        An existing answer is changed only by its answerer or an expert (`PermissionDeniedError`
        otherwise); a non-expert's change un-verifies it; the replaced text stays in the history.
        """
        return self.peers.answer(escalation_id, text, by=by, verify=verify)

    def review_answer(self, escalation_id: str, *, verified: bool | None = None, accepted: bool | None = None,
                      by: str | None = None) -> Escalation:
        """Mark an answer verified (by an expert) and/or accepted (by the asker); the index follows."""
        return self.peers.review(escalation_id, verified=verified, accepted=accepted, by=by)

    def close_duplicate(self, escalation_id: str, doc_id: str, *, by: str | None = None) -> Escalation:
        """Close an escalation as a duplicate of answer ``doc_id``; its wording joins that answer's phrasings."""
        return self.peers.close_duplicate(escalation_id, doc_id, by=by)

    def close_unanswerable(self, escalation_id: str, *, by: str | None = None, reason: str = "") -> Escalation:
        """Close an escalation as unanswerable (experts only); the next rebuild learns from it."""
        return self.peers.close_unanswerable(escalation_id, by=by, reason=reason)

    def mark_outdated(self, doc_id: str, *, outdated: bool = True, by: str | None = None) -> Document:
        """Mark a document outdated (ranked lower, never used to deflect) or current again."""
        return self.peers.mark_outdated(doc_id, outdated=outdated, by=by)

    def similar_questions(self, question: str, *, user: str | None = None,
                          groups: Iterable[str] | None | object = ALL_GROUPS,
                          limit: int | None = None) -> list[dict[str, object]]:
        """Open and answered escalations like ``question`` that the caller (``user`` in ``groups``) may
        see: their own, their groups', and answered ones whose answer they may read.  Dicts with id,
        question, status, group, score, following (and answer, once answered); most similar first."""
        return self.peers.similar_questions(question, user=user, groups=groups, limit=limit)

    def follow(self, escalation_id: str, *, user: str,
               groups: Iterable[str] | None | object = ALL_GROUPS) -> Escalation:
        """Follow an open escalation (a "+1"): ``user`` then hears what the asker hears."""
        return self.peers.follow(escalation_id, user=user, groups=groups)

    def reroute(self, escalation_id: str, group: str, *, reason: str, by: str | None = None) -> Escalation:
        """Send an open escalation to another peer group with a reason (kept in its history); the new
        group is notified, the asker and followers are told.  Routing learns from where it is answered."""
        return self.peers.reroute(escalation_id, group, reason=reason, by=by)

    def claim(self, escalation_id: str, *, by: str, now: float | None = None) -> Escalation:
        """``by`` takes an open escalation so others see it is taken (event ``claimed``); an
        `errors.ClaimConflictError` (409) while someone else holds it."""
        return self.peers.claims.claim(escalation_id, by=by, now=now)

    def assign(self, escalation_id: str, to: str, *, by: str | None = None, now: float | None = None) -> Escalation:
        """Hand an open escalation to ``to`` (a person of its group when the group names its people):
        experts of the group, the person holding it, or the operator (``by=None``) may; ``to`` is told."""
        return self.peers.claims.assign(escalation_id, to, by=by, now=now)

    def unclaim(self, escalation_id: str, *, by: str | None = None, now: float | None = None) -> Escalation:
        """Give an escalation back so anyone may take it (its holder, an expert, or the operator)."""
        return self.peers.claims.unclaim(escalation_id, by=by, now=now)

    def deliver_notifications(self, *, limit: int = 500, now: float | None = None) -> DeliveryReport:
        """Run the outbox once: the SLA (repeated reminders, fallback group, lead), reminders, due
        notifications, pending answers; a `peers.DeliveryReport`.  ``now`` replaces the clock."""
        return self.peers.deliver(limit=limit, now=now)

    def sla_status(self, *, group: str | None = None, now: float | None = None) -> list[dict[str, object]]:
        """The SLA state of every open escalation (of ``group``), oldest first: ``id``, ``question`` and
        `peers._sla.SlaRunner.status` (hours open in its group, reminders, next reminder, overdue)."""
        out = []
        for esc in self.peers.store.open_escalations():
            state = self.peers.sla.status(esc, now=now)
            if state is not None and (group is None or esc.group == group):
                out.append({"id": esc.id, "question": esc.question, **state})
        return out

    def escalation_sla(self, escalation: Escalation, *, now: float | None = None) -> dict[str, object] | None:
        """The SLA state of one escalation (loaded with its history, as `escalation` returns it); None
        once it is answered or closed."""
        return self.peers.sla.status(escalation, now=now)
