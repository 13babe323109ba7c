"""Load test of the HTTP API: N concurrent clients asking on 127.0.0.1 while reindexes run back to back.

Two phases against one real ``kbsearch serve`` subprocess, in the same run:

1. *idle*: the clients ask for ``--seconds`` with nothing else running (the baseline);
2. *reindex*: the same load while ``kbsearch reindex`` runs again and again (each run syncs the
   sources and switches the live generation atomically).

It prints requests, errors, throughput and latency percentiles for both phases and their ratio.
Bounded in time (``--seconds`` per phase) and count (``--max-requests`` per phase).  The corpus is
the shared evaluation archives, imported by ``jsonl`` sources (read in place, never copied), and
the questions are those sets' questions.

    .venv/bin/python bench/load_bench.py --clients 50 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

EVAL = Path(os.environ.get("KBSEARCH_EVAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"))
KBSEARCH = str(Path(sys.executable).with_name("kbsearch"))
SETS = ("stackfaq", "clinc150", "semeval2016-qatarliving")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_questions() -> list[str]:
    out = []
    for name in SETS:
        with (EVAL / name / "questions.jsonl").open(encoding="utf-8") as fh:
            out += [json.loads(line)["question"] for line in fh if line.strip()]
    return out


def prepare(work: Path) -> tuple[Path, Path]:
    crawlers = work / "crawlers"
    crawlers.mkdir(parents=True)
    for name in SETS:
        (crawlers / f"{name}.toml").write_text(
            f'type = "jsonl"\npath = "{EVAL / name / "archive.jsonl"}"\n', encoding="utf-8")
    index = work / "idx"
    done = subprocess.run([KBSEARCH, "reindex", "--index", str(index), "--sources", str(crawlers), "-q"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"initial reindex failed ({done.returncode}): {done.stdout}{done.stderr}")
    print("initial index:", done.stdout.strip())
    return index, crawlers


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.seconds = 0.0
        self.lock = threading.Lock()

    def summary(self) -> dict[str, float | int | str]:
        n = len(self.latencies)
        return {"phase": self.name, "requests": n, "errors": len(self.errors),
                "rps": round(n / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(percentile(self.latencies, 50) * 1000, 1),
                "p95_ms": round(percentile(self.latencies, 95) * 1000, 1),
                "p99_ms": round(percentile(self.latencies, 99) * 1000, 1),
                "mean_ms": round(statistics.fmean(self.latencies) * 1000, 1) if n else float("nan")}


def measure_overhead(index: Path, questions: list[str], n: int = 60) -> str:
    """The web layer's own cost: one thread, the same questions via `kb.ask` and via the WSGI app."""
    from werkzeug.test import Client

    from kbsearch import KnowledgeBase
    from kbsearch.web import create_app

    sample = random.Random(1).sample(questions, n)
    with KnowledgeBase.open(index, create=False) as kb:
        app = Client(create_app(kb, secret="bench-secret-0123456789"))
        for q in sample[:10]:
            kb.ask(q)
        direct, web, search = [], [], []
        for q in sample:
            t = time.perf_counter()
            kb.ask(q)
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = app.post("/api/ask", json={"question": q})
            web.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"POST /api/ask failed: {r.status_code} {r.get_data(as_text=True)[:200]}")
            t = time.perf_counter()
            kb.search(q)
            search.append(time.perf_counter() - t)

    def med(v: list[float]) -> float:
        return statistics.median(v) * 1000

    return (f"one thread, {n} questions: kb.ask median {med(direct):.1f} ms, POST /api/ask through the WSGI app "
            f"median {med(web):.1f} ms (web layer {med(web) - med(direct):+.1f} ms, {med(web) / med(direct):.2f}x), "
            f"kb.search median {med(search):.1f} ms")


