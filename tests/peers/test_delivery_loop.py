"""The outbox loop ``kbsearch serve`` runs (``peers.deliver_every``): what was queued is sent, a failed
send is retried by a later run, and a run that fails as a whole never stops the loop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kbsearch import KnowledgeBase, Settings
from kbsearch.web._delivery import DeliveryLoop
from tests._hooks import WebhookServer


def _wait_for(condition, seconds: float = 30.0) -> bool:
    """Poll ``condition`` (another thread does the work) until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_tick_sends_what_was_queued_and_retries_a_failed_send(kb: KnowledgeBase, hook_env: WebhookServer) -> None:
    esc = kb.escalate("my laptop drops the vpn every hour", user="carl", group="it-support", deliver=False)
    assert hook_env.keys() == [] and kb.peers.store.outbox_counts()["pending"] == 1
    later = [time.time()]
    loop = DeliveryLoop(kb, 3600, clock=lambda: later[0])
    hook_env.status = 503  # the receiver is down: the send fails and is kept for a retry
    loop.tick()
    assert hook_env.keys() == [] and kb.peers.store.outbox_counts()["pending"] == 1
    hook_env.status = 200
    later[0] += 3600  # past the retry's wait
    loop.tick()
    assert hook_env.keys("/it") == [f"{esc.id}/it-support/webhook/escalated"]
    loop.tick()  # nothing is due any more: nothing is sent twice
    assert len(hook_env.keys()) == 1 and kb.peers.store.outbox_counts()["pending"] == 0
    assert (loop.runs, loop.failures) == (3, 0)


def test_the_loop_runs_in_the_background_until_stopped(kb: KnowledgeBase, hook_env: WebhookServer) -> None:
    loop = DeliveryLoop(kb, 0.05).start()
    try:
        made = [kb.escalate(f"printer {n} on floor 2 jams", user="carl", group="it-support", deliver=False).id
                for n in range(3)]
        assert _wait_for(lambda: len(hook_env.keys("/it")) == 3), hook_env.keys()
    finally:
        loop.stop()
    assert not loop._thread.is_alive()
    assert sorted(k.split("/")[0] for k in hook_env.keys("/it")) == sorted(made)
    assert loop.runs >= 1 and loop.failures == 0


def test_a_failed_run_is_logged_and_the_loop_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    settings.index.path = tmp_path / "i"
    settings.store.url = "postgresql://kbsearch@127.0.0.1:1/kb"  # nothing listens there
    settings.store.connect_timeout = 1
    with KnowledgeBase.open(settings=settings) as base:
        loop = DeliveryLoop(base, 3600)
        loop.tick()
        loop.tick()
    assert (loop.runs, loop.failures) == (2, 2)
    failed = [r for r in caplog.records if "the outbox run failed" in r.getMessage()]
    assert len(failed) == 2 and all(r.exc_info is None for r in failed)  # one line each, no traceback
    assert "127.0.0.1:1" in failed[0].getMessage()  # says why


def test_the_period_must_be_positive(kb: KnowledgeBase) -> None:
    with pytest.raises(ValueError):
        DeliveryLoop(kb, 0)
