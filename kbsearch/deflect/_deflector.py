"""`Deflector`: one version's answer model and calibration, deciding questions.

Each covered document the question may match is scored by the answer model; search hits add the
pages the model does not cover; the calibration turns the best one's P(right) into a confidence and
the thresholds into an action.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..documents import Document
from ._calibration import Calibration
from ._curve import has_evidence, segment_of
from ._decision import Action, Answer, Decision
from ._features import FEATURES, DocInfo
from ._model import AnswerModel
from ._pages import joint_margins, order_features, search_hits, stored_vectors, uncovered_features

log = logging.getLogger(__name__)

_WORDS = re.compile(r"(?u)\b\w\w+\b")
#: Floor of the answer threshold: a decision below this confidence never deflects.
MIN_ANSWER_CONFIDENCE = 0.05
#: Phrasing match (TF-IDF cosine) from which a question repeats a document's phrasing word for word.
EXACT_REPEAT = 0.9999
_PHRASING_MATCH = FEATURES.index("phrasing_match")
#: A learned share of unanswerable questions is used up to this (an archive that answers nothing
#: people ask would otherwise never answer anything again).
MAX_LEARNED_SHARE = 0.8


# -- deciding --------------------------------------------------------------------------------------------
@dataclass
class _Scored:
    info: DocInfo
    prob: float
    features: np.ndarray
    snippet: str = ""
    #: The document itself when it was just read (search hits), so it need not be read again.
    document: Document | None = None
    #: Search hits: search's order of the hit (`_pages.order_features`).
    order: np.ndarray | None = None


def _as_live(scored: list[_Scored], engine: Any) -> list[_Scored]:
    """Covered candidates as the live index holds them now: deleted ones dropped, flags current."""
    kept = []
    for s in scored:
        doc = engine.get(s.info.id)
        if doc is not None:
            s.info = DocInfo.of(doc)
            kept.append(s)
    return kept


class Deflector:
    """The answer model and calibration of one generation, ready to decide."""

    def __init__(self, path: Path, model: AnswerModel | None, calibration: Calibration) -> None:
        self.path = path
        self.model = model
        self.cal = calibration
        self._thresholds: dict[tuple[Any, ...], dict[str, float]] = {}
        if model is not None:
            self._public = np.array([not d.allowed_groups for d in model.docs], dtype=bool)
            self._restricted = [(i, set(d.allowed_groups)) for i, d in enumerate(model.docs) if d.allowed_groups]

    @classmethod
    def load(cls, path: Path) -> Deflector:
        model = AnswerModel.load(path)
        cal = Calibration.load(path) or Calibration.prior()
        return cls(path, model, cal)

    def thresholds(self, settings: Settings, segment: int | None = None) -> dict[str, float]:
        """The answer / suggest thresholds; ``segment`` is the best candidate's (see `segment_of`)."""
        cfg = settings.deflect
        key = (cfg.target_precision, cfg.suggest_confidence, cfg.simulated_margin, segment, cfg.max_threshold_step,
               cfg.unanswerable_share, cfg.learn_unanswerable_share)
        cached = self._thresholds.get(key)
        if cached is not None:
            return dict(cached)
        share = cfg.unanswerable_share
        estimate = self.cal.report.get("unanswerable_share_estimate")
        if cfg.learn_unanswerable_share and isinstance(estimate, (int, float)):
            share = max(share, min(float(estimate), MAX_LEARNED_SHARE))
        # Never answer at (almost) no confidence, whatever the hold-out curve says.
        answer = self.cal.threshold(cfg.target_precision, cfg.simulated_margin, segment, share)
        anchor = self.cal.anchor.get("all" if segment is None else str(segment))
        if anchor is not None:  # a bounded step from the previous calibration's (`anchor_thresholds`)
            step = max(cfg.max_threshold_step, 0.0)
            answer = min(max(answer, anchor - step), anchor + step)
        answer = self.cal.with_outcomes(answer, cfg.target_precision, segment)  # real traffic's outcomes
        answer = max(answer, MIN_ANSWER_CONFIDENCE)
        suggest = min(max(cfg.suggest_confidence, 0.0), answer)
        out = {"answer": round(answer, 4), "suggest": round(suggest, 4), "target_precision": cfg.target_precision,
               "unanswerable_share": round(share, 4)}
        self._thresholds[key] = out
        return dict(out)

    def _allowed(self, groups: frozenset[str] | None, gone: frozenset[str] = frozenset()) -> np.ndarray | None:
        """The model's documents the caller may see and the index still holds (None: all of them)."""
        if self.model is None:
            return None
        mask: np.ndarray | None = None
        if groups is not None and self._restricted:
            mask = self._public.copy()
            for i, allowed in self._restricted:
                if allowed & groups:
                    mask[i] = True
        for doc_id in gone:  # deleted since the fit: no candidate, no rival in any margin
            i = self.model.index.get(doc_id)
            if i is not None:
                if mask is None:
                    mask = np.ones(len(self.model), dtype=bool)
                mask[i] = False
        return mask

    def score(self, questions: list[str], groups: frozenset[str] | None, settings: Settings,
              searcher: Any = None, *, engine: Any = None, changed: bool = False,
              gone: frozenset[str] = frozenset()) -> list[list[_Scored]]:
        """For each question, its candidates with P(right), best first.

        ``questions`` are what the caller may ask with (`access.visible_words`).  ``engine``, the live
        index, has the last word on access: a document restricted since the model was fitted is never
        a candidate.  ``changed``: documents changed since the model was fitted (the version's
        ``changes_since_build``); covered candidates are then read again from ``engine``, so one
        deleted since is no candidate and one marked outdated since never answers.  ``gone``: ids
        deleted since the fit (the version's ``deleted_since_build``), out of candidates and margins.
        """
        cfg = settings.deflect
        out: list[list[_Scored]] = []
        allowed = self._allowed(groups, gone)
        model = self.model
        hidden = engine is not None and groups is not None and engine.hides_documents(groups)
        chunk = 256
        for start in range(0, len(questions), chunk):
            batch = questions[start:start + chunk]
            scores = model.scores(batch) if model is not None else None
            for r, q in enumerate(batch):
                scored: list[_Scored] = []
                if scores is not None and model is not None:
                    cands = model.candidates(scores, r, cfg.candidates_per_signal, allowed)
                    if cands.size and hidden:
                        cands = np.array([c for c in cands if engine.visible(model.docs[c].id, groups)], dtype=int)
                    if cands.size:
                        feats = model.features(scores, r, cands, allowed)
                        probs = self.cal.candidate_prob(feats)
                        scored = [_Scored(model.docs[c], float(p), f) for c, p, f in zip(cands, probs, feats)]
                        if changed and engine is not None:
                            scored = _as_live(scored, engine)
                if searcher is not None and q:
                    row = {k: v[r] for k, v in scores.items()} if scores is not None else None
                    if row is not None and allowed is not None:  # the pages' margins: the caller's documents only
                        for name in ("phrasing_match", "tfidf", "bm25"):
                            row[name] = np.where(allowed, row[name], 0.0)
                    pages = self._page_candidates(q, groups, searcher, model, row, cfg.body_chars,
                                                  cfg.page_candidates, cfg.dense_candidates)
                    if pages:
                        scored = self._joint_margins(scored, pages)
                # A question asked before, word for word, is first answered by what answered it then
                # (a peer's answer added since the rebuild, a page's own heading), whatever the
                # classifier makes of neighbouring threads.
                scored.sort(key=lambda s: (s.features[_PHRASING_MATCH] < EXACT_REPEAT, -s.prob))
                out.append(scored)
        return out

    def _page_candidates(self, question: str, groups: frozenset[str] | None, searcher: Any,
                         model: AnswerModel | None, row_scores: dict[str, Any] | None = None,
                         body_chars: int = 1500, page_candidates: int = 5,
                         dense_candidates: int = 0) -> list[_Scored]:
        """Search hits outside the answer model (pages of a large index, answers added since the
        last rebuild), described by the same features as covered documents, sentence vectors
        included (`_pages.uncovered_features`), so they compete on equal terms.  They are
        scored by `_joint_margins`, once their margins count each other."""
        covered = model.index if model is not None else {}
        cands = search_hits(searcher, question, groups, page_candidates, covered, dense_k=dense_candidates)
        if not cands:
            return []
        docs: list[Document] = [c.document for c in cands]
        if model is not None and row_scores is not None:
            feats = uncovered_features(model, question, docs, row_scores, body_chars, stored_vectors(searcher))
        else:
            feats = self._search_features(question, searcher, searcher.prepare(question), cands)
        order = order_features(cands)
        return [_Scored(DocInfo.of(d), 0.0, f, document=d, order=o) for d, f, o in zip(docs, feats, order)]

    def _joint_margins(self, covered: list[_Scored], pages: list[_Scored]) -> list[_Scored]:
        """All candidates, their margins taken against every other candidate (`joint_margins`), scored."""
        everything = covered + pages
        rows = joint_margins([s.features for s in everything], [s.info.url or s.info.id for s in everything],
                             len(covered))
        probs = np.concatenate([self.cal.candidate_prob(np.vstack(rows[:len(covered)])) if covered else np.zeros(0),
                                self.cal.uncovered_prob(np.vstack(rows[len(covered):]),
                                                        np.vstack([s.order for s in pages]))])
        for s, f, p in zip(everything, rows, probs):
            s.features, s.prob = f, float(p)
        return everything

    @staticmethod
    def _search_features(question: str, searcher: Any, prepared: Any, cands: list[Any]) -> np.ndarray:
        """Features from the search ranker's parts (no answer model at all)."""
        ranked = {id(c): parts for c, _s, parts in searcher.ranker.rank(prepared.text, cands)}
        qwords = {w.lower() for w in _WORDS.findall(question)}
        top_bm25 = max(c.bm25 for c in cands) or 1.0
        out = np.zeros((len(cands), len(FEATURES)))
        idx = FEATURES.index
        for i, c in enumerate(cands):
            doc, parts = c.document, ranked[id(c)]
            words = {w.lower() for w in _WORDS.findall(doc.title + " " + doc.text[:3000])}
            out[i, idx("classifier")] = -1.0
            out[i, idx("phrasing_match")] = parts.question_match
            out[i, idx("tfidf")] = parts.tfidf
            out[i, idx("bm25_norm")] = c.bm25 / top_bm25
            out[i, idx("bm25_log")] = math.log1p(c.bm25)
            out[i, idx("coverage")] = len(qwords & words) / max(1, len(qwords))
            out[i, idx("verified")] = doc.verified
            out[i, idx("accepted")] = doc.accepted
            out[i, idx("query_terms_log")] = math.log1p(len(qwords))
        return out

    def decision(self, question: str, scored: list[_Scored], settings: Settings) -> Decision:
        """Turn scored candidates into a `Decision` (no routing, no logging)."""
        cfg = settings.deflect
        fresh = [s for s in scored if not s.info.outdated]
        best_overall = scored[0] if scored else None
        top = fresh[0] if fresh else None
        th = self.thresholds(settings, segment_of(top.features) if top is not None else None)
        conf = float(self.cal.confidence(top.prob)) if top is not None else 0.0
        conf = min(max(conf, 0.0), 1.0)
        evidence = top is not None and has_evidence(top.features)
        if not evidence:
            # A calibrated scorer can still rate a candidate that shares nothing with the question
            # (small archives teach it odd weights); an answer needs a word or a classifier vote.
            conf = 0.0
        if top is None:
            action, why = Action.ESCALATE, "nothing in the index matches this question"
        elif not evidence:
            action, why = Action.ESCALATE, "no word of the question is in any answer, and no classifier knows it"
        elif conf >= th["answer"]:
            action, why = Action.ANSWER, f"'{top.info.title}' matches with confidence {conf:.2f}"
        elif conf >= th["suggest"]:
            action, why = Action.SUGGEST, f"possible answers, but confidence {conf:.2f} is below {th['answer']:.2f}"
        else:
            action, why = Action.ESCALATE, f"no answer is likely enough (confidence {conf:.2f})"
        conservative = self.cal.report.get("conservative")
        if action is Action.ANSWER and conservative:  # too little evidence that the threshold holds
            action, why = Action.SUGGEST, f"{why}; suggested only: {conservative}"
        if best_overall is not None and best_overall.info.outdated:
            if action is Action.ANSWER:
                action = Action.SUGGEST
            why += f"; the closest match '{best_overall.info.title}' is outdated and never used to answer"
        shown = fresh[: cfg.suggestions] if action is not Action.ESCALATE else []
        answers = [self._answer(s) for s in shown]
        closest = [self._answer(s) for s in fresh[: cfg.suggestions]] if action is Action.ESCALATE else []
        signals: dict[str, float] = {}
        if top is not None:
            signals = dict(answers[0].signals) if answers else self._answer(top).signals
            if len(fresh) > 1:
                signals["probability_margin"] = top.prob - fresh[1].prob
        return Decision(
            id=uuid.uuid4().hex, question=question, action=action, confidence=conf, answers=answers, why=why,
            signals=signals, ranked=[s.info.id for s in scored[:10]], thresholds=th,
            generation=self.path.name, features=[float(x) for x in top.features] if top is not None else [],
            nearest_group=best_overall.info.group if best_overall is not None else None, closest=closest,
        )

    @staticmethod
    def _answer(s: _Scored) -> Answer:
        signals = {name: float(v) for name, v in zip(FEATURES, s.features)}
        signals["probability"] = s.prob
        return Answer(id=s.info.id, title=s.info.title, url=s.info.url, kind=s.info.kind, group=s.info.group,
                      probability=s.prob, signals=signals, verified=s.info.verified, accepted=s.info.accepted,
                      outdated=s.info.outdated, snippet=s.snippet)
