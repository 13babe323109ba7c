"""What the answer model knows of a document (`DocInfo`), the texts it is fitted on, and the names of
the per-candidate features, in the order of the feature matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..documents import Document, phrasings

_TOKEN = re.compile(r"(?u)\b\w+\b")

#: Names of the per-candidate features, in the order of the feature matrix.
FEATURES: tuple[str, ...] = (
    "classifier", "classifier_margin", "has_classifier", "phrasing_match", "phrasing_margin",
    "tfidf", "tfidf_margin", "bm25_norm", "bm25_log", "coverage", "verified", "accepted",
    "query_terms_log", "semantic", "semantic_margin", "encoded",
)


#: The ways a document names its question (`documents.phrasings`).
phrasings_of = phrasings


def doc_body(doc: Document, chars: int) -> str:
    """Text that represents the document as a whole: its phrasings and the start of its body."""
    return "\n".join([*phrasings_of(doc), doc.text[:chars]])


@dataclass
class DocInfo:
    """What the decision needs to know about a covered document without opening the index."""

    id: str
    title: str
    url: str
    kind: str
    group: str | None
    allowed_groups: tuple[str, ...]
    outdated: bool
    verified: bool
    accepted: bool

    @classmethod
    def of(cls, doc: Document) -> DocInfo:
        return cls(doc.id, doc.title, doc.url, doc.kind, doc.group, tuple(doc.allowed_groups),
                   doc.outdated, doc.verified, doc.accepted)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "url": self.url, "kind": self.kind, "group": self.group,
                "allowed_groups": list(self.allowed_groups), "outdated": self.outdated,
                "verified": self.verified, "accepted": self.accepted}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocInfo:
        return cls(d["id"], d["title"], d["url"], d["kind"], d["group"], tuple(d["allowed_groups"]),
                   d["outdated"], d["verified"], d["accepted"])


def names_text(doc: Document) -> str:
    """The short naming text of a document: its phrasings."""
    return "\n".join(phrasings_of(doc))


def terms_text(doc: Document, body_chars: int) -> str:
    """The text a document's BM25 terms come from: its phrasings and the start of its body."""
    return names_text(doc) + "\n" + doc.text[: body_chars * 4]


def tokens(text: str) -> list[str]:
    """Word tokens of ``text`` (for pseudo-queries)."""
    return _TOKEN.findall(text)
