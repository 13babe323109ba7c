"""The index: add / update / delete by id, no-op re-adds, persistence, stats."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch import ALL_GROUPS, Document, IndexNotFoundError, KbsearchError, KnowledgeBase
from kbsearch.index import index_terms


def test_add_then_readd_unchanged_is_a_noop(kb: KnowledgeBase, example_docs: list[Document]) -> None:
    first = kb.add(example_docs)
    assert first.added == len(example_docs) and first.updated == 0
    files_before = sorted(p.name for p in kb.generation_path.rglob("*"))
    second = kb.add(example_docs)
    assert second.unchanged == len(example_docs) and second.changed == 0
    assert sorted(p.name for p in kb.generation_path.rglob("*")) == files_before


def test_update_replaces_the_document(example_kb: KnowledgeBase) -> None:
    doc = example_kb.get("page:it/vpn#install")
    assert doc is not None
    report = example_kb.add([doc.replace(text="Use the new Zephyr VPN client for remote access.")])
    assert report.updated == 1
    assert example_kb.get("page:it/vpn#install").text.startswith("Use the new Zephyr")
    hits = example_kb.search("zephyr client")
    assert [h.id for h in hits][:1] == ["page:it/vpn#install"]
    assert example_kb.stats().documents == 35


def test_delete_by_id(example_kb: KnowledgeBase) -> None:
    assert example_kb.delete(["page:ops/parking#rules", "does-not-exist"]) == 1
    assert example_kb.get("page:ops/parking#rules") is None
    assert all(h.id != "page:ops/parking#rules" for h in example_kb.search("parking garage charging points"))


def test_duplicate_ids_in_one_batch_last_wins(kb: KnowledgeBase) -> None:
    report = kb.add([Document(id="d", title="first", text="alpha"), Document(id="d", title="second", text="beta")])
    assert report.duplicates == 1
    assert kb.get("d").title == "second"
    assert kb.stats().documents == 1


def test_persists_across_open(tmp_path: Path, example_docs: list[Document]) -> None:
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add(example_docs)
    with KnowledgeBase.open(tmp_path / "kb", create=False) as again:
        assert again.stats().documents == len(example_docs)
        assert again.search("lockout tagout padlock")[0].id == "page:maint/safety#lockout"


def test_open_missing_without_create_is_clear(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index"):
        KnowledgeBase.open(tmp_path / "missing", create=False)


def test_stats_counts_kinds(example_kb: KnowledgeBase) -> None:
    stats = example_kb.stats()
    assert (stats.pages, stats.answers) == (23, 12)
    assert stats.restricted == 6
    assert stats.model_fitted_on == 35 and stats.size_bytes > 0


def test_ids_by_source(example_kb: KnowledgeBase) -> None:
    assert len(example_kb.ids(source="peer-answers")) == 12
    assert len(example_kb.ids()) == 35


def test_get_respects_groups(example_kb: KnowledgeBase) -> None:
    assert example_kb.get("page:hr/salary#bands", user_groups=[]) is None
    assert example_kb.get("page:hr/salary#bands", user_groups=["hr"]) is not None
    assert example_kb.get("page:hr/salary#bands", user_groups=ALL_GROUPS) is not None


def test_add_rejects_non_documents(kb: KnowledgeBase) -> None:
    with pytest.raises(KbsearchError, match="expected a Document"):
        kb.add([{"id": "x"}])  # type: ignore[list-item]


def test_error_mid_stream_keeps_earlier_batches(tmp_path: Path) -> None:
    from kbsearch import Settings

    settings = Settings.load(config_file=None, env={})
    settings.index.batch_size = 2

    def stream():
        for i in range(5):
            yield Document(id=f"d{i}", title=f"title {i}", text="text")
        raise KbsearchError("bad line 6")

    with KnowledgeBase.open(tmp_path / "kb", settings=settings) as kb:
        with pytest.raises(KbsearchError, match=r"bad line 6 \(4 documents before it were indexed"):
            kb.add(stream())
        assert kb.stats().documents == 4


def test_fast_bm25f_equals_whooshs_own_scoring(tmp_path: Path) -> None:
    """The numpy scorer gives Whoosh's BM25F scores, across segments, deletions and the access mask."""
    import random

    from kbsearch.search import normalise_groups

    rng = random.Random(7)
    words = "pump seal oil vpn badge quote printer alarm holiday laptop valve motor fuse cable".split()

    def doc(i: int) -> Document:
        pick = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
        return Document(id=f"d{i}", kind="answer" if i % 3 else "page", title=pick(3), text=pick(rng.randint(3, 60)),
                        questions=tuple(pick(4) for _ in range(i % 4)), headings=(pick(2),) if i % 2 else (),
                        allowed_groups=("hr",) if i % 5 == 0 else ())

    with KnowledgeBase.open(tmp_path / "kb") as kb:
        for start in range(0, 600, 150):  # several segments
            kb.add([doc(i) for i in range(start, start + 150)])
        kb.delete([f"d{i}" for i in range(0, 600, 7)])
        live = kb._current()
        assert len(live.engine._searcher().reader().leaf_readers()) > 1
        for trial in range(40):
            prepared = live.searcher.prepare(" ".join(rng.sample(words, rng.randint(1, 5))))
            groups = normalise_groups(["hr"] if trial % 2 else [])
            fast = [(c.document.id, c.bm25) for c in live.engine.retrieve(prepared.clauses, 25, groups)]
            slow = live.engine.retrieve_whoosh(prepared.clauses, 25, groups)
            assert [s for _i, s in fast] == pytest.approx([s for _i, s in slow], rel=1e-9)
            cut = slow[-1][1] if len(slow) == 25 else -1
            assert {i for i, s in fast if s > cut * (1 + 1e-9)} == {i for i, s in slow if s > cut * (1 + 1e-9)}
            assert not any(int(i[1:]) % 7 == 0 for i, _s in fast)


