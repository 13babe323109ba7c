"""The SLA of unanswered escalations: repeated reminders, then a fallback group or a lead.

Run by every `kbsearch deliver` tick (`PeerLoop.deliver`) and by `kbsearch sla` (an operator's cron);
``now`` is injectable, so tests drive the clock instead of sleeping.  For every open escalation,
counting from when it reached the group it is with (its creation, or its latest reroute):

1. **Reminders.**  The first reminder is the outbox's (`Outbox.queue_reminders`, after
   ``peers.remind_after_hours``).  After it, another every ``remind_every_hours`` while the question stays
   open in that group, up to ``max_reminders`` in all (event ``reminded`` with its ``number``).
2. **Overdue** after ``fallback_after_hours`` in that group: handed to the fallback group (the group's
   ``fallback_group``, else ``peers.fallback_group``, else the default group) like a reroute, with
   the reason "SLA: ..." (the new group hears of it as a new question, the asker and followers are
   told), unless the question was in that group before (fallback chains end); the lead
   (``lead`` / ``peers.sla_lead``) gets an e-mail; the group's webhook, Slack and Teams channels get an
   ``escalation.overdue`` event; the history gets ``overdue`` with what was done.  With no fallback
   and no lead the question is still marked overdue and listed (`SlaReport.overdue`): never dropped.

Every change and its notices are one store transaction (`SlaMixin`), and each is guarded by a check
inside it, so two ticks at once (cron and ``--watch``) do it once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidEscalationError
from ._claims import PERSON_CHANNEL
from ._sla_store import EPS as _EPS
from ._sla_store import arrived
from ._sla_store import events_since as _since
from .outbox import asker_address, email_in_use, escalation_summary, notifications_for, reroute_notices
from .store import Escalation, EscalationStore, NewNotification, iso

if TYPE_CHECKING:
    from ..config import PeersConfig
    from .groups import Groups

log = logging.getLogger(__name__)


class SlaLoop(Protocol):
    """What `SlaRunner` needs of `service.PeerLoop`."""

    groups: Groups
    cfg: PeersConfig
    store: EscalationStore

    def seen_for(self, esc: Escalation, group: str) -> list[dict[str, Any]]:
        """What the escalation keeps of ``seen`` when it moves to ``group``."""
        ...


@dataclass
class SlaReport:
    """What one SLA run did: reminders queued, questions handed on, leads told, overdue questions."""

    reminders: int = 0
    handed_on: list[dict[str, Any]] = field(default_factory=list)
    leads_told: int = 0
    #: Open questions past their group's fallback time that stay where they are (nowhere to hand them
    #: to): id, group, hours open there.  Listed on every run until answered.
    overdue: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SlaRunner:
    """Applies the SLA of `PeerLoop`'s groups to its open escalations (see the module docstring)."""

    def __init__(self, loop: SlaLoop) -> None:
        self.loop = loop
        self.cfg = loop.cfg

    def _setting(self, group_name: str, key: str) -> Any:
        group = self.loop.groups.get(group_name)
        value = getattr(group, key if key != "sla_lead" else "lead", None) if group is not None else None
        return getattr(self.cfg, key) if value is None else value

    def fallback_for(self, esc: Escalation) -> str | None:
        """The group an overdue ``esc`` goes to, or None (nowhere new to go)."""
        target = self._setting(esc.group, "fallback_group") or self.loop.groups.default
        visited = {esc.routing.get("rerouted_from"), *(e["detail"].get("from") for e in esc.events
                                                      if e["kind"] == "rerouted")}
        visited.add(esc.group)
        first = (esc.routing.get("first_routing") or {}).get("group")
        visited.add(first)
        return None if target in visited else target

    def status(self, esc: Escalation, *, now: float | None = None) -> dict[str, Any] | None:
        """Where an open escalation (loaded with its history) stands: the group it waits in and since
        when, reminders sent there, when the next reminder is due, when it is overdue and where it would
        go then; None once it is no longer open.  Times are ISO 8601 UTC."""
        if not esc.open:
            return None
        now = time.time() if now is None else now
        since = arrived(esc)
        reminded = _since(esc, "reminded", since)
        every = float(self._setting(esc.group, "remind_every_hours") or 0)
        after = float(self._setting(esc.group, "fallback_after_hours") or 0)
        next_reminder: float | None = None
        if esc.reminded_at is None and self.cfg.remind_after_hours > 0:
            next_reminder = esc.created + self.cfg.remind_after_hours * 3600
        elif every > 0 and esc.reminded_at is not None and 0 < len(reminded) < self.cfg.max_reminders:
            next_reminder = esc.reminded_at + every * 3600
        overdue_at = since + after * 3600 if after > 0 else None
        return {"group": esc.group, "since": iso(since), "hours_open": round((now - since) / 3600, 1),
                "reminders": len(reminded), "next_reminder_at": iso(next_reminder), "overdue_at": iso(overdue_at),
                "overdue": overdue_at is not None and now >= overdue_at - _EPS,
                "fallback_group": self.fallback_for(esc) if overdue_at is not None else None}

    def run(self, *, now: float | None = None) -> SlaReport:
        """One pass over the open escalations at time ``now`` (default: the clock)."""
        now = time.time() if now is None else now
        report = SlaReport()
        for esc in self.loop.store.open_escalations():
            try:
                self._one(esc, now, report)
            except Exception:  # one bad escalation never stops the others; it is retried next run
                log.exception("SLA of %s failed; retried on the next run", esc.id)
        if report.reminders or report.handed_on or report.overdue:
            log.info("SLA: %d reminders, %d handed on, %d overdue", report.reminders, len(report.handed_on),
                     len(report.overdue))
        return report

    def _one(self, esc: Escalation, now: float, report: SlaReport) -> None:
        since = arrived(esc)
        hours = (now - since) / 3600
        every = float(self._setting(esc.group, "remind_every_hours") or 0)
        reminded = _since(esc, "reminded", since)
        if every > 0 and esc.reminded_at is not None and reminded and len(reminded) < self.cfg.max_reminders \
                and now - esc.reminded_at >= every * 3600 - _EPS:
            number = len(reminded) + 1
            summary = escalation_summary(esc, self.cfg)
            summary.update(hours_open=round(hours, 1), reminder=number)
            tag = f"g{esc.routing.get('reroutes', 0)}n{number}"
            notes = [_tagged(n, tag) for n in notifications_for(esc.group, summary, self.loop.groups, "reminder")]
            if self.loop.store.add_sla_event(esc.id, "reminded", group=esc.group, since=since,
                                             limit=number, detail={"number": number,
                                                                       "channels": [n.channel for n in notes]},
                                             notify=notes, now=now):
                report.reminders += 1
        after = float(self._setting(esc.group, "fallback_after_hours") or 0)
        if after <= 0 or now - since < after * 3600 - _EPS:
            return
        self._overdue(esc, since, round(hours, 1), now, report)

    def _overdue(self, esc: Escalation, since: float, hours: float, now: float, report: SlaReport) -> None:
        if _since(esc, "overdue", since):
            report.overdue.append({"id": esc.id, "group": esc.group, "hours_open": hours})
            return  # marked in this group already and nowhere to go: listed every run until answered
        target = self.fallback_for(esc)
        lead = str(self._setting(esc.group, "sla_lead") or "")
        action = f"handed to {target}" if target else "nowhere to hand it to"
        summary = escalation_summary(esc, self.cfg)
        summary.update(hours_open=hours, overdue_group=esc.group, sla_action=action, sla_lead=lead or None)
        tag = f"g{esc.routing.get('reroutes', 0)}"
        notes = [NewNotification(group=spec_group, channel=spec.name, kind="overdue", payload=summary, tag=tag)
                 for spec_group, spec in self._team_channels(esc.group)]
        if lead:
            address = asker_address(lead, self.cfg)
            if address is not None and email_in_use(self.loop.groups):
                notes.append(NewNotification(group=esc.group, channel=PERSON_CHANNEL, kind="overdue",
                                             payload={**summary, "person_email": address}, tag=f"{tag}/lead"))
            else:
                log.warning("SLA lead %r of %s cannot be e-mailed (no address or no e-mail in use); "
                            "the overdue question %s is listed by `kbsearch sla`", lead, esc.group, esc.id)
        detail = {"group": esc.group, "hours": hours, "action": action, "lead": lead or None}
        if target is None:
            if self.loop.store.add_sla_event(esc.id, "overdue", group=esc.group, since=since, limit=1,
                                             detail=detail, notify=notes, now=now):
                report.leads_told += bool(lead)
                log.warning("escalation %s unanswered for %.1f h in %s and nowhere to hand it to", esc.id, hours,
                            esc.group)
            report.overdue.append({"id": esc.id, "group": esc.group, "hours_open": hours})
            return
        reason = f"SLA: unanswered for {hours:g} hours in {esc.group}"

        def notify(before: Escalation, after_: Escalation) -> list[NewNotification]:
            return [*notes, *reroute_notices(before, after_, self.loop.groups, self.cfg)]

        try:
            self.loop.store.reroute(esc.id, target, reason=reason, by=None, notify=notify, now=now,
                                    detail={"sla": detail}, seen=self.loop.seen_for(esc, target))
        except InvalidEscalationError as exc:  # answered or moved since it was read: nothing to do
            log.info("SLA of %s: %s", esc.id, exc)
            return
        report.handed_on.append({"id": esc.id, "from": esc.group, "to": target, "hours_open": hours})
        report.leads_told += bool(lead)
        log.warning("escalation %s unanswered for %.1f h in %s: handed to %s", esc.id, hours, esc.group, target)

    def _team_channels(self, group_name: str) -> list[tuple[str, Any]]:
        """(group, channel) of the webhook, Slack and Teams channels carrying ``group_name``'s news."""
        target = self.loop.groups.notify_group(group_name)
        return [(target.name, spec) for spec in target.channels if spec.type != "email"]


def _tagged(note: NewNotification, tag: str) -> NewNotification:
    return NewNotification(group=note.group, channel=note.channel, kind=note.kind, payload=note.payload, tag=tag)
