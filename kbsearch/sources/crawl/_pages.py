"""A crawled page as index documents: one per section, under ids stable across runs."""

from __future__ import annotations

from ..._text import is_blank
from ...documents import Document, make_id
from ._report import CrawlSpec
from .extract import Section


def page_documents(spec: CrawlSpec, url: str, page_title: str, sections: list[Section | None],
                   updated: str | None) -> list[Document]:
    """One document per section (None: a section of site template only, numbered but dropped)."""
    docs: list[Document] = []
    used: set[str] = set()
    for number, section in enumerate(sections):
        if section is None or is_blank(section.text):
            continue  # only control characters: nothing to search (a Document needs a text)
        # A section without a usable title of its own is named by its page (then by its url).
        title = next((t for t in (section.title, page_title) if t and not is_blank(t)), url)
        anchor = section.anchor
        key = f"{url}#{anchor}" if anchor else f"{url}#§{number}"
        if key in used:
            key = f"{key}§{number}"
        used.add(key)
        docs.append(Document(
            id=make_id(spec.name, key), title=title, text=section.text,
            kind="page", url=f"{url}#{anchor}" if anchor else url, headings=section.headings,
            source=spec.name, group=spec.group, allowed_groups=tuple(spec.allowed_groups),
            updated=updated,
        ))
    return docs


def _same_page(canonical: str, url: str, aliases: tuple[str, ...]) -> bool:
    """True when rel=canonical names the page itself (up to a trailing slash or a redirect alias)."""
    return canonical == url or canonical in aliases or canonical.rstrip("/") == url.rstrip("/")
