"""Re-ranking: a TF-IDF model fitted on the corpus, and the fusion of scores into one.

The model pairs a word (1-2 gram) and a character (3-5 gram, word-bounded) `TfidfVectorizer`.  It is
fitted on a bounded reservoir sample of the corpus when a generation is built, stored beside the
index as plain arrays (no pickles), and documents added between rebuilds are transformed with the
fitted vocabulary.  Rankers follow the small `Ranker` protocol, so another model can replace it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..config import RerankConfig
from ..documents import Document, ScoreParts
from ..index import Candidate
from ..storage import save_npy, write_json

if TYPE_CHECKING:
    import scipy.sparse as sp

log = logging.getLogger(__name__)

MODEL_DIR = "model"
#: Hashed feature spaces: fixed size, so memory is bounded and no term is out of vocabulary.
WORD_FEATURES = 2**20
CHAR_FEATURES = 2**19
_WORD = dict(analyzer="word", ngram_range=(1, 2), lowercase=True, token_pattern=r"(?u)\b\w+\b",
             n_features=WORD_FEATURES, alternate_sign=False, norm=None, dtype=np.float32)
_CHAR = dict(analyzer="char_wb", ngram_range=(3, 5), lowercase=True,
             n_features=CHAR_FEATURES, alternate_sign=False, norm=None, dtype=np.float32)
#: Share of a phrasing vector given to the character n-grams (the rest to words).
CHAR_WEIGHT = 0.5


def _hashing_vectorizer(**params: Any) -> Any:
    """scikit-learn is imported on first use: opening, crawling into and searching an unfitted index
    (and ``import kbsearch``) do not pay for it (~80 MB, ~1.5 s)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(**params)


def _normalize(matrix: Any) -> Any:
    from sklearn.preprocessing import normalize

    return normalize(matrix, copy=False)


def doc_text(doc: Document, body_chars: int) -> str:
    """The text that represents a document to the re-ranker: its questions, headings and body start."""
    parts = [doc.title, *doc.questions, *doc.headings, doc.text[:body_chars]]
    return "\n".join(p for p in parts if p)


def phrasings(doc: Document) -> list[str]:
    """The ways this document names its question: title, alternate phrasings, last heading."""
    out = [doc.title, *doc.questions]
    if doc.headings and doc.headings[-1] != doc.title:
        out.append(doc.headings[-1])
    return [p for p in out if p and p.strip()]


class Reservoir:
    """A uniform random sample of at most ``size`` items from a stream of unknown length."""

    def __init__(self, size: int, seed: int = 1234) -> None:
        self.size = size
        self.seen = 0
        self.items: list = []
        self._rng = random.Random(seed)

    def offer(self, item: object) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            j = self._rng.randrange(self.seen)
            if j < self.size:
                self.items[j] = item


#: Texts hashed at a time when fitting: the document frequencies are summed chunk by chunk, so
#: the n-gram lists and count matrices of the whole sample never exist at once.
FIT_CHUNK = 1000


