"""What a caller may see: the one place that decides it.

A document with ``allowed_groups`` is for members of one of them; everything a caller is shown that
is made from documents (search hits, ask's answers, ``why``, ``ranked``, signals, routing reasons,
an escalation's ``seen`` list and the packet its peer group receives) is made from documents this
module lets through.  Two rules:

* **Documents**: `may_see` and `EngineIndex`'s access mask (`normalise_groups` turns a caller's groups
  into the form both take; `ALL_GROUPS` switches the filter off for trusted operator tools).
* **Words**: a question is read with only the words found in some document the caller may see
  (`visible_words`), misspellings as the caller's closest word.  Without this a word that only a
  restricted document contains would still move scores, margins and routing (the models are fitted
  on every document), and so tell an outsider that the word exists.  A word found nowhere is read
  the same way, so a restricted word and a made-up one are indistinguishable.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .errors import InvalidQuestionError
from .index import EngineIndex, word_terms


class _AllGroups:
    """Sentinel: no access filter (operators and evaluation only, never end users)."""

    def __repr__(self) -> str:
        return "ALL_GROUPS"


#: Pass as ``user_groups`` / ``groups`` to read without the access filter (trusted callers only).
ALL_GROUPS = _AllGroups()


def normalise_groups(user_groups: object) -> frozenset[str] | None:
    """None / an iterable of group names → a frozenset (empty: public documents only); ALL → None."""
    if user_groups is ALL_GROUPS:
        return None
    if user_groups is None:
        return frozenset()
    if isinstance(user_groups, str):
        user_groups = [user_groups]
    if not isinstance(user_groups, Iterable):
        raise InvalidQuestionError("user_groups must be a list of group names")
    groups = []
    for g in user_groups:
        if not isinstance(g, str):
            raise InvalidQuestionError("user_groups must be a list of group names")
        if g.strip():
            groups.append(g.strip())
    return frozenset(groups)


def may_see(allowed_groups: Collection[str], groups: frozenset[str] | None) -> bool:
    """Whether a caller in ``groups`` (None: no filter) may see a document limited to ``allowed_groups``."""
    return groups is None or not allowed_groups or bool(set(allowed_groups) & groups)


def visible_words(text: str, engine: EngineIndex, groups: frozenset[str] | None) -> str:
    """``text`` as a caller in ``groups`` may ask it: made only of words found in documents they may see.

    A word no such document contains is read as the closest one that some does (a misspelling, one
    or two edits away: "pasword" → "password"), or else left out.  A no-op for trusted callers
    (``groups`` None) and for callers from whom nothing is hidden.  Stop words and single letters
    carry no index term and are kept.
    """
    if groups is None or not engine.hides_documents(groups):
        return text
    spans = word_terms(text)
    terms = [t for _s, _e, ts in spans for t in ts]
    if not terms:
        return text
    seen = engine.visible_terms(terms, groups)
    out: list[str] = []
    pos = 0
    for start, end, ts in spans:
        if not ts or all(t in seen for t in ts):
            continue
        out.append(text[pos:start])
        near = [engine.nearest_visible_term(t, groups) for t in ts if t not in seen]
        out.append(" ".join([t for t in ts if t in seen] + [t for t in near if t]))
        pos = end
    out.append(text[pos:])
    return " ".join("".join(out).split())
