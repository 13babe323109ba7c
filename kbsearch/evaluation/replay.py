"""``kbsearch eval --replay``: the evaluation protocol plus production's feedback loop.

The questions are put in a fixed order (by the SHA-1 of their id).  The first half is decided by an
index built and calibrated from the archive alone, and every decision gets the outcome production
would give it, through the library's own paths (usage log, escalation store, duplicate closing):

* ANSWER, right: the asker says it helped (`KnowledgeBase.feedback`);
* ANSWER, wrong: not helpful, and the asker escalates (`KnowledgeBase.escalate`);
* SUGGEST: helpful, naming the answer, if the right one is among those shown; else escalated;
* escalated and answerable: an expert closes it as a duplicate of the right thread (its wording
  joins that thread's phrasings at once);
* escalated and unanswerable: an expert closes it as unanswerable.

Then the nightly rebuild learns from all that, and the second half is decided and scored.  The
labels are read only where a simulated person would know them (is this the answer I needed?), never
to pick a threshold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from .evaluate import EvalQuestion, EvalReport, load_set, scored, temporary_kb

log = logging.getLogger(__name__)

#: The simulated askers' and experts' user names (as they appear in the usage log and the store).
ASKER, EXPERT = "replay-asker", None  # None: the operator, trusted like an expert


def replay_order(questions: list[EvalQuestion]) -> list[EvalQuestion]:
    """The questions in replay order: by the SHA-1 of their id (fixed, independent of the file's order)."""
    return sorted(questions, key=lambda q: hashlib.sha1(q.id.encode("utf-8")).hexdigest())


def _outcome(kb: Any, q: EvalQuestion, d: Any, archive: set[str]) -> str:
    """Give decision ``d`` of question ``q`` the outcome production would; returns its name."""
    gold = [i for i in q.answer_ids if i in archive]
    action = d.action.value
    if action == "answer" and d.answers:
        if d.answers[0].id in gold:
            kb.feedback(d.id, True, user=ASKER)
            return "helpful"
        kb.feedback(d.id, False, user=ASKER)
    elif action == "suggest":
        shown = next((a.id for a in d.answers if a.id in gold), None)
        if shown is not None:
            kb.feedback(d.id, True, user=ASKER, answer_id=shown)
            return "helpful"
    esc = kb.escalate(d.question, user=ASKER, groups=None, decision=d, seen=d.ranked[:3], deliver=False)
    kb.usage.set_escalation(d.id, str(esc.id), user=ASKER)
    if gold:
        kb.close_duplicate(esc.id, gold[0], by=EXPERT)
        return "duplicate"
    kb.close_unanswerable(esc.id, by=EXPERT, reason="replay: nothing in the archive answers it")
    return "unanswerable"


def replay(set_dir: str | Path, *, settings: Settings | None = None, decisions_file: str | Path | None = None,
           progress: Callable[[str, int, int], None] | None = None, workdir: str | Path | None = None) -> EvalReport:
    """Replay ``set_dir`` (see the module docstring); the report scores the second half only, with
    ``calibration`` the rebuild's and ``replay`` the first half's outcomes and timings."""
    from ..access import ALL_GROUPS

    started = time.perf_counter()
    set_dir, docs, questions = load_set(set_dir)
    questions = replay_order(questions)
    archive = {d.id for d in docs}
    half = len(questions) // 2
    first, second = questions[:half], questions[half:]
    info: dict[str, Any] = {"first_half": len(first), "second_half": len(second)}
    with temporary_kb(settings, workdir, "kbsearch-replay-") as kb:
        if progress:
            progress("building", 0, len(docs))
        kb.rebuild(docs)
        info["build_seconds"] = round(time.perf_counter() - started, 2)
        t0 = time.perf_counter()
        cb = (lambda done, total: progress("phase 1", done, total)) if progress else None
        decided1 = kb.ask_many([q.question for q in first], groups=ALL_GROUPS, progress=cb)
        outcomes: Counter[str] = Counter()
        for n, (q, d) in enumerate(zip(first, decided1), 1):
            kb.usage.log_ask(d, user=ASKER, groups=[])
            outcomes[_outcome(kb, q, d, archive)] += 1
            if progress and n % 50 == 0:
                progress("outcomes", n, len(first))
        info["outcomes"] = dict(sorted(outcomes.items()))
        info["phase1_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        if progress:
            progress("nightly rebuild", 0, 1)
        rebuilt = kb.rebuild(list(kb.documents()))
        calibration = dict(rebuilt.steps.get("deflect", {}))
        info["rebuild_seconds"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        cb = (lambda done, total: progress("phase 2", done, total)) if progress else None
        decided2 = kb.ask_many([q.question for q in second], groups=ALL_GROUPS, progress=cb)
        decide_seconds = time.perf_counter() - t0
    report = scored(set_dir, second, decided2, started, info["build_seconds"], decide_seconds, calibration)
    report.replay = info
    if decisions_file is not None:
        write_phased(decisions_file, [(1, first, decided1), (2, second, decided2)])
    log.info("replay %s: %s (%s)", set_dir.name, report.to_dict(), info)
    return report


def write_phased(path: str | Path, phases: list[tuple[int, list[EvalQuestion], list[Any]]]) -> None:
    """The decisions file of `evaluate.write_decisions`, each line with its ``"phase"`` (1 or 2)."""
    with Path(path).open("w", encoding="utf-8") as out:
        for phase, questions, decisions in phases:
            for q, d in zip(questions, decisions):
                deflect = d.action.value == "answer"
                out.write(json.dumps({"id": q.id, "phase": phase, "deflect": deflect,
                                      "action": d.action.value,
                                      "answer_id": d.answers[0].id if deflect and d.answers else None,
                                      "ranked": list(d.ranked[:10]), "confidence": round(float(d.confidence), 4)},
                                     ensure_ascii=False) + "\n")
