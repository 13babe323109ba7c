"""Thresholds on a hold-out curve, and the confidence map: pure functions of arrays.

The curve is one point per hold-out question (its confidence, whether its answer was right, its
weight, its kind and segment); a threshold is the lowest confidence whose answered points reach a
target precision, for every kind of answerable hold-out.  Also which candidates count as evidence.
"""

from __future__ import annotations

import numpy as np

from ._features import FEATURES
from ._outcomes import OUTCOME

#: A kind of answerable hold-out (or a segment) needs this many questions to set a threshold of its own.
MIN_KIND_QUESTIONS = 30
#: Segments of candidates: documents with a classifier over phrasings of their own, and the others
#: (pages, threads with a single question).  Their hold-outs are of different kinds (real rephrasings
#: versus titles and words-dropped questions), so each segment gets the threshold its own kinds need.
SEGMENTS = {"phrased": 1, "unphrased": 0}
_HAS_CLASSIFIER = FEATURES.index("has_classifier")
_ENCODED = FEATURES.index("encoded")
_SEMANTIC_COLUMNS = [FEATURES.index("semantic"), FEATURES.index("semantic_margin"), _ENCODED]


def _without_semantic(x: np.ndarray) -> np.ndarray:
    """``x`` (a feature row, matrix or coefficient vector) with the sentence encoder's columns zeroed."""
    x = np.array(x, dtype=float)
    x[..., _SEMANTIC_COLUMNS] = 0.0
    return x


def segment_of(features: np.ndarray) -> int:
    """The segment of a candidate from its feature row: 1 when it has a classifier of its own, else 0."""
    return int(features[_HAS_CLASSIFIER] > 0.5)


_COVERAGE, _CLASSIFIER = FEATURES.index("coverage"), FEATURES.index("classifier")
_SEMANTIC = FEATURES.index("semantic")
#: Sentence-encoder similarity from which a candidate that shares no word with the question still
#: counts as evidence (all-MiniLM-L6-v2 cosine; unrelated questions and titles score 0.0-0.4).
SEMANTIC_EVIDENCE = 0.5


def has_evidence(features: np.ndarray) -> bool:
    """Whether a candidate shares a content word with the question, its classifier votes for it, or
    the sentence encoder finds them close in meaning.  A best candidate without evidence is never
    an answer (`kbsearch.deflect.Deflector.decision`), so calibration counts it at confidence 0."""
    if len(features) != len(FEATURES):
        return True  # not ours to judge (features of an older layout)
    return bool(features[_COVERAGE] > 0 or (segment_of(features) and features[_CLASSIFIER] > 0)
                or features[_SEMANTIC] >= SEMANTIC_EVIDENCE)


#: Hold-out kinds that are real questions people asked (the others are simulated).
REAL_KINDS = frozenset({"phrasing", "feedback"})


def _answerable(kinds: np.ndarray) -> np.ndarray:
    """Curve points of answerable hold-outs: not held-out threads, not feedback (labelled either way)."""
    return (kinds != "thread") & (kinds != "feedback") & (kinds != OUTCOME)


def threshold_by_kind(conf: np.ndarray, ok: np.ndarray, w: np.ndarray, kinds: np.ndarray, target: float,
                      simulated_margin: float = 0.0) -> float:
    """The threshold at which every kind of answerable hold-out reaches ``target`` precision.

    Real rephrasings, titles found from their answers and words-dropped pseudo-questions are not
    equally hard, and which of them real questions resemble is unknown; so each kind, standing in
    for all answerable questions against the same unanswerable ones, must reach the target.
    Simulated kinds are a weaker stand-in for real questions than real rephrasings, so they must
    reach the target plus ``simulated_margin``.  A kind that reaches its goal at no confidence at
    all (an archive part nothing can be found in) does not block the others: its questions get
    low confidences and escalate anyway.
    """
    answerable = _answerable(kinds)
    shared = ~answerable
    total = float(w[answerable].sum())
    taus = []
    for kind in np.unique(kinds[answerable]):
        mask = kinds == kind
        if mask.sum() < MIN_KIND_QUESTIONS or w[mask].sum() <= 0:
            continue
        ww = w.copy()
        ww[mask] = w[mask] * (total / float(w[mask].sum()))
        sel = mask | shared
        goal = target if kind in REAL_KINDS else min(target + simulated_margin, 0.999)
        taus.append(threshold_for(conf[sel], ok[sel], ww[sel], goal))
    reachable = [t for t in taus if t <= 1.0]
    if reachable:
        return max(reachable)
    return threshold_for(conf, ok, w, target)


