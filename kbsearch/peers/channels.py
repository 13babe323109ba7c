"""Notification channels: a generic JSON webhook, Slack and Microsoft Teams incoming webhooks, e-mail.

Every channel follows the small `Channel` protocol: ``send(message)`` delivers one `Message` or raises
`DeliveryError` (``permanent=True`` when retrying cannot help).  Secrets (webhook URLs, the SMTP
password) are read from environment variables at send time and never appear in errors or logs.
Each message carries its idempotency key (``Idempotency-Key`` header, ``idempotency_key`` field,
e-mail ``Message-ID``) so a receiver can drop the rare duplicate of an at-least-once delivery.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable

import requests

from ..config import PeersConfig
from ..errors import DeliveryError
from .groups import ChannelSpec, Group

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 409, 425, 429}

#: Outbox channel name of the e-mail to the asker (group channel names may not start with "@").
ASKER_CHANNEL = "@asker"
#: Outbox channel name of the e-mail to a follower of the question (same notices as the asker's).
FOLLOWER_CHANNEL = "@follower"
#: Notices about the asker's question, and the webhook ``event`` of every kind.
ASKER_KINDS = ("answered", "verified", "duplicate", "rerouted")
EVENTS = {"escalated": "escalation.created", "reminder": "escalation.reminder",
          "answered": "escalation.answered", "verified": "escalation.verified",
          "duplicate": "escalation.duplicate", "rerouted": "escalation.rerouted",
          "claimed": "escalation.claimed", "assigned": "escalation.assigned", "unclaimed": "escalation.unclaimed",
          "overdue": "escalation.overdue"}
#: Subject prefixes of the messages to a group (or one of its people) that are not the asker's.
_PREFIXES = {"reminder": "Reminder: unanswered question", "claimed": "Taken", "assigned": "Assigned",
             "unclaimed": "Open again", "overdue": "Overdue question"}


@dataclass(frozen=True)
class Message:
    """What a channel tells its people: a new escalation, a reminder, or news for the asker."""

    key: str
    kind: str  # "escalated" | "reminder" | "answered" | "verified" | "duplicate" | "rerouted"
    escalation: dict[str, Any]
    recipients: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def for_asker(self) -> bool:
        """True for the e-mail written to the asker (worded "your question"), not to the group."""
        return bool(self.escalation.get("asker_email"))

    @property
    def for_follower(self) -> bool:
        """True for the e-mail to someone who follows the question (worded "a question you follow")."""
        return self.for_asker and bool(self.escalation.get("follower"))

    @property
    def _yours(self) -> str:
        return "A question you follow" if self.for_follower else "Your question"

    @property
    def subject(self) -> str:
        q = " ".join(str(self.escalation.get("question", "")).split())
        short = q if len(q) <= 80 else q[:77] + "..."
        if self.kind in ASKER_KINDS:
            done = {"answered": "answered", "verified": "answer verified",
                    "duplicate": "answered before", "rerouted": "sent on"}[self.kind]
            who = self._yours if self.for_asker else f"Question of {self.escalation.get('asker')}"
            return f"[{self.escalation.get('group')}] {who} {done}: {short}"
        prefix = _PREFIXES.get(self.kind, "New question")
        if self.kind == "assigned" and self.escalation.get("person_email"):
            prefix = "Assigned to you"
        return f"[{self.escalation.get('group')}] {prefix}: {short}"

    def _asker_lines(self) -> list[str]:
        e = self.escalation
        mine = self.for_asker
        out = [f"{self._yours if mine else 'Question'}: {e.get('question', '')}"]
        if not mine:
            out.append(f"Asked by: {e.get('asker')}")
        if self.kind == "rerouted":
            out.append(f"It was sent on from {e.get('rerouted_from')} to {e.get('group')}: {e.get('reroute_reason', '')}")
        elif self.kind == "duplicate":
            dup = e.get("duplicate") or {}
            out.append("It was answered before" + (f": {dup['title']}" if dup.get("title") else "."))
            if dup.get("answer"):
                out.append(f"Answer: {dup['answer']}")
            if dup.get("url"):
                out.append(f"Link: {dup['url']}")
        else:
            by = e.get("answered_by") or f"the {e.get('group')} group"
            if self.kind == "verified":
                out.append(f"An expert of {e.get('group')} verified the answer.")
            out.append(f"Answer from {by}{' (verified)' if e.get('verified') else ''}: {e.get('answer') or ''}")
        if e.get("url"):
            out.append(f"{'See it' if mine else 'Open it'} here: {e['url']}")
        out.append(f"Reference: {e.get('id')}")
        return out

    def lines(self) -> list[str]:
        """The message body as plain lines (user text is data here, never markup)."""
        e = self.escalation
        if self.kind in ASKER_KINDS:
            return self._asker_lines()
        out = [f"Question: {e.get('question', '')}", f"Group: {e.get('group')} ({e.get('reason', '')})"]
        if self.kind in ("claimed", "assigned"):
            out.append(f"Taken by: {e.get('claimed_by')}" + (f" (assigned by {e['claim_changed_by']})"
                       if self.kind == "assigned" and e.get("claim_changed_by") else ""))
        elif self.kind == "unclaimed":
            out.append(f"Given back by: {e.get('claim_changed_by') or 'the operator'}; nobody holds it now")
        elif self.kind == "overdue":
            out.append(f"Unanswered for {e.get('hours_open')} hours in {e.get('overdue_group', e.get('group'))}"
                       + (f": {e['sla_action']}" if e.get("sla_action") else ""))
        if e.get("user"):
            out.append(f"Asked by: {e['user']}")
        if e.get("note"):
            out.append(f"Details: {e['note']}")
        seen = e.get("seen") or []
        if seen:
            out.append("Already shown to the asker (not good enough):")
            out.extend(f"  - {s.get('title', '')} {s.get('url', '')}".rstrip() for s in seen[:5])
        if e.get("attachments"):
            out.append(f"Attachments: {', '.join(e['attachments'])}")
        if e.get("url"):
            out.append(f"Answer it here: {e['url']}")
        out.append(f"Answer from the command line: kbsearch answer {e.get('id')} --text \"...\"")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"event": EVENTS.get(self.kind, f"escalation.{self.kind}"), "idempotency_key": self.key,
                "escalation": self.escalation}


@runtime_checkable
class Channel(Protocol):
    """Delivers one message somewhere people see it; raises `DeliveryError` when it could not."""

    name: str
    type: str

    def send(self, message: Message) -> None:
        """Deliver ``message`` once; the same key may arrive again only after an unconfirmed attempt."""
        ...


def _secret(env: Mapping[str, str], var: str, what: str) -> str:
    value = env.get(var, "").strip() if var else ""
    if not value:
        raise DeliveryError(f"{what}: environment variable {var or '(none named)'} is not set")
    return value


class _HttpChannel:
    """POST a JSON body to a URL held in an environment variable."""

    type = "webhook"

    def __init__(self, name: str, url_env: str, *, timeout: float = 10.0,
                 env: Mapping[str, str] | None = None, session: requests.Session | None = None) -> None:
        self.name = name
        self.url_env = url_env
        self.timeout = timeout
        self._env = env
        self._session = session

    def body(self, message: Message) -> dict[str, Any]:
        return message.to_json()

    def send(self, message: Message) -> None:
        env = os.environ if self._env is None else self._env
        url = _secret(env, self.url_env, f"channel {self.name}")
        headers = {"Idempotency-Key": message.key, "User-Agent": "kbsearch-notify/1"}
        poster = self._session or requests
        try:
            response = poster.post(url, json=self.body(message), headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:  # the message would contain the secret URL
            raise DeliveryError(f"channel {self.name}: {type(exc).__name__} reaching the webhook") from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return
        permanent = 400 <= status < 500 and status not in _RETRYABLE_STATUS
        raise DeliveryError(f"channel {self.name}: webhook answered HTTP {status}", permanent=permanent)


class WebhookChannel(_HttpChannel):
    """Generic JSON webhook: ``{"event", "idempotency_key", "escalation": {...}}``."""

    type = "webhook"


def _slack_escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(_HttpChannel):
    """Slack incoming webhook: ``text`` fallback plus Block Kit sections."""

    type = "slack"

    def body(self, message: Message) -> dict[str, Any]:
        text = "\n".join(_slack_escape(line) for line in message.lines())
        return {
            "text": _slack_escape(message.subject),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"id `{_slack_escape(message.key)}`"}]},
            ],
        }


#: Adaptive Card TextBlocks render bold, italic and links: escaping these keeps user text literal.
_TEAMS_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\*_[]`"})


def _teams_plain(text: str) -> str:
    """Adaptive Card text blocks render a markdown subset; escape it so user text stays plain text."""
    return text.translate(_TEAMS_MARKDOWN)


class TeamsChannel(_HttpChannel):
    """Microsoft Teams incoming webhook (Workflows): a message with an Adaptive Card."""

    type = "teams"

    def body(self, message: Message) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": _teams_plain(message.subject), "weight": "Bolder", "size": "Medium",
             "wrap": True},
        ]
        blocks += [{"type": "TextBlock", "text": _teams_plain(line), "wrap": True} for line in message.lines()]
        card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                "type": "AdaptiveCard", "version": "1.4", "body": blocks}
        url = message.escalation.get("url")
        if url:
            title = "Open" if message.kind in ASKER_KINDS else "Answer"
            card["actions"] = [{"type": "Action.OpenUrl", "title": title, "url": url}]
        return {"type": "message", "summary": message.subject, "idempotency_key": message.key,
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}


class EmailChannel:
    """E-mail over SMTP (``smtplib``); STARTTLS/SSL and login as configured, password from the environment."""

    type = "email"

    def __init__(self, name: str, to: tuple[str, ...], cfg: PeersConfig, *,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.to = to
        self.cfg = cfg
        self._env = env

    def send(self, message: Message) -> None:
        recipients = list(message.recipients or self.to)
        if not recipients:
            raise DeliveryError(f"channel {self.name}: no recipients (set `to` or the group's members/experts)",
                                permanent=True)
        cfg = self.cfg
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = cfg.mail_from
        mail["To"] = ", ".join(recipients)
        digest = hashlib.sha256(message.key.encode()).hexdigest()[:32]
        mail["Message-ID"] = f"<{digest}@kbsearch>"
        mail["X-Kbsearch-Idempotency-Key"] = message.key
        mail.set_content("\n".join(message.lines()) + "\n")
        env = os.environ if self._env is None else self._env
        try:
            smtp_cls = smtplib.SMTP_SSL if cfg.smtp_ssl else smtplib.SMTP
            with smtp_cls(cfg.smtp_host, cfg.smtp_port, timeout=cfg.send_timeout) as smtp:
                if cfg.smtp_starttls and not cfg.smtp_ssl:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.smtp_user:
                    smtp.login(cfg.smtp_user, _secret(env, cfg.smtp_password_env, "SMTP password"))
                smtp.send_message(mail, from_addr=cfg.mail_from, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError(f"channel {self.name}: every recipient was refused", permanent=True) from None
        except smtplib.SMTPAuthenticationError:
            raise DeliveryError(f"channel {self.name}: SMTP login refused") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"channel {self.name}: SMTP {type(exc).__name__}") from None


def make_channel(spec: ChannelSpec, group: Group, cfg: PeersConfig, *,
                 env: Mapping[str, str] | None = None) -> Channel:
    """The channel a group's config describes (e-mail goes to ``to`` or else the group's people)."""
    name = f"{group.name}/{spec.name}"
    if spec.type == "email":
        return EmailChannel(name, spec.to or tuple(dict.fromkeys(group.experts + group.members)), cfg, env=env)
    cls = {"webhook": WebhookChannel, "slack": SlackChannel, "teams": TeamsChannel}[spec.type]
    return cls(name, spec.url_env, timeout=cfg.send_timeout, env=env)


def message_recipients(spec: ChannelSpec, group: Group, kind: str) -> tuple[str, ...]:
    """Reminders go to the group's experts by e-mail; new questions to the channel's own list."""
    if spec.type == "email" and kind == "reminder" and group.experts:
        return group.experts
    return ()


__all__ = ["ASKER_CHANNEL", "ASKER_KINDS", "FOLLOWER_CHANNEL", "EVENTS", "Channel", "EmailChannel", "Message", "SlackChannel",
           "TeamsChannel", "WebhookChannel",
           "make_channel", "message_recipients"]
