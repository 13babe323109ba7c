"""The answer model's own TF-IDF counting gives sklearn's vectors bit for bit, only faster per call."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from kbsearch import KnowledgeBase
from kbsearch.deflect._vectors import _CHAR, _WORD, BATCH_DOT_ROWS, FAST_TEXTS, Rows, Vectorizer
from kbsearch.deflect import Deflector

from .conftest import THREADS

ARCHIVE = [text for _g, title, answer, phrasings in THREADS.values() for text in (title, answer, *phrasings)]
ODD = ["", "   ", "zzzz qqqq", "Ünïcödé café — naïve façade", "printer " * 40, "a", "VPN? VPN! vpn...",
       "tab\tand\nnewline", "12345 67 8", "how do I reset my password after the printer jammed in the hotel"]


def _same(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert a.has_sorted_indices and b.has_sorted_indices
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)  # bit for bit, not approximately


@pytest.mark.parametrize("texts", [ODD[:1], ODD[1:2], ODD[2:3], ODD[3:4], ODD, ARCHIVE[:FAST_TEXTS], ARCHIVE],
                         ids=["empty", "blank", "unknown-words", "unicode", "odd-texts", "fast-limit", "archive"])
def test_own_counting_equals_sklearn_bit_for_bit(texts: list[str]) -> None:
    vec = Vectorizer.fit(ARCHIVE)
    assert vec._fast_tables() is not None
    _same(vec._transform_fast(texts), vec.sklearn_transform(texts))
    _same(vec.transform(texts), vec.sklearn_transform(texts))


def test_vectorizer_of_a_stored_model_counts_as_sklearn_does(kb: KnowledgeBase) -> None:
    """The vocabularies and weights read back from disk give the same rows through both paths."""
    model = Deflector.load(kb.generation_path).model
    assert model is not None
    texts = ODD + [p for _g, _t, _a, ps in THREADS.values() for p in ps][:20]
    for text in texts:
        _same(model.vec.transform([text]), model.vec.sklearn_transform([text]))
    assert model.vec._fast is not None  # the stored model took the fast path


def test_other_vectorizer_settings_fall_back_to_sklearn() -> None:
    """Settings the own counting does not do (here: no sublinear tf) are left to sklearn."""
    word = TfidfVectorizer(**{**_WORD, "sublinear_tf": False}).fit(ARCHIVE)
    char = TfidfVectorizer(**_CHAR).fit(ARCHIVE)
    vec = Vectorizer(word, char)
    _same(vec.transform(ODD), vec.sklearn_transform(ODD))
    assert vec._fast_tables() is None


def test_pickled_vectorizer_drops_and_rebuilds_its_counting_tables() -> None:
    vec = Vectorizer.fit(ARCHIVE)
    vec.transform(ODD[:2])
    copy = pickle.loads(pickle.dumps(vec))
    assert copy._fast is None
    _same(copy.transform(ODD), vec.transform(ODD))


def test_a_batch_of_questions_scores_as_each_question_alone() -> None:
    """From `BATCH_DOT_ROWS` questions on, `Rows.dot` multiplies dense question rows: the same
    floats, bit for bit, as the sparse product each question gets alone (so `ask` and a batch of
    questions decide alike)."""
    vec = Vectorizer.fit(ARCHIVE)
    rows = Rows(vec.transform(ARCHIVE))
    questions = (ODD + ARCHIVE)[:max(BATCH_DOT_ROWS, 24)]
    batch = rows.dot(vec.transform(questions))
    assert batch.shape == (len(questions), len(ARCHIVE)) and batch.dtype == np.float32
    assert batch.flags.c_contiguous
    alone = np.vstack([rows.dot(vec.transform([q])) for q in questions])
    assert np.array_equal(batch, alone)
    assert np.count_nonzero(batch) > len(questions)  # the questions do match some rows


def test_character_ngrams_are_counted_word_by_word_and_kept_per_word() -> None:
    """A char_wb analyzer's n-grams never cross a word, so each word's columns are looked up once and
    kept: the same words in another text are not analysed again, and the counts stay sklearn's."""
    vec = Vectorizer.fit(ARCHIVE)
    word, char, _idf = vec._fast_tables()
    assert char._preprocess is not None and word._preprocess is None
    texts = ["The printer on floor 3 shows a paper jam", "paper jam: the PRINTER on floor 3!"]
    _same(vec._transform_fast(texts[:1]), vec.sklearn_transform(texts[:1]))
    kept = dict(char._words)
    assert set(kept) == {"the", "printer", "on", "floor", "3", "shows", "a", "paper", "jam"}
    calls = []
    analyze = char.analyze
    char.analyze = lambda w: calls.append(w) or analyze(w)  # type: ignore[method-assign]
    _same(vec._transform_fast(texts[1:]), vec.sklearn_transform(texts[1:]))
    assert calls == ["jam:", "3!"]  # only the words not seen before ("printer" is lower-cased first)
