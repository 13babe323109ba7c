"""The outbox: notifications written with the escalation, delivered after, never lost, never doubled.

`notifications_for` builds the outbox entries of a new escalation (one per channel of its group);
the store writes them in the escalation's own transaction.  `Outbox.deliver` claims due entries,
sends each through its channel and records the outcome: delivered, or retried later with
exponential backoff while the channel is down, or ``failed`` (kept, visible, re-queueable) when
retrying cannot help.  A process killed at any point leaves its entries pending or claimed for a
short lease, so the next run delivers them; the idempotency key travels with every attempt.
It also queues the one-time reminder to a group's experts for escalations left unanswered, and
builds the asker's notices (`asker_notices`) that the store commits with an answer, a verification
or a duplicate: an e-mail to the asker and an event on the group's webhook, Slack and Teams channels.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import PeersConfig
from ..errors import DeliveryError
from .channels import ASKER_CHANNEL, FOLLOWER_CHANNEL, Channel, EmailChannel, Message, make_channel, message_recipients
from ._claims import PERSON_CHANNEL
from .groups import Groups
from .store import Escalation, EscalationStore, NewNotification, Notification

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9._+-]+$")

ChannelFactory = Callable[..., Channel]


@dataclass
class DeliveryReport:
    """What one `Outbox.deliver` run did (the same counts `kbsearch deliver` prints)."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    reminders: int = 0
    indexed: int = 0
    pending: int = 0
    #: What the SLA pass of this run did (`_sla.SlaReport.to_dict`; empty when it did not run).
    sla: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def escalation_summary(esc: Escalation, cfg: PeersConfig) -> dict[str, Any]:
    """The part of an escalation a notification shows (no attachment bytes, no internal state)."""
    return {
        "id": esc.id, "question": esc.question, "group": esc.group, "user": esc.user, "note": esc.note,
        "reason": esc.routing.get("reason", ""), "confidence": esc.routing.get("confidence"),
        "created": esc.to_dict()["created"],
        "url": cfg.escalation_url.replace("{id}", esc.id) if cfg.escalation_url else "",
        "seen": [{"title": s.get("title", ""), "url": s.get("url", "")} for s in esc.seen[:5]],
        "attachments": [a.filename for a in esc.attachments],
    }


def notifications_for(group_name: str, summary: dict[str, Any], groups: Groups, kind: str) -> list[NewNotification]:
    """One outbox entry per channel of the group that handles ``group_name`` (or the default group)."""
    target = groups.notify_group(group_name)
    if not target.channels:
        log.warning("group %r has no notification channels; escalation %s waits in `kbsearch escalations --open`",
                    group_name, summary.get("id"))
    return [NewNotification(group=target.name, channel=spec.name, kind=kind, payload=summary)
            for spec in target.channels]


def asker_address(user: str | None, cfg: PeersConfig) -> str | None:
    """The asker's e-mail address: the user name when it is one, else ``user@peers.asker_email_domain``
    when that is set and the name fits an address; None when there is no address to write to."""
    if not user:
        return None
    if _ADDRESS.match(user):
        return user
    domain = cfg.asker_email_domain.strip().lstrip("@")
    if domain and _LOCAL_PART.match(user):
        return f"{user}@{domain}"
    return None


def email_in_use(groups: Groups) -> bool:
    """Whether the deployment sends e-mail at all (some group has an ``email`` channel): the sign that
    ``peers.smtp_*`` point at a real server, so mail to askers would not fail forever."""
    return any(spec.type == "email" for group in groups for spec in group.channels)


def asker_change(before: Escalation, after: Escalation) -> tuple[str, str] | None:
    """(kind, tag) of the notice the asker gets for the change from ``before`` to ``after``, or None.

    A new or replaced answer is ``answered`` (tagged with its revision, so each text is told once; one
    verified at once says so in the same notice); a verification of an existing answer is ``verified``
    (once ever); closing as a duplicate is ``duplicate``; moving to another group is ``rerouted``
    (tagged with the reroute's number).  Accepting (the asker's own act) and un-verifying tell nobody.
    """
    if after.group != before.group:
        return "rerouted", f"g{after.routing.get('reroutes', 1)}"
    if after.status == "duplicate" and before.status != "duplicate":
        return "duplicate", ""
    if after.answer is not None and after.answered_at != before.answered_at:
        return "answered", f"r{after.revision}"
    if after.verified and not before.verified:
        return "verified", ""
    return None


