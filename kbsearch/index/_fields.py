"""What a document is in the engine: the Whoosh schema, a `Document` to fields and back, and the
`Candidate` that retrieval returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whoosh import fields
from whoosh.filedb.filestore import FileStorage

from ..documents import Document
from ._analysis import _ANALYZER, index_terms

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
