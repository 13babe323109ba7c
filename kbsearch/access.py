"""What a caller may see: the one place that decides it.

A document with ``allowed_groups`` is for members of one of them; everything a caller is shown that
is made from documents (search hits, ask's answers, ``why``, ``ranked``, signals, routing reasons,
an escalation's ``seen`` list and the packet its peer group receives) is made from documents this
module lets through.  Two rules:

* **Documents**: `may_see` and `EngineIndex`'s access mask (`normalise_groups` turns a caller's groups
  into the form both take; `ALL_GROUPS` switches the filter off for trusted operator tools).
* **Words**: a word of a question that only documents hidden from the caller contain is replaced by a
  made-up stand-in before anything reads the question (`visible_words`).  Without this such a word
  would still move scores, margins and routing (the models are fitted on every document), and so
  tell an outsider that the word exists; with it, it behaves like any word the index does not know.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable

from .errors import InvalidQuestionError
from .index import EngineIndex, index_terms, word_terms

#: Letters of stand-in words (`_stand_in`): consonant-heavy, so a stand-in never reads as a word.
_LETTERS = "bcdfghjklmnpqrstvwxz"


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
    """``text`` as a caller in ``groups`` may ask it: every *hidden* word (one that occurs in the index
    but only in documents the caller may not see) replaced by a stand-in the index does not know.

    Everything downstream (retrieval, re-ranking, deflection signals, routing) then treats a hidden
    word exactly as it treats a made-up one; words found nowhere (misspellings) are kept, so typos
    still match by their letters.  The stand-in is keyed by the restricted documents' content
    (`EngineIndex.restricted_fingerprint`), so an outsider cannot compute it to test a guess, and it
    is stable while that content is.  A no-op for trusted callers (``groups`` None) and for callers
    from whom nothing is hidden.
    """
    if groups is None or not engine.hides_documents(groups):
        return text
    spans = word_terms(text)
    terms = {t for _s, _e, ts in spans for t in ts}
    if not terms:
        return text
    shown = engine.visible_terms(terms, groups)
    hidden = {t for t in terms - shown if engine.is_term(t)}
    if not hidden:
        return text
    key = engine.restricted_fingerprint()
    out: list[str] = []
    pos = 0
    for start, end, ts in spans:
        if any(t in hidden for t in ts):
            out.append(text[pos:start])
            out.append(_stand_in(text[start:end], key, engine))
            pos = end
    out.append(text[pos:])
    return "".join(out)


def _stand_in(word: str, key: bytes, engine: EngineIndex) -> str:
    """A made-up word for ``word`` (letters, about its length) that no document of the index contains."""
    length = min(max(len(word), 5), 16)
    for attempt in range(100):
        digest = hashlib.blake2b(f"{attempt}:{word.lower()}".encode("utf-8"), key=key, digest_size=16).digest()
        token = "".join(_LETTERS[b % len(_LETTERS)] for b in digest)[:length]
        if not any(engine.is_term(t) for t in index_terms(token)):
            return token
    return ""  # 100 collisions with real words cannot happen in practice; leaving the word out is safe
