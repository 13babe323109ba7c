"""Three ``kbsearch serve`` processes (as if on three machines) on one PostgreSQL and one index, under load.

    PYTHONPATH=. .venv/bin/python bench/three_servers.py --clients 50 --seconds 60

Everything runs on 127.0.0.1: a throwaway PostgreSQL cluster (``tests/_pg.py``: initdb + pg_ctl,
Debian's ``postgresql`` package), a webhook receiver that records every POST (``tests/_hooks.py``)
and three real ``kbsearch serve`` subprocesses, each with its own working directory and config (the
same peer groups, it-support and facilities notified through the webhook), all with
``KBSEARCH_DATABASE_URL`` on the one database and ``--index`` on the one index directory.  The index
is small so the run takes minutes: the bundled ``examples/`` (intranet pages and answers) and the
StackFAQ archive of the shared eval sets (``../shared/data/eval``), imported by ``jsonl`` sources.

Then ``--clients`` client threads per server (each a ``requests.Session`` on its own server) for
``--seconds`` (and at most ``--max-requests`` in all) send a mix: ``POST /api/ask`` with real
questions (StackFAQ's rephrasings), and one request in ``--escalate-share`` a ``POST /api/escalations``
with a question unique to it (client, sequence number), signed-in users through bearer tokens.  Meanwhile
``kbsearch reindex --full`` runs back to back (each run rebuilds and publishes a new version, which the
three servers follow) and two ``kbsearch deliver --watch 1`` processes drain the outbox beside the
servers' own immediate delivery.  Every escalation carries an ``Idempotency-Key``; one in
``--retry-share`` is sent again, with the same key, to the next server once the first has answered
(a phone whose answer was lost, retried through the balancer): it must answer 200 with the same
escalation (``Idempotent-Replayed``), so a duplicate can only come from the servers.

Afterwards two more ``kbsearch deliver`` runs (at once, from two processes) send what is left, and it
prints: requests, errors, p50 / p95 per route; escalations acknowledged (201) vs rows in PostgreSQL
(lost = acknowledged but not stored, duplicated = a unique question stored twice, extra = stored but
not acknowledged); notifications the outbox marks delivered vs POSTs the webhook received (each
escalation's notification exactly once: duplicated idempotency keys, and escalations never notified).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests._hooks import WebhookServer  # noqa: E402
from tests._pg import PostgresCluster  # noqa: E402

EVAL = Path(os.environ.get("KBSEARCH_EVAL_DIR", ROOT.parent / "shared" / "data" / "eval"))
SECRET = "bench-three-servers-0123456789abcdef"
GROUPS = ("it-support", "facilities")
CONFIG = """
[[groups]]
name = "it-support"
description = "Laptops, VPN, passwords, badges, printers and door access"
keywords = ["vpn", "password", "laptop", "printer", "badge", "door"]
experts = ["ivan"]
channels = [{type = "webhook", url_env = "BENCH_HOOK_IT"}]

[[groups]]
name = "facilities"
description = "Buildings, parking, canteen, rooms"
keywords = ["parking", "canteen", "room"]
experts = ["fay"]
channels = [{type = "webhook", url_env = "BENCH_HOOK_FAC"}]

