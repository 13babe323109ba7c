"""What a crawl is asked to do (`CrawlSpec`, built by `WebSource`) and what it did (`CrawlReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import SourceReport
from .fetch import Credentials

if TYPE_CHECKING:
    from ...config import CrawlConfig


@dataclass
class CrawlReport(SourceReport):
    """What one crawl did: `SourceReport` counts (documents) plus page-level crawl figures."""

    kind: str = "web"
    #: True when nothing was written (index and crawl state untouched).
    dry_run: bool = False
    #: HTML pages parsed this run.
    pages_parsed: int = 0
    #: Pages answered 304 Not Modified, and pages whose body hash had not changed (neither parsed).
    not_modified: int = 0
    same_hash: int = 0
    #: Pages that answered 404/410 and were removed.
    pages_gone: int = 0
    sections: int = 0
    bytes: int = 0
    retries: int = 0
    sitemap_urls: int = 0
    #: Distinct links found that lead outside the scope (never fetched).
    links_out_of_scope: int = 0
    pages_per_second: float = 0.0
    #: Seconds the writer thread spent writing batches (index adds / deletes and crawl state); it
    #: runs alongside fetching and parsing, so this is part of ``seconds``, not added to it.
    write_seconds: float = 0.0
    #: After the crawl (`KnowledgeBase.crawl`, not part of ``seconds``): refitting the TF-IDF model,
    #: then the after-build steps (router, deflection calibration) and what they reported.
    refit_seconds: float = 0.0
    after_build_seconds: float = 0.0
    after_build: dict[str, Any] = field(default_factory=dict)
    #: Pages parsed again at the end of the run because what counts as site template changed after
    #: they were parsed (mostly the first pages of a new site; they are fetched again too).
    template_reparsed: int = 0
    #: Distinct text blocks that are site template (dropped) at the end of the run.
    template_blocks: int = 0
    #: Why the run stopped before its frontier was empty ("max_pages", "interrupted", an error).
    stopped_early: str | None = None
    skip_reasons: dict[str, int] = field(default_factory=dict)
    error_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """The one-line summary the CLI prints."""
        return (f"crawled {self.fetched} pages in {self.seconds:.1f}s ({self.pages_per_second:.1f}/s): "
                f"{self.pages_parsed} parsed, {self.not_modified + self.same_hash} unchanged; documents "
                f"+{self.added} ~{self.updated} ={self.unchanged} -{self.deleted}; "
                f"{self.skipped} skipped, {self.failed} failed"
                + ("" if self.complete else f" (incomplete: {self.stopped_early or 'failures'})")
                + (f"; then model refit {self.refit_seconds:.1f}s, routing and deflection "
                   f"{self.after_build_seconds:.1f}s" if self.refit_seconds or self.after_build_seconds else "")
                + ("; deflection waits for the next reindex"
                   if "deferred" in (self.after_build or {}).get("deflect", {}) else ""))


@dataclass
class CrawlSpec:
    """Everything one crawl needs besides the knowledge base (built by `WebSource`)."""

    name: str
    start_urls: list[str]
    config: CrawlConfig
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_prefixes: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    allowed_groups: list[str] = field(default_factory=list)
    group: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
