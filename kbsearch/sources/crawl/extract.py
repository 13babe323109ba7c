"""HTML bytes → title, heading-delimited sections and links, with lxml.

Decoding follows the browser's order (byte-order mark, then the HTTP header's charset, then a
``<meta charset>`` in the first bytes, then UTF-8); undecodable bytes in UTF-8 text (pages pasted
together from Latin-1 and UTF-8 parts) fall back to Windows-1252 byte by byte instead of becoming
garbage or failing the page.  Navigation, headers, footers, sidebars, scripts and styles are dropped;
the main content is split at every heading, so a hit can point at ``page.html#anchor``.

`extract_page` is a pure function of its arguments so it can run in a worker process.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urljoin

from lxml import etree

from .frontier import canonical_url

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
#: Elements whose text is never content.
_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "aside", "svg", "button", "select",
              "iframe", "object", "embed", "canvas", "map", "dialog")
#: ARIA roles of page chrome.
_DROP_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar")
#: Class / id tokens of page chrome (Sphinx, DocBook, common CMS themes).
DEFAULT_CHROME_TOKENS = ("sphinxsidebar", "related", "footer", "header", "navbar", "sidebar",
                         "breadcrumb", "breadcrumbs", "navheader", "navfooter", "menu", "skip-link",
                         "headerlink", "site-header", "site-footer", "cookie-banner", "toc-sidebar")
#: Elements that start a new line of text.
_BLOCKS = frozenset("""p div section article main li ul ol dl dt dd table tr td th pre blockquote
    br hr figure figcaption details summary caption address h1 h2 h3 h4 h5 h6""".split())
_LISTING_TITLE = re.compile(r"^\s*(index of /|directory listing for /)", re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SPACES = re.compile(r"\s+")
#: Stands for a heading in the flattened text (a private-use character pages do not contain).
_MARK = "\ue000"
#: Stand-ins for a line break and a space inside ``<pre>`` while the rest of the text is collapsed.
_PRE_NL = "\ue001"
_PRE_SP = "\ue002"
#: The private-use characters used as markers (removed from pages before parsing).
_PRIVATE = re.compile("[\ue000-\ue006]")
#: Around the number of the block element the following text belongs to (-1: the main element).
_BLOCK_OPEN = "\ue003"
_BLOCK_CLOSE = "\ue004"
_BLOCK_SPLIT = re.compile("\ue003(-?[0-9]+)\ue004")
#: Around the text of a link, to tell blocks made only of links (navigation) from prose.
_LINK_OPEN = "\ue005"
_LINK_CLOSE = "\ue006"
_LINK_SPAN = re.compile("\ue005[^\ue006]*\ue006?")
_LINK_MARKS = re.compile("[\ue005\ue006]")
_WORD = re.compile(r"\w")
_HEADING_MARKS = " \t\n¶§#🔗"
_SINGLE_BYTE_LATIN = {"iso8859-1", "latin-1", "ascii", "cp1252", "iso8859-15"}


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start:exc.end].decode("cp1252", "replace"), exc.end


codecs.register_error("kbsearch-cp1252", _cp1252_fallback)


class Block(NamedTuple):
    """One run of text of a block element (paragraph, list item, cell, ...) in a section.

    ``key`` identifies the normalized text across pages (site template is recognized by it),
    ``group`` is the number of the enclosing block element (items of one list share it), and
    ``link_only`` says the text is all link text (navigation-shaped).
    """

    text: str
    key: int
    group: int
    link_only: bool


@dataclass
class Section:
    """One part of a page between two headings; ``blocks`` are its text's parts (see `Block`)."""

    anchor: str
    title: str
    headings: tuple[str, ...]
    text: str
    blocks: tuple[Block, ...] = ()


@dataclass
class PageExtract:
    """Everything the crawler needs from one page."""

    title: str = ""
    sections: list[Section] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False
    listing: bool = False
    encoding: str = ""
    error: str | None = None


#: Raised whenever extraction changes what a page yields: pages parsed by another version are
#: re-parsed by the next incremental crawl (see `ExtractOptions.fingerprint`).
EXTRACT_VERSION = 2


@dataclass(frozen=True)
class ExtractOptions:
    """What to strip besides the defaults (extra class / id tokens)."""

    chrome_tokens: tuple[str, ...] = DEFAULT_CHROME_TOKENS

    def fingerprint(self) -> str:
        """Names these settings and the extractor's version: a page parsed under another
        fingerprint is parsed again even if the server says it has not changed."""
        spec = f"{EXTRACT_VERSION}|" + ",".join(sorted(set(self.chrome_tokens)))
        return hashlib.blake2b(spec.encode("utf-8"), digest_size=8).hexdigest()


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().lower()).name
    except LookupError:
        return None


