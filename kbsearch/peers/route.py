"""Routing: which peer group should answer an escalated question.

A linear text classifier (word 1-2-gram TF-IDF + scikit-learn `LinearSVC`) is trained on the groups of
past answered questions (answer documents with a ``group``: their title and alternate phrasings),
plus each configured group's name, description and keywords as weighted examples, so routing works
from day one and improves with history.  Below `SMALL_HISTORY` examples it reads content words only.
Confidence is a softmax over the classifier's margins whose temperature is fitted on held-out history
(a fifth, at most 2,000).  The model is fitted when a generation is built
(`KnowledgeBase._after_build`) and stored beside the index as JSON + numpy arrays (no pickles).
An explicit group chosen by the asker always wins.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from ..index import content_terms
from ..config import RouteConfig
from ..documents import Document, read_jsonl
from ..errors import InvalidEscalationError, KbsearchError
from ..storage import save_npy, write_json
from .groups import Group, Groups

if TYPE_CHECKING:
    from ..search._generations import Generation
    from ..config import Settings

log = logging.getLogger(__name__)

ROUTE_DIR = "route"
#: Below this many training examples the router reads content words (stemmed, no stop words) and
#: its softmax temperature is not fitted: with a small history, words like "on" or "my" that happen
#: to occur in one group's few examples would decide.  From this size on, every word counts (CLINC150
#: domains from k phrasings per intent: content words 0.682 / 0.761 at 150 / 300 examples against
#: 0.634 / 0.757 for every word; every word ahead from 450 on, 0.959 against 0.932 at 7,500).
SMALL_HISTORY = 300
_VEC = dict(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, lowercase=True,
            token_pattern=r"(?u)\b\w+\b", dtype=np.float32)
_TEMPERATURES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
#: Most examples used to fit the softmax temperature (held out / trained on); the final fit uses all.
_CALIBRATION_HELD = 2000
_CALIBRATION_TRAIN = 6000


def _content_words(text: str) -> list[str]:
    """Content words (the index's stemmed terms without stop and question-frame words) and their pairs."""
    terms = content_terms(text)
    return terms + [f"{a} {b}" for a, b in zip(terms, terms[1:])]


def _vectorizer(analyzer: str, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
    """The router's TF-IDF: every word (``plain``) or content words (``content``, small histories)."""
    params = _VEC if analyzer == "plain" else dict(analyzer=_content_words, sublinear_tf=True, dtype=np.float32)
    return TfidfVectorizer(vocabulary=vocabulary, **params)


@dataclass
class Routing:
    """The chosen group, the ranked alternatives with confidences, and why."""

    group: str
    confidence: float
    ranked: list[tuple[str, float]] = field(default_factory=list)
    reason: str = ""
    explicit: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ranked"] = [{"group": g, "confidence": round(c, 4)} for g, c in self.ranked]
        out["confidence"] = round(self.confidence, 4)
        return out


def training_examples(docs: Iterable[Document], groups: Groups | None = None,
                      prior_weight: float = 3.0
                      ) -> tuple[list[str], list[str], list[float], Counter[str], Counter[str]]:
    """(texts, labels, weights, answers per group, public answers per group): answered questions by
    group, then group priors."""
    texts: list[str] = []
    labels: list[str] = []
    weights: list[float] = []
    history: Counter[str] = Counter()
    public: Counter[str] = Counter()
    for doc in docs:
        if doc.kind != "answer" or not doc.group or doc.outdated:
            continue
        for phrasing in (doc.title, *doc.questions):
            if phrasing and phrasing.strip():
                texts.append(phrasing)
                labels.append(doc.group)
                weights.append(1.0)
        history[doc.group] += 1
        if not doc.allowed_groups:
            public[doc.group] += 1
    for group in groups or ():
        for text in _prior_texts(group):
            texts.append(text)
            labels.append(group.name)
            weights.append(prior_weight)
    return texts, labels, weights, history, public


def _prior_texts(group: Group) -> list[str]:
    out = []
    if group.description or group.keywords:
        out.append(group.name.replace("-", " ").replace("_", " "))
    if group.description:
        out.append(group.description)
    out.extend(group.keywords)
    return out


class Router:
    """A fitted group classifier; `route` ranks groups for a question."""

    def __init__(self, vectorizer: TfidfVectorizer | None, coef: np.ndarray, intercept: np.ndarray,
                 classes: list[str], temperature: float = 1.0, meta: dict[str, Any] | None = None) -> None:
        self.vectorizer = vectorizer
        self.coef = coef
        self.intercept = intercept
        self.classes = classes
        self.temperature = temperature
        self.meta = meta or {}
        self._names: np.ndarray | None = None

    @classmethod
    def empty(cls, classes: Sequence[str] = ()) -> Router:
        return cls(None, np.zeros((0, 0), np.float32), np.zeros(0, np.float32), list(classes),
                   meta={"examples": 0, "history": {}})

    @property
    def fitted(self) -> bool:
        return self.vectorizer is not None

    # -- fitting ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], weights: Sequence[float] | None = None, *,
            c: float = 1.0, history: Counter[str] | None = None, public_history: Counter[str] | None = None,
            calibrate: bool = True) -> Router:
        """Fit on labelled texts; fewer than two labels gives a model that always picks the one label.

        ``history`` counts answers per group; ``public_history`` those of them anyone may read.
        """
        started = time.perf_counter()
        classes = sorted(set(labels))
        meta: dict[str, Any] = {"examples": len(texts), "history": dict(history or {}),
                                "public_history": dict(public_history or {}), "classes": classes}
        if len(classes) < 2:
            router = cls.empty(classes)
            router.meta.update(meta)
            return router
        weights = list(weights) if weights is not None else [1.0] * len(texts)
        temperature = 1.0
        if calibrate and len(texts) >= SMALL_HISTORY:
            temperature = cls._fit_temperature(texts, labels, weights, c)
        x = None
        # A small history of nothing but function words ("how do I ...") has no content word: every word then.
        for analyzer in (["plain"] if len(texts) >= SMALL_HISTORY else ["content", "plain"]):
            vec = _vectorizer(analyzer)
            try:
                x = vec.fit_transform(texts)
                break
            except ValueError:
                continue
        if x is None:
            log.warning("routing model could not be fitted (no usable words in %d examples)", len(texts))
            router = cls.empty(classes)
            router.meta.update(meta)
            return router
        meta["analyzer"] = analyzer
        svm = LinearSVC(C=c, random_state=0).fit(x, labels, sample_weight=np.asarray(weights))
        coef, intercept = cls._two_sided(svm.coef_, svm.intercept_)
        meta["seconds"] = round(time.perf_counter() - started, 3)
        meta["temperature"] = temperature
        return cls(vec, coef.astype(np.float32), intercept.astype(np.float32), [str(k) for k in svm.classes_],
                   temperature, meta)

    @staticmethod
    def _two_sided(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A binary LinearSVC has one row (positive = second class); make one row per class."""
        if coef.shape[0] == 1:
            return np.vstack([-coef[0], coef[0]]), np.array([-intercept[0], intercept[0]])
        return coef, intercept

    @classmethod
    def _fit_temperature(cls, texts: Sequence[str], labels: Sequence[str], weights: Sequence[float],
                         c: float) -> float:
        """Pick the softmax temperature with the best log-likelihood on held-out examples (a fifth, capped)."""
        order = list(range(len(texts)))
        random.Random(7).shuffle(order)
        cut = min(len(order) // 5, _CALIBRATION_HELD)
        held, train = order[:cut], order[cut:cut + _CALIBRATION_TRAIN]  # bounded: a rebuild stays fast
        train_labels = [labels[i] for i in train]
        if len(set(train_labels)) < 2:
            return 1.0
        vec = TfidfVectorizer(**_VEC)
        try:
            x = vec.fit_transform([texts[i] for i in train])
        except ValueError:
            return 1.0
        svm = LinearSVC(C=c, random_state=0).fit(x, train_labels, sample_weight=np.asarray([weights[i] for i in train]))
        coef, intercept = cls._two_sided(svm.coef_, svm.intercept_)
        index = {k: n for n, k in enumerate(svm.classes_)}
        keep = [i for i in held if labels[i] in index]
        if not keep:
            return 1.0
        scores = (vec.transform([texts[i] for i in keep]) @ coef.T) + intercept
        truth = np.array([index[labels[i]] for i in keep])
        best, best_nll = 1.0, math.inf
        for t in _TEMPERATURES:
            p = _softmax(scores * t)
            nll = -float(np.mean(np.log(p[np.arange(len(truth)), truth] + 1e-12)))
            if nll < best_nll:
                best, best_nll = t, nll
        return best

    @classmethod
    def from_documents(cls, docs: Iterable[Document], groups: Groups | None, cfg: RouteConfig) -> Router:
        texts, labels, weights, history, public = training_examples(docs, groups, cfg.prior_weight)
        return cls.fit(texts, labels, weights, c=cfg.c, history=history, public_history=public)

    # -- persistence ------------------------------------------------------------------------
    def save(self, gen_dir: Path) -> None:
        """Store as JSON (vocabulary, classes, meta) + numpy arrays: no pickles, no version lock-in."""
        path = gen_dir / ROUTE_DIR
        path.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, classes=self.classes, temperature=self.temperature, fitted=self.fitted)
        if self.fitted:
            vocab = {k: int(v) for k, v in self.vectorizer.vocabulary_.items()}
            write_json(path / "vocab.json", vocab, ensure_ascii=False)
            save_npy(path / "idf.npy", self.vectorizer.idf_.astype(np.float64))
            save_npy(path / "coef.npy", self.coef)
            save_npy(path / "intercept.npy", self.intercept)
        write_json(path / "router.json", meta, ensure_ascii=False)

    @classmethod
    def load(cls, gen_dir: Path) -> Router | None:
        """The router stored with a generation, or None when none was fitted there."""
        path = gen_dir / ROUTE_DIR
        try:
            meta = json.loads((path / "router.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("routing model in %s unreadable (%s); using group descriptions only", path, exc)
            return None
        classes = list(meta.get("classes", []))
        if not meta.get("fitted"):
            router = cls.empty(classes)
            router.meta.update(meta)
            return router
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        vec = _vectorizer(meta.get("analyzer", "plain"), vocab)
        vec.idf_ = np.load(path / "idf.npy")
        return cls(vec, np.load(path / "coef.npy"), np.load(path / "intercept.npy"), classes,
                   float(meta.get("temperature", 1.0)), meta)

    # -- routing ----------------------------------------------------------------------------
    def scores(self, questions: Sequence[str], x: Any = None) -> np.ndarray:
        """Class probabilities, one row per question (columns follow ``classes``)."""
        if not self.fitted:
            n = max(len(self.classes), 1)
            return np.full((len(questions), n), 1.0 / n)
        if x is None:
            x = self.vectorizer.transform(list(questions))
        return _softmax(np.asarray((x @ self.coef.T) + self.intercept) * self.temperature)

    def _evidence(self, question: str, x: Any, cls_index: int, k: int = 3) -> list[str]:
        """The question's words (``x``: its vector) that pushed most towards the chosen class, as the
        asker wrote them (a content-word router's features are stems)."""
        if not self.fitted:
            return []
        if self._names is None:
            self._names = self.vectorizer.get_feature_names_out()
        x = x.tocsr()
        contrib = x.data * self.coef[cls_index, x.indices]
        top = np.argsort(-contrib)[:k]
        terms = [str(self._names[x.indices[i]]) for i in top if contrib[i] > 0]
        if self.meta.get("analyzer", "plain") == "plain":
            return terms
        written: dict[str, str] = {}
        for word in re.findall(r"(?u)\b\w+\b", question):
            for term in content_terms(word):
                written.setdefault(term, word)
        return [" ".join(written.get(t, t) for t in term.split(" ")) for term in terms]

    def route(self, question: str, groups: Groups | None = None, *, group: str | None = None,
              min_confidence: float = 0.25, default: str | None = None) -> Routing:
        """Rank the groups for ``question``; ``group`` (the asker's explicit choice) always wins."""
        default = default or (groups.default if groups else None)
        known = set(self.classes) | ({g.name for g in groups} if groups else set())
        if group is not None:
            group = group.strip()
            if known and group not in known:
                raise InvalidEscalationError(f"unknown group {group!r} (known: {', '.join(sorted(known))})")
            return Routing(group=group, confidence=1.0, ranked=[(group, 1.0)],
                           reason="chosen by the asker", explicit=True)
        if not self.classes:
            if default is None:
                raise KbsearchError("no groups to route to: configure [[groups]] or index answered questions")
            return Routing(group=default, confidence=1.0, ranked=[(default, 1.0)],
                           reason="no groups configured and no answered questions yet: default group")
        x = self.vectorizer.transform([question]) if self.fitted else None
        probs = self.scores([question], x)[0]
        order = np.argsort(-probs)
        ranked = [(self.classes[i], float(probs[i])) for i in order]
        best, conf = ranked[0]
        history = self.meta.get("history", {})
        if len(self.classes) == 1:
            return Routing(group=best, confidence=1.0, ranked=ranked, reason="the only group known")
        if (x is not None and x.nnz == 0 and self.meta.get("analyzer") == "content" and default is not None
                and default != best):
            # A small history's base rates say little: with no word to go on, do not guess.  (A large
            # history's do: CLINC150's few questions of unknown words still find their domain 5 of 8 times.)
            return Routing(group=default, confidence=conf, ranked=ranked,
                           reason="none of the question's words occurs in what routing learned: default group")
        if conf < min_confidence and default is not None and default != best:
            reason = (f"no group fits well (best {best} at {conf:.2f} < {min_confidence:.2f}): default group")
            return Routing(group=default, confidence=conf, ranked=ranked, reason=reason)
        words = self._evidence(question, x, int(order[0])) if x is not None else []
        # The reason is shown to the asker: it counts only public answers (restricted ones are not
        # theirs to count), and its words come from the question as the caller may use it (`access`).
        public = self.meta.get("public_history", {}).get(best, 0)
        if public:
            basis = f"{public} past answers of {best}"
        elif history.get(best):
            basis = f"the past answers, description and keywords of {best}"
        else:
            basis = f"the description and keywords of {best}"
        reason = f"classifier trained on {basis}"
        if words:
            reason += "; matched " + ", ".join(repr(w) for w in words)
        return Routing(group=best, confidence=conf, ranked=ranked, reason=reason)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# -- evaluation ------------------------------------------------------------------------------
@dataclass
class RouteEvalReport:
    """Routing accuracy on one evaluation set (`kbsearch route-eval`)."""

    set: str
    mode: str
    questions: int
    accuracy: float | None
    top2_accuracy: float | None
    groups: int
    train_examples: int
    seconds: float
    folds: int = 0
    per_group: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _archive(set_dir: Path) -> list[Document]:
    path = set_dir / "archive.jsonl"
    if not path.is_file():
        raise KbsearchError(f"{set_dir}: no archive.jsonl (expected an evaluation set folder)")
    return list(read_jsonl(path))


def evaluate_routing(set_dir: str | Path, *, cfg: RouteConfig | None = None, folds: int = 5,
                     cross_validate: bool | None = None) -> RouteEvalReport:
    """Routing accuracy on an eval set: trained on ``archive.jsonl``; tested on the questions that have
    a ``group`` or, when none has one (or ``cross_validate``), by k-fold cross-validation over the
    archive's threads (each held-out thread's title and phrasings form the question).
    """
    set_dir = Path(set_dir)
    cfg = cfg or RouteConfig()
    started = time.perf_counter()
    docs = _archive(set_dir)
    questions: list[tuple[str, str]] = []
    qpath = set_dir / "questions.jsonl"
    if qpath.is_file():
        with qpath.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    item = json.loads(line)
                    if item.get("group"):
                        questions.append((item["question"], item["group"]))
    if cross_validate is None:
        cross_validate = not questions
    truth: list[str] = []
    predicted: list[list[str]] = []
    train_examples = 0
    if not cross_validate:
        router = Router.from_documents(docs, None, cfg)
        train_examples = router.meta.get("examples", 0)
        probs = router.scores([q for q, _ in questions])
        for (_, g), row in zip(questions, probs):
            truth.append(g)
            predicted.append([router.classes[i] for i in np.argsort(-row)[:2]])
    else:
        labelled = [d for d in docs if d.kind == "answer" and d.group]
        random.Random(13).shuffle(labelled)
        for k in range(folds):
            test = labelled[k::folds]
            train = [d for i, d in enumerate(labelled) if i % folds != k]
            router = Router.from_documents(train, None, cfg)
            train_examples += router.meta.get("examples", 0)
            texts = [" ".join([d.title, *d.questions]) for d in test]
            probs = router.scores(texts)
            for d, row in zip(test, probs):
                truth.append(d.group or "")
                predicted.append([router.classes[i] for i in np.argsort(-row)[:2]])
        train_examples //= max(folds, 1)
    n = len(truth)
    per: dict[str, list[int]] = {}
    for g, p in zip(truth, predicted):
        per.setdefault(g, []).append(int(bool(p) and p[0] == g))
    return RouteEvalReport(
        set=set_dir.name, mode="cross-validation" if cross_validate else "questions", questions=n,
        accuracy=round(sum(p[0] == g for g, p in zip(truth, predicted) if p) / n, 4) if n else None,
        top2_accuracy=round(sum(g in p for g, p in zip(truth, predicted)) / n, 4) if n else None,
        groups=len(set(truth)), train_examples=train_examples, seconds=round(time.perf_counter() - started, 2),
        folds=folds if cross_validate else 0,
        per_group={g: round(sum(v) / len(v), 4) for g, v in sorted(per.items())},
    )


def fit_for_generation(settings: Settings, generation: Generation) -> dict[str, Any]:
    """Fit and store the router of a new generation (called by `KnowledgeBase._after_build`)."""
    from ..errors import ConfigError

    started = time.perf_counter()
    try:
        groups: Groups | None = Groups.from_config(settings.peers)
    except ConfigError as exc:  # a typo in [[groups]] must not stop a nightly rebuild
        log.error("routing fitted without group descriptions: %s", exc)
        groups = None
    router = Router.from_documents(generation.engine.iter_documents(kind="answer"), groups, settings.route)
    router.save(generation.path)
    history = router.meta.get("history", {})
    return {"groups": len(router.classes), "answers": int(sum(history.values())),
            "examples": router.meta.get("examples", 0), "seconds": round(time.perf_counter() - started, 3)}
