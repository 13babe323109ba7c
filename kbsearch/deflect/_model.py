"""The answer model behind deflection: every covered document scored against a question at once.

Fitted when a generation is built (see `kbsearch.deflect.fit_deflection`), stored beside the index as
JSON vocabularies and numpy / scipy ``.npz`` arrays (no pickles).  It holds, for each covered document:
its phrasings (title, alternate questions, last heading) as TF-IDF word + character n-gram vectors, a
document vector, BM25 term weights and, where the archive has enough phrasings per thread, a linear
classifier (LinearSVC) over the phrasings; for the documents without a classifier, sentence vectors
of their phrasings when the sentence encoder is installed (`kbsearch.search._encoder`).  All scores for a
batch of questions come from a few sparse matrix products, so deciding thousands of questions takes
seconds; one question is counted into its TF-IDF rows without sklearn's per-call overhead
(`Vectorizer.transform`), so it takes milliseconds.  How text becomes those vectors is
`kbsearch.deflect._vectors`; how the model is stored, `_model_files`.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._classifier import fit_classifier
from ._features import FEATURES, DocInfo, doc_body, phrasings_of, terms_text
from ._model_files import MODEL_DIR, read_model, write_model
from ._vectors import Rows, TermIndex, Vectorizer
from ..documents import Document

log = logging.getLogger(__name__)

#: Documents outside the model whose vectors are kept between questions (see `_extra_vectors`).
EXTRA_CACHE_DOCS = 4096


class AnswerModel:
    """Phrasing, document, BM25 and classifier scores for every covered document."""

    def __init__(self, docs: list[DocInfo], vec: Vectorizer, phrasings: sp.csr_matrix, owners: np.ndarray,
                 bodies: sp.csr_matrix, terms: TermIndex, clf_coef: sp.csr_matrix | np.ndarray | None,
                 clf_intercept: np.ndarray | None, clf_classes: np.ndarray | None, covers_all: bool) -> None:
        self.docs = docs
        self.vec = vec
        self.phrasings = Rows(phrasings)    # rows: phrasings, L2-normalised
        self.owners = owners                # doc index of each phrasing row (sorted ascending)
        self.bodies = Rows(bodies)          # rows: documents
        self.terms = terms                  # BM25 over phrasings + body start
        self.clf_coef = clf_coef            # (classes, features) float32, sparse (dense if stored so)
        self.clf_intercept = clf_intercept
        self.clf_classes = clf_classes      # doc index of each classifier class
        self.covers_all = covers_all        # every document of the generation is covered
        self.index = {d.id: i for i, d in enumerate(docs)}
        self._starts = np.searchsorted(owners, np.arange(len(docs))) if len(owners) else np.zeros(0, int)
        self._has_phr = np.bincount(owners, minlength=len(docs)) > 0 if len(owners) else np.zeros(len(docs), bool)
        self._clf_mask = np.zeros(len(docs), dtype=bool)
        if clf_classes is not None:
            self._clf_mask[clf_classes] = True
        self._extra_cache: OrderedDict[tuple[str, str, int], tuple[sp.csr_matrix, ...]] = OrderedDict()
        self._extra_lock = threading.Lock()
        self._verified = np.array([d.verified for d in docs], dtype=np.float64)
        self._accepted = np.array([d.accepted for d in docs], dtype=np.float64)
        # Sentence vectors of the phrasings of documents without a classifier (`attach_encoder`).
        self.encoder: Any = None
        self.sem: np.ndarray | None = None          # (rows, dim) float32 unit vectors
        self.sem_owners = np.zeros(0, dtype=np.int32)  # doc index of each row (sorted ascending)
        # The sentence encoder for documents outside the model (`_pages.sentence_features`).
        self.page_encoder: Any = None

    def __len__(self) -> int:
        return len(self.docs)

    def __getstate__(self) -> dict[str, Any]:
        """For fitting in a worker process: everything but the lock, the cache of page vectors and
        the encoder (attached in the parent process)."""
        state = self.__dict__.copy()
        del state["_extra_lock"]
        state["_extra_cache"] = OrderedDict()
        state["encoder"] = state["sem"] = state["page_encoder"] = None
        state.pop("_sentence_cache", None)
        state["sem_owners"] = np.zeros(0, dtype=np.int32)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._extra_lock = threading.Lock()

    def _classifier_dense(self) -> Any:
        """What made the dense part of the classifier's rows: the sentence encoder, or None (n-grams
        alone, or no classifier)."""
        if self.clf_coef is None or self.clf_coef.shape[1] <= self.vec.size:
            return None
        return self.vec.encoder

    @property
    def classifier_vectors(self) -> str | None:
        """The name of what the classifier reads beside the n-grams (`_classifier_dense`), or None."""
        dense = self._classifier_dense()
        return str(dense.name) if dense is not None else None

    def without_classifier(self) -> AnswerModel:
        """This model with no classifier (scores of classes the calibration never saw mean nothing)."""
        if self.clf_coef is None:
            return self
        other = copy.copy(self)
        other.clf_coef = other.clf_intercept = other.clf_classes = None
        other._clf_mask = np.zeros(len(self.docs), dtype=bool)
        other.encoder, other.sem, other.sem_owners = None, None, np.zeros(0, dtype=np.int32)
        return other

    def attach_encoder(self, encoder: Any, documents: Sequence[Document]) -> None:
        """Encode the phrasings of the documents without a classifier with ``encoder`` (None: none).

        A classifier trained on a thread's own phrasings ranks its questions better than a general
        encoder does; the encoder is for what has only a title to go by.
        """
        self.encoder, self.sem, self.sem_owners = None, None, np.zeros(0, dtype=np.int32)
        if encoder is None:
            return
        texts: list[str] = []
        owners: list[int] = []
        for doc in documents:
            i = self.index.get(doc.id)
            if i is None or self._clf_mask[i]:
                continue
            # A document without a title or question (in calibration: its title held out) is
            # represented by the start of its text, which the encoder cuts at its token limit.
            for p in phrasings_of(doc) or [doc.text[:1000]]:
                texts.append(p)
                owners.append(i)
        if not texts:  # every document has a classifier
            return
        order = np.argsort(np.array(owners, dtype=np.int32), kind="stable")
        self.encoder = encoder
        ordered = [texts[j] for j in order]
        # The classifier's fit may have encoded these phrasings already (`Vectorizer.remember`).
        self.sem = self.vec.sentence_vectors(ordered) if self.vec.encoder is encoder else encoder.encode(ordered)
        self.sem_owners = np.array(owners, dtype=np.int32)[order]
        self._sem_index()

    def _sem_index(self) -> None:
        self._sem_docs = np.unique(self.sem_owners)
        self._sem_starts = np.searchsorted(self.sem_owners, self._sem_docs)
        self._sem_mask = np.zeros(len(self.docs), dtype=bool)
        self._sem_mask[self._sem_docs] = True

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, documents: Sequence[Document], *, body_chars: int, min_phrasings: int,
            max_classes: int, covers_all: bool, vec: Vectorizer | None = None,
            classifier: bool = True, C: float = 1.0, max_per_class: int = 0,
            negatives: Sequence[str] = ()) -> AnswerModel | None:
        """Fit on ``documents``; None when there is nothing to model.  ``negatives``: questions no
        document answers (closed as unanswerable), which every class of the classifier learns to reject."""
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
        terms = TermIndex.fit([terms_text(d, body_chars) for d in docs])
        coef = intercept = classes = None
        if classifier and phr_texts:  # no phrasing at all (pages whose headings are held out): no classes
            neg = [q for q in negatives if q.strip()]
            rows = vec.classifier_rows(P, phr_texts)
            if neg:
                rows = sp.vstack([rows, vec.classifier_rows(vec.transform(neg), neg)], format="csr")
            coef, intercept, classes = fit_classifier(rows, owners, len(docs), min_phrasings, max_classes, C,
                                                      max_per_class, negatives=len(neg))
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
        phr = np.zeros((n, m), dtype=np.float32)
        if self.phrasings.n:
            sims = self.phrasings.dot(Q)
            if exclude_rows is not None:
                rows = np.nonzero(exclude_rows >= 0)[0]
                sims[rows, exclude_rows[rows]] = 0.0
            has = np.nonzero(self._has_phr)[0]
            phr[:, has] = np.maximum.reduceat(sims, self._starts[has], axis=1)
        out["phrasing_match"] = phr
        out["tfidf"] = self.bodies.dot(Q)
        qt = self.terms.query(questions)
        out["bm25"], out["coverage"] = self.terms.match(qt)
        out["nterms"] = np.asarray(qt.sum(axis=1)).ravel().astype(np.float32)
        out["question_vectors"], out["question_terms"] = Q, qt  # sparse; reused by `extra_features`
        clf = np.zeros((n, m), dtype=np.float32)
        if self.clf_coef is not None:
            s = self.vec.classifier_scores(Q, questions, self.clf_coef, self.clf_intercept)
            clf[:, self.clf_classes] = s
            clf[:, ~self._clf_mask] = -1.0
        out["classifier"] = clf
        if self.sem is not None:
            sem = np.zeros((n, m), dtype=np.float32)
            qv = self.encoder.encode(questions)
            sem[:, self._sem_docs] = np.maximum.reduceat(qv @ self.sem.T, self._sem_starts, axis=1)
            out["semantic"] = sem
            out["question_sentence"] = qv  # reused for documents outside the model
        return out

    def features(self, scores: dict[str, np.ndarray], row: int, cands: np.ndarray,
                 allowed: np.ndarray | None = None) -> np.ndarray:
        """The feature matrix (candidates × `FEATURES`) of question ``row``.

        Margins and the BM25 normalisation compare with ``allowed`` documents only (the caller's),
        so a document the caller may not see never shows in a signal.
        """
        def margin(name: str) -> np.ndarray:
            s = scores[name][row]
            if allowed is not None:
                s = np.where(allowed, s, -np.inf)
            order = np.argsort(-s)
            best = s[order[0]]
            second = s[order[1]] if len(order) > 1 and np.isfinite(s[order[1]]) else 0.0
            other_best = np.where(cands == order[0], second, best)
            return s[cands] - other_best
        bm = scores["bm25"][row]
        if allowed is not None:
            bm = np.where(allowed, bm, 0.0)
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
        feats[:, 10] = self._verified[cands]
        feats[:, 11] = self._accepted[cands]
        feats[:, 12] = math.log1p(float(scores["nterms"][row]))
        if self.sem is not None:
            feats[:, 13] = scores["semantic"][row][cands]
            feats[:, 14] = margin("semantic")
            feats[:, 15] = self._sem_mask[cands]
        return feats

    def extra_features(self, question: str, docs: Sequence[Document], row: dict[str, np.ndarray],
                       body_chars: int = 1500) -> np.ndarray:
        """`FEATURES` of documents outside the model (e.g. added since the last rebuild) for one question.

        ``row`` holds the question's scores over the covered documents (one vector per signal), so the
        margins compare with the best covered document, as for covered candidates.
        """
        q = row["question_vectors"] if "question_vectors" in row else self.vec.transform([question])
        qt = row["question_terms"] if "question_terms" in row else self.terms.query([question])
        vectors = self._extra_vectors(docs, body_chars)
        phr_rows = sp.vstack([v[0] for v in vectors], format="csr")
        sims = np.asarray((phr_rows @ q.T).toarray()).ravel()
        bounds = np.cumsum([0] + [v[0].shape[0] for v in vectors])
        phr = np.array([sims[bounds[i]:bounds[i + 1]].max() for i in range(len(docs))])
        tfidf = np.asarray((sp.vstack([v[1] for v in vectors], format="csr") @ q.T).toarray()).ravel()
        counts = sp.vstack([v[2] for v in vectors], format="csr")
        bm25, coverage = self.terms.match(qt, *self.terms.weigh_counts(counts))
        bm25, coverage = bm25[0], coverage[0]
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
        # No sentence vectors ("encoded" 0): these are scored on words, as before the encoder.  Encoding
        # each page's title at question time cost ~1.5 ms a page (bench/README.md, deflection).
        return feats

    def _extra_vectors(self, docs: Sequence[Document], body_chars: int) -> list[tuple[sp.csr_matrix, ...]]:
        """(phrasing rows, body row, term counts) of documents outside the model, cached by content.

        Pages found by search recur across questions; vectorising a page's text is most of what
        deciding on it costs.
        """
        out: list[tuple[sp.csr_matrix, ...] | None] = [None] * len(docs)
        keys = [(d.id, d.content_hash, body_chars) for d in docs]
        with self._extra_lock:
            for i, key in enumerate(keys):
                hit = self._extra_cache.get(key)
                if hit is not None:
                    self._extra_cache.move_to_end(key)
                    out[i] = hit
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            phr_lists = [phrasings_of(docs[i]) or [docs[i].title or " "] for i in missing]
            flat = [p for ps in phr_lists for p in ps]
            vecs = self.vec.transform(flat + [doc_body(docs[i], body_chars) for i in missing])
            counts = self.terms.vocab.transform([terms_text(docs[i], body_chars) for i in missing]).tocsr()
            start = 0
            with self._extra_lock:
                for j, i in enumerate(missing):
                    end = start + len(phr_lists[j])
                    entry = (vecs[start:end], vecs[len(flat) + j], counts[j])
                    start = end
                    out[i] = entry
                    self._extra_cache[keys[i]] = entry
                while len(self._extra_cache) > EXTRA_CACHE_DOCS:
                    self._extra_cache.popitem(last=False)
        return out  # type: ignore[return-value]

    def candidates(self, scores: dict[str, np.ndarray], row: int, per_signal: int,
                   allowed: np.ndarray | None = None) -> np.ndarray:
        """Union of the top ``per_signal`` documents of each signal (restricted to ``allowed``)."""
        picks: list[np.ndarray] = []
        for name in ("classifier", "phrasing_match", "tfidf", "bm25", "semantic"):
            if name == "semantic" and self.sem is None:
                continue
            s = scores[name][row]
            if allowed is not None:
                s = np.where(allowed, s, -np.inf)
            if name == "semantic":  # only documents that have sentence vectors
                s = np.where(self._sem_mask, s, -np.inf)
            k = min(per_signal, len(s))
            idx = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
            picks.append(idx[np.isfinite(s[idx])])
        return np.unique(np.concatenate(picks)) if picks else np.zeros(0, dtype=int)

    # -- storage (no pickles: `_model_files`) ------------------------------------------------------------
    def save(self, gen_dir: Path) -> None:
        write_model(self, gen_dir / MODEL_DIR)

    @classmethod
    def load(cls, gen_dir: Path) -> AnswerModel | None:
        """The stored model; None when there is none or it was written by an older kbsearch (rebuild)."""
        parts = read_model(gen_dir / MODEL_DIR)
        if parts is None:
            return None
        model = cls(parts.docs, parts.vec, parts.phrasings, parts.owners, parts.bodies, parts.terms, parts.clf_coef,
                    parts.clf_intercept, parts.clf_classes, parts.covers_all)
        if parts.encoder is not None:
            model.encoder = parts.encoder
            model.sem = parts.sem
            model.sem_owners = parts.sem_owners
            model._sem_index()
        model.page_encoder = parts.page_encoder
        return model
