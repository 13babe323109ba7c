"""Index administration: deleting documents by id or source, and what each source holds.

Deleting goes through the copy-on-write write path (`_kb_write.delete`: a fork of the live version,
published atomically), never into the live version.  A deleted page comes back when its source still
has it at the next crawl or import with ``--full``; a deleted peer answer comes back from the
escalation store at the next rebuild (close or re-answer the escalation instead).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidDocumentError

if TYPE_CHECKING:
    from ..documents import Document


class AdminIndex(Protocol):
    """What index administration needs of a knowledge base (`KnowledgeBase` is one)."""

    def ids(self, source: str | None = None) -> list[str]:
        """Ids of every document, or of those from ``source``."""
        ...

    def get(self, doc_id: str) -> Document | None:
        """The document with ``doc_id``, or None."""
        ...

    def delete(self, ids: Iterable[str]) -> int:
        """Delete documents by id in a new version (`_kb_write.delete`); how many existed."""
        ...

    def documents(self) -> Iterator[Document]:
        """Every document of the live version."""
        ...

log = logging.getLogger(__name__)


@dataclass
class DeleteReport:
    """What `KnowledgeBase.delete_documents` did: how many were deleted, and the ids it did not find."""

    deleted: int = 0
    requested: int = 0
    missing: list[str] = field(default_factory=list)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SourceStats:
    """One source's share of the live index (`KnowledgeBase.source_stats`)."""

    source: str
    documents: int = 0
    pages: int = 0
    answers: int = 0
    restricted: int = 0
    verified: int = 0
    outdated: int = 0
    #: The newest ``updated`` date of its documents (ISO 8601), or None when none carries one.
    newest_updated: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def delete_documents(kb: AdminIndex, ids: Iterable[str] = (), *, source: str | None = None) -> DeleteReport:
    """Delete the documents ``ids`` and/or every document of ``source`` in one new version.

    At least one of them must be given (an empty request is an `InvalidDocumentError`, so a script with
    an empty list never deletes more than meant); ids not in the index are reported, not an error.
    """
    wanted = [i.strip() for i in ids if isinstance(i, str) and i.strip()]
    if source is not None and not source.strip():
        raise InvalidDocumentError("source: name a source (see `kbsearch stats`)")
    if not wanted and source is None:
        raise InvalidDocumentError("name the documents to delete: ids, a source, or both")
    targets = list(dict.fromkeys(wanted))
    if source is not None:
        of_source = kb.ids(source.strip())
        if not of_source:
            raise InvalidDocumentError(f"no documents from source {source.strip()!r} (see `kbsearch stats`)")
        targets = list(dict.fromkeys([*targets, *of_source]))
    present = [i for i in targets if kb.get(i) is not None]
    missing = [i for i in wanted if i not in set(present)]
    deleted = kb.delete(present) if present else 0
    log.info("deleted %d documents (%d requested, %d not found%s)", deleted, len(targets), len(missing),
             f", source {source}" if source else "")
    return DeleteReport(deleted=deleted, requested=len(targets), missing=missing, source=source)


def source_stats(kb: AdminIndex) -> list[SourceStats]:
    """Documents per source (``""``: added without one, e.g. `kbsearch index add`), most first."""
    by_source: dict[str, SourceStats] = {}
    newest: dict[str, datetime] = {}
    for doc in kb.documents():
        item = by_source.setdefault(doc.source, SourceStats(source=doc.source))
        item.documents += 1
        item.pages += doc.kind == "page"
        item.answers += doc.kind == "answer"
        item.restricted += bool(doc.allowed_groups)
        item.verified += doc.verified
        item.outdated += doc.outdated
        if doc.updated is not None and (doc.source not in newest or doc.updated > newest[doc.source]):
            newest[doc.source] = doc.updated
    for name, when in newest.items():
        by_source[name].newest_updated = when.isoformat()
    return sorted(by_source.values(), key=lambda s: (-s.documents, s.source))
