"""Calibrating deflection on the archive alone: hold-outs, a candidate scorer and a confidence map.

A company has its archive, not a labelled test set.  So the archive is split: some whole threads are
removed (their questions must *not* be answered: nothing left answers them) and some phrasings of the
remaining threads are held out (they must find their own thread).  Threads with too few phrasings get
pseudo-questions (their title or question with words dropped, as people rephrase).  The answer model
is refitted without the held-out parts, every hold-out question is scored, and from those:

* a logistic regression over the candidate features orders candidates (P(candidate is right)),
* a centred isotonic map turns the best candidate's probability into a calibrated confidence,
* the decision thresholds are the lowest confidences whose answered hold-out questions still reach the
  operator's target precision (unanswerable hold-outs weighted to ``unanswerable_share``).

Feedback from use ("did this answer your question?", escalations after an answer) is added as labelled
examples.  Everything is stored as JSON / numpy arrays in the generation directory.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._outcomes import MIN_SEGMENT_OUTCOMES, OUTCOME, blend
from ._model import FEATURES, MODEL_DIR, AnswerModel, phrasings_of, tokens
from ._vectors import Vectorizer
from ..config import DeflectConfig
from ..documents import Document
from ..storage import write_json

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: Fewer documents than this are not calibrated: a cautious prior scorer is used instead.
MIN_DOCUMENTS = 5


@dataclass
class HoldoutQuery:
    """One calibration question: its text, the document that answers it (None: must escalate)."""

    text: str
    answer: str | None
    kind: str  # "phrasing" (a real held-out phrasing), "pseudo" (words dropped), "thread" (thread held out)


@dataclass
class Feedback:
    """A labelled example from use: the features of the answer given and whether it helped."""

    features: list[float]
    helpful: bool
    #: "feedback" (helpful or not), or `_outcomes.OUTCOME` (any outcome of a logged decision:
    #: those also set a threshold of their own, `Calibration.with_outcomes`).
    kind: str = "feedback"


def perturb(text: str, rng: random.Random, keep: float = 0.6, max_tokens: int = 24,
            foreign: Sequence[str] = ()) -> str:
    """A pseudo-rephrasing: a random ``keep`` share of the words, in order (at least two), and, from
    ``foreign``, one or two words the text does not have, put in at random places."""
    words = tokens(text)[:max_tokens * 2]
    if len(words) <= 2:
        kept = list(words)
    else:
        kept = [w for w in words if rng.random() < keep]
        if len(kept) < 2:
            kept = rng.sample(words, 2)
    if foreign:
        for _ in range(rng.randint(1, 2)):
            kept.insert(rng.randint(0, len(kept)), rng.choice(foreign))
    return " ".join(kept[:max_tokens])


def make_holdout(docs: Sequence[Document], cfg: DeflectConfig, *, pages_by_rephrasing: bool = False
                 ) -> tuple[list[Document], list[HoldoutQuery]]:
    """Split the archive: the documents to fit on (phrasings held out) and the hold-out questions.

    ``pages_by_rephrasing``: pages are asked for by their heading with words dropped, never found
    from their text alone (a sample of a large index: its sections are found by search, as a
    reader's rephrasing of the heading would find them; with the heading hidden, search finds the
    section only by words of its body, which no scorer of real questions should learn from).
    """
    rng = random.Random(cfg.seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    # Words of other documents' headings: a reader's rephrasing of a heading brings words of its own.
    pool = [w for d in docs for w in tokens(d.title)] if pages_by_rephrasing else []
    n_out = int(round(cfg.holdout_threads * len(docs))) if len(docs) >= 3 else 0
    out_set = set(order[:n_out])
    train: list[Document] = []
    queries: list[HoldoutQuery] = []
    per_doc = max(1, cfg.calibration_queries // max(1, len(docs)))
    for i, doc in enumerate(docs):
        phr = phrasings_of(doc)
        if i in out_set:
            if len(phr) >= cfg.min_phrasings:
                queries += [HoldoutQuery(p, None, "thread") for p in rng.sample(phr, min(len(phr), per_doc))]
            elif phr and pages_by_rephrasing and doc.kind == "page":  # as its answerable twin below
                queries += [HoldoutQuery(perturb(p, rng, keep=0.5, foreign=pool), None, "thread")
                            for p in phr[:per_doc]]
            elif phr:
                queries += [HoldoutQuery(perturb(p, rng), None, "thread") for p in phr[:per_doc]]
            continue
        extra = list(dict.fromkeys(q for q in doc.questions if q.strip() and q != doc.title))
        if len(phr) >= cfg.min_phrasings and len(extra) >= 2:
            n = min(max(1, int(round(cfg.holdout_phrasings * len(extra)))), per_doc, len(extra) - 1)
            held = set(rng.sample(range(len(extra)), n))
            queries += [HoldoutQuery(extra[j], doc.id, "phrasing") for j in sorted(held)]
            train.append(doc.replace(questions=tuple(q for j, q in enumerate(extra) if j not in held)))
        elif extra and doc.title.strip() and not _same_text(extra[0], doc.title) and rng.random() < 0.5:
            # One question besides the title (a forum thread's body under its subject): held out, it
            # is a real question, as long as people write them; the thread keeps title and answer.
            queries.append(HoldoutQuery(extra[0], doc.id, "phrasing"))
            train.append(doc.replace(questions=tuple(q for q in doc.questions if not _same_text(q, extra[0]))))
        elif phr and doc.text.strip() and not (pages_by_rephrasing and doc.kind == "page") and rng.random() < 0.5:
            # Title held out: the thread must be found from its answer (harder than real life) ...
            queries.append(HoldoutQuery(phr[0], doc.id, "title"))
            train.append(doc.replace(title="", questions=tuple(q for q in doc.questions if q != phr[0]),
                                     headings=tuple(h for h in doc.headings if not _same_text(h, phr[0]))))
        else:
            # ... or a rephrasing with words dropped (easier than real life): together, in between.
            if phr:
                foreign = pool if pages_by_rephrasing and doc.kind == "page" else []
                queries += [HoldoutQuery(perturb(phr[0], rng, keep=0.5, foreign=foreign), doc.id, "pseudo")
                            for _ in range(min(2, per_doc))]
            train.append(doc)
    return train, queries


def _same_text(a: str, b: str) -> bool:
    """Whether two phrasings differ only in case and spacing (one of them is no hold-out for the other)."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


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


