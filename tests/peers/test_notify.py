"""Channels (contract tests over every implementation) and the outbox's delivery guarantees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from kbsearch import KnowledgeBase
from kbsearch.config import PeersConfig
from kbsearch.errors import DeliveryError
from kbsearch.peers.channels import (
    Channel,
    EmailChannel,
    Message,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
)

from .conftest import MailSink, WebhookServer, free_port, peer_settings

MESSAGE = Message(key="esc-1/it/hook/escalated", kind="escalated", escalation={
    "id": "esc-1", "question": "Printer <b>jams</b> & smokes", "group": "it", "reason": "keywords",
    "seen": [{"title": "Printer FAQ", "url": "https://intranet/printers"}], "attachments": ["jam.jpg"],
})


def _make(kind: str, hook: WebhookServer, port: int, env: dict[str, str]) -> Channel:
    cfg = PeersConfig(smtp_port=port, send_timeout=3.0)
    if kind == "email":
        return EmailChannel("it/mail", ("it@example.com",), cfg, env=env)
    cls = {"webhook": WebhookChannel, "slack": SlackChannel, "teams": TeamsChannel}[kind]
    env["KBT_URL"] = hook.url(f"/{kind}")
    return cls(f"it/{kind}", "KBT_URL", timeout=3.0, env=env)


def _received(kind: str, hook: WebhookServer, sink: MailSink) -> list[Any]:
    if kind == "email":
        return [m["msg"] for m in sink.messages]
    return [r for r in hook.requests if r["path"] == f"/{kind}"]


CHANNELS = ["webhook", "slack", "teams", "email"]


@pytest.mark.parametrize("kind", CHANNELS, ids=CHANNELS)
def test_channel_delivers_once_with_idempotency_key(kind: str, webhook: WebhookServer,
                                                    smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    channel = _make(kind, webhook, port, {})
    assert isinstance(channel, Channel)
    channel.send(MESSAGE)
    got = _received(kind, webhook, sink)
    assert len(got) == 1
    if kind == "email":
        assert got[0]["X-Kbsearch-Idempotency-Key"] == MESSAGE.key
        assert "Printer <b>jams</b> & smokes" in got[0].get_payload()
        assert got[0]["Subject"].startswith("[it] New question")
    else:
        assert got[0]["headers"]["Idempotency-Key"] == MESSAGE.key
        body = json.dumps(got[0]["json"])
        if kind == "slack":
            assert "&lt;b&gt;jams&lt;/b&gt; &amp; smokes" in body and "blocks" in got[0]["json"]
        elif kind == "teams":
            card = got[0]["json"]["attachments"][0]
            assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
            assert card["content"]["type"] == "AdaptiveCard"
            texts = [b["text"] for b in card["content"]["body"]]
            assert "Question: Printer <b>jams</b> & smokes" in texts  # no markdown in it to escape
        else:
            assert got[0]["json"]["escalation"]["question"] == MESSAGE.escalation["question"]
            assert got[0]["json"]["idempotency_key"] == MESSAGE.key


@pytest.mark.parametrize("kind", CHANNELS, ids=CHANNELS)
def test_channel_down_raises_retryable_error_without_secrets(kind: str, webhook: WebhookServer) -> None:
    dead = free_port()  # nothing listens here
    env = {"KBT_URL": f"http://127.0.0.1:{dead}/secret-token-123"}
    if kind == "email":
        channel: Channel = EmailChannel("it/mail", ("it@example.com",), PeersConfig(smtp_port=dead, send_timeout=2),
                                        env=env)
    else:
        cls = {"webhook": WebhookChannel, "slack": SlackChannel, "teams": TeamsChannel}[kind]
        channel = cls(f"it/{kind}", "KBT_URL", timeout=2.0, env=env)
    with pytest.raises(DeliveryError) as info:
        channel.send(MESSAGE)
    assert not info.value.permanent
    assert "secret-token-123" not in str(info.value)


@pytest.mark.parametrize("kind", ["webhook", "slack", "teams"], ids=["webhook", "slack", "teams"])
def test_http_channel_without_its_secret_in_env_fails_clearly(kind: str) -> None:
    cls = {"webhook": WebhookChannel, "slack": SlackChannel, "teams": TeamsChannel}[kind]
    with pytest.raises(DeliveryError, match="KBT_MISSING is not set"):
        cls("it/x", "KBT_MISSING", env={}).send(MESSAGE)


def _deliver_until_done(kb: KnowledgeBase, rounds: int = 60) -> None:
    for _ in range(rounds):
        if kb.deliver_notifications().pending == 0:
            return
        time.sleep(0.1)
    raise AssertionError("outbox did not drain")


def test_endpoint_down_then_up_delivers_every_escalation_exactly_once(tmp_path: Path, hook_env: WebhookServer,
                                                                      smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i", smtp_port=port))
    hook_env.status = 503  # down
    ids = [kb.escalate(f"my laptop number {n} has no wifi", group="it-support", deliver=False).id
           for n in range(8)]
    report = kb.deliver_notifications()
    assert report.delivered == 8  # the e-mails went out; the webhooks are waiting
    assert hook_env.keys() == [] and report.pending == 8
    esc = kb.escalation(ids[0])
    hook_state = next(n for n in esc.notifications if n["channel"] == "it-support/webhook")
    assert hook_state["status"] == "pending" and "HTTP 503" in hook_state["last_error"]
    time.sleep(0.3)
    kb.deliver_notifications()  # still down: more retries, still nothing lost
    hook_env.status = 200  # back up
    _deliver_until_done(kb)
    keys = hook_env.keys("/it")
    assert sorted(keys) == sorted(f"{i}/it-support/webhook/escalated" for i in ids)
    mail_keys = [m["msg"]["X-Kbsearch-Idempotency-Key"] for m in sink.messages]
    assert sorted(mail_keys) == sorted(f"{i}/it-support/mail/escalated" for i in ids)
    kb.deliver_notifications()
    assert len(hook_env.keys()) == 8 and len(sink.messages) == 8  # nothing sent twice
    kb.close()


def test_permanent_failure_is_kept_visible(tmp_path: Path, hook_env: WebhookServer) -> None:
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i"))
    hook_env.status = 404
    esc = kb.escalate("vpn token expired", group="it-support")
    state = kb.escalation(esc.id).notifications[0]
    assert state["status"] == "failed" and "HTTP 404" in state["last_error"]
    assert kb.escalation(esc.id).open  # the question itself still waits for an answer
    kb.close()


def test_experts_are_reminded_once(tmp_path: Path, hook_env: WebhookServer, smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i", smtp_port=port, remind_after_hours=1.0))
    old = kb.escalate("outlook asks for my password every hour", group="it-support")
    answered = kb.escalate("outlook crashes on start", group="it-support")
    kb.answer(answered.id, "Start it once with /safe and remove the add-in.")
    outbox = kb.peers.outbox  # driven with an injected clock: ``now`` instead of waiting an hour
    assert kb.deliver_notifications().reminders == 0  # the real now: nothing open for an hour yet
    assert outbox.deliver(now=old.created + 3600 - 1).reminders == 0  # a second too early
    first = outbox.deliver(now=answered.created + 3600 + 1)  # both are an hour old; one was answered
    assert first.reminders == 1 and first.pending == 0
    second = outbox.deliver(now=answered.created + 2 * 3600)
    assert second.reminders == 0
    reminders = [m for m in sink.messages if m["msg"]["X-Kbsearch-Idempotency-Key"].endswith("/reminder")]
    assert len(reminders) == 1 and reminders[0]["to"] == ["bo@example.com"]  # the group's expert
    assert old.id in reminders[0]["msg"]["X-Kbsearch-Idempotency-Key"]
    assert [k for k in hook_env.keys() if k.endswith("/reminder")] == [f"{old.id}/it-support/webhook/reminder"]
    kb.close()


_CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from kbsearch import KnowledgeBase
    from tests.peers.conftest import peer_settings
    from pathlib import Path
    kb = KnowledgeBase.open(settings=peer_settings(Path({root!r}), smtp_port={port}))
    for n in range({count}):
        esc = kb.escalate(f"child question {{n}} about my laptop", group="it-support", deliver=False)
        print(esc.id, flush=True)
    print("WRITTEN", flush=True)
    time.sleep(60)  # killed here: written, not delivered
    kb.deliver_notifications()
""")


