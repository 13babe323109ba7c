"""`Generation`, one opened index version (engine, TF-IDF model, ranker, searcher).

The versions on disk themselves (pointer, forks, switches, writer lock, clean-up) belong to
`kbsearch.storage.versions`, re-exported here for the callers that use them through this module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import Settings
from ..index import EngineIndex
from .rerank import Ranker, TfidfModel, VectorCache, make_ranker
from . import Searcher
from .vectors import Meaning
from ..storage.versions import (  # noqa: F401 - re-exported
    CURRENT,
    LOCK,
    VersionGoneError,
    META,
    PREFIX,
    current_generation,
    fork,
    is_complete,
    lease,
    new_generation_dir,
    pointer_stamp,
    read_meta,
    remove_stale,
    switch_to,
    write_meta,
    writer_lock,
)

log = logging.getLogger(__name__)


class Generation:
    """One opened version: engine, TF-IDF model, ranker and searcher.

    A published version never changes on disk, so its engine skips Whoosh's per-search freshness
    check.  Callers pin it while they use it (`KnowledgeBase._using`); a version replaced by a
    switch is closed only once nobody uses it any more.  An opened published version holds a
    `lease` on its directory, so that no writer, in any process, removes it while it is open.
    ``meta`` is given for a version still being built (it has no ``meta.json`` until it is
    complete).  Raises `VersionGoneError` when ``path`` was removed before it could be held.
    """

    def __init__(self, path: Path, settings: Settings, cache: VectorCache,
                 meta: dict[str, Any] | None = None, *, static: bool = True) -> None:
        self.path = path
        self.users = 0
        self.closed = False
        self._lease = lease(path) if meta is None else None
        try:
            self.meta = read_meta(path) if meta is None else meta
            self.engine = EngineIndex.open(path, static=static)
            self.model = TfidfModel.load(path)
            self.ranker: Ranker = make_ranker(settings.rerank, self.model, cache)
            meaning = Meaning(path, settings.deflect.encoder) if settings.deflect.dense_candidates > 0 else None
            self.searcher = Searcher(self.engine, self.ranker, settings.search, meaning)
        except BaseException:
            if self._lease is not None:
                self._lease.release()
            raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.engine.close()
            finally:
                if self._lease is not None:
                    self._lease.release()
