"""Real parts for the peer tests: an HTTP server receiving webhooks (failing on demand), an SMTP server
(aiosmtpd) receiving e-mail, and knowledge bases in temporary folders with SQLite stores."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from kbsearch import KnowledgeBase, Settings

from tests._hooks import WebhookServer

#: Small subsets of the evaluation sets, in the repository (tests/data/eval/README.md).
EVAL = Path(__file__).resolve().parents[1] / "data" / "eval"


class MailSink:
    """aiosmtpd handler keeping every received message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append({"to": list(envelope.rcpt_tos), "msg": msg})
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


def peer_settings(root: Path, hook: WebhookServer | None = None, smtp_port: int | None = None,
                  **peers: Any) -> Settings:
    """Settings with two real groups (IT with a webhook and e-mail, HR with Slack) and fast retries."""
    settings = Settings()
    settings.index.path = root
    settings.index.writer_timeout = 0.0
    it_channels: list[dict[str, Any]] = [{"type": "webhook", "url_env": "KBT_IT_HOOK"}]
    if smtp_port is not None:
        it_channels.append({"type": "email", "name": "mail", "to": ["it-team@example.com"]})
        settings.peers.smtp_port = smtp_port
    settings.peers.groups = [
        {"name": "it-support", "description": "Laptops, VPN, passwords, e-mail accounts, printers and wifi",
         "keywords": ["vpn", "password", "laptop", "printer", "wifi", "outlook"],
         "experts": ["bo@example.com"], "members": ["ana@example.com"], "channels": it_channels},
        {"name": "hr", "description": "Holidays, payroll, sick leave, contracts and expenses",
         "keywords": ["vacation", "holiday", "salary", "payslip", "sick leave", "expenses"],
         "experts": ["hr-lead@example.com"], "channels": [{"type": "slack", "url_env": "KBT_HR_SLACK"}]},
    ]
    settings.peers.retry_initial = 0.05
    settings.peers.retry_factor = 2.0
    settings.peers.retry_max = 0.2
    settings.peers.claim_seconds = 2.0
    settings.peers.send_timeout = 5.0
    for key, value in peers.items():
        setattr(settings.peers, key, value)
    return settings


@pytest.fixture
def hook_env(webhook: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> WebhookServer:
    monkeypatch.setenv("KBT_IT_HOOK", webhook.url("/it"))
    monkeypatch.setenv("KBT_HR_SLACK", webhook.url("/hr-slack"))
    return webhook


@pytest.fixture
def kb(tmp_path: Path, hook_env: WebhookServer, store_url: str) -> Iterator[KnowledgeBase]:
    """A knowledge base with the two groups, on each store (SQLite file; PostgreSQL)."""
    settings = peer_settings(tmp_path / "index", hook_env)
    settings.store.url = store_url
    base = KnowledgeBase.open(settings=settings)
    yield base
    base.close()


PAGES = [
    {"id": "p1", "title": "Connecting to the office wifi", "text": "Choose the network CORP and sign in with "
     "your laptop account. Guests use CORP-GUEST.", "url": "https://intranet/wifi"},
    {"id": "p2", "title": "Booking a meeting room", "text": "Rooms are booked in the calendar; pick the room "
     "as a resource.", "url": "https://intranet/rooms"},
    {"id": "a1", "kind": "answer", "title": "How do I reset my password?", "text": "Go to the self-service "
     "portal and choose 'forgot password'.", "group": "it-support"},
    {"id": "a2", "kind": "answer", "title": "How many vacation days do I have?", "text": "25 days a year, "
     "see the HR portal.", "group": "hr"},
]