[[groups]]
name = "finance"
description = "Payroll, expenses, invoices"
keywords = ["payroll", "expenses", "invoice"]
"""


def kbsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "kbsearch", *args]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def token(user: str, *groups: str) -> str:
    from kbsearch.web import make_token

    return make_token(user, groups, secret=SECRET)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"ask": [], "escalations": []}
        self.errors: dict[str, list[str]] = {"ask": [], "escalations": []}
        self.created: dict[str, str] = {}  # escalation id -> its unique question
        self.retries = 0  # retried escalations answered with the first one's id, replayed
        self.budget = 0


def client(url: str, retry_url: str, name: str, seed: int, questions: list[str], share: float, retry_share: float,
           deadline: float, stats: Stats, start: threading.Barrier, timeout: float) -> None:
    rnd = random.Random(seed)
    session, retry_session = requests.Session(), requests.Session()
    user = f"user-{name}"
    session.headers["Authorization"] = retry_session.headers["Authorization"] = f"Bearer {token(user, 'staff')}"
    n = 0
    start.wait()
    while time.monotonic() < deadline:
        with stats.lock:
            if stats.budget <= 0:
                return
            stats.budget -= 1
        n += 1
        route = "escalations" if rnd.random() < share else "ask"
        if route == "ask":
            body = {"question": rnd.choice(questions)}
        else:
            body = {"question": f"bench {name} request {n}: my laptop shows a blue screen at boot after the update",
                    "group": GROUPS[n % len(GROUPS)]}
        t0 = time.perf_counter()
        err, esc_id, retried = "", None, False
        headers = {"Idempotency-Key": f"{name}-{n}"} if route == "escalations" else {}
        try:
            r = session.post(url + "api/" + route, json=body, timeout=timeout, headers=headers)
            if route == "ask":
                ok = r.status_code == 200 and "action" in r.json()
            else:
                ok = r.status_code == 201 and bool(r.json().get("id"))
                esc_id = r.json().get("id") if ok else None
            err = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
            if ok and esc_id and rnd.random() < retry_share:  # the answer was "lost": again, elsewhere
                again = retry_session.post(retry_url + "api/" + route, json=body, timeout=timeout, headers=headers)
                retried = (again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
                           and again.json().get("id") == esc_id)
                err = "" if retried else f"retry: HTTP {again.status_code}: {again.text[:200]}"
        except (requests.RequestException, ValueError) as exc:
            err = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
        with stats.lock:
            if err:
                stats.errors[route].append(err)
            else:
                stats.latency[route].append(elapsed)
                stats.retries += retried
            if esc_id:
                stats.created[esc_id] = body["question"]


class Serve:
    def __init__(self, name: str, index: Path, work: Path, env: dict[str, str], threads: int) -> None:
        self.workdir = work / name
        self.workdir.mkdir()
        (self.workdir / "kbsearch.toml").write_text(CONFIG, encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(self.workdir / "serve.log", "w+")
        self.proc = subprocess.Popen(kbsearch("serve", "--index", str(index), "--port", str(self.port),
                                              "--threads", str(threads)),
                                     cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_up(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"kbsearch serve exited:\n{(self.workdir / 'serve.log').read_text()[-3000:]}")
            try:
                if requests.get(self.url + "api/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise SystemExit("kbsearch serve did not come up in 120 s")

    def generation(self) -> str:
        return str(requests.get(self.url + "api/health", timeout=10).json().get("generation"))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return (self.workdir / "serve.log").read_text(errors="replace")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50, help="client threads per server")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=100_000)
    ap.add_argument("--escalate-share", type=float, default=0.2)
    ap.add_argument("--retry-share", type=float, default=0.25, help="escalations sent again to the next server")
    ap.add_argument("--threads", type=int, default=8, help="worker threads per server")
    ap.add_argument("--timeout", type=float, default=300.0, help="a client's read timeout (s): an error after it")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    questions = [json.loads(line)["question"] for line in (EVAL / "stackfaq" / "questions.jsonl").open()]
    work = Path(tempfile.mkdtemp(prefix="kbsearch-3srv-"))
    if os.geteuid() == 0:  # the PostgreSQL cluster's folder is handed to the postgres user; ours stays ours
        os.chmod(work, 0o755)
    pg = PostgresCluster()
    hook = WebhookServer()
    servers: list[Serve] = []
    helpers: list[subprocess.Popen] = []
    logs: dict[str, str] = {}
    try:
        db = pg.database()
        env = {**os.environ, "KBSEARCH_DATABASE_URL": db, "KBSEARCH_WEB_SECRET": SECRET,
               "BENCH_HOOK_IT": hook.url("/it"), "BENCH_HOOK_FAC": hook.url("/facilities"),
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("KBSEARCH_CONFIG", None)
        crawlers = work / "crawlers"
        crawlers.mkdir()
        for name, path in (("intranet", ROOT / "examples" / "intranet.jsonl"),
                           ("answers", ROOT / "examples" / "answers.jsonl"),
                           ("stackfaq", EVAL / "stackfaq" / "archive.jsonl")):
            (crawlers / f"{name}.toml").write_text(f'type = "jsonl"\npath = "{path}"\n', encoding="utf-8")
        index = work / "idx"
        ops = work / "ops"
        ops.mkdir()
        (ops / "kbsearch.toml").write_text(CONFIG, encoding="utf-8")
        t0 = time.perf_counter()
        done = subprocess.run(kbsearch("reindex", "--index", str(index), "--sources", str(crawlers), "-q"),
                              cwd=ops, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode:
            raise SystemExit(f"initial reindex failed: {done.stdout}{done.stderr[-3000:]}")
        print(f"initial index ({time.perf_counter() - t0:.0f} s): {done.stdout.strip()}", flush=True)

        servers = [Serve(chr(ord("a") + i), index, work, env, args.threads) for i in range(args.servers)]
        for s in servers:
            s.wait_up()
        gens_before = [s.generation() for s in servers]
        warm = requests.Session()
        warm.headers["Authorization"] = f"Bearer {token('warm', 'staff')}"
        for s in servers:
            for q in questions[:10]:
                warm.post(s.url + "api/ask", json={"question": q}, timeout=120)

        stop = threading.Event()
        runs: list[dict] = []

        def reindex_loop() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                r = subprocess.run(kbsearch("reindex", "--index", str(index), "--sources", str(crawlers), "--full",
                                            "-q", "--wait", "120"), cwd=ops, env=env, capture_output=True,
                                   text=True, timeout=1200)
                runs.append({"exit": r.returncode, "seconds": round(time.perf_counter() - t, 1),
                             "summary": r.stdout.strip()[:200], "stderr": r.stderr.strip()[-500:]})

        for _ in range(2):
            helpers.append(subprocess.Popen(kbsearch("deliver", "--index", str(index), "--watch", "1"), cwd=ops,
                                            env=env, stdout=subprocess.DEVNULL, stderr=open(ops / "deliver.log", "a")))
        loop = threading.Thread(target=reindex_loop, daemon=True)
        loop.start()
        stats = Stats()
        stats.budget = args.max_requests
        total = args.servers * args.clients
        start = threading.Barrier(total + 1)
        deadline = time.monotonic() + args.seconds + 5  # the barrier's wait is inside the window
        threads = [threading.Thread(target=client, daemon=True,
                                    args=(servers[i % args.servers].url, servers[(i + 1) % args.servers].url, f"c{i}", i,
                                          questions, args.escalate_share, args.retry_share,
                                          deadline, stats, start, args.timeout)) for i in range(total)]
        for t in threads:
            t.start()
        start.wait()
        t_load = time.perf_counter()
        for t in threads:
            t.join(args.seconds + args.timeout + 60)
        load_seconds = time.perf_counter() - t_load
        load_during = os.getloadavg()[0]
        stop.set()
        loop.join(1200)
        gens_after = [s.generation() for s in servers]
        for p in helpers:
            p.terminate()
            p.wait(30)
        # What is left, from two processes at once.
        finals = [subprocess.Popen(kbsearch("deliver", "--index", str(index), "--json"), cwd=ops, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        final_reports = []
        for p in finals:
            out, err = p.communicate(timeout=300)
            final_reports.append(json.loads(out) if p.returncode == 0 and out.strip() else {"exit": p.returncode,
                                                                                             "stderr": err[-500:]})
        time.sleep(1)
        import psycopg

        with psycopg.connect(db) as con:
            stored = dict(con.execute("SELECT id, question FROM escalations").fetchall())
            outbox = dict(con.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
        with hook.lock:
            received = [(r["path"], r["headers"].get("Idempotency-Key", ""), r["json"]) for r in hook.requests]
    finally:
        for s in servers:
            logs[s.workdir.name] = s.stop()
        for p in helpers:
            if p.poll() is None:
                p.kill()
        hook.close()
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    created = stats.created
    lost = [i for i in created if i not in stored]
    extra = [i for i in stored if i not in created]
    by_question: dict[str, int] = {}
    for q in stored.values():
        by_question[q] = by_question.get(q, 0) + 1
    duplicated = sum(n - 1 for n in by_question.values() if n > 1)
    keys = [k for _, k, _ in received]
    dup_keys = len(keys) - len(set(keys))
    notified = {k.split("/")[0] for k in keys if k.endswith("/escalated")}
    never_notified = [i for i in stored if i not in notified]
    tracebacks = sum(text.count("Traceback") for text in logs.values())

    print(f"\n{args.servers} servers x {args.clients} clients, {load_seconds:.0f} s, one PostgreSQL, one index; "
          f"{started}, load average {load_before:.1f} before, {load_during:.1f} at the end of the load, "
          f"{os.cpu_count()} CPUs\n")
    print("| route | requests | errors | p50 ms | p95 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for route in ("ask", "escalations"):
        lat = stats.latency[route]
        print(f"| POST /api/{route} | {len(lat) + len(stats.errors[route]):,} | {len(stats.errors[route])} "
              f"| {percentile(lat, 50) * 1000:,.0f} | {percentile(lat, 95) * 1000:,.0f} "
              f"| {percentile(lat, 99) * 1000:,.0f} |")
    print("\n| shared state | count |")
    print("| --- | --- |")
    rows = [("escalations acknowledged (201)", len(created)),
            ("of which retried on another server (200, the same escalation)", stats.retries),
            ("escalations stored in PostgreSQL", len(stored)),
            ("lost (acknowledged, not stored)", len(lost)), ("duplicated (a question stored twice)", duplicated),
            ("stored, not acknowledged", len(extra)),
            ("notifications delivered (outbox)", outbox.get("delivered", 0)),
            ("outbox not delivered", sum(v for k, v in outbox.items() if k != "delivered")),
            ("webhook POSTs received", len(keys)), ("duplicated idempotency keys", dup_keys),
            ("escalations never notified", len(never_notified)),
            ("reindex runs during the load (exit 0)", f"{len(runs)} ({sum(r['exit'] == 0 for r in runs)})"),
            ("Tracebacks in the servers' logs", tracebacks)]
    for label, value in rows:
        print(f"| {label} | {value} |")
    print(f"\nreindex durations {[r['seconds'] for r in runs]} s; generations {gens_before} -> {gens_after}")
    print("final deliver runs:", json.dumps(final_reports)[:600])
    for r in runs:
        if r["exit"]:
            print("  reindex failed:", r)
    for route, errs in stats.errors.items():
        for e in errs[:5]:
            print(f"  {route} error: {e}")
    ok = (not any(stats.errors.values()) and not lost and not duplicated and not extra and not dup_keys
          and not never_notified and len(keys) == outbox.get("delivered", 0) and runs
          and all(r["exit"] == 0 for r in runs) and len(set(gens_after)) == 1)
    print("all zero:", bool(ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
