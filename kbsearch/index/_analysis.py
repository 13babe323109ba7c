"""Text to index terms: the one analyzer for documents and questions, and its fast equivalents.

`analyze` runs Whoosh's `StemmingAnalyzer` (lower-case, English stop words, Porter stemming) and is
the reference; `index_terms`, `term_spans` and `word_terms` give the same terms without building
token objects, which is what writes, snippets and the access check need.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Collection

from whoosh import analysis
from whoosh.lang.porter import stem as _porter_stem

# One analyzer for indexing and for questions: lower-case, English stop words, Porter stemming.
_ANALYZER = analysis.StemmingAnalyzer(cachesize=50_000)
_analyzer_lock = threading.Lock()


def analyze(text: str) -> list[str]:
    """The index terms of ``text`` (stemmed, lower-cased, stop words removed), in order."""
    with _analyzer_lock:  # the stemmer's cache is not safe for concurrent use
        return [t.text for t in _ANALYZER(text)]


_WORD_RE = re.compile(r"\w+(?:\.?\w+)*", re.UNICODE)


@functools.lru_cache(maxsize=100_000)
def _stem(word: str) -> str:
    return _porter_stem(word)


def term_spans(text: str, terms: Collection[str] | None = None) -> list[tuple[str, int, int]]:
    """``(term, start, end)`` for the index terms of ``text`` (only those in ``terms`` if given).

    Tokenises and stems like the analyzer, without building token objects: snippets need only
    the positions of a few terms.
    """
    out = []
    # Porter stemming only rewrites endings, so a word can only stem to a term with its first letter.
    firsts = None if terms is None else {t[:1] for t in terms}
    for m in _WORD_RE.finditer(text):
        word = m.group().lower()
        if len(word) < 2 or (firsts is not None and word[:1] not in firsts):
            continue
        term = _stem(word)
        if terms is None or term in terms:
            out.append((term, m.start(), m.end()))
    return out


#: The analyzer's tokenizer pattern (Whoosh's default, ``*`` included) without its capturing group:
#: the same matches, and ``findall`` returns whole words.
_INDEX_WORD_RE = re.compile(r"[\w\*]+(?:\.?[\w\*]+)*", re.UNICODE)
_INDEX_STOPS = frozenset(analysis.STOP_WORDS)


def index_terms(text: str) -> list[str]:
    """Exactly the terms `_ANALYZER` makes of ``text`` when indexing (same tokens, same order).

    Documents are written with these pre-analyzed term lists (Whoosh accepts a sequence of terms
    as a field value and stores ``_stored_<field>`` as given): ~3x cheaper than the analyzer's
    chain of token generators.  `analyze` stays the reference; tests compare the two.
    """
    # Lower-casing first is the same as lower-casing each word only for ASCII text (elsewhere it
    # can change what the pattern matches: "İ", final sigma).
    words = _INDEX_WORD_RE.findall(text.lower()) if text.isascii() else map(str.lower, _INDEX_WORD_RE.findall(text))
    stops = _INDEX_STOPS
    return [_stem(word) for word in words if len(word) > 1 and word not in stops]


def word_terms(text: str) -> list[tuple[int, int, list[str]]]:
    """``(start, end, terms)`` of each word of ``text`` as the analyzer splits it (terms may be empty:
    stop words, single letters)."""
    return [(m.start(), m.end(), index_terms(m.group())) for m in _INDEX_WORD_RE.finditer(text)]


#: Words that frame a question rather than say what it is about ("how do I ...", "what is my ...").
#: They carry no topic, so BM25 and term coverage leave them out: "how do I bake bread" must not
#: look covered by every "How do I ..." title.
QUESTION_FRAME = frozenset(index_terms(
    "how what which who whom whose where why do does did doing done i me my mine myself am was were "
    "been being should would could there here any some please hi hello thanks thank anyone someone"))


def content_terms(text: str) -> list[str]:
    """The index's terms of ``text`` (stemmed, no stop words) without the question-frame words."""
    return [t for t in index_terms(text) if t not in QUESTION_FRAME]
