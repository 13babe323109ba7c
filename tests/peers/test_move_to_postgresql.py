"""``kbsearch move-to-postgresql``: one machine's SQLite state (escalations with their history,
attachments and outbox, the usage log, the crawl state) moved into the shared PostgreSQL, where the
next server carries on with it; a database that holds state already is refused, nothing copied."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from click.testing import CliRunner

from kbsearch import Document, KnowledgeBase
from kbsearch.cli import main

from .conftest import PAGES, WebhookServer, peer_settings

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def _seen(kb: KnowledgeBase) -> dict[str, object]:
    """What a user of ``kb`` finds: escalations with answers, history and attachments, the outbox, the
    usage log and each source's last run."""
    escalations = {}
    for esc in kb.escalations():
        full = kb.escalation(esc.id)
        escalations[esc.id] = (full.question, full.status, full.answer, [e["kind"] for e in full.events],
                               [kb.attachment(esc.id, a.id).data for a in full.attachments])
    return {"escalations": escalations, "outbox": kb.peers.store.outbox_counts(),
            "asks": [(a["id"], a["question"], a["action"]) for a in kb.usage.asks()],
            "feedback": [(f.decision_id, f.helpful) for f in kb.usage.feedback()],
            "runs": {h.source: (h.health, h.fetched) for h in kb.source_health()}}


def test_the_state_of_one_machine_moves_and_the_next_server_carries_on(tmp_path: Path, hook_env: WebhookServer,
                                                                      pg_url: str) -> None:
    root = tmp_path / "index"
    pages = tmp_path / "pages.jsonl"
    pages.write_text("".join(json.dumps(p) + "\n" for p in PAGES), encoding="utf-8")
    settings = peer_settings(root, hook_env)
    with KnowledgeBase.open(settings=settings) as kb:  # a while on one machine, on SQLite
        kb.import_source("jsonl", name="intranet", path=str(pages))
        decision = kb.ask("how do I reset my password", user="ana@example.com")
        kb.feedback(decision.id, True, user="ana@example.com")
        kb.ask("where are the spare toner cartridges", user="carl@example.com")
        first = kb.escalate("My laptop VPN disconnects every ten minutes", user="ana@example.com",
                            attachments=[("screen.jpg", "image/jpeg", JPEG)])
        kb.escalate("The scanner on floor 2 stopped mailing scans", user="carl@example.com", group="it-support",
                    deliver=False)
        kb.answer(first.id, "Update the VPN client to 5.2.", by="bo@example.com")
        before = _seen(kb)
    assert len(before["escalations"]) == 2 and len(before["asks"]) == 2 and before["runs"]["intranet"][0] == "ok"
    assert before["outbox"]["pending"] >= 1  # the second question's notice is still to be sent
    files = {p.name: p.read_bytes() for p in root.glob("*.sqlite3")}

    env = {"KBSEARCH_DATABASE_URL": pg_url, "KBT_IT_HOOK": hook_env.url("/it"), "KBT_HR_SLACK": hook_env.url("/hr")}
    config = tmp_path / "kbsearch.toml"
    config.write_text("", encoding="utf-8")
    out = CliRunner().invoke(main, ["move-to-postgresql", "--index", str(root), "--config", str(config), "--json"],
                             env=env)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert set(report["files"]) == {"peers.sqlite3", "usage.sqlite3", "crawl-state.sqlite3"}
    assert report["files"]["peers.sqlite3"]["escalations"] == 2 and report["files"]["usage.sqlite3"]["asks"] == 2
    password = psycopg.conninfo.conninfo_to_dict(pg_url)["password"]
    assert password and password not in out.output  # the database is named without its password
    assert {p.name: p.read_bytes() for p in root.glob("*.sqlite3")} == files  # the files stay as they were (already at the newest schema)

    settings.store.url = pg_url  # the next server: PostgreSQL only
    with KnowledgeBase.open(settings=settings) as kb:
        assert _seen(kb) == before
        third = kb.escalate("The printer on floor 3 prints blank pages", user="dora@example.com")
        kb.answer(third.id, "Replace the toner.", by="bo@example.com")  # new history rows after the copied ids
        assert kb.escalation(third.id).status == "answered"
        report = kb.deliver_notifications()
        assert report.pending == 0 and report.failed == 0
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM escalations").fetchone() == (3,)


def test_a_database_holding_state_already_is_refused_and_nothing_is_copied(tmp_path: Path, hook_env: WebhookServer,
                                                                          pg_url: str) -> None:
    root = tmp_path / "index"
    settings = peer_settings(root, hook_env)
    with KnowledgeBase.open(settings=settings) as kb:
        kb.escalate("The scanner on floor 2 stopped mailing scans", user="carl@example.com", deliver=False)
    shared = peer_settings(tmp_path / "elsewhere", hook_env)
    shared.store.url = pg_url
    with KnowledgeBase.open(settings=shared) as other:  # another machine already works on that database
        other.escalate("The wifi in room 4 drops", user="eve@example.com", deliver=False)
    env = {"KBSEARCH_DATABASE_URL": pg_url}
    config = tmp_path / "kbsearch.toml"
    config.write_text("", encoding="utf-8")
    out = CliRunner().invoke(main, ["move-to-postgresql", "--index", str(root), "--config", str(config)], env=env)
    assert out.exit_code == 1
    assert "already holds" in out.output and "escalations" in out.output and len(out.output.strip().splitlines()) == 1
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT question FROM escalations").fetchall() == [("The wifi in room 4 drops",)]
        assert con.execute("SELECT count(*) FROM events WHERE escalation_id NOT IN "
                           "(SELECT id FROM escalations)").fetchone() == (0,)


def test_without_a_database_url_it_says_what_to_set(tmp_path: Path, hook_env: WebhookServer) -> None:
    KnowledgeBase.open(settings=peer_settings(tmp_path / "i", hook_env)).close()
    config = tmp_path / "kbsearch.toml"
    config.write_text("", encoding="utf-8")
    out = CliRunner().invoke(main, ["move-to-postgresql", "--index", str(tmp_path / "i"), "--config", str(config)],
                             env={"KBSEARCH_DATABASE_URL": ""})
    assert out.exit_code != 0 and "KBSEARCH_DATABASE_URL" in out.output


def test_with_peers_kept_on_sqlite_the_escalations_stay_and_the_rest_moves(tmp_path: Path, hook_env: WebhookServer,
                                                                             pg_url: str) -> None:
    """``peers.store = "sqlite"`` keeps escalations in their file whatever the URL: the move copies the
    usage log and crawl state, leaves ``peers.sqlite3`` and says so (a copy nothing reads would later
    block a real move as "already holds")."""
    root = tmp_path / "index"
    with KnowledgeBase.open(settings=peer_settings(root, hook_env)) as kb:
        kb.escalate("The scanner on floor 2 stopped mailing scans", user="carl@example.com", deliver=False)
        kb.ask("where do I find the scanner manual")
    config = tmp_path / "kbsearch.toml"
    config.write_text('[peers]\nstore = "sqlite"\n', encoding="utf-8")
    out = CliRunner().invoke(main, ["move-to-postgresql", "--index", str(root), "--config", str(config)],
                             env={"KBSEARCH_DATABASE_URL": pg_url})
    assert out.exit_code == 0, out.output
    assert "peers.sqlite3: not copied (peers.store is \"sqlite\"" in out.output
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT to_regclass('escalations')").fetchone() == (None,)
        assert con.execute("SELECT count(*) FROM asks").fetchone()[0] >= 1
