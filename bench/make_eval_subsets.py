"""Rebuild the small evaluation sets the tests use from the full ones (``../shared/data/eval``).

    python bench/make_eval_subsets.py /path/to/shared/data/eval

Deterministic: the same full sets give byte-identical subsets.  What each subset keeps is in
``tests/data/eval/README.md``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1] / "tests" / "data" / "eval"  # where the subsets live


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, items: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")


def stackfaq(src: Path, dst: Path, threads: int = 30, unanswerable: int = 10) -> None:
    """Threads t0..t29 and every rephrasing of them, plus the rephrasings of t100..t109 (not in the archive)."""
    keep = {f"t{i}" for i in range(threads)}
    _write(dst / "archive.jsonl", [t for t in _read(src / "archive.jsonl") if t["id"] in keep])
    away = {f"t{i}" for i in range(100, 100 + unanswerable)}
    questions = [q for q in _read(src / "questions.jsonl")
                 if set(q["answer_ids"]) & keep or q["id"].rpartition("_")[0][3:] in away]
    _write(dst / "questions.jsonl", questions)


def clinc150(src: Path, dst: Path, intents: int = 3, phrasings: int = 40, questions: int = 10) -> None:
    """The first ``intents`` intents of each domain (archive order), ``phrasings`` training utterances
    each, and the first ``questions`` validation questions of each kept intent."""
    by_domain: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for thread in _read(src / "archive.jsonl"):
        if len(by_domain[thread["group"]]) < intents:
            by_domain[thread["group"]].append({**thread, "questions": thread["questions"][:phrasings]})
    archive = [t for domain in sorted(by_domain) for t in by_domain[domain]]
    keep = {t["id"] for t in archive}
    _write(dst / "archive.jsonl", archive)
    count: dict[str, int] = defaultdict(int)
    out = []
    for q in _read(src / "questions.jsonl"):
        ids = q["answer_ids"]
        key = ids[0] if ids else ""
        if (not ids or ids[0] in keep) and count[key] < questions:
            count[key] += 1
            out.append(q)
    _write(dst / "questions.jsonl", out)


def semeval(src: Path, dst: Path, categories: int = 6, per_category: int = 20) -> None:
    """The first ``per_category`` archive threads (file order) of each of the ``categories`` largest
    forum categories: balanced, so routing by cross-validation over the archive is measured against
    a majority baseline of 1/6, not the full set's 28 % "Qatar Living Lounge"."""
    archive = _read(src / "archive.jsonl")
    sizes: dict[str, int] = defaultdict(int)
    for thread in archive:
        sizes[thread["group"]] += 1
    top = set(sorted(sizes, key=lambda g: (-sizes[g], g))[:categories])
    taken: dict[str, int] = defaultdict(int)
    out = []
    for thread in archive:
        if thread["group"] in top and taken[thread["group"]] < per_category:
            taken[thread["group"]] += 1
            out.append(thread)
    _write(dst / "archive.jsonl", out)


def main(shared: Path) -> None:
    stackfaq(shared / "stackfaq", HERE / "stackfaq")
    clinc150(shared / "clinc150", HERE / "clinc150")
    semeval(shared / "semeval2016-qatarliving", HERE / "semeval2016-qatarliving")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
