"""Peak resident memory of a child process and of the processes it starts, sampled from outside
(the benchmarks' rebuilds fit models in worker processes, so the child's own peak is not all)."""

from __future__ import annotations

import threading

import psutil


class PeakRss:
    """Samples every ``every`` seconds, from `start` until `stop`, the RSS of process ``pid`` alone
    (``self``) and with all its descendants (``tree``), keeping the largest of each (bytes)."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self.every = every
        self.peak = {"self": 0, "tree": 0}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process(self.pid)
        while not self._done.is_set():
            try:
                own = me.memory_info().rss
                tree = own + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:
                own = tree = 0
            self.peak["self"], self.peak["tree"] = max(self.peak["self"], own), max(self.peak["tree"], tree)
            self._done.wait(self.every)

    def start(self) -> PeakRss:
        self._thread.start()
        return self

    def stop(self) -> dict[str, int]:
        self._done.set()
        self._thread.join()
        return self.peak
