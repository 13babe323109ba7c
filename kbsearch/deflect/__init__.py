"""Deflection: answer a question from the index, suggest possible answers, or escalate to the peers.

`KnowledgeBase.ask` calls `Deflector.decide`.  Each covered document is a candidate scored by the
answer model (`_deflect_model`: classifier over alternate phrasings, phrasing match, TF-IDF, BM25,
query-term coverage, verified / accepted); a logistic regression fitted on archive hold-outs turns
a candidate's features into P(right answer) and a centred isotonic map makes the best one a
calibrated confidence (`_deflect_calibrate`).  The operator sets a target precision; the thresholds
follow.
Outdated documents are never used to deflect; restricted documents are only seen by their groups.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ._calibrate import (SEGMENTS, Calibration, Feedback, calibrate, estimate_unanswerable_share,
                                 has_evidence, segment_of)
from ._model import FEATURES, AnswerModel, DocInfo, doc_body, phrasings_of
from ._outcomes import OUTCOME, collect, conservative_reason, outcome_report
from ._pages import (joint_margins, order_features, sample_pages, search_hits, stored_vectors,
                             uncovered_features)
from ._vectors import Vectorizer
from ..search._encoder import load_encoder
from ..access import visible_words
from ..config import Settings
from ..documents import Document
from ..storage.filecache import file_stamp

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


class Action(str, Enum):
    """What kbsearch does with a question."""

    ANSWER = "answer"      # answered from the index (deflected)
    SUGGEST = "suggest"    # possible answers shown, with a one-click "ask the peers"
    ESCALATE = "escalate"  # goes to a peer group

    def __str__(self) -> str:
        return self.value


@dataclass
class Answer:
    """One candidate answer with the probability that it is right and the signals behind it."""

    id: str
    title: str
    url: str
    kind: str
    group: str | None
    probability: float
    signals: dict[str, float]
    verified: bool = False
    accepted: bool = False
    outdated: bool = False
    snippet: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "url": self.url, "kind": self.kind, "group": self.group,
                "probability": round(self.probability, 4), "signals": {k: round(v, 4) for k, v in self.signals.items()},
                "verified": self.verified, "accepted": self.accepted, "outdated": self.outdated,
                "snippet": self.snippet}


@dataclass
class Decision:
    """The outcome of `KnowledgeBase.ask`: an action, a calibrated confidence and why."""

    id: str
    question: str
    action: Action
    confidence: float
    answers: list[Answer]
    why: str
    signals: dict[str, float] = field(default_factory=dict)
    ranked: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    routing: Any = None
    escalation: Any = None
    generation: str = ""
    seconds: float = 0.0
    features: list[float] = field(default_factory=list)
    #: Group of the best candidate (a fallback for routing when no peer routing is configured).
    nearest_group: str | None = None
    #: ESCALATE only: the closest candidates found, best first (``answers`` stays empty: none of them
    #: is likely enough to show as an answer, but the asker and the peers can see what was found).
    closest: list[Answer] = field(default_factory=list)

    @property
    def answer(self) -> Answer | None:
        """The answer given (ANSWER decisions only)."""
        return self.answers[0] if self.action is Action.ANSWER and self.answers else None

    @property
    def deflected(self) -> bool:
        return self.action is Action.ANSWER

    @property
    def group(self) -> str | None:
        """The peer group routing picked (None when routing is not available)."""
        return getattr(self.routing, "group", None)

    def to_dict(self) -> dict[str, Any]:
        def plain(obj: Any) -> Any:
            if obj is None:
                return None
            if hasattr(obj, "to_dict"):
                return obj.to_dict()
            if hasattr(obj, "__dict__"):
                return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
            return obj
        return {
            "id": self.id, "question": self.question, "action": self.action.value,
            "confidence": round(self.confidence, 4), "why": self.why,
            "answers": [a.to_dict() for a in self.answers], "closest": [a.to_dict() for a in self.closest],
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "ranked": self.ranked, "thresholds": self.thresholds, "routing": plain(self.routing),
            "escalation": plain(self.escalation), "generation": self.generation, "seconds": round(self.seconds, 4),
        }


# -- fitting (called from KnowledgeBase._after_build) --------------------------------------------------
def anchor_thresholds(previous: Calibration | None, settings: Settings) -> dict[str, float]:
    """The answer thresholds ``previous`` (the calibration being replaced) decides with under
    ``settings``, overall and per segment: the next calibration's may move a bounded step from
    them.  Empty when there is nothing to hold on to (no previous calibration, or only the prior)."""
    if previous is None or previous.report.get("method") != "holdout":
        return {}
    deflector = Deflector(Path("."), None, previous)
    return {("all" if seg is None else str(seg)): deflector.thresholds(settings, seg)["answer"]
            for seg in (None, *sorted(set(SEGMENTS.values())))}


def fit_deflection(generation: Any, settings: Settings, feedback: list[Feedback] | None = None,
                   asked: list[list[float]] | None = None, previous: Calibration | None = None,
                   unanswerable: list[str] | None = None) -> dict[str, Any]:
    """Fit and store the answer model and its calibration for a freshly built ``generation``.

    ``asked``: the logged features of recent questions, to estimate how many of them were
    unanswerable (`estimate_unanswerable_share`).  ``previous``: the calibration this one
    replaces; the answer thresholds move at most ``deflect.max_threshold_step`` from its.
    ``unanswerable``: real questions experts closed as unanswerable, held out as calibration's
    unanswerable questions beside the archive's held-out threads.

    An index larger than ``deflect.max_model_docs`` is modelled by its peer answers and a sample of
    ``deflect.calibration_pages`` pages; the rest of its pages reach decisions through search, and
    calibration sends its hold-outs down that path (`_deflect_pages.SearchPlan`).
    """
    started = time.perf_counter()
    cfg = settings.deflect
    engine = generation.engine
    total = engine.doc_count()
    covers_all = total <= cfg.max_model_docs
    docs = list(engine.iter_documents() if covers_all else engine.iter_documents(kind="answer"))
    if not covers_all:
        docs += sample_pages(engine, cfg.calibration_pages, cfg.seed, specific=True)
    usable = [d for d in docs if phrasings_of(d) or d.text.strip()]
    if not usable:
        return {"documents": 0, "seconds": round(time.perf_counter() - started, 2)}
    phrasings = [p for d in usable for p in phrasings_of(d)]
    encoder = load_encoder(cfg.encoder)
    stale = (sum(len(f.features) != len(FEATURES) for f in feedback or [])
             + sum(bool(f) and len(f) != len(FEATURES) for f in asked or []))
    if stale:
        log.warning("deflection: %d feedback examples and logged questions were scored by an older kbsearch "
                    "(other features) and are not used", stale)
    with _ModelFit(elsewhere=0 <= cfg.parallel_fit_phrasings <= len(phrasings),
                   encoder=encoder.model_dir if encoder is not None else None) as final:
        try:
            vec = Vectorizer.fit(phrasings + [doc_body(d, cfg.body_chars) for d in usable],
                                 encoder=encoder, sentences=phrasings)
        except ValueError:
            log.warning("deflection: no usable text; questions will be escalated")
            return {"documents": 0}
        # Sampled pages of a large index calibrate (through search, as they are decided); the model
        # covers them only when there are no answers to cover (it needs documents to exist).
        covered_docs = usable if covers_all or not any(d.kind == "answer" for d in usable) else \
            [d for d in usable if d.kind == "answer"]
        final.start(covered_docs, dict(body_chars=cfg.body_chars, min_phrasings=cfg.min_phrasings,
                                 max_classes=cfg.max_classes, covers_all=covers_all, vec=vec, C=cfg.classifier_c,
                                 negatives=list(unanswerable or ())))
        # Calibrate on the non-outdated documents: outdated ones never answer, so they teach nothing.
        fresh = [d for d in usable if not d.outdated]
        cal = calibrate(fresh, vec, cfg, body_chars=cfg.body_chars, feedback=feedback or [], encoder=encoder,
                        unanswerable=unanswerable or (),
                        searcher=getattr(generation, "searcher", None),
                        uncovered_share=0.0 if covers_all else 1.0 - len(usable) / max(1, total))
        model = final.result()
    if model is None:
        return {"documents": 0}
    if not cal.report.get("classifier"):
        # The classifier is only used when calibration saw one (its scores must mean what they meant there).
        model = model.without_classifier()
    model.attach_encoder(encoder, covered_docs)
    model.page_encoder = encoder if cal.semantic_scorer or cal.uncovered_scorer else None  # outside the model
    cal.anchor = anchor_thresholds(previous, settings)
    cal.report["conservative"] = conservative_reason(cal, len(usable), cfg.trusted_documents, cfg.target_precision)
    cal.report.update(outcome_report(cal, cfg.target_precision, cfg.simulated_margin))
    if cal.report["conservative"]:
        log.warning("deflection: %s", cal.report["conservative"])
    vec.forget()
    model.vec.forget()  # a copy when the model came from a worker
    scored_asks = np.array([f for f in asked or [] if len(f) == len(FEATURES)], dtype=float)
    unmatched = sum(1 for f in asked or [] if not f)  # nothing in the index matched: confidence 0
    if len(scored_asks) + unmatched:
        confidences = np.zeros(len(scored_asks) + unmatched)
        if len(scored_asks):
            confidences[:len(scored_asks)] = cal.confidence(cal.candidate_prob(scored_asks))
            confidences[:len(scored_asks)] *= [has_evidence(f) for f in scored_asks]  # as `decision` does
        estimate = estimate_unanswerable_share(cal, confidences)
        if estimate is not None:
            cal.report["unanswerable_share_estimate"] = estimate
            cal.report["estimate_asks"] = int(len(confidences))
            if estimate > cfg.unanswerable_share + 0.1:
                log.warning("about %.0f%% of the questions asked look unanswerable from the archive, more than "
                            "deflect.unanswerable_share (%.0f%%)%s", 100 * estimate, 100 * cfg.unanswerable_share,
                            "; deciding with the estimate" if cfg.learn_unanswerable_share else "")
    model.save(generation.path)
    cal.save(generation.path)
    return {"documents": len(model), "covers_all": covers_all, **cal.report,
            "classifier_vectors": model.classifier_vectors, "seconds": round(time.perf_counter() - started, 2)}


class _ModelFit:
    """The answering model's fit: run in a worker process (``elsewhere``), or in this process when its
    result is asked for.  The calibration is fitted meanwhile; both are mostly a LinearSVC fit, whose
    random state is global to a process, so the second fit needs a process of its own (two threads
    would make both fits depend on timing).  The worker starts at once and boots (imports, loads the
    sentence ``encoder`` folder) while this process encodes the phrasings; `start` hands it the fit.
    A worker that cannot start or dies costs only time: the model is then fitted here."""

    def __init__(self, elsewhere: bool, encoder: Path | None = None) -> None:
        self.documents: list[Document] = []
        self.options: dict[str, Any] = {}
        self._pool: Any = None
        self._future: Any = None
        self._scratch: str | None = None
        if elsewhere:
            from .._workers import process_pool

            log.info("deflection: fitting the answer model in a worker process while calibrating")
            try:
                self._pool = process_pool(1)
                self._pool.submit(_boot_fit_worker, str(encoder) if encoder is not None else None)
            except Exception as exc:  # no processes here (a daemon, a sandbox): fit in this one
                log.warning("deflection: fitting the answer model in this process (%s)", exc)
                self.close()

    def start(self, documents: list[Document], options: dict[str, Any]) -> None:
        """Fit the model on ``documents`` (`AnswerModel.fit` ``options``): in the worker, if there is one."""
        self.documents, self.options = documents, options
        if self._pool is not None:
            try:
                self._scratch = tempfile.mkdtemp(prefix="kbsearch-fit-")
                self._future = self._pool.submit(_fit_to_disk, documents, self._scratch, **options)
            except Exception as exc:  # the worker died booting
                log.warning("deflection: fitting the answer model in this process (%s)", exc)
                self.close(wait=False)

    def result(self) -> AnswerModel | None:
        if self._future is not None:
            try:
                # Written to disk by the worker and read here: a pickle sent back would cost this
                # process its bytes besides the model (~240 MB at 100k sections).
                return AnswerModel.load(Path(self._scratch)) if self._future.result() else None
            except Exception as exc:
                log.warning("deflection: the worker fitting the answer model failed (%s: %s); fitting here",
                            type(exc).__name__, exc)
            finally:
                self.close()
        return AnswerModel.fit(self.documents, **self.options)

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = self._future = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> _ModelFit:
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        self.close(wait=exc_type is None)  # on an error (Ctrl-C) do not wait for the worker's fit


def _fit_to_disk(documents: list[Document], scratch: str, **options: Any) -> bool:
    """In the worker: fit the answer model and save it under ``scratch``; whether there is one."""
    model = AnswerModel.fit(documents, **options)
    if model is None:
        return False
    model.save(Path(scratch))
    return True


def _boot_fit_worker(encoder: str | None) -> None:
    """Import what fitting the answer model needs and load the sentence encoder (by its folder, as the
    vectorizer names it when pickled), so the fit that follows starts at once."""
    importlib.import_module("sklearn.svm")
    if encoder is not None:
        load_encoder(encoder)


# -- deciding --------------------------------------------------------------------------------------------
@dataclass
class _Scored:
    info: DocInfo
    prob: float
    features: np.ndarray
    snippet: str = ""
    #: The document itself when it was just read (search hits), so it need not be read again.
    document: Document | None = None
    #: Search hits: search's order of the hit (`_deflect_pages.order_features`).
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
        included (`_deflect_pages.uncovered_features`), so they compete on equal terms.  They are
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


# -- the front door's helpers (called by KnowledgeBase.ask / ask_many / feedback) -------------------------
def _deflector(kb: Any, path: Path | None = None) -> Deflector:
    """The deflector of the version at ``path`` (default: the live one), reloaded only when its model
    files are other files.

    A version forked by an add shares its model's files (hard links) with its parent: the loaded
    model is reused for it, so indexing a peer answer does not cost the next question a reload.
    """
    from ._calibrate import CALIBRATION_FILE
    from ._model import MODEL_DIR

    path = kb.generation_path if path is None else path
    return kb._deflect_cache.get(
        lambda: file_stamp(*(path / MODEL_DIR / name for name in (CALIBRATION_FILE, "model.json"))),
        lambda _old: Deflector.load(path),
        lambda d: d if d.path == path else Deflector(path, d.model, d.cal))  # same files, another version


def _score_on_live(kb: Any, texts: list[str], grp: Any) -> tuple[Deflector, list[list[_Scored]]]:
    """Score ``texts`` against one version, pinned while it is read: its lease keeps writers in any
    process from removing it meanwhile (`kbsearch.storage.versions.lease`)."""
    with kb._using() as live:
        deflector = _deflector(kb, live.path)
        changed = int(live.meta.get("changes_since_build", 0)) > 0
        searcher = _searcher_if_needed(live, deflector, changed)
        engine = live.engine
        words = [visible_words(t, engine, grp) for t in texts]  # the words this caller may match with
        gone = frozenset(live.meta.get("deleted_since_build", ()))
        return deflector, deflector.score(words, grp, kb.settings, searcher, engine=engine, changed=changed,
                                          gone=gone)


def _searcher_if_needed(live: Any, deflector: Deflector, changed: bool) -> Any:
    """The version's searcher when the answer model does not cover every document, or the version
    ``changed`` since the rebuild (an add and a delete leave the count as it was, and may have
    brought a document the model does not know)."""
    model = deflector.model
    if model is None or not model.covers_all or live.engine.doc_count() != len(model) or changed:
        return live.searcher
    return None


def _live_calibration(kb: Any) -> Calibration | None:
    """The calibration questions are decided with now (before a rebuild or refit replaces it)."""
    try:
        return Calibration.load(kb.generation_path)
    except Exception:  # no live generation yet, or an unreadable file: nothing to hold on to
        return None


def after_build(kb: Any, generation: Any) -> dict[str, Any]:
    """Fit the deflection model of ``generation``, learning from the usage log's feedback too."""
    from ..storage.usage import open_usage

    feedback: list[Feedback] = []
    unanswerable: list[str] = []
    try:
        usage = open_usage(kb.root, kb.settings)
        asked: list[list[float]] = []
        if usage.exists():
            examples, unanswerable = collect(kb.root, kb.settings.deflect.max_feedback, len(FEATURES), kb.settings)
            feedback = [Feedback(f, h, OUTCOME) for f, h in examples]
            asked = usage.recent_features(kb.settings.deflect.share_estimate_asks)
            usage.close()
        return fit_deflection(generation, kb.settings, feedback, asked, previous=_live_calibration(kb),
                              unanswerable=unanswerable)
    except MemoryError:
        raise
    except Exception as exc:  # the index itself is fine; questions escalate until the next rebuild
        log.exception("deflection calibration failed; questions will be escalated until the next rebuild")
        return {"error": f"{type(exc).__name__}: {exc}"}