def asker_notices(before: Escalation, after: Escalation, groups: Groups, cfg: PeersConfig,
                  extra: dict[str, Any] | None = None) -> list[NewNotification]:
    """The outbox entries telling ``after.user`` and the question's followers about a change: an event
    on every webhook, Slack and Teams channel of the group (naming the asker and the followers, so a
    portal or bot can tell them) and, with ``peers.asker_email`` on and e-mail in use, an e-mail to the
    asker's address and one to each follower's (channel ``@follower``, keyed per follower).

    Nobody to tell (no asker and no followers: a question from the CLI or Python) means no entries.
    ``extra`` joins the payload (e.g. the existing answer of a duplicate).
    """
    change = asker_change(before, after)
    followers = [f for f in after.followers if f != after.user]
    if change is None or not (after.user or followers):
        return []
    kind, tag = change
    summary = escalation_summary(after, cfg)
    summary.update({"asker": after.user, "followers": followers, "status": after.status, "answer": after.answer,
                    "answered_by": after.answered_by, "verified": after.verified,
                    "duplicate_of": after.duplicate_of, **(extra or {})})
    if kind == "rerouted":
        summary.update(rerouted_from=before.group, reroute_reason=_reroute_reason(after))
    target = groups.notify_group(after.group)
    # E-mail channels reach the team, not the asker; of a reroute, the new group's people already hear
    # (`reroute_notices`), so only webhooks (a portal telling the asker) get the asker's event.
    out = [NewNotification(group=target.name, channel=spec.name, kind=kind, payload=summary, tag=tag)
           for spec in target.channels
           if spec.type != "email" and (kind != "rerouted" or spec.type == "webhook")]
    if cfg.asker_email and email_in_use(groups):
        for person, channel in ([(after.user, ASKER_CHANNEL)] if after.user else []) + \
                [(f, FOLLOWER_CHANNEL) for f in followers]:
            address = asker_address(person, cfg)
            if address is None:
                log.info("escalation %s: %r has no e-mail address (set peers.asker_email_domain); "
                         "not e-mailed", after.id, person)
                continue
            if channel == ASKER_CHANNEL:
                out.append(NewNotification(group=after.group, channel=channel, kind=kind,
                                           payload={**summary, "asker_email": address}, tag=tag))
            else:  # one key per follower, so each hears once
                out.append(NewNotification(group=after.group, channel=channel, kind=kind,
                                           payload={**summary, "asker_email": address, "follower": person},
                                           tag=f"{tag}/{person}" if tag else person))
    return out


def _reroute_reason(esc: Escalation) -> str:
    """The reason given for the latest reroute (kept in the routing by `SqliteStore.reroute`)."""
    return str(esc.routing.get("reroute_reason") or esc.routing.get("reason", ""))


def reroute_notices(before: Escalation, after: Escalation, groups: Groups, cfg: PeersConfig) -> list[NewNotification]:
    """The outbox entries of a reroute: the new group hears of the question like a new one (kind
    ``escalated``, tagged with the reroute's number so a question sent back to a group is announced
    again), and the asker and followers are told where it went and why (`asker_notices`)."""
    summary = escalation_summary(after, cfg)
    summary.update(rerouted_from=before.group)
    tag = f"g{after.routing.get('reroutes', 1)}"
    fresh = [NewNotification(group=n.group, channel=n.channel, kind=n.kind, payload=n.payload, tag=tag)
             for n in notifications_for(after.group, summary, groups, "escalated")]
    return fresh + asker_notices(before, after, groups, cfg)


