"""Learning from production outcomes: what happened to each decision, as labelled examples.

Every decision eventually gets an outcome: the asker says an answer helped or not (and, for
SUGGEST, which of the answers shown helped), or the question goes to the peers and an expert
closes it as a duplicate of an existing answer, answers it as new, or closes it as unanswerable.
Each says whether the decision's best candidate (whose features the usage log holds) was the right
answer: exactly the label calibration lacks for the traffic the archive's hold-outs cannot show.

At the rebuild (`deflect.after_build`) these examples join the scorer's fit and the confidence
map like any feedback, and they get a threshold of their own: the lowest confidence at which the
outcomes themselves reach the target precision.  The hold-outs' threshold is the prior; the
outcomes' one takes over as they accumulate, with weight n / (n + ``deflect.outcome_prior``), so
a few hundred outcomes move the operating point to where the target precision holds on real
questions, while a handful cannot swing it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Curve kind of production outcomes (`Calibration.curve_kind`).
OUTCOME = "outcome"
#: Escalation statuses that say the best candidate was wrong: an answer written anew, or none exists.
_NO_EXISTING_ANSWER = frozenset({"answered", "accepted", "verified", "unanswerable"})
#: Outcomes of one segment needed before that segment's threshold follows its own outcomes.
MIN_SEGMENT_OUTCOMES = 30


def label(row: dict[str, Any], escalation: tuple[str, str | None] | None) -> bool | None:
    """Whether ``row``'s best candidate (a `UsageLog.outcome_rows` row) was the right answer, by what
    happened to it; None when nothing tells yet (an open escalation, a SUGGEST that helped without
    saying which answer did)."""
    top = row["answer_id"] or (row["ranked"][0] if row["ranked"] else None)
    if escalation is not None:
        status, doc = escalation
        if status == "duplicate":
            return doc is not None and doc == top
        if status in _NO_EXISTING_ANSWER:
            return False
        return None
    if row["escalation_id"] is not None:  # escalated, still open: after an answer, that answer did not help
        return False if row["action"] == "answer" else None
    if row["helpful"] is None:
        return None
    if not row["helpful"]:
        return False
    if row["helped"] is not None:
        return row["helped"] == top
    return True if row["action"] == "answer" else None


def collect(root: Path, limit: int, n_features: int) -> list[tuple[list[float], bool]]:
    """(features of the best candidate, right) of the newest ``limit`` decisions with an outcome in the
    knowledge base at ``root`` (usage log and escalation store); decisions scored with another feature
    layout are left out."""
    from .peers.service import STORE_FILE
    from .usage import open_usage

    usage = open_usage(root)
    try:
        rows = usage.outcome_rows(limit)
    finally:
        usage.close()
    escalations: dict[str, tuple[str, str | None]] = {}
    if any(r["escalation_id"] for r in rows) and (Path(root) / STORE_FILE).is_file():
        from .peers.store import SqliteStore

        store = SqliteStore(Path(root) / STORE_FILE)
        try:
            escalations = store.outcomes()
        finally:
            store.close()
    out: list[tuple[list[float], bool]] = []
    for row in rows:
        right = label(row, escalations.get(row["escalation_id"]) if row["escalation_id"] else None)
        if right is not None and len(row["features"]) == n_features:
            out.append((row["features"], right))
    log.info("deflection: %d outcomes of logged decisions to learn from (%d right)",
             len(out), sum(r for _f, r in out))
    return out


def outcome_threshold(conf: np.ndarray, ok: np.ndarray, target: float) -> float:
    """The lowest confidence at which the outcomes reach ``target`` precision (>1: never)."""
    from ._deflect_calibrate import threshold_for

    return threshold_for(conf, ok, np.ones(conf.size), target)


def blend(holdout: float, conf: np.ndarray, ok: np.ndarray, target: float, prior: float) -> float:
    """The answer threshold from the hold-outs' ``holdout`` threshold and the outcomes (their
    confidences under this calibration and whether their best candidate was right): the outcomes'
    own threshold weighs n / (n + ``prior``).  An outcome curve that never reaches the target counts
    as a threshold just above its highest confidence (answer nothing it has seen)."""
    n = conf.size
    if n == 0 or prior < 0:
        return holdout
    own = outcome_threshold(conf, ok, target)
    if own > 1.0:
        own = min(float(conf.max()) + 1e-3, 1.01)
    share = n / (n + prior)
    capped = min(holdout, 1.01)
    return float(share * own + (1.0 - share) * capped)
