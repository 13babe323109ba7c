"""Peer groups and the answer loop: groups, escalation store, outbox, channels, answers flowing back."""

from ._claim_rules import ClaimRules
from .channels import Channel, EmailChannel, Message, SlackChannel, TeamsChannel, WebhookChannel
from .groups import ChannelSpec, Group, Groups
from .outbox import DeliveryReport, Outbox
from .store import Attachment, Escalation, EscalationStore, Notification, SqliteStore, SqlStore

__all__ = [
    "Attachment", "Channel", "ClaimRules", "ChannelSpec", "DeliveryReport", "EmailChannel", "Escalation", "EscalationStore",
    "Group", "Groups", "Message", "Notification", "Outbox", "SlackChannel", "SqliteStore", "SqlStore",
    "TeamsChannel", "WebhookChannel",
]
