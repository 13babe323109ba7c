"""Worker processes for CPU-bound steps (page parsing in a crawl, fitting the answer model).

Workers start from a forkserver (no copy of the parent's threads or open index) and boot light: the
`kbsearch` packages are stubbed, so a worker imports only the modules its task needs.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_HERE = Path(__file__).resolve().parent
#: Run in each worker first: register bare ``kbsearch`` / ``kbsearch.sources`` / ``kbsearch.sources.crawl``
#: packages (their ``__init__`` not run) so that unpickling
#: a task imports only the modules it needs (a parser needs lxml, not scikit-learn and Whoosh: ~120 MB
#: less per worker).  A no-op where kbsearch is already imported.
_WORKER_BOOT = f"""
import sys, types
for name, path in (("kbsearch", {str(_HERE)!r}), ("kbsearch.sources", {str(_HERE / "sources")!r}),
                   ("kbsearch.sources.crawl", {str(_HERE / "sources" / "crawl")!r})):
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
"""


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` light worker processes."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=exec, initargs=(_WORKER_BOOT,))
