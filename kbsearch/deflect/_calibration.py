"""`Calibration`: one version's fitted candidate scorer, confidence map and hold-out curve, stored
as JSON beside the answer model; the thresholds follow from it at the operator's current target.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DeflectConfig
from ..storage import write_json
from ._curve import (_ENCODED, MIN_KIND_QUESTIONS, _answerable, _odds, _without_semantic, threshold_by_kind,
                     threshold_for)
from ._features import FEATURES
from ._model_files import MODEL_DIR
from ._outcomes import MIN_SEGMENT_OUTCOMES, OUTCOME, blend

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"


@dataclass
class Calibration:
    """The fitted candidate scorer, confidence map and thresholds of one generation."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    iso_x: list[float]
    iso_y: list[float]
    # The hold-out curve (confidence, correct, weight) so thresholds follow the current target.
    curve_conf: list[float] = field(default_factory=list)
    curve_ok: list[int] = field(default_factory=list)
    curve_w: list[float] = field(default_factory=list)
    # The kind of each curve point ("phrasing", "title", "pseudo", "thread", "feedback").
    curve_kind: list[str] = field(default_factory=list)
    # The segment of each curve point: whether its best candidate has phrasings of its own (`segment_of`).
    curve_segment: list[int] = field(default_factory=list)
    # The share of unanswerable questions the curve's weights stand for (``deflect.unanswerable_share``).
    unanswerable_share: float = 0.2
    # Unanswerable hold-outs once more, by their best candidate of the *other* segment (confidence,
    # segment, weight): a segment's threshold must turn them away too (see `threshold`).
    rival_conf: list[float] = field(default_factory=list)
    rival_segment: list[int] = field(default_factory=list)
    rival_w: list[float] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    # The scorer of candidates with sentence vectors (documents of the answer model without a
    # classifier): [mean, scale, coef, [intercept]] over all `FEATURES` (empty: none).  The main
    # scorer never sees the encoder's features, so the other candidates are scored as without it.
    semantic_scorer: list[list[float]] = field(default_factory=list)
    # The previous calibration's answer thresholds ("all", "0", "1": by segment) at the settings of
    # the refit: this one's may move at most ``deflect.max_threshold_step`` from them (empty: free).
    anchor: dict[str, float] = field(default_factory=dict)
    # The scorer of candidates outside the answer model (search hits: pages of a large index, answers
    # written after the rebuild), fitted on hold-outs decided that way; same layout as above.
    uncovered_scorer: list[list[float]] = field(default_factory=list)
    # ``deflect.outcome_prior`` at the fit: how many outcomes weigh as much as the hold-outs' threshold.
    outcome_prior: float = 200.0

    # -- applying ------------------------------------------------------------------------------------
    def candidate_prob(self, feats: np.ndarray) -> np.ndarray:
        """P(candidate is right) of each feature row."""
        arrays = self.__dict__.get("_arrays")
        if arrays is None:  # the stored lists as arrays, once (this runs for every question)
            arrays = self.__dict__["_arrays"] = (
                np.asarray(self.mean), np.asarray(self.scale), _without_semantic(np.asarray(self.coef, dtype=float)),
                tuple(np.asarray(a, dtype=float) for a in self.semantic_scorer))
        mean, scale, coef, semantic = arrays
        feats = np.asarray(feats, dtype=float)
        z = (feats - mean) / scale
        prob = 1.0 / (1.0 + np.exp(-(z @ coef + self.intercept)))
        if semantic:
            encoded = feats[..., _ENCODED] > 0.5
            if np.any(encoded):
                s_mean, s_scale, s_coef, (s_icept,) = semantic
                s_prob = 1.0 / (1.0 + np.exp(-(((feats - s_mean) / s_scale) @ s_coef + s_icept)))
                prob = np.where(encoded, s_prob, prob)
        return prob

    def uncovered_prob(self, feats: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
        """P(candidate is right) of rows of documents outside the answer model; ``order``: their
        search-order columns (`_pages.order_features`), read when the scorer was fitted with them."""
        if not self.uncovered_scorer:
            return self.candidate_prob(feats)
        u_mean, u_scale, u_coef, (u_icept,) = (np.asarray(a, dtype=float) for a in self.uncovered_scorer)
        feats = np.asarray(feats, dtype=float)
        if len(u_mean) > feats.shape[-1]:  # fitted with search's order
            extra = len(u_mean) - feats.shape[-1]
            order = np.zeros((*feats.shape[:-1], extra)) if order is None else np.asarray(order, dtype=float)
            feats = np.concatenate([feats, order], axis=-1)
        z = (feats - u_mean) / u_scale
        return 1.0 / (1.0 + np.exp(-(z @ u_coef + u_icept)))

    def confidence(self, prob: float | np.ndarray) -> float | np.ndarray:
        if not self.iso_x:
            return prob
        return np.interp(prob, self.iso_x, self.iso_y)

    def threshold(self, target: float, simulated_margin: float = 0.0, segment: int | None = None,
                  unanswerable_share: float | None = None) -> float:
        """Lowest confidence whose answered hold-out questions reach ``target`` precision (>1: never).

        With a ``segment`` (see `segment_of`), only the hold-out questions whose best candidate is of
        that segment count, when there are enough of them (`MIN_KIND_QUESTIONS` answerable ones),
        and the unanswerable ones whose best candidate was of the other segment, by their best
        candidate of this one (``rival_*``).  With an ``unanswerable_share`` other than the one the
        curve was weighted for, the unanswerable hold-outs are re-weighted to it (more unanswerable
        questions: a higher threshold).
        """
        conf, ok, w = np.asarray(self.curve_conf), np.asarray(self.curve_ok), np.asarray(self.curve_w, dtype=float)
        if len(self.curve_kind) != len(conf):
            return threshold_for(conf, ok, w, target)
        kinds = np.asarray(self.curve_kind)
        if (kinds == OUTCOME).any():  # outcomes set a threshold of their own (`with_outcomes`)
            keep = kinds != OUTCOME
            conf, ok, w, kinds = conf[keep], ok[keep], w[keep], kinds[keep]
        if segment is not None and len(self.curve_segment) == len(self.curve_conf):
            mask = np.asarray(self.curve_segment)[np.asarray(self.curve_kind) != OUTCOME] == segment
            if (mask & _answerable(kinds)).sum() >= MIN_KIND_QUESTIONS:
                # An unanswerable hold-out whose best candidate fell in the other segment had a
                # candidate in this one too; with another archive or question it could have been
                # the best, so this segment's threshold must turn it away as well.
                rival = np.asarray(self.rival_segment, dtype=int) == segment
                conf = np.concatenate([conf[mask], np.asarray(self.rival_conf, dtype=float)[rival]])
                ok = np.concatenate([ok[mask], np.zeros(int(rival.sum()), dtype=ok.dtype)])
                w = np.concatenate([w[mask], np.asarray(self.rival_w, dtype=float)[rival]])
                kinds = np.concatenate([kinds[mask], np.full(int(rival.sum()), "thread")])
        if unanswerable_share is not None and abs(unanswerable_share - self.unanswerable_share) > 1e-9:
            w = w.copy()
            w[kinds == "thread"] *= _odds(unanswerable_share) / _odds(self.unanswerable_share)
        return threshold_by_kind(conf, ok, w, kinds, target, simulated_margin)

    def with_outcomes(self, threshold: float, target: float, segment: int | None = None) -> float:
        """``threshold`` (the hold-outs', `threshold`) moved towards the one at which the production
        outcomes on the curve reach ``target`` (`_outcomes.blend`); by ``segment`` when it
        has enough outcomes of its own."""
        kinds = np.asarray(self.curve_kind)
        if len(kinds) != len(self.curve_conf) or not (kinds == OUTCOME).any():
            return threshold
        mask = kinds == OUTCOME
        if segment is not None and len(self.curve_segment) == len(kinds):
            seg = mask & (np.asarray(self.curve_segment) == segment)
            if seg.sum() >= MIN_SEGMENT_OUTCOMES:
                mask = seg
        return blend(threshold, np.asarray(self.curve_conf)[mask], np.asarray(self.curve_ok)[mask], target,
                     self.outcome_prior)

    # -- storage ---------------------------------------------------------------------------------------
    def save(self, gen_dir: Path) -> None:
        path = gen_dir / MODEL_DIR
        path.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        write_json(path / CALIBRATION_FILE, data)

    @classmethod
    def load(cls, gen_dir: Path) -> Calibration | None:
        try:
            data = json.loads((gen_dir / MODEL_DIR / CALIBRATION_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if len(data.get("coef", ())) != len(FEATURES):
            log.warning("deflection calibration in %s is from an older kbsearch; rebuild to recalibrate", gen_dir)
            return None
        return cls(**data)

    @classmethod
    def prior(cls) -> Calibration:
        """A cautious hand-set scorer for archives too small to calibrate (a handful of documents)."""
        names = list(FEATURES)
        coef = [0.0] * len(names)
        for name, w in (("phrasing_match", 4.0), ("tfidf", 3.0), ("coverage", 2.0), ("bm25_norm", 1.0),
                        ("phrasing_margin", 2.0), ("tfidf_margin", 2.0), ("classifier", 1.0)):
            coef[names.index(name)] = w
        return cls(mean=[0.0] * len(names), scale=[1.0] * len(names), coef=coef, intercept=-6.0,
                   iso_x=[], iso_y=[], curve_conf=[0.95, 0.5], curve_ok=[1, 0], curve_w=[1.0, 1.0],
                   report={"method": "prior", "reason": "archive too small to calibrate"})


#: Logged questions needed before their share of unanswerable ones is estimated.
MIN_ASKS_FOR_ESTIMATE = 100


def estimate_unanswerable_share(cal: Calibration, confidences: Sequence[float], bins: int = 20) -> float | None:
    """The share of unanswerable questions among real ones, from their confidences alone (no labels).

    The hold-outs give the confidence distribution of answerable questions and of unanswerable ones;
    the real questions' distribution is a mixture of the two, and EM finds the mixing share (the
    prior re-estimation of Saerens et al., 2002).  Real questions that are harder than the hold-outs
    look unanswerable, so the estimate errs high: deciding with it errs towards escalating.  None
    with fewer than `MIN_ASKS_FOR_ESTIMATE` confidences or no hold-out curve.
    """
    conf = np.asarray(confidences, dtype=float)
    kinds = np.asarray(cal.curve_kind)
    if conf.size < MIN_ASKS_FOR_ESTIMATE or len(kinds) != len(cal.curve_conf):
        return None
    curve, w = np.asarray(cal.curve_conf), np.asarray(cal.curve_w, dtype=float)
    unanswerable = kinds == "thread"
    answerable = _answerable(kinds)
    if not unanswerable.any() or not answerable.any():
        return None
    edges = np.linspace(0.0, 1.0, bins + 1)
    dens = []
    for mask in (answerable, unanswerable):
        h = np.histogram(np.clip(curve[mask], 0, 1), edges, weights=w[mask])[0] + 1e-3 * w[mask].sum() / bins
        dens.append(h / h.sum())
    idx = np.clip(np.digitize(np.clip(conf, 0, 1), edges) - 1, 0, bins - 1)
    p_ans, p_un = dens[0][idx], dens[1][idx]
    share = cal.unanswerable_share
    for _ in range(500):
        resp = share * p_un / (share * p_un + (1.0 - share) * p_ans)
        new = float(resp.mean())
        if abs(new - share) < 1e-6:
            break
        share = new
    return round(share, 4)


#: Hold-out deflection below which the operator is told what lower precision targets would answer.
LOW_DEFLECTION = 0.05
#: The precision targets that hint tries.
HINT_TARGETS = (0.8, 0.7, 0.6)


def low_deflection_hint(cal: Calibration, cfg: DeflectConfig) -> dict[str, float] | None:
    """When the hold-outs are hardly ever answered at the operator's target, the hold-out deflection at
    each lower target of `HINT_TARGETS` ({"0.70": 0.35, ...}), so the trade-off is visible; else None."""
    if cal.report.get("holdout_deflection", 1.0) >= LOW_DEFLECTION:
        return None
    return {f"{t:.2f}": deflection_at(cal, t, cfg.simulated_margin) for t in HINT_TARGETS if t < cfg.target_precision}


def answered_at(cal: Calibration, target: float, simulated_margin: float) -> np.ndarray:
    """Which points of the hold-out curve are answered at precision ``target``, each by its segment's
    threshold (confidence 0, no evidence, never is)."""
    conf = np.asarray(cal.curve_conf)
    segs = np.asarray(cal.curve_segment, dtype=int) if len(cal.curve_segment) == conf.size else np.ones(conf.size, int)
    taus = {s: cal.threshold(target, simulated_margin, s) for s in np.unique(segs)}
    return (conf >= np.array([taus[s] for s in segs], dtype=float)) & (conf > 0)


def deflection_at(cal: Calibration, target: float, simulated_margin: float) -> float:
    """Weighted share of the hold-out questions answered at precision ``target`` (per-segment thresholds)."""
    w = np.asarray(cal.curve_w, dtype=float)
    if w.size == 0 or w.sum() <= 0:
        return 0.0
    return round(float((answered_at(cal, target, simulated_margin) * w).sum() / w.sum()), 4)
