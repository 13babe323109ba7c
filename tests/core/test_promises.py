"""Promises of the retrieval and ranking docs that nothing else checks: the postings budget of the
retrieval query (``max_postings``, ``max_df_ratio``, ``max_name_df_ratio``, ``max_query_terms``), the
questions field's light length normalisation (B = 0.1), and the bounded freshness bonus."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from whoosh import query, scoring

from kbsearch import Document, KnowledgeBase, Settings
from kbsearch.config import RerankConfig, SearchConfig
from kbsearch.index import NAME_FIELDS, analyze
from kbsearch.search.rerank import signal_bonus
from kbsearch.search import select_clauses

BOOSTS = {"title": 3.0, "questions": 2.5, "headings": 1.5, "body": 1.0}
N = 10_000  # documents of the (simulated) index: large enough for the ratio caps to apply


def df(body: int, title: int = 0, questions: int = 0, headings: int = 0) -> dict[str, int]:
    return {"title": title, "questions": questions, "headings": headings, "body": body}


def cost(clauses: list[tuple[str, str, float]], dfs: dict[str, dict[str, int]]) -> int:
    return sum(dfs[t][f] for f, t, _b in clauses)


def terms_of(clauses: list[tuple[str, str, float]]) -> list[str]:
    return list(dict.fromkeys(t for _f, t, _b in clauses))


# -- the postings budget, on the clause selection itself -----------------------------------------------

def test_clauses_stay_within_max_postings() -> None:
    cfg = SearchConfig(max_postings=1_000)
    dfs = {"alpha": df(300, 5), "beta": df(350, 5), "gamma": df(390, 5), "delta": df(20, 1)}
    clauses = select_clauses(list(dfs), dfs, N, cfg, BOOSTS)
    assert cost(clauses, dfs) <= cfg.max_postings
    # Rarest first: delta, alpha, beta fit (681 postings); gamma would take it to 1,076.
    assert terms_of(clauses) == ["delta", "alpha", "beta"]
    # The budget is what left gamma out: with room for it, it is used.
    roomy = select_clauses(list(dfs), dfs, N, SearchConfig(max_postings=2_000), BOOSTS)
    assert "gamma" in terms_of(roomy)


def test_a_term_over_max_df_ratio_is_matched_only_in_the_name_fields() -> None:
    cfg = SearchConfig()  # max_df_ratio 0.04: over 400 of 10,000 bodies is common
    dfs = {"pump": df(600, title=40, questions=30, headings=10), "impeller": df(50, title=3, questions=2)}
    clauses = select_clauses(list(dfs), dfs, N, cfg, BOOSTS)
    assert {f for f, t, _b in clauses if t == "pump"} == set(NAME_FIELDS)
    assert {f for f, t, _b in clauses if t == "impeller"} == {"title", "questions", "body"}  # rare: every field it is in
    # Just under the ratio, the same term is matched in the body too.
    dfs["pump"] = df(int(cfg.max_df_ratio * N), title=40, questions=30, headings=10)
    assert ("body", "pump", BOOSTS["body"]) in select_clauses(list(dfs), dfs, N, cfg, BOOSTS)


def test_a_term_over_max_name_df_ratio_is_left_to_the_reranker() -> None:
    cfg = SearchConfig()  # max_name_df_ratio 0.1: in over 1,000 of 10,000 titles is common even there
    dfs = {"how": df(9_000, title=2_500, questions=3_000), "impeller": df(50, title=3)}
    clauses = select_clauses(list(dfs), dfs, N, cfg, BOOSTS)
    assert terms_of(clauses) == ["impeller"]
    # A question of common words only still finds something: the rarest ones, in the naming fields.
    common = {"how": dfs["how"], "do": df(9_500, title=3_000, questions=4_000)}
    fallback = select_clauses(list(common), common, N, cfg, BOOSTS)
    assert fallback and {f for f, _t, _b in fallback} <= set(NAME_FIELDS)


def test_at_most_max_query_terms_terms_the_rarest_ones() -> None:
    cfg = SearchConfig()
    dfs = {f"term{i:02d}": df(10 + i, title=1) for i in range(25)}
    clauses = select_clauses(list(dfs), dfs, N, cfg, BOOSTS)
    assert terms_of(clauses) == [f"term{i:02d}" for i in range(cfg.max_query_terms)]
    fewer = select_clauses(list(dfs), dfs, N, dataclasses.replace(cfg, max_query_terms=3), BOOSTS)
    assert terms_of(fewer) == ["term00", "term01", "term02"]


def test_prepare_on_a_real_index_keeps_common_words_out_of_the_body(tmp_path: Path) -> None:
    """The same rules through `Searcher.prepare` on a real index (its document frequencies)."""
    docs = [Document(id=f"d{i}", title=f"Shift report {i}" + (" for the compressor" if i < 5 else ""),
                     text=f"Shift report {i}: machine checked, compressor pressure normal, note {i}.")
            for i in range(250)]  # "compressor" in every body, in few titles; "shift"/"report" everywhere
    docs.append(Document(id="seal", title="Replacing a shaft seal", text="Drain the compressor, then replace the seal."))
    settings = Settings.load(config_file=None, env={})
    settings.search.max_postings = 600
    with KnowledgeBase.open(tmp_path / "kb", settings=settings) as kb:
        kb.add(docs)
        live = kb._current()
        prepared = live.searcher.prepare("shift report about the compressor seal")
        dfs = live.engine.doc_frequencies(list(prepared.terms))
        used = {t: {f for f, tt, _b in prepared.clauses if tt == t} for t in prepared.retrieval_terms}
        assert used["compressor"] == {"title"}  # common in bodies, rare in titles: the title only
        assert "body" in used["seal"]           # rare: every field
        assert not {"shift", "report"} & set(used)  # common even in titles
        assert cost(list(prepared.clauses), dfs) <= settings.search.max_postings
        assert "seal" in {c.document.id for c in live.searcher.candidates(prepared, None, 10)}


# -- the questions field: B = 0.1 ------------------------------------------------------------------------

PHRASING = "how do i recalibrate the flowmeter"
OTHER_PHRASINGS = [f"variant {w} wording number {i} for operators" for i, w in
                   enumerate("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
                             "mike november oscar papa quebec romeo sierra tango".split())]


def test_many_alternate_phrasings_are_hardly_length_penalised(tmp_path: Path) -> None:
    docs = [Document(id="many", kind="answer", title="Flowmeter drift", text="Use the service menu.",
                     questions=(PHRASING, *OTHER_PHRASINGS)),
            Document(id="one", kind="answer", title="Flowmeter drift", text="Use the service menu.",
                     questions=(PHRASING,))]
    docs += [Document(id=f"f{i}", kind="answer", title=f"Other question {i}", text="Something else.",
                      questions=(f"unrelated question {i} about lunch", f"another one {i} about parking"))
             for i in range(20)]
    term = analyze("flowmeter")[0]
    clauses = [("questions", term, 1.0)]
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add(docs)
        engine = kb._current().engine
        ours = {c.document.id: c.bm25 for c in engine.retrieve(clauses, 10, None)}
        # Whoosh's own BM25F, with the questions field's B = 0.1 and with the default 0.75.
        assert dict(engine.retrieve_whoosh(clauses, 10, None)) == pytest.approx(ours, rel=1e-9)
        q = query.Term("questions", term)
        with engine._ix.searcher(weighting=scoring.BM25F(B=0.75, K1=1.2, questions_B=0.1)) as s:
            light = {hit["id"]: hit.score for hit in s.search(q, limit=10)}
        with engine._ix.searcher(weighting=scoring.BM25F(B=0.75, K1=1.2)) as s:
            default = {hit["id"]: hit.score for hit in s.search(q, limit=10)}
    assert ours == pytest.approx(light, rel=1e-9)
    assert set(ours) == {"many", "one"}
    # 21 phrasings (~30 times the words) against one: under B = 0.75 the long list would keep under
    # 30 % of the score of the single phrasing; at 0.1 it keeps over half of it.
    assert default["many"] / default["one"] < 0.3
    assert ours["many"] / ours["one"] > 0.55


# -- the freshness bonus ---------------------------------------------------------------------------------

def test_freshness_bonus_is_bounded_and_halves_every_half_life() -> None:
    cfg = RerankConfig()
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    doc = Document(id="d", title="t", text="x")

    def fresh(updated: datetime | None) -> float:
        return signal_bonus(dataclasses.replace(doc, updated=updated), cfg, now)[1].get("fresh", 0.0)

    assert fresh(now) == pytest.approx(cfg.bonus_fresh)
    assert fresh(now + timedelta(days=400)) == pytest.approx(cfg.bonus_fresh)  # a future date: no more than the cap
    assert fresh(now - timedelta(days=cfg.half_life_days)) == pytest.approx(cfg.bonus_fresh / 2)
    assert fresh(now - timedelta(days=10 * cfg.half_life_days)) < cfg.bonus_fresh / 1000
    assert fresh(None) == 0.0  # no date: no bonus
    assert 0 < cfg.bonus_fresh <= 0.05  # a tie-breaker, not a relevance signal
    off = signal_bonus(dataclasses.replace(doc, updated=now), dataclasses.replace(cfg, bonus_fresh=0.0), now)
    assert "fresh" not in off[1]


@pytest.mark.parametrize("ranker", ["tfidf", "bm25"])
def test_fresher_document_ranks_above_an_otherwise_identical_older_one(tmp_path: Path, ranker: str) -> None:
    now = datetime.now(timezone.utc)
    text = "Close valve V3 before opening the filter housing; replace the cartridge and vent the line."
    docs = [Document(id="old", title="Changing the water filter", text=text, updated=now - timedelta(days=5 * 365)),
            Document(id="new", title="Changing the water filter", text=text, updated=now - timedelta(days=2)),
            Document(id="exact", title="Descaling the boiler", text="Descale the boiler with citric acid every month.",
                     updated=now - timedelta(days=3 * 365))]
    docs += [Document(id=f"x{i}", title=f"Unrelated notice {i}", text=f"Canteen menu for week {i}.") for i in range(10)]
    settings = Settings.load(config_file=None, env={})
    settings.rerank.ranker = ranker
    with KnowledgeBase.open(tmp_path / "kb", settings=settings) as kb:
        kb.add(docs)
        hits = kb.search("how do I change the water filter")
        assert [h.id for h in hits[:2]] == ["new", "old"]
        new, old = hits[0], hits[1]
        assert new.parts.details["fresh"] > old.parts.details["fresh"] > 0
        assert new.score - old.score == pytest.approx(new.parts.details["fresh"] - old.parts.details["fresh"], abs=1e-6)
        assert new.score - old.score <= settings.rerank.bonus_fresh
        # Bounded: freshness does not lift a fresh, unrelated document over an older, relevant one.
        top = kb.search("descale the boiler citric acid")[0]
        assert top.id == "exact"
