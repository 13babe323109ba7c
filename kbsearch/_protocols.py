"""What the services below the front door need of a knowledge base, as small protocols.

Sources, the crawler, the peer service, the reindex and the report receive one of these instead of
`kbsearch.kb.KnowledgeBase`, so nothing below the front door imports it (imports flow one way; see
tests/core/test_layers.py).  `KnowledgeBase` satisfies every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._build_reports import AddReport, BuildReport
    from .config import Settings
    from .documents import Document

#: Called with the number of documents written so far.
Progress = Callable[[int], None]


class DocumentStore(Protocol):
    """The documents of one index, as sources and crawls read and write them."""

    #: The index directory (sources and crawls keep their state beside the versions).
    root: Path
    settings: Settings

    def add(self, documents: Iterable[Document], *, progress: Progress | None = None, refit: bool = True,
            lock_timeout: float | None = None) -> AddReport:
        """Add or update documents by id (`KnowledgeBase.add`)."""
        ...

    def delete(self, ids: Iterable[str], *, lock_timeout: float | None = None) -> int:
        """Delete documents by id; how many existed."""
        ...

    def ids(self, source: str | None = None) -> list[str]:
        """Ids of every document, or of those from ``source``."""
        ...

    def documents(self) -> Iterator[Document]:
        """Every document of the live version."""
        ...


class Rebuildable(DocumentStore, Protocol):
    """A `DocumentStore` that can be rebuilt from its documents (the nightly reindex)."""

    def rebuild(self, documents: Iterable[Document], *, progress: Progress | None = None,
                lock_timeout: float | None = None) -> BuildReport:
        """A new version from ``documents``, switched to atomically."""
        ...


class DocumentReader(Protocol):
    """Reading one index's documents as a member of some groups (peer service, report)."""

    root: Path
    settings: Settings

    @property
    def generation_path(self) -> Path:
        """The live version's directory."""
        ...

    def documents(self) -> Iterator[Document]:
        """Every document of the live version."""
        ...

    def get(self, doc_id: str, *, user_groups: Any = ...) -> Document | None:
        """The document with ``doc_id`` if ``user_groups`` may see it (default: any), else None."""
        ...

    def visible_words(self, text: str, groups: Any = ...) -> str:
        """``text`` without the words of no document a member of ``groups`` may see."""
        ...


class AnswerIndex(DocumentReader, Protocol):
    """Where the peer service reads documents and indexes answers."""

    def add(self, documents: Iterable[Document], *, progress: Progress | None = None, refit: bool = True,
            lock_timeout: float | None = None) -> AddReport:
        """Add or update documents by id (`KnowledgeBase.add`)."""
        ...
