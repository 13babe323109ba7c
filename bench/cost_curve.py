"""The cost curve: indexing time, peak RSS, index size, search p95 and ask p95 at 10k, 100k and 1M sections.

    PYTHONPATH=. .venv/bin/python bench/cost_curve.py                          # 10k, 100k, 1M in one run
    PYTHONPATH=. .venv/bin/python bench/cost_curve.py --sizes 10000            # a quick check
    PYTHONPATH=. .venv/bin/python bench/cost_curve.py --reuse                  # only the query phases again
    PYTHONPATH=. .venv/bin/python bench/cost_curve.py --reuse --recalibrate    # refit deflection, then the queries

Corpora (cached under ``bench/data/``, git-ignored): **100k** is the bench corpus itself
(``bench/corpus.py``: page sections of Debian's HTML manuals plus the 863 answer threads of the shared
eval sets); **10k** is its first 10,000 lines (the answer threads and the first page sections, which
is what ``corpus.build(10000)`` would write); **1M** is the 100k corpus repeated: copy 0 is the
corpus as it is, copies 1..9 repeat its *page sections* only (the answer threads stay once: the
intranet grows, the peers' past answers do not grow tenfold with it) and the last copy is cut so the
total is 1,000,000.  Copy k of a section gets the id ``<id>~k``, its URL under ``/copy<k>/`` and a
deterministic variation of its text, so no two copies are identical: its sentences are rotated by
k and about one word in eight is dropped (chosen by a random generator seeded with the id and k).
Titles and headings are kept, so a FAQ heading's right answer is its section *or any copy of it*;
the questions' right answers are rewritten that way (``cost-questions-1000000.jsonl``), the answer
threads' ids do not change.  Kept titles also mean the 1M corpus has no more distinct phrasings
(titles, last headings) than 100k: a rebuild encodes each distinct phrasing once, so the encoder's
share of the indexing time does not grow with the copies (a corpus with ten times the distinct
headings would pay it ten times).

Each size runs as child processes, one after the other, so every peak RSS is its own:

* **index**: ``KnowledgeBase.rebuild`` of the corpus into a fresh index (with its after-build steps:
  routing model and deflection calibration), the process and its workers' RSS sampled every 0.25 s
  from outside (as ``rebuild_memory.py`` does); the index's size on disk afterwards.
* **search**: ``KnowledgeBase.search`` (top 10, every group) over up to 300 real questions from the
  questions file, after 30 other questions as warm-up; p50 / p95 and P@1 (the right answer first).
* **ask**: ``KnowledgeBase.ask`` as a portal calls it (a user, no groups, ``escalate=False``: the
  decision is logged, nothing is escalated) over the same questions after the same warm-up; then
  again in a fresh child with ``OPENBLAS_NUM_THREADS=1`` (one question's small matrix products on
  two BLAS threads that mostly wait for each other when the cores are busy); then again reading
  every row of the phrasing vectors (``ask_exact``: what the partition of a large segment, an
  inverted file, changes: answered right and the share of identical decisions).

Built indexes are kept as ``bench/data/cost-<size>-kb`` with their index figures beside them;
``--reuse`` runs only the query phases on them; ``--recalibrate`` first refits the after-build steps
(routing, deflection) on them with the current code, as a fresh build would (no earlier calibration
to step from), so a change of the decisions is measured without indexing again.  Progress is streamed to stderr (and ``--log``).
Prints one table and the ratios 100k / 10k and 1M / 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
BASE = 100_000
QUESTIONS = 300
WARMUP = 30
SENT = re.compile(r"(?<=[.!?])\s+")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- corpora ------------------------------------------------------------------------------------
def _base_corpus() -> Path:
    sys.path.insert(0, str(HERE))
    import corpus

    return corpus.build(BASE)


def _vary(text: str, key: str, k: int) -> str:
    sentences = SENT.split(text)
    if len(sentences) > 1:
        r = k % len(sentences)
        sentences = sentences[r:] + sentences[:r]
    rng = random.Random(f"{key}~{k}")
    words = " ".join(sentences).split(" ")
    kept = [w for w in words if rng.random() >= 0.125] or words
    return " ".join(kept)


def corpus_for(size: int) -> tuple[Path, Path]:
    """The corpus and questions files of ``size`` documents (built once, then cached)."""
    base = _base_corpus()
    base_q = base.with_name(base.name.replace("corpus-", "questions-"))
    if size == BASE:
        return base, base_q
    path, qpath = DATA / f"cost-corpus-{size}.jsonl", DATA / f"cost-questions-{size}.jsonl"
    if path.exists() and qpath.exists():
        return path, qpath
    log(f"writing the {size:,}-document corpus")
    questions = [json.loads(line) for line in base_q.open(encoding="utf-8")]
    tmp = path.with_suffix(".tmp")
    ids: set[str] = set()
    with tmp.open("w", encoding="utf-8") as out:
        if size < BASE:
            with base.open(encoding="utf-8") as src:
                for n, line in enumerate(src):
                    if n >= size:
                        break
                    out.write(line)
                    ids.add(json.loads(line)["id"])
            questions = [q for q in questions if any(r in ids for r in q["relevant"])]
        else:
            written, copies, k = 0, 0, 0
            pages: set[str] = set()
            while written < size:
                with base.open(encoding="utf-8") as src:
                    for line in src:
                        if written >= size:
                            break
                        if k == 0:
                            out.write(line)
                            d = json.loads(line)
                            if d.get("kind") == "page":
                                pages.add(d["id"])
                        else:
                            d = json.loads(line)
                            if d.get("kind") != "page":
                                continue
                            orig = d["id"]
                            d["id"] = f"{orig}~{k}"
                            d["url"] = d["url"].replace("http://docs.example/", f"http://docs.example/copy{k}/", 1)
                            d["text"] = _vary(d["text"], orig, k)
                            out.write(json.dumps(d) + "\n")
                        written += 1
                copies = k + 1
                k += 1
            for q in questions:  # a section's copies are right answers too (the last copy may be cut: harmless)
                q["relevant"] = [*q["relevant"], *(f"{r}~{k}" for r in q["relevant"] if r in pages
                                                   for k in range(1, copies))]
    tmp.rename(path)
    with qpath.open("w", encoding="utf-8") as out:
        for q in questions:
            out.write(json.dumps(q) + "\n")
    return path, qpath


# -- child phases -------------------------------------------------------------------------------
def _hwm_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def phase_index(corpus_path: Path, kb_path: Path) -> dict:
    import logging

    from kbsearch import KnowledgeBase, read_jsonl

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s: %(message)s", stream=sys.stderr)

    def docs():
        t0 = time.perf_counter()
        for n, d in enumerate(read_jsonl(corpus_path), 1):
            if n % 50_000 == 0:
                log(f"  read {n:,} documents ({time.perf_counter() - t0:.0f} s)")
            yield d

    t0 = time.perf_counter()
    with KnowledgeBase.open(kb_path) as kb:
        report = kb.rebuild(docs())
        documents = kb.stats().documents
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "index_seconds": report.index_seconds, "steps_seconds": report.steps_seconds,
            "documents": documents, "vmhwm_mb": _hwm_mb()}


def _questions(qpath: Path) -> tuple[list[dict], list[dict]]:
    qs = [json.loads(line) for line in qpath.open(encoding="utf-8")]
    random.Random(25).shuffle(qs)
    return qs[:WARMUP], qs[WARMUP:WARMUP + QUESTIONS]


def _latency(times: list[float]) -> dict:
    times = sorted(times)
    return {"p50_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * times[min(len(times) - 1, int(0.95 * len(times)))], "n": len(times)}


def phase_search(qpath: Path, kb_path: Path) -> dict:
    from kbsearch import ALL_GROUPS, KnowledgeBase

    warm, qs = _questions(qpath)
    times, right = [], 0
    with KnowledgeBase.open(kb_path, create=False) as kb:
        for q in warm:
            kb.search(q["q"], limit=10, user_groups=ALL_GROUPS)
        for q in qs:
            t = time.perf_counter()
            hits = kb.search(q["q"], limit=10, user_groups=ALL_GROUPS)
            times.append(time.perf_counter() - t)
            right += bool(hits) and hits[0].id in set(q["relevant"])
    return {**_latency(times), "p_at_1": right / len(qs), "vmhwm_mb": _hwm_mb()}


def phase_ask(qpath: Path, kb_path: Path) -> dict:
    from kbsearch import KnowledgeBase

    warm, qs = _questions(qpath)
    times, actions, decisions, right = [], {}, [], 0
    with KnowledgeBase.open(kb_path, create=False) as kb:
        for q in warm:
            kb.ask(q["q"], user="bench", groups=[])
        for q in qs:
            t = time.perf_counter()
            d = kb.ask(q["q"], user="bench", groups=[])
            times.append(time.perf_counter() - t)
            a = str(getattr(d.action, "value", d.action)).lower()
            actions[a] = actions.get(a, 0) + 1
            first = d.ranked[0] if d.ranked else None
            decisions.append([a, first])
            right += a == "answer" and first in set(q["relevant"])
    return {**_latency(times), "actions": actions, "answered_right": right / len(qs), "decisions": decisions,
            "vmhwm_mb": _hwm_mb()}


def phase_recalibrate(qpath: Path, kb_path: Path) -> dict:
    """The after-build steps again on the cached index, as a fresh build runs them."""
    from _refit import refit_as_fresh
    from kbsearch import KnowledgeBase

    with KnowledgeBase.open(kb_path, create=False) as kb:
        return {"seconds": refit_as_fresh(kb), "vmhwm_mb": _hwm_mb()}


def phase_ask_exact(qpath: Path, kb_path: Path) -> dict:
    """`phase_ask` reading every row of a partitioned vector segment (the exact nearest phrasings):
    what the partition's shortcut changes in the decisions."""
    from kbsearch.search import vectors

    vectors.PROBE_MIN_ROWS = 2**62
    return phase_ask(qpath, kb_path)


