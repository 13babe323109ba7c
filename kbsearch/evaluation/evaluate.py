"""Evaluating deflection on a labelled set, the way published intent / FAQ systems are compared.

A set is a folder with ``archive.jsonl`` (past threads) and ``questions.jsonl`` (new questions with the
archive threads that answer them; none: must escalate), see ``tests/data/eval/README.md``.  The
harness builds a fresh index from the archive in a temporary folder with `KnowledgeBase.rebuild`
(which calibrates on the archive alone), decides every question, and only then looks at the
questions' ``answer_ids`` and ``group`` to score.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..documents import Document
from ..errors import KbsearchError

if TYPE_CHECKING:
    from ..kb import KnowledgeBase

log = logging.getLogger(__name__)

#: The keys of ``kbsearch eval --json``, in order.
METRIC_KEYS = ("questions", "accuracy", "in_scope_accuracy", "oos_recall", "deflection_rate",
               "deflection_precision", "p_at_1", "mrr_at_10", "mcc", "routing_accuracy")


class EvalSetError(KbsearchError):
    """An evaluation set is missing a file or has a malformed line."""


@dataclass
class EvalQuestion:
    id: str
    question: str
    answer_ids: list[str]
    group: str | None


@dataclass
class EvalReport:
    """Scores of one evaluation run (`to_dict` gives exactly `METRIC_KEYS`) plus timings and details."""

    questions: int
    accuracy: float
    in_scope_accuracy: float | None
    oos_recall: float | None
    deflection_rate: float
    deflection_precision: float | None
    p_at_1: float | None
    mrr_at_10: float | None
    mcc: float
    routing_accuracy: float | None
    set_name: str = ""
    build_seconds: float = 0.0
    decide_seconds: float = 0.0
    seconds: float = 0.0
    calibration: dict[str, Any] = field(default_factory=dict)
    reliability: list[dict[str, Any]] = field(default_factory=list)
    expected_calibration_error: float = 0.0
    #: ``eval --replay`` only: the first half's outcomes and the phases' timings.
    replay: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in METRIC_KEYS}

    def details(self) -> dict[str, Any]:
        return {**self.to_dict(), "set": self.set_name, "build_seconds": round(self.build_seconds, 2),
                "decide_seconds": round(self.decide_seconds, 2), "seconds": round(self.seconds, 2),
                "calibration": self.calibration, "reliability": self.reliability,
                "expected_calibration_error": self.expected_calibration_error,
                **({"replay": self.replay} if self.replay else {})}


def _read_lines(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalSetError(f"{path} is missing (an evaluation set needs archive.jsonl and questions.jsonl)") from None
    except OSError as exc:
        raise EvalSetError(f"cannot read {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}:{n}: invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise EvalSetError(f"{path}:{n}: expected a JSON object")
        out.append(item)
    return out


def load_archive(path: str | Path) -> list[Document]:
    """Archive threads as answer documents (title = the question, text = the answer)."""
    docs = []
    path = Path(path)
    for n, item in enumerate(_read_lines(path), 1):
        try:
            docs.append(Document(id=str(item["id"]), title=item.get("title") or "", text=item.get("answer") or "",
                                 kind="answer", questions=item.get("questions") or (), group=item.get("group")))
        except KeyError:
            raise EvalSetError(f"{path}:{n}: thread without an id") from None
        except KbsearchError as exc:
            raise EvalSetError(f"{path}:{n}: {exc}") from None
    return docs


def load_questions(path: str | Path) -> list[EvalQuestion]:
    out = []
    path = Path(path)
    for n, item in enumerate(_read_lines(path), 1):
        q, ids = item.get("question"), item.get("answer_ids", [])
        if not isinstance(q, str) or not q.strip() or not isinstance(ids, list):
            raise EvalSetError(f"{path}:{n}: needs a non-empty 'question' and a list 'answer_ids'")
        out.append(EvalQuestion(str(item.get("id", n)), q, [str(i) for i in ids], item.get("group")))
    return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _mcc(gold: list[str], pred: list[str]) -> float:
    from sklearn.metrics import matthews_corrcoef

    if len(set(gold) | set(pred)) < 2:
        return 0.0
    return round(float(matthews_corrcoef(gold, pred)), 4)


def reliability_table(conf: list[float], right: list[bool], bins: int = 10) -> tuple[list[dict[str, Any]], float]:
    """Confidence bins with their share of right top answers, and the expected calibration error."""
    rows = []
    ece = 0.0
    n = len(conf)
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if not idx:
            continue
        mc = sum(conf[i] for i in idx) / len(idx)
        acc = sum(right[i] for i in idx) / len(idx)
        ece += len(idx) / n * abs(mc - acc)
        rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "count": len(idx), "mean_confidence": round(mc, 3),
                     "right": round(acc, 3)})
    return rows, round(ece, 4)


def load_set(set_dir: str | Path) -> tuple[Path, list[Document], list[EvalQuestion]]:
    """An evaluation set's folder, archive and questions (in file order); `EvalSetError` if unusable."""
    set_dir = Path(set_dir)
    if not set_dir.is_dir():
        raise EvalSetError(f"{set_dir} is not a directory")
    docs = load_archive(set_dir / "archive.jsonl")
    questions = load_questions(set_dir / "questions.jsonl")
    if not docs:
        raise EvalSetError(f"{set_dir / 'archive.jsonl'} holds no threads")
    _warn_unknown_answers(questions, {d.id for d in docs})
    return set_dir, docs, questions


