"""Escalations like a new question: TF-IDF cosine over word unigrams and bigrams, fitted on the
candidates the caller may see (so hidden questions move neither the ranking nor the scores)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .store import Escalation


def rank_similar(question: str, candidates: Sequence[Escalation], *, user: str | None, limit: int,
                 min_score: float) -> list[dict[str, Any]]:
    """The ``candidates`` like ``question`` scoring at least ``min_score``, most similar first, at most
    ``limit``, as the dicts `PeerLoop.similar_questions` returns."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english")
    try:
        matrix = vectorizer.fit_transform([e.question for e in candidates])
    except ValueError:  # only stop words in every stored question: nothing to compare
        return []
    scores = (matrix @ vectorizer.transform([question]).T).toarray().ravel()
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], -candidates[i].created))
    out: list[dict[str, Any]] = []
    for i in order:
        if scores[i] < min_score or len(out) >= limit:
            break
        esc = candidates[i]
        item: dict[str, Any] = {"id": esc.id, "question": esc.question, "status": esc.status,
                                "group": esc.group, "open": esc.open, "score": round(float(scores[i]), 4),
                                "mine": user is not None and esc.user == user,
                                "following": user is not None and user in esc.followers,
                                "followers": len(esc.followers)}
        if esc.answered and esc.answer:
            item["answer"] = esc.answer
            item["verified"] = esc.verified
        out.append(item)
    return out
