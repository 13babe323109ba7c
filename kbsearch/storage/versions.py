"""Index versions on disk: the live pointer, copy-on-write forks, atomic switches, the writer lock
and clean-up.

An index directory holds complete versions ("generations") side by side and a ``CURRENT`` file
naming the live one.  Nothing is ever written into a published version: every change (a rebuild,
an add, a delete, a refit) is made in a new directory - a fresh one, or a `fork` whose files are
hard links to the live version's - whose changed files are new inodes (`atomic`; Whoosh itself
only ever writes new segment and TOC files).  ``meta.json`` is written last and marks the version
complete; then ``CURRENT`` is replaced with ``os.replace``.  Readers therefore see the old version
or the new one, never half of one, and a writer killed at any instant leaves the old one serving.

A reader holds a `lease` on the version it reads (a shared OS lock on ``readers/<version>.lock``):
clean-up, in any process, removes only versions nobody holds, so a version never disappears under
a reader that opened it, however many writes happen meanwhile (the idea of Lucene's deletion policy
with snapshots).  A reader killed with SIGKILL releases its leases with its process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

try:
    import fcntl
except ImportError:  # not POSIX: no leases; clean-up then relies on keep_generations alone
    fcntl = None  # type: ignore[assignment]

from ..errors import IndexLockedError, IndexNotFoundError
from .atomic import TMP_PREFIX, atomic_file

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
LOCK = "write.lock"
META = "meta.json"
PREFIX = "gen-"
READERS = "readers"


class VersionGoneError(IndexNotFoundError):
    """The version asked for was removed (or is being removed) by clean-up: read the live one."""


def current_generation(root: Path) -> Path | None:
    """The live version directory of ``root``, or None when there is none yet."""
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
    """A cheap fingerprint of the live pointer (inode, mtime): one ``stat`` notices a switch."""
    try:
        st = os.stat(root / CURRENT)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def is_complete(gen: Path) -> bool:
    """Whether ``gen`` was finished (its ``meta.json``, written last, exists)."""
    return (gen / META).is_file()


def new_generation_dir(root: Path) -> Path:
    """Create a fresh, empty, not-yet-complete version directory."""
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


def _skipped(name: str) -> bool:
    """Files a fork does not take over: the completion marker, temporaries, lock files."""
    return name == META or name.startswith(TMP_PREFIX) or name.endswith("LOCK") or ".tmp" in name


def fork(root: Path, live: Path) -> Path:
    """A new, incomplete version holding the same files as ``live`` (hard links: cheap, shared inodes).

    Whoever changes the fork must replace files (`atomic`), never write into them.  Falls back to
    copying where hard links are not supported.
    """
    gen = new_generation_dir(root)
    for dirpath, dirs, files in os.walk(live):
        rel = Path(dirpath).relative_to(live)
        for name in dirs:
            (gen / rel / name).mkdir()
        for name in files:
            if _skipped(name):
                continue
            src, dst = Path(dirpath) / name, gen / rel / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return gen


def write_meta(gen: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` durably: its presence marks the version complete, so write it last."""
    with atomic_file(gen / META, "w") as handle:
        json.dump(meta, handle, indent=2, sort_keys=True)


def read_meta(gen: Path) -> dict[str, Any]:
    with (gen / META).open("r", encoding="utf-8") as handle:
        return json.load(handle)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_inode(path: Path, other: Path) -> bool:
    try:
        a, b = path.stat(), other.stat()
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def switch_to(root: Path, gen: Path, parent: Path | None = None) -> None:
    """Make the complete version ``gen`` live atomically and durably.

    Files shared with ``parent`` (the version ``gen`` was forked from) are already durable and are
    not fsynced again.
    """
    if not is_complete(gen):
        raise IndexNotFoundError(f"{gen} is not complete; it cannot become live")
    for dirpath, _dirs, files in os.walk(gen):
        for name in files:
            path = Path(dirpath) / name
            if parent is not None and _same_inode(path, parent / path.relative_to(gen)):
                continue
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(dirpath))
    with atomic_file(root / CURRENT, "w") as handle:
        handle.write(gen.name + "\n")
    _fsync_dir(root)
    log.info("switched %s to generation %s", root, gen.name)


def _completed_at(gen: Path) -> tuple[int, str]:
    try:
        return ((gen / META).stat().st_mtime_ns, gen.name)
    except FileNotFoundError:
        return (0, gen.name)