def decode_html(body: bytes, header_charset: str | None = None) -> tuple[str, str]:
    """Decode page bytes to text; returns (text, encoding used).  Never raises."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                     (codecs.BOM_UTF16_BE, "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(enc, "replace"), enc
    declared = _codec(header_charset)
    if declared is None:
        match = _META_CHARSET.search(body[:4096])
        declared = _codec(match.group(1).decode("ascii", "ignore")) if match else None
    if declared in ("utf-16-le", "utf-16-be", "utf-16"):  # a <meta> cannot be read in UTF-16 bytes
        declared = "utf-8" if b"\x00" not in body[:200] else declared
    encoding = declared or "utf-8"
    if encoding in _SINGLE_BYTE_LATIN:
        # A common lie: declared Latin-1 (or nothing, defaulted) while the bytes are UTF-8.
        try:
            text = body.decode("utf-8")
            if not text.isascii():
                return text, "utf-8"
        except UnicodeDecodeError:
            pass
        if encoding in ("iso8859-1", "latin-1", "ascii"):
            encoding = "cp1252"  # what browsers do
    if encoding == "utf-8":
        return body.decode("utf-8", "kbsearch-cp1252"), "utf-8"
    try:
        return body.decode(encoding), encoding
    except UnicodeDecodeError:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return body.decode(encoding, "replace"), encoding


def _clean_text(text: str) -> str:
    """Runs of white space as one space, except inside ``<pre>`` (`_keep_pre`): code keeps its lines
    and indentation."""
    return _unmark_pre(_SPACES.sub(" ", text).strip())


def _unmark_pre(text: str) -> str:
    if _PRE_NL in text or _PRE_SP in text:
        text = text.replace(" " + _PRE_NL, "\n").replace(_PRE_NL + " ", "\n").replace(_PRE_NL, "\n")
        text = text.replace(_PRE_SP, " ")
    return text


def _keep_pre(main: etree._Element) -> None:
    """Mark the line breaks and spaces of every ``<pre>`` in ``main`` so `_clean_text` keeps them, and
    put a line break before and after each block of code."""
    for pre in main.iter("pre"):
        for el in pre.iter():
            if el.text:
                el.text = el.text.replace("\r\n", "\n").replace("\n", _PRE_NL).replace(" ", _PRE_SP)
            if el is not pre and el.tail:
                el.tail = el.tail.replace("\r\n", "\n").replace("\n", _PRE_NL).replace(" ", _PRE_SP)
        for el in reversed(list(pre.iter())):  # the block's last line break is the one after it
            if el is not pre and el.tail:
                el.tail = el.tail.rstrip(_PRE_NL + _PRE_SP)
                break
            if el.text:
                el.text = el.text.rstrip(_PRE_NL + _PRE_SP)
                break
        pre.text = _PRE_NL + (pre.text or "").lstrip(_PRE_NL)
        if len(pre):  # the line break after the block ends its own text (it stays with the code)
            pre[-1].tail = (pre[-1].tail or "") + _PRE_NL
        else:
            pre.text += _PRE_NL


def _heading_text(el: etree._Element) -> str:
    return _clean_text(_text_of(el)).strip(_HEADING_MARKS)


def _anchor_of(el: etree._Element) -> str:
    """The fragment that lands on heading ``el``: its id, an anchor in it, or its section's id."""
    for attr in ("id", "name"):
        if el.get(attr):
            return el.get(attr, "")
    for child in el.iter("a", "span"):
        for attr in ("id", "name"):
            if child.get(attr):
                return child.get(attr, "")
    prev = el.getprevious()
    if prev is not None and prev.tag == "a" and not (prev.text or "").strip():
        for attr in ("id", "name"):
            if prev.get(attr):
                return prev.get(attr, "")
    parent = el.getparent()
    if parent is not None and parent.get("id"):
        first_heading = next((c for c in parent if isinstance(c.tag, str) and c.tag in _HEADINGS), None)
        if first_heading is el:
            return parent.get("id", "")
    return ""


# Separate queries: a union ("|") makes libxml2 sort the nodes into document order, which is slow.
_ATTRS = (etree.XPath("//@class"), etree.XPath("//@id"), etree.XPath("//@role"))