def test_sigkill_between_write_and_delivery_delivers_on_restart(tmp_path: Path, hook_env: WebhookServer,
                                                                 smtp: tuple[MailSink, int]) -> None:
    sink, port = smtp
    repo = str(Path(__file__).resolve().parents[2])
    root = tmp_path / "i"
    script = _CHILD.format(repo=repo, root=str(root), port=port, count=5)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": repo}, cwd=repo)
    ids = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "WRITTEN":
            break
        ids.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and len(ids) == 5
    assert hook_env.keys() == [] and sink.messages == []
    # Restart: a new process (here: this one) delivers everything, once.
    kb = KnowledgeBase.open(settings=peer_settings(root, smtp_port=port))
    _deliver_until_done(kb)
    kb.deliver_notifications()
    assert sorted(hook_env.keys()) == sorted(f"{i}/it-support/webhook/escalated" for i in ids)
    assert sorted(m["msg"]["X-Kbsearch-Idempotency-Key"] for m in sink.messages) == sorted(
        f"{i}/it-support/mail/escalated" for i in ids)
    kb.close()


_CHILD_MID = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from kbsearch import KnowledgeBase
    from tests.peers.conftest import peer_settings
    from pathlib import Path
    kb = KnowledgeBase.open(settings=peer_settings(Path({root!r})))
    print("READY", flush=True)
    kb.deliver_notifications()
