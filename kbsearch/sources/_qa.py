"""Shared plumbing of the Q&A importers: stream documents into the index, count, delete what vanished."""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..documents import Document
from ..errors import ConfigError, KbsearchError
from . import Progress, SourceReport

if TYPE_CHECKING:
    from .._protocols import DocumentStore

log = logging.getLogger(__name__)

#: One item of a stream: a document, or (item label, error text) for a record that could not be read.
Item = Document | tuple[str, str]


def sync_stream(kb: DocumentStore, name: str, kind: str, items: Iterable[Item], *,
                progress: Progress | None = None, delete_missing: bool = True,
                report: SourceReport | None = None, keep: set[str] | None = None) -> SourceReport:
    """Add every document of ``items`` (tagged ``source=name``); bad records are reported, not fatal.

    When the stream ended normally and had no bad record, documents of this source that it no longer
    contains (nor ``keep``: ids known unchanged, filled while streaming) are deleted; otherwise nothing
    is deleted (a partial read is not "everything is gone").
    """
    report = report or SourceReport(source=name, kind=kind)
    started = time.perf_counter()
    seen: set[str] = set()

    def docs() -> Iterator[Document]:
        for item in items:
            if isinstance(item, Document):
                doc = item if item.source == name else item.replace(source=name)
                seen.add(doc.id)
                report.fetched += 1
                yield doc
                if progress and report.fetched % 500 == 0:
                    progress({"source": name, "fetched": report.fetched})
            else:
                label, reason = item
                report.failed += 1
                report.errors.append({"item": label, "reason": reason})
                log.warning("%s: skipped %s: %s", name, label, reason)

    try:
        added = kb.add(docs(), refit=False)  # the caller refits (or rebuilds) once, after every source
    except KbsearchError as exc:
        report.complete = False
        report.errors.append({"item": name, "reason": str(exc)})
        report.seconds = time.perf_counter() - started
        raise
    report.added += added.added
    report.updated += added.updated
    report.unchanged += added.unchanged
    if report.failed or report.errors:
        report.complete = False
    if delete_missing and report.complete:
        gone = [i for i in kb.ids(source=name) if i not in seen and i not in (keep or ())]
        if gone:
            report.deleted = kb.delete(gone)
    report.seconds = time.perf_counter() - started
    if progress:
        progress({"source": name, "fetched": report.fetched, "done": True})
    log.info("%s: %d read, %d added, %d updated, %d unchanged, %d deleted, %d failed", name, report.fetched,
             report.added, report.updated, report.unchanged, report.deleted, report.failed)
    return report


_TAG = re.compile(r"<[^>]+>")


def html_to_text(markup: str | None) -> str:
    """Plain text of an HTML fragment (paragraphs and list items on their own lines)."""
    if not markup:
        return ""
    from lxml import html as lxml_html

    try:
        root = lxml_html.fragment_fromstring(markup, create_parent="div")
    except Exception:  # lxml raises several types on odd fragments; fall back to stripping tags
        return html.unescape(_TAG.sub(" ", markup)).strip()
    for el in root.iter("p", "li", "pre", "br", "h1", "h2", "h3", "h4", "tr", "blockquote"):
        el.tail = "\n" + (el.tail or "")
    text = root.text_content()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def option(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, name: str) -> Any:
    value = table.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"source {name!r}: {key} has the wrong type ({type(value).__name__})")
    return value


def check_keys(table: Mapping[str, Any], allowed: set[str], name: str) -> None:
    unknown = set(table) - allowed - {"type", "name"}
    if unknown:
        raise ConfigError(f"source {name!r}: unknown key(s) {', '.join(sorted(unknown))}")