def remove_stale(root: Path, keep: int) -> list[str]:
    """Remove incomplete versions and all but the ``keep`` newest complete ones.

    Never removes the live version, the newest complete one, nor one a reader holds a `lease` on
    (a later clean-up removes it once released).  Call only while holding the writer lock: an
    incomplete version is then a dead writer's, never one being built.
    """
    live = current_generation(root)
    gens = [p for p in root.glob(PREFIX + "*") if p.is_dir()]
    complete = sorted((p for p in gens if is_complete(p)), key=_completed_at)
    kept = set(complete[-max(keep, 1):]) | ({live} if live is not None else set())
    removed, held = [], []
    for path in sorted(gens):
        if path in kept:
            continue
        claim = _claim(root, path.name)
        if claim is None:
            held.append(path.name)
            continue
        shutil.rmtree(path, ignore_errors=True)
        _drop_lease_file(root, path.name, claim)
        removed.append(path.name)
    names = {p.name for p in gens} - set(removed)
    for orphan in (root / READERS).glob("*.lock"):  # a reader's, made after its version was removed
        name = orphan.name[:-len(".lock")]
        if name not in names and (claim := _claim(root, name)) is not None:
            _drop_lease_file(root, name, claim)
    if held:
        log.info("kept generations still being read: %s", ", ".join(held))
    for tmp in root.glob(f"{TMP_PREFIX}{CURRENT}.*"):
        tmp.unlink(missing_ok=True)
    for tmp in root.glob(CURRENT + ".tmp*"):  # left by older kbsearch versions
        tmp.unlink(missing_ok=True)
    if removed:
        log.info("removed stale generations: %s", ", ".join(removed))
    return removed


class Lease:
    """A reader's hold on one published version; `release` (or the process ending) lets it go."""

    def __init__(self, gen: Path, fd: int | None) -> None:
        self.gen = gen
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its lock


def _lease_file(root: Path, name: str) -> Path:
    return root / READERS / f"{name}.lock"


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def lease(gen: Path) -> Lease:
    """Hold the complete version ``gen`` for reading: clean-up leaves it on disk until released.

    Never waits: raises `VersionGoneError` when ``gen`` was removed or clean-up is removing it (the
    caller reads ``CURRENT`` again: the live version is never removed).
    """
    try:
        fd = _open_lock(_lease_file(gen.parent, gen.name)) if fcntl is not None else None
    except OSError as exc:  # a read-only copy of the index (a replica's mount): no writer to hold off
        log.debug("no lease on %s (%s)", gen.name, exc)
        fd = None
    if fd is None:
        if not is_complete(gen):
            raise VersionGoneError(f"version {gen.name} was removed")
        return Lease(gen, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VersionGoneError(f"version {gen.name} is being removed") from None
    if not is_complete(gen):  # removed before the lock was taken (its lock file may be a new one)
        os.close(fd)
        raise VersionGoneError(f"version {gen.name} was removed")
    return Lease(gen, fd)


def _claim(root: Path, name: str) -> int | None:
    """An exclusive hold on a version's lease file, or None while any reader holds it."""
    if fcntl is None:
        return -1
    fd = _open_lock(_lease_file(root, name))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _drop_lease_file(root: Path, name: str, fd: int) -> None:
    """Unlink a claimed lease file, then let go of it (a reader that opened it meanwhile finds its
    version gone and reads ``CURRENT`` again)."""
    _lease_file(root, name).unlink(missing_ok=True)
    if fd >= 0:
        os.close(fd)


@contextmanager
def file_lock(path: Path, timeout: float, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the OS file lock at ``path``, waiting up to ``timeout`` seconds for it (0: fail at once).

    The one way kbsearch waits for another writer: callers pass how long to wait instead of retrying
    around the lock.  When it is still held, raises ``busy(waited)``, ``waited`` being " (waited Ns)"
    or "".  An OS file lock, so a holder killed with SIGKILL releases it with its process.
    """
    lock = filelock.FileLock(str(path), timeout=timeout if timeout > 0 else 0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise busy(f" (waited {timeout:g}s)" if timeout > 0 else "") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def writer_lock(root: Path, timeout: float) -> Iterator[None]:
    """Hold the index's single writer lock; wait up to ``timeout`` seconds (0: fail at once)."""
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / LOCK, timeout, lambda waited: IndexLockedError(
            f"another writer is updating {root}{waited}; retry later or set index.writer_timeout to wait")):
        yield
