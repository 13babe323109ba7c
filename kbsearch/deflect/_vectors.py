"""Text vectors of the answer model: TF-IDF word + character n-grams, and BM25 over content terms.

Split from `kbsearch.deflect._model` so the model module holds what is scored and this one how text
becomes vectors.  `Vectorizer` counts a few texts itself (`Vectorizer.transform`): for one question
sklearn's per-call checks cost more than the counting, and the result is the same to the bit.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from ..index import content_terms
from ..storage import save_npy, save_npz, save_sparse, write_json

_WORD = dict(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, lowercase=True,
             token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
_CHAR = dict(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, lowercase=True, dtype=np.float32)
# Stemmed content words, like the index: "undoing" finds "undo".
_TERMS = dict(analyzer=content_terms, dtype=np.float32)
# For an archive with no content word at all: every word, as written.
_PLAIN_TERMS = dict(lowercase=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
_BM25_K1, _BM25_B = 1.2, 0.75


#: Texts up to which `Vectorizer.transform` counts them itself (same result; sklearn's checks cost
#: ~1.6 ms a call, which matters for one question and not for thousands).
FAST_TEXTS = 64


#: Distinct words whose character n-gram columns `_Tfidf` keeps (about 10 MB); past it, it starts over.
WORD_CACHE = 50_000
#: Runs of white space, as sklearn's ``char_wb`` analyzer collapses them before splitting words.
_WHITE_SPACES = re.compile(r"\s\s+")


class _Tfidf:
    """The counting half of a fitted `TfidfVectorizer`: its analyzer, vocabulary and weights.

    A ``char_wb`` analyzer's n-grams never cross a word (each word is padded with a space and cut
    on its own), so the vocabulary columns of a word are looked up once and kept: the pages found
    for a question (1,500 characters each) are counted word by word, not n-gram by n-gram.
    """

    def __init__(self, v: TfidfVectorizer) -> None:
        self.analyze = v.build_analyzer()
        self.vocab: dict[str, int] = v.vocabulary_
        self.idf = np.asarray(v.idf_)
        self.n = len(self.vocab)
        self._preprocess = v.build_preprocessor() if v.analyzer == "char_wb" else None
        self._words: dict[str, tuple[int, ...]] = {}

    def _word_columns(self, word: str) -> tuple[int, ...]:
        cols = self._words.get(word)
        if cols is None:
            vocab = self.vocab
            # The analyzer on one (already lower-cased) word gives exactly that word's n-grams.
            cols = tuple(vocab[g] for g in self.analyze(word) if g in vocab)
            if len(self._words) >= WORD_CACHE:
                self._words = {}
            self._words[word] = cols
        return cols

    @staticmethod
    def usable(v: TfidfVectorizer) -> bool:
        """Whether ``v`` is configured as `_WORD` / `_CHAR` are, the only case `_transform_fast` does."""
        return (v.norm == "l2" and v.use_idf and v.sublinear_tf and not v.binary
                and np.dtype(v.dtype) == np.float32)

    def counts(self, text: str, offset: int, indices: list[int], values: list[int]) -> None:
        """Append the vocabulary columns of ``text`` (+ ``offset``) and their counts."""
        counts: dict[int, int]
        if self._preprocess is not None:  # char_wb: word by word (see the class)
            words = _WHITE_SPACES.sub(" ", self._preprocess(text)).split()
            counts = Counter(chain.from_iterable(map(self._word_columns, words)))
        else:
            vocab = self.vocab
            counts = {}
            for token in self.analyze(text):
                j = vocab.get(token)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
        indices.extend([j + offset for j in counts] if offset else counts)
        values.extend(counts.values())


def _normalize_segments(data: np.ndarray, bounds: np.ndarray) -> None:
    """L2-normalise each ``data[bounds[i]:bounds[i+1]]`` in place as `sklearn.preprocessing.normalize`
    does a CSR row: squares in float32 summed in float64, each value divided in float64."""
    lengths = np.diff(bounds)
    nonempty = lengths > 0
    if not nonempty.any():
        return
    sums = np.zeros(len(lengths), dtype=np.float64)
    sums[nonempty] = np.add.reduceat((data * data).astype(np.float64), bounds[:-1][nonempty])
    norms = np.sqrt(sums)
    norms[norms == 0.0] = 1.0
    data[:] = data / np.repeat(norms, lengths)


#: Dimensions of the sentence vectors kept (PCA) in the classifier's input: 128 of all-MiniLM-L6-v2's
#: 384 ranked CLINC150's questions as well as all of them and fit three times faster (tenth session).
SENTENCE_DIMS = 128
#: Mean length of a projected sentence vector beside the unit-length TF-IDF row.
SENTENCE_WEIGHT = 1.0


class SentenceProjection:
    """Sentence vectors projected on their first principal axes, scaled to mean length 1.

    Fitted on the phrasings the classifier learns from; stored with the model, since the classifier's
    weights mean something only in this projection.
    """

    def __init__(self, mean: np.ndarray, axes: np.ndarray, scale: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.axes = np.asarray(axes, dtype=np.float32)  # (dims, encoder dims)
        self.scale = float(scale)

    @classmethod
    def fit(cls, vectors: np.ndarray, dims: int = SENTENCE_DIMS) -> SentenceProjection:
        x = np.asarray(vectors, dtype=np.float64)
        mean = x.mean(axis=0)
        x = x - mean
        _vals, vecs = np.linalg.eigh(x.T @ x)  # ascending: the last columns are the main axes
        axes = vecs[:, ::-1][:, :max(1, min(dims, x.shape[1]))].T
        lengths = np.linalg.norm(x @ axes.T, axis=1)
        scale = float(lengths.mean()) if lengths.size and lengths.mean() > 0 else 1.0
        return cls(mean, axes, scale)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, dtype=np.float32) - self.mean) @ self.axes.T) * np.float32(1.0 / self.scale)

    def save(self, path: Path) -> None:
        save_npz(path, mean=self.mean, axes=self.axes, scale=np.float64(self.scale))

    @classmethod
    def load(cls, path: Path) -> SentenceProjection:
        with np.load(path) as z:
            return cls(z["mean"], z["axes"], float(z["scale"]))


class Vectorizer:
    """Word (1-2 gram) + character (2-4 gram, word-bounded) TF-IDF in one L2-normalised space.

    The classifier's rows also hold a dense part (`classifier_rows`, `classifier_scores`): each text's
    sentence vector (projected, `SentenceProjection`) when there is a sentence ``encoder``; without one
    the rows are the n-grams alone.  The similarity features stay TF-IDF alone.
    """

    def __init__(self, word: TfidfVectorizer, char: TfidfVectorizer,
                 encoder: Any = None, projection: SentenceProjection | None = None) -> None:
        self.word, self.char = word, char
        self.encoder = encoder if projection is not None else None
        self.projection = projection if encoder is not None else None
        self._fast: tuple[_Tfidf, _Tfidf, np.ndarray] | None = None
        # Sentence vectors encoded once for a whole fit (`remember`): the calibration's and the final
        # model's classifiers read the same phrasings, in this process and in a worker.
        self._known: dict[str, np.ndarray] = {}

    @staticmethod
    def encodes(encoder: Any, sentences: Sequence[str]) -> bool:
        """Whether `fit` gives the classifier sentence vectors: an encoder and two phrasings at least
        (a projection needs two points)."""
        return encoder is not None and len(sentences) >= 2

    @classmethod
    def fit(cls, texts: Sequence[str], encoder: Any = None, sentences: Sequence[str] = ()) -> Vectorizer:
        """Fit the TF-IDF vocabularies on ``texts``; with an ``encoder``, encode ``sentences`` (the
        phrasings the classifier will learn from) and fit the projection on them."""
        word = TfidfVectorizer(**_WORD).fit(texts)
        char = TfidfVectorizer(min_df=2 if len(texts) >= 200 else 1, **_CHAR).fit(texts)
        vec = cls(word, char)
        if cls.encodes(encoder, sentences):
            vec.encoder = encoder
            vec.remember(sentences)
            vec.projection = SentenceProjection.fit(vec.sentence_vectors(sentences))
        return vec

    def __getstate__(self) -> dict[str, Any]:
        return {"word": self.word, "char": self.char, "encoder": self.encoder, "projection": self.projection, "known": self._known}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["word"], state["char"],  # type: ignore[misc]
                      state.get("encoder"), state.get("projection"))
        self._known = state.get("known") or {}

    # -- the classifier's input ---------------------------------------------------------------------
    def _encode_unknown(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Sentence vectors of those of ``texts`` not remembered, each text encoded once."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._known))
        return dict(zip(todo, self.encoder.encode(todo))) if todo else {}

    def remember(self, texts: Sequence[str]) -> None:
        """Encode ``texts`` now (those not yet known) and keep their sentence vectors until `forget`."""
        if self.encoder is not None:
            self._known.update(self._encode_unknown(texts))

    def forget(self) -> None:
        """Drop the vectors `remember` kept (after fitting; answering encodes one question at a time)."""
        self._known = {}

    def sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """The encoder's unit vectors of ``texts``: remembered ones, the others encoded now."""
        known, fresh = self._known, self._encode_unknown(texts)
        return np.array([known[t] if t in known else fresh[t] for t in texts], dtype=np.float32).reshape(
            len(texts), -1)

    def dense(self, texts: Sequence[str]) -> np.ndarray | None:
        """The dense part of the texts' classifier rows (see the class); None when there is none."""
        if self.encoder is None:
            return None
        return self.projection(self.sentence_vectors(texts)) * np.float32(SENTENCE_WEIGHT)  # type: ignore[misc]

    def classifier_rows(self, X: sp.csr_matrix, texts: Sequence[str]) -> sp.csr_matrix:
        """``X`` (the texts' rows) with the dense part appended, L2-normalised: what the classifier fits on."""
        D = self.dense(texts)
        if D is None:
            return X
        return normalize(sp.hstack([X, sp.csr_matrix(D)], format="csr"), copy=False).astype(np.float32)

    def classifier_scores(self, X: sp.csr_matrix, texts: Sequence[str], coef: sp.csr_matrix | np.ndarray,
                          intercept: np.ndarray) -> np.ndarray:
        """Decision values of a classifier fitted on `classifier_rows`, without building those rows."""
        n = X.shape[1]
        cols, words_t, dense = self._classifier_weights(coef, n)
        s = np.asarray(X[:, cols] @ words_t)
        if dense is not None:
            D = self.dense(texts)
            if D is not None:
                s += D @ dense.T
                norm = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel() + (D * D).sum(axis=1))
                s /= np.where(norm > 0, norm, 1.0)[:, None]
        return s + intercept

    def _classifier_weights(self, coef: sp.csr_matrix | np.ndarray, n: int
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The classifier's n-gram columns with a weight, their weights (dense, transposed: columns ×
        classes, C-ordered, since scipy copies a Fortran-ordered operand to C order at every product:
        ~11 ms of an ask at 1M sections), and the weights of the dense part (None: n-grams alone); made
        once per classifier.  A question's row times a few thousand dense columns is far cheaper than
        times the whole vocabulary."""
        made: dict[int, tuple[Any, ...]] = self.__dict__.setdefault("_classifier_weights_made", {})
        cached = made.get(id(coef))
        if cached is None or cached[0] is not coef:
            if len(made) >= 8:  # calibration's split models share this vectorizer
                made.clear()
            words = coef[:, :n]
            if sp.issparse(words):
                words = words.tocsr()
                cols = np.unique(words.indices)
                weights = words[:, cols].toarray()
            else:
                cols = np.flatnonzero(np.any(words != 0, axis=0))
                weights = np.ascontiguousarray(words[:, cols])
            dense = None
            if coef.shape[1] > n:
                rest = coef[:, n:]
                dense = np.asarray(rest.toarray() if sp.issparse(rest) else rest)
            cached = made[id(coef)] = (coef, cols, np.ascontiguousarray(weights.T), dense)
        return cached[1], cached[2], cached[3]

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The rows of ``texts``; a few texts (a question, a page's parts) skip sklearn's call overhead."""
        if len(texts) <= FAST_TEXTS and self._fast_tables() is not None:
            return self._transform_fast(texts)
        return self.sklearn_transform(texts)

    def _fast_tables(self) -> tuple[_Tfidf, _Tfidf, np.ndarray] | None:
        """What `_transform_fast` reads (made on first use), or None for settings it does not do."""
        if self._fast is None and _Tfidf.usable(self.word) and _Tfidf.usable(self.char):
            word, char = _Tfidf(self.word), _Tfidf(self.char)
            self._fast = (word, char, np.concatenate([word.idf, char.idf]))
        return self._fast

    def _transform_fast(self, texts: Sequence[str]) -> sp.csr_matrix:
        """`sklearn_transform`'s arithmetic, bit for bit, without sklearn's per-call input checks and
        the copies of `hstack`, which cost ~1.6 ms a call: most of what vectorising one question costs."""
        word, char, idf = self._fast  # type: ignore[misc]
        indices: list[int] = []
        values: list[int] = []
        parts = [0]  # row i's word columns, then its char columns: two segments per row
        for text in texts:
            word.counts(text, 0, indices, values)
            parts.append(len(indices))
            char.counts(text, word.n, indices, values)
            parts.append(len(indices))
        seg = np.asarray(parts, dtype=np.int32)
        # One row per part, so that scipy puts each part's columns in order, as sklearn does.
        X = sp.csr_matrix((np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int32), seg),
                          shape=(2 * len(texts), word.n + char.n))
        X.sort_indices()
        cols, data = X.indices, X.data
        np.log(data, data)  # sublinear tf: 1 + log(count)
        data += 1.0
        data *= idf[cols]
        _normalize_segments(data, seg)  # each part on its own, as each vectorizer does
        _normalize_segments(data, seg[::2])  # then the joined row, as `normalize` after `hstack`
        return sp.csr_matrix((data, cols, seg[::2]), shape=(len(texts), word.n + char.n))

    def sklearn_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """`transform` through sklearn's own code (the reference the fast path is tested against)."""
        m = sp.hstack([self.word.transform(texts), self.char.transform(texts)], format="csr")
        return normalize(m, copy=False).astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.word.vocabulary_) + len(self.char.vocabulary_)


