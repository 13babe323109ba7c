"""Reindex cost benchmark: an unchanged reindex against a full one, add latency, rebuild peak RSS.

    PYTHONPATH=. .venv/bin/python bench/reindex_bench.py --size 5000
    PYTHONPATH=. .venv/bin/python bench/reindex_bench.py --size 100000 --only rss

The intranet is the real-text bench corpus (`corpus.py`: Debian HTML manuals split into sections,
plus the shared eval archives), written as one ``jsonl`` source in a ``crawlers/`` directory.  Each
phase runs in a child process of its own (its peak RSS, including worker processes, is its own):

* ``first``: the first reindex of an empty index (sync every document, then build);
* ``full``: ``reindex --full`` of that index (what every reindex cost before: sync + rebuild);
* ``unchanged``: a plain ``reindex`` with nothing changed (sync finds nothing new, no rebuild);
* ``add``: ``kb.add([one document])`` on that index, median of 5 (a peer answer being indexed);
* ``rss``: ``kb.rebuild`` of the corpus into a fresh index (peak RSS of the process and its workers).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

FIELDS = ("id", "kind", "title", "text", "url", "questions", "headings", "group", "source")


def peak_rss_mb() -> float:
    """Peak RSS of this process or of its largest finished child (a deflection fit runs in a worker)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def _crawlers(work: Path, corpus_path: Path) -> Path:
    crawlers = work / "crawlers"
    crawlers.mkdir(parents=True, exist_ok=True)
    data = work / "intranet.jsonl"
    if not data.exists():
        with data.open("w", encoding="utf-8") as out:
            for d in corpus.iter_docs(corpus_path):
                out.write(json.dumps({k: v for k, v in d.items() if k in FIELDS}) + "\n")
    (crawlers / "intranet.toml").write_text(f'type = "jsonl"\npath = "{data}"\n', encoding="utf-8")
    return crawlers


def phase(name: str, work: Path, corpus_path: Path) -> dict:
    from kbsearch import Document, KnowledgeBase

    index = work / "index"
    if name == "rss":
        index = work / "rss-index"
        with KnowledgeBase.open(index) as kb:
            started = time.perf_counter()
            report = kb.rebuild(Document.from_dict({k: v for k, v in d.items() if k in FIELDS})
                                for d in corpus.iter_docs(corpus_path))
            return {"documents": report.documents, "seconds": time.perf_counter() - started,
                    "peak_rss_mb": peak_rss_mb()}
    crawlers = _crawlers(work, corpus_path)
    with KnowledgeBase.open(index) as kb:
        if name == "add":
            times = []
            for i in range(5):
                doc = Document(id=f"bench-answer-{time.time_ns()}-{i}", kind="answer", title="Where is the bench garage?",
                               text=f"The bench garage is under building {i}.")
                started = time.perf_counter()
                kb.add([doc])
                times.append(time.perf_counter() - started)
            return {"median_seconds": statistics.median(times), "max_seconds": max(times),
                    "documents": len(kb.ids())}
        started = time.perf_counter()
        report = kb.reindex(crawlers, full=(name == "full"))
        seconds = time.perf_counter() - started
        build = report.build or {}
        return {"seconds": seconds, "skipped": build.get("skipped"), "documents": build.get("documents"),
                "exit_code": report.exit_code, "peak_rss_mb": peak_rss_mb()}


def run(name: str, work: Path, corpus_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", name, "--work", str(work),
                           "--corpus", str(corpus_path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--only", choices=["reindex", "rss"], help="only the reindex phases, or only the rebuild RSS")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.work, args.corpus)))
        return
    corpus_path = corpus.build(args.size)
    names = {"reindex": ["first", "full", "unchanged", "add"], "rss": ["rss"]}.get(args.only or "",
                                                                                 ["first", "full", "unchanged", "add", "rss"])
    with tempfile.TemporaryDirectory(prefix="kbsearch-reindex-bench-") as tmp:
        results = {name: run(name, Path(tmp), corpus_path) for name in names}
    print(f"{args.size} documents")
    print(f"{'phase':<12}{'seconds':>10}{'peak RSS MB':>14}  note")
    for name, r in results.items():
        seconds = r.get("seconds", r.get("median_seconds", 0.0))
        note = r.get("skipped") or ("median of 5 single-document adds" if name == "add" else "")
        print(f"{name:<12}{seconds:>10.2f}{r.get('peak_rss_mb', 0.0):>14.0f}  {note}")
    if "full" in results and "unchanged" in results:
        ratio = results["unchanged"]["seconds"] / results["full"]["seconds"]
        print(f"unchanged / full reindex: {ratio:.1%}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
