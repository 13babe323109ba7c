"""Indexing and search benchmark: kbsearch side by side with plain Whoosh on the same real documents.

    .venv/bin/python bench/index_bench.py --sizes 10000 100000

For each size, four child processes run in turn (so each peak RSS is its own): plain Whoosh indexing
(one writer, default settings, StemmingAnalyzer, title + text), kbsearch `rebuild` (including the
TF-IDF fit), plain Whoosh search (OR-grouped `MultifieldParser` over title + text, top 10) and
kbsearch search (top 10, re-ranked).  Questions are real: user rephrasings from the shared eval sets
and the FAQ pages' question headings, each with its known answer, so ranking quality (P@1, MRR@10) is
measured on the same questions as the latency.  Prints figures and the kbsearch/plain ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import corpus  # noqa: E402

FIELDS = ("id", "kind", "title", "text", "url", "questions", "headings", "group", "source")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def plain_text(d: dict) -> str:
    return "\n".join([*d.get("questions", []), *d.get("headings", []), d.get("text", "")])


def phase_plain_index(path: Path, out: Path) -> dict:
    from whoosh import analysis, fields, index

    schema = fields.Schema(id=fields.ID(stored=True, unique=True),
                           title=fields.TEXT(analyzer=analysis.StemmingAnalyzer(), stored=True),
                           text=fields.TEXT(analyzer=analysis.StemmingAnalyzer(), stored=True),
                           url=fields.STORED())
    out.mkdir(parents=True)
    started = time.perf_counter()
    ix = index.create_in(str(out), schema)
    writer = ix.writer()
    n = 0
    for d in corpus.iter_docs(path):
        writer.add_document(id=d["id"], title=d["title"], text=plain_text(d), url=d.get("url", ""))
        n += 1
    writer.commit()
    seconds = time.perf_counter() - started
    return {"docs": n, "seconds": seconds, "docs_per_s": n / seconds, "peak_rss_mb": peak_rss_mb()}


def _documents(path: Path):
    from kbsearch import Document

    for d in corpus.iter_docs(path):
        yield Document.from_dict({k: v for k, v in d.items() if k in FIELDS})


def phase_kb_index(path: Path, out: Path) -> dict:
    from kbsearch import KnowledgeBase

    kb = KnowledgeBase.open(out)
    report = kb.rebuild(_documents(path))
    kb.close()
    return {"docs": report.documents, "seconds": report.index_seconds,
            "docs_per_s": report.documents / report.index_seconds, "steps_seconds": report.steps_seconds,
            "total_seconds": report.seconds, "peak_rss_mb": peak_rss_mb(), "model_fitted_on": report.model_fitted_on}


def _quality(ranked: list[list[str]], questions: list[dict]) -> dict:
    p1 = mrr = 0.0
    for ids, q in zip(ranked, questions):
        rel = set(q["relevant"])
        if ids and ids[0] in rel:
            p1 += 1
        for rank, i in enumerate(ids[:10], 1):
            if i in rel:
                mrr += 1 / rank
                break
    n = len(questions) or 1
    return {"p_at_1": p1 / n, "mrr_at_10": mrr / n}


def _latency(times: list[float]) -> dict:
    times = sorted(times)
    return {"p50_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * times[min(len(times) - 1, int(0.95 * len(times)))],
            "mean_ms": 1000 * statistics.fmean(times)}


def phase_plain_search(path: Path, out: Path) -> dict:
    from whoosh import index, qparser

    questions = corpus.questions_for(path)
    ix = index.open_dir(str(out))
    parser = qparser.MultifieldParser(["title", "text"], ix.schema, group=qparser.OrGroup)
    ranked, times = [], []
    with ix.searcher() as s:
        for q in questions[:20]:  # warm-up
            s.search(parser.parse(q["q"]), limit=10)
        for q in questions:
            t = time.perf_counter()
            results = s.search(parser.parse(q["q"]), limit=10)
            ids = [hit["id"] for hit in results]
            times.append(time.perf_counter() - t)
            ranked.append(ids)
    return {**_latency(times), **_quality(ranked, questions), "questions": len(questions),
            "peak_rss_mb": peak_rss_mb()}


def phase_kb_search(path: Path, out: Path) -> dict:
    from kbsearch import ALL_GROUPS, KnowledgeBase

    questions = corpus.questions_for(path)
    kb = KnowledgeBase.open(out, create=False)
    for q in questions[:20]:
        kb.search(q["q"], limit=10)
    kb._cache.__init__()  # measure with a cold vector cache: no question sees its own vectors twice
    ranked, times = [], []
    for q in questions:
        t = time.perf_counter()
        hits = kb.search(q["q"], limit=10, user_groups=ALL_GROUPS)
        times.append(time.perf_counter() - t)
        ranked.append([h.id for h in hits])
    kb.close()
    return {**_latency(times), **_quality(ranked, questions), "questions": len(questions),
            "peak_rss_mb": peak_rss_mb()}


PHASES = {"plain-index": phase_plain_index, "kb-index": phase_kb_index,
          "plain-search": phase_plain_search, "kb-search": phase_kb_search}


def run_phase(name: str, path: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", name, "--corpus", str(path), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--phase", choices=sorted(PHASES))
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", action="store_true", help="print all figures as JSON at the end")
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.corpus, args.out)))
        return
    results = {}
    for size in args.sizes:
        path = corpus.build(size)
        work = Path(tempfile.mkdtemp(prefix=f"kbbench-{size}-"))
        try:
            r = {}
            r["plain_index"] = run_phase("plain-index", path, work / "plain")
            r["kb_index"] = run_phase("kb-index", path, work / "kb")
            r["plain_search"] = run_phase("plain-search", path, work / "plain")
            r["kb_search"] = run_phase("kb-search", path, work / "kb")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results[size] = r
        pi, ki, ps, ks = r["plain_index"], r["kb_index"], r["plain_search"], r["kb_search"]
        print(f"\n== {size:,} documents ({ps['questions']} questions) ==")
        print(f"{'':24}{'plain Whoosh':>14}{'kbsearch':>14}{'ratio kb/plain':>16}")
        rows = [
            ("index docs/s", pi["docs_per_s"], ki["docs_per_s"]),
            ("index peak RSS MB", pi["peak_rss_mb"], ki["peak_rss_mb"]),
            ("search p50 ms", ps["p50_ms"], ks["p50_ms"]),
            ("search p95 ms", ps["p95_ms"], ks["p95_ms"]),
            ("search peak RSS MB", ps["peak_rss_mb"], ks["peak_rss_mb"]),
            ("P@1", ps["p_at_1"], ks["p_at_1"]),
            ("MRR@10", ps["mrr_at_10"], ks["mrr_at_10"]),
        ]
        for label, a, b in rows:
            print(f"{label:24}{a:14.3f}{b:14.3f}{(b / a if a else float('nan')):16.3f}")
        print(f"(kbsearch rebuild: {ki['seconds']:.1f}s indexing + TF-IDF fit, then {ki['steps_seconds']:.1f}s "
              f"after-build steps: routing model and deflection calibration)")
        sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