#: Least share of the hold-out curve's weight given to hold-outs decided through search, even when
#: the model covers the whole index: answers written after the rebuild are decided that way.
MIN_SEARCH_WEIGHT = 0.1


def _search_weights(searched: np.ndarray, uncovered_share: float) -> np.ndarray:
    """Per hold-out query, the factor that gives the searched ones ``uncovered_share`` of the weight
    (at least `MIN_SEARCH_WEIGHT`, at most 1) and the others the rest; ones where either is missing."""
    n_s, n = int(searched.sum()), len(searched)
    if n_s == 0 or n_s == n:
        return np.ones(n)
    share = min(max(uncovered_share, MIN_SEARCH_WEIGHT), 1.0 - 1e-3)
    return np.where(searched, share * n / n_s, (1.0 - share) * n / (n - n_s))


def _fit_scorer(X: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-6] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=500, random_state=seed)
    lr.fit((X - mean) / scale, y, sample_weight=w)
    return mean, scale, lr.coef_[0], float(lr.intercept_[0])


def calibrate(docs: Sequence[Document], vec: Vectorizer, cfg: DeflectConfig, *, body_chars: int,
              feedback: Sequence[Feedback] = (), encoder: Any = None, searcher: Any = None,
              unanswerable: Sequence[str] = (),
              uncovered_share: float = 0.0) -> Calibration:
    """Fit the candidate scorer, confidence map and threshold curve from hold-outs of ``docs``.

    ``encoder``: the sentence encoder the answering model will use (`AnswerModel.attach_encoder`).
    ``unanswerable``: real questions closed as unanswerable, held out in every split beside the held-out threads.
    ``searcher``: the new generation's, to send hold-outs down the path of documents the model
    does not cover (`_pages.search_holdouts`); ``uncovered_share``: the share of the
    index outside the model (1 - covered / total), the weight those hold-outs get on the curve
    (at least `MIN_SEARCH_WEIGHT`; all of it when ``docs`` are a sample of a larger index).
    """
    from ._pages import ORDER_COLUMNS, SearchPlan
    started = time.perf_counter()
    rows_X: list[np.ndarray] = []
    rows_y: list[np.ndarray] = []
    # (start, end, candidates, target, answerable, kind)
    per_query: list[tuple[int, int, np.ndarray, int, bool, str]] = []
    queries: list[HoldoutQuery] = []
    classifier = False
    begin = 0
    folds_used = 0
    searched: list[bool] = []   # per query of per_query: sent down the search path
    row_uncovered: list[np.ndarray] = []  # per row: a document scored as outside the model
    row_order: list[np.ndarray] = []  # per row: search's order (`order_features`; zeros off search)
    sample_only = searcher is not None and uncovered_share >= 0.5
    plan_report: dict[str, int] = {}
    for fold in range(cfg.calibration_folds):
        # Small archives give few hold-out questions per split: repeat with other splits (cheap there).
        # A sample of a large index is calibrated through search only, in one split (bounded).
        if fold and (len(queries) >= cfg.calibration_queries // 2 or len(docs) > 5000 or sample_only):
            break
        fold_cfg = replace(cfg, seed=cfg.seed + fold)
        train, fold_queries = make_holdout(docs, fold_cfg, pages_by_rephrasing=sample_only)
        # Real questions experts closed as unanswerable: a quarter stand beside the held-out threads,
        # the rest are the classifier's negatives (`AnswerModel.fit`), as all of them are at the end.
        fold_queries += [HoldoutQuery(q, None, "thread") for i, q in enumerate(unanswerable) if (i + fold) % 4 == 0]
        negatives = [q for i, q in enumerate(unanswerable) if (i + fold) % 4 != 0]
        if len(train) < 2 or sum(q.answer is not None for q in fold_queries) < 3:
            continue
        plan = None
        if searcher is not None and fold == 0 and cfg.calibration_search_queries > 0:
            plan = SearchPlan.make(docs, train, fold_queries, cfg, uncovered_share, every=sample_only)
            fold_queries = plan.queries
            plan_report = plan.report()
        model = AnswerModel.fit(train, body_chars=body_chars, min_phrasings=cfg.min_phrasings,
                                max_classes=cfg.max_classes, covers_all=True, vec=vec, C=cfg.classifier_c,
                                max_per_class=cfg.calibration_max_per_class, negatives=negatives)
        if model is None:
            continue
        model.attach_encoder(encoder, train)
        model.page_encoder = encoder
        classifier = classifier or model.clf_coef is not None
        folds_used += 1
        queries += fold_queries
        texts = [q.text or "?" for q in fold_queries]
        chunk = 512

        def add(feats: np.ndarray, labels: np.ndarray, uncovered: np.ndarray, q: HoldoutQuery, by_search: bool,
                order: np.ndarray | None = None) -> None:
            nonlocal begin
            if len(labels) == 0:
                return
            row_order.append(np.zeros((len(labels), ORDER_COLUMNS)) if order is None else order)
            rows_X.append(feats)
            rows_y.append(labels)
            row_uncovered.append(uncovered)
            searched.append(by_search)
            per_query.append((begin, begin + len(labels), np.zeros(0, int), -1, q.answer is not None, q.kind))
            begin += len(labels)
        for start in range(0, len(texts), chunk):
            scores = model.scores(texts[start:start + chunk])
            for r in range(min(chunk, len(texts) - start)):
                q = fold_queries[start + r]
                target = model.index.get(q.answer, -1) if q.answer else -1
                if plan is None or not plan.every:  # the model's own candidates, as without search
                    cands = model.candidates(scores, r, cfg.candidates_per_signal)
                    if cands.size:
                        add(model.features(scores, r, cands), (cands == target).astype(int),
                            np.zeros(len(cands), dtype=bool), q, False)
                if plan is not None and plan.searched(start + r):
                    # Again through search, the plan's uncovered documents outside the model.
                    allowed = plan.allowed(model)
                    cands = model.candidates(scores, r, cfg.candidates_per_signal, allowed)
                    feats = model.features(scores, r, cands, allowed) if cands.size else np.zeros((0, len(FEATURES)))
                    row = {k: v[r] for k, v in scores.items()}
                    for name in ("phrasing_match", "tfidf", "bm25", "semantic", "classifier"):
                        if name in row:
                            row[name] = np.where(allowed, row[name], 0.0 if name != "classifier" else -1.0)
                    feats, labels, uncovered, order = plan.with_search_hits(
                        model, searcher, q, row, feats, (cands == target).astype(int), cands, body_chars)
                    add(feats, labels, uncovered, q, True, order)
    # Hold-outs sent down the search path stand for the decisions on documents outside the model.
    # On the threshold curve they weigh what the index outside the model weighs: nothing when the
    # model covers it all (they then only teach the scorer of uncovered candidates).
    searched_arr = np.array(searched, dtype=bool)
    on_curve = ~searched_arr if uncovered_share <= 0 and not searched_arr.all() else np.ones(len(searched_arr), bool)
    c_scale = _search_weights(searched_arr[on_curve], uncovered_share) if uncovered_share > 0 else np.ones(int(on_curve.sum()))
    curve_queries = [p for p, keep in zip(per_query, on_curve) if keep]
    n_in = sum(1 for p in curve_queries if p[4])
    n_out = len(curve_queries) - n_in
    if n_in < 5 or n_out < 1 or len(docs) < MIN_DOCUMENTS:
        cal = Calibration.prior()
        cal.report.update(documents=len(docs), holdout_questions=len(queries))
        return cal
    share = min(max(cfg.unanswerable_share, 0.0), 0.95) if n_out else 0.0
    w_in = (1.0 - share) / n_in
    w_out = share / n_out if n_out else 0.0
    rows_w = [np.full(e - b, w_in if ok else w_out) for b, e, _c, _t, ok, _k in per_query]
    row_searched = np.concatenate([np.full(e - b, by) for (b, e, *_r), by in zip(per_query, searched_arr)])
    X = np.vstack(rows_X)
    y = np.concatenate(rows_y)
    w = np.concatenate(rows_w)
    uncovered_rows = np.concatenate(row_uncovered)
    order_X = np.vstack(row_order)
    fb_X = np.array([f.features for f in feedback if len(f.features) == len(FEATURES)], dtype=float)
    fb_kind = [f.kind for f in feedback if len(f.features) == len(FEATURES)]
    fb_y = np.array([int(f.helpful) for f in feedback if len(f.features) == len(FEATURES)], dtype=int)
    if len(fb_X):
        fb_w = np.full(len(fb_X), cfg.feedback_weight * w_in)
        X, y, w = np.vstack([X, fb_X]), np.concatenate([y, fb_y]), np.concatenate([w, fb_w])
        uncovered_rows = np.concatenate([uncovered_rows, np.zeros(len(fb_X), dtype=bool)])
        order_X = np.vstack([order_X, np.zeros((len(fb_X), ORDER_COLUMNS))])
    if y.sum() == 0 or y.sum() == len(y):
        cal = Calibration.prior()
        cal.report.update(documents=len(docs), holdout_questions=len(queries))
        return cal
    if len(fb_X):
        row_searched = np.concatenate([row_searched, np.zeros(len(fb_X), dtype=bool)])

    def fit(mask: np.ndarray, semantic: bool = True, norm: np.ndarray | None = None, order: bool = False
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        # Weights scaled so the regulariser sees a sensible effective sample size (that of ``norm``).
        norm = mask if norm is None else norm
        ww = w[mask] * int(norm.sum()) / w[norm].sum()
        Xm = X[mask] if semantic else _without_semantic(X[mask])
        if order:  # search's order of the hits (`_pages.order_features`)
            Xm = np.hstack([Xm, order_X[mask]])
        return _fit_scorer(Xm, y[mask], ww, cfg.seed)

    # Covered candidates are scored as without search (their rows of the searched questions repeat
    # them), unless every question went through search; uncovered ones by a scorer of their own.
    covered = ~row_searched if (~row_searched).any() else ~uncovered_rows
    if not (0 < y[covered].sum() < covered.sum()):
        covered = np.ones(len(y), dtype=bool)
    mean, scale, coef, intercept = fit(covered, semantic=False)
    # Candidates with sentence vectors (no classifier of their own) get a scorer of their own that
    # reads the encoder too; the others keep the scorer above, so the encoder cannot move what it
    # was not needed for.
    semantic_scorer: list[list[float]] = []
    encoded = covered & (X[:, _ENCODED] > 0.5)
    if 0 < y[encoded].sum() < encoded.sum():
        semantic_scorer = [a.tolist() if hasattr(a, "tolist") else [a] for a in fit(encoded, norm=covered)]
    uncovered_scorer: list[list[float]] = []
    if 0 < y[uncovered_rows].sum() < uncovered_rows.sum():
        uncovered_scorer = [a.tolist() if hasattr(a, "tolist") else [a] for a in fit(uncovered_rows, order=True)]
    scorer = Calibration(mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(), intercept=intercept,
                         iso_x=[], iso_y=[], semantic_scorer=semantic_scorer, uncovered_scorer=uncovered_scorer)
    prob = scorer.candidate_prob(X)
    if uncovered_rows.any():
        prob[uncovered_rows] = scorer.uncovered_prob(X[uncovered_rows], order_X[uncovered_rows])
    top_p, top_ok, top_w, top_seg, top_ev = [], [], [], [], []
    rival_p, rival_seg, rival_ev, rival_w = [], [], [], []
    top_kind = [k for *_rest, k in curve_queries]
    row_seg = (X[:, _HAS_CLASSIFIER] > 0.5).astype(int)  # `segment_of` of every row
    for (b, e, cands, target, ok, _kind), f in zip(curve_queries, c_scale):
        j = int(np.argmax(prob[b:e]))
        top_p.append(prob[b + j])
        top_ok.append(int(y[b + j]))  # the rows' labels (search hits included)
        top_w.append((w_in if ok else w_out) * f)
        top_seg.append(int(row_seg[b + j]))
        top_ev.append(has_evidence(X[b + j]))
        if not ok:
            other = np.nonzero(row_seg[b:e] != top_seg[-1])[0]
            if other.size:
                r = b + int(other[np.argmax(prob[b:e][other])])
                rival_p.append(float(prob[r]))
                rival_seg.append(1 - top_seg[-1])
                rival_ev.append(has_evidence(X[r]))
                rival_w.append(w_out * f)
    if len(fb_X):
        pf = prob[len(prob) - len(fb_X):]
        top_p += list(pf)
        top_ok += list(fb_y)
        top_w += [cfg.feedback_weight * w_in] * len(fb_X)
        top_kind += fb_kind
        top_seg += [segment_of(f) for f in fb_X]
        top_ev += [has_evidence(f) for f in fb_X]
    tp, tk, tw = np.array(top_p), np.array(top_ok), np.array(top_w)
    iso_x, iso_y, conf = confidence_map(tp, tk, tw, np.array(top_ev, dtype=bool))
    cal = Calibration(mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(), intercept=intercept,
                      iso_x=iso_x, iso_y=iso_y, curve_conf=[round(float(c), 6) for c in conf],
                      curve_ok=[int(k) for k in tk], curve_w=[float(x) for x in tw], curve_kind=top_kind,
                      curve_segment=top_seg, unanswerable_share=share, semantic_scorer=semantic_scorer,
                      uncovered_scorer=uncovered_scorer,
                      rival_conf=[round(float(c), 6) if e else 0.0
                                  for c, e in zip(np.interp(rival_p, iso_x, iso_y), rival_ev)],
                      rival_segment=rival_seg, rival_w=rival_w, outcome_prior=cfg.outcome_prior)
    tau = cal.with_outcomes(cal.threshold(cfg.target_precision, cfg.simulated_margin), cfg.target_precision)
    taus = {name: cal.with_outcomes(cal.threshold(cfg.target_precision, cfg.simulated_margin, seg),
                                    cfg.target_precision, seg) for name, seg in SEGMENTS.items()}
    answered = answered_at(cal, cfg.target_precision, cfg.simulated_margin)
    in_mask = np.array([p[4] for p in curve_queries] + [True] * len(fb_X))
    cal.report = {
        "method": "holdout",
        "documents": len(docs),
        "holdout_answerable": n_in,
        "holdout_unanswerable": n_out,
        "feedback_examples": int(len(fb_X)),
        "outcomes": fb_kind.count(OUTCOME),
        "classifier": classifier,
        "sentence_encoder": encoder.name if encoder is not None and semantic_scorer else None,
        "folds": folds_used,
        **plan_report,
        "target_precision": cfg.target_precision,
        "answer_threshold": round(tau, 4),
        "answer_thresholds": {name: round(t, 4) for name, t in taus.items()},
        "holdout_top1": round(float(tk[in_mask].mean()), 4) if in_mask.any() else None,
        "holdout_deflection": round(float((answered * tw).sum() / tw.sum()), 4),
        "holdout_unanswerable_escalated": round(float((~answered[~in_mask]).mean()), 4) if (~in_mask).any() else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    hint = low_deflection_hint(cal, cfg)
    if hint is not None:
        cal.report["holdout_deflection_at"] = hint
        log.warning("deflection: at target_precision %.2f the archive's own hold-out questions are answered "
                    "%.1f%% of the time, so nearly every question will go to the peers%s",
                    cfg.target_precision, 100 * cal.report["holdout_deflection"],
                    "; lower targets (deflect.target_precision) would answer: " + ", ".join(
                        f"{t} -> {100 * d:.0f}%" for t, d in hint.items()) if hint else "")
    log.info("deflection calibrated on %d hold-out questions: %s", len(queries), cal.report)
    return cal


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
