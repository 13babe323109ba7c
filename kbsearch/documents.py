"""The document model: page sections and peer answers, with stable ids and content hashes.

Both kinds live in one index.  A *page section* is a part of an intranet page (its url carries the
``#anchor``); a *peer answer* is a question somebody asked, its alternate phrasings and the answer a
peer gave.  Documents are immutable values; `Document.content_hash` decides whether re-adding a
document changes anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ._text import is_blank
from .errors import InvalidDocumentError

Kind = Literal["page", "answer"]
KINDS: tuple[str, ...] = ("page", "answer")

#: Longest id accepted; ids are index keys, not content.
MAX_ID_LENGTH = 512


def make_id(*parts: str) -> str:
    """A stable, compact id derived from ``parts`` (e.g. a source name and a canonical url#anchor)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=12).hexdigest()
    return digest


def parse_datetime(value: Any, field_name: str = "date") -> datetime | None:
    """Parse an ISO-8601 string, a UNIX timestamp or a datetime into an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(float(value), tz=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidDocumentError(f"{field_name}: not an ISO-8601 date: {value!r}") from None
    else:
        raise InvalidDocumentError(f"{field_name}: expected a date, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _str_tuple(value: Any, field_name: str, text: bool = False) -> tuple[str, ...]:
    """A list field as a tuple of non-blank strings.  In ``text`` fields (headings, questions) the unit
    separator (U+001F) becomes a space: the index stores such a list as one string joined by it, so an
    item holding one would come back split."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidDocumentError(f"{field_name}: expected a list of strings")
    out = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidDocumentError(f"{field_name}: expected a list of strings")
        if text:
            item = item.replace("\x1f", " ")
        if item.strip():
            out.append(item)
    return tuple(out)


@dataclass(frozen=True)
class Document:
    """One searchable unit: a page section (``kind="page"``) or a peer answer (``kind="answer"``).

    For an answer, ``title`` is the question and ``text`` the answer; ``questions`` holds other
    phrasings of the same question.  For a page section, ``headings`` is the heading path from the
    page title down to this section.  ``allowed_groups`` empty means everyone may see it.
    """

    id: str
    title: str
    text: str
    kind: Kind = "page"
    url: str = ""
    headings: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    group: str | None = None
    allowed_groups: tuple[str, ...] = ()
    source: str = ""
    updated: datetime | None = None
    asked: datetime | None = None
    accepted: bool = False
    verified: bool = False
    outdated: bool = False
    votes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidDocumentError("id: required, a non-empty string")
        if len(self.id) > MAX_ID_LENGTH or any(c in self.id for c in "\r\n\x00"):
            raise InvalidDocumentError(f"id: at most {MAX_ID_LENGTH} characters on one line")
        if self.kind not in KINDS:
            raise InvalidDocumentError(f"kind: must be 'page' or 'answer', not {self.kind!r}")
        for name in ("title", "text", "url", "source"):
            if not isinstance(getattr(self, name), str):
                raise InvalidDocumentError(f"{name}: expected a string")
        if not self.title.strip() and not self.text.strip() and not self.questions:
            raise InvalidDocumentError(f"document {self.id!r} has no title, text or questions")
        if self.group is not None and not isinstance(self.group, str):
            raise InvalidDocumentError("group: expected a string or null")
        for name in ("headings", "questions", "allowed_groups"):
            object.__setattr__(self, name, _str_tuple(getattr(self, name), name, text=name != "allowed_groups"))
        object.__setattr__(self, "allowed_groups", tuple(sorted(set(self.allowed_groups))))
        for name in ("updated", "asked"):
            object.__setattr__(self, name, parse_datetime(getattr(self, name), name))
        if isinstance(self.votes, bool) or not isinstance(self.votes, int):
            raise InvalidDocumentError("votes: expected an integer")

    def checked(self) -> Document:
        """This document, if a person can be shown it: a title and (for a page) a text that are not empty
        once control characters are removed; else `InvalidDocumentError`.

        Kept out of the constructor on purpose: calibration builds title-less copies internally and
        old index entries must stay readable.  Every way in (JSONL, CSV, imports, crawling, `KnowledgeBase.add`)
        checks.  An answer may have no text: archives of questions without recorded answers import as-is.
        """
        if is_blank(self.title):
            raise InvalidDocumentError("title: required, must not be empty")
        if self.kind == "page" and is_blank(self.text):
            raise InvalidDocumentError("text: required, must not be empty (a page section needs its text)")
        return self

    @property
    def content_hash(self) -> str:
        """Hash of everything that is indexed; equal hashes mean re-adding changes nothing."""
        payload = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()

    @property
    def restricted(self) -> bool:
        """True when only members of ``allowed_groups`` may see this document."""
        return bool(self.allowed_groups)

    def replace(self, **changes: Any) -> Document:
        """A copy with ``changes`` applied (documents are immutable)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the JSONL format `from_dict` reads."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        """Build a document from the JSONL format: only ``id``, ``title`` and ``text`` are required
        (and may not be empty, see `checked`).

        Unknown keys are rejected so a typo never silently drops a field.
        """
        if not isinstance(data, Mapping):
            raise InvalidDocumentError("expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} | {"answer", "question"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidDocumentError(f"unknown field(s): {', '.join(unknown)}")
        values = dict(data)
        # Accept the archive format of past answers: {"title", "questions", "answer", "group"}.
        if "answer" in values:
            answer = values.pop("answer")
            if "text" not in values:
                values["text"] = answer
                values.setdefault("kind", "answer")
        if "question" in values:
            question = values.pop("question")
            values.setdefault("title", question)
        for required in ("id", "title", "text"):
            if required not in values or values[required] is None:
                if required == "text" and values.get("kind") == "answer":
                    values["text"] = ""
                    continue
                raise InvalidDocumentError(f"{required}: required field missing")
        for name in ("accepted", "verified", "outdated"):
            if name in values and not isinstance(values[name], bool):
                raise InvalidDocumentError(f"{name}: expected true or false")
        values["id"] = str(values["id"]) if isinstance(values["id"], int) else values["id"]
        try:
            doc = cls(**values)
        except TypeError as exc:  # wrong types for dataclass fields
            raise InvalidDocumentError(str(exc)) from None
        return doc.checked()

    def to_json(self) -> str:
        """One JSONL line."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


def phrasings(doc: Document) -> list[str]:
    """The ways a document names its question: title, alternate phrasings, last heading (distinct)."""
    out = [doc.title, *doc.questions]
    if doc.headings and doc.headings[-1] != doc.title:
        out.append(doc.headings[-1])
    seen: dict[str, None] = {}
    for p in out:
        if p and p.strip():
            seen.setdefault(" ".join(p.split()), None)
    return list(seen)


def read_jsonl(path: str | Path) -> Iterator[Document]:
    """Stream documents from a JSONL file; a bad line raises with its line number."""
    path = Path(path)
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InvalidDocumentError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield from iter_jsonl_lines(handle, str(path))


def iter_jsonl_lines(lines: Iterable[str], origin: str = "<input>") -> Iterator[Document]:
    """Parse JSONL lines into documents, naming ``origin:line`` in any error."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidDocumentError(f"{origin}:{number}: invalid JSON: {exc.msg}") from None
        try:
            yield Document.from_dict(data)
        except InvalidDocumentError as exc:
            raise InvalidDocumentError(f"{origin}:{number}: {exc}") from None


@dataclass(frozen=True)
class ScoreParts:
    """The components behind a hit's final score, so a portal can explain why it was shown."""

    bm25: float = 0.0
    bm25_norm: float = 0.0
    tfidf: float = 0.0
    question_match: float = 0.0
    signals: float = 0.0
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Hit:
    """One search result: what it is, where it lives, why it ranked where it did."""

    id: str
    kind: str
    title: str
    url: str
    snippet: str
    score: float
    parts: ScoreParts
    group: str | None = None
    headings: tuple[str, ...] = ()
    verified: bool = False
    accepted: bool = False
    outdated: bool = False
    updated: datetime | None = None

    def snippet_text(self, mark: tuple[str, str] = ("**", "**")) -> str:
        """The snippet as plain text, with highlights shown by ``mark`` instead of ``<mark>`` tags."""
        import html

        text = self.snippet.replace("<mark>", "\x01").replace("</mark>", "\x02")
        return html.unescape(text).replace("\x01", mark[0]).replace("\x02", mark[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the shape of ``kbsearch search --json``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "url": self.url,
            "snippet": self.snippet,
            "score": round(self.score, 6),
            "parts": self.parts.to_dict(),
            "group": self.group,
            "headings": list(self.headings),
            "verified": self.verified,
            "accepted": self.accepted,
            "outdated": self.outdated,
            "updated": self.updated.isoformat() if self.updated else None,
        }
