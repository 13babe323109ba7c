"""BM25F over whole posting blocks with numpy: the scores of Whoosh's `scoring.BM25F`, ~4x faster.

Also the only two private parts of Whoosh that kbsearch reads (a term's postings a block at a time,
a segment's field lengths as one column), each with a public fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from whoosh import scoring
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3LeafMatcher
from whoosh.matching.wrappers import WrappingMatcher
from whoosh.util.numeric import byte_to_length

# BM25F as Whoosh's `scoring.BM25F` computes it (per-field BM25 with its defaults, summed over
# clauses): evaluated with numpy over whole posting blocks instead of posting by posting.
_K1 = 1.2
_B = 0.75
#: Length normalisation per field: a question with many alternate phrasings is not "diluted" by
#: them (each phrasing names the same question), so the questions field is barely normalised.
FIELD_B = {"questions": 0.1}
_LENGTHS = np.array([byte_to_length(b) for b in range(256)], dtype=np.float64)


def _leaf_postings(reader: Any, field: str, term: str) -> tuple[np.ndarray, np.ndarray]:
    """All (docnums, term weights) of one term in one segment, deleted documents included."""
    if (field, term) not in reader:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    m = reader.postings(field, term)
    while isinstance(m, WrappingMatcher):  # deletions are masked by the caller
        m = m.child
    blocks = whoosh_private_postings(m)
    if blocks is None:  # another codec: the slow, public way
        docs, ws = [], []
        while m.is_active():
            docs.append(m.id())
            ws.append(m.weight())
            m.next()
        blocks = [(docs, ws)]
    if not blocks:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    return (np.concatenate([np.asarray(ids, dtype=np.int64) for ids, _w in blocks]),
            np.concatenate([np.asarray(ws, dtype=np.float64) for _i, ws in blocks]))


# -- Whoosh internals --------------------------------------------------------------------------------
# The only private attributes of Whoosh that kbsearch reads, both for speed where Whoosh has no public
# bulk API: a term's postings a block at a time (the public matcher yields them one by one in Python,
# ~10x slower for BM25F over a common word) and a segment's field lengths as one column (the public
# `doc_field_length` is one call per document).  Written against whoosh-reloaded==2.7.5 (pinned in
# pyproject.toml); each falls back to the public API when the internals are not there, and
# tests/core/test_index.py::test_whoosh_internals_still_match_the_public_api fails when they change.
def whoosh_private_postings(m: Any) -> list[tuple[Sequence[int], Sequence[float]]] | None:
    """Every (docnums, weights) block of a fresh leaf matcher of the W3 codec; None for other matchers."""
    if not isinstance(m, W3LeafMatcher):
        return None
    blocks = []
    while not m._atend:
        m._read_ids()
        m._read_weights()
        blocks.append((m._ids, m._weights))
        m._next_block()
    return blocks


def whoosh_private_field_lengths(reader: Any, field: str, size: int) -> np.ndarray | None:
    """The length of ``field`` in each of a segment reader's ``size`` documents, from the W3 codec's
    per-document lengths column; zeros when the field has none; None when the reader is another kind."""
    perdoc = getattr(reader, "_perdoc", None)
    if perdoc is None or not hasattr(perdoc, "_cached_reader"):
        return None
    col = perdoc._cached_reader("_%s_len" % field, LENGTHS_COLUMN)
    if col is None:
        return np.zeros(size, dtype=np.float64)
    return _LENGTHS[np.fromiter(col, dtype=np.uint8, count=size)]


def _weighting() -> Any:
    return scoring.BM25F(B=_B, K1=_K1, **{f"{f}_B": b for f, b in FIELD_B.items()})


class _LeafData:
    """Per-segment arrays the scorer needs: field lengths and deleted documents."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.size = reader.doc_count_all()
        self._lengths: dict[str, np.ndarray] = {}
        deleted = sorted(reader.deleted_docs_set) if reader.has_deletions() else []
        self.deleted = np.asarray(deleted, dtype=np.int64)

    def lengths(self, field: str) -> np.ndarray:
        arr = self._lengths.get(field)
        if arr is None:
            arr = whoosh_private_field_lengths(self.reader, field, self.size)
            if arr is None:  # the public way, a call per document
                arr = np.array([self.reader.doc_field_length(d, field) or 0 for d in range(self.size)],
                               dtype=np.float64)
            self._lengths[field] = arr
        return arr


def _bm25f_top(searcher: Any, leaves: list[tuple[_LeafData, int]], clauses: Sequence[tuple[str, str, float]],
               limit: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
    """Top ``limit`` (docnum, score) for an OR of boosted term clauses, best first, docnum breaking ties."""
    best_ids: list[np.ndarray] = []
    best_scores: list[np.ndarray] = []
    for leaf, base in leaves:
        totals = np.zeros(leaf.size, dtype=np.float64)
        hit = np.zeros(leaf.size, dtype=bool)
        for field, term, boost in clauses:
            ids, tf = _leaf_postings(leaf.reader, field, term)
            if not len(ids):
                continue
            idf = searcher.idf(field, term)
            avgfl = searcher.avg_field_length(field) or 1
            fl = leaf.lengths(field)[ids]
            b = FIELD_B.get(field, _B)
            totals[ids] += boost * idf * ((tf * (_K1 + 1)) / (tf + _K1 * ((1 - b) + b * fl / avgfl)))
            hit[ids] = True
        if len(leaf.deleted):
            hit[leaf.deleted] = False
        if mask is not None and len(mask):
            local = mask[(mask >= base) & (mask < base + leaf.size)] - base
            hit[local] = False
        docs = np.flatnonzero(hit)
        if not len(docs):
            continue
        scores = totals[docs]
        if len(docs) > limit:
            keep = np.argpartition(-scores, limit - 1)[:limit]
            docs, scores = docs[keep], scores[keep]
        best_ids.append(docs + base)
        best_scores.append(scores)
    if not best_ids:
        return []
    ids = np.concatenate(best_ids)
    scores = np.concatenate(best_scores)
    order = np.lexsort((ids, -scores))[:limit]
    return [(int(ids[i]), float(scores[i])) for i in order]
