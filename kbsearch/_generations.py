"""Index generations on disk: the live pointer, atomic switches, the writer lock and clean-up;
and `Generation`, one opened generation.

An index directory holds complete generations side by side and a ``CURRENT`` file naming the live
one.  A rebuild writes a new generation, marks it complete, then replaces ``CURRENT`` with
``os.replace`` (atomic on POSIX): readers see the old generation or the new one, never half of one.
A rebuild that dies leaves an incomplete directory that the next writer removes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from .config import Settings
from .errors import IndexLockedError, IndexNotFoundError
from .index import EngineIndex
from .rerank import Ranker, TfidfModel, VectorCache, make_ranker
from .search import Searcher

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
LOCK = "write.lock"
META = "meta.json"
PREFIX = "gen-"


def current_generation(root: Path) -> Path | None:
    """The live generation directory of ``root``, or None when there is none yet."""
    try:
        name = (root / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not name or "/" in name or not name.startswith(PREFIX):
        raise IndexNotFoundError(f"{root / CURRENT} does not name a generation")
    path = root / name
    if not (path / META).is_file():
        raise IndexNotFoundError(f"live generation {path} is missing")
    return path


def pointer_stamp(root: Path) -> tuple[int, int] | None:
    """A cheap fingerprint of the live pointer (inode, mtime) to notice a switch."""
    try:
        st = os.stat(root / CURRENT)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def new_generation_dir(root: Path) -> Path:
    """Create a fresh, empty, not-yet-complete generation directory."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for n in range(1000):
        path = root / f"{PREFIX}{stamp}-{os.getpid()}-{n:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise IndexLockedError(f"cannot create a new generation in {root}")


def write_meta(gen: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` durably: its presence marks the generation complete."""
    tmp = gen / (META + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, gen / META)


def read_meta(gen: Path) -> dict[str, Any]:
    with (gen / META).open("r", encoding="utf-8") as handle:
        return json.load(handle)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def switch_to(root: Path, gen: Path) -> None:
    """Make ``gen`` the live generation atomically (and durably)."""
    for dirpath, _dirs, files in os.walk(gen):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(dirpath))
    tmp = root / (CURRENT + f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(gen.name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / CURRENT)
    _fsync_dir(root)
    log.info("switched %s to generation %s", root, gen.name)


def remove_stale(root: Path, keep: int) -> list[str]:
    """Remove incomplete generations and all but the ``keep`` newest complete ones (never the live one).

    Call only while holding the writer lock, so no rebuild is in progress.
    """
    live = current_generation(root)
    gens = sorted(p for p in root.glob(PREFIX + "*") if p.is_dir())
    complete = [p for p in gens if (p / META).is_file()]
    removed = []
    for path in gens:
        if path == live:
            continue
        stale = not (path / META).is_file() or path not in complete[-max(keep, 1):]
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    for tmp in root.glob(CURRENT + ".tmp*"):
        tmp.unlink(missing_ok=True)
    if removed:
        log.info("removed stale generations: %s", ", ".join(removed))
    return removed


@contextmanager
def writer_lock(root: Path, timeout: float) -> Iterator[None]:
    """Hold the index's single writer lock; wait up to ``timeout`` seconds (0: fail at once).

    The lock is an OS file lock, so a writer killed with SIGKILL releases it with its process.
    """
    root.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(root / LOCK), timeout=timeout if timeout > 0 else 0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise IndexLockedError(
            f"another writer is updating {root}"
            + (f" (waited {timeout:g}s)" if timeout > 0 else "")
            + "; retry later or set index.writer_timeout to wait"
        ) from None
    try:
        yield
    finally:
        lock.release()


class Generation:
    """One complete, opened generation: engine, TF-IDF model, ranker and searcher.

    Callers pin it while they use it (`KnowledgeBase._using`); a generation replaced by a switch is
    closed only once nobody uses it any more.
    """

    def __init__(self, path: Path, settings: Settings, cache: VectorCache) -> None:
        self.path = path
        self.meta = read_meta(path)
        self.engine = EngineIndex.open(path)
        self.model_stamp = model_stamp(path)
        self.model = TfidfModel.load(path)
        self.ranker: Ranker = make_ranker(settings.rerank, self.model, cache)
        self.searcher = Searcher(self.engine, self.ranker, settings.search)
        self.users = 0
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.close()


def model_stamp(path: Path) -> int:
    """When the generation's TF-IDF model was last written (a refit replaces it in place); 0 if none."""
    try:
        return (path / "model" / "tfidf.json").stat().st_mtime_ns
    except FileNotFoundError:
        return 0
