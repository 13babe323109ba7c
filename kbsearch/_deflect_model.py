"""The answer model behind deflection: every covered document scored against a question at once.

Fitted when a generation is built (see `kbsearch.deflect.fit_deflection`), stored beside the index as
JSON vocabularies and numpy / scipy ``.npz`` arrays (no pickles).  It holds, for each covered document:
its phrasings (title, alternate questions, last heading) as TF-IDF word + character n-gram vectors, a
document vector, BM25 term weights and, where the archive has enough phrasings per thread, a linear
classifier (LinearSVC) over the phrasings.  All scores for a batch of questions come from a few sparse
matrix products, so deciding thousands of questions takes seconds.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from .documents import Document

log = logging.getLogger(__name__)

MODEL_DIR = "deflect"
_WORD = dict(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, lowercase=True,
             token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
_CHAR = dict(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, lowercase=True, dtype=np.float32)
_TERMS = dict(lowercase=True, token_pattern=r"(?u)\b\w\w+\b", stop_words=sorted(ENGLISH_STOP_WORDS),
              dtype=np.float32)
_BM25_K1, _BM25_B = 1.2, 0.75
_TOKEN = re.compile(r"(?u)\b\w+\b")

#: Names of the per-candidate features, in the order of the feature matrix.
FEATURES: tuple[str, ...] = (
    "classifier", "classifier_margin", "has_classifier", "phrasing_match", "phrasing_margin",
    "tfidf", "tfidf_margin", "bm25_norm", "bm25_log", "coverage", "verified", "accepted",
    "query_terms_log",
)


def phrasings_of(doc: Document) -> list[str]:
    """The ways a document names its question: title, alternate phrasings, last heading."""
    out = [doc.title, *doc.questions]
    if doc.headings and doc.headings[-1] != doc.title:
        out.append(doc.headings[-1])
    seen: dict[str, None] = {}
    for p in out:
        if p and p.strip():
            seen.setdefault(" ".join(p.split()), None)
    return list(seen)


def doc_body(doc: Document, chars: int) -> str:
    """Text that represents the document as a whole: its phrasings and the start of its body."""
    return "\n".join([*phrasings_of(doc), doc.text[:chars]])


@dataclass
class DocInfo:
    """What the decision needs to know about a covered document without opening the index."""

    id: str
    title: str
    url: str
    kind: str
    group: str | None
    allowed_groups: tuple[str, ...]
    outdated: bool
    verified: bool
    accepted: bool

    @classmethod
    def of(cls, doc: Document) -> DocInfo:
        return cls(doc.id, doc.title, doc.url, doc.kind, doc.group, tuple(doc.allowed_groups),
                   doc.outdated, doc.verified, doc.accepted)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "url": self.url, "kind": self.kind, "group": self.group,
                "allowed_groups": list(self.allowed_groups), "outdated": self.outdated,
                "verified": self.verified, "accepted": self.accepted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocInfo:
        return cls(d["id"], d["title"], d["url"], d["kind"], d["group"], tuple(d["allowed_groups"]),
                   d["outdated"], d["verified"], d["accepted"])


class Vectorizer:
    """Word (1-2 gram) + character (2-4 gram, word-bounded) TF-IDF in one L2-normalised space."""

    def __init__(self, word: TfidfVectorizer, char: TfidfVectorizer) -> None:
        self.word, self.char = word, char

    @classmethod
    def fit(cls, texts: Sequence[str]) -> Vectorizer:
        word = TfidfVectorizer(**_WORD).fit(texts)
        char = TfidfVectorizer(min_df=2 if len(texts) >= 200 else 1, **_CHAR).fit(texts)
        return cls(word, char)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        m = sp.hstack([self.word.transform(texts), self.char.transform(texts)], format="csr")
        return normalize(m, copy=False).astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.word.vocabulary_) + len(self.char.vocabulary_)


class TermIndex:
    """BM25 weights and term presence over the covered documents (unigrams, stop words removed)."""

    def __init__(self, vocab: CountVectorizer, weights: sp.csr_matrix, presence: sp.csr_matrix) -> None:
        self.vocab, self.weights, self.presence = vocab, weights, presence

    @classmethod
    def fit(cls, texts: Sequence[str]) -> TermIndex:
        vocab = CountVectorizer(**_TERMS)
        try:
            counts = vocab.fit_transform(texts).tocsr().astype(np.float32)
        except ValueError:  # nothing but stop words / punctuation
            vocab = CountVectorizer(lowercase=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
            counts = vocab.fit_transform([t + " x" for t in texts]).tocsr().astype(np.float32)
        return cls(vocab, *cls._weigh(counts))

    @staticmethod
    def _weigh(counts: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        n = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        avg = float(lengths.mean()) if n else 1.0
        norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * lengths / max(avg, 1e-9))
        w = counts.copy()
        row_norm = np.repeat(norm, np.diff(w.indptr))
        w.data = w.data * (_BM25_K1 + 1) / (w.data + row_norm) * idf[w.indices]
        presence = counts.copy()
        presence.data[:] = 1.0
        return w.tocsr(), presence.tocsr()

    def query(self, texts: Sequence[str]) -> sp.csr_matrix:
        q = self.vocab.transform(texts).tocsr().astype(np.float32)
        q.data[:] = 1.0
        return q


class AnswerModel:
    """Phrasing, document, BM25 and classifier scores for every covered document."""

    def __init__(self, docs: list[DocInfo], vec: Vectorizer, phrasings: sp.csr_matrix, owners: np.ndarray,
                 bodies: sp.csr_matrix, terms: TermIndex, clf_coef: np.ndarray | None,
                 clf_intercept: np.ndarray | None, clf_classes: np.ndarray | None, covers_all: bool) -> None:
        self.docs = docs
        self.vec = vec
        self.phrasings = phrasings          # rows: phrasings, L2-normalised
        self.owners = owners                # doc index of each phrasing row (sorted ascending)
        self.bodies = bodies                # rows: documents
        self.terms = terms
        self.clf_coef = clf_coef            # (classes, features) float32
        self.clf_intercept = clf_intercept
        self.clf_classes = clf_classes      # doc index of each classifier class
        self.covers_all = covers_all        # every document of the generation is covered
        self.index = {d.id: i for i, d in enumerate(docs)}
        self._starts = np.searchsorted(owners, np.arange(len(docs))) if len(owners) else np.zeros(0, int)
        self._has_phr = np.bincount(owners, minlength=len(docs)) > 0 if len(owners) else np.zeros(len(docs), bool)
        self._clf_mask = np.zeros(len(docs), dtype=bool)
        if clf_classes is not None:
            self._clf_mask[clf_classes] = True

    def __len__(self) -> int:
        return len(self.docs)

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, documents: Sequence[Document], *, body_chars: int, min_phrasings: int,
            max_classes: int, covers_all: bool, vec: Vectorizer | None = None,
            classifier: bool = True, C: float = 1.0, max_per_class: int = 0) -> AnswerModel | None:
        """Fit on ``documents``; None when there is nothing to model."""
        docs = [d for d in documents if phrasings_of(d) or d.text.strip()]
        if not docs:
            return None
        phr_lists = [phrasings_of(d) for d in docs]
        phr_texts = [p for ps in phr_lists for p in ps]
        owners = np.array([i for i, ps in enumerate(phr_lists) for _ in ps], dtype=np.int32)
        bodies_text = [doc_body(d, body_chars) for d in docs]
        if vec is None:
            try:
                vec = Vectorizer.fit(phr_texts + bodies_text)
            except ValueError:
                log.warning("deflection: no usable text to fit a model on")
                return None
        P = vec.transform(phr_texts) if phr_texts else sp.csr_matrix((0, vec.size), dtype=np.float32)
        B = vec.transform(bodies_text)
        terms = TermIndex.fit([d.title + "\n" + "\n".join(d.questions) + "\n" + d.text[: body_chars * 4]
                               for d in docs])
        coef = intercept = classes = None
        if classifier:
            coef, intercept, classes = fit_classifier(P, owners, len(docs), min_phrasings, max_classes, C,
                                                      max_per_class)
        return cls([DocInfo.of(d) for d in docs], vec, P, owners, B, terms, coef, intercept, classes, covers_all)

    # -- scoring ---------------------------------------------------------------------------------
    def scores(self, questions: Sequence[str], exclude_rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Dense (questions × documents) score matrices; ``exclude_rows`` masks phrasing rows per question.

        ``exclude_rows`` (same length as ``questions``) names one phrasing row to ignore per question
        (-1: none); calibration uses it so a held-out phrasing does not find itself.
        """
        n, m = len(questions), len(self.docs)
        Q = self.vec.transform(questions)
        out: dict[str, np.ndarray] = {}
        if self.phrasings.shape[0]:
            sims = (Q @ self.phrasings.T).toarray()
            if exclude_rows is not None:
                rows = np.nonzero(exclude_rows >= 0)[0]
                sims[rows, exclude_rows[rows]] = 0.0
            phr = np.zeros((n, m), dtype=np.float32)
            has = np.nonzero(self._has_phr)[0]
            phr[:, has] = np.maximum.reduceat(sims, self._starts[has], axis=1)
        else:
            phr = np.zeros((n, m), dtype=np.float32)
        out["phrasing_match"] = phr
        out["tfidf"] = (Q @ self.bodies.T).toarray().astype(np.float32)
        qt = self.terms.query(questions)
        out["bm25"] = (qt @ self.terms.weights.T).toarray().astype(np.float32)
        nterms = np.asarray(qt.sum(axis=1)).ravel().astype(np.float32)
        out["coverage"] = ((qt @ self.terms.presence.T).toarray() / np.maximum(nterms, 1)[:, None]).astype(np.float32)
        out["nterms"] = nterms
        clf = np.zeros((n, m), dtype=np.float32)
        if self.clf_coef is not None:
            s = np.asarray(Q @ self.clf_coef.T) + self.clf_intercept
            clf[:, self.clf_classes] = s
            clf[:, ~self._clf_mask] = -1.0
        out["classifier"] = clf
        return out

    def features(self, scores: dict[str, np.ndarray], row: int, cands: np.ndarray) -> np.ndarray:
        """The feature matrix (candidates × `FEATURES`) of question ``row``."""
        def margin(name: str) -> np.ndarray:
            s = scores[name][row]
            order = np.argsort(-s)
            best, second = s[order[0]], (s[order[1]] if len(order) > 1 else 0.0)
            other_best = np.where(cands == order[0], second, best)
            return s[cands] - other_best
        bm = scores["bm25"][row]
        top = float(bm.max()) if bm.size else 0.0
        clf = scores["classifier"][row]
        feats = np.zeros((len(cands), len(FEATURES)), dtype=np.float64)
        feats[:, 0] = clf[cands]
        feats[:, 1] = margin("classifier") if self.clf_coef is not None else 0.0
        feats[:, 2] = self._clf_mask[cands]
        feats[:, 3] = scores["phrasing_match"][row][cands]
        feats[:, 4] = margin("phrasing_match")
        feats[:, 5] = scores["tfidf"][row][cands]
        feats[:, 6] = margin("tfidf")
        feats[:, 7] = bm[cands] / top if top > 0 else 0.0
        feats[:, 8] = np.log1p(bm[cands])
        feats[:, 9] = scores["coverage"][row][cands]
        feats[:, 10] = [self.docs[c].verified for c in cands]
        feats[:, 11] = [self.docs[c].accepted for c in cands]
        feats[:, 12] = math.log1p(float(scores["nterms"][row]))
        return feats

    def extra_features(self, question: str, docs: Sequence[Document], row: dict[str, np.ndarray]) -> np.ndarray:
        """`FEATURES` of documents outside the model (e.g. added since the last rebuild) for one question.

        ``row`` holds the question's scores over the covered documents (one vector per signal), so the
        margins compare with the best covered document, as for covered candidates.
        """
        q = self.vec.transform([question])
        phr_lists = [phrasings_of(d) or [d.title or " "] for d in docs]
        flat = [p for ps in phr_lists for p in ps]
        sims = (self.vec.transform(flat) @ q.T).toarray().ravel()
        bounds = np.cumsum([0] + [len(ps) for ps in phr_lists])
        phr = np.array([sims[bounds[i]:bounds[i + 1]].max() for i in range(len(docs))])
        tfidf = (self.vec.transform([doc_body(d, 1500) for d in docs]) @ q.T).toarray().ravel()
        qt = self.terms.query([question])
        counts = self.terms.vocab.transform([d.title + "\n" + "\n".join(d.questions) + "\n" + d.text[:6000]
                                             for d in docs]).tocsr().astype(np.float32)
        n = self.terms.presence.shape[0]
        df = np.asarray(self.terms.presence.sum(axis=0)).ravel()
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        avg = float(self.terms.presence.sum() / max(n, 1)) or 1.0
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        w = counts.copy()
        norm = np.repeat(_BM25_K1 * (1 - _BM25_B + _BM25_B * lengths / avg), np.diff(w.indptr))
        w.data = w.data * (_BM25_K1 + 1) / (w.data + norm) * idf[w.indices]
        bm25 = (qt @ w.T).toarray().ravel()
        present = counts.copy()
        present.data[:] = 1.0
        nterms = float(qt.sum())
        coverage = (qt @ present.T).toarray().ravel() / max(nterms, 1.0)
        top_bm25 = max(float(row["bm25"].max()) if row["bm25"].size else 0.0, float(bm25.max()))
        feats = np.zeros((len(docs), len(FEATURES)))
        feats[:, 0] = -1.0
        feats[:, 3] = phr
        feats[:, 4] = phr - (float(row["phrasing_match"].max()) if row["phrasing_match"].size else 0.0)
        feats[:, 5] = tfidf
        feats[:, 6] = tfidf - (float(row["tfidf"].max()) if row["tfidf"].size else 0.0)
        feats[:, 7] = bm25 / top_bm25 if top_bm25 > 0 else 0.0
        feats[:, 8] = np.log1p(bm25)
        feats[:, 9] = coverage
        feats[:, 10] = [d.verified for d in docs]
        feats[:, 11] = [d.accepted for d in docs]
        feats[:, 12] = math.log1p(float(row["nterms"]))
        return feats

    def candidates(self, scores: dict[str, np.ndarray], row: int, per_signal: int,
                   allowed: np.ndarray | None = None) -> np.ndarray:
        """Union of the top ``per_signal`` documents of each signal (restricted to ``allowed``)."""
        picks: list[np.ndarray] = []
        for name in ("classifier", "phrasing_match", "tfidf", "bm25"):
            s = scores[name][row]
            if allowed is not None:
                s = np.where(allowed, s, -np.inf)
            k = min(per_signal, len(s))
            idx = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
            picks.append(idx[np.isfinite(s[idx])])
        return np.unique(np.concatenate(picks)) if picks else np.zeros(0, dtype=int)

    # -- storage (no pickles) ------------------------------------------------------------------------
    def save(self, gen_dir: Path) -> None:
        path = gen_dir / MODEL_DIR
        path.mkdir(parents=True, exist_ok=True)
        for name, v in (("word", self.vec.word), ("char", self.vec.char)):
            (path / f"{name}_vocab.json").write_text(json.dumps({k: int(i) for k, i in v.vocabulary_.items()},
                                                                ensure_ascii=False), encoding="utf-8")
            np.save(path / f"{name}_idf.npy", v.idf_.astype(np.float64))
        (path / "terms_vocab.json").write_text(json.dumps({k: int(i) for k, i in self.terms.vocab.vocabulary_.items()},
                                                          ensure_ascii=False), encoding="utf-8")
        for name, m in (("phrasings", self.phrasings), ("bodies", self.bodies),
                        ("bm25", self.terms.weights), ("presence", self.terms.presence)):
            sp.save_npz(path / f"{name}.npz", m.tocsr(), compressed=False)
        np.save(path / "owners.npy", self.owners)
        if self.clf_coef is not None:
            np.save(path / "clf_coef.npy", self.clf_coef.astype(np.float32))
            np.save(path / "clf_intercept.npy", self.clf_intercept.astype(np.float32))
            np.save(path / "clf_classes.npy", self.clf_classes.astype(np.int32))
        meta = {"docs": [d.to_dict() for d in self.docs], "covers_all": self.covers_all,
                "classifier": self.clf_coef is not None}
        (path / "model.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, gen_dir: Path) -> AnswerModel | None:
        path = gen_dir / MODEL_DIR
        try:
            meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        vecs = []
        for name, params in (("word", _WORD), ("char", _CHAR)):
            v = TfidfVectorizer(vocabulary=json.loads((path / f"{name}_vocab.json").read_text(encoding="utf-8")),
                                **params)
            v.idf_ = np.load(path / f"{name}_idf.npy")
            vecs.append(v)
        tv = CountVectorizer(vocabulary=json.loads((path / "terms_vocab.json").read_text(encoding="utf-8")),
                             **_TERMS)
        terms = TermIndex(tv, sp.load_npz(path / "bm25.npz").tocsr(), sp.load_npz(path / "presence.npz").tocsr())
        coef = intercept = classes = None
        if meta.get("classifier"):
            coef = np.load(path / "clf_coef.npy")
            intercept = np.load(path / "clf_intercept.npy")
            classes = np.load(path / "clf_classes.npy")
        return cls([DocInfo.from_dict(d) for d in meta["docs"]], Vectorizer(*vecs),
                   sp.load_npz(path / "phrasings.npz").tocsr(), np.load(path / "owners.npy"),
                   sp.load_npz(path / "bodies.npz").tocsr(), terms, coef, intercept, classes,
                   bool(meta.get("covers_all")))


def fit_classifier(P: sp.csr_matrix, owners: np.ndarray, n_docs: int, min_phrasings: int, max_classes: int,
                   C: float = 1.0, max_per_class: int = 0) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """A one-vs-rest linear SVM over the phrasings of documents that have at least ``min_phrasings``.

    ``max_per_class`` > 0 keeps only the first that many phrasings of each document (faster fits).
    """
    from sklearn.svm import LinearSVC

    counts = np.bincount(owners, minlength=n_docs) if len(owners) else np.zeros(n_docs, int)
    eligible = np.nonzero(counts >= max(min_phrasings, 2))[0]
    if len(eligible) < 2:
        return None, None, None
    if len(eligible) > max_classes:
        eligible = eligible[np.argsort(-counts[eligible], kind="stable")[:max_classes]]
        eligible.sort()
    rows = np.nonzero(np.isin(owners, eligible))[0]
    if max_per_class > 0:
        rank = np.arange(len(owners)) - np.searchsorted(owners, owners)  # position within its document
        rows = rows[rank[rows] < max_per_class]
    y = owners[rows]
    svc = LinearSVC(C=C, tol=0.1, max_iter=200, dual=True, random_state=0)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svc.fit(P[rows], y)
    coef = svc.coef_.astype(np.float32)
    intercept = svc.intercept_.astype(np.float32)
    classes = svc.classes_.astype(np.int32)
    if len(classes) == 2:  # binary LinearSVC has one row; make it one-vs-rest shaped
        coef = np.vstack([-coef[0], coef[0]])
        intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32)
    return coef, intercept, classes


def tokens(text: str) -> list[str]:
    """Word tokens of ``text`` (for pseudo-queries)."""
    return _TOKEN.findall(text)