def _odds(share: float) -> float:
    share = min(max(share, 0.01), 0.95)
    return share / (1.0 - share)


def threshold_for(conf: np.ndarray, ok: np.ndarray, w: np.ndarray, target: float) -> float:
    """A confidence above which the answered hold-out questions reach ``target`` precision (>1: never).

    The most hold-outs that reach the target are answered; the threshold lies halfway between the
    lowest of them and the highest hold-out left out, the widest margin on both sides.  (At the
    lowest answered one itself, a small archive whose hold-outs sit at 0 and 1 would answer nothing
    below 1.)
    """
    if conf.size == 0:
        return 1.01
    order = np.argsort(-conf, kind="stable")
    c, k, ww = conf[order], ok[order].astype(float), w[order]
    prec = np.cumsum(k * ww) / np.maximum(np.cumsum(ww), 1e-12)
    # A threshold sits at the end of a run of equal confidences.
    last_of_run = np.r_[c[1:] != c[:-1], True]
    good = np.nonzero((prec >= target) & last_of_run)[0]
    if good.size == 0:
        return 1.01
    i = int(good.max())
    return float((c[i] + c[i + 1]) / 2) if i + 1 < c.size else float(c[i])


def confidence_map(prob: np.ndarray, ok: np.ndarray, w: np.ndarray,
                   evidence: np.ndarray) -> tuple[list[float], list[float], np.ndarray]:
    """The confidence map (knots) fitted on hold-outs' best probabilities, and their confidences.

    The map is P(right) of the questions that can be answered at all: a best candidate without
    evidence (`has_evidence`) is escalated whatever its probability, so it does not shape the map
    and sits on the curve at confidence 0, as `Deflector.decision` would put it.
    """
    from sklearn.isotonic import IsotonicRegression

    fit = evidence if evidence.any() else np.ones_like(evidence)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(prob[fit], ok[fit], sample_weight=w[fit])
    iso_x, iso_y = centred_knots(prob[fit], w[fit], iso.predict(prob[fit]))
    return iso_x, iso_y, np.where(evidence, np.interp(prob, iso_x, iso_y), 0.0)


def centred_knots(x: np.ndarray, w: np.ndarray, fitted: np.ndarray) -> tuple[list[float], list[float]]:
    """Knots of the centred isotonic map through isotonic ``fitted`` values of points ``x`` (weights ``w``).

    Isotonic regression pools its points into blocks of equal value, so every probability in a block
    gets the same confidence, and a threshold can only fall between blocks: a block that holds the
    target precision's boundary is answered or escalated as a whole.  Centred isotonic regression
    (Oron & Flournoy 2017) puts one knot per block at the weighted mean of its points, with the
    block's value, and interpolates linearly in between: the map stays monotone, and it rises
    strictly between the first and last block's centres, so confidences (and thresholds) keep the
    probabilities' order.  Below the first and above the last centre it is flat.
    """
    x, w, fitted = (np.asarray(a, dtype=float) for a in (x, w, fitted))
    if x.size == 0:
        return [0.0, 1.0], [0.0, 1.0]
    xs, ys = [float(x.min())], []
    for value in np.unique(fitted):
        block = fitted == value
        weights = w[block] if w[block].sum() > 0 else np.ones(int(block.sum()))
        xs.append(float(np.average(x[block], weights=weights)))
        ys.append(float(value))
    xs.append(float(x.max()))
    ys = [ys[0]] + ys + [ys[-1]]
    knots_x: list[float] = []
    knots_y: list[float] = []
    for kx, ky in zip(xs, ys):
        kx, ky = round(kx, 6), round(ky, 6)
        if knots_x and kx <= knots_x[-1]:  # an end block of one point (its centre is the end)
            continue
        knots_x.append(kx)
        knots_y.append(ky)
    if len(knots_x) == 1:
        return [knots_x[0], knots_x[0] + 1e-6], [knots_y[0], knots_y[0]]
    return knots_x, knots_y
