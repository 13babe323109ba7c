"""The escalation store's contract, run on both backends (``store_url``: the embedded SQLite file and a
fresh database of the test PostgreSQL cluster): versioned migrations applied once, the outbox claimed
by one deliverer at a time, idempotency keys, leases on an injected clock, attachments, row locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbsearch.errors import IdempotencyKeyError, InvalidEscalationError, StoreError
from kbsearch.peers import _schema
from kbsearch.peers.store import EscalationStore, NewNotification, SqliteStore, SqlStore
from kbsearch.storage.postgres import open_database


def open_store(url: str, folder: Path) -> SqlStore:
    """A store on ``url`` (PostgreSQL) or, when it is empty, in the SQLite file under ``folder``."""
    return SqlStore(open_database(url, pool_size=4)) if url else SqliteStore(folder / "peers.sqlite3")


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(store_url, tmp_path)
    yield opened
    opened.close()


def notes(*kinds: str) -> Any:
    return lambda esc: [NewNotification(group=esc.group, channel="hook", kind=k, payload={"id": esc.id}) for k in kinds]


def escalate(store: SqlStore, question: str = "the printer jams", **kw: Any) -> Any:
    args: dict[str, Any] = {"group": "it", "user": "ana", "note": "", "routing": {"reason": "test"}, "decision": None,
                            "seen": [], "attachments": [], "notify": notes("escalated")}
    args.update(kw)
    return store.create(question, **args)


def test_store_implements_the_protocol_and_records_its_schema_version(store: SqlStore) -> None:
    assert isinstance(store, EscalationStore)
    with store.db.read() as con:
        rows = con.execute("SELECT component, version FROM schema_version").fetchall()
    assert [tuple(r) for r in rows] == [(_schema.COMPONENT, len(_schema.MIGRATIONS))]


def test_migrations_run_once_when_several_open_at_the_same_time(store_url: str, tmp_path: Path) -> None:
    """Eight stores opening a fresh database at once: every one opens, the schema is created once (on
    PostgreSQL two CREATE TABLE IF NOT EXISTS at once would fail without the advisory lock)."""
    barrier = threading.Barrier(8)
    opened: list[SqlStore] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            barrier.wait()
            opened.append(open_store(store_url, tmp_path))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:2]
    assert len(opened) == 8
    esc = escalate(opened[0])
    assert all(s.get(esc.id).question == "the printer jams" for s in opened)
    for s in opened:
        s.close()


def test_a_database_of_a_newer_kbsearch_is_refused(store: SqlStore, store_url: str, tmp_path: Path) -> None:
    with store.db.write() as con:
        con.execute("UPDATE schema_version SET version = ? WHERE component = ?", (99, _schema.COMPONENT))
    with pytest.raises(StoreError, match="schema version 99.*upgrade kbsearch"):
        open_store(store_url, tmp_path)


def test_idempotency_key_keeps_one_entry_per_kind(store: SqlStore) -> None:
    esc = escalate(store, notify=notes("escalated", "escalated"))
    assert store.outbox_counts()["pending"] == 1
    assert store.add_reminders(esc.id, [NewNotification(group="it", channel="hook", kind="escalated", payload={})],
                               now=esc.created + 1)
    assert store.outbox_counts()["pending"] == 1  # same key: still one
    keys = [n["key"] for n in store.get(esc.id, history=True).notifications]
    assert keys == [f"{esc.id}/it/hook/escalated"]


def test_a_claim_is_leased_and_expires_on_the_injected_clock(store: SqlStore) -> None:
    esc = escalate(store)
    t0 = esc.created + 10
    first = store.claim(now=t0, lease=60, limit=10)
    assert [n.key for n in first] == [f"{esc.id}/it/hook/escalated"]
    assert store.claim(now=t0 + 59, lease=60, limit=10) == []  # leased to the first deliverer
    again = store.claim(now=t0 + 61, lease=60, limit=10)  # the lease ran out: a crashed deliverer's entry
    assert [n.id for n in again] == [first[0].id]
    store.delivered(first[0].id, now=t0 + 62)
    assert store.claim(now=t0 + 500, lease=60, limit=10) == []
    assert store.outbox_counts() == {"pending": 0, "delivered": 1, "failed": 0}
    history = store.get(esc.id, history=True)
    assert [e["kind"] for e in history.events][-1] == "notified"
    assert history.notifications[0]["status"] == "delivered" and history.notifications[0]["attempts"] == 1


def test_failed_attempts_wait_for_their_retry_time_then_give_up(store: SqlStore) -> None:
    esc = escalate(store)
    t0 = esc.created + 1
    (note,) = store.claim(now=t0, lease=5, limit=10)
    store.failed(note.id, "503 from the hook", retry_at=t0 + 100)
    assert store.claim(now=t0 + 99, lease=5, limit=10) == []
    (retry,) = store.claim(now=t0 + 100, lease=5, limit=10)
    assert retry.attempts == 1 and retry.last_error == "503 from the hook"
    store.failed(retry.id, "410 gone", retry_at=None)
    assert store.claim(now=t0 + 10_000, lease=5, limit=10) == []
    assert store.outbox_counts() == {"pending": 0, "delivered": 0, "failed": 1}


def test_concurrent_claimers_never_share_a_notification(store_url: str, tmp_path: Path) -> None:
    """Six stores (six pools: as six processes would) claim 120 due entries in small batches at once:
    every entry is claimed exactly once (PostgreSQL: FOR UPDATE SKIP LOCKED)."""
    stores = [open_store(store_url, tmp_path) for _ in range(6)]
    made = [escalate(stores[0], f"question {i}") for i in range(40)]
    for esc in made[:40]:
        stores[0].add_reminders(esc.id, [NewNotification(group="it", channel="mail", kind="reminder", payload={}),
                                         NewNotification(group="it", channel="chat", kind="reminder", payload={})],
                                now=esc.created)
    now = max(e.created for e in made) + 1
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def deliverer(store: SqlStore) -> None:
        try:
            barrier.wait()
            while True:
                batch = store.claim(now=now, lease=600, limit=3)
                if not batch:
                    return
                with lock:
                    claimed.extend(n.id for n in batch)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliverer, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert not errors, errors[:2]
    assert len(claimed) == len(set(claimed)) == 120


def test_answers_on_one_escalation_from_many_writers_are_serialised(store_url: str, tmp_path: Path) -> None:
    """Twelve writers replace one answer at once: every change is a revision of its own (the check and
    the change see the same row: a row lock on PostgreSQL), none lost."""
    stores = [open_store(store_url, tmp_path) for _ in range(4)]
    esc = escalate(stores[0])
    barrier = threading.Barrier(12)
    errors: list[BaseException] = []

    def answer(n: int) -> None:
        try:
            barrier.wait()
            stores[n % 4].record_answer(esc.id, f"answer {n}", by=f"peer{n}", verified=False)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:2]
    final = stores[0].get(esc.id, history=True)
    assert final.revision == 12
    changes = [e for e in final.events if e["kind"] in ("answered", "answer_changed")]
    assert len(changes) == 12 and [e["kind"] for e in changes].count("answered") == 1
    previous = {e["detail"]["previous"] for e in changes[1:]}
    assert len(previous) == 11  # each change replaced a different text: no two saw the same state
    for s in stores:
        s.close()


def test_attachments_keep_their_bytes_and_order(store: SqlStore) -> None:
    files = [(f"photo{i}.jpg", "image/jpeg", bytes([i]) * (i + 1) + b"\x00\xff") for i in range(12)]
    esc = escalate(store, attachments=files)
    got = store.get(esc.id)
    assert [a.filename for a in got.attachments] == [f for f, _c, _d in files]  # a10, a11 after a9
    for (_name, _ctype, data), meta in zip(files, got.attachments):
        assert store.attachment(esc.id, meta.id).data == data and meta.size == len(data)


def test_lifecycle_follow_claim_reroute_and_close(store: SqlStore) -> None:
    esc = escalate(store, group="hr")
    _, new = store.follow(esc.id, "bo", groups=["hr"])
    assert new and store.follow(esc.id, "bo", groups=["hr"]) == (store.get(esc.id), False)
    store.set_claim(esc.id, "carla", by="carla")
    assert store.get(esc.id).claimed_by == "carla"
    moved = store.reroute(esc.id, "it", reason="it is a laptop", by="carla", notify=lambda _b, _a: [])
    assert moved.group == "it" and moved.claimed_by is None and moved.followers == []  # bo is not in it
    closed = store.close_unanswerable(esc.id, by="dan", reason="nobody knows")
    assert closed.status == "unanswerable"
    with pytest.raises(InvalidEscalationError, match="already unanswerable"):
        store.close_unanswerable(esc.id, by="x")
    assert store.outcomes() == {esc.id: ("unanswerable", None)}
    assert [e["kind"] for e in store.get(esc.id, history=True).events] == [
        "asked", "escalated", "followed", "claimed", "rerouted", "unclaimed", "unfollowed", "closed_unanswerable"]
    store.set_outdated("doc-1", True, by="dan")
    store.set_outdated("doc-1", False, by="dan")
    assert store.outdated_marks() == {"doc-1": False}


def _counts(store: SqlStore) -> tuple[int, int, int]:
    with store.db.read() as con:
        return tuple(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("escalations", "events", "outbox"))


def test_an_escalation_key_used_again_returns_the_first_escalation_and_stores_nothing(store: SqlStore) -> None:
    first = escalate(store, key="k-1", fingerprint="f")
    assert not first.replayed
    before = _counts(store)
    again = escalate(store, key="k-1", fingerprint="f", notify=notes("escalated", "reminder"))
    assert again.replayed and again.id == first.id and again.question == first.question
    assert _counts(store) == before == (1, 2, 1)  # no second escalation, event or notification
    assert not store.get(first.id).replayed  # about the call only
    with pytest.raises(IdempotencyKeyError, match="another request"):
        escalate(store, "the scanner is slow", key="k-1", fingerprint="g")
    other_user = escalate(store, key="k-1", fingerprint="f", user="ben")  # keys are per asker
    assert not other_user.replayed and other_user.id != first.id
    assert not escalate(store, key="k-2", fingerprint="f").replayed  # a new key: a new question
    assert _counts(store)[0] == 3


def test_two_servers_racing_with_one_key_store_one_escalation(store_url: str, tmp_path: Path) -> None:
    """The first request's transaction is held open (its notify waits) until the retry, on another
    store, has looked the key up and found nothing; then the first commits.  The retry's own insert
    meets the key (PostgreSQL waits for the first transaction to end), rolls back and returns the
    first escalation: one escalation, one set of notifications."""
    a, b = open_store(store_url, tmp_path), open_store(store_url, tmp_path)
    try:
        inside, release, looked_up = threading.Event(), threading.Event(), threading.Event()
        results: dict[str, Any] = {}

        def holding(esc: Any) -> list[NewNotification]:
            inside.set()
            assert release.wait(30)
            return notes("escalated")(esc)

        real_keyed = b._keyed
        lookups: list[object] = []

        def keyed_then_signal(*args: Any) -> Any:
            found = real_keyed(*args)
            lookups.append(found)
            looked_up.set()
            return found

        b._keyed = keyed_then_signal  # type: ignore[method-assign]

        def first() -> None:
            results["a"] = escalate(a, key="k", fingerprint="f", notify=holding)

        def retry() -> None:
            results["b"] = escalate(b, key="k", fingerprint="f")

        t1 = threading.Thread(target=first)
        t1.start()
        assert inside.wait(30)
        t2 = threading.Thread(target=retry)
        t2.start()
        assert looked_up.wait(30)  # the retry found no key: it goes on to insert its own
        release.set()
        t1.join(60)
        t2.join(60)
        assert not results["a"].replayed and results["b"].replayed and results["b"].id == results["a"].id
        assert _counts(a) == (1, 2, 1)
        assert lookups[0] is None and len(lookups) == 2  # found nothing, inserted, met the key, looked again
    finally:
        a.close()
        b.close()


def test_after_the_servers_connections_are_dropped_the_next_change_reconnects(pg_url: str, tmp_path: Path) -> None:
    """A restart or failover of PostgreSQL ends every pooled connection; the pool checks a connection
    before handing it out, so the next request reconnects instead of failing with a 503."""
    import psycopg

    store = open_store(pg_url, tmp_path)
    try:
        escalate(store, "before the restart")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert ended >= 1  # the store's pooled connection was among them
        assert escalate(store, "after the restart").question == "after the restart"
        assert [e.question for e in store.list()] == ["after the restart", "before the restart"]
    finally:
        store.close()
