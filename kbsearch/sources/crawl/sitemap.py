"""Sitemaps: the page URLs and nested sitemaps a sitemap or sitemap index lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from lxml import etree

from .fetch import Fetcher
from .frontier import host_of

#: Page URLs read from one sitemap at most.
SITEMAP_URLS_MAX = 50_000
#: Sitemaps read per host at most (an index naming others counts as one).
SITEMAPS_MAX = 50


def parse_sitemap(body: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) of a sitemap or sitemap index; ([], []) when unreadable."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.LxmlError:
        return [], []
    if root is None:
        return [], []
    locs = [(el.text or "").strip() for el in root.iter("{*}loc")]
    locs = [u for u in locs if u]
    if etree.QName(root).localname == "sitemapindex":
        return [], locs
    return locs, []


def sitemap_pages(fetcher: Fetcher, starts: Iterable[str], *, respect_robots: bool,
                  unavailable: Callable[[str, str], None]) -> Iterator[tuple[str, str]]:
    """(page URL as listed, sitemap) for each host of ``starts``: the sitemaps robots.txt names (when
    ``respect_robots``), else ``/sitemap.xml``, and the sitemaps they nest.  ``unavailable(sitemap,
    why)`` hears of a named sitemap that could not be read."""
    hosts: dict[str, str] = {}
    for url in starts:
        hosts.setdefault(host_of(url), url.partition(":")[0])
    for host, scheme in hosts.items():
        base = f"{scheme}://{host}/"
        named = fetcher.sitemaps(base) if respect_robots else []
        todo = list(dict.fromkeys(named or [base + "sitemap.xml"]))
        seen: set[str] = set()
        while todo and len(seen) < SITEMAPS_MAX:
            sitemap = todo.pop(0)
            if sitemap in seen:
                continue
            seen.add(sitemap)
            status, body, error = fetcher.fetch_small(sitemap, max_bytes=50_000_000)
            if body is None:
                if named and (error or status not in (404, 410)):
                    unavailable(sitemap, error or f"HTTP {status}")
                continue
            pages, nested = parse_sitemap(body)
            todo.extend(nested)
            for page in pages[:SITEMAP_URLS_MAX]:
                yield page, sitemap
