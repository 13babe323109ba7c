"""Index writes: pre-analyzed terms, plain adds of new ids, the write codec, the chunked TF-IDF fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kbsearch.index as engine_module
from kbsearch import Document, KnowledgeBase
from kbsearch.index import EngineIndex, analyze, index_terms
from kbsearch.search import normalise_groups

TRICKY = [
    "",
    "The quick brown foxes were running over the lazy dogs.",
    "A an THE of I x y zz Zz ZZZ",
    "os.path.join(a, *args, **kwargs) x**2 *emphasis* ** 3.14 foo..bar a. .b v1.2.3-rc1",
    "İstanbul ÀÉÎ straße ǅemal Ⅻ ﬁle ŉ Σίσυφος ΣΑΣ'x ΣΑΣ.x naïve café",
    "snake_case CamelCase don't I'm e-mail U.S.A. 42nd ½ ² \u00a0nbsp\u2009thin",
    "heading one\x1fheading two\x1f\x1fthird",
    "日本語のテキスト 中文 한국어 русский текст العربية",
]


def test_index_terms_are_exactly_the_analyzers_terms(example_docs: list[Document]) -> None:
    texts = TRICKY + [d.text for d in example_docs] + [d.title for d in example_docs]
    for text in texts:
        assert index_terms(text) == analyze(text), text


def _retrievals(engine: EngineIndex, questions: list[str]) -> list[list[tuple[str, float]]]:
    out = []
    for q in questions:
        clauses = [(f, t, 1.0) for t in analyze(q) for f in ("title", "questions", "headings", "body")]
        out.append([(c.document.id, round(c.bm25, 9)) for c in engine.retrieve(clauses, 10, normalise_groups(None))])
    return out


def test_pre_analyzed_documents_index_like_the_analyzer(tmp_path: Path, example_docs: list[Document],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Terms passed pre-analyzed give the same postings, lengths, scores and stored documents."""
    docs = example_docs + [Document(id=f"t{i}", title=t[:40] or "empty", text=t or "x", headings=(t[:20],))
                           for i, t in enumerate(TRICKY)]

    def build(path: Path) -> EngineIndex:
        engine = EngineIndex.create(path)
        writer = engine.writer(fresh=True)
        for doc in docs:
            writer.add(doc)
        writer.commit()
        return engine

    fast = build(tmp_path / "fast")
    monkeypatch.setattr(engine_module._fields, "index_terms", lambda text: text)  # Whoosh analyzes the text itself
    reference = build(tmp_path / "reference")
    monkeypatch.undo()

    terms = sorted({t for d in docs for text in (d.title, d.text, *d.headings, *d.questions) for t in analyze(text)})
    assert fast.doc_frequencies(terms) == reference.doc_frequencies(terms)
    questions = ["how do I reset my VPN password", "printer jams on duplex", "running foxes", "os.path.join kwargs",
                 "straße café", "laptop broken what now", "ΣΑΣ Σίσυφος"]
    assert _retrievals(fast, questions) == _retrievals(reference, questions)
    for doc in docs:
        assert fast.get(doc.id) == reference.get(doc.id)
    assert all(fast.get(doc.id) == doc for doc in example_docs)
    fast.close()
    reference.close()


def test_writer_adds_new_ids_updates_changed_and_skips_unchanged(tmp_path: Path) -> None:
    engine = EngineIndex.create(tmp_path)
    doc = lambda i, text="first": Document(id=f"d{i}", title=f"title {i}", text=text)  # noqa: E731
    writer = engine.writer()
    assert [writer.add(doc(i)) for i in range(3)] == ["added"] * 3
    writer.commit()
    writer = engine.writer()
    statuses = [writer.add(doc(0)), writer.add(doc(1, "second")), writer.add(doc(3))]
    writer.commit()
    assert statuses == ["unchanged", "updated", "added"]
    writer = engine.writer()
    assert writer.delete("d2")
    writer.commit()
    writer = engine.writer()
    assert writer.add(doc(2, "back again")) == "added"  # deleted earlier: its id is still in the term index
    writer.commit()
    assert sorted(engine.ids()) == ["d0", "d1", "d2", "d3"]
    assert engine.get("d1").text == "second" and engine.get("d2").text == "back again"
    engine.close()


def test_a_commit_between_lookup_and_write_never_duplicates(tmp_path: Path) -> None:
    """A writer whose id lookups predate another commit falls back to replacing by id."""
    engine = EngineIndex.create(tmp_path)
    late = engine.writer()  # its searcher sees the empty index
    other = engine.writer()
    other.add(Document(id="x", title="from the other writer", text="one"))
    other.commit()
    assert late.add(Document(id="x", title="from the late writer", text="two")) == "added"
    late.commit()
    assert list(engine.ids()) == ["x"]
    assert engine.get("x").title == "from the late writer"
    engine.close()


def test_segments_of_the_default_codec_and_the_write_codec_mix(tmp_path: Path, example_docs: list[Document],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexes written before the write codec (zlib-compressed blocks) stay readable and writable."""
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        monkeypatch.setattr(engine_module._writer, "_write_codec", lambda: engine_module._writer.W3Codec())
        kb.add(example_docs[:20])
        monkeypatch.undo()
        kb.add(example_docs[20:])
        live = kb._current()
        assert len(live.engine._searcher().reader().leaf_readers()) == 2
        prepared = live.searcher.prepare("lockout tagout padlock")
        groups = normalise_groups(None)
        fast = [(c.document.id, c.bm25) for c in live.engine.retrieve(prepared.clauses, 10, groups)]
        slow = live.engine.retrieve_whoosh(prepared.clauses, 10, groups)
        assert [i for i, _s in fast] == [i for i, _s in slow]
        assert [s for _i, s in fast] == pytest.approx([s for _i, s in slow], rel=1e-9)
        assert kb.search("lockout tagout padlock")[0].id == "page:maint/safety#lockout"


def test_tfidf_fit_in_chunks_equals_one_pass(example_docs: list[Document], monkeypatch: pytest.MonkeyPatch) -> None:
    from kbsearch.search import rerank

    sample = [rerank.sample_item(d, 600) for d in example_docs]
    whole = rerank.TfidfModel.fit(sample)
    monkeypatch.setattr(rerank, "FIT_CHUNK", 3)
    chunked = rerank.TfidfModel.fit(sample)
    assert whole.fitted_on == chunked.fitted_on == len(example_docs)
    assert np.array_equal(whole.word_idf, chunked.word_idf)
    assert np.array_equal(whole.char_idf, chunked.char_idf)