""")


def test_sigkill_during_delivery_loses_nothing(tmp_path: Path, hook_env: WebhookServer) -> None:
    """Killed while sending: the claimed entries return after their lease; receivers dedupe by key."""
    repo = str(Path(__file__).resolve().parents[2])
    root = tmp_path / "i"
    kb = KnowledgeBase.open(settings=peer_settings(root))
    ids = [kb.escalate(f"laptop {n} overheats", group="it-support", deliver=False).id for n in range(6)]
    before_child = time.time()  # the child claims after this: its leases last past it
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_MID.format(repo=repo, root=str(root))],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": repo}, cwd=repo)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    deadline = time.time() + 30
    while not hook_env.keys() and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    # While the killed process's claims (peers.claim_seconds = 2) last, nobody else sends them ...
    before = set(hook_env.keys())
    assert kb.peers.outbox.deliver(now=before_child).delivered == 0 and set(hook_env.keys()) == before
    # ... once they expire (an injected clock, not a wait), the next run does.
    after_lease = kb.peers.outbox.deliver(now=time.time() + kb.settings.peers.claim_seconds + 0.5)
    assert after_lease.pending == 0
    keys = hook_env.keys()
    assert set(keys) == {f"{i}/it-support/webhook/escalated" for i in ids}  # none lost
    assert len(keys) <= len(ids) + 1  # at most the one in flight at the kill is repeated, with its key
    kb.close()


def test_teams_card_shows_user_markdown_as_text(webhook: WebhookServer) -> None:
    message = Message(key="k", kind="escalated", escalation={"id": "e", "question": "see [here](http://evil) *now*",
                                                            "group": "it"})
    TeamsChannel("it/teams", "KBT_URL", env={"KBT_URL": webhook.url("/teams")}).send(message)
    texts = [b["text"] for b in webhook.requests[0]["json"]["attachments"][0]["content"]["body"]]
    assert "Question: see \\[here\\](http://evil) \\*now\\*" in texts
