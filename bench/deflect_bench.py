"""Deflection benchmark: full evaluations of the shared sets, and `ask` latency on a warm 100k index.

    .venv/bin/python bench/deflect_bench.py eval                 # every set in ../shared/data/eval
    .venv/bin/python bench/deflect_bench.py latency --size 100000
    .venv/bin/python bench/deflect_bench.py decide --size 100000     # what ask decides, per question set
    .venv/bin/python bench/deflect_bench.py variants [--learn] [SET_DIR...]  # robustness: more unanswerable questions

``eval`` runs `kbsearch.evaluation.evaluate.evaluate` on each set (fresh index, calibrated on the archive alone)
and prints the figures and wall / CPU seconds.  ``latency`` builds (or reuses, ``--reuse``) a
knowledge base from ``bench/data/corpus-SIZE.jsonl`` (see bench/corpus.py: Debian documentation
sections + the eval archives), then times, in the same run and on the same questions, the baseline
`KnowledgeBase.search` and `KnowledgeBase.ask` (which logs every ask to SQLite), and prints the ratio.
``decide`` asks every bench question on that (cached) knowledge base and prints, per question set,
how often the first answer is right, how often `ask` answers, and how often it answers right.
``variants`` derives harder sets from the shared ones (bench/data/variants, not committed): CLINC150
with 5-20 random phrasings per intent and 0-100 of the 150 intents removed from the archive (their
questions must then escalate), StackFAQ with 30 or 60 of its 100 threads removed, and evaluates each
like ``eval``.  With ``--learn`` it also asks every question once through `KnowledgeBase.ask` (logged,
as real use), rebuilds with ``deflect.learn_unanswerable_share`` on and decides them again; given
set folders (e.g. HINT3's bots, see bench/hint3_set.py), it does the same on those instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (bench/corpus.py)

EVAL = HERE.parent.parent / "shared" / "data" / "eval"


def run_eval(sets: list[str]) -> None:
    from kbsearch.evaluation.evaluate import evaluate

    rows = []
    for name in sets:
        cpu0, t0 = time.process_time(), time.perf_counter()
        r = evaluate(EVAL / name)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        rows.append((name, r, wall, cpu))
        print(json.dumps({"set": name, **r.to_dict(), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                          "build_s": round(r.build_seconds, 1), "decide_s": round(r.decide_seconds, 1),
                          "ece": r.expected_calibration_error, "calibration": r.calibration}), flush=True)
        print("  reliability:", " ".join(f"{b['bin']}:{b['count']}@{b['right']:.2f}" for b in r.reliability))
    print("\n| set | questions | accuracy | in-scope acc | OOS recall | deflection | precision | P@1 | MRR@10 | MCC "
          "| routing | ECE | wall s (CPU s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def f(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"
    for name, r, wall, cpu in rows:
        print(f"| {name} | {r.questions} | {f(r.accuracy)} | {f(r.in_scope_accuracy)} | {f(r.oos_recall)} | "
              f"{f(r.deflection_rate)} | {f(r.deflection_precision)} | {f(r.p_at_1)} | {f(r.mrr_at_10)} | "
              f"{f(r.mcc)} | {f(r.routing_accuracy)} | {r.expected_calibration_error:.3f} | {wall:.1f} ({cpu:.1f}) |")


def _pct(times: list[float], p: float) -> float:
    s = sorted(times)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def run_latency(size: int, reuse: bool, limit: int) -> None:
    from kbsearch import KnowledgeBase, Document

    path = corpus.build(size)
    pool = [q["q"] for q in corpus.questions_for(path)]
    questions = pool[:limit]
    root = corpus.DATA / f"kb-deflect-{size}"
    kb = KnowledgeBase.open(root)
    if not (reuse and kb.stats().documents >= size * 0.9):
        t0 = time.perf_counter()
        report = kb.rebuild(Document.from_dict(d) for d in corpus.iter_docs(path))
        print(f"rebuild: {report.documents} documents in {time.perf_counter() - t0:.1f}s; "
              f"deflect step {json.dumps(report.steps.get('deflect'))}", flush=True)
    # Warm the OS pages, the searcher and the models on other questions than the measured ones, so
    # caches of per-document vectors (search's and ask's) hold only what real traffic would bring.
    warm = pool[limit:limit + 50] or questions[:50]
    for q in warm:
        kb.search(q)
        kb.ask(q)
    t_search, t_ask = [], []
    actions: dict[str, int] = {}
    for q in questions:
        t0 = time.perf_counter()
        kb.search(q)
        t_search.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        d = kb.ask(q)
        t_ask.append(time.perf_counter() - t0)
        actions[d.action.value] = actions.get(d.action.value, 0) + 1
    print(f"{len(questions)} questions on {kb.stats().documents} documents (warm)")
    print(f"{'':>22} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for name, t in (("baseline kb.search", t_search), ("kb.ask", t_ask)):
        print(f"{name:>22} {_pct(t, .5):8.1f} {_pct(t, .95):8.1f} {statistics.mean(t) * 1000:8.1f}")
    print(f"ratio ask/search: p50 {_pct(t_ask, .5) / _pct(t_search, .5):.2f}, p95 {_pct(t_ask, .95) / _pct(t_search, .95):.2f}")
    print(f"decisions: {actions}")
    kb.close()


def section_of(doc_id: str) -> str:
    """A documentation section's id without its chunk number (bench/corpus.py cuts long sections)."""
    return doc_id.rsplit(":", 1)[0]


