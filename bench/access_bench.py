"""Access-filter benchmark: what reading a question with only the caller's words costs, in quality and time.

    .venv/bin/python bench/access_bench.py [--set ../shared/data/eval/stackfaq] [--questions 300]

Two knowledge bases: **public**, one eval set's archive threads as public answers (the baseline),
and **mixed**, the same plus another set's threads restricted to the group ``hr``, each with one
made-up word found nowhere else in its title and text.  The same questions are asked anonymously
on both: on *mixed* the caller has documents hidden from them, so `kbsearch.access.visible_words`
reads each question with only the words of documents they may see.  Printed: answered right,
precision and ask p50/p95 on both (and the ratio), then the timing side channel: anonymous search for
a question plus a word only restricted documents contain against the same question plus a made-up word.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from kbsearch import Document, KnowledgeBase, Settings

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "eval"


def _load(set_dir: Path) -> tuple[list[dict], list[dict]]:
    def rows(name: str) -> list[dict]:
        with (set_dir / name).open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    return rows("archive.jsonl"), rows("questions.jsonl")


def _marker(i: int) -> str:
    letters = "bcdfghjklmnpqrstvwxz"
    return "zq" + "".join(letters[(i // 20 ** k) % 20] for k in range(4))


def _build(root: Path, threads: list[dict], hidden: list[dict]) -> KnowledgeBase:
    settings = Settings()
    settings.index.path = root
    kb = KnowledgeBase.open(settings=settings)
    docs = [Document(id=t["id"], kind="answer", title=t["title"], questions=tuple(t.get("questions") or ()),
                     text=t.get("answer") or t["title"]) for t in threads]
    docs += [Document(id=f"hr-{t['id']}", kind="answer", group="hr", allowed_groups=("hr",),
                      title=f"{t['title']} {_marker(i)}", questions=tuple(t.get("questions") or ()),
                      text=f"{_marker(i)}: {t.get('answer') or t['title']}")
             for i, t in enumerate(hidden)]
    kb.rebuild(iter(docs))
    return kb


def _ask_all(kb: KnowledgeBase, questions: list[dict]) -> dict[str, float]:
    times, answered, right = [], 0, 0
    for q in questions:
        started = time.perf_counter()
        d = kb.ask(q["question"], groups=[])
        times.append(time.perf_counter() - started)
        if d.action.value == "answer":
            answered += 1
            right += bool(d.answers) and d.answers[0].id in (q.get("answer_ids") or [])
    times.sort()
    return {"answered_right": right / len(questions), "precision": right / answered if answered else 0.0,
            "p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))]}


def _search_times(kb: KnowledgeBase, questions: list[str], hidden: list[str], made_up: list[str],
                  rounds: int = 3) -> tuple[float, float, float]:
    """Median ms of anonymous searches with a hidden word and with a made-up one, taken in turns (so load
    changes hit both alike), and the median of the per-pair differences."""
    with_hidden, with_made_up = [], []
    for _ in range(rounds):
        for q, a, b in zip(questions, hidden, made_up):
            started = time.perf_counter()
            kb.search(f"{q} {a}", user_groups=[])
            with_hidden.append(time.perf_counter() - started)
            started = time.perf_counter()
            kb.search(f"{q} {b}", user_groups=[])
            with_made_up.append(time.perf_counter() - started)
    diffs = [x - y for x, y in zip(with_hidden, with_made_up)]
    return (1000 * statistics.median(with_hidden), 1000 * statistics.median(with_made_up),
            1000 * statistics.median(diffs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", type=Path, default=EVAL / "stackfaq")
    ap.add_argument("--hidden", type=Path, default=EVAL / "clinc150", help="archive whose threads are restricted")
    ap.add_argument("--questions", type=int, default=300)
    args = ap.parse_args()
    threads, questions = _load(args.set)
    hidden, _ = _load(args.hidden)
    questions = questions[: args.questions]
    with tempfile.TemporaryDirectory() as tmp:
        public = _build(Path(tmp) / "public", threads, [])
        mixed = _build(Path(tmp) / "mixed", threads, hidden)
        for kb in (public, mixed):  # warm both (encoder, caches)
            _ask_all(kb, questions[:20])
        base, filtered = _ask_all(public, questions), _ask_all(mixed, questions)
        print(f"{args.set.name} ({len(threads)} public threads; {len(hidden)} {args.hidden.name} threads for hr), "
              f"{len(questions)} questions asked anonymously")
        print(f"{'index':<34}{'answered right':>15}{'precision':>11}{'ask p50 ms':>12}{'ask p95 ms':>12}")
        for name, r in (("public only (baseline)", base), ("public + hidden hr copies", filtered)):
            print(f"{name:<34}{r['answered_right']:>15.3f}{r['precision']:>11.3f}{r['p50_ms']:>12.1f}{r['p95_ms']:>12.1f}")
        print(f"{'ratio (mixed / baseline)':<34}{filtered['answered_right'] / max(base['answered_right'], 1e-9):>15.3f}"
              f"{filtered['precision'] / max(base['precision'], 1e-9):>11.3f}"
              f"{filtered['p50_ms'] / base['p50_ms']:>12.2f}{filtered['p95_ms'] / base['p95_ms']:>12.2f}")
        texts = [q["question"] for q in questions]
        secret = [_marker(i % len(hidden)) for i in range(len(texts))]
        made_up = ["zx" + w[2:][::-1] + "y" for w in secret]
        _search_times(mixed, texts[:20], secret[:20], made_up[:20], rounds=1)  # warm
        t_secret, t_made_up, diff = _search_times(mixed, texts, secret, made_up)
        print(f"anonymous search, median ms: + hidden word {t_secret:.2f}, + made-up word {t_made_up:.2f}, "
              f"ratio {t_secret / t_made_up:.3f}, median per-pair difference {diff:.3f} ms")
        public.close()
        mixed.close()


if __name__ == "__main__":
    main()