def _chrome(root: etree._Element, tokens: frozenset[str]) -> list[etree._Element]:
    """Elements of page chrome: by class / id token, ARIA role, or page-level header / footer.

    Reading the attribute values (not the elements) keeps this to a few milliseconds per page.
    """
    found: dict[etree._Element, None] = {}
    for value in (v for xp in _ATTRS for v in xp(root)):
        name = value.attrname
        if name == "class":
            hit = not tokens.isdisjoint(value.split())
        elif name == "id":
            hit = value in tokens
        else:
            hit = value.lower() in _DROP_ROLES
        if hit:
            found[value.getparent()] = None
    for el in root.iter("header", "footer"):
        # Page-level header/footer only, not the header of an article or section.
        if not any(a.tag in ("article", "main", "section") for a in el.iterancestors()):
            found[el] = None
    return list(found)


#: Plain lxml elements (no lxml.html class lookup: it costs more than the parse itself).
_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True, recover=True,
                           default_doctype=False)


def _text_of(el: etree._Element) -> str:
    return "".join(el.itertext())


def _parse(text: str) -> etree._Element:
    text = _XML_DECL.sub("", text[:200], count=1) + text[200:] if text[:200].lstrip().startswith("<?xml") else text
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    if _PRIVATE.search(text):
        text = _PRIVATE.sub("", text)
    root = etree.fromstring(text, _PARSER)
    if root is None:
        raise ValueError("document is empty")
    return root


def extract_page(body: bytes, url: str, charset: str | None = None, x_robots: str = "",
                 options: ExtractOptions | None = None) -> PageExtract:
    """Title, sections, links and robots directives of the HTML page ``body`` fetched from ``url``."""
    options = options or ExtractOptions()
    out = PageExtract()
    text, out.encoding = decode_html(body, charset)
    try:
        root = _parse(text)
    except (etree.LxmlError, ValueError) as exc:
        out.error = f"unparseable HTML ({exc})"
        return out
    del text
    directives = {t.strip().lower() for t in x_robots.replace(";", ",").split(",")}
    title_el = root.find(".//title")
    out.title = _clean_text(_text_of(title_el)) if title_el is not None else ""
    base = url
    for el in root.iter("meta", "link", "base"):
        tag = el.tag
        if tag == "meta" and (el.get("name") or "").lower() in ("robots", "kbsearch"):
            directives |= {t.strip().lower() for t in (el.get("content") or "").split(",")}
        elif tag == "link" and "canonical" in (el.get("rel") or "").lower().split() and el.get("href"):
            try:
                out.canonical = canonical_url(urljoin(url, el.get("href", "")))
            except ValueError:
                pass
        elif tag == "base" and el.get("href"):
            base = urljoin(url, el.get("href", ""))
    out.noindex = "noindex" in directives or "none" in directives
    out.nofollow = "nofollow" in directives or "none" in directives
    out.listing = bool(_LISTING_TITLE.match(out.title))
    if not out.nofollow:
        out.links = _links(root, base)
    if out.noindex or out.listing:
        return out
    _strip_chrome(root, options)
    out.sections = _sections(root, out.title)
    return out


def _links(root: etree._Element, base: str) -> list[str]:
    links: dict[str, None] = {}
    resolved: set[str] = set()
    for el in root.iter("a", "area", "frame", "iframe"):
        href = el.get("href") if el.tag in ("a", "area") else el.get("src")
        if not href or "nofollow" in (el.get("rel") or "").lower():
            continue
        href = href.strip()
        if href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            continue
        # The fragment names a place in the page (canonical URLs drop it): pages linking the same
        # target many times (indexes, tables of contents) resolve it once.
        href = href.partition("#")[0]
        if href in resolved:
            continue
        resolved.add(href)
        try:
            links[canonical_url(urljoin(base, href))] = None
        except ValueError:
            continue
    return list(links)


def _strip_chrome(root: etree._Element, options: ExtractOptions) -> None:
    etree.strip_elements(root, *_DROP_TAGS, with_tail=False)
    for el in _chrome(root, frozenset(options.chrome_tokens)):
        if el.getparent() is not None and el.tag not in ("html", "body"):
            _drop_tree(el)


def _drop_tree(el: etree._Element) -> None:
    """Remove ``el`` and its children but keep the text that follows it."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _main_content(root: etree._Element) -> etree._Element:
    """The page's main content element: <main>, role=main, a lone <article>, else <body>."""
    found = root.find(".//main")
    if found is None:
        found = next((v.getparent() for v in _ATTRS[2](root) if v.lower() == "main"), None)
    if found is None:
        articles = root.findall(".//article")
        found = articles[0] if len(articles) == 1 else root.find("body")
    return found if found is not None else root


