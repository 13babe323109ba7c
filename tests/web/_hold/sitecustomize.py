"""Test instrumentation for ``kbsearch reindex`` subprocesses (``tests/web/test_reindex.py`` puts this
folder first on their PYTHONPATH; Python imports ``sitecustomize`` at start-up).  Nothing happens
unless one of these is set:

- ``KBT_HOLD``: a folder.  When the rebuild is about to call ``KBT_HOLD_AT`` of `kbsearch.search._generations`
  on its new generation (``switch_to``, the default: written and fitted, about to go live; or
  ``write_meta``: the index written, not yet marked complete), write ``<folder>/held`` (the new
  generation's path) and wait until ``<folder>/release`` exists: the test knows where the run is
  and keeps it there for as long as it needs.
- ``KBT_LOCK_MARK``: a file, written just before the run asks for the reindex lock (the run is then
  waiting for it, or has it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _install_hold(folder: Path, at: str) -> None:
    from kbsearch.search import _generations

    original = getattr(_generations, at)

    def held(*args: object) -> object:
        gen = next(a for a in args if isinstance(a, Path) and a.name.startswith(_generations.PREFIX))
        (folder / "held.tmp").write_text(str(gen), encoding="utf-8")
        os.replace(folder / "held.tmp", folder / "held")
        while not (folder / "release").exists():
            time.sleep(0.01)
        return original(*args)

    setattr(_generations, at, held)


def _install_lock_mark(mark: Path) -> None:
    import filelock

    from kbsearch.ops import reindex
    from kbsearch.storage import versions  # `file_lock`, the one place kbsearch takes a file lock

    original = filelock.FileLock

    def marking_lock(path: str, *args: object, **kwargs: object) -> object:
        if Path(path).name == reindex.LOCK_NAME:
            mark.write_text("asking", encoding="utf-8")
        return original(path, *args, **kwargs)

    versions.filelock = type("filelock", (), {"FileLock": staticmethod(marking_lock), "Timeout": filelock.Timeout})


if os.environ.get("KBT_HOLD"):
    _install_hold(Path(os.environ["KBT_HOLD"]), os.environ.get("KBT_HOLD_AT", "switch_to"))
if os.environ.get("KBT_LOCK_MARK"):
    _install_lock_mark(Path(os.environ["KBT_LOCK_MARK"]))
