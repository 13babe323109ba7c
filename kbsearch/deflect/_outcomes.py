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

The questions themselves teach too: a duplicate's wording joins its answer's phrasings at once
(`peers.service.PeerLoop.close_duplicate`), a question confirmed helpful at the next rebuild
(`with_confirmed_phrasings`), and the questions closed as unanswerable become negatives of every
class of the answer classifier and real unanswerable hold-outs of the calibration (`collect`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..documents import Document

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


def collect(root: Path, limit: int, n_features: int,
            settings: Settings | None = None) -> tuple[list[tuple[list[float], bool]], list[str]]:
    """What the newest ``limit`` decisions with an outcome in the knowledge base at ``root`` (usage log
    and escalation store) teach: (features of the best candidate, right) of each (decisions scored
    with another feature layout are left out), and the questions experts closed as unanswerable
    (real unanswerable questions for calibration's hold-outs, `calibrate`)."""
    from ..storage.usage import open_usage

    usage = open_usage(root, settings)
    try:
        rows = usage.outcome_rows(limit)
    finally:
        usage.close()
    escalations: dict[str, tuple[str, str | None]] = {}
    if any(r["escalation_id"] for r in rows):
        from ..peers._open import open_store

        store = open_store(root, settings or Settings(), existing_only=True)
        if store is not None:
            try:
                escalations = store.outcomes()
            finally:
                store.close()
    out: list[tuple[list[float], bool]] = []
    unanswerable: list[str] = []
    for row in rows:
        escalation = escalations.get(row["escalation_id"]) if row["escalation_id"] else None
        right = label(row, escalation)
        if right is not None and len(row["features"]) == n_features:
            out.append((row["features"], right))
        if escalation is not None and escalation[0] == "unanswerable":
            unanswerable.append(row["question"])
    log.info("deflection: %d outcomes of logged decisions to learn from (%d right; %d closed as unanswerable)",
             len(out), sum(r for _f, r in out), len(unanswerable))
    return out, list(dict.fromkeys(unanswerable))


#: One-sided z of the Wilson lower bound the outcomes' precision must reach the target with (95 %:
#: a threshold that only just reaches the target on the outcomes seen is not trusted).
WILSON_Z = 1.645


def wilson_lower(right: np.ndarray, n: np.ndarray, z: float = WILSON_Z) -> np.ndarray:
    """The Wilson score lower bound of precision ``right`` / ``n`` (elementwise)."""
    n = np.maximum(n, 1e-12)
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def outcome_threshold(conf: np.ndarray, ok: np.ndarray, target: float) -> float:
    """The lowest confidence above which the outcomes' precision reaches ``target`` with confidence
    (its Wilson lower bound does), and no lower than answering gains: below the confidence where the
    outcomes' right answers minus wrong ones, counted from the top, peak, answering more costs more
    questions (escalated rightly) than it answers right.  Halfway to the next outcome below; >1: never."""
    if conf.size == 0:
        return 1.01
    order = np.argsort(-conf, kind="stable")
    c, k = conf[order], ok[order].astype(float)
    n = np.arange(1, c.size + 1, dtype=float)
    last_of_run = np.r_[c[1:] != c[:-1], True]
    good = np.nonzero((wilson_lower(np.cumsum(k), n) >= target) & last_of_run & (c > 0))[0]
    if good.size == 0:
        return 1.01
    net = np.cumsum(2 * k - 1)
    peak = int(np.nonzero(last_of_run)[0][np.argmax(net[last_of_run])])
    i = min(int(good.max()), peak)
    return float((c[i] + c[i + 1]) / 2) if i + 1 < c.size else float(c[i])


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


#: Real rephrasings among the answerable hold-outs from which an archive's own evidence is trusted
#: whatever its size (fewer: its threshold rests on simulated questions alone).
MIN_REAL_HOLDOUTS = 30
#: Outcomes whose own threshold must reach the target before they vouch for answering.
MIN_VOUCHING_OUTCOMES = 30


def conservative_reason(cal: Any, documents: int, trusted_documents: int, target: float) -> str | None:
    """Why a calibration cannot be trusted to ANSWER at ``target`` precision (its decisions then only
    SUGGEST), or None when it can.

    A hand-set prior (a handful of documents) cannot; nor can an archive of fewer than
    ``trusted_documents`` documents whose hold-outs hold fewer than `MIN_REAL_HOLDOUTS` real
    rephrasings (its threshold rests on titles and words-dropped questions of a few pages, which
    say nothing about off-topic questions that share a word with a page) — until at least
    `MIN_VOUCHING_OUTCOMES` production outcomes reach the target at some confidence.
    """
    kinds = np.asarray(cal.curve_kind)
    outcomes = kinds == OUTCOME if len(kinds) == len(cal.curve_conf) else np.zeros(0, bool)
    if outcomes.sum() >= MIN_VOUCHING_OUTCOMES:
        conf, ok = np.asarray(cal.curve_conf)[outcomes], np.asarray(cal.curve_ok)[outcomes]
        if outcome_threshold(conf, ok, target) <= 1.0:
            return None
    if cal.report.get("method") != "holdout":
        return "too few documents to calibrate: possible answers are suggested, never given as the answer"
    real = int((kinds == "phrasing").sum()) if len(kinds) else 0
    if documents < trusted_documents and real < MIN_REAL_HOLDOUTS:
        return (f"{documents} documents and {real} real rephrasings to calibrate on (fewer than "
                f"deflect.trusted_documents={trusted_documents} and {MIN_REAL_HOLDOUTS}): answers are suggested, "
                f"not given, until {MIN_VOUCHING_OUTCOMES} outcomes (helpful / escalated) show the target holds")
    return None


def outcome_report(cal: Any, target: float, simulated_margin: float) -> dict[str, Any]:
    """The calibration report's outcome figures: how many, the hold-outs' own threshold, the outcomes'
    own threshold (Wilson-bounded; >1: never) and the weight the latter gets.  Empty without outcomes."""
    kinds = np.asarray(cal.curve_kind)
    if len(kinds) != len(cal.curve_conf) or not (kinds == OUTCOME).any():
        return {}
    mask = kinds == OUTCOME
    conf, ok = np.asarray(cal.curve_conf)[mask], np.asarray(cal.curve_ok)[mask]
    return {"outcomes_right": int(ok.sum()),
            "holdout_threshold": round(float(cal.threshold(target, simulated_margin)), 4),
            "outcome_threshold": round(outcome_threshold(conf, ok, target), 4),
            "outcome_weight": round(conf.size / (conf.size + cal.outcome_prior), 4) if cal.outcome_prior >= 0 else 0.0}


def with_confirmed_phrasings(root: Path, documents: Iterable[Document], limit: int,
                             settings: Settings | None = None) -> Iterator[Document]:
    """``documents`` with the questions their askers confirmed they answer (`UsageLog.confirmed_questions`)
    among their phrasings, as a duplicate's wording joins its answer's at once: a rebuild learns from
    "this solved it" as from an expert's duplicate close."""
    from ..storage.usage import open_usage

    usage = open_usage(root, settings)
    try:
        confirmed = usage.confirmed_questions(limit) if limit > 0 else []
    finally:
        usage.close()
    extra: dict[str, list[str]] = {}
    for doc_id, question in reversed(confirmed):  # oldest first
        extra.setdefault(doc_id, []).append(question)
    added = 0
    for doc in documents:
        more = extra.get(doc.id)
        if more:
            known = {" ".join(q.split()).casefold() for q in (doc.title, *doc.questions)}
            new = [q for q in dict.fromkeys(more) if " ".join(q.split()).casefold() not in known]
            if new:
                doc = doc.replace(questions=(*doc.questions, *new))
                added += len(new)
        yield doc
    if added:
        log.info("rebuild: %d questions confirmed helpful joined their answers' phrasings", added)
