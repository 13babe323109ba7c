"""The search engine behind kbsearch: the only module that imports Whoosh.

Whoosh is unmaintained upstream, so everything engine-specific (schema, analyzer, writers, queries,
the access mask) stays here behind a small surface: `EngineIndex` (open / create, retrieve
candidates, read documents, document frequencies) and `EngineWriter` (add / delete / commit).
Swapping the engine means rewriting this module only.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from whoosh import analysis, fields, index as windex, query, scoring
from whoosh.filedb.filestore import FileStorage
from whoosh.index import LockError
from whoosh.lang.porter import stem as _porter_stem
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3Codec, W3LeafMatcher
from whoosh.matching.wrappers import WrappingMatcher
from whoosh.util.numeric import byte_to_length

from ..documents import Document
from ..errors import IndexCorruptError, IndexLockedError, IndexNotFoundError

log = logging.getLogger(__name__)

#: Indexed in ``acl`` for documents anyone may see.
PUBLIC = "\x01public"
#: Indexed in ``acl`` for documents limited to their allowed groups.
RESTRICTED = "\x01restricted"
#: The text fields a question is matched against.
TEXT_FIELDS = ("title", "questions", "headings", "body")
#: The short fields that name what a document is about (matched even for common words).
NAME_FIELDS = ("title", "questions", "headings")
_SEP = "\x1f"
_ENGINE_DIR = "whoosh"


def _storage(path: Path) -> FileStorage:
    """The engine's files, read through file handles, not memory maps.

    With ``mmap``, Whoosh hands each reader a part of a compound segment file as an in-memory copy
    (``BufferFile`` wraps the mapped bytes in a ``BytesIO``): every searcher, one per thread, and
    every writer's unchanged-check held its own copy of the postings and stored fields, ~330 MB
    per searcher at 100k sections.  Reading through the file costs searches a few ms at most.
    """
    return FileStorage(str(path), supports_mmap=False)

# One analyzer for indexing and for questions: lower-case, English stop words, Porter stemming.
_ANALYZER = analysis.StemmingAnalyzer(cachesize=50_000)
_analyzer_lock = threading.Lock()


def analyze(text: str) -> list[str]:
    """The index terms of ``text`` (stemmed, lower-cased, stop words removed), in order."""
    with _analyzer_lock:  # the stemmer's cache is not safe for concurrent use
        return [t.text for t in _ANALYZER(text)]


_WORD_RE = re.compile(r"\w+(?:\.?\w+)*", re.UNICODE)


@functools.lru_cache(maxsize=100_000)
def _stem(word: str) -> str:
    return _porter_stem(word)


def term_spans(text: str, terms: Collection[str] | None = None) -> list[tuple[str, int, int]]:
    """``(term, start, end)`` for the index terms of ``text`` (only those in ``terms`` if given).

    Tokenises and stems like the analyzer, without building token objects: snippets need only
    the positions of a few terms.
    """
    out = []
    # Porter stemming only rewrites endings, so a word can only stem to a term with its first letter.
    firsts = None if terms is None else {t[:1] for t in terms}
    for m in _WORD_RE.finditer(text):
        word = m.group().lower()
        if len(word) < 2 or (firsts is not None and word[:1] not in firsts):
            continue
        term = _stem(word)
        if terms is None or term in terms:
            out.append((term, m.start(), m.end()))
    return out


#: The analyzer's tokenizer pattern (Whoosh's default, ``*`` included) without its capturing group:
#: the same matches, and ``findall`` returns whole words.
_INDEX_WORD_RE = re.compile(r"[\w\*]+(?:\.?[\w\*]+)*", re.UNICODE)
_INDEX_STOPS = frozenset(analysis.STOP_WORDS)


def index_terms(text: str) -> list[str]:
    """Exactly the terms `_ANALYZER` makes of ``text`` when indexing (same tokens, same order).

    Documents are written with these pre-analyzed term lists (Whoosh accepts a sequence of terms
    as a field value and stores ``_stored_<field>`` as given): ~3x cheaper than the analyzer's
    chain of token generators.  `analyze` stays the reference; tests compare the two.
    """
    # Lower-casing first is the same as lower-casing each word only for ASCII text (elsewhere it
    # can change what the pattern matches: "İ", final sigma).
    words = _INDEX_WORD_RE.findall(text.lower()) if text.isascii() else map(str.lower, _INDEX_WORD_RE.findall(text))
    stops = _INDEX_STOPS
    return [_stem(word) for word in words if len(word) > 1 and word not in stops]


def word_terms(text: str) -> list[tuple[int, int, list[str]]]:
    """``(start, end, terms)`` of each word of ``text`` as the analyzer splits it (terms may be empty:
    stop words, single letters)."""
    return [(m.start(), m.end(), index_terms(m.group())) for m in _INDEX_WORD_RE.finditer(text)]


def _schema() -> fields.Schema:
    text = dict(analyzer=_ANALYZER, phrase=False, stored=True)
    return fields.Schema(
        id=fields.ID(stored=True, unique=True),
        kind=fields.ID(stored=True),
        source=fields.ID(stored=True),
        group=fields.ID(stored=True),
        acl=fields.KEYWORD(),
        title=fields.TEXT(**text),
        questions=fields.TEXT(**text),
        headings=fields.TEXT(**text),
        body=fields.TEXT(**text),
        url=fields.STORED(),
        meta=fields.STORED(),
    )


def _to_fields(doc: Document) -> dict[str, Any]:
    meta = {
        "hash": doc.content_hash,
        "allowed_groups": list(doc.allowed_groups),
        "updated": doc.updated.isoformat() if doc.updated else None,
        "asked": doc.asked.isoformat() if doc.asked else None,
        "accepted": doc.accepted,
        "verified": doc.verified,
        "outdated": doc.outdated,
        "votes": doc.votes,
    }
    acl = " ".join([RESTRICTED, *doc.allowed_groups]) if doc.allowed_groups else PUBLIC
    out: dict[str, Any] = {
        "id": doc.id,
        "kind": doc.kind,
        "source": doc.source,
        "group": doc.group or "",
        "acl": acl,
        "url": doc.url,
        "meta": meta,
    }
    texts = {"title": doc.title, "questions": _SEP.join(doc.questions), "headings": _SEP.join(doc.headings),
             "body": doc.text}
    for name, text in texts.items():  # indexed as pre-analyzed terms, stored as written
        out[name] = index_terms(text)
        out[f"_stored_{name}"] = text
    return out


def _from_fields(stored: dict[str, Any]) -> Document:
    meta = stored.get("meta") or {}
    return Document(
        id=stored["id"],
        kind=stored.get("kind", "page"),
        source=stored.get("source", ""),
        group=stored.get("group") or None,
        title=stored.get("title", ""),
        questions=tuple(q for q in stored.get("questions", "").split(_SEP) if q),
        headings=tuple(h for h in stored.get("headings", "").split(_SEP) if h),
        text=stored.get("body", ""),
        url=stored.get("url", ""),
        allowed_groups=tuple(meta.get("allowed_groups", ())),
        updated=meta.get("updated"),
        asked=meta.get("asked"),
        accepted=bool(meta.get("accepted")),
        verified=bool(meta.get("verified")),
        outdated=bool(meta.get("outdated")),
        votes=int(meta.get("votes", 0)),
    )


@dataclass(frozen=True)
class Candidate:
    """A document retrieved by BM25F (or by meaning: ``bm25`` 0, ``similarity`` its cosine), before re-ranking."""

    document: Document
    bm25: float
    content_hash: str
    similarity: float | None = None


def _write_codec() -> Any:
    """Whoosh's codec, set for writing speed (~25% less time per commit, same search results).

    Posting blocks are not zlib-compressed: Whoosh compresses every block, even a few bytes long
    (its size check is dead code), which costs more time than it saves space (+15% on disk) and
    makes every read decompress.  No per-block length statistics: only Whoosh's own block skipping
    reads them, as a bound (0 is a safe one); the numpy BM25F reads each document's lengths.
    """
    codec = W3Codec(compression=0)
    codec.length_stats = False
    return codec


class EngineWriter:
    """Adds and deletes documents in one generation; nothing is visible until `commit`.

    The Whoosh writer (and its files) is only opened at the first real change, so re-adding
    unchanged documents leaves the index untouched.
    """

    def __init__(self, ix: Any, fresh: bool, limitmb: int, timeout: float) -> None:
        self._ix = ix
        self._fresh = fresh
        self._limitmb = limitmb
        self._timeout = timeout
        self._writer: Any = None
        #: The generation the searcher reads at the latest (read before opening it).
        self._seen_gen = None if fresh else ix.latest_generation()
        self._searcher = None if fresh else ix.searcher()
        #: True when a commit may have landed between opening the searcher and the writer (ids
        #: are then looked up by the writer itself).
        self._moved = False
        self._done = False

    def _w(self) -> Any:
        if self._writer is None:
            try:
                self._writer = self._ix.writer(limitmb=self._limitmb, timeout=self._timeout, codec=_write_codec())
            except LockError:
                raise IndexLockedError("the index is locked by another writer") from None
            if self._seen_gen is not None:
                self._moved = self._writer.generation != self._seen_gen + 1
        return self._writer

    def add(self, doc: Document) -> str:
        """Add or replace ``doc``; returns "added", "updated" or "unchanged" (a no-op)."""
        if self._fresh:
            self._w().add_document(**_to_fields(doc))
            return "added"
        stored = None
        if ("id", doc.id) in self._searcher.reader():  # the term index answers "never seen" cheaply
            stored = self._searcher.document(id=doc.id)
            if stored is not None and (stored.get("meta") or {}).get("hash") == doc.content_hash:
                return "unchanged"
        writer = self._w()
        if stored is None and not self._moved:
            # Not in the index this writer changes: a plain add (update_document would search
            # every segment for the id, and re-map them, once per document).
            writer.add_document(**_to_fields(doc))
            return "added"
        writer.update_document(**_to_fields(doc))
        return "updated" if stored is not None else "added"

    def delete(self, doc_id: str) -> bool:
        """Delete by id; returns whether a document with that id existed."""
        existed = self._searcher is None or self._searcher.document_number(id=doc_id) is not None
        if existed:
            self._w().delete_by_term("id", doc_id)
        return existed

    def commit(self) -> None:
        if self._done:
            return
        self._close_searcher()
        if self._writer is not None:
            self._writer.commit()
            self._writer = None  # its pool of postings (up to ``limitmb``) can go now
        self._done = True

    def cancel(self) -> None:
        if self._done:
            return
        self._close_searcher()
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        self._done = True

    def __enter__(self) -> EngineWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        """Commit when the block ends normally; cancel (nothing written) when it raises."""
        if kind is None:
            self.commit()
        else:
            self.cancel()

    def _close_searcher(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None


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


class EngineIndex:
    """One generation's Whoosh index: retrieval, stored documents and writers."""

    def __init__(self, ix: Any, path: Path, static: bool = False) -> None:
        self._ix = ix
        self.path = path
        #: The index never changes once opened (a published version): no freshness check per search.
        self.static = static
        self._local = threading.local()
        self._searchers: list[Any] = []
        self._searchers_lock = threading.Lock()

    @classmethod
    def create(cls, gen_dir: Path) -> EngineIndex:
        """Create an empty index inside the generation directory ``gen_dir``."""
        path = gen_dir / _ENGINE_DIR
        path.mkdir(parents=True, exist_ok=True)
        return cls(_storage(path).create_index(_schema()), path)

    @classmethod
    def open(cls, gen_dir: Path, *, static: bool = False) -> EngineIndex:
        """Open the index of ``gen_dir``; ``static``: it is never written to again (searches skip
        Whoosh's check for a newer commit, a directory listing each)."""
        path = gen_dir / _ENGINE_DIR
        if not windex.exists_in(str(path)):
            raise IndexNotFoundError(f"no index in {gen_dir}")
        try:
            return cls(_storage(path).open_index(), path, static)
        except (OSError, EOFError, ValueError) as exc:
            raise IndexCorruptError(f"cannot open the index in {gen_dir}: {exc}") from exc

    def writer(self, *, fresh: bool = False, limitmb: int = 256, timeout: float = 0.0) -> EngineWriter:
        """A writer; ``fresh`` skips the unchanged-check for a generation being built from scratch."""
        return EngineWriter(self._ix, fresh, limitmb, timeout)

    def _searcher(self) -> Any:
        searcher = getattr(self._local, "searcher", None)
        if searcher is None:
            searcher = self._ix.searcher(weighting=_weighting())
            self._local.searcher = searcher
            self._local.masks = {}
            self._local.leaves = None
            with self._searchers_lock:
                self._searchers.append(searcher)
        elif not self.static and not searcher.up_to_date():
            # A new searcher, not searcher.refresh(): Whoosh's reader reuse keeps the old deletion
            # state of unchanged segments, so a deletions-only commit would stay invisible.
            fresh = self._ix.searcher(weighting=_weighting())
            with self._searchers_lock:
                self._searchers.append(fresh)
                if searcher in self._searchers:
                    self._searchers.remove(searcher)
            searcher.close()
            searcher = self._local.searcher = fresh
            self._local.masks = {}
            self._local.leaves = None
        return searcher

    def _leaves(self, searcher: Any) -> list[tuple[_LeafData, int]]:
        leaves = self._local.leaves
        if leaves is None:
            leaves = [(_LeafData(r), base) for r, base in searcher.reader().leaf_readers()]
            self._local.leaves = leaves
        return leaves

    def doc_count(self) -> int:
        return self._searcher().doc_count()

    def doc_frequencies(self, terms: Iterable[str]) -> dict[str, dict[str, int]]:
        """For each term, the number of documents containing it, per text field."""
        reader = self._searcher().reader()
        return {term: {f: reader.doc_frequency(f, term) for f in TEXT_FIELDS} for term in terms}

    def _mask(self, searcher: Any, user_groups: frozenset[str] | None) -> Any:
        """Docnums the user may not see (restricted and none of their groups); None: no mask."""
        if user_groups is None:
            return None
        masks = self._local.masks
        mask = masks.get(user_groups)
        if mask is None:
            restricted: Any = query.Term("acl", RESTRICTED)
            if user_groups:
                allowed = query.Or([query.Term("acl", g) for g in sorted(user_groups)])
                restricted = query.AndNot(restricted, allowed)
            mask = set(searcher.docs_for_query(restricted))
            if len(masks) > 256:
                masks.clear()
            masks[user_groups] = mask
        return mask

    def retrieve(
        self,
        clauses: Sequence[tuple[str, str, float]],
        limit: int,
        user_groups: frozenset[str] | None,
    ) -> list[Candidate]:
        """Top ``limit`` documents for an OR of ``(field, term, boost)`` clauses, scored by BM25F.

        Scores equal Whoosh's `BM25F` for the same query (`retrieve_whoosh`), computed with numpy
        over posting blocks: Whoosh's matchers score posting by posting in Python, ~10x slower.

        ``user_groups`` None means no access filter (trusted callers only); otherwise restricted
        documents outside those groups are masked inside the search, before the top-k cut.
        """
        if not clauses:
            return []
        searcher = self._searcher()
        mask = self._mask(searcher, user_groups)
        mask_arr = np.fromiter(mask, dtype=np.int64, count=len(mask)) if mask else None
        top = _bm25f_top(searcher, self._leaves(searcher), clauses, limit, mask_arr)
        out = []
        for docnum, score in top:
            stored = searcher.stored_fields(docnum)
            out.append(Candidate(_from_fields(stored), score, stored["meta"]["hash"]))
        return out

    def retrieve_whoosh(
        self,
        clauses: Sequence[tuple[str, str, float]],
        limit: int,
        user_groups: frozenset[str] | None,
    ) -> list[tuple[str, float]]:
        """The same query through Whoosh's own searcher: (id, score) pairs, for verification."""
        if not clauses:
            return []
        searcher = self._searcher()
        q = query.Or([query.Term(f, t, boost=b) for f, t, b in clauses])
        mask = self._mask(searcher, user_groups)
        results = searcher.search(q, limit=limit, mask=mask or None, terms=False)
        return [(hit["id"], float(hit.score)) for hit in results]

    def hides_documents(self, user_groups: frozenset[str] | None) -> bool:
        """Whether some document of this index is restricted to groups the user is not in."""
        return bool(self._mask(self._searcher(), user_groups))

    def visible_terms(self, terms: Iterable[str], user_groups: frozenset[str] | None) -> set[str]:
        """The ``terms`` found in at least one live document the user may see (any text field).

        Postings are read only until the first visible document: a common word costs one posting,
        a word that only restricted documents contain costs its (few) postings.
        """
        searcher = self._searcher()
        mask = self._mask(searcher, user_groups)
        reader = searcher.reader()
        out: set[str] = set()
        for term in dict.fromkeys(terms):
            for field in TEXT_FIELDS:
                if (field, term) not in reader:
                    continue
                m = reader.postings(field, term)
                found = False
                while m.is_active():
                    docnum = m.id()
                    if (not mask or docnum not in mask) and not reader.is_deleted(docnum):
                        found = True
                        break
                    m.next()
                if found:
                    out.add(term)
                    break
        return out

    def is_term(self, term: str) -> bool:
        """Whether ``term`` occurs in any text field of this index (deleted documents included)."""
        reader = self._searcher().reader()
        return any((field, term) in reader for field in TEXT_FIELDS)

    def restricted_fingerprint(self) -> bytes:
        """A digest of every restricted document's content: a key nobody outside those documents' groups
        can compute (`access.visible_words` derives its stand-in words from it)."""
        searcher = self._searcher()
        cached = getattr(self._local, "restricted_fingerprint", None)
        if cached is not None and cached[0] is searcher:
            return cached[1]
        digest = hashlib.blake2b(digest_size=32, person=b"kbsearch-access")
        for docnum in sorted(searcher.docs_for_query(query.Term("acl", RESTRICTED))):
            digest.update(str(searcher.stored_fields(docnum)["meta"]["hash"]).encode("utf-8"))
        value = digest.digest()
        self._local.restricted_fingerprint = (searcher, value)
        return value

    def visible(self, doc_id: str, user_groups: frozenset[str] | None) -> bool:
        """Whether ``doc_id`` exists and the user may see it."""
        searcher = self._searcher()
        docnum = searcher.document_number(id=doc_id)
        if docnum is None:
            return False
        mask = self._mask(searcher, user_groups)
        return not mask or docnum not in mask

    def current(self, doc_id: str, content_hash: str, user_groups: frozenset[str] | None) -> Candidate | None:
        """``doc_id`` as a candidate if the index still holds it with exactly ``content_hash`` and the
        user may see it (a hit found elsewhere, by meaning, checked against this index); else None."""
        searcher = self._searcher()
        docnum = searcher.document_number(id=doc_id)
        if docnum is None:
            return None
        mask = self._mask(searcher, user_groups)
        if mask and docnum in mask:
            return None
        stored = searcher.stored_fields(docnum)
        if stored["meta"]["hash"] != content_hash:
            return None
        return Candidate(_from_fields(stored), 0.0, content_hash)

    def get(self, doc_id: str) -> Document | None:
        stored = self._searcher().document(id=doc_id)
        return _from_fields(stored) if stored else None

    def content_hash(self, doc_id: str) -> str | None:
        stored = self._searcher().document(id=doc_id)
        return stored["meta"]["hash"] if stored else None

    def iter_documents(self, kind: str | None = None) -> Iterator[Document]:
        """Every live document (of ``kind`` only, if given: read through the index, so the stored
        text of other documents is never touched), in index order."""
        searcher = self._searcher()
        if kind is not None:
            for docnum in sorted(searcher.docs_for_query(query.Term("kind", kind))):
                yield _from_fields(searcher.stored_fields(docnum))
            return
        reader = searcher.reader()
        for _docnum, stored in reader.iter_docs():
            yield _from_fields(stored)

    def ids(self, source: str | None = None) -> Iterator[str]:
        """Ids of all documents, or of those from ``source``."""
        searcher = self._searcher()
        if source is None:
            for _docnum, stored in searcher.reader().iter_docs():
                yield stored["id"]
            return
        for docnum in searcher.docs_for_query(query.Term("source", source)):
            yield searcher.stored_fields(docnum)["id"]

    def close(self) -> None:
        with self._searchers_lock:
            for s in self._searchers:
                try:
                    s.close()
                except Exception:  # closing a stale searcher must not mask the caller's error
                    log.debug("closing a searcher failed", exc_info=True)
            self._searchers.clear()
        self._local = threading.local()


def storage_files(gen_dir: Path) -> list[str]:
    """Names of the engine's files in a generation (for diagnostics)."""
    return sorted(FileStorage(str(gen_dir / _ENGINE_DIR)).list())