@contextmanager
def temporary_kb(settings: Settings | None, workdir: str | Path | None, prefix: str) -> Iterator[KnowledgeBase]:
    """A fresh knowledge base in a temporary folder (removed afterwards), with a copy of ``settings``."""
    from ..kb import KnowledgeBase

    with tempfile.TemporaryDirectory(prefix=prefix, dir=workdir) as tmp:
        s = Settings.load() if settings is None else _copy(settings)
        s.index.path = Path(tmp) / "index"
        kb = KnowledgeBase.open(settings=s, create=True)
        try:
            yield kb
        finally:
            kb.close()


def evaluate(set_dir: str | Path, *, settings: Settings | None = None, decisions_file: str | Path | None = None,
             progress: Callable[[str, int, int], None] | None = None, workdir: str | Path | None = None) -> EvalReport:
    """Build a fresh index from ``set_dir``/archive.jsonl, calibrate on it, decide every question, score."""
    from ..search import ALL_GROUPS

    started = time.perf_counter()
    set_dir, docs, questions = load_set(set_dir)
    with temporary_kb(settings, workdir, "kbsearch-eval-") as kb:
        if progress:
            progress("building", 0, len(docs))
        build = kb.rebuild(docs)
        build_seconds = time.perf_counter() - started
        calibration = dict(build.steps.get("deflect", {}))
        t0 = time.perf_counter()
        cb = (lambda done, total: progress("deciding", done, total)) if progress else None
        decisions = kb.ask_many([q.question for q in questions], groups=ALL_GROUPS, progress=cb)
        decide_seconds = time.perf_counter() - t0
    report = scored(set_dir, questions, decisions, started, build_seconds, decide_seconds, calibration)
    if decisions_file is not None:
        write_decisions(decisions_file, questions, decisions)
    log.info("eval %s: %s", set_dir.name, report.to_dict())
    return report


def scored(set_dir: Path, questions: list[EvalQuestion], decisions: list[Any], started: float,
           build_seconds: float, decide_seconds: float, calibration: dict[str, Any]) -> EvalReport:
    """`score` with the run's name, timings (``started``: `time.perf_counter` at the start) and calibration."""
    report = score(questions, decisions)
    report.set_name = set_dir.name
    report.build_seconds, report.decide_seconds = build_seconds, decide_seconds
    report.seconds = time.perf_counter() - started
    report.calibration = calibration
    return report


def _warn_unknown_answers(questions: list[EvalQuestion], archive_ids: set[str]) -> None:
    """Warn about answer ids the archive lacks: those questions are scored as answerable, yet no
    decision can answer them right (usually a set cut from a larger one, or a typo)."""
    unknown = sorted({i for q in questions for i in q.answer_ids if i not in archive_ids})
    if unknown:
        unreachable = sum(1 for q in questions if q.answer_ids and not set(q.answer_ids) & archive_ids)
        log.warning("eval: answer ids not in the archive: %s%s (%d in all); questions with no answer id in "
                    "the archive: %d (scored as answerable; no decision can be right)",
                    ", ".join(repr(i) for i in unknown[:5]), ", ..." if len(unknown) > 5 else "", len(unknown), unreachable)


def _copy(settings: Settings) -> Settings:
    import copy

    return copy.deepcopy(settings)


def score(questions: list[EvalQuestion], decisions: list[Any]) -> EvalReport:
    """Score decisions against the questions' labels (the only place the labels are read)."""
    correct, in_scope, oos, precise, p1, rr, routed = [], [], [], [], [], [], []
    gold_labels, pred_labels, conf, right = [], [], [], []
    deflected = 0
    for q, d in zip(questions, decisions):
        gold = set(q.answer_ids)
        deflect = d.action.value == "answer"
        given = d.answers[0].id if deflect and d.answers else None
        deflected += deflect
        ok = (given in gold) if gold else not deflect
        correct.append(ok)
        if gold:
            in_scope.append(given in gold)
            p1.append(bool(d.ranked) and d.ranked[0] in gold)
            rank = next((i + 1 for i, x in enumerate(d.ranked[:10]) if x in gold), None)
            rr.append(1.0 / rank if rank else 0.0)
        else:
            oos.append(not deflect)
        if deflect:
            precise.append(given in gold)
        pred = given if deflect else "<escalate>"
        gold_labels.append((pred if pred in gold else sorted(gold)[0]) if gold else "<escalate>")
        pred_labels.append(pred or "<escalate>")
        if q.group is not None:
            routed.append((d.group or d.nearest_group) == q.group)
        conf.append(float(d.confidence))
        top = next((x for x in d.ranked), None)
        right.append(bool(gold) and top in gold)
    table, ece = reliability_table(conf, right)
    return EvalReport(
        questions=len(questions), accuracy=_mean(correct) or 0.0, in_scope_accuracy=_mean(in_scope),
        oos_recall=_mean(oos), deflection_rate=round(deflected / len(questions), 4) if questions else 0.0,
        deflection_precision=_mean(precise), p_at_1=_mean(p1), mrr_at_10=_mean(rr),
        mcc=_mcc(gold_labels, pred_labels), routing_accuracy=_mean(routed), reliability=table,
        expected_calibration_error=ece,
    )


def write_decisions(path: str | Path, questions: list[EvalQuestion], decisions: list[Any]) -> None:
    """One JSON line per question: {"id", "deflect", "answer_id", "ranked", "confidence"}."""
    with Path(path).open("w", encoding="utf-8") as out:
        for q, d in zip(questions, decisions):
            deflect = d.action.value == "answer"
            out.write(json.dumps({"id": q.id, "deflect": deflect,
                                  "answer_id": d.answers[0].id if deflect and d.answers else None,
                                  "ranked": list(d.ranked[:10]), "confidence": round(float(d.confidence), 4)},
                                 ensure_ascii=False) + "\n")