class TermIndex:
    """BM25 weights and term presence over documents (stemmed words, stop words removed).

    Keeps its IDF and average length so documents outside the model are weighed the same way.
    """

    def __init__(self, vocab: CountVectorizer, weights: sp.csr_matrix, idf: np.ndarray, avg_len: float,
                 plain: bool = False) -> None:
        self.vocab, self.idf, self.avg_len, self.plain = vocab, idf, avg_len, plain
        self.weights, self.presence = _with_presence(weights)

    @classmethod
    def fit(cls, texts: Sequence[str]) -> TermIndex:
        vocab = CountVectorizer(**_TERMS)
        plain = False
        try:
            counts = vocab.fit_transform(texts).tocsr()
        except ValueError:  # nothing but stop words / punctuation
            vocab, plain = CountVectorizer(**_PLAIN_TERMS), True
            counts = vocab.fit_transform([t + " x" for t in texts]).tocsr()
        n = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        avg = max(float(np.asarray(counts.sum(axis=1)).mean()) if n else 1.0, 1e-9)
        return cls(vocab, _bm25(counts, idf, avg), idf, avg, plain)

    def weigh_counts(self, counts: sp.csr_matrix) -> tuple[Rows, Rows]:
        """BM25 term weights and presence (0/1) of documents given as term counts."""
        return _with_presence(_bm25(counts, self.idf, self.avg_len))

    def query(self, texts: Sequence[str]) -> sp.csr_matrix:
        q = self.vocab.transform(texts).tocsr().astype(np.float32)
        q.data[:] = 1.0
        return q

    def match(self, q: sp.csr_matrix, weights: Rows | None = None,
              presence: Rows | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(BM25, share of query terms present) of every document for every query row."""
        weights = self.weights if weights is None else weights
        presence = self.presence if presence is None else presence
        nterms = np.asarray(q.sum(axis=1)).ravel()
        bm25 = weights.dot(q)
        coverage = presence.dot(q) / np.maximum(nterms, 1)[:, None]
        return bm25, coverage.astype(np.float32)

    def save(self, path: Path, name: str) -> None:
        # A loaded index's vectorizer has its vocabulary as a parameter until its first transform.
        vocabulary = getattr(self.vocab, "vocabulary_", None) or self.vocab.vocabulary
        write_json(path / f"{name}_vocab.json", {k: int(i) for k, i in vocabulary.items()}, ensure_ascii=False)
        save_sparse(path / f"{name}_bm25.npz", self.weights.rows())
        save_npy(path / f"{name}_idf.npy", self.idf)
        write_json(path / f"{name}_meta.json", {"avg_len": self.avg_len, "plain": self.plain})

    @classmethod
    def load(cls, path: Path, name: str) -> TermIndex:
        meta = json.loads((path / f"{name}_meta.json").read_text(encoding="utf-8"))
        plain = bool(meta.get("plain"))
        vocab = CountVectorizer(vocabulary=json.loads((path / f"{name}_vocab.json").read_text(encoding="utf-8")),
                                **(_PLAIN_TERMS if plain else _TERMS))
        return cls(vocab, sp.load_npz(path / f"{name}_bm25.npz").tocsr(), np.load(path / f"{name}_idf.npy"),
                   float(meta["avg_len"]), plain)


def _bm25(counts: sp.csr_matrix, idf: np.ndarray, avg_len: float) -> sp.csr_matrix:
    """BM25 term weights of documents given as term counts (rows)."""
    w = counts.tocsr().astype(np.float32)
    lengths = np.asarray(w.sum(axis=1)).ravel()
    norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * lengths / avg_len)
    w.data = w.data * (_BM25_K1 + 1) / (w.data + np.repeat(norm, np.diff(w.indptr))) * idf[w.indices]
    return w


def _with_presence(weights: sp.csr_matrix) -> tuple[Rows, Rows]:
    """``weights`` and the 0/1 presence of the same terms (the same sparsity), both as `Rows`."""
    presence = weights.copy()
    presence.data[:] = 1.0
    return Rows(weights), Rows(presence)


#: Questions from which `Rows.dot` multiplies by dense question rows instead of sparse ones.
BATCH_DOT_ROWS = 16


class Rows:
    """A rows × features matrix kept transposed (features × rows, CSR), transposed once when loaded.

    Scoring a question then touches only the postings of its own features: ``q @ T`` costs what the
    question's terms cost, instead of a pass (or a transpose) over the whole matrix per question.
    """

    def __init__(self, rows: sp.csr_matrix) -> None:
        self.n = rows.shape[0]
        self.T = rows.T.tocsr()

    def dot(self, q: sp.csr_matrix) -> np.ndarray:
        """``q @ rows.T`` as a dense float32 (questions × rows) array."""
        if self.n == 0 or q.shape[0] == 0:
            return np.zeros((q.shape[0], self.n), dtype=np.float32)
        if q.shape[0] < BATCH_DOT_ROWS:
            return np.asarray((q @ self.T).toarray(), dtype=np.float32)
        # Many questions together share most of their character n-grams with most rows, so a sparse
        # product builds a nearly dense result the slow way.  The postings of the questions' features
        # times their dense values sum the same products in the same order: the same floats, faster
        # (256 CLINC150 questions against its 15,150 phrasings: 0.23 -> 0.13 s).
        q = q.tocsr()
        cols = np.unique(q.indices)
        return np.ascontiguousarray((self.T[cols].T @ q[:, cols].toarray().T).T, dtype=np.float32)

    def rows(self) -> sp.csr_matrix:
        return self.T.T.tocsr()
