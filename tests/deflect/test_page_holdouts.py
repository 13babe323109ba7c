"""Pseudo-questions of a large index's sampled pages: words dropped and words of other headings put in,
for the pages that must be found and the held-out ones alike."""

from __future__ import annotations

import random

from kbsearch import Document
from kbsearch.deflect._holdout import make_holdout, perturb
from kbsearch.deflect._features import tokens
from kbsearch.config import DeflectConfig

HEADINGS = ["Resizing an ext4 volume online", "Configuring the PostgreSQL replication slots",
            "Rotating the Apache access logs daily", "Restoring a SQLite database from a backup file",
            "Translating Django templates with gettext", "Pinning Debian packages to a release",
            "Tuning the autovacuum cost limit", "Serving static files behind a reverse proxy"]


def test_perturb_keeps_some_words_and_brings_one_or_two_foreign_ones() -> None:
    rng = random.Random(3)
    pool = ["zebra", "quartz"]
    for _ in range(50):
        out = perturb("Restoring a SQLite database from a backup file", rng, keep=0.5, foreign=pool).split()
        foreign = [w for w in out if w in pool]
        own = [w for w in out if w not in pool]
        assert 1 <= len(foreign) <= 2 and len(own) >= 2
        assert set(own) <= set(tokens("Restoring a SQLite database from a backup file"))
    for seed in range(20):  # no pool: the heading's words only
        assert set(perturb("Restoring a SQLite database", random.Random(seed)).split()) <= {
            "Restoring", "a", "SQLite", "database"}


def test_a_large_index_asks_for_answerable_and_held_out_pages_the_same_way() -> None:
    pages = [Document(id=f"p{i}", kind="page", title=t, text=f"How to: {t.lower()}.") for i, t in enumerate(HEADINGS)]
    cfg = DeflectConfig()
    _train, queries = make_holdout(pages, cfg, pages_by_rephrasing=True)
    words_of = {p.id: set(tokens(p.title)) for p in pages}
    every_word = set().union(*words_of.values())
    answerable = [q for q in queries if q.answer is not None]
    unanswerable = [q for q in queries if q.answer is None]
    assert answerable and unanswerable
    for q in queries:
        assert all(w in every_word for w in tokens(q.text))
    # Words of other headings came in (a reader's rephrasing brings words of its own); one drawn from
    # the pool can be a word of its own heading too ("a"), so most, not all, show one.
    foreign = [q for q in answerable if any(w not in words_of[q.answer] for w in tokens(q.text))]
    assert len(foreign) >= 0.6 * len(answerable), answerable
    # A held-out page is asked for as often as a page that must be found (one or the other would
    # weigh more on the threshold than it does in real traffic), and carries its heading (a copy of
    # its section elsewhere then answers it: `_pages.SearchPlan`).
    per_page = {}
    for q in answerable:
        if q.kind == "pseudo":
            per_page[q.answer] = per_page.get(q.answer, 0) + 1
    held = {}
    for q in unanswerable:
        held[q.heading] = held.get(q.heading, 0) + 1
    assert set(held) <= set(HEADINGS) and set(held.values()) == set(per_page.values()) == {2}
    # Without the large-index mode, pseudo-questions are the heading's own words only.
    _train, plain = make_holdout(pages, cfg)
    for q in plain:
        if q.answer is not None and q.kind == "pseudo":
            assert set(tokens(q.text)) <= words_of[q.answer]