PHASES = {"index": phase_index, "recalibrate": phase_recalibrate, "search": phase_search, "ask": phase_ask,
          "ask_exact": phase_ask_exact}


# -- driver -------------------------------------------------------------------------------------
def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run_phase(name: str, data: Path, kb_path: Path, logfile, extra_env: dict[str, str] | None = None) -> dict:
    from _rss import PeakRss

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, __file__, "--phase", name, "--data", str(data), "--kb", str(kb_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(DATA))
    sampler = PeakRss(proc.pid).start()

    def relay() -> None:
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            if logfile:
                logfile.write(line)
                logfile.flush()

    relayer = threading.Thread(target=relay, daemon=True)
    relayer.start()
    out = proc.stdout.read()
    proc.wait()
    peak = sampler.stop()
    relayer.join()
    if proc.returncode:
        raise SystemExit(f"phase {name} on {kb_path} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "peak_self_mb": peak["self"] / 2**20, "peak_tree_mb": peak["tree"] / 2**20}


def measure(size: int, reuse: bool, logfile, recalibrate: bool = False) -> dict:
    import psutil

    corpus_path, qpath = corpus_for(size)
    kb_path = DATA / f"cost-{size}-kb"
    figures_path = DATA / f"cost-{size}-index.json"
    if reuse and kb_path.exists() and figures_path.exists():
        index = json.loads(figures_path.read_text())
        log(f"{size:,}: reusing {kb_path}")
    else:
        shutil.rmtree(kb_path, ignore_errors=True)
        figures_path.unlink(missing_ok=True)
        load = os.getloadavg()[0]
        log(f"{size:,}: rebuilding into {kb_path} (load {load:.1f})")
        index = run_phase("index", corpus_path, kb_path, logfile)
        index["size_mb"] = _dir_mb(kb_path)
        index["load_before"] = load
        index["load_after"] = os.getloadavg()[0]
        figures_path.write_text(json.dumps(index))
        log(f"{size:,}: index {json.dumps(index)}")
    if recalibrate and reuse:
        again = run_phase("recalibrate", qpath, kb_path, logfile)
        log(f"{size:,}: after-build steps again {json.dumps(again)}")
    search = run_phase("search", qpath, kb_path, logfile)
    log(f"{size:,}: search {json.dumps(search)}")
    ask = run_phase("ask", qpath, kb_path, logfile)
    log(f"{size:,}: ask {json.dumps(ask)}")
    # The same with one BLAS thread: on a busy machine two BLAS threads for one question's small
    # matrix products mostly wait for each other (a deployment setting, nothing in kbsearch changes).
    ask1 = run_phase("ask", qpath, kb_path, logfile, {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    log(f"{size:,}: ask, one BLAS thread {json.dumps(ask1)}")
    exact = run_phase("ask_exact", qpath, kb_path, logfile)
    same = sum(a == b for a, b in zip(ask["decisions"], exact["decisions"])) / len(ask["decisions"])
    log(f"{size:,}: ask reading every vector row: p95 {exact['p95_ms']:.1f} ms, "
        f"answered right {exact['answered_right']:.3f}, the same decisions {same:.3f}")
    result = {"size": size, "index": index, "search": search, "ask": ask, "ask_blas1": ask1,
              "ask_exact": {k: v for k, v in exact.items() if k != "decisions"}, "same_decisions": same,
              "load": psutil.getloadavg()[0]}
    for phase in (ask, ask1):
        phase.pop("decisions")
    (DATA / f"cost-{size}-result.json").write_text(json.dumps(result))
    return result


ROWS = [
    ("documents", lambda r: r["index"]["documents"], "{:,.0f}"),
    ("indexing s (rebuild incl. after-build steps)", lambda r: r["index"]["seconds"], "{:,.0f}"),
    ("  of which after-build steps s", lambda r: r["index"]["steps_seconds"], "{:,.0f}"),
    ("peak RSS MB, process + workers", lambda r: r["index"]["peak_tree_mb"], "{:,.0f}"),
    ("peak RSS MB, rebuilding process", lambda r: r["index"]["peak_self_mb"], "{:,.0f}"),
    ("index size MB", lambda r: r["index"]["size_mb"], "{:,.0f}"),
    ("search p50 ms", lambda r: r["search"]["p50_ms"], "{:,.1f}"),
    ("search p95 ms", lambda r: r["search"]["p95_ms"], "{:,.1f}"),
    ("search P@1", lambda r: r["search"]["p_at_1"], "{:.3f}"),
    ("ask p50 ms", lambda r: r["ask"]["p50_ms"], "{:,.1f}"),
    ("ask p95 ms", lambda r: r["ask"]["p95_ms"], "{:,.1f}"),
    ("ask p50 ms, OPENBLAS_NUM_THREADS=1", lambda r: r["ask_blas1"]["p50_ms"], "{:,.1f}"),
    ("ask p95 ms, OPENBLAS_NUM_THREADS=1", lambda r: r["ask_blas1"]["p95_ms"], "{:,.1f}"),
    ("ask peak RSS MB", lambda r: r["ask"]["peak_tree_mb"], "{:,.0f}"),
    ("ask answered right", lambda r: r["ask"]["answered_right"], "{:.3f}"),
    ("ask p95 ms reading every vector row", lambda r: r["ask_exact"]["p95_ms"], "{:,.1f}"),
    ("ask answered right reading every vector row", lambda r: r["ask_exact"]["answered_right"], "{:.3f}"),
    ("decisions the same as reading every row", lambda r: r["same_decisions"], "{:.3f}"),
]


def table(results: list[dict]) -> str:
    sizes = [r["size"] for r in results]
    pairs = [(a, b) for a, b in zip(results, results[1:])]
    head = "| | " + " | ".join(f"{s:,}" for s in sizes) + "".join(
        f" | {b['size'] // 1000:,}k / {a['size'] // 1000:,}k" for a, b in pairs) + " |"
    lines = [head, "| --- " * (1 + len(sizes) + len(pairs)) + "|"]
    for label, get, fmt in ROWS:
        vals = [get(r) for r in results]
        ratios = [f"{get(b) / get(a):.2f}" if get(a) else "" for a, b in pairs]
        lines.append(f"| {label} | " + " | ".join(fmt.format(v) for v in vals)
                     + "".join(f" | {x}" for x in ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--reuse", action="store_true", help="reuse the cached indexes: only the query phases")
    ap.add_argument("--recalibrate", action="store_true", help="with --reuse: refit the after-build steps first")
    ap.add_argument("--log", type=Path, help="append the children's progress here too")
    ap.add_argument("--phase", choices=sorted(PHASES))
    ap.add_argument("--data", type=Path)
    ap.add_argument("--kb", type=Path)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.data, args.kb)))
        return
    DATA.mkdir(exist_ok=True)
    logfile = args.log.open("a", encoding="utf-8") if args.log else None
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = [measure(size, args.reuse, logfile, args.recalibrate) for size in args.sizes]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    print(f"\ncode {head}, {started} to {time.strftime('%H:%M UTC', time.gmtime())}, load average "
          + ", ".join(f"{r['size']:,}: {r['index'].get('load_before', 0):.1f} before indexing, "
                      f"{r['load']:.1f} after the queries" for r in results) + "\n")
    print(table(results))
    for r in results:
        print(f"{r['size']:,}: ask actions {r['ask']['actions']}")


if __name__ == "__main__":
    main()
