"""The shared StackFAQ set as bench material: its threads as documents, its questions with answers.

Used by bench/scale_bench.py (threads as intranet pages) and bench/live_bench.py (threads as peer
answers); both score decisions the same way (`rates`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STACKFAQ = HERE.parent.parent / "shared" / "data" / "eval" / "stackfaq"


def threads(set_dir: Path = STACKFAQ) -> list[dict[str, Any]]:
    """The archive's threads: {"id", "title", "questions", "answer"}, in file order."""
    return [json.loads(line) for line in (set_dir / "archive.jsonl").open(encoding="utf-8")]


def questions(set_dir: Path = STACKFAQ) -> list[dict[str, Any]]:
    """The real user questions: {"question", "answer_ids"} (empty ids: out of scope)."""
    return [json.loads(line) for line in (set_dir / "questions.jsonl").open(encoding="utf-8")]


def as_pages(items: list[dict[str, Any]], prefix: str = "faq:") -> list[Any]:
    """Threads as intranet pages: title = the question, text = the answer, no alternate phrasings."""
    from kbsearch import Document

    return [Document(id=prefix + t["id"], title=t["title"], text=t["answer"], kind="page",
                     url=f"http://faq.example/{t['id']}", source="faq") for t in items]


def rates(decisions: list[Any], relevant: list[str | None]) -> dict[str, float]:
    """Answered-right share of the answerable questions, precision of the answers, and the shares of
    the decisions, for decisions of questions whose right document id is ``relevant`` (None: none)."""
    answerable = [i for i, r in enumerate(relevant) if r is not None]
    answered = [i for i, d in enumerate(decisions) if str(d.action) == "answer"]
    right = [i for i in answered if relevant[i] is not None and decisions[i].answers[0].id == relevant[i]]
    top = [i for i in answerable if decisions[i].ranked and decisions[i].ranked[0] == relevant[i]]
    n = max(1, len(decisions))
    return {
        "questions": len(decisions), "answerable": len(answerable),
        "answered_right": round(len(right) / max(1, len(answerable)), 4),
        "precision": round(len(right) / len(answered), 4) if answered else 0.0,
        "answered": round(len(answered) / n, 4),
        "suggested": round(sum(str(d.action) == "suggest" for d in decisions) / n, 4),
        "escalated": round(sum(str(d.action) == "escalate" for d in decisions) / n, 4),
        "top1": round(len(top) / max(1, len(answerable)), 4),
    }


@contextmanager
def fresh_kb(prefix: str) -> Iterator[Any]:
    """A new, empty knowledge base in a temporary folder (default settings), closed and removed after."""
    from kbsearch import KnowledgeBase, Settings

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        s = Settings.load()
        s.index.path = Path(tmp) / "index"
        kb = KnowledgeBase.open(settings=s, create=True)
        try:
            yield kb
        finally:
            kb.close()
