"""Stack Exchange data-dump import (``Posts.xml``; also what Stack Overflow for Teams exports).

The file is streamed with ``lxml.etree.iterparse``: each ``<row>`` is read and freed, so memory holds
only questions still waiting for their answer.  A question becomes one peer-answer document: title =
the question title, ``questions`` = the question body (another phrasing), text = the accepted answer
(or, unless ``require_accepted``, the best-scored answer with at least ``min_score``), ``votes`` = the
answer's score, ``accepted`` when it was accepted; tags pick the group through ``tag_groups``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lxml import etree

from ..documents import Document, make_id
from ..errors import ConfigError, InvalidDocumentError, SourceError
from . import Progress, SourceReport
from ._qa import Item, check_keys, html_to_text, option, sync_stream

if TYPE_CHECKING:
    from .._protocols import DocumentStore

def parse_tags(value: str | None) -> list[str]:
    """``<a><b>`` (classic dumps) or ``|a|b|`` (newer dumps) → ``["a", "b"]``."""
    if not value:
        return []
    if value.startswith("|"):
        return [t for t in value.split("|") if t]
    return [m for m in re.findall(r"<([^<>]+)>", value)]


@dataclass
class _Question:
    id: str
    title: str
    body: str
    tags: list[str]
    accepted_id: str | None
    created: str | None
    activity: str | None
    best: tuple[int, str, str] | None = None  # (score, answer id, body)
    others: list[Any] = field(default_factory=list)


class StackExchangeSource:
    """Questions with their accepted (or best) answer from a ``Posts.xml`` file."""

    def __init__(self, name: str, path: str | Path, *, base_url: str = "", group: str | None = None,
                 tag_groups: Mapping[str, str] | None = None, require_accepted: bool = False,
                 min_score: int = 1, body_chars: int = 2000, allowed_groups: tuple[str, ...] = (),
                 delete_missing: bool = True) -> None:
        self.name = name
        self.path = Path(path)
        self.base_url = base_url.rstrip("/")
        self.group = group
        self.tag_groups = dict(tag_groups or {})
        self.require_accepted = require_accepted
        self.min_score = min_score
        self.body_chars = body_chars
        self.allowed_groups = tuple(allowed_groups)
        self.delete_missing = delete_missing
        self.skipped: list[dict[str, str]] = []

    def _group(self, tags: list[str]) -> str | None:
        for tag in tags:
            if tag in self.tag_groups:
                return self.tag_groups[tag]
        return self.group

    def _doc(self, q: _Question, answer_id: str, answer_html: str, score: int, accepted: bool) -> Document:
        body = html_to_text(q.body)[: self.body_chars]
        return Document(
            id=make_id(self.name, q.id), title=q.title, text=html_to_text(answer_html), kind="answer",
            url=f"{self.base_url}/questions/{q.id}#{answer_id}" if self.base_url else "",
            questions=(body,) if body and body != q.title else (), group=self._group(q.tags),
            allowed_groups=self.allowed_groups, source=self.name, asked=q.created,
            updated=q.activity or q.created, accepted=accepted, votes=score,
        ).checked()

    def items(self) -> Iterator[Item]:
        if not self.path.is_file():
            raise SourceError(f"source {self.name}: no such file {self.path}")
        pending: dict[str, _Question] = {}
        orphans: dict[str, list[tuple[str, int, str]]] = {}
        self.skipped = []
        try:
            for _event, row in etree.iterparse(str(self.path), events=("end",), tag="row", huge_tree=True):
                a = row.attrib
                post_type = a.get("PostTypeId")
                pid = a.get("Id", "")
                try:
                    if post_type == "1":
                        q = _Question(id=pid, title=a.get("Title", "").strip(), body=a.get("Body", ""),
                                      tags=parse_tags(a.get("Tags")), accepted_id=a.get("AcceptedAnswerId"),
                                      created=a.get("CreationDate"), activity=a.get("LastActivityDate"))
                        if not q.title:
                            yield (f"post {pid}", "question without a title")
                        else:
                            pending[pid] = q
                            for aid, score, body in orphans.pop(pid, []):
                                yield from self._answer(pending, q, aid, score, body)
                    elif post_type == "2":
                        parent = a.get("ParentId", "")
                        score = int(a.get("Score", "0") or 0)
                        body = a.get("Body", "")
                        if parent in pending:
                            yield from self._answer(pending, pending[parent], pid, score, body)
                        else:
                            orphans.setdefault(parent, []).append((pid, score, body))
                except (InvalidDocumentError, ValueError) as exc:
                    yield (f"post {pid}", str(exc))
                row.clear()
                while row.getprevious() is not None:
                    del row.getparent()[0]
        except etree.XMLSyntaxError as exc:
            raise SourceError(f"source {self.name}: {self.path} is not valid XML: {exc}") from None
        for q in pending.values():
            if q.best is not None and not self.require_accepted:
                score, aid, body = q.best
                try:
                    yield self._doc(q, aid, body, score, accepted=False)
                except InvalidDocumentError as exc:
                    yield (f"post {q.id}", str(exc))
            else:
                self.skipped.append({"item": f"post {q.id}", "reason": "no accepted or good-enough answer"})

    def _answer(self, pending: dict[str, _Question], q: _Question, aid: str, score: int, body: str) -> Iterator[Item]:
        if q.accepted_id and aid == q.accepted_id:
            del pending[q.id]
            yield self._doc(q, aid, body, score, accepted=True)
        elif score >= self.min_score and (q.best is None or score > q.best[0]):
            q.best = (score, aid, body)

    def sync(self, kb: DocumentStore, *, full: bool = False, progress: Progress | None = None) -> SourceReport:
        report = sync_stream(kb, self.name, "stackexchange", self.items(), progress=progress,
                             delete_missing=self.delete_missing)
        report.skipped = len(self.skipped)
        report.skips = self.skipped[:100]
        return report


def make_stackexchange_source(name: str, table: Mapping[str, Any]) -> StackExchangeSource:
    """``type = "stackexchange"``: ``path`` to Posts.xml (required), ``base_url``, ``group``, ``tag_groups``,
    ``require_accepted``, ``min_score``, ``allowed_groups``."""
    keys = {"path", "base_url", "group", "tag_groups", "require_accepted", "min_score", "body_chars",
            "allowed_groups", "delete_missing"}
    check_keys(table, keys, name)
    path = option(table, "path", (str, Path), None, name)
    if not path:
        raise ConfigError(f"source {name!r}: path (the Posts.xml file) is required")
    return StackExchangeSource(
        name, path, base_url=option(table, "base_url", str, "", name), group=option(table, "group", str, None, name),
        tag_groups=option(table, "tag_groups", dict, {}, name),
        require_accepted=bool(table.get("require_accepted", False)),
        min_score=option(table, "min_score", int, 1, name), body_chars=option(table, "body_chars", int, 2000, name),
        allowed_groups=tuple(option(table, "allowed_groups", list, [], name)),
        delete_missing=bool(table.get("delete_missing", True)),
    )


__all__ = ["StackExchangeSource", "make_stackexchange_source", "parse_tags"]
