"""`EngineWriter`: adds and deletes documents in one generation's Whoosh index, committed at once."""

from __future__ import annotations

from typing import Any

from whoosh.codec.whoosh3 import W3Codec
from whoosh.index import LockError

from ..documents import Document
from ..errors import IndexLockedError
from ._fields import _to_fields


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
