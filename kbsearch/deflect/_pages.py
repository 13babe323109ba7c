"""Documents the answer model does not cover, decided like the ones it does, and calibrated as such.

The answer model (`_model.AnswerModel`) covers what was in the index at the last rebuild, up
to ``deflect.max_model_docs`` documents (beyond that: the peer answers and a sample of pages).  The
rest (pages of a large index, answers written since the rebuild) reaches a decision through live
search (`page_candidates`): each hit gets the same `FEATURES` as a covered document, sentence-encoder
similarity of its phrasings included (`sentence_features`; computed once per document content and
cached), and margins taken against every other candidate (`joint_margins`).

Calibration sends a share of its hold-out questions down the same path (`search_holdouts`): their
target documents are left out of the hold-out model, so they must be found by search and are scored
as uncovered; pages sampled from the index (`sample_pages`, a bounded number at any index size) give
pseudo-questions (their headings) that must find their own section among everything search finds.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._features import FEATURES, DocInfo, phrasings_of
from ._model import AnswerModel
from ..documents import Document

log = logging.getLogger(__name__)

#: (score, margin) feature columns whose margin is taken against the best other candidate.
MARGIN_PAIRS = ((FEATURES.index("phrasing_match"), FEATURES.index("phrasing_margin")),
                (FEATURES.index("tfidf"), FEATURES.index("tfidf_margin")),
                (FEATURES.index("semantic"), FEATURES.index("semantic_margin")))
_SEM, _SEM_MARGIN, _ENCODED = FEATURES.index("semantic"), FEATURES.index("semantic_margin"), FEATURES.index("encoded")
#: Sentence vectors of uncovered documents kept between questions.
SENTENCE_CACHE_DOCS = 4096
_cache_lock = threading.Lock()


#: Pages drawn per page kept by `sample_pages` at most (generic headings are skipped).
SAMPLE_DRAWS = 4
#: A heading is generic (a pseudo-question no reader would ask, whose section search cannot single
#: out) when it recurs among the drawn pages, or none of its words is rarer among the index's titles
#: than in this many sections (at least `GENERIC_TITLE_MIN_DF`) ...
GENERIC_TITLE_SHARE = 0.0005
GENERIC_TITLE_MIN_DF = 20
#: ... or it has fewer words than this (index terms: "B", "Navigation", "Examples").
MIN_TITLE_TERMS = 2


def _norm_title(title: str) -> str:
    return " ".join(title.split()).casefold()


def specific_titles(engine: Any, docs: Sequence[Document]) -> list[bool]:
    """For each of ``docs``, whether its title is specific enough to be a pseudo-question: not repeated
    among ``docs``, at least `MIN_TITLE_TERMS` index terms, one of which is rare among the index's
    titles (a heading's document frequency tells "Description" from "Resizing an ext4 volume")."""
    from collections import Counter

    from ..index import analyze

    norm = [_norm_title(d.title) for d in docs]
    seen = Counter(norm)
    # Section numbers ("71.3.") are no words: "71.3. Restrictions" is as generic as "Restrictions".
    terms = [[t for t in dict.fromkeys(analyze(d.title)) if any(c.isalpha() for c in t)] for d in docs]
    df = engine.doc_frequencies(sorted({t for ts in terms for t in ts})) if any(terms) else {}
    limit = max(GENERIC_TITLE_MIN_DF, GENERIC_TITLE_SHARE * engine.doc_count())
    return [bool(n) and seen[n] == 1 and len(ts) >= MIN_TITLE_TERMS
            and min(df[t]["title"] for t in ts) <= limit for n, ts in zip(norm, terms)]


def sample_pages(engine: Any, n: int, seed: int, specific: bool = False) -> list[Document]:
    """Up to ``n`` pages of the index, drawn at random (reproducibly): bounded work at any index size.

    ``specific``: pages whose title is a usable pseudo-question (`specific_titles`), from up to
    `SAMPLE_DRAWS` × ``n`` drawn pages.
    """
    if n <= 0:
        return []
    from whoosh import query

    from ..index import _from_fields

    searcher = engine._searcher()
    docnums = sorted(searcher.docs_for_query(query.Term("kind", "page")))
    draws = n * SAMPLE_DRAWS if specific else n
    if len(docnums) > draws:
        docnums = sorted(random.Random(seed).sample(docnums, draws))
    docs = [_from_fields(searcher.stored_fields(d)) for d in docnums]
    if not specific:
        return docs
    keep = [d for d, ok in zip(docs, specific_titles(engine, docs)) if ok]
    if len(keep) > n:
        keep = sorted(random.Random(seed + 1).sample(keep, n), key=keep.index)
    return keep


def sentence_features(model: AnswerModel, question: str, docs: Sequence[Document],
                      row: dict[str, Any], stored: StoredVectors | None = None) -> np.ndarray | None:
    """(semantic, semantic_margin) of uncovered ``docs`` for one question, or None without an encoder.

    A document's phrasings (or, without any, the start of its text) are encoded once per content
    (cached on the model); the question once per decision (kept in ``row``).  The margin is taken
    against the best covered document, as for covered candidates.  ``stored``: the index's phrasing
    vectors (`vectors.Meaning.vectors_of`), read instead of encoding a document whose very content
    they hold.
    """
    encoder = getattr(model, "page_encoder", None)
    if encoder is None or not docs:
        return None
    qv = row.get("question_sentence")
    if qv is None:
        qv = row["question_sentence"] = encoder.encode([question])[0]
    cache: OrderedDict[tuple[str, str], np.ndarray] = model.__dict__.setdefault("_sentence_cache", OrderedDict())
    keys = [(d.id, d.content_hash) for d in docs]
    vectors: list[np.ndarray | None] = []
    with _cache_lock:
        for key in keys:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
            vectors.append(hit)
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing and stored is not None:  # same encoder: `vectors.Meaning` uses only vectors it made
        found = {i: stored(docs[i].id, keys[i][1]) for i in missing}
        with _cache_lock:
            for i, v in found.items():
                if v is not None:
                    vectors[i] = cache[keys[i]] = v
        missing = [i for i in missing if vectors[i] is None]
    if missing:
        texts = [phrasings_of(docs[i]) or [docs[i].text[:1000] or " "] for i in missing]
        encoded = encoder.encode([t for ts in texts for t in ts])
        start = 0
        with _cache_lock:
            for i, ts in zip(missing, texts):
                vectors[i] = cache[keys[i]] = encoded[start:start + len(ts)]
                start += len(ts)
            while len(cache) > SENTENCE_CACHE_DOCS:
                cache.popitem(last=False)
    sem = np.array([float(np.max(v @ qv)) for v in vectors])  # type: ignore[union-attr]
    covered = row.get("semantic")
    best = float(np.max(covered)) if covered is not None and np.size(covered) else 0.0
    return np.column_stack([sem, sem - best])


#: A document's stored phrasing vectors by (id, content hash), or None (`vectors.Meaning.vectors_of`).
StoredVectors = Callable[[str, str], "np.ndarray | None"]


def stored_vectors(searcher: Any) -> StoredVectors | None:
    """The searcher's stored phrasing vectors, if its version has them."""
    meaning = getattr(searcher, "meaning", None)
    return meaning.vectors_of if meaning is not None else None


def uncovered_features(model: AnswerModel, question: str, docs: Sequence[Document], row: dict[str, Any],
                       body_chars: int, stored: StoredVectors | None = None) -> np.ndarray:
    """`FEATURES` of documents outside ``model``: words (`AnswerModel.extra_features`) and meaning."""
    feats = model.extra_features(question, docs, row, body_chars)
    if model.clf_coef is not None and "classifier" in row and np.size(row["classifier"]):
        feats[:, FEATURES.index("classifier_margin")] = -1.0 - float(np.max(row["classifier"]))
    sem = sentence_features(model, question, docs, row, stored)
    if sem is not None:
        feats[:, _SEM], feats[:, _SEM_MARGIN], feats[:, _ENCODED] = sem[:, 0], sem[:, 1], 1.0
    return feats


#: Columns the uncovered scorer reads besides `FEATURES`: where search put the hit (1 / (1 + rank)
#: among the uncovered hits) and its BM25 relative to the best of them.  The scorer then orders hits
#: at least as search does unless its other features show better.
ORDER_COLUMNS = 2


def order_features(hits: Sequence[Any]) -> np.ndarray:
    """(n, `ORDER_COLUMNS`): search's order of ``hits`` (as `search_hits` returns them)."""
    if not hits:
        return np.zeros((0, ORDER_COLUMNS))
    bm25 = np.array([float(getattr(h, "bm25", 0.0) or 0.0) for h in hits])
    top = float(bm25.max())
    return np.column_stack([1.0 / (1.0 + np.arange(len(hits))), bm25 / top if top > 0 else np.zeros(len(hits))])


#: Reciprocal-rank fusion constant of `search_hits` (Cormack et al.'s 60): a document both lists
#: rank goes first; otherwise the lists interleave by rank.
FUSION_K = 60


def search_hits(searcher: Any, question: str, groups: frozenset[str] | None, k: int,
                covered: Any, absent: frozenset[str] = frozenset(), dense_k: int = 0) -> list[Any]:
    """Search's top ``k`` candidates for ``question`` that the answer model does not cover, fused
    with the ``dense_k`` nearest by meaning (`Searcher.by_meaning`: what shares no rare word with
    the question) by reciprocal rank.  Found only by meaning, a hit has ``bm25`` 0.

    ``absent``: ids treated as not in the index at all (calibration: held-out threads).
    """
    prepared = searcher.prepare(question)
    cands = searcher.candidates(prepared, groups, k + len(absent) if absent else k)
    if absent:
        cands = [c for c in cands if c.document.id not in absent][:k]
    lexical = [c for c in cands if c.document.id not in covered]
    if dense_k <= 0:
        return lexical
    dense = searcher.by_meaning(prepared.text, groups, dense_k, set(absent) | set(covered))
    if not dense:
        return lexical
    score: dict[str, float] = {}
    by_id: dict[str, Any] = {}
    for ranked in (lexical, dense):
        for r, c in enumerate(ranked):
            doc_id = c.document.id
            score[doc_id] = score.get(doc_id, 0.0) + 1.0 / (FUSION_K + r + 1)
            by_id.setdefault(doc_id, c)
    return sorted(by_id.values(), key=lambda c: -score[c.document.id])


def joint_margins(features: list[np.ndarray], links: list[str], first_page: int) -> list[np.ndarray]:
    """Every candidate's margins taken against every other candidate, pages (from ``first_page`` on)
    included; copies of the rows are returned.

    A page's margins were taken against the answer model's documents only, and a covered
    document's against the model only; two pages with the same heading (an "Installation" section
    on every product page) would each look like a clear winner.  Candidates with the same link are
    one answer (a section cut in parts) and do not compete.
    """
    rows = [f.copy() for f in features]
    for score_col, margin_col in MARGIN_PAIRS:
        values = [f[score_col] for f in rows]
        for i, f in enumerate(rows):
            # Covered documents are already in every margin; the pages are what is missing.
            rivals = [values[j] for j in range(first_page, len(rows)) if j != i and links[j] != links[i]]
            if rivals:
                f[margin_col] = min(f[margin_col], values[i] - max(rivals))
    return rows


#: Share of the answerable hold-out targets left out of the hold-out model at least (and at most),
#: so that they are found by search and scored as uncovered documents.
MIN_UNCOVERED, MAX_UNCOVERED = 0.15, 0.8
#: Search-path hold-outs at most when the model covers the index (they only teach the uncovered
#: scorer there; CLINC150's calibration cost ~60 s more CPU with 600 on the loaded bench machine).
COVERED_SEARCH_QUERIES = 200
#: Search hits per search-path hold-out there (as before `deflect.page_candidates` became 10).
COVERED_PAGE_CANDIDATES = 5


class SearchPlan:
    """Which hold-out questions of one calibration split go through search, and how they are labelled.

    Some answerable targets (``uncovered``) count as outside the split's model (masked out of its
    candidates and margins), so their questions find them through search, scored by
    `uncovered_features`, exactly as a decision would; other questions (unanswerable ones included)
    get the search hits beside the model's candidates too, so the scorer learns how uncovered
    rivals look.  Held-out threads are absent from search.  Unless every question goes through
    search (``every``), these are extra examples: each question is also decided without search.
    """

    def __init__(self, queries: list[Any], chosen: set[int], uncovered: set[str],
                 absent: frozenset[str], train: dict[str, Document], k: int = 5, every: bool = False,
                 dense_k: int = 0) -> None:
        self.queries = queries
        self.dense_k = dense_k
        self.chosen = chosen
        self.uncovered = uncovered
        self.absent = absent
        self.train = train
        self.k = k
        self._every = every

    @classmethod
    def make(cls, docs: Sequence[Document], train: Sequence[Document], queries: list[Any], cfg: Any,
             uncovered_share: float, every: bool = False) -> SearchPlan:
        """The plan for one split: ``every`` sends all (at most ``cfg.calibration_search_queries``)
        questions through search (a sample of a large index); else a bounded share of them."""
        rng = random.Random(cfg.seed + 7919)
        budget = max(1, cfg.calibration_search_queries if every else min(cfg.calibration_search_queries,
                                                                         COVERED_SEARCH_QUERIES))
        targets = sorted({q.answer for q in queries if q.answer})
        share = min(max(uncovered_share, MIN_UNCOVERED), MAX_UNCOVERED)
        uncovered = set(rng.sample(targets, int(round(share * len(targets))))) if len(targets) > 3 else set()
        order = list(range(len(queries)))
        rng.shuffle(order)
        to_uncovered = [i for i in order if queries[i].answer in uncovered]
        others = [i for i in order if queries[i].answer not in uncovered]
        if every:
            keep, picked = sorted(order[:budget]), set(order[:budget])
        else:
            mine = to_uncovered[:budget // 2]
            picked = set(mine) | set(others[:budget - len(mine)])
            keep = list(range(len(queries)))
        new_queries = [queries[i] for i in keep]
        chosen = {j for j, i in enumerate(keep) if i in picked}
        train_ids = {d.id for d in train}
        absent = frozenset(d.id for d in docs if d.id not in train_ids)
        # Where the model covers the index, few hits are ever uncovered: the scorer learns from the
        # first `COVERED_PAGE_CANDIDATES` (bounded calibration cost).
        k = cfg.page_candidates if every else min(cfg.page_candidates, COVERED_PAGE_CANDIDATES)
        dense_k = cfg.dense_candidates if every else min(cfg.dense_candidates, COVERED_PAGE_CANDIDATES)
        return cls(new_queries, chosen, uncovered, absent, {d.id: d for d in train}, k, every, dense_k)

    @property
    def every(self) -> bool:
        """Whether every question of the split goes through search (a sample of a large index)."""
        return self._every

    def allowed(self, model: AnswerModel) -> np.ndarray:
        """The split model's documents that count as covered (all but the plan's uncovered ones)."""
        mask = np.ones(len(model), dtype=bool)
        for doc_id in self.uncovered:
            i = model.index.get(doc_id)
            if i is not None:
                mask[i] = False
        return mask

    def searched(self, i: int) -> bool:
        return i in self.chosen

    def report(self) -> dict[str, int]:
        return {"search_holdouts": len(self.chosen), "uncovered_targets": len(self.uncovered)}

    def with_search_hits(self, model: AnswerModel, searcher: Any, query: Any, row: dict[str, Any],
                         feats: np.ndarray, labels: np.ndarray, cands: np.ndarray,
                         body_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The model's candidates of ``query`` and search's, margins joint: (features, labels, uncovered,
        search-order columns (`order_features`; zeros for the model's candidates)).

        A held-out page's question whose heading another candidate has is answered by that copy:
        ``query.answer`` and ``query.kind`` are set to it (the caller reads them after this call).
        """
        covered = {d: i for d, i in model.index.items() if d not in self.uncovered}
        hits = search_hits(searcher, query.text or "?", None, self.k, covered, self.absent, self.dense_k)
        # A document of the split is seen as the split has it (phrasings held out), not as indexed.
        docs = [self.train.get(h.document.id, h.document) for h in hits]
        found: list[Document | DocInfo] = [*(model.docs[c] for c in cands), *docs]
        if query.answer is None and self.every and query.heading:
            # A held-out section whose heading another section has (another version or translation
            # of the manual) is not unanswerable: that copy answers it, as copies do below.
            heading = _norm_title(query.heading)
            copy = next((d for d in found if _norm_title(d.title) == heading), None)
            if copy is not None:
                query.answer, query.kind = copy.id, "pseudo"
        target: Document | DocInfo | None = None
        if query.answer:
            target = self.train.get(query.answer) or next((d for d in found if d.id == query.answer), None)
        url = target.url if target is not None else ""
        # A sample of a large index is asked for by headings: a copy of the target section (the same
        # heading elsewhere: another version or mirror of the manual) answers its heading as well.
        title = _norm_title(target.title) if target is not None and self.every else ""

        def right(d: Document | DocInfo) -> bool:
            return query.answer is not None and (d.id == query.answer or bool(url) and d.url == url
                                                 or bool(title) and _norm_title(d.title) == title)
        if title:
            labels = np.array([int(lab or right(model.docs[c])) for lab, c in zip(labels, cands)], dtype=int)
        if not hits:
            return feats, labels, np.zeros(len(labels), dtype=bool), np.zeros((len(labels), ORDER_COLUMNS))
        page = uncovered_features(model, query.text or "?", docs, row, body_chars, stored_vectors(searcher))
        page_labels = np.array([int(right(d)) for d in docs])
        # ... and is one answer with it, as the parts of one page are (no rival in the margins).
        def link(d: Document) -> str:
            return "title:" + title if title and _norm_title(d.title) == title else d.url or d.id
        links = [link(model.docs[c]) for c in cands] + [link(d) for d in docs]
        rows = joint_margins(list(feats) + list(page), links, len(cands))
        uncovered = np.r_[np.zeros(len(cands), dtype=bool), np.ones(len(docs), dtype=bool)]
        order = np.vstack([np.zeros((len(cands), ORDER_COLUMNS)), order_features(hits)])
        return np.vstack(rows), np.concatenate([labels, page_labels]).astype(int), uncovered, order

