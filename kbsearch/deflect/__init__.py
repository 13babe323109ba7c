"""Deflection: answer a question from the index, suggest possible answers, or escalate to the peers.

`KnowledgeBase.ask` calls `Deflector.decide`.  Each covered document is a candidate scored by the
answer model (`_model`: classifier over alternate phrasings, phrasing match, TF-IDF, BM25,
query-term coverage, verified / accepted); a logistic regression fitted on archive hold-outs turns
a candidate's features into P(right answer) and a centred isotonic map makes the best one a
calibrated confidence (`_calibrate`).  The operator sets a target precision; the thresholds
follow.
Outdated documents are never used to deflect; restricted documents are only seen by their groups.

The types are in `_decision`, deciding in `_deflector`, fitting in `_fit`; this module holds what the
front door calls (`ask`, `decide_many`, `after_build`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..access import visible_words
from ..storage.filecache import file_stamp
from ._calibration import Calibration
from ._curve import has_evidence
from ._holdout import Feedback
from ._decision import Action, Answer, Decision
from ._deflector import _WORDS, MIN_ANSWER_CONFIDENCE, Deflector, _Scored
from ._fit import anchor_thresholds, fit_deflection
from ._features import FEATURES
from ._outcomes import OUTCOME, collect

log = logging.getLogger(__name__)

__all__ = ["MIN_ANSWER_CONFIDENCE", "Action", "Answer", "Decision", "Deflector", "after_build", "anchor_thresholds",
           "ask", "decide_many", "fit_deflection", "has_evidence"]


# -- the front door's helpers (called by KnowledgeBase.ask / ask_many / feedback) -------------------------
def _deflector(kb: Any, path: Path | None = None) -> Deflector:
    """The deflector of the version at ``path`` (default: the live one), reloaded only when its model
    files are other files.

    A version forked by an add shares its model's files (hard links) with its parent: the loaded
    model is reused for it, so indexing a peer answer does not cost the next question a reload.
    """
    from ._calibration import CALIBRATION_FILE
    from ._model_files import MODEL_DIR

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
