"""The one cache of things loaded from files: kept while the files are the very same files.

Published versions are never written in place (`kbsearch.storage.atomic`: a changed file is a new
inode), so a file's (device, inode, mtime) says whether what was loaded from it is still what it
holds: one ``stat`` per use instead of a reload.  Used for the live version (its ``CURRENT`` pointer,
`KnowledgeBase._current`), the deflection model (`kbsearch.deflect`) and the routing model
(`kbsearch.peers.service`); a version forked by an add shares unchanged files (hard links) with its
parent, so their loaded models carry over.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

#: What `file_stamp` gives for a missing file.
MISSING = (0, 0, 0)


def file_stamp(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    """(device, inode, mtime in ns) of each file, `MISSING` for one that does not exist: equal stamps
    mean the very same files."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out.append(MISSING)
        else:
            out.append((st.st_dev, st.st_ino, st.st_mtime_ns))
    return tuple(out)


class FileCache(Generic[T]):
    """One value loaded from files, loaded again only when their stamp changes.

    ``lock``: held while loading (default: a lock of its own); pass the owner's lock when the loader
    touches state that lock guards.
    """

    def __init__(self, lock: threading.Lock | threading.RLock | None = None) -> None:
        self._lock = lock if lock is not None else threading.Lock()
        self._entry: tuple[Hashable, T] | None = None

    @property
    def value(self) -> T | None:
        """The value last loaded (None before the first `get` and after `clear`)."""
        entry = self._entry
        return entry[1] if entry is not None else None

    def get(self, stamp: Callable[[], Hashable], load: Callable[[T | None], T],
            reuse: Callable[[T], T] | None = None) -> T:
        """The cached value while ``stamp()`` is unchanged, else ``load(previous value or None)``.

        ``reuse``: applied to a cached value before it is returned (and kept), e.g. to rebind a model
        loaded for one version to another version with the same files.  ``stamp`` is called again under
        the lock, so concurrent callers load once.
        """
        entry = self._entry
        if entry is not None and entry[0] == stamp():
            value = entry[1] if reuse is None else reuse(entry[1])
            if value is entry[1]:
                return value
        with self._lock:
            key, entry = stamp(), self._entry
            if entry is not None and entry[0] == key:
                value = entry[1] if reuse is None else reuse(entry[1])
            else:
                value = load(entry[1] if entry is not None else None)
            self._entry = (key, value)
            return value

    def clear(self) -> None:
        """Forget the value: the next `get` loads."""
        with self._lock:
            self._entry = None