def _idf(vectorizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Smoothed IDF (as scikit-learn's `TfidfTransformer`): log((1 + n) / (1 + df)) + 1."""
    df = np.zeros(vectorizer.n_features, dtype=np.int64)
    for start in range(0, len(texts), FIT_CHUNK):
        counts = vectorizer.transform(texts[start:start + FIT_CHUNK])  # one entry per (text, feature)
        df += np.bincount(counts.indices, minlength=vectorizer.n_features)
        del counts
    return (np.log((1.0 + len(texts)) / (1.0 + df.astype(np.float64))) + 1.0).astype(np.float32)


class TfidfModel:
    """Word (1-2 gram) and character (3-5 gram) TF-IDF in hashed spaces with corpus-fitted IDF.

    Documents are compared by word vectors; question phrasings by word + character vectors, which
    also match misspellings and inflections.  All vectors are L2-normalised: cosine = dot product.
    """

    def __init__(self, word_idf: np.ndarray | None, char_idf: np.ndarray | None, fitted_on: int) -> None:
        self.word_idf = word_idf
        self.char_idf = char_idf
        self.fitted_on = fitted_on
        self._vectorizers: tuple[Any, Any] | None = None

    @property
    def _word(self) -> Any:
        return self._hashers()[0]

    @property
    def _char(self) -> Any:
        return self._hashers()[1]

    def _hashers(self) -> tuple[Any, Any]:
        if self._vectorizers is None:
            self._vectorizers = (_hashing_vectorizer(**_WORD), _hashing_vectorizer(**_CHAR))
        return self._vectorizers

    @property
    def fitted(self) -> bool:
        return self.word_idf is not None and self.char_idf is not None

    @classmethod
    def empty(cls) -> TfidfModel:
        return cls(None, None, 0)

    @classmethod
    def fit(cls, sample: Sequence[tuple[str, Sequence[str]]]) -> TfidfModel:
        """Fit IDF weights on ``(document text, phrasings)`` pairs; empty input gives an unfitted model."""
        docs = [d for d, _p in sample if d and d.strip()]
        phr = [p for _d, ps in sample for p in ps if p and p.strip()]
        if not docs:
            return cls.empty()
        word_idf = _idf(_hashing_vectorizer(**_WORD), docs)
        char_idf = _idf(_hashing_vectorizer(**_CHAR), phr or docs)
        return cls(word_idf, char_idf, len(docs))

    def _weigh(self, counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
        counts = counts.tocsr()
        np.log1p(counts.data, out=counts.data)  # sublinear tf
        counts.data *= idf[counts.indices]
        return _normalize(counts)

    def word_vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        if not self.fitted:
            raise RuntimeError("model is not fitted")
        return self._weigh(self._word.transform(texts), self.word_idf)

    def phrase_vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Combined word + character vectors (for questions and their phrasings)."""
        w = self.word_vectors(texts)
        import scipy.sparse as sp

        c = self._weigh(self._char.transform(texts), self.char_idf)
        combined = sp.hstack([w * math.sqrt(1 - CHAR_WEIGHT), c * math.sqrt(CHAR_WEIGHT)], format="csr")
        return _normalize(combined)

    def save(self, gen_dir: Path) -> None:
        """Store the IDF arrays (numpy, no pickle) and a small JSON description."""
        path = gen_dir / MODEL_DIR
        path.mkdir(parents=True, exist_ok=True)
        if self.fitted:
            save_npy(path / "word_idf.npy", self.word_idf)
            save_npy(path / "char_idf.npy", self.char_idf)
        meta = {"fitted_on": self.fitted_on, "fitted": self.fitted, "char_weight": CHAR_WEIGHT,
                "word_features": WORD_FEATURES, "char_features": CHAR_FEATURES}
        write_json(path / "tfidf.json", meta)

    @classmethod
    def load(cls, gen_dir: Path) -> TfidfModel:
        path = gen_dir / MODEL_DIR
        try:
            meta = json.loads((path / "tfidf.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls.empty()
        if not meta.get("fitted"):
            return cls.empty()
        return cls(np.load(path / "word_idf.npy"), np.load(path / "char_idf.npy"), int(meta.get("fitted_on", 0)))


#: At most this many phrasings of one document are compared with a question.
MAX_PHRASINGS = 32


@dataclass(frozen=True)
class _DocVectors:
    """A document's word vector (indices, data) and its phrasings' vectors (indptr, indices, data)."""

    doc: tuple[np.ndarray, np.ndarray]
    phrasings: tuple[np.ndarray, np.ndarray, np.ndarray] | None


class VectorCache:
    """LRU cache of per-document vectors, keyed by content hash so an update invalidates it."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._data: OrderedDict[str, _DocVectors] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> _DocVectors | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: _DocVectors) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


@runtime_checkable
class Ranker(Protocol):
    """Orders BM25F candidates for a question and explains each score."""

    name: str

    def rank(self, question: str, candidates: Sequence[Candidate]) -> list[tuple[Candidate, float, ScoreParts]]:
        """Return ``(candidate, final score, parts)`` best first."""
        ...


def signal_bonus(doc: Document, cfg: RerankConfig, now: datetime | None = None) -> tuple[float, dict[str, float]]:
    """Bonus/penalty from document signals: verified/accepted answers, freshness, outdated."""
    details: dict[str, float] = {}
    if doc.verified:
        details["verified"] = cfg.bonus_verified
    if doc.accepted:
        details["accepted"] = cfg.bonus_accepted
    if doc.outdated:
        details["outdated"] = -cfg.penalty_outdated
    if doc.updated is not None and cfg.bonus_fresh > 0 and cfg.half_life_days > 0:
        now = now or datetime.now(timezone.utc)
        age_days = max((now - doc.updated).total_seconds() / 86400.0, 0.0)
        details["fresh"] = cfg.bonus_fresh * 0.5 ** (age_days / cfg.half_life_days)
    return sum(details.values()), details


class Bm25Ranker:
    """BM25F order with document signals; the baseline every other ranker is compared with."""

    name = "bm25"

    def __init__(self, cfg: RerankConfig) -> None:
        self.cfg = cfg

    def rank(self, question: str, candidates: Sequence[Candidate]) -> list[tuple[Candidate, float, ScoreParts]]:
        top = max((c.bm25 for c in candidates), default=0.0) or 1.0
        out = []
        for c in candidates:
            bonus, details = signal_bonus(c.document, self.cfg)
            norm = c.bm25 / top
            out.append((c, norm + bonus, ScoreParts(bm25=c.bm25, bm25_norm=norm, signals=bonus, details=details)))
        out.sort(key=lambda item: -item[1])
        return out


class TfidfRanker:
    """BM25F candidates re-scored by TF-IDF cosine against the document and its question phrasings."""

    name = "tfidf"

    def __init__(self, model: TfidfModel, cfg: RerankConfig, cache: VectorCache | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.cache = cache or VectorCache()
        self._fallback = Bm25Ranker(cfg)

    def _vectors(self, candidates: Sequence[Candidate]) -> list[_DocVectors]:
        """Each candidate's vectors; cache misses are transformed together in one batch."""
        out: list[_DocVectors | None] = [self.cache.get(c.content_hash) for c in candidates]
        missing = [i for i, got in enumerate(out) if got is None]
        if missing:
            docs = [doc_text(candidates[i].document, self.cfg.doc_chars) for i in missing]
            phr: list[str] = []
            spans: list[tuple[int, int]] = []
            for i in missing:
                ps = phrasings(candidates[i].document)[:MAX_PHRASINGS]
                spans.append((len(phr), len(phr) + len(ps)))
                phr.extend(ps)
            dmat = self.model.word_vectors(docs)
            pmat = self.model.phrase_vectors(phr) if phr else None
            for row, (i, (start, end)) in enumerate(zip(missing, spans)):
                a, b = dmat.indptr[row], dmat.indptr[row + 1]
                doc_vec = (dmat.indices[a:b].copy(), dmat.data[a:b].copy())
                phr_vecs = None
                if pmat is not None and end > start:
                    pa, pb = pmat.indptr[start], pmat.indptr[end]
                    phr_vecs = (pmat.indptr[start:end + 1] - pa, pmat.indices[pa:pb].copy(), pmat.data[pa:pb].copy())
                value = _DocVectors(doc_vec, phr_vecs)
                self.cache.put(candidates[i].content_hash, value)
                out[i] = value
        return out  # type: ignore[return-value]

    def similarities(self, question: str, candidates: Sequence[Candidate]) -> list[tuple[float, float]]:
        """(cosine to the document text, best cosine to one of its phrasings) per candidate."""
        qw = self.model.word_vectors([question]).toarray().ravel()
        qp = self.model.phrase_vectors([question]).toarray().ravel()
        out = []
        for vec in self._vectors(candidates):
            indices, data = vec.doc
            cos_doc = float(data @ qw[indices]) if len(indices) else 0.0
            cos_q = 0.0
            if vec.phrasings is not None:
                indptr, p_indices, p_data = vec.phrasings
                products = np.append(p_data * qp[p_indices], np.float32(0.0))
                sums = np.add.reduceat(products, indptr[:-1])
                sums[indptr[:-1] == indptr[1:]] = 0.0  # reduceat gives a neighbour's value for empty rows
                cos_q = float(sums.max())
            out.append((cos_doc, cos_q))
        return out

    def rank(self, question: str, candidates: Sequence[Candidate]) -> list[tuple[Candidate, float, ScoreParts]]:
        if not candidates:
            return []
        if not self.model.fitted:
            return self._fallback.rank(question, candidates)
        top = max(c.bm25 for c in candidates) or 1.0
        cfg = self.cfg
        out = []
        for c, (cos_doc, cos_q) in zip(candidates, self.similarities(question, candidates)):
            sim = max(cos_doc, cos_q)
            bonus, details = signal_bonus(c.document, cfg)
            norm = c.bm25 / top
            final = cfg.weight_tfidf * sim + cfg.weight_bm25 * norm + bonus
            parts = ScoreParts(bm25=c.bm25, bm25_norm=norm, tfidf=cos_doc, question_match=cos_q,
                               signals=bonus, details=details)
            out.append((c, final, parts))
        out.sort(key=lambda item: -item[1])
        return out


def make_ranker(cfg: RerankConfig, model: TfidfModel, cache: VectorCache | None = None) -> Ranker:
    """The ranker named by ``cfg.ranker``."""
    if cfg.ranker == "bm25":
        return Bm25Ranker(cfg)
    if cfg.ranker == "tfidf":
        return TfidfRanker(model, cfg, cache)
    from ..errors import ConfigError

    raise ConfigError(f"rerank.ranker: unknown ranker {cfg.ranker!r} (choose 'tfidf' or 'bm25')")


def sample_item(doc: Document, body_chars: int) -> tuple[str, list[str]]:
    """What the model is fitted on for one document."""
    return doc_text(doc, body_chars), phrasings(doc)


def fit_on(documents: Iterable[Document], sample: int, body_chars: int) -> TfidfModel:
    """Fit a model on a reservoir sample of a document stream."""
    res = Reservoir(sample)
    for doc in documents:
        res.offer(sample_item(doc, body_chars))
    return TfidfModel.fit(res.items)
