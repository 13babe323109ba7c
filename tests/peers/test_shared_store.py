"""Several processes on one PostgreSQL store: every notification is delivered exactly once however many
processes run the outbox, and nothing of the shared state lands in SQLite files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kbsearch import KnowledgeBase
from kbsearch.errors import StoreError

from .conftest import WebhookServer, peer_settings

REPO = str(Path(__file__).resolve().parents[2])

_DELIVERER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from kbsearch import KnowledgeBase
    from tests.peers.conftest import peer_settings
    settings = peer_settings(Path({root!r}))
    settings.store.url = {url!r}
    kb = KnowledgeBase.open(settings=settings)
    kb.peers.store.outbox_counts()  # connected and migrated before the start signal
    print("READY", flush=True)
    sys.stdin.readline()
    delivered = 0
    while True:  # small batches, so the processes' claims interleave
        report = kb.deliver_notifications(limit=2)
        delivered += report.delivered
        if report.delivered == 0 and report.pending == 0:
            break
    kb.close()
    print(json.dumps({{"delivered": delivered}}), flush=True)
""")


def test_four_processes_deliver_each_notification_exactly_once(tmp_path: Path, hook_env: WebhookServer,
                                                               pg_url: str) -> None:
    root = tmp_path / "index"
    settings = peer_settings(root)
    settings.store.url = pg_url
    kb = KnowledgeBase.open(settings=settings)
    ids = [kb.escalate(f"laptop {n} will not start after the update", group="it-support" if n % 2 else "hr",
                       user=f"user{n}", deliver=False).id for n in range(60)]
    assert kb.peers.store.outbox_counts()["pending"] == 60
    children = [subprocess.Popen([sys.executable, "-c", _DELIVERER.format(repo=REPO, root=str(root), url=pg_url)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": REPO}) for _ in range(4)]
    try:
        for child in children:  # all connected ...
            assert child.stdout is not None and child.stdout.readline().strip() == "READY"
        for child in children:  # ... then all start at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [c.returncode for c in children] == [0] * 4, outs
    per_process = [json.loads(out.strip().splitlines()[-1])["delivered"] for out, _err in outs]
    assert sum(per_process) == 60
    keys = hook_env.keys()
    assert len(keys) == len(set(keys)) == 60  # each once, with its idempotency key
    assert set(keys) == {f"{i}/{'it-support/webhook' if n % 2 else 'hr/slack'}/escalated" for n, i in enumerate(ids)}
    assert kb.peers.store.outbox_counts() == {"pending": 0, "delivered": 60, "failed": 0}
    assert all(sum(e["kind"] == "notified" for e in kb.escalation(i).events) == 1 for i in ids)
    assert not (root / "peers.sqlite3").exists()  # the escalations and the outbox live in PostgreSQL only
    kb.close()


def test_an_unreachable_or_malformed_store_url_is_one_clear_line_without_the_password(
        tmp_path: Path, postgres: object) -> None:
    settings = peer_settings(tmp_path / "index")
    settings.store.url = "postgresql://kbsearch:s3cret-pw@127.0.0.1:1/nothing"
    settings.store.connect_timeout = 2
    kb = KnowledgeBase.open(settings=settings)
    with pytest.raises(StoreError) as caught:
        kb.escalate("the printer jams", deliver=False)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "\n" not in message
    assert "postgresql://kbsearch:***@127.0.0.1:1/nothing" in message and caught.value.http_status == 503
    for bad in ("mysql://db/x", "postgresql://host:notaport/db"):
        settings.store.url = bad
        with pytest.raises(StoreError, match="store URL"):
            KnowledgeBase.open(settings=settings).escalate("the printer jams", deliver=False)
    # A password given as a parameter (libpq takes any of its parameters after "?"), or in a conninfo
    # string, is never shown either.
    for url in ("postgresql://kbsearch@127.0.0.1:1/x?password=s3cret-pw&sslmode=disable",
                "host=127.0.0.1 password=s3cret-pw dbname=x", "host=h password='s3cret-pw' dbname=x"):
        settings.store.url = url
        with pytest.raises(StoreError) as caught:
            KnowledgeBase.open(settings=settings).escalate("the printer jams", deliver=False)
        assert "s3cret-pw" not in str(caught.value) and "password=***" in str(caught.value), str(caught.value)
    assert not (tmp_path / "index" / "peers.sqlite3").exists()  # nothing fell back to SQLite silently
    kb.close()


def test_cli_on_postgresql_and_its_one_line_errors(tmp_path: Path, pg_url: str) -> None:
    """The CLI takes the URL from KBSEARCH_DATABASE_URL: an escalation made by one command is listed by
    the next; a wrong password is one line without it, exit status 1."""
    from click.testing import CliRunner

    from kbsearch.cli import main

    config = tmp_path / "kbsearch.toml"
    config.write_text('[[groups]]\nname = "it-support"\nexperts = ["bo"]\n', encoding="utf-8")
    opts = ["--index", str(tmp_path / "index"), "--config", str(config)]
    runner = CliRunner()
    out = runner.invoke(main, ["escalate", "the scanner jams", "--group", "it-support", "--json", *opts],
                        env={"KBSEARCH_DATABASE_URL": pg_url})
    assert out.exit_code == 0, out.output
    esc_id = json.loads(out.output)["id"]
    out = runner.invoke(main, ["escalations", "--json", *opts], env={"KBSEARCH_DATABASE_URL": pg_url})
    assert out.exit_code == 0 and [e["id"] for e in json.loads(out.output)] == [esc_id]
    wrong = pg_url.replace("@", "x-wrong@", 1)  # the password with a suffix
    out = runner.invoke(main, ["escalations", *opts], env={"KBSEARCH_DATABASE_URL": wrong})
    assert out.exit_code == 1 and out.output.startswith("error: ") and out.output.count("\n") == 1, out.output
    assert "x-wrong" not in out.output and "password authentication failed" in out.output
    assert not (tmp_path / "index" / "peers.sqlite3").exists()
