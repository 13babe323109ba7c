"""The search engine behind kbsearch: the only module that imports Whoosh.

Whoosh is unmaintained upstream, so everything engine-specific (schema, analyzer, writers, queries,
the access mask) stays here behind a small surface: `EngineIndex` (open / create, retrieve
candidates, read documents, document frequencies) and `EngineWriter` (add / delete / commit).
Swapping the engine means rewriting this package only: `_analysis` (text to terms), `_fields` (a
document as fields), `_writer` (`EngineWriter`), `_bm25f` (scoring) and `EngineIndex` here.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from whoosh import index as windex, query
from whoosh.filedb.filestore import FileStorage

from ..documents import Document
from ..errors import IndexCorruptError, IndexNotFoundError
from ._analysis import QUESTION_FRAME, analyze, content_terms, index_terms, term_spans, word_terms
from ._bm25f import FIELD_B, _bm25f_top, _LeafData, _weighting, whoosh_private_field_lengths, whoosh_private_postings
from ._fields import (_ENGINE_DIR, NAME_FIELDS, PUBLIC, RESTRICTED, TEXT_FIELDS, Candidate, _from_fields, _schema,
                      _storage)
from ._writer import EngineWriter

log = logging.getLogger(__name__)

__all__ = ["FIELD_B", "NAME_FIELDS", "PUBLIC", "QUESTION_FRAME", "RESTRICTED", "TEXT_FIELDS", "Candidate",
           "EngineIndex", "EngineWriter", "analyze", "content_terms", "index_terms", "storage_files", "term_spans",
           "whoosh_private_field_lengths", "whoosh_private_postings", "word_terms"]


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
