"""The crawl loop: frontier → fetch threads → parse processes → index writer, all overlapped.

Fetching is cheap and parsing dominates, so a few threads fetch (respecting per-host limits) while
worker processes parse on both cores, and a writer thread streams documents into the index in
batches behind a bounded queue (memory stays bounded however large the site).  The coordinator
(the calling thread) owns the frontier, decides what each response means for the index and the
crawl state, and keeps the report.

Deletion rules: a page's documents are deleted when the page answers 404/410, redirects away, turns
noindex / non-HTML / too large, or loses sections; URLs never reached are forgotten only at the end
of a *complete* run (nothing cut short, nothing failed).  A failed or interrupted run deletes only
what it saw definitively gone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from ..._memory import release_memory
from ..._workers import process_pool
from ...errors import KbsearchError
from ._pages import _same_page, page_documents
from ._report import CrawlReport, CrawlSpec
from ._writer import _Batch, _Writer
from .extract import ExtractOptions, PageExtract, Section, extract_page
from .fetch import Fetcher, FetchOptions, FetchResult
from .frontier import NON_HTML_EXTENSIONS, TRAP_REASONS, Frontier, Scope, Task, canonical_url, extension_of
from .sitemap import sitemap_pages
from .state import CrawlState, PageState
from .template import SiteTemplate

if TYPE_CHECKING:
    from ..._protocols import DocumentStore

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]

#: Entries kept in the report's ``errors`` / ``skips`` lists (counts by reason are always complete).
MAX_LISTED = 500
#: Characters of section text (twice: text and blocks) kept from the first pages parsed in a run,
#: so the pages parsed before the site template was known are parsed again without fetching them
#: (pages beyond it are fetched again; about 10 MB of memory).
_RECENT_CHARS = 10_000_000


class Crawler:
    """One crawl of one source into one knowledge base; use `run` once."""

    def __init__(self, kb: DocumentStore, spec: CrawlSpec, *, full: bool = False, dry_run: bool = False,
                 progress: Progress | None = None) -> None:
        if not spec.start_urls:
            raise KbsearchError(f"source {spec.name!r}: no start URLs")
        self.kb, self.spec, self.cfg, self.full, self.progress = kb, spec, spec.config, full, progress
        #: Fetch and extract everything but write neither the index nor the crawl state.
        self.dry_run = dry_run
        try:
            self.starts = [canonical_url(u) for u in spec.start_urls]
            self.scope = Scope.build(spec.start_urls, allowed_hosts=spec.allowed_hosts,
                                     allowed_prefixes=spec.allowed_prefixes, include=spec.include,
                                     exclude=spec.exclude, max_query_variants=self.cfg.max_query_variants)
        except (ValueError, TypeError) as exc:  # bad URL or bad regex
            raise KbsearchError(f"source {spec.name!r}: {exc}") from None
        self.report = CrawlReport(source=spec.name, dry_run=dry_run)
        self.frontier = Frontier(self.cfg.max_depth)
        self.extract_options = ExtractOptions(
            chrome_tokens=tuple(ExtractOptions().chrome_tokens) + tuple(self.cfg.strip_classes))
        self.extract_fp = self.extract_options.fingerprint()
        self.template = SiteTemplate(self.cfg.template_share, self.cfg.template_min_pages)
        #: True in the end-of-run pass that re-parses pages whose template decision changed.
        self._repass = False
        #: Pages parsed this run (title, sections, state, updated), for the re-parse without a fetch.
        self._recent: dict[str, tuple[str, list[Section], PageState, str | None]] = {}
        self._recent_chars = 0
        self.fetcher = Fetcher(FetchOptions(
            user_agent=self.cfg.user_agent, connect_timeout=self.cfg.connect_timeout,
            read_timeout=self.cfg.read_timeout, page_timeout=self.cfg.page_timeout,
            retries=self.cfg.retries, backoff=self.cfg.backoff, retry_after_max=self.cfg.retry_after_max,
            max_bytes=self.cfg.max_bytes, max_redirects=self.cfg.max_redirects, delay=self.cfg.delay,
            connections_per_host=self.cfg.connections_per_host, respect_robots=self.cfg.respect_robots,
            host_failure_limit=self.cfg.host_failure_limit, verify_tls=self.cfg.verify_tls,
        ), spec.credentials, in_scope=self.scope.check)
        self._batch = _Batch()
        self._batch_started = time.monotonic()
        self._attempted: set[str] = set()
        self._last_progress = 0.0
        self._started = 0.0

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> CrawlReport:
        """Crawl, index and report; network trouble is reported, never raised."""
        self._started = time.monotonic()
        state = self._state = CrawlState.for_kb(self.kb.root, self.kb.settings)
        writer = _Writer(self.kb, state, self.spec.name, self.dry_run)
        writer.start()
        parse_pool: Executor | None = None
        fetch_pool = ThreadPoolExecutor(max(1, self.cfg.fetch_threads), thread_name_prefix="kbsearch-fetch")
        if self.cfg.parse_workers > 0:
            parse_pool = process_pool(self.cfg.parse_workers)
        try:
            for url in self.starts:
                self.frontier.push(url, 0)
            self._seed_known(state)
            if self.cfg.sitemaps:
                self._seed_sitemaps()
            self._loop(state, fetch_pool, parse_pool, writer)
            self._reparse_for_template(state, fetch_pool, parse_pool, writer)
        except BaseException as exc:  # interrupted or a bug: the run is incomplete, so it deletes nothing
            self.report.stopped_early = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
                f"crashed: {type(exc).__name__}: {exc}"
            self.fetcher.stopped.set()
            raise
        finally:
            self.fetcher.stopped.set()
            fetch_pool.shutdown(wait=True, cancel_futures=True)
            if parse_pool is not None:
                parse_pool.shutdown(wait=True, cancel_futures=True)
            self._flush(writer, force=True)
            writer.queue.put(None)
            writer.join()
            self.fetcher.close()
            self._finish(state, writer)
            state.close()
            release_memory()
        return self.report

    def _loop(self, state: CrawlState, fetch_pool: Executor, parse_pool: Executor | None, writer: _Writer) -> None:
        fetching: dict[Future[FetchResult], tuple[Task, PageState | None]] = {}
        parsing: dict[Future[PageExtract], tuple[Task, FetchResult, PageState | None]] = {}
        max_fetching = max(1, self.cfg.fetch_threads) * 2
        max_parsing = max(2, self.cfg.parse_workers * 3)
        scheduled = 0
        while True:
            if writer.error is not None:
                self.report.stopped_early = f"index write failed: {writer.error}"
                self.fetcher.stopped.set()
                return
            while len(fetching) < max_fetching and len(parsing) < max_parsing:
                if scheduled >= self.cfg.max_pages:
                    if len(self.frontier):
                        self.report.stopped_early = f"max_pages ({self.cfg.max_pages}) reached"
                    break
                task = self.frontier.pop()
                if task is None:
                    break
                why, definitive = self._precheck(task.url)
                if why:
                    self._skip(task.url, why, state.get(self.spec.name, task.url) if definitive else None)
                    continue
                known = state.get(self.spec.name, task.url)
                etag = last_mod = None
                if self._may_reuse(known):
                    assert known is not None
                    etag, last_mod = known.etag, known.last_modified
                self._attempted.add(task.url)
                fut = fetch_pool.submit(self._fetch, task.url, etag, last_mod)
                fetching[fut] = (task, known)
                scheduled += 1
            if not fetching and not parsing:
                if self.report.stopped_early is None and len(self.frontier) == 0:
                    return
                if self.report.stopped_early is not None:
                    return
            done, _ = wait([*fetching, *parsing], timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut in fetching:
                    task, known = fetching.pop(fut)  # type: ignore[call-overload]
                    result = fut.result()
                    to_parse = self._on_fetched(task, known, result)
                    if to_parse:
                        if parse_pool is None:
                            self._on_parsed(task, result, known, self._parse_inline(result))
                        else:
                            try:
                                pfut = parse_pool.submit(extract_page, result.body, result.final_url,
                                                         result.charset, result.x_robots, self.extract_options)
                            except BrokenProcessPool:  # a worker died (out of memory?): parse here instead
                                log.warning("crawl %s: parser processes died; parsing in-process", self.spec.name)
                                parse_pool = None
                                self._on_parsed(task, result, known, self._parse_inline(result))
                                continue
                            result.body = None  # the worker has its copy; free ours
                            parsing[pfut] = (task, result, known)
                else:
                    task, result, known = parsing.pop(fut)  # type: ignore[call-overload]
                    try:
                        extract = fut.result()
                    except Exception as exc:  # a crashed worker process: report the page, go on
                        self._fail(task.url, f"parser failed: {type(exc).__name__}: {exc}")
                        continue
                    self._on_parsed(task, result, known, extract)
            self._flush(writer)
            self._tick()

    def _fetch(self, url: str, etag: str | None, last_modified: str | None) -> FetchResult:
        if not self.fetcher.allowed(url):
            result = FetchResult(url=url, final_url=url)
            note = self.fetcher.robots_note(url)
            if note:
                result.error = note
            else:
                result.skip = "disallowed by robots.txt"
            return result
        return self.fetcher.fetch(url, etag=etag, last_modified=last_modified)

    def _parse_inline(self, result: FetchResult) -> PageExtract:
        assert result.body is not None
        try:
            return extract_page(result.body, result.final_url, result.charset, result.x_robots, self.extract_options)
        finally:
            result.body = None

    def _precheck(self, url: str) -> tuple[str | None, bool]:
        """(why ``url`` is not fetched, whether that says the page must leave the index)."""
        why = self.scope.check(url)
        if why:
            return why, True
        ext = extension_of(url)
        if ext in NON_HTML_EXTENSIONS:
            return f"not HTML (.{ext})", True
        if not self.scope.admit_query(url):
            return f"query-string limit: more than {self.cfg.max_query_variants} variants of this path", False
        return None, False

    # -- what a response means ----------------------------------------------------------------------
    def _on_fetched(self, task: Task, known: PageState | None, res: FetchResult) -> bool:
        """Account for a fetch; True when the body must be parsed."""
        rep = self.report
        rep.retries += res.retried
        if res.status:
            rep.fetched += 1
        if res.body is not None:
            rep.bytes += len(res.body)
        final = res.final_url
        if res.error:  # reported under the URL that was asked for; nothing is deleted
            self._fail(task.url, res.error if final == task.url else f"{res.error} (at {final})")
            return False
        if final != task.url:
            for alias in res.aliases:
                self.frontier.mark_seen(alias)
            if known is not None:  # this URL now redirects elsewhere: its old documents go
                self._forget(task.url, known, "redirected")
            if final in self._attempted:
                self._skip(final, f"duplicate (redirect from {task.url})", None, count=False)
                return False
            self._attempted.add(final)
            self.frontier.mark_seen(final)
            known = self._state.get(self.spec.name, final)
        if res.skip:
            self._skip(final, res.skip, known)
            return False
        if res.status == 304 and known is not None:
            rep.not_modified += 1
            self._reuse(task, final, known, res)
            return False
        if res.gone:
            if known is not None:
                rep.pages_gone += 1
                self._forget(final, known, f"HTTP {res.status}")
            else:
                self._skip(final, f"HTTP {res.status} (broken link from {task.referrer or 'start'})", None)
            return False
        if res.body is None:
            self._fail(final, f"HTTP {res.status} without a body")
            return False
        if self._may_reuse(known) and known is not None and known.body_hash == res.body_hash:
            rep.same_hash += 1
            self._reuse(task, final, known, res)
            res.body = None
            return False
        return True

    def _may_reuse(self, known: PageState | None) -> bool:
        """Whether an unchanged page may keep what it was parsed into: not in a full crawl, not when
        it was parsed with other extraction settings, not in the template re-parse."""
        return known is not None and not self.full and not self._repass and known.extract_fp == self.extract_fp

    def _reuse(self, task: Task, url: str, known: PageState, res: FetchResult) -> None:
        """An unchanged page: follow its remembered links, keep its documents, refresh validators."""
        self.report.unchanged += len(known.doc_ids)
        self._follow(known.links, task.depth + 1, url)
        known.etag = res.etag or known.etag
        known.last_modified = res.last_modified or known.last_modified
        self._batch.puts.append(known)

    def _on_parsed(self, task: Task, res: FetchResult, known: PageState | None, ex: PageExtract) -> None:
        url = res.final_url
        if ex.error:
            self._fail(url, ex.error)
            return
        if not self._repass:
            self.report.pages_parsed += 1
        links = [] if ex.nofollow else ex.links
        self._follow(links, task.depth + 1, url)
        page = PageState(url=url, etag=res.etag, last_modified=res.last_modified, body_hash=res.body_hash,
                         links=[u for u in links if self.scope.check(u) is None], extract_fp=self.extract_fp)
        if known is not None:
            self.template.remove(known.blocks)
        reason = None
        if ex.canonical and not _same_page(ex.canonical, url, res.aliases) and self.scope.check(ex.canonical) is None:
            # Index the page once, under its canonical URL (fetched on its own if not yet seen).
            self.frontier.push(ex.canonical, task.depth, url, front=True)
            reason, page.status = f"duplicate of its canonical URL {ex.canonical}", "duplicate"
        if reason is None and ex.noindex:
            reason, page.status = "noindex", "noindex"
        elif reason is None and ex.listing:
            reason, page.status = "directory listing", "listing"
        elif reason is None and not ex.sections:
            reason, page.status = "no text content", "empty"
        if reason:
            self._skip(url, reason, None)
            if known is not None and known.doc_ids:
                self._batch.delete_ids.extend(known.doc_ids)
            self._batch.puts.append(page)
            return
        self._index_page(page, known, ex.title, ex.sections, res.updated)
        size = 2 * sum(len(s.text) for s in ex.sections)  # the text, and again in its blocks
        if not self._repass and not self.dry_run and self._recent_chars + size <= _RECENT_CHARS:
            self._recent[url] = (ex.title, ex.sections, page, res.updated)
            self._recent_chars += size

    def _index_page(self, page: PageState, known: PageState | None, title: str, sections: list[Section],
                    updated: str | None) -> None:
        """Documents of a parsed page's sections without the site template, and its new state."""
        kept, page.blocks, page.template = self.template.apply(sections)
        self.template.add(page.blocks)
        docs = page_documents(self.spec, page.url, title, kept, updated)
        page.doc_ids = [d.id for d in docs]
        self.report.sections += len(docs) - (len(known.doc_ids) if self._repass and known else 0)
        if known is not None:
            new = set(page.doc_ids)
            self._batch.delete_ids.extend(i for i in known.doc_ids if i not in new)
        self._batch.docs.extend(docs)
        self._batch.puts.append(page)

    def _follow(self, links: list[str], depth: int, referrer: str) -> None:
        if self._repass:
            return  # the re-parse revisits known pages only
        for link in links:
            if self.frontier.seen(link):
                continue
            why = self.scope.check(link)
            if why is None:
                self.frontier.push(link, depth, referrer)
                continue
            self.frontier.mark_seen(link)  # count each link once
            if why in TRAP_REASONS:
                self._skip(link, why, None)
            else:
                self.report.links_out_of_scope += 1

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _forget(self, url: str, known: PageState, why: str) -> None:
        log.info("crawl %s: %s gone (%s); removing %d documents", self.spec.name, url, why, len(known.doc_ids))
        self._batch.delete_ids.extend(known.doc_ids)
        self._batch.forget.append(url)
        self.template.remove(known.blocks)

    def _skip(self, url: str, reason: str, known: PageState | None, *, count: bool = True) -> None:
        if count:
            self.report.skipped += 1
        key = reason.split(" (")[0] if reason.startswith(("redirect to", "HTTP 4")) else reason
        key = "duplicate of its canonical URL" if key.startswith("duplicate of its canonical") else key
        self.report.skip_reasons[key] = self.report.skip_reasons.get(key, 0) + 1
        if len(self.report.skips) < MAX_LISTED:
            self.report.skips.append({"item": url, "reason": reason})
        if known is not None and known.doc_ids:
            # The page exists but may no longer be indexed (noindex, too large, not HTML, robots).
            self._forget(url, known, reason)

    def _fail(self, url: str, reason: str) -> None:
        self.report.failed += 1
        self.report.error_reasons[reason] = self.report.error_reasons.get(reason, 0) + 1
        if len(self.report.errors) < MAX_LISTED:
            self.report.errors.append({"item": url, "reason": reason})
        log.warning("crawl %s: %s: %s", self.spec.name, url, reason)

    def _flush(self, writer: _Writer, force: bool = False) -> None:
        batch = self._batch
        if not len(batch):
            return
        if force or len(batch.docs) >= self.cfg.batch_size or len(batch) >= 4 * self.cfg.batch_size \
                or time.monotonic() - self._batch_started > 5.0:
            self._batch = _Batch()
            self._batch_started = time.monotonic()
            writer.queue.put(batch)

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not force and now - self._last_progress < 0.25):
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-6)
        self.progress({"fetched": self.report.fetched, "parsed": self.report.pages_parsed,
                       "queued": len(self.frontier), "errors": self.report.failed, "failed": self.report.failed,
                       "skipped": self.report.skipped, "pages_per_second": self.report.fetched / elapsed,
                       "sections": self.report.sections})

    def _finish(self, state: CrawlState, writer: _Writer) -> None:
        rep = self.report
        if writer.error is not None and rep.stopped_early is None:
            rep.stopped_early = f"index write failed: {writer.error}"
        rep.complete = rep.stopped_early is None and rep.failed == 0
        if rep.complete and not self.dry_run:
            # Pages remembered from earlier runs but not reachable or in scope any more.
            stale = [u for u in state.urls(self.spec.name) if u not in self._attempted]
            ids: list[str] = []
            for url in stale:
                known = state.get(self.spec.name, url)
                if known is not None:
                    ids.extend(known.doc_ids)
            if stale:
                try:
                    if ids:
                        writer.deleted += self.kb.delete(ids)
                    state.apply(self.spec.name, [], stale)
                except KbsearchError as exc:
                    self._fail("(cleanup)", f"removing unreachable pages failed: {exc}")
                    rep.complete = False
        rep.added, rep.updated, rep.deleted = writer.added, writer.updated, writer.deleted
        rep.write_seconds = round(writer.seconds, 3)
        rep.unchanged += writer.unchanged
        rep.seconds = time.monotonic() - self._started
        rep.pages_per_second = rep.fetched / rep.seconds if rep.seconds > 0 else 0.0
        self._tick(force=True)
        log.info("crawl %s: %s", self.spec.name, rep.summary())

    # -- site template ------------------------------------------------------------------------------
    def _reparse_for_template(self, state: CrawlState, fetch_pool: Executor, parse_pool: Executor | None,
                              writer: _Writer) -> None:
        """Fix the site template to this run's counts and parse again (fetching unconditionally)
        the pages parsed under another template decision: the first pages of a site, parsed
        before the counts existed, and pages whose blocks crossed the threshold since.  Then the
        index holds what a full crawl in any order would have produced."""
        if self.dry_run or self.report.stopped_early is not None:
            return
        self._flush(writer, force=True)
        writer.queue.join()  # the crawl state holds every page parsed so far
        if writer.error is not None:
            return
        template = self.template.freeze()
        self.report.template_blocks = len(template)
        stale = [url for url, keys, was in state.block_keys(self.spec.name)
                 if [k for k in keys if k in template] != was]
        if not stale:
            return
        log.info("crawl %s: site template learned; parsing %d pages again", self.spec.name, len(stale))
        self._repass = True
        self.report.template_reparsed = len(stale)
        self.frontier = Frontier(self.cfg.max_depth)
        for url in stale:
            recent, known = self._recent.get(url), state.get(self.spec.name, url)
            if recent is None or known is None:  # parsed in an earlier run: fetched again
                self.frontier.push(url, 1)
                continue
            title, sections, page, updated = recent
            self.template.remove(known.blocks)
            self._index_page(dataclasses.replace(page, doc_ids=[], blocks=[], template=[]), known, title,
                             sections, updated)
            self._flush(writer)
        self._recent.clear()
        self._loop(state, fetch_pool, parse_pool, writer)

    # -- seeds ----------------------------------------------------------------------------------
    def _seed_known(self, state: CrawlState) -> None:
        """Re-check every page remembered from earlier runs (finds deletions without links to them)
        and count their text blocks for the site template."""
        for url in state.urls(self.spec.name):
            self.frontier.push(url, 1)
        for _url, keys, _was in state.block_keys(self.spec.name):
            self.template.add(keys)

    def _seed_sitemaps(self) -> None:
        def unavailable(sitemap: str, why: str) -> None:
            self._skip(sitemap, f"sitemap unavailable ({why})", None)

        for page, sitemap in sitemap_pages(self.fetcher, self.starts, respect_robots=self.cfg.respect_robots,
                                           unavailable=unavailable):
            try:
                url = canonical_url(page)
            except ValueError:
                continue
            if self.scope.check(url) is None and self.frontier.push(url, 1, sitemap):
                self.report.sitemap_urls += 1
