"""`KnowledgeBase`: the one front door to kbsearch.

Portals, the CLI and the web layer call these methods and nothing below them.  A knowledge base is
a directory of index generations (see `search._generations`); reads always go to the live generation and
follow a switch made by another process; writes take the single writer lock.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .search import _generations as gens
from . import _kb_write
from ._kb_peers import PeerDesk
from ._build_reports import AddReport, BuildReport, IndexStats
from .search._generations import Generation
from .config import Settings
from .documents import Document, Hit
from .errors import IndexNotFoundError
from .index import EngineIndex
from .search.rerank import TfidfModel, VectorCache
from .search import ALL_GROUPS
from .storage.filecache import FileCache

if TYPE_CHECKING:
    from .deflect import Decision, Deflector
    from .ops._index_admin import DeleteReport, SourceStats
    from .ops._source_runs import SourceHealth
    from .ops._state_move import MoveReport
    from .ops.reindex import ReindexReport
    from .ops.report import DeflectionReport
    from .sources import Source, SourceReport
    from .sources.crawl import CrawlReport
    from .storage.usage import FeedbackRecord, UsageLog

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


class _Opened:
    """The versions a knowledge base opened that may still be open."""

    def __init__(self) -> None:
        self.generations: list[Generation] = []

    def add(self, gen: Generation) -> None:
        self.generations = [g for g in self.generations if not g.closed] + [gen]

    def close_all(self) -> None:
        gens, self.generations = self.generations, []
        for gen in gens:
            gen.close()


class KnowledgeBase(PeerDesk):
    """Intranet pages and past peer answers in one index; search them, add to them, rebuild them.

    Open with `KnowledgeBase.open(path)`; it is safe to share between threads.
    """

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self._lock = threading.RLock()
        # The live version, reopened when ``CURRENT`` is another file; loading retires the one replaced,
        # under the lock that `_using` pins versions with.
        self._live: FileCache[Generation] = FileCache(self._lock)
        self._retired: list[Generation] = []
        #: The live version's deflection model and calibration (`deflect._deflector`).
        self._deflect_cache: FileCache[Deflector] = FileCache()
        self._cache = VectorCache()
        # The index files of the versions opened here are closed by `close`, or when this object is
        # garbage-collected unclosed (before the files' own finalizers would warn of them).
        self._opened = _Opened()
        weakref.finalize(self, self._opened.close_all)

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        settings: Settings | None = None,
        create: bool = True,
        config_file: str | Path | None = None,
    ) -> KnowledgeBase:
        """Open the knowledge base at ``path`` (default ``indexes/default``), creating it if asked.

        ``settings`` defaults to `Settings.load` (config file < ``KBSEARCH_*`` environment).
        """
        settings = settings or Settings.load(config_file=config_file)
        if path is not None:
            settings.index.path = Path(path)
        root = Path(settings.index.path)
        kb = cls(root, settings)
        if gens.current_generation(root) is None:
            if not create:
                raise IndexNotFoundError(f"no index at {root} (build one with `kbsearch index add`)")
            kb._create_empty()
        kb._current()
        return kb

    def _create_empty(self) -> None:
        with gens.writer_lock(self.root, self.settings.index.writer_timeout):
            if gens.current_generation(self.root) is not None:
                return
            gen = gens.new_generation_dir(self.root)
            EngineIndex.create(gen).close()
            TfidfModel.empty().save(gen)
            gens.write_meta(gen, _kb_write.new_meta(0, 0))
            gens.switch_to(self.root, gen)

    def _current(self) -> Generation:
        """The live version, reopened when a writer (here or in another process) switched ``CURRENT``.

        Versions never change once published, so one ``stat`` of the pointer tells whether this is current.
        """
        return self._live.get(lambda: gens.pointer_stamp(self.root), self._open_live)

    def _open_live(self, old: Generation | None) -> Generation:
        """Open the version ``CURRENT`` names; retire ``old`` (called by `_current`, under the lock)."""
        for attempt in range(5):
            path = gens.current_generation(self.root)
            if path is None:
                raise IndexNotFoundError(f"no index at {self.root}")
            try:
                fresh = Generation(path, self.settings, self._cache)
                break
            except gens.VersionGoneError:  # replaced and removed since CURRENT was read: read it again
                if attempt == 4:
                    raise
        # Close what nobody uses any more (readers pin what they read, `_using`): closing lets go of
        # the version's lease, so that clean-up may remove it.
        still = []
        for gen in [*self._retired, *([old] if old is not None else [])]:
            if gen.users:
                still.append(gen)
            else:
                gen.close()
        self._retired = still
        self._opened.add(fresh)
        return fresh

    @contextmanager
    def _using(self) -> Iterator[Generation]:
        """Pin the live generation for the duration of a read."""
        with self._lock:
            live = self._current()
            live.users += 1
        try:
            yield live
        finally:
            with self._lock:
                live.users -= 1

    @property
    def generation_path(self) -> Path:
        """Directory of the live generation (models and calibration stored with the index live here)."""
        return self._current().path

    def close(self) -> None:
        """Close the open index versions and release the peer store's and the usage log's connections;
        using the knowledge base again reopens what it needs."""
        with self._lock:
            live = self._live.value
            for gen in [*self._retired, *([live] if live else [])]:
                gen.close()
            self._retired = []
            self._live.clear()
            loop, self._peer_loop = getattr(self, "_peer_loop", None), None
            usage, self._usage_log = getattr(self, "_usage_log", None), None
        if loop is not None:
            loop.close()
        if usage is not None:
            usage.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def search(
        self,
        question: str,
        *,
        limit: int | None = None,
        user_groups: Iterable[str] | None | object = None,
        kinds: Collection[str] | None = None,
    ) -> list[Hit]:
        """Answer-first ranked hits for a natural-language ``question``.

        ``user_groups``: the asker's groups; restricted documents outside them are never returned
        (None or empty: public documents only; `ALL_GROUPS`: no filter, for trusted operators).
        """
        with self._using() as live:
            return live.searcher.search(question, limit=limit, user_groups=user_groups, kinds=kinds)

    def get(self, doc_id: str, *, user_groups: Iterable[str] | None | object = ALL_GROUPS) -> Document | None:
        """The document with ``doc_id``, or None (also None when the user may not see it)."""
        from .search import normalise_groups

        with self._using() as live:
            if not live.engine.visible(doc_id, normalise_groups(user_groups)):
                return None
            return live.engine.get(doc_id)

    def visible_words(self, text: str, groups: Iterable[str] | None | object = ALL_GROUPS) -> str:
        """``text`` without the words found in no document a member of ``groups`` may see (`access`)."""
        from .access import normalise_groups, visible_words

        with self._using() as live:
            return visible_words(text, live.engine, normalise_groups(groups))

    def documents(self) -> Iterator[Document]:
        """Every document of the live generation (streamed)."""
        with self._using() as live:
            yield from live.engine.iter_documents()

    def ids(self, source: str | None = None) -> list[str]:
        """Ids of every document, or of those from ``source``."""
        with self._using() as live:
            return list(live.engine.ids(source))

    def stats(self) -> IndexStats:
        pages = answers = restricted = 0
        with self._using() as live:
            for doc in live.engine.iter_documents():
                pages += doc.kind == "page"
                answers += doc.kind == "answer"
                restricted += doc.restricted
            size = sum(p.stat().st_size for p in live.path.rglob("*") if p.is_file())
            from .deflect._calibration import Calibration

            cal = Calibration.load(live.path)
            conservative = cal.report.get("conservative") if cal is not None else "not calibrated yet"
        return IndexStats(
            path=str(self.root), generation=live.path.name, documents=pages + answers, pages=pages,
            answers=answers, restricted=restricted, size_bytes=size,
            model_fitted_on=live.model.fitted_on, created=live.meta.get("created"),
            deflection=f"suggests only: {conservative}" if conservative else "calibrated",
        )

    # -- writing ---------------------------------------------------------------------------
    def add(self, documents: Iterable[Document], *, progress: Progress | None = None,
            refit: bool = True, lock_timeout: float | None = None) -> AddReport:
        """Add or update documents by id; unchanged ones are skipped.  The change is a new version.

        Writes are committed in batches of ``index.batch_size``: if the stream raises part-way,
        earlier batches are still published and the error says how many (re-running is safe).
        ``refit``: refit a small, grown index's models now (sources and crawls pass False and refit
        once when they finish; a reindex rebuilds instead).  ``lock_timeout``: seconds to wait for
        another writer (default ``index.writer_timeout``; then `IndexLockedError`), here and below.
        """
        return _kb_write.add(self, documents, progress, refit, lock_timeout)

    def delete(self, ids: Iterable[str], *, lock_timeout: float | None = None) -> int:
        """Delete documents by id; returns how many existed."""
        return _kb_write.delete(self, ids, lock_timeout)

    def delete_documents(self, ids: Iterable[str] = (), *, source: str | None = None) -> DeleteReport:
        """Delete documents by id and/or every document of ``source`` (one new version, copy-on-write);
        an `_index_admin.DeleteReport` with the count and the ids not found."""
        from .ops._index_admin import delete_documents

        return delete_documents(self, ids, source=source)

    def source_stats(self) -> list[SourceStats]:
        """Documents per source of the live version (`_index_admin.SourceStats`), most first."""
        from .ops._index_admin import source_stats

        return source_stats(self)

    def source_health(self, *, sources: Iterable[str] | None = None, now: float | None = None) -> list[SourceHealth]:
        """Each source's last sync run and health verdict (`_source_runs.SourceHealth`): start and
        end, ok / failed with a one-line reason, pages fetched / changed / failed, and ``ok``,
        ``failing since …`` or ``stale: last success N days ago`` (``index.stale_after_days``).
        ``sources``: names to include even without runs (default: those in the index)."""
        from .ops._source_runs import source_health

        names = [s.source for s in self.source_stats()] if sources is None else list(sources)
        return source_health(self.root, names, self.settings.index.stale_after_days, now, settings=self.settings)

    def move_to_postgresql(self) -> MoveReport:
        """Copy this knowledge base's SQLite state (escalations, outbox, usage log, crawl state) into
        the PostgreSQL of ``store.url``, which must hold none of it yet; the files stay (no longer read)."""
        from .ops._state_move import move_to_postgresql

        return move_to_postgresql(self.root, self.settings)

    def refit(self, timings: dict[str, object] | None = None, *, calibrate: bool = True,
              lock_timeout: float | None = None) -> bool:
        """Refit a small, grown index's TF-IDF model, router and (``calibrate``) deflection as a new
        version; large indexes are refitted by `rebuild`.  Returns whether it refitted."""
        return _kb_write.refit(self, timings, calibrate=calibrate, lock_timeout=lock_timeout)

    def rebuild(self, documents: Iterable[Document], *, progress: Progress | None = None,
                lock_timeout: float | None = None) -> BuildReport:
        """Build a new version from ``documents`` and switch to it atomically.

        Answered escalations of the peer store that ``documents`` does not hold are added too (they
        live in the store, not in any source).  Readers keep using the previous version until the
        switch; if this fails or the process is killed, the previous version stays live and the
        partial one is removed next time.
        """
        if self.settings.deflect.encoder not in ("auto", "off"):
            from .search._encoder import load_encoder

            load_encoder(self.settings.deflect.encoder)  # a named model that cannot be used fails here, not later
        return _kb_write.rebuild(self, documents, progress, lock_timeout)

    def _after_build(self, generation: Generation, steps: dict[str, Any], *, calibrate: bool = True) -> None:
        """Steps that must follow a new corpus model (e.g. deflection calibration); see deflect."""
        steps["route"] = self._fit_router(generation)
        if calibrate:
            steps["deflect"] = self._fit_deflection(generation)
        else:
            log.info("deflection not recalibrated; the next rebuild or reindex will")
            steps["deflect"] = {"deferred": "recalibrated by the next rebuild or reindex"}

    # -- operations (reindex, report) ----------------------------------------------------------
    def reindex(
        self,
        sources: str | Path | Iterable[Source] | None = None,
        *,
        only: Collection[str] | None = None,
        full: bool = False,
        wait: float | None = None,
        progress: Callable[[dict[str, object]], None] | None = None,
    ) -> ReindexReport:
        """Sync every source (a ``crawlers/`` directory or Source objects), then rebuild atomically.

        ``only`` names the sources to sync; ``full`` ignores incremental state; ``wait`` is how long to
        wait for a running reindex (default ``web.reindex_wait``). Returns a `reindex.ReindexReport`.
        """
        from .ops import reindex as _reindex
        from .sources import load_sources

        if sources is None or isinstance(sources, (str, Path)):
            sources = load_sources(sources if sources is not None else self.settings.web.sources_dir)
        chosen = _reindex.select(list(sources), list(only) if only else None)
        return _reindex.run(self, chosen, live=self._current, rebuild_reason=lambda: _kb_write.rebuild_reason(self),
                            full=full, progress=progress, wait=self.settings.web.reindex_wait if wait is None else wait)

    def report(self, *, days: int = 90, now: datetime | None = None) -> DeflectionReport:
        """The deflection report of the last ``days`` days from the usage log and the escalation store.

        Returns a `report.DeflectionReport` (``.to_dict()``; `report.render_text` / `render_html`).
        """
        from . import deflect
        from .ops import report as _report

        try:
            deflector = deflect._deflector(self)
        except IndexNotFoundError:  # nothing built yet
            deflector = None
        return _report.build(self, days=days, now=now, deflector=deflector)

    # -- crawl ---------------------------------------------------------------------------------
    def crawl(
        self,
        start_urls: str | Iterable[str],
        *,
        name: str | None = None,
        full: bool = False,
        dry_run: bool = False,
        calibrate: bool = False,
        progress: Callable[[dict[str, object]], None] | None = None,
        **options: object,
    ) -> CrawlReport:
        """Crawl intranet pages from ``start_urls`` into this knowledge base, incrementally.

        The scope defaults to the start URLs' hosts and directories.  ``options`` are `CrawlConfig`
        settings (``max_pages``, ``delay``, ...) and source keys (``allowed_prefixes``, ``exclude``,
        ``allowed_groups``, ``auth={...}``); ``name`` (default: the first URL's host) keeps the
        documents and crawl state of different crawls apart; ``full`` re-parses unchanged pages;
        ``dry_run`` writes nothing.  The search model is refitted after the crawl; deflection is
        recalibrated only with ``calibrate=True`` (it costs as much as the crawl again on a
        pages-only index; the nightly `reindex` recalibrates, and until then `ask` finds new pages
        through search).  Returns a `crawl.CrawlReport`.
        """
        from .errors import IndexLockedError
        from .sources.web import WebSource, default_name

        urls = [start_urls] if isinstance(start_urls, str) else list(start_urls)
        source = WebSource(name or default_name(urls), urls, **options)
        # The crawl's batches are added with refit=False: the model is refitted (and recalibrated) once, here.
        if dry_run:
            report = source.sync(self, full=full, progress=progress, dry_run=True)
        else:  # recorded for `source_health`
            from .ops._source_runs import recorded

            report = recorded(self.root, source.name, lambda: source.sync(self, full=full, progress=progress),
                              settings=self.settings)
        if not dry_run and (report.added or report.updated):
            timings: dict[str, Any] = {}
            try:
                self.refit(timings, calibrate=calibrate, lock_timeout=max(self.settings.index.writer_timeout, 30.0))
            except IndexLockedError as exc:
                log.warning("crawl: the model was not refitted (%s); `kbsearch reindex` will", exc)
            report.refit_seconds = round(timings.get("refit_seconds", 0.0), 3)
            report.after_build_seconds = round(timings.get("after_build_seconds", 0.0), 3)
            report.after_build = timings.get("steps", {})
        return report

    # -- deflect -------------------------------------------------------------------------------
    def ask(self, question: str, *, user: str | None = None, groups: Iterable[str] | None = None,
            escalate: bool = False) -> Decision:
        """Decide whether the index answers ``question`` (ANSWER / SUGGEST / ESCALATE), with why.

        ``groups``: the asker's groups (restricted documents of other groups are never used).
        With ``escalate=True`` an ESCALATE decision is escalated to the routed peer group.  Every
        ask is logged in ``usage.sqlite3``.  Returns a `deflect.Decision`.
        """
        from . import deflect

        return deflect.ask(self, question, user=user, groups=groups, escalate=escalate)

    def ask_many(self, questions: Iterable[str], *, groups: Iterable[str] | None | object = None,
                 progress: Callable[[int, int], None] | None = None) -> list[Decision]:
        """Decisions for many questions in one batch (not logged, never escalated): evaluation, reports."""
        from . import deflect

        return deflect.decide_many(self, list(questions), groups=groups, progress=progress)

    def feedback(self, decision_id: str, helpful: bool, *, user: str | None = None,
                 comment: str | None = None, escalated: bool = False, answer_id: str | None = None) -> FeedbackRecord:
        """Record "did this answer your question?" for a logged decision; feeds the next calibration.

        ``escalated=True`` records that the asker went to the peers after an answer (not helpful).
        ``answer_id``: which of the answers shown solved it (a SUGGEST's answers are several).
        """
        return self.usage.add_feedback(decision_id, helpful, escalated=escalated, user=user, comment=comment,
                                       answer_id=answer_id)

    @property
    def usage(self) -> UsageLog:
        """The usage log (`usage.UsageLog`) of this knowledge base."""
        log_ = getattr(self, "_usage_log", None)
        if log_ is None:
            from .storage.usage import open_usage

            log_ = self._usage_log = open_usage(self.root, self.settings)
        return log_

    def _fit_deflection(self, generation: Generation) -> dict[str, Any]:
        from . import deflect

        return deflect.after_build(self, generation)

    def import_source(self, source: Source | str, *, full: bool = False,
                      progress: Callable[[dict[str, object]], None] | None = None, **options: object) -> SourceReport:
        """Stream a Q&A export or API into the index: a `sources.Source`, or a type name with its options.

        E.g. ``kb.import_source("stackexchange", path="Posts.xml", name="teams")``; returns a `SourceReport`.
        """
        from .sources import make_source

        if isinstance(source, str):
            name = options.pop("name", None) or source
            source = make_source(str(name), {"type": source, **options})
        from .ops._source_runs import recorded

        report = recorded(self.root, source.name, lambda: source.sync(self, full=full, progress=progress),
                              settings=self.settings)
        # (its adds were made with refit=False...)
        if getattr(report, "added", 0) or getattr(report, "updated", 0):
            self.refit()  # ...so the models are refitted once, after the whole import
        return report

    def _fit_router(self, generation: Generation) -> dict[str, Any]:
        from .peers.route import fit_for_generation

        return fit_for_generation(self.settings, generation)