def _sections(root: etree._Element, page_title: str) -> list[Section]:
    """Split the main content at its headings, each section into its `Block` s.

    Each heading is replaced by a marker character in the tree, every block element's text starts
    with a marker naming it (and its tail with one naming its parent), link text is bracketed, and
    the text is then read in one pass by libxml2 (``itertext``) and split at the markers: much
    faster than walking every element in Python.
    """
    main = _main_content(root)
    _keep_pre(main)
    heads: list[tuple[int, str, str]] = []
    for el in list(main.iter(*_HEADINGS)):
        if el is main or any(a.tag in _HEADINGS for a in el.iterancestors()):
            continue  # a heading nested in a heading is part of its title
        heads.append((_HEADINGS[el.tag], _heading_text(el), _anchor_of(el)))
        for child in list(el):
            el.remove(child)
        el.text = f"\n{_MARK}\n"
        el.attrib.clear()
    for el in main.iter("a"):
        el.text = _LINK_OPEN + (el.text or "")
        el.tail = _LINK_CLOSE + (el.tail or "")
    parent_of = _mark_blocks(main)
    chunks = "".join(main.itertext()).split(_MARK)
    sections: list[Section] = []
    owner = -1
    blocks, owner = _blocks(chunks[0], owner, parent_of)
    if blocks:
        sections.append(Section("", page_title, (), section_text(blocks), blocks))
    stack: list[tuple[int, str]] = []
    used: set[str] = set()
    for (level, title, anchor), chunk in zip(heads, chunks[1:]):
        while stack and stack[-1][0] >= level:
            stack.pop()
        path = tuple(h for h in ([page_title] if page_title else []) + [t for _, t in stack] if h)
        if title:
            stack.append((level, title))
        if anchor in used:
            anchor = ""
        used.add(anchor)
        blocks, owner = _blocks(chunk, owner, parent_of)
        # A heading with no text of its own (only subsections below it) adds nothing searchable.
        if blocks:
            sections.append(Section(anchor, title or page_title, path, section_text(blocks), blocks))
    return sections


def _mark_blocks(main: etree._Element) -> dict[int, int]:
    """Number the block elements under ``main`` and mark where each one's text starts and where its
    parent's resumes; returns each number's parent block number (-1: ``main``; -1's is -2)."""
    number: dict[etree._Element, int] = {}
    for el in main.iter(*_BLOCKS):
        if el is not main and el.tag not in _HEADINGS:
            number[el] = len(number)
    parent_of = {-1: -2}
    for el, i in number.items():
        parent = -1
        for anc in el.iterancestors():
            if anc is main:
                break
            if anc in number:
                parent = number[anc]
                break
        parent_of[i] = parent
        el.text = f"{_BLOCK_OPEN}{i}{_BLOCK_CLOSE}" + (el.text or "")
        el.tail = f"{_BLOCK_OPEN}{parent}{_BLOCK_CLOSE}" + (el.tail or "")
    for el in main.iter(*_HEADINGS):
        if el is not main and el.getparent() is not None:
            parent = next((number[a] for a in el.iterancestors() if a in number), -1)
            el.tail = f"{_BLOCK_OPEN}{parent}{_BLOCK_CLOSE}" + (el.tail or "")
    return parent_of


def _blocks(chunk: str, owner: int, parent_of: dict[int, int]) -> tuple[tuple[Block, ...], int]:
    """The blocks of one section's marked text; ``owner`` is the block element its first text
    belongs to.  Returns the blocks and the owner at the chunk's end."""
    parts = _BLOCK_SPLIT.split(chunk)
    owners = [owner] + [int(n) for n in parts[1::2]]
    found: list[Block] = []
    for who, raw in zip(owners, parts[0::2]):
        linked = _LINK_OPEN in raw
        text = _SPACES.sub(" ", _LINK_MARKS.sub("", raw) if linked else raw).strip()
        if not text:
            continue
        norm = text
        if _PRE_NL in norm or _PRE_SP in norm:
            norm = _SPACES.sub(" ", norm.replace(_PRE_NL, " ").replace(_PRE_SP, " ")).strip()
        key = int.from_bytes(hashlib.blake2b(norm.lower().encode("utf-8", "replace"), digest_size=6).digest(), "big")
        link_only = not _WORD.search(_LINK_SPAN.sub("", raw) if linked else raw)
        found.append(Block(text, key, parent_of.get(who, -2), link_only))
    return tuple(found), owners[-1]


def section_text(blocks: tuple[Block, ...] | list[Block]) -> str:
    """The searchable text of a section made of ``blocks`` (code keeps its lines)."""
    return _unmark_pre(" ".join(b.text for b in blocks))