def run_clients(url: str, questions: list[str], clients: int, seconds: float, max_requests: int, phase: Phase) -> None:
    deadline = time.monotonic() + seconds
    budget = [max_requests]
    start = threading.Barrier(clients + 1)

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        session = requests.Session()
        start.wait()
        while time.monotonic() < deadline:
            with phase.lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            q = rnd.choice(questions)
            t0 = time.perf_counter()
            try:
                r = session.post(url + "api/ask", json={"question": q}, timeout=60)
                ok = r.status_code == 200 and "action" in r.json()
                err = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
            except (requests.RequestException, ValueError) as exc:
                err = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - t0
            with phase.lock:
                if err:
                    phase.errors.append(err)
                else:
                    phase.latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(seconds + 120)
    phase.seconds = time.perf_counter() - t0


def reindex_loop(index: Path, crawlers: Path, stop: threading.Event, runs: list[dict]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        done = subprocess.run([KBSEARCH, "reindex", "--index", str(index), "--sources", str(crawlers), "--full",
                               "-q", "--wait", "60"], capture_output=True, text=True, timeout=600)
        runs.append({"exit": done.returncode, "seconds": round(time.perf_counter() - t0, 1),
                     "summary": done.stdout.strip()[:200], "stderr": done.stderr.strip()[-300:]})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    ap.add_argument("--max-requests", type=int, default=200_000, help="cap per phase")
    ap.add_argument("--threads", type=int, default=8, help="server worker threads")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    ap.add_argument("--overhead-only", action="store_true", help="only measure the web layer's own cost")
    args = ap.parse_args()

    questions = load_questions()
    work = Path(tempfile.mkdtemp(prefix="kbsearch-load-"))
    server = None
    try:
        index, crawlers = prepare(work)
        print("overhead:", measure_overhead(index, questions))
        if args.overhead_only:
            return 0
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        env = dict(os.environ)
        env.pop("KBSEARCH_CONFIG", None)
        server = subprocess.Popen([KBSEARCH, "serve", "--index", str(index), "--port", str(port),
                                   "--threads", str(args.threads)], cwd=work, env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(work / "serve.log", "w"))
        for _ in range(300):
            try:
                if requests.get(url + "api/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise SystemExit("server did not come up")
        gen_before = requests.get(url + "api/health", timeout=5).json()["generation"]
        for q in questions[:20]:  # warm up caches and models
            requests.post(url + "api/ask", json={"question": q}, timeout=60)

        idle = Phase("idle")
        run_clients(url, questions, args.clients, args.seconds, args.max_requests, idle)

        busy = Phase("during reindex")
        stop = threading.Event()
        runs: list[dict] = []
        loop = threading.Thread(target=reindex_loop, args=(index, crawlers, stop, runs), daemon=True)
        loop.start()
        run_clients(url, questions, args.clients, args.seconds, args.max_requests, busy)
        stop.set()
        loop.join(600)
        gen_after = requests.get(url + "api/health", timeout=5).json()["generation"]
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    rows = [idle.summary(), busy.summary()]
    print(f"\n{args.clients} clients, {args.seconds:g} s per phase, POST /api/ask, server threads {args.threads}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'phase':<16}{'requests':>10}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for r in rows:
        print(f"{r['phase']:<16}{r['requests']:>10}{r['errors']:>8}{r['rps']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}")
    ratio = rows[1]["p95_ms"] / rows[0]["p95_ms"] if rows[0]["p95_ms"] else float("nan")
    print(f"p95 during reindex / idle: {ratio:.2f}x")
    ok_runs = sum(1 for r in runs if r["exit"] == 0)
    print(f"reindex runs during the load: {len(runs)} ({ok_runs} exit 0; durations {[r['seconds'] for r in runs]} s); "
          f"generation {gen_before} -> {gen_after}")
    for r in runs:
        if r["exit"] != 0:
            print("  reindex failed:", r)
    errors = idle.errors + busy.errors
    for e in errors[:10]:
        print("  error:", e)
    if args.json:
        print(json.dumps({"phases": rows, "p95_ratio": round(ratio, 2), "reindex_runs": runs}, indent=2))
    return 0 if not errors and ok_runs == len(runs) and runs else 1


if __name__ == "__main__":
    sys.exit(main())
