"""Each source's sync runs and the health they add up to (``kbsearch stats``, ``/api/stats``).

Every sync of a source (a crawl, an import, a source of ``kbsearch reindex``) is recorded in the
``crawl_runs`` table of the knowledge base's crawl state (`kbsearch.sources.crawl.state`), which outlives index
versions: start and end, whether it completed, a one-line reason when not, and its counts.  From the
newest runs a verdict is made for the admin: ``ok``, ``failing since …`` (the first failure after
the last success) or ``stale: last success N days ago``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..sources.crawl.state import CrawlState
from ..errors import KbsearchError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

R = TypeVar("R")
#: Runs read per source to find the last success (older failures beyond it only move "since").
_RUNS_READ = 50
_REASON_MAX = 200


@dataclass
class SourceHealth:
    """One source's last run and health verdict (`KnowledgeBase.source_health`)."""

    source: str
    #: ISO 8601 UTC times of the last run; ``last_finished`` None while running or when it died.
    last_started: str | None = None
    last_finished: str | None = None
    #: ok | failed | unfinished | none (no run recorded)
    outcome: str = "none"
    #: One line on why the last run failed (None when it did not).
    reason: str | None = None
    #: Pages (items) fetched, changed (parsed again, or documents added / updated / deleted) and failed.
    fetched: int = 0
    changed: int = 0
    failed: int = 0
    last_success: str | None = None
    #: ok | failing since <time> (...) | stale: last success N days ago | unfinished since <time> | never synced
    health: str = "never synced"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _reason(report: Any) -> str | None:
    """One line on why ``report``'s run is incomplete (None when complete)."""
    if getattr(report, "complete", True):
        return None
    why = getattr(report, "stopped_early", None)
    errors = getattr(report, "errors", None) or []
    failed = int(getattr(report, "failed", 0) or 0)
    if not why and errors:
        first = errors[0]
        why = f"{failed} failed, first {first.get('item')}: {first.get('reason')}"
    return " ".join(str(why or f"{failed} failed").split())[:_REASON_MAX]


def recorded(root: str | Path, name: str, sync: Callable[[], R], *, settings: Settings | None = None) -> R:
    """Run ``sync`` (one sync of source ``name`` into the knowledge base at ``root``) and record it in
    the crawl state (PostgreSQL with ``settings.store.url``); its exception, if any, is recorded as the
    reason and raised again.  Recording never fails the sync."""
    try:
        state = CrawlState.for_kb(root, settings)
    except KbsearchError as exc:
        log.warning("source %s: the run cannot be recorded: %s", name, exc)
        return sync()
    with state:
        run_id = state.begin_run(name)
        try:
            report = sync()
        except BaseException as exc:
            state.finish_run(run_id, False, {"reason": " ".join(f"{type(exc).__name__}: {exc}".split())[:_REASON_MAX]})
            raise
        data = report.to_dict() if hasattr(report, "to_dict") else dict(report)  # type: ignore[call-overload]
        summary = {k: v for k, v in data.items() if k not in ("errors", "skips", "after_build")}
        summary["reason"] = _reason(report)
        state.finish_run(run_id, bool(data.get("complete", True)), summary)
    return report


def source_health(root: str | Path, sources: list[str], stale_after_days: float,
                  now: float | None = None, *, settings: Settings | None = None) -> list[SourceHealth]:
    """The last run and health of each of ``sources`` plus every source with recorded runs."""
    now = time.time() if now is None else now
    with CrawlState.for_kb(root, settings) as state:
        names = list(dict.fromkeys([*sources, *state.run_sources()]))
        return [_health(name, state.last_runs(name, _RUNS_READ), stale_after_days, now) for name in names]


def _health(name: str, runs: list[dict[str, Any]], stale_after_days: float, now: float) -> SourceHealth:
    out = SourceHealth(source=name)
    if not runs:
        return out
    last = runs[0]
    summary = last.get("summary") or {}
    out.last_started, out.last_finished = _iso(last["started"]), _iso(last["finished"])
    if last["finished"] is None:
        out.outcome = "unfinished"
        out.reason = "did not finish (still running, or the process died)"
    else:
        out.outcome = "ok" if last["complete"] else "failed"
        out.reason = summary.get("reason") if not last["complete"] else None
    out.fetched = int(summary.get("fetched", 0) or 0)
    out.failed = int(summary.get("failed", 0) or 0)
    parsed = summary.get("pages_parsed")
    out.changed = int(parsed if parsed is not None else sum(int(summary.get(k, 0) or 0)
                                                          for k in ("added", "updated", "deleted")))
    success = next((r for r in runs if r["complete"] and r["finished"] is not None), None)
    out.last_success = _iso(success["finished"]) if success else None
    if out.outcome == "unfinished":
        out.health = f"unfinished since {out.last_started} (running, or the process died)"
    elif out.outcome == "failed":
        failures = runs[:runs.index(success)] if success else runs
        since = _iso(failures[-1]["started"])
        ago = f"last success {_days(now - success['finished'])} ago" if success else "never succeeded"
        out.health = f"failing since {since} ({ago})"
    elif success is not None and now - success["finished"] > stale_after_days * 86400:
        out.health = f"stale: last success {_days(now - success['finished'])} ago"
    else:
        out.health = "ok"
    return out


def _days(seconds: float) -> str:
    days, hours = round(seconds / 86400), round(seconds / 3600)
    return f"{days} days" if seconds >= 2 * 86400 else f"{hours} hour{'' if hours == 1 else 's'}"


def with_health(sources: list[Any], health: list[SourceHealth]) -> list[dict[str, Any]]:
    """Each source's counts (`_index_admin.SourceStats`) with its last run and health under ``run``;
    a source with runs but no documents (a crawl that never succeeded) is listed with zero counts."""
    from ._index_admin import SourceStats

    by_name = {h.source: h for h in health}
    rows = []
    for item in [*sources, *(SourceStats(source=n) for n in by_name if n not in {s.source for s in sources})]:
        row = item.to_dict()
        found = by_name.get(item.source)
        row["run"] = {k: v for k, v in found.to_dict().items() if k != "source"} if found else None
        rows.append(row)
    return rows


def describe(run: dict[str, Any] | None) -> str:
    """One line on a source's last run and health, for the terminal."""
    if not run or run["outcome"] == "none":
        return "no sync recorded"
    end = f" to {run['last_finished']}" if run["last_finished"] else ""
    what = run["outcome"] + (f" ({run['reason']})" if run.get("reason") else "")
    return (f"last run {run['last_started']}{end}: {what}; {run['fetched']} fetched, {run['changed']} changed, "
            f"{run['failed']} failed; health: {run['health']}")
