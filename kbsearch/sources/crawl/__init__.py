"""The intranet crawler: one module per stage (frontier, fetch, extract, state) and the loop (crawler).

Use it through `KnowledgeBase.crawl` or a ``type = "web"`` source (`kbsearch.sources.web.WebSource`).
"""

from .crawler import Crawler, CrawlReport, CrawlSpec
from .extract import PageExtract, Section, decode_html, extract_page
from .frontier import Scope, canonical_url
from .state import CrawlState

__all__ = ["CrawlReport", "CrawlSpec", "CrawlState", "Crawler", "PageExtract", "Scope", "Section",
           "canonical_url", "decode_html", "extract_page"]
