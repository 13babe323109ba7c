"""Refitting a cached bench index's after-build steps with the current code, as a fresh build would.

Used by bench/scale_bench.py and bench/cost_curve.py (``--recalibrate``): a change of the decisions
is measured on the same index without indexing again.
"""

from __future__ import annotations

import time
from typing import Any


def refit_as_fresh(kb: Any) -> float:
    """Run ``kb``'s after-build steps (routing, deflection) again; the seconds they took.

    No previous calibration to step from, as in a fresh build: the cached index's last one would
    bound the thresholds (`deflect.max_threshold_step`), so runs would depend on the one before.
    """
    from kbsearch import deflect

    deflect._live_calibration = lambda kb: None  # type: ignore[assignment]
    started = time.perf_counter()
    kb._after_build(kb._current(), {})
    return time.perf_counter() - started
