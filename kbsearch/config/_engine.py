"""The settings sections of the index itself: where it lives (`IndexConfig`), retrieval
(`SearchConfig`), re-ranking (`RerankConfig`) and deflection (`DeflectConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Where `KnowledgeBase.open()` looks when no path is given.
DEFAULT_INDEX_PATH = Path("indexes") / "default"


@dataclass
class IndexConfig:
    """Where the index lives and how writers behave."""

    #: Directory holding the index generations and their models.
    path: Path = DEFAULT_INDEX_PATH
    #: Seconds a second writer waits for the write lock; 0 fails at once with `IndexLockedError`.
    writer_timeout: float = 0.0
    #: Megabytes of posting buffer per writer (Whoosh ``limitmb``); larger indexes faster.
    writer_limitmb: int = 256
    #: Documents per batch when streaming documents into a writer.
    batch_size: int = 2000
    #: Complete generations kept on disk (the live one and its predecessors).
    keep_generations: int = 2
    #: ``stats`` calls a source stale when its last successful sync is older than this many days;
    #: set it above the interval of your scheduled ``kbsearch reindex`` (weekly crawls: 8).
    stale_after_days: float = 2.0


@dataclass
class SearchConfig:
    """How a natural-language question becomes a Whoosh query and a candidate list."""

    #: Candidates fetched from Whoosh before re-ranking.
    candidates: int = 40
    #: Hits returned by default.
    limit: int = 10
    #: Longest question accepted, in characters; longer ones raise `InvalidQuestionError`.
    max_question_chars: int = 20_000
    #: At most this many distinct query terms are kept (the rarest ones).
    max_query_terms: int = 10
    #: Terms in more than this share of document bodies are matched only in titles, questions and
    #: headings (their body postings cost much time and add little; the re-ranker still sees them).
    max_df_ratio: float = 0.04
    #: Terms in more than this share of titles / questions / headings are left to the re-ranker.
    max_name_df_ratio: float = 0.1
    #: Upper bound on the postings one retrieval query reads (rarest terms first): Whoosh scores
    #: postings in Python, so this bounds the time of a question however large the index grows.
    max_postings: int = 20_000
    #: Field boosts for BM25F retrieval.
    boost_title: float = 2.5
    boost_questions: float = 2.0
    boost_headings: float = 1.5
    boost_body: float = 1.0
    #: Snippet length in characters.
    snippet_chars: int = 240


@dataclass
class RerankConfig:
    """The TF-IDF model and how the final score fuses its parts."""

    #: Ranker used: "tfidf" (BM25F candidates re-scored by TF-IDF cosine) or "bm25" (BM25F only).
    ranker: str = "tfidf"
    #: Documents sampled (reservoir) to fit the TF-IDF vocabulary; bounds memory and time.
    fit_sample: int = 20_000
    #: Characters of body text used to represent a document for re-ranking.
    doc_chars: int = 600
    #: Weights of the fused score.
    weight_tfidf: float = 0.75
    weight_bm25: float = 0.25
    #: Bonuses and penalties from document signals.
    bonus_verified: float = 0.06
    bonus_accepted: float = 0.03
    penalty_outdated: float = 0.25
    #: Freshness: up to this bonus for documents updated recently, halving every ``half_life_days``.
    bonus_fresh: float = 0.02
    half_life_days: float = 365.0


@dataclass
class DeflectConfig:
    """Deflection (`KnowledgeBase.ask`): answer from the index or ask the peers (see docs/deflect.md)."""

    #: Share of ANSWER decisions that must be right (on the archive's hold-outs); sets the threshold.
    target_precision: float = 0.85
    #: Extra precision that simulated hold-out questions (archives without real alternate phrasings:
    #: titles found from their answers, questions with words dropped) must reach, because they
    #: are a weaker stand-in for real questions than real rephrasings are.
    simulated_margin: float = 0.05
    #: Confidence from which possible answers are still shown (SUGGEST) instead of escalating at once.
    suggest_confidence: float = 0.3
    #: Assumed share of questions the archive cannot answer (weights the hold-outs in calibration).
    unanswerable_share: float = 0.2
    #: Decide with the larger of ``unanswerable_share`` and the share estimated at the last rebuild
    #: from the questions asked (their logged features, no labels needed; always estimated and
    #: reported).  Keeps answers right as often as ``target_precision`` promises when people ask
    #: more of what the archive does not hold (real traffic to FAQ bots: 35-70 %); where the
    #: estimate errs high (hard questions look unanswerable) it answers less.
    learn_unanswerable_share: bool = True
    #: Newest logged questions the estimate uses.
    share_estimate_asks: int = 2000
    #: Share of whole threads held out in calibration (their questions should escalate).
    holdout_threads: float = 0.2
    #: Share of a thread's alternate phrasings held out in calibration (they should find their thread).
    holdout_phrasings: float = 0.25
    #: Hold-out questions used to calibrate, at most (bounds rebuild time).
    calibration_queries: int = 4000
    #: Hold-out splits at most (small archives repeat the split to get enough questions).
    calibration_folds: int = 5
    #: Phrasings per thread the hold-out classifier is fitted on (0: all).  A cap makes rebuilds of
    #: archives with very many phrasings per thread faster, but the calibration then sees a weaker
    #: classifier than the one that answers (its scores mean less than they will).
    calibration_max_per_class: int = 0
    #: Archives with at least this many phrasings fit the answering model in a second process while
    #: the calibration runs (both are mostly a LinearSVC fit; on two cores CLINC150's rebuild took
    #: 26.8 s instead of 32.9 s).  Smaller archives fit in-process; -1: never in a second process.
    parallel_fit_phrasings: int = 5000
    #: Sentence encoder of the answer model: "auto" uses all-MiniLM-L6-v2 when the ``encoder``
    #: extra and its model are installed (see docs/deflect.md), "off" never, or a model folder.
    #: Documents without a classifier of their own (single-question threads, pages of an index up
    #: to ``max_model_docs``) are matched by their phrasings' sentence vectors ("crossed out" for
    #: strikethrough); the per-thread classifier reads each text's sentence vector beside its
    #: n-grams (CLINC150 P@1 0.942 -> 0.966).
    encoder: str = "auto"
    #: Threads with at least this many phrasings (title included) get a per-thread classifier.
    min_phrasings: int = 3
    #: Most classes of the classifier (the threads with the most phrasings win).
    max_classes: int = 3000
    #: Inverse regularisation of the classifier (LinearSVC C).
    classifier_c: float = 1.0
    #: Page sections are modelled too when the index holds at most this many documents.
    max_model_docs: int = 20_000
    #: A larger index is calibrated on this many of its pages, drawn at random (their headings are
    #: pseudo-questions that must find their own section through search), besides its answers.
    calibration_pages: int = 1000
    #: Hold-out questions decided through search as documents outside the answer model (pages of
    #: a large index, answers written after the rebuild), at most; they cost a search each.  A large
    #: index's threshold comes from these alone: 1200 answered more pages right at a higher precision
    #: than 600 on each of three calibration seeds (bench/scale_bench.py), for ~20 s more per rebuild.
    calibration_search_queries: int = 1200
    #: Most the answer threshold moves from one calibration to the next (a refit, a reindex), so a
    #: handful of new answers and asks cannot swing it; 1.0: no bound.
    max_threshold_step: float = 0.1
    #: Characters of a document's body used by the answer model.
    body_chars: int = 1500
    #: Candidates taken from each signal (classifier, phrasings, TF-IDF, BM25) before scoring.
    candidates_per_signal: int = 5
    #: Search hits outside the answer model (pages of a large index, answers added since the last
    #: rebuild) considered per question; each costs a vectorisation of its text the first time.
    page_candidates: int = 10
    #: Documents found by meaning (the nearest sentence vectors of their titles and phrasings)
    #: considered beside search's hits: a rephrasing that shares no rare word with its page still
    #: finds it.  Needs the sentence encoder; the vectors are written when documents are indexed
    #: (a rebuild of ~100k sections takes a few minutes more).  0: none, and no vectors are written.
    dense_candidates: int = 10
    #: Possible answers shown with SUGGEST (and listed with ANSWER).
    suggestions: int = 3
    #: Weight of one feedback example relative to one hold-out question.
    feedback_weight: float = 5.0
    #: Feedback examples used at most (the newest): "helped" / "did not help", and the outcomes of
    #: escalations (closed as a duplicate, answered anew, closed as unanswerable).
    max_feedback: int = 5000
    #: How many production outcomes weigh as much as the archive's hold-outs in setting the answer
    #: threshold: with n outcomes the threshold at which they reach ``target_precision`` counts
    #: n / (n + outcome_prior).  Lower it to let real traffic take over sooner (a busy service whose
    #: questions look little like the archive); raise it when outcomes are few or noisy (people
    #: rarely click "helped").  A rebuild applies a change.
    outcome_prior: float = 200.0
    #: At a rebuild, a question whose asker said an answer solved it joins that answer's phrasings
    #: (as a duplicate's wording does at once when an expert closes it): the classifier learns how
    #: people ask.  Turn it off when "helped" is clicked carelessly (it would teach wrong phrasings).
    learn_phrasings: bool = True
    #: Archives with fewer documents than this, and fewer than 30 real rephrasings among their
    #: hold-outs (a few pages, no asked questions), only SUGGEST, never ANSWER, until 30 outcomes of
    #: their decisions show the target precision holds: their calibration holds out at most a few
    #: whole documents per split, which says little about off-topic questions that share a word
    #: with a page.  Lower it to let a small hand-checked FAQ answer from the start, raise it to be
    #: more careful; `stats` and the rebuild summary say when it applies.
    trusted_documents: int = 20
    #: Random seed of the hold-out split (calibration is reproducible).
    seed: int = 13
