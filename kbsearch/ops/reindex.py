"""The nightly reindex: sync every source incrementally, then rebuild and switch atomically.

A reindex costs what changed: when no source changed anything and nothing else did since the last
rebuild (`_skip_reason`), the rebuild is skipped and the report's ``build`` says so.

Safe to run from cron or a systemd timer:

* a lock file (``<index>/reindex.lock``, an OS lock released even on SIGKILL) stops two runs from
  overlapping: the second waits up to ``wait`` seconds, then raises `ReindexRunningError`;
* searches keep working: sources write through `KnowledgeBase.add/delete` and the rebuild writes a
  new generation that becomes live with one atomic rename;
* a source that fails (raises, or reports ``complete=False``) keeps its previous documents: the
  rebuild copies whatever the live generation holds, and a source only deletes what it saw gone;
* the report says what happened and `ReindexReport.exit_code` tells monitoring (0 ok, 2 some
  source failed but the index was rebuilt, 1 error, 75 another run holds the lock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._source_runs import recorded
from ..errors import ConfigError, IndexLockedError, KbsearchError
from ..storage.versions import file_lock

if TYPE_CHECKING:
    from ..search._generations import Generation
    from .._protocols import Rebuildable
    from ..sources import Source

log = logging.getLogger(__name__)

LOCK_NAME = "reindex.lock"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 2
EXIT_RUNNING = 75  # EX_TEMPFAIL: try again later

#: Progress events: {"stage": "sync"|"build"|"done", "source": name, ...counts}.
Progress = Callable[[dict[str, Any]], None]


class ReindexRunningError(IndexLockedError):
    """Another ``kbsearch reindex`` holds the reindex lock of this index."""


@dataclass
class ReindexReport:
    """What one reindex run did: per-source reports, the rebuild, and the overall status."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    build: dict[str, Any] | None = None
    seconds: float = 0.0
    waited: float = 0.0

    @property
    def status(self) -> str:
        if self.build is None:
            return "failed"
        return "partial" if self.failed else "ok"

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "partial": EXIT_PARTIAL}.get(self.status, EXIT_ERROR)

    def totals(self) -> dict[str, int]:
        keys = ("fetched", "added", "updated", "unchanged", "deleted", "skipped", "failed")
        return {k: sum(int(s.get(k, 0) or 0) for s in self.sources) for k in keys}

    def summary(self) -> str:
        """One line for logs and monitoring."""
        t = self.totals()
        ok = len(self.sources) - len(self.failed)
        parts = [f"reindex {self.status}: {len(self.sources)} sources ({ok} ok"
                 + (f", failed: {', '.join(self.failed)}" if self.failed else "") + ")",
                 f"+{t['added']} ~{t['updated']} -{t['deleted']} documents, {t['failed']} item errors"]
        if self.build:
            parts.append(f"{self.build.get('documents', 0)} in index -> {self.build.get('generation', '')}")
        parts.append(f"{self.seconds:.1f}s")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, "sources": self.sources,
                "failed": self.failed, "totals": self.totals(), "build": self.build,
                "seconds": round(self.seconds, 3), "waited": round(self.waited, 3), "summary": self.summary()}


def lock_path(kb: Rebuildable) -> Path:
    return Path(kb.root) / LOCK_NAME


def select(sources: Sequence[Source], only: Sequence[str] | None) -> list[Source]:
    """The sources named in ``only`` (all when None); an unknown name is a `ConfigError`."""
    if not only:
        return list(sources)
    names = {s.name: s for s in sources}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ConfigError(f"unknown source {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(names)) or 'none'})")
    return [names[n] for n in only]


def run(kb: Rebuildable, sources: Sequence[Source], *, live: Callable[[], Generation],
        rebuild_reason: Callable[[], str | None], full: bool = False, wait: float = 0.0,
        progress: Progress | None = None, lock_wait: float = 60.0) -> ReindexReport:
    """Sync ``sources`` into ``kb`` and rebuild it, holding the reindex lock (see the module docstring).

    ``live``: the live version; ``rebuild_reason``: why its models are out of date, or None (then an
    incremental run that changed nothing skips the rebuild).  The front door passes both.
    ``wait``: seconds to wait for a running reindex (0: fail at once with `ReindexRunningError`).
    ``lock_wait``: seconds the final rebuild waits while another writer (e.g. an answer being
    indexed) briefly holds the index's writer lock.
    """
    report = ReindexReport()
    started = time.perf_counter()
    Path(kb.root).mkdir(parents=True, exist_ok=True)
    emit = progress or (lambda event: None)
    with file_lock(lock_path(kb), wait, lambda waited: ReindexRunningError(
            f"another reindex of {kb.root} is running{waited}; this run did nothing")):
        report.waited = time.perf_counter() - started
        for source in sources:  # sources add with refit=False: the rebuild below refits once
            _sync_one(kb, source, full, emit, report)
        reason = None if full else _skip_reason(report, rebuild_reason)
        if reason is not None:
            current = live()
            report.build = {"skipped": reason, "generation": current.path.name,
                            "documents": current.engine.doc_count()}
            log.info("reindex: no rebuild (%s)", reason)
        else:
            emit({"stage": "build", "documents": 0})
            build = kb.rebuild(kb.documents(), progress=lambda n: emit({"stage": "build", "documents": n}),
                               lock_timeout=lock_wait)
            report.build = build.to_dict()
    report.seconds = time.perf_counter() - started
    emit({"stage": "done", "summary": report.summary()})
    log.info("%s", report.summary())
    return report


def _skip_reason(report: ReindexReport, rebuild_reason: Callable[[], str | None]) -> str | None:
    """"nothing changed" when a rebuild would rebuild the same models (then it is skipped), else None.

    Nothing changed when every source completed and added, updated and deleted nothing, no document
    changed and no feedback arrived since the last rebuild, and the settings shaping the models are
    the same (``rebuild_reason``).
    """
    if report.failed or any(int(s.get(k, 0) or 0) for s in report.sources for k in ("added", "updated", "deleted")):
        return None
    return "nothing changed" if rebuild_reason() is None else None


def _sync_one(kb: Rebuildable, source: Source, full: bool, emit: Progress, report: ReindexReport) -> None:
    name = getattr(source, "name", type(source).__name__)
    emit({"stage": "sync", "source": name})
    t0 = time.perf_counter()

    def forward(event: dict[str, Any]) -> None:
        emit({"stage": "sync", "source": name, **event})

    try:
        result = recorded(kb.root, name, lambda: source.sync(kb, full=full, progress=forward), settings=kb.settings)
    except Exception as exc:  # noqa: BLE001 - one failing source must not stop the others
        if isinstance(exc, KbsearchError):
            log.error("source %s failed: %s (its previous documents are kept)", name, exc)
        else:
            log.exception("source %s failed unexpectedly (its previous documents are kept)", name)
        report.failed.append(name)
        report.sources.append({"source": name, "complete": False, "seconds": round(time.perf_counter() - t0, 3),
                               "error": f"{type(exc).__name__}: {exc}"})
        emit({"stage": "sync-failed", "source": name, "error": str(exc)})
        return
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    data.setdefault("source", name)
    if not data.get("complete", True):
        report.failed.append(name)
        log.warning("source %s did not complete (%s errors); nothing of it was deleted", name,
                    len(data.get("errors", [])))
    report.sources.append(data)
    emit({"stage": "synced", **{k: data.get(k) for k in ("source", "added", "updated", "deleted", "failed")}})

