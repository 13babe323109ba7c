"""A test hook: SIGKILL this process at a named point of a write, to prove crash safety.

Tests set ``KBSEARCH_TEST_KILL_AT`` to a checkpoint name (e.g. ``add.committed``) in a subprocess
doing a write; when the write reaches that `checkpoint`, the process kills itself with SIGKILL, as
an operator's ``kill -9`` or the OOM killer would.  Unset (always, outside tests), a checkpoint is
one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "KBSEARCH_TEST_KILL_AT"


def checkpoint(name: str) -> None:
    """Die here by SIGKILL when ``KBSEARCH_TEST_KILL_AT`` names this point (tests only)."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
