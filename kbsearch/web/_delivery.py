"""The outbox loop of ``kbsearch serve``: what `kbsearch deliver` does, every ``peers.deliver_every`` seconds.

Notifications are stored before any delivery is tried, and sent right away when
``peers.deliver_on_escalate`` is on; what failed, the reminders, the SLA and answers waiting for a
busy index need a later run.  A server runs it itself so a deployment needs no cron job for that.
Several servers (or a server and a cron job) may run it at once: the store hands each due
notification to one claimer (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one writer on SQLite).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import KbsearchError

if TYPE_CHECKING:
    from ..kb import KnowledgeBase

log = logging.getLogger(__name__)


class DeliveryLoop:
    """A daemon thread calling ``kb.deliver_notifications()`` every ``every`` seconds until `stop`.

    A run that fails is logged and the loop goes on: what was not sent stays in the outbox.
    """

    def __init__(self, kb: KnowledgeBase, every: float, *, clock: Callable[[], float] | None = None) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self.kb = kb
        self.every = every
        #: Replaces the clock the outbox and the SLA read (tests); None: the real one.
        self.clock = clock
        self.runs = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kbsearch-deliver", daemon=True)

    def start(self) -> DeliveryLoop:
        self._thread.start()
        log.info("delivering the outbox every %g s", self.every)
        return self

    def tick(self) -> None:
        """One run of the outbox; never raises (the next tick tries again)."""
        try:
            report = self.kb.deliver_notifications(now=None if self.clock is None else self.clock())
        except KbsearchError as exc:  # a store outage: one line a run, not a traceback every minute
            self.failures += 1
            log.error("the outbox run failed; the next one tries again in %g s: %s", self.every, exc)
        except Exception:  # noqa: BLE001 - nothing unexpected may stop the loop either
            self.failures += 1
            log.exception("the outbox run failed; the next one tries again in %g s", self.every)
        else:
            if report.delivered or report.failed or report.retrying:
                log.info("outbox: %d delivered, %d retrying, %d failed, %d pending",
                         report.delivered, report.retrying, report.failed, report.pending)
        finally:
            self.runs += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to end and wait for a run in progress to finish (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
