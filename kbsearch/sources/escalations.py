"""The ``escalations`` source: answered escalations of the peer store, for reindex.

Answers are indexed the moment they are recorded; this source makes a reindex (or a crash between
storing and indexing an answer) safe: it re-adds every answered escalation, removes answers whose
escalation is gone, and re-applies the duplicate phrasings and outdated marks kept in the store to
documents of other sources (a re-import of those would otherwise drop them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .._protocols import DocumentStore
from ..documents import Document
from ..errors import InvalidDocumentError
from . import Progress, SourceReport
from ._qa import Item, check_keys, sync_stream

if TYPE_CHECKING:
    from ..peers.service import PeerLoop


class PeerStoreOwner(DocumentStore, Protocol):
    """A `DocumentStore` with its peer answer loop (whose store holds the answered escalations)."""

    @property
    def peers(self) -> PeerLoop:
        """The answer loop of this index."""
        ...


class EscalationsSource:
    """Answered escalations of this knowledge base's peer store."""

    name = "escalations"

    def __init__(self, name: str = "escalations") -> None:
        self.name = name

    def items(self, kb: PeerStoreOwner, indexed: list[tuple[str, str, int]]) -> Iterator[Item]:
        loop = kb.peers
        marks = loop.store.outdated_marks()
        phrasings: dict[str, list[str]] = {}
        for doc_id, question in loop.store.duplicates():
            phrasings.setdefault(doc_id, []).append(question)
        from ..peers.service import answer_doc_id

        for esc in loop.store.answered():
            doc_id = answer_doc_id(esc.id)
            try:  # an escalation stored before questions were cleaned may have a blank one: report it
                doc: Document = loop.answer_document(esc, extra_questions=phrasings.get(doc_id, ()),
                                                     outdated=marks.get(doc_id, False)).checked()
            except InvalidDocumentError as exc:
                yield (f"escalation {esc.id}", str(exc))
                continue
            if not esc.indexed:
                indexed.append((esc.id, doc_id, esc.revision))
            yield doc

    def sync(self, kb: PeerStoreOwner, *, full: bool = False, progress: Progress | None = None) -> SourceReport:
        from ..peers.service import SOURCE

        started = time.perf_counter()
        indexed: list[tuple[str, str, int]] = []
        # Answer documents always carry source "escalations", whatever this source is called.
        report = sync_stream(kb, SOURCE, "escalations", self.items(kb, indexed), progress=progress)
        report.source = self.name
        for esc_id, doc_id, revision in indexed:
            kb.peers.store.mark_indexed(esc_id, doc_id, revision)
        report.updated += kb.peers.reapply_marks(refit=False)
        report.seconds = time.perf_counter() - started
        return report


def make_escalations_source(name: str, table: Mapping[str, Any]) -> EscalationsSource:
    """``type = "escalations"``: no options (the store is the knowledge base's own)."""
    check_keys(table, set(), name)
    return EscalationsSource(name)
