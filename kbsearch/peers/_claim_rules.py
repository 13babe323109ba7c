"""Who may claim, assign and give back a question, and what is told (the rule side of `_claims`).

`ClaimRules` is used by `service.PeerLoop` (``loop.claims``).  Rules, checked in the store's write
transaction: a claim is refused (`ClaimConflictError`, 409) while someone else holds the question; an
assignment names a person of the group (its experts and members; anyone when it names nobody) and is
made by an expert of the group, the person holding it or the operator (``by=None``); giving back is for
the holder, an expert or the operator.  Notices, committed with the change: an
``escalation.claimed`` / ``.assigned`` / ``.unclaimed`` event on the group's webhook, Slack and Teams
channels, and, when e-mail is in use, an e-mail to the person a question was assigned to (outbox
channel ``@person``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._text import clean_text
from ..errors import ClaimConflictError, InvalidEscalationError, PermissionDeniedError
from ._claims import PERSON_CHANNEL
from .outbox import asker_address, email_in_use, escalation_summary
from .store import Escalation, EscalationStore, NewNotification

if TYPE_CHECKING:
    from ..config import PeersConfig
    from .groups import Groups

log = logging.getLogger(__name__)


class ClaimLoop(Protocol):
    """What `ClaimRules` needs of `service.PeerLoop`."""

    groups: Groups
    cfg: PeersConfig
    store: EscalationStore

    def is_expert(self, esc: Escalation, by: str | None) -> bool:
        """Whether ``by`` is an expert of the escalation's group (None: the operator)."""
        ...

    def _deliver_now(self, escalation_id: str, deliver: bool | None = None) -> None:
        """Send the escalation's due notifications now (failures stay in the outbox)."""
        ...


class ClaimRules:
    """Who may claim, assign and give back a question of `PeerLoop`'s groups, and what is told."""

    def __init__(self, loop: ClaimLoop) -> None:
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

        esc = self.loop.store.set_claim(escalation_id, owner, by=by, authorize=authorize,
                                        notify=notify, now=now)
        log.info("%s of %s: %s (by %s)", "claim" if owner else "unclaim", escalation_id, owner, by)
        self.loop._deliver_now(escalation_id)
        return self.loop.store.get(esc.id, history=True)

    def notices(self, before: Escalation, after: Escalation, by: str | None) -> list[NewNotification]:
        """The outbox entries of a claim change: an event on the group's webhook, Slack and Teams channels
        (naming who holds it), and an e-mail to a person it was assigned to when e-mail is in use."""
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