class Outbox:
    """Delivers pending notifications of an `EscalationStore` through the groups' channels."""

    def __init__(self, store: EscalationStore, groups: Groups, cfg: PeersConfig, *,
                 env: Mapping[str, str] | None = None, channel_factory: ChannelFactory = make_channel) -> None:
        self.store = store
        self.groups = groups
        self.cfg = cfg
        self.env = env
        self.channel_factory = channel_factory

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failures (exponential, capped, jittered)."""
        base = min(self.cfg.retry_initial * self.cfg.retry_factor ** max(attempts - 1, 0), self.cfg.retry_max)
        return base * random.uniform(0.8, 1.2)

    def _channel(self, note: Notification) -> tuple[Channel, tuple[str, ...]]:
        if note.channel in (ASKER_CHANNEL, FOLLOWER_CHANNEL, PERSON_CHANNEL):  # a person's own mailbox
            address = str(note.payload.get("asker_email") or note.payload.get("person_email") or "")
            if not address:
                raise DeliveryError(f"notification {note.key} names no asker address", permanent=True)
            return EmailChannel(f"{note.group}/{ASKER_CHANNEL}", (address,), self.cfg, env=self.env), (address,)
        group = self.groups.get(note.group)
        spec = group.channel(note.channel) if group else None
        if group is None or spec is None:
            raise DeliveryError(f"channel {note.group}/{note.channel} is no longer configured")
        return self.channel_factory(spec, group, self.cfg, env=self.env), message_recipients(spec, group, note.kind)

    def deliver(self, *, limit: int = 500, now: float | None = None,
                escalation_id: str | None = None) -> DeliveryReport:
        """Queue due reminders, then try every due notification once; returns what happened.

        ``escalation_id`` limits the run to one escalation's notifications (used right after escalating).
        """
        started = time.perf_counter()
        report = DeliveryReport()
        if escalation_id is None:
            report.reminders = self.queue_reminders(now=now)
        now = time.time() if now is None else now
        for note in self.store.claim(now=now, lease=self.cfg.claim_seconds, limit=limit, escalation_id=escalation_id):
            try:
                channel, recipients = self._channel(note)
                channel.send(Message(key=note.key, kind=note.kind, escalation=note.payload, recipients=recipients))
            except DeliveryError as exc:
                attempts = note.attempts + 1
                give_up = exc.permanent or (self.cfg.max_attempts > 0 and attempts >= self.cfg.max_attempts)
                retry_at = None if give_up else time.time() + self.backoff(attempts)
                self.store.failed(note.id, str(exc), retry_at=retry_at)
                report.errors.append({"key": note.key, "error": str(exc)})
                if give_up:
                    report.failed += 1
                    log.error("notification %s failed for good after %d attempts: %s", note.key, attempts, exc)
                else:
                    report.retrying += 1
                    log.warning("notification %s not delivered (attempt %d), retrying: %s", note.key, attempts, exc)
                continue
            self.store.delivered(note.id, now=time.time())
            report.delivered += 1
            log.info("notification %s delivered", note.key)
        report.pending = self.store.outbox_counts()["pending"]
        report.seconds = time.perf_counter() - started
        return report

    def queue_reminders(self, *, now: float | None = None) -> int:
        """Queue one reminder per channel for escalations open longer than ``remind_after_hours``."""
        hours = self.cfg.remind_after_hours
        if hours <= 0:
            return 0
        now = time.time() if now is None else now
        queued = 0
        for esc in self.store.due_reminders(now - hours * 3600):
            if esc.routing.get("reroutes"):  # rerouted: its clock runs from when it reached this group
                from ._sla_store import arrived

                if arrived(self.store.get(esc.id, history=True)) > now - hours * 3600 + 1e-3:
                    continue
            summary = escalation_summary(esc, self.cfg)
            summary["hours_open"] = round((now - esc.created) / 3600, 1)
            if self.store.add_reminders(esc.id, notifications_for(esc.group, summary, self.groups, "reminder"),
                                        now=now):
                queued += 1
        return queued
