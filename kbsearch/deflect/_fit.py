"""Fitting a version's deflection: the answer model (in a worker process when there is one) and its
calibration on archive hold-outs, anchored to the previous calibration's thresholds.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..documents import Document
from ..search._encoder import load_encoder
from ._calibrate import calibrate
from ._calibration import Calibration, estimate_unanswerable_share
from ._curve import SEGMENTS, has_evidence
from ._holdout import Feedback
from ._deflector import Deflector
from ._features import FEATURES, doc_body, phrasings_of
from ._model import AnswerModel
from ._outcomes import conservative_reason, outcome_report
from ._pages import sample_pages
from ._vectors import Vectorizer

log = logging.getLogger(__name__)


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
    calibration sends its hold-outs down that path (`_pages.SearchPlan`).
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