def run_decide(size: int) -> None:
    from kbsearch import KnowledgeBase

    path = corpus.build(size)
    root = corpus.DATA / f"kb-deflect-{size}"
    kb = KnowledgeBase.open(root)
    if kb.stats().documents < size * 0.9:
        raise SystemExit(f"{root} is not built: run `latency --size {size}` first")
    per_set: dict[str, list[tuple[bool, bool]]] = {}
    t0 = time.perf_counter()
    for q in corpus.questions_for(path):
        d = kb.ask(q["q"])
        top = d.ranked[0] if d.ranked else ""
        if q["set"] == "faq-headings":
            # A long section is cut into chunks that share its heading and link: any of them is right.
            right = section_of(top) in {section_of(r) for r in q["relevant"]}
        else:
            right = top in q["relevant"]
        per_set.setdefault(q["set"], []).append((right, d.action.value == "answer"))
    seconds = time.perf_counter() - t0
    print(f"{sum(map(len, per_set.values()))} questions on {kb.stats().documents} documents in {seconds:.1f}s")
    print("| questions | n | P@1 | answered | answered right | precision |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in per_set.items():
        n = len(rows)
        answered = sum(a for _r, a in rows)
        good = sum(r and a for r, a in rows)
        prec = f"{good / answered:.3f}" if answered else "–"
        print(f"| {name} | {n} | {sum(r for r, _a in rows) / n:.3f} | {answered / n:.3f} | {good / n:.3f} | {prec} |")
    kb.close()


VARIANTS = corpus.DATA / "variants"


def build_variants() -> list[Path]:
    """Derived sets: fewer phrasings per thread and whole threads removed (seeded, reproducible)."""
    import random

    def load(name: str, file: str) -> list[dict]:
        return [json.loads(line) for line in (EVAL / name / file).open(encoding="utf-8")]

    def write(name: str, archive: list[dict], questions: list[dict]) -> Path:
        folder = VARIANTS / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, rows in (("archive.jsonl", archive), ("questions.jsonl", questions)):
            (folder / file).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return folder

    def without(questions: list[dict], removed: set[str]) -> list[dict]:
        return [{**q, "answer_ids": [] if set(q["answer_ids"]) & removed else q["answer_ids"]} for q in questions]

    out = []
    rng = random.Random(7)
    archive, questions = load("clinc150", "archive.jsonl"), load("clinc150", "questions.jsonl")
    ids = [a["id"] for a in archive]
    rng.shuffle(ids)
    for k, drop in ((5, 50), (10, 50), (20, 0), (10, 100)):
        removed = set(ids[:drop])
        kept = [{**a, "questions": rng.sample(a["questions"], min(k, len(a["questions"])))}
                for a in archive if a["id"] not in removed]
        out.append(write(f"clinc-k{k}-drop{drop}", kept, without(questions, removed)))
    archive, questions = load("stackfaq", "archive.jsonl"), load("stackfaq", "questions.jsonl")
    ids = [a["id"] for a in archive]
    rng.shuffle(ids)
    for drop in (30, 60):
        removed = set(ids[:drop])
        out.append(write(f"stackfaq-drop{drop}", [a for a in archive if a["id"] not in removed],
                         without(questions, removed)))
    return out


def _decision_scores(decisions: list, questions: list) -> dict[str, float]:
    answerable = [bool(q.answer_ids) for q in questions]
    answered = [d.action.value == "answer" for d in decisions]
    right = [a and bool(d.ranked) and d.ranked[0] in q.answer_ids for a, d, q in zip(answerable, decisions, questions)]
    n_in, n_out, n_ans = sum(answerable), len(answerable) - sum(answerable), sum(answered)
    return {
        "accuracy": sum((r and d) if a else not d for a, d, r in zip(answerable, answered, right)) / len(questions),
        "in_scope_accuracy": sum(r and d for r, d in zip(right, answered)) / max(1, n_in),
        "oos_recall": sum((not a) and (not d) for a, d in zip(answerable, answered)) / max(1, n_out),
        "deflection_rate": n_ans / len(questions),
        "deflection_precision": sum(r and d for r, d in zip(right, answered)) / max(1, n_ans),
    }


def run_variants(learn: bool, folders: list[Path] | None = None) -> None:
    import tempfile

    from kbsearch import KnowledgeBase, Settings
    from kbsearch.evaluation.evaluate import evaluate, load_archive, load_questions

    cols = ("accuracy", "in_scope_accuracy", "oos_recall", "deflection_rate", "deflection_precision")
    print("| set | unanswerable | run | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 3) + "|")
    for folder in folders or build_variants():
        qs = load_questions(folder / "questions.jsonl")
        share = sum(not q.answer_ids for q in qs) / len(qs)
        r = evaluate(folder).to_dict()
        print(f"| {folder.name} | {share:.2f} | eval | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |", flush=True)
        if not learn:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.load(env={}, **{"index_path": Path(tmp) / "kb", "deflect.learn_unanswerable_share": True})
            kb = KnowledgeBase.open(settings=settings)
            docs = load_archive(folder / "archive.jsonl")
            kb.rebuild(docs)
            for q in qs:
                kb.ask(q.question)
            kb.rebuild(docs)
            used = kb.ask_many([qs[0].question])[0].thresholds.get("unanswerable_share")
            after = _decision_scores(kb.ask_many([q.question for q in qs]), qs)
            kb.close()
        print(f"| {folder.name} | {share:.2f} | learned share {used} | "
              + " | ".join(f"{after[c]:.3f}" for c in cols) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("sets", nargs="*", default=None)
    la = sub.add_parser("latency")
    la.add_argument("--size", type=int, default=100_000)
    la.add_argument("--reuse", action="store_true", help="reuse bench/data/kb-deflect-SIZE if it is complete")
    la.add_argument("--questions", type=int, default=500)
    de = sub.add_parser("decide")
    de.add_argument("--size", type=int, default=100_000)
    va = sub.add_parser("variants")
    va.add_argument("--learn", action="store_true", help="also one round of learning the unanswerable share")
    va.add_argument("sets", nargs="*", type=Path, help="set folders to use instead of the derived sets")
    args = ap.parse_args()
    if args.cmd == "eval":
        sets = args.sets or sorted(p.name for p in EVAL.iterdir() if (p / "archive.jsonl").is_file())
        run_eval(sets)
    elif args.cmd == "decide":
        run_decide(args.size)
    elif args.cmd == "variants":
        run_variants(args.learn, args.sets)
    else:
        run_latency(args.size, args.reuse, args.questions)


if __name__ == "__main__":
    main()