def decide_many(kb: Any, questions: list[str], *, groups: Any = None, route: bool = True,
                progress: Any = None) -> list[Decision]:
    """Decisions for many questions at once (no logging, no escalation): evaluation and batch use."""
    from ..search import ALL_GROUPS, clean_question, normalise_groups

    started = time.perf_counter()
    max_chars = kb.settings.search.max_question_chars
    texts = [clean_question(q, max_chars) for q in questions]
    grp = normalise_groups(groups)
    out: list[Decision] = []
    step = 256
    for start in range(0, len(texts), step):
        batch = texts[start:start + step]
        deflector, scores = _score_on_live(kb, batch, grp)
        for text, scored in zip(batch, scores):
            decision = deflector.decision(text, scored, kb.settings)
            if route and decision.action is not Action.ANSWER and hasattr(kb, "route"):
                decision.routing = kb.route(text, groups=ALL_GROUPS if grp is None else grp)
            out.append(decision)
        if progress:
            progress(len(out), len(texts))
    per = (time.perf_counter() - started) / max(1, len(texts))
    for d in out:
        d.seconds = per
    return out


def ask(kb: Any, question: str, *, user: str | None = None, groups: Any = None, escalate: bool = False,
        log_usage: bool = True) -> Decision:
    """`KnowledgeBase.ask`: decide, attach routing and snippets, log, and escalate when asked to."""
    from ..search import ALL_GROUPS, clean_question, make_snippet, normalise_groups

    started = time.perf_counter()
    text = clean_question(question, kb.settings.search.max_question_chars)
    grp = normalise_groups(groups)
    deflector, scores = _score_on_live(kb, [text], grp)
    scored = scores[0]
    decision = deflector.decision(text, scored, kb.settings)
    words = {w.lower() for w in _WORDS.findall(text)}
    from ..index import analyze

    terms = set(analyze(text))
    kept = []
    just_read = {s.info.id: s.document for s in scored if s.document is not None}
    for a in decision.answers:
        # Search hits of this very call are live and were access-checked by the search itself.
        doc = just_read.get(a.id) or kb.get(a.id, user_groups=ALL_GROUPS if grp is None else grp)
        if doc is None:  # deleted since the model was fitted, or not visible: never shown
            continue
        if doc.outdated and not a.outdated:  # marked outdated since the model was fitted (peers)
            a.outdated = True
            if decision.action is Action.ANSWER and a is decision.answers[0]:
                decision.action = Action.SUGGEST
                decision.why += "; the best answer is marked outdated"
        a.snippet = make_snippet(doc.text or " ".join(doc.questions), terms or words, kb.settings.search.snippet_chars)
        kept.append(a)
    closest = []
    for a in decision.closest:  # the same live checks: never a document the caller may not see
        doc = just_read.get(a.id) or kb.get(a.id, user_groups=ALL_GROUPS if grp is None else grp)
        if doc is None or doc.outdated:
            continue
        a.snippet = make_snippet(doc.text or " ".join(doc.questions), terms or words, kb.settings.search.snippet_chars)
        closest.append(a)
    decision.closest = closest
    if len(kept) != len(decision.answers):
        if decision.action is Action.ANSWER and (not kept or kept[0].id != decision.answers[0].id):
            decision.action = Action.SUGGEST if kept else Action.ESCALATE
            decision.why += "; the best answer is no longer available"
        decision.answers = kept
    caller = ALL_GROUPS if grp is None else grp
    if decision.action is not Action.ANSWER and hasattr(kb, "route"):
        decision.routing = kb.route(text, groups=caller)
    decision.seconds = time.perf_counter() - started
    group_list = sorted(grp) if grp else []
    usage = kb.usage if log_usage else None
    if usage is not None:
        usage.log_ask(decision, user=user, groups=group_list)
    if escalate and decision.action is Action.ESCALATE and hasattr(kb, "escalate"):
        decision.escalation = kb.escalate(text, user=user, group=decision.group, groups=caller,
                                          seen=tuple(decision.ranked[:3]), decision=decision)
        esc_id = getattr(decision.escalation, "id", None)
        if usage is not None and esc_id is not None:
            usage.set_escalation(decision.id, str(esc_id))
    return decision
