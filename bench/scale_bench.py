"""Pages are answers at any size: the StackFAQ threads as 100 intranet pages, alone and inside ~100k.

    PYTHONPATH=. .venv/bin/python bench/scale_bench.py                  # alone, then inside the corpus
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --reuse           # reuse the big index as it is
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --reuse --recalibrate  # refit deflection only
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --latency               # ask p50 / p95 on the big index
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --recall                # the right page: search's / meaning's top k

Each shared StackFAQ thread becomes one ``kind: page`` document (title = the thread's question, text =
its answer, no alternate phrasings).  *Alone*: a fresh index of those 100 pages.  *Inside*: the same
pages among every page section of the bench corpus (bench/corpus.py: Debian manuals, ~99k sections;
its peer-answer threads are left out, so no answer covers these questions).  Both are built with
`KnowledgeBase.rebuild` (calibrated on the index alone: no label of the questions is used), then
every question of the set (500 real rephrasings + 125 out of scope) is decided through
`deflect.decide_many`.  Printed: the share of rephrasings answered right, the precision of the
answers (out-of-scope questions answered count as wrong), the suggest / escalate shares, and the
ratio inside / alone.  ``--recalibrate`` refits only the deflection step on the cached big index
(the same code path as the rebuild's, with no previous calibration to step from, as in a fresh
build), so code versions can be compared on one index.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _faq  # noqa: E402
import _refit  # noqa: E402
import corpus  # noqa: E402


def _decide(kb, qs: list[dict]) -> tuple[dict, float]:
    from kbsearch.deflect import decide_many
    from kbsearch.search import ALL_GROUPS

    t0 = time.perf_counter()
    decisions = decide_many(kb, [q["question"] for q in qs], groups=ALL_GROUPS, route=False)
    seconds = time.perf_counter() - t0
    relevant = ["faq:" + q["answer_ids"][0] if q["answer_ids"] else None for q in qs]
    return _faq.rates(decisions, relevant), seconds


def _calibration(kb) -> dict:
    from kbsearch.deflect._calibration import Calibration

    cal = Calibration.load(kb.generation_path)
    rep = cal.report if cal is not None else {}
    return {k: rep.get(k) for k in ("method", "documents", "holdout_answerable", "holdout_unanswerable",
                                    "answer_thresholds", "holdout_deflection", "search_holdouts", "uncovered_targets")}


def alone(qs: list[dict]) -> dict:
    with _faq.fresh_kb("kbsearch-scale-") as kb:
        t0 = time.perf_counter()
        kb.rebuild(_faq.as_pages(_faq.threads()))
        build = time.perf_counter() - t0
        r, secs = _decide(kb, qs)
        return {**r, "documents": kb.stats().documents, "build_s": round(build, 1),
                "decide_s": round(secs, 1), "calibration": _calibration(kb)}


def inside(qs: list[dict], size: int, reuse: bool, recalibrate: bool) -> dict:
    from kbsearch import Document, KnowledgeBase, Settings

    path = corpus.build(size)
    root = corpus.DATA / f"kb-scale-{size}"
    s = Settings.load()
    s.index.path = root
    build = 0.0
    if not (reuse and root.exists()):
        shutil.rmtree(root, ignore_errors=True)
        kb = KnowledgeBase.open(settings=s, create=True)
        pages = (Document.from_dict(d) for d in corpus.iter_docs(path) if d.get("kind") == "page")
        t0 = time.perf_counter()

        def everything():
            yield from _faq.as_pages(_faq.threads())
            yield from pages
        kb.rebuild(everything())
        build = time.perf_counter() - t0
    else:
        kb = KnowledgeBase.open(settings=s)
        if recalibrate:
            build = _refit.refit_as_fresh(kb)
    try:
        r, secs = _decide(kb, qs)
        return {**r, "documents": kb.stats().documents, "build_s": round(build, 1), "decide_s": round(secs, 1),
                "calibration": _calibration(kb)}
    finally:
        kb.close()


def recall(size: int) -> dict:
    """Where the right page is, per answerable rephrasing, on the cached big index: among search's
    (lexical) top 1 / 10, among the nearest by meaning (`Searcher.by_meaning`) top 1 / 10, either."""
    from kbsearch import KnowledgeBase, Settings

    s = Settings.load()
    s.index.path = corpus.DATA / f"kb-scale-{size}"
    counts = dict.fromkeys(("lexical@1", "lexical@10", "meaning@1", "meaning@10", "either@10"), 0)
    with KnowledgeBase.open(settings=s, create=False) as kb:
        searcher = kb._current().searcher
        qs = [q for q in _faq.questions() if q["answer_ids"]]
        for q in qs:
            right = "faq:" + q["answer_ids"][0]
            lex = [c.document.id for c in searcher.candidates(searcher.prepare(q["question"]), None, 10)]
            near = [c.document.id for c in searcher.by_meaning(q["question"], None, 10)]
            counts["lexical@1"] += lex[:1] == [right]
            counts["lexical@10"] += right in lex
            counts["meaning@1"] += near[:1] == [right]
            counts["meaning@10"] += right in near
            counts["either@10"] += right in lex or right in near
    return {k: round(v / len(qs), 3) for k, v in counts.items()}


def ask_latency(size: int, count: int = 300) -> dict:
    """`KnowledgeBase.ask` p50 / p95 (ms) on the cached big index, anonymous, one question at a time."""
    import statistics

    from kbsearch import KnowledgeBase, Settings

    s = Settings.load()
    s.index.path = corpus.DATA / f"kb-scale-{size}"
    with KnowledgeBase.open(settings=s, create=False) as kb:
        questions = [q["question"] for q in _faq.questions()][:count]
        for q in questions[:30]:  # warm: encoder, caches
            kb.ask(q, groups=[])
        times = []
        for q in questions:
            t0 = time.perf_counter()
            kb.ask(q, groups=[])
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--reuse", action="store_true", help="reuse the cached big index")
    ap.add_argument("--recalibrate", action="store_true", help="with --reuse: refit the deflection step")
    ap.add_argument("--skip-alone", action="store_true")
    ap.add_argument("--skip-inside", action="store_true")
    ap.add_argument("--latency", action="store_true", help="only time ask on the cached big index")
    ap.add_argument("--recall", action="store_true", help="only where the right page is: search's and meaning's top k")
    args = ap.parse_args()
    if args.recall:
        print(json.dumps(recall(args.size)))
        return
    if args.latency:
        r = ask_latency(args.size)
        print(f"ask on the cached {args.size:,}-section index: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
        return
    qs = _faq.questions()
    out: dict = {}
    if not args.skip_alone:
        out["alone"] = alone(qs)
        print(json.dumps({"alone": out["alone"]}), flush=True)
    if not args.skip_inside:
        out["inside"] = inside(qs, args.size, args.reuse, args.recalibrate)
        print(json.dumps({"inside": out["inside"]}), flush=True)
    print("\n| index | documents | answered right | precision | answered | suggested | escalated | top-1 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['documents']} | {r['answered_right']:.3f} | {r['precision']:.3f} | {r['answered']:.3f} "
              f"| {r['suggested']:.3f} | {r['escalated']:.3f} | {r['top1']:.3f} |")
    if "alone" in out and "inside" in out:
        ratio = out["inside"]["answered_right"] / max(out["alone"]["answered_right"], 1e-9)
        print(f"\nanswered right inside / alone: {ratio:.3f} (goal >= 0.9); precision >= 0.85 on both: "
              f"{out['alone']['precision'] >= 0.85 and out['inside']['precision'] >= 0.85}")


if __name__ == "__main__":
    main()
