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

This module fits; the questions are made in `_holdout`, the result is a `_calibration.Calibration`,
and the threshold arithmetic on its curve is `_curve`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import DeflectConfig
from ..documents import Document
from ._calibration import Calibration, answered_at, low_deflection_hint
from ._curve import _ENCODED, _HAS_CLASSIFIER, SEGMENTS, _without_semantic, confidence_map, has_evidence, segment_of
from ._holdout import Feedback, HoldoutQuery, make_holdout
from ._features import FEATURES
from ._model import AnswerModel
from ._outcomes import OUTCOME
from ._vectors import Vectorizer

log = logging.getLogger(__name__)

#: Fewer documents than this are not calibrated: a cautious prior scorer is used instead.
MIN_DOCUMENTS = 5


#: Least share of the hold-out curve's weight given to hold-outs decided through search, even when
#: the model covers the whole index: answers written after the rebuild are decided that way.
MIN_SEARCH_WEIGHT = 0.1


#: Columns the scorer of uncovered documents leaves out when its hold-outs are a large index's
#: headings (`_pages.SearchPlan` with ``every``) and the sentence encoder judges meaning.  Those
#: pseudo-questions are made of the heading's own words, so their character n-grams match the
#: heading by construction; real rephrasings' do not, and a scorer that trusted them put pages
#: sharing more letters above the page that means the same (bench/README.md, "pages at any size").
HEADING_BIASED = ("phrasing_match", "phrasing_margin")


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

    def fit(mask: np.ndarray, semantic: bool = True, norm: np.ndarray | None = None, order: bool = False,
            ignore: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        # Weights scaled so the regulariser sees a sensible effective sample size (that of ``norm``).
        norm = mask if norm is None else norm
        ww = w[mask] * int(norm.sum()) / w[norm].sum()
        Xm = X[mask] if semantic else _without_semantic(X[mask])
        if order:  # search's order of the hits (`_pages.order_features`)
            Xm = np.hstack([Xm, order_X[mask]])
        cols = [FEATURES.index(name) for name in ignore]
        if cols:  # a constant column: mean 0, scale 1, weight 0 (the stored layout stays the same)
            Xm = Xm.copy()
            Xm[:, cols] = 0.0
        mean, scale, coef, intercept = _fit_scorer(Xm, y[mask], ww, cfg.seed)
        coef[cols] = 0.0
        return mean, scale, coef, intercept

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
    ignored = HEADING_BIASED if sample_only and encoder is not None else ()
    if 0 < y[uncovered_rows].sum() < uncovered_rows.sum():
        uncovered_scorer = [a.tolist() if hasattr(a, "tolist") else [a]
                            for a in fit(uncovered_rows, order=True, ignore=ignored)]
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
        **({"uncovered_scorer_ignores": list(ignored)} if uncovered_scorer and ignored else {}),
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