def test_iter_documents_of_one_kind(tmp_path) -> None:
    """Reading only the answers goes through the index and returns exactly the answers, in order."""
    from kbsearch import Document, KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add([Document(id=f"p{i}", title=f"page {i}", text="text") for i in range(5)]
               + [Document(id=f"a{i}", title=f"answer {i}", text="yes", kind="answer") for i in range(3)])
        with kb._using() as generation:
            answers = [d.id for d in generation.engine.iter_documents(kind="answer")]
            everything = [d.id for d in generation.engine.iter_documents()]
    assert answers == [i for i in everything if i.startswith("a")] and len(answers) == 3


def test_lists_come_back_as_added(kb: KnowledgeBase) -> None:
    """Headings and questions are stored joined by U+001F; one inside an item must not split it."""
    doc = Document(id="q", title="Printing", text="Use the print portal.", kind="answer",
                   questions=("how do I print\x1fin colour", "colour printing"), headings=("IT", "Print\x1fers"))
    assert doc.questions == ("how do I print in colour", "colour printing")
    kb.add([doc])
    back = kb.get("q")
    assert back is not None
    assert back.questions == doc.questions and back.headings == ("IT", "Print ers")
    assert back.content_hash == doc.content_hash


def test_whoosh_internals_still_match_the_public_api(tmp_path: Path) -> None:
    """kbsearch.index reads two private parts of Whoosh for speed (`whoosh_private_postings`,
    `whoosh_private_field_lengths`).  This fails when a Whoosh upgrade removes or changes them: both
    must still be taken and give what the public API gives, posting by posting and document by document."""
    from kbsearch.index import TEXT_FIELDS, whoosh_private_field_lengths, whoosh_private_postings

    words = "pump seal oil vpn badge".split()
    docs = [Document(id=f"d{i}", title=f"{words[i % 5]} {words[(i * 3) % 5]}",
                     text=" ".join(words[(i + k) % 5] for k in range(i % 40 + 1)),
                     questions=(f"how to fix the {words[i % 5]}",) if i % 2 else ())
            for i in range(300)]  # long posting lists: several blocks
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        kb.add(docs[:150])
        kb.add(docs[150:])
        readers = [r for r, _base in kb._current().engine._searcher().reader().leaf_readers()]
        assert len(readers) == 2
        blocks_seen = 0
        for reader in readers:
            size = reader.doc_count_all()
            for field in TEXT_FIELDS:
                lengths = whoosh_private_field_lengths(reader, field, size)
                assert lengths is not None, "Whoosh's per-document lengths column is gone"
                assert lengths.tolist() == [float(reader.doc_field_length(d, field) or 0) for d in range(size)]
                for term in {t for w in words for t in index_terms(w)}:
                    if (field, term) not in reader:
                        continue
                    blocks = whoosh_private_postings(reader.postings(field, term))
                    assert blocks is not None, "Whoosh's W3 leaf matcher is gone"
                    blocks_seen += len(blocks)
                    public = reader.postings(field, term)
                    expected = []
                    while public.is_active():
                        expected.append((public.id(), public.weight()))
                        public.next()
                    assert [(int(i), float(w)) for ids, ws in blocks for i, w in zip(ids, ws)] == expected
        assert blocks_seen > len(readers) * len(words)  # some terms span more than one block
