"""From a natural-language question to ranked, explained, access-checked hits.

A question is never parsed as query syntax: it is analysed into index terms exactly like the
documents, so quotes, brackets, ``field:value`` or wildcards are just words.  The rarest terms form a
BM25F OR-query (common words cost much time and add little to the candidate set; the re-ranker still
sees the whole question), the access mask is applied inside the search, and the ranker orders the
candidates.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Collection
from dataclasses import dataclass

from .._text import clean_text
from ..access import ALL_GROUPS, normalise_groups, visible_words
from ..config import SearchConfig
from ..documents import Hit, ScoreParts
from ..errors import InvalidQuestionError
from ..index import NAME_FIELDS, TEXT_FIELDS, Candidate, EngineIndex, analyze, term_spans
from .rerank import Ranker
from .vectors import Meaning

log = logging.getLogger(__name__)

#: Rounds of `Searcher.by_meaning` at most, each looking 8 times further than the last.
MEANING_ROUNDS = 3

__all__ = ["ALL_GROUPS", "PreparedQuery", "Searcher", "clean_question", "make_snippet", "normalise_groups",
           "select_clauses"]


def clean_question(question: object, max_chars: int) -> str:
    """Validate and normalise a question; raises `InvalidQuestionError` for unusable input."""
    if not isinstance(question, str):
        raise InvalidQuestionError("the question must be text")
    text = clean_text(question)
    if not text:
        raise InvalidQuestionError("the question is empty")
    if len(text) > max_chars:
        raise InvalidQuestionError(f"the question is too long ({len(text)} characters; the limit is {max_chars})")
    return text


def select_clauses(
    terms: list[str], dfs: dict[str, dict[str, int]], doc_count: int, cfg: SearchConfig, boosts: dict[str, float]
) -> list[tuple[str, str, float]]:
    """The ``(field, term, boost)`` clauses of the retrieval query.

    Whoosh scores every posting of every clause in Python, so the cost of a query is the number of
    postings it touches.  Rare terms are matched in every field; a term in more than
    ``max_df_ratio`` of the bodies only in the short naming fields (title, questions, headings),
    where it is still telling and its postings are few; a term common even there is left to the
    re-ranker.  At most ``max_query_terms`` terms, rarest first; if every term is common, the rarest
    ones are kept so a question of common words still finds something.  The postings of all
    clauses together stay within ``max_postings``, which bounds the cost however large the index.
    """
    present = [t for t in dict.fromkeys(terms) if any(dfs.get(t, {}).values())]
    present.sort(key=lambda t: (sum(dfs[t].values()), t))
    small = doc_count < 200
    body_cap = doc_count if small else max(20, int(cfg.max_df_ratio * doc_count))
    name_cap = doc_count if small else max(20, int(cfg.max_name_df_ratio * doc_count))
    clauses: list[tuple[str, str, float]] = []
    used = postings = 0
    for term in present:
        df = dfs[term]
        if df["body"] <= body_cap:
            fields = [f for f in TEXT_FIELDS if df[f] and boosts.get(f, 0) > 0]
        elif max(df[f] for f in NAME_FIELDS) <= name_cap:
            fields = [f for f in NAME_FIELDS if df[f] and boosts.get(f, 0) > 0]
        else:
            continue
        cost = sum(df[f] for f in fields)
        if not fields or (clauses and postings + cost > cfg.max_postings):
            continue
        clauses.extend((f, term, boosts[f]) for f in fields)
        postings += cost
        used += 1
        if used >= cfg.max_query_terms:
            break
    if not clauses and present:
        for term in present[:2]:
            clauses.extend((f, term, boosts[f]) for f in NAME_FIELDS if dfs[term][f] and boosts.get(f, 0) > 0)
        if not clauses:
            clauses = [("body", present[0], boosts["body"])]
    return clauses


def make_snippet(text: str, question_terms: Collection[str], chars: int) -> str:
    """An HTML-safe excerpt of ``text`` around the densest run of question terms, terms in ``<mark>``."""
    if not text:
        return ""
    window_src = text if len(text) <= 20_000 else text[:20_000]
    spans = [(s, e) for _term, s, e in term_spans(window_src, question_terms)]
    if not spans:
        excerpt = window_src[:chars]
        return html.escape(excerpt) + ("…" if len(text) > chars else "")
    best_start, best_count = spans[0][0], 0
    j = 0
    for i, (s, _e) in enumerate(spans):
        while spans[j][0] < s - chars // 2 and j < i:
            j += 1
        count = i - j + 1
        if count > best_count:
            best_count, best_start = count, spans[j][0]
    start = max(0, best_start - chars // 5)
    if start > 0:
        space = window_src.find(" ", start, start + 30)
        start = space + 1 if space != -1 else start
    end = min(len(window_src), start + chars)
    pieces = []
    pos = start
    for s, e in spans:
        if s < start or e > end:
            continue
        pieces.append(html.escape(window_src[pos:s]))
        pieces.append("<mark>" + html.escape(window_src[s:e]) + "</mark>")
        pos = e
    pieces.append(html.escape(window_src[pos:end]))
    body = "".join(pieces).strip()
    return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


@dataclass(frozen=True)
class PreparedQuery:
    """A question after analysis: all its terms and the ones used for retrieval."""

    text: str
    terms: tuple[str, ...]
    clauses: tuple[tuple[str, str, float], ...]

    @property
    def retrieval_terms(self) -> tuple[str, ...]:
        """The distinct terms the retrieval query uses."""
        return tuple(dict.fromkeys(t for _f, t, _b in self.clauses))


class Searcher:
    """Runs questions against one generation with one ranker."""

    def __init__(self, engine: EngineIndex, ranker: Ranker, cfg: SearchConfig,
                 meaning: Meaning | None = None) -> None:
        self.engine = engine
        self.ranker = ranker
        self.cfg = cfg
        #: The version's phrasing vectors (`vectors.Meaning`), for `by_meaning`; None: lexical only.
        self.meaning = meaning

    @property
    def boosts(self) -> dict[str, float]:
        c = self.cfg
        return {"title": c.boost_title, "questions": c.boost_questions,
                "headings": c.boost_headings, "body": c.boost_body}

    def prepare(self, question: str) -> PreparedQuery:
        text = clean_question(question, self.cfg.max_question_chars)
        terms = analyze(text)
        distinct = list(dict.fromkeys(terms))
        dfs = self.engine.doc_frequencies(distinct)
        clauses = select_clauses(distinct, dfs, self.engine.doc_count(), self.cfg, self.boosts)
        return PreparedQuery(text, tuple(distinct), tuple(clauses))

    def candidates(self, prepared: PreparedQuery, user_groups: frozenset[str] | None, k: int | None = None) -> list[Candidate]:
        return self.engine.retrieve(prepared.clauses, k or self.cfg.candidates, user_groups)

    def by_meaning(self, question: str, user_groups: frozenset[str] | None, k: int,
                   skip: Collection[str] = ()) -> list[Candidate]:
        """Up to ``k`` documents whose phrasings are nearest in meaning to ``question`` (sentence
        vectors, `vectors.PhrasingVectors`), none of ``skip``, each as the live index holds it now and
        only if the caller may see it.  ``question`` must already be what the caller may ask with
        (`access.visible_words`).  Empty without vectors or encoder: the lexical path alone."""
        if self.meaning is None or k <= 0:
            return []
        encoded = self.meaning.encode([question])
        if encoded is None:
            return []
        out: list[Candidate] = []
        taken: set[str] = set()  # the ids in ``out``
        checked: set[tuple[str, str]] = set()
        rows, lookups = 4 * k + 16, 0
        # Skipped, stale and hidden rows take places: look further until k are found (bounded: the
        # index lookups of hidden or stale rows are what costs).
        for _round in range(MEANING_ROUNDS):
            neighbours = self.meaning.nearest_to(encoded, rows)[0]  # encoded once, looked for further
            for n in neighbours:
                key = (n.doc_id, n.content_hash)
                if key in checked:
                    continue
                checked.add(key)
                if n.doc_id in skip or n.doc_id in taken:
                    continue
                lookups += 1
                cand = self.engine.current(n.doc_id, n.content_hash, user_groups)
                if cand is not None:
                    out.append(Candidate(cand.document, 0.0, cand.content_hash, similarity=n.similarity))
                    taken.add(n.doc_id)
                    if len(out) >= k:  # neighbours come best first: the rest cannot displace these
                        break
            if len(out) >= k or lookups > 8 * k + 64 or not neighbours:
                break
            rows *= 8
        out.sort(key=lambda c: -(c.similarity or 0.0))
        return out[:k]

    def search(self, question: str, *, limit: int | None = None, user_groups: object = None,
               kinds: Collection[str] | None = None) -> list[Hit]:
        """Ranked hits for ``question`` that the user's groups may see."""
        limit = self.cfg.limit if limit is None else limit
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1 or limit > 1000:
            raise InvalidQuestionError("limit must be a whole number from 1 to 1000")
        groups = normalise_groups(user_groups)
        text = visible_words(clean_question(question, self.cfg.max_question_chars), self.engine, groups)
        if not text:
            return []
        prepared = self.prepare(text)
        k = max(self.cfg.candidates, limit)
        cands = self.candidates(prepared, groups, k * (3 if kinds else 1))
        if kinds:
            cands = [c for c in cands if c.document.kind in kinds]
        ranked = self.ranker.rank(prepared.text, cands)[:limit]
        return [self.to_hit(c, score, parts, prepared) for c, score, parts in ranked]

    def to_hit(self, c: Candidate, score: float, parts: ScoreParts, prepared: PreparedQuery) -> Hit:
        doc = c.document
        terms = set(prepared.terms)
        source_text = doc.text or " ".join(doc.questions)
        return Hit(
            id=doc.id, kind=doc.kind, title=doc.title, url=doc.url,
            snippet=make_snippet(source_text, terms, self.cfg.snippet_chars),
            score=score, parts=parts, group=doc.group, headings=doc.headings,
            verified=doc.verified, accepted=doc.accepted, outdated=doc.outdated, updated=doc.updated,
        )
