"""The questions calibration learns from: archive hold-outs (held-out phrasings, words-dropped
pseudo-questions, whole threads that must not be answered) and labelled feedback from use.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import DeflectConfig
from ..documents import Document
from ._features import phrasings_of, tokens


@dataclass
class HoldoutQuery:
    """One calibration question: its text, the document that answers it (None: must escalate)."""

    text: str
    answer: str | None
    kind: str  # "phrasing" (a real held-out phrasing), "pseudo" (words dropped), "thread" (thread held out)
    #: The heading of the held-out page a "thread" question was made from (a sample of a large
    #: index): a copy of that section elsewhere answers the question after all (`_pages.SearchPlan`).
    heading: str = ""


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
            elif phr and pages_by_rephrasing and doc.kind == "page":  # as its answerable twin below, as often
                queries += [HoldoutQuery(perturb(phr[0], rng, keep=0.5, foreign=pool), None, "thread", doc.title)
                            for _ in range(min(2, per_doc))]
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
