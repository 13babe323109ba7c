"""Two ``kbsearch serve`` processes (as if on two machines) sharing one PostgreSQL and one index directory:
what one stores the other answers, nothing is lost or doubled, each notification is sent once, and
each server follows the index versions the other publishes."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.peers.service import answer_doc_id
from tests._hooks import WebhookServer

#: Unusual words, one per answered question, so a search finds exactly its answer.
WORDS = ["quokka", "axolotl", "pangolin", "narwhal", "okapi", "capybara", "tapir", "wombat", "ibex", "gecko"]


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    receiver = WebhookServer()
    yield receiver
    receiver.close()


def config(h: Any) -> str:
    """The portal's groups, it-support notified through the webhook."""
    return h.GROUPS_TOML.replace('members = ["max"]\n', 'members = ["max"]\nchannels = [{type = "webhook", '
                                 'url_env = "KBT_SHARED_HOOK"}]\n', 1)


def test_two_servers_share_one_postgresql_and_one_index(tmp_path: Path, h: Any, hook: WebhookServer, pg_url: str) -> None:
    index = h.build_index(tmp_path / "idx")
    env = {"KBSEARCH_DATABASE_URL": pg_url, "KBT_SHARED_HOOK": hook.url("/it")}
    servers = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(h.Server(index, tmp_path / name, extra_env=env, config=config(h)))
        a, b = servers
        made: dict[str, Any] = {}  # escalation id -> the server that created it
        errors: list[str] = []
        lock = threading.Lock()

        def ask(worker: int) -> None:
            for k in range(5):
                n = worker * 5 + k
                srv = servers[n % 2]
                r = srv.api("POST", "escalations", token=h.token_for(f"user{n}", "staff"),
                            json={"question": f"my laptop number {n} shows a blue screen at boot",
                                  "group": "it-support"})
                with lock:
                    if r.status_code == 201:
                        made[r.json()["id"]] = srv
                    else:
                        errors.append(f"{r.status_code} {r.text}")

        threads = [threading.Thread(target=ask, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(made) == 40
        expert = h.token_for("ivan", "it-support")
        for srv in servers:  # each server lists all 40, once each
            listed = srv.api("GET", "escalations", token=expert, params={"status": "all", "limit": 500}).json()
            ids = [e["id"] for e in listed["escalations"]]
            assert len(ids) == len(set(ids)) == 40 and set(ids) == set(made)
        # Ten answered, each through the server that did not store it.
        answered = sorted(made)[:10]
        for word, esc_id in zip(WORDS, answered):
            other = b if made[esc_id] is a else a
            r = other.api("POST", f"escalations/{esc_id}/answer", token=expert,
                          json={"text": f"Boot once into the {word} recovery menu and roll the driver back."})
            assert r.status_code == 200 and r.json()["status"] == "answered", r.text
        for word, esc_id in zip(WORDS, answered):
            for srv in servers:
                esc = srv.api("GET", f"escalations/{esc_id}", token=expert).json()
                assert word in esc["answer"] and esc["status"] == "answered", esc
                # The answer was indexed by one server; the other follows the version it published.
                hits = srv.api("POST", "search", token=expert, json={"question": f"{word} recovery menu"}).json()
                assert hits["hits"][0]["id"] == answer_doc_id(esc_id), (srv.url, hits["hits"][:2])
        # Whatever the servers did not send at once is sent by one deliver run; then nothing is pending.
        out = subprocess.run([h.KBSEARCH, "deliver", "--index", str(index), "--json"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path / "a", env={**h.os.environ, **env})
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["pending"] == 0
        keys = hook.keys()
        assert len(keys) == len(set(keys)) == 40 + 10  # each new question, and each answer, once
        assert {k.split("/")[0] for k in keys if k.endswith("/escalated")} == set(made)
        assert sorted(k.split("/")[0] for k in keys if "/answered/" in k) == answered
    finally:
        for srv in servers:
            srv.stop()
    for srv in servers:
        assert "Traceback" not in srv.logs(), srv.logs()
    assert not (index / "peers.sqlite3").exists()  # the shared state is in PostgreSQL only
    import psycopg

    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM escalations").fetchone() == (40,)
        assert con.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall() == [("delivered", 50)]


def test_the_servers_outbox_loops_send_each_notification_once(tmp_path: Path, h: Any, hook: WebhookServer,
                                                              pg_url: str) -> None:
    """Nothing is sent at escalation; three servers' own outbox loops (``peers.deliver_every``) drain
    the shared outbox, each notification claimed by one of them."""
    index = h.build_index(tmp_path / "idx")
    env = {"KBSEARCH_DATABASE_URL": pg_url, "KBT_SHARED_HOOK": hook.url("/it"),
           "KBSEARCH_PEERS_DELIVER_EVERY": "0.1", "KBSEARCH_PEERS_DELIVER_ON_ESCALATE": "false"}
    servers = []
    try:
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
            servers.append(h.Server(index, tmp_path / name, extra_env=env, config=config(h)))
        made = []
        for n in range(24):
            r = servers[n % 3].api("POST", "escalations", token=h.token_for(f"user{n}", "staff"),
                                   json={"question": f"the docking station number {n} shows no screen",
                                         "group": "it-support"})
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
        deadline = h.time.monotonic() + 120
        while len(hook.keys("/it")) < 24 and h.time.monotonic() < deadline:
            h.time.sleep(0.05)  # the servers' loops do the work
        import psycopg

        with psycopg.connect(pg_url) as con:  # all sent and marked so: no claim is left to send again
            assert con.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall() == [("delivered", 24)]
        keys = hook.keys("/it")
        assert len(keys) == len(set(keys)) == 24
        assert sorted(k.split("/")[0] for k in keys) == sorted(made)
    finally:
        for srv in servers:
            srv.stop()
    for srv in servers:
        assert "Traceback" not in srv.logs(), srv.logs()
        assert srv.proc.returncode == 0, srv.logs()  # SIGTERM ends a server cleanly, its loop stopped
        assert "outbox every 0.1 s" in srv.logs()


def test_the_api_answers_503_json_when_the_store_is_unreachable(tmp_path: Path, h: Any) -> None:
    from werkzeug.test import Client

    from kbsearch import KnowledgeBase, Settings
    from kbsearch.web import create_app

    settings = Settings()
    settings.index.path = h.build_index(tmp_path / "idx")
    settings.store.url = "postgresql://kbsearch:pw-not-shown@127.0.0.1:1/kb"
    settings.store.connect_timeout = 2
    with KnowledgeBase.open(settings=settings) as kb:
        client = Client(create_app(kb, secret=h.SECRET))
        r = client.post("/api/escalations", json={"question": "the printer jams"},
                        headers={"Authorization": f"Bearer {h.token_for('max', 'it-support')}"})
        assert r.status_code == 503
        body = r.get_json()
        assert "pw-not-shown" not in r.get_data(as_text=True) and "127.0.0.1:1" in json.dumps(body)
        # Searching needs no store: it still works.
        assert client.post("/api/search", json={"question": "paper jam printer"}).status_code == 200
