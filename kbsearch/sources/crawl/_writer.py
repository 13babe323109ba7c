"""The crawl's index writer: a thread that writes batches of documents, then their crawl state."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...documents import Document
from .state import CrawlState, PageState

if TYPE_CHECKING:
    from ..._protocols import DocumentStore

log = logging.getLogger(__name__)

#: Seconds a batch write waits for another writer to finish before the crawl gives up.
WRITE_LOCK_WAIT = 120.0


@dataclass
class _Batch:
    docs: list[Document] = field(default_factory=list)
    delete_ids: list[str] = field(default_factory=list)
    puts: list[PageState] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.docs) + len(self.delete_ids) + len(self.puts) + len(self.forget)


class _Writer(threading.Thread):
    """Writes batches to the index, then the matching crawl state (index first: a crash in between
    only means the next run re-checks those pages)."""

    def __init__(self, kb: DocumentStore, state: CrawlState, source: str, dry_run: bool = False) -> None:
        super().__init__(name="kbsearch-crawl-writer", daemon=True)
        self.kb, self.state, self.source, self.dry_run = kb, state, source, dry_run
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self.added = self.updated = self.unchanged = self.deleted = 0
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            if self.error is not None or self.dry_run:
                self.queue.task_done()
                continue  # drain; nothing more is written after a failure (or ever, in a dry run)
            started = time.perf_counter()
            try:
                if batch.delete_ids:
                    self.deleted += self.kb.delete(batch.delete_ids, lock_timeout=WRITE_LOCK_WAIT)
                if batch.docs:  # refit once after the crawl
                    rep = self.kb.add(batch.docs, refit=False, lock_timeout=WRITE_LOCK_WAIT)
                    self.added += rep.added
                    self.updated += rep.updated
                    self.unchanged += rep.unchanged
                self.state.apply(self.source, batch.puts, batch.forget)
            except BaseException as exc:  # reported by the coordinator, which stops the crawl
                log.error("crawl %s: writing to the index failed: %s", self.source, exc)
                self.error = exc
            finally:
                self.seconds += time.perf_counter() - started
                self.queue.task_done()
