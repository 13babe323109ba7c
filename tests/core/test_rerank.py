"""The Ranker contract, for every ranker; the TF-IDF model's persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kbsearch import Document
from kbsearch.config import RerankConfig
from kbsearch.index import Candidate
from kbsearch.search.rerank import Bm25Ranker, Ranker, TfidfModel, TfidfRanker, fit_on

DOCS = [
    Document(id="a", kind="answer", title="How do I reset my password?", questions=("forgot password",),
             text="Use the self-service portal."),
    Document(id="b", title="Printer setup", text="Add the SecurePrint queue in the printer settings."),
    Document(id="c", title="Holiday requests", text="Request holidays in the HR portal.", verified=True),
    Document(id="d", title="Password rules", text="Passwords need 14 characters.", outdated=True),
]
MODEL = fit_on(DOCS, 100, 600)


def _candidates() -> list[Candidate]:
    return [Candidate(d, bm25=float(len(DOCS) - i), content_hash=d.content_hash) for i, d in enumerate(DOCS)]


RANKERS = [Bm25Ranker(RerankConfig()), TfidfRanker(MODEL, RerankConfig())]


@pytest.mark.parametrize("ranker", RANKERS, ids=lambda r: r.name)
def test_ranker_contract(ranker: Ranker) -> None:
    assert isinstance(ranker, Ranker)
    ranked = ranker.rank("I forgot my password", _candidates())
    assert sorted(c.document.id for c, _s, _p in ranked) == sorted(d.id for d in DOCS)
    scores = [s for _c, s, _p in ranked]
    assert scores == sorted(scores, reverse=True)
    for c, score, parts in ranked:
        assert parts.bm25 == c.bm25 and 0 < parts.bm25_norm <= 1
        assert ("outdated" in parts.details) == c.document.outdated
        assert ("verified" in parts.details) == c.document.verified
    assert ranker.rank("anything", []) == []


def test_tfidf_ranker_uses_the_question_not_just_bm25() -> None:
    ranked = TfidfRanker(MODEL, RerankConfig()).rank("forgot password", list(reversed(_candidates())))
    assert ranked[0][0].document.id == "a"
    assert ranked[0][2].question_match == pytest.approx(1.0, abs=1e-5)


def test_unfitted_model_falls_back_to_bm25() -> None:
    ranked = TfidfRanker(TfidfModel.empty(), RerankConfig()).rank("password", _candidates())
    assert [c.document.id for c, _s, _p in ranked][:1] == ["a"] and ranked[0][2].tfidf == 0


def test_model_round_trip(tmp_path: Path) -> None:
    MODEL.save(tmp_path)
    loaded = TfidfModel.load(tmp_path)
    assert loaded.fitted and loaded.fitted_on == MODEL.fitted_on
    texts = ["reset my password", "printer queue"]
    assert np.allclose(loaded.phrase_vectors(texts).toarray(), MODEL.phrase_vectors(texts).toarray())
    assert not TfidfModel.load(tmp_path / "nothing").fitted


def test_unseen_words_still_count() -> None:
    vec = MODEL.word_vectors(["zyxwvut password"])
    assert vec.nnz >= 2  # hashed space: a word the sample never saw still has a feature
