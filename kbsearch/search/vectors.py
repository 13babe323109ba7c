"""Sentence vectors of every document's phrasings, kept with the index version: retrieval by meaning.

Lexical search misses a page whose rare words the question does not use ("the screen stays black"
for "Monitor shows no signal"), and in a large index such a page is never among its hits.  Each
document's phrasings (title, alternate questions, last heading: `documents.phrasings`) are encoded
once, when the document is written, and kept as unit vectors in the version's ``vectors/`` folder,
so a question's nearest phrasings are one matrix product away.

The vectors follow the index's copy-on-write versions.  A rebuild writes one base segment
(projected on its principal axes above `PROJECT_ABOVE` rows, so a question against 100k pages
costs a few milliseconds; above `PARTITION_ABOVE` rows also partitioned, an inverted file as in
Faiss's IVF, so a question against a million reads the few clusters nearest to it); an add writes
a small segment of what it added or changed into its fork; past `MAX_SEGMENTS` the small ones are
merged into one.  No file is ever rewritten: the manifest is
replaced atomically, segments are new files.  Rows of deleted or changed documents stay until the
next rebuild; every neighbour carries the content hash it was encoded from, and the searcher checks
it (and the caller's access) against the live index before anyone sees the document.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..documents import Document, phrasings
from ..errors import IndexCorruptError
from ..storage import save_npy, save_npy_gathered, write_json
from ._vector_math import Partition, Projection, unit

log = logging.getLogger(__name__)

#: A sentence encoder's ``encode``: texts to (n, dims) float32 unit vectors.
Encode = Callable[[Sequence[str]], np.ndarray]

VECTORS_DIR = "vectors"
MANIFEST = "segments.json"
FORMAT = 1
#: A base segment with more rows than this is projected on its `PROJECT_DIMS` principal axes: the
#: product over 130k phrasings and its top-k selection fall from ~20 ms to ~8 ms per question, and
#: the ranking of the nearest few dozen barely moves (candidates are re-scored with full vectors).
PROJECT_ABOVE = 20_000
PROJECT_DIMS = 128
#: Rows the projection is fitted on at most (a random sample of the base segment).
PROJECT_SAMPLE = 20_000
#: A base segment with more rows than this is also partitioned: its rows clustered (k-means, about
#: 4·√rows clusters) and stored cluster by cluster, so a question reads the clusters whose centroids
#: are nearest instead of every row.  At 1M phrasings the full product took ~25 ms per round, the
#: partitioned read ~4 ms, finding 99% of the same nearest rows (bench/README.md, cost curve).
PARTITION_ABOVE = 250_000
#: Rows a question reads from a partitioned segment at least, and per neighbour asked for.
PROBE_MIN_ROWS = 65_536
PROBE_ROWS_PER_NEIGHBOUR = 32
#: Segments kept before the small ones (all but the base) are merged into one.
MAX_SEGMENTS = 8
#: Texts encoded per call while a rebuild streams documents past.
ENCODE_BATCH = 1024
#: Distinct phrasings a rebuild remembers the vectors of (float16, ~0.8 kB each): headings such as
#: "Introduction" recur across an intranet (the bench corpus: 115,587 phrasings, 39,443 distinct),
#: and each is encoded once per rebuild instead of once per document.
REBUILD_MEMO = 131_072
#: Loaded segments kept in memory, keyed by file identity: a fork shares its parent's files (hard
#: links), so a new version after an add reuses what the last one loaded.
_SEGMENT_CACHE = 32


@dataclass(frozen=True)
class Neighbour:
    """A document whose phrasing is near a question: its id, the content it was encoded from, cosine."""

    doc_id: str
    content_hash: str
    similarity: float


def _rows_of(docs: Iterable[Document]) -> tuple[list[str], list[list[str]]]:
    """Texts to encode and, per text, its row: [doc id, content hash]."""
    texts: list[str] = []
    rows: list[list[str]] = []
    for doc in docs:
        digest = doc.content_hash
        for text in phrasings(doc):
            texts.append(text)
            rows.append([doc.id, digest])
    return texts, rows


def _write_segment(folder: Path, matrix: np.ndarray, rows: list[list[str]], full: np.ndarray | None,
                   partition: Partition | None = None, full_order: np.ndarray | None = None) -> str:
    """A new segment (never an existing name): its rows, its search matrix, its partition if any and,
    when the matrix is projected, the full vectors (float16: what deciding reads instead of encoding
    again), taken in ``full_order`` when given; its name."""
    name = f"seg-{uuid.uuid4().hex[:12]}"
    write_json(folder / f"{name}.rows.json", rows)
    if full is not None and full_order is not None:
        save_npy_gathered(folder / f"{name}.full.npy", full, full_order, "float16")
    elif full is not None:
        save_npy(folder / f"{name}.full.npy", np.asarray(full, dtype=np.float16))
    if partition is not None:
        partition.save(folder / f"{name}.ivf.npz")
    save_npy(folder / f"{name}.npy", np.ascontiguousarray(matrix, dtype=np.float32))
    return name


def _read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        with (folder / MANIFEST).open(encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"unreadable {folder / MANIFEST}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorruptError(f"{folder / MANIFEST}: unknown format")
    return manifest


class VectorBuilder:
    """A rebuild's base segment: phrasings encoded in batches as documents stream past.

    Full vectors go to a temporary file (float16), not memory, so the rebuild's peak does not grow
    with the index; `finish` projects them (large indexes) and publishes segment and manifest.
    """

    def __init__(self, gen_dir: Path, encode: Encode, encoder_name: str) -> None:
        self.folder = gen_dir / VECTORS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self._encode = encode
        self._name = encoder_name
        self._batch: list[str] = []
        self._rows: list[list[str]] = []
        self._tmp = self.folder / f".tmp-full-{os.getpid()}.f16"
        self._out = self._tmp.open("wb")
        self._dims = 0
        self._memo: dict[str, np.ndarray] = {}

    def offer(self, doc: Document) -> None:
        texts, rows = _rows_of([doc])
        self._batch.extend(texts)
        self._rows.extend(rows)
        if len(self._batch) >= ENCODE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        memo = self._memo
        new = list(dict.fromkeys(t for t in self._batch if t not in memo))
        if new:
            encoded = np.asarray(self._encode(new), dtype=np.float32).astype(np.float16)
            self._dims = encoded.shape[1]
            fresh = dict(zip(new, encoded))
            for t in new[:max(0, REBUILD_MEMO - len(memo))]:
                memo[t] = fresh[t]
        else:
            fresh = {}
        vectors = np.stack([memo[t] if t in memo else fresh[t] for t in self._batch])
        self._out.write(vectors.tobytes())
        self._batch = []

    def finish(self) -> int:
        """Write the base segment and the manifest; the number of phrasings encoded."""
        self._flush()
        self._memo = {}
        self._out.close()
        n = len(self._rows)
        try:
            projection: Projection | None = None
            if n:
                full = np.memmap(self._tmp, dtype=np.float16, mode="r", shape=(n, self._dims))
                if n > PROJECT_ABOVE:
                    pick = np.sort(np.random.default_rng(0).choice(n, size=min(n, PROJECT_SAMPLE), replace=False))
                    projection = Projection.fit(np.asarray(full[pick], dtype=np.float32), PROJECT_DIMS)
                    matrix = np.vstack([projection(full[i:i + 8192]) for i in range(0, n, 8192)])
                    if n > PARTITION_ABOVE:
                        partition, order = Partition.fit(matrix)
                        matrix = matrix[order]
                        rows = [self._rows[i] for i in order]
                        segments = [_write_segment(self.folder, matrix, rows, full, partition, order)]
                    else:
                        segments = [_write_segment(self.folder, matrix, self._rows, full)]
                else:
                    matrix = unit(np.asarray(full, dtype=np.float32))
                    segments = [_write_segment(self.folder, matrix, self._rows, None)]
                del full
            else:
                segments = []
            if projection is not None:
                projection.save(self.folder / "projection.npz")
            write_json(self.folder / MANIFEST, {"format": FORMAT, "encoder": self._name, "segments": segments,
                                                "projection": "projection.npz" if projection else None})
        finally:
            self._tmp.unlink(missing_ok=True)
        log.info("vectors: %d phrasings encoded%s", n,
                 " (projected, partitioned)" if n > PARTITION_ABOVE else " (projected)" if n > PROJECT_ABOVE else "")
        return n

    def cancel(self) -> None:
        self._out.close()
        self._tmp.unlink(missing_ok=True)


def append(gen_dir: Path, docs: Sequence[Document], encode: Encode, encoder_name: str, *,
           start: bool = False) -> int:
    """Encode ``docs`` (added or changed) into a new segment of the unpublished version ``gen_dir``.

    ``start``: the version had no document before these, so they begin its vectors.  Otherwise a
    version without vectors (built with the encoder off) waits for its next rebuild: a segment of
    only the new documents would leave the rest unfindable by meaning.  Returns rows written.
    """
    folder = gen_dir / VECTORS_DIR
    manifest = _read_manifest(folder)
    if manifest is None:
        if not start:
            return 0
        manifest = {"format": FORMAT, "encoder": encoder_name, "segments": [], "projection": None}
    if manifest.get("encoder") != encoder_name:
        log.warning("vectors: built with %s, not %s; new documents wait for a rebuild",
                    manifest.get("encoder"), encoder_name)
        return 0
    texts, rows = _rows_of(docs)
    if not texts:
        return 0
    vectors = np.asarray(encode(texts), dtype=np.float32)
    proj = manifest.get("projection")
    matrix = Projection.load(folder / str(proj))(vectors) if proj else unit(vectors)
    segments = [str(s) for s in manifest.get("segments", [])]  # type: ignore[union-attr]
    segments.append(_write_segment(folder, matrix, rows, vectors if proj else None))
    if len(segments) > MAX_SEGMENTS:
        segments = segments[:1] + [_merge(folder, segments[1:])]
    write_json(folder / MANIFEST, {**manifest, "segments": segments})
    return len(rows)


def _merge(folder: Path, names: list[str]) -> str:
    """One new segment holding ``names``' rows; a document's older rows are dropped for its newest."""
    parts = [_load_segment(folder, n) for n in names]
    latest: dict[str, int] = {}
    for i, part in enumerate(parts):
        for doc_id, _h in part.rows:
            latest[doc_id] = i
    keep_m, keep_f, keep_r = [], [], []
    projected = all(part.full is not part.matrix for part in parts)
    for i, part in enumerate(parts):
        sel = [j for j, (doc_id, _h) in enumerate(part.rows) if latest[doc_id] == i]
        keep_m.append(np.asarray(part.matrix[sel]))
        keep_f.append(np.asarray(part.full[sel]))
        keep_r.extend(part.rows[j] for j in sel)
    return _write_segment(folder, np.vstack(keep_m), keep_r, np.vstack(keep_f) if projected else None)


class _Segment:
    """One segment, loaded: its search matrix and full vectors (memory-mapped), its rows and, for a
    large base, its partition."""

    def __init__(self, matrix: np.ndarray, full: np.ndarray, rows: list[list[str]],
                 partition: Partition | None = None) -> None:
        self.matrix = matrix
        self.full = full
        self.rows = rows
        self.partition = partition
        self._where: dict[tuple[str, str], list[int]] | None = None
        #: The last question's similarities, (key, result): `Searcher.by_meaning`'s next round of one
        #: question reads the same clusters (or multiplies the same rows) again.
        self._last: tuple[tuple[bytes, int], Any] | None = None

    def _remembered(self, key: tuple[bytes, int], compute: Callable[[], Any]) -> Any:
        last = self._last  # one atomic read: another thread may replace it meanwhile
        if last is not None and last[0] == key:
            return last[1]
        value = compute()
        self._last = (key, value)
        return value

    def product(self, q: np.ndarray) -> np.ndarray:
        """``matrix @ q.T`` (questions as rows), the last one remembered."""
        return self._remembered((q.tobytes(), 0), lambda: np.asarray(self.matrix @ q.T))

    def read(self, q: np.ndarray, probe: int) -> tuple[np.ndarray, np.ndarray]:
        """`Partition.read` of this segment for one question, the last one remembered."""
        partition = self.partition
        assert partition is not None
        return self._remembered((q.tobytes(), probe), lambda: partition.read(self.matrix, q, probe))

    def rows_of(self, doc_id: str, content_hash: str) -> list[int]:
        """The rows of one document's content (its phrasings)."""
        if self._where is None:
            where: dict[tuple[str, str], list[int]] = {}
            for r, (d, h) in enumerate(self.rows):
                where.setdefault((d, h), []).append(r)
            self._where = where
        return self._where.get((doc_id, content_hash), [])


_cache: OrderedDict[tuple[str, int, int], _Segment] = OrderedDict()
_cache_lock = threading.Lock()


def _load_segment(folder: Path, name: str) -> _Segment:
    path = folder / f"{name}.npy"
    try:
        st = path.stat()
        key = (name, st.st_dev, st.st_ino)  # names are unique: a reused inode is never taken for another
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
        matrix = np.load(path, mmap_mode="r")
        full_path = folder / f"{name}.full.npy"
        full = np.load(full_path, mmap_mode="r") if full_path.exists() else matrix
        with (folder / f"{name}.rows.json").open(encoding="utf-8") as handle:
            rows = json.load(handle)
        ivf_path = folder / f"{name}.ivf.npz"
        partition = Partition.load(ivf_path, len(rows), matrix.shape[1]) if ivf_path.exists() else None
    except (OSError, ValueError, KeyError) as exc:
        raise IndexCorruptError(f"unreadable vector segment {path}: {exc}") from exc
    if not len(rows) == matrix.shape[0] == full.shape[0]:
        raise IndexCorruptError(f"vector segment {path}: {matrix.shape[0]} vectors for {len(rows)} rows")
    segment = _Segment(matrix, full, rows, partition)
    with _cache_lock:
        _cache[key] = segment
        while len(_cache) > _SEGMENT_CACHE:
            _cache.popitem(last=False)
    return segment


class PhrasingVectors:
    """One version's phrasing vectors, read-only: the nearest documents to questions."""

    def __init__(self, encoder_name: str, projection: Projection | None,
                 segments: list[_Segment]) -> None:
        self.encoder_name = encoder_name
        self._projection = projection
        self._segments = segments

    @classmethod
    def open(cls, gen_dir: Path) -> PhrasingVectors | None:
        """The vectors of ``gen_dir``, or None when it was built without them."""
        folder = gen_dir / VECTORS_DIR
        manifest = _read_manifest(folder)
        if manifest is None:
            return None
        proj = manifest.get("projection")
        projection = Projection.load(folder / str(proj)) if proj else None
        segments = [_load_segment(folder, str(n)) for n in manifest.get("segments", [])]  # type: ignore[union-attr]
        return cls(str(manifest.get("encoder")), projection, segments)

    def __len__(self) -> int:
        return sum(len(seg.rows) for seg in self._segments)

    def vectors_of(self, doc_id: str, content_hash: str) -> np.ndarray | None:
        """The encoder's unit vectors of one document's phrasings, as stored for exactly this content
        (the newest segment holding it), or None: what deciding reads instead of encoding again."""
        for seg in reversed(self._segments):
            rows = seg.rows_of(doc_id, content_hash)
            if rows:
                if self._projection is not None and seg.full is seg.matrix:
                    return None  # a projected segment without its full vectors: encode anew
                return np.asarray(seg.full[rows], dtype=np.float32)
        return None

    def nearest(self, questions: np.ndarray, rows: int) -> list[list[Neighbour]]:
        """For each question vector (full encoder dims, unit length), the documents of its ``rows``
        nearest phrasings, best first, each (document, content) once at its nearest phrasing.  A
        document changed since an older segment has rows under both hashes: the caller keeps the
        one the live index has."""
        q = np.atleast_2d(np.asarray(questions, dtype=np.float32))
        if self._projection is not None:
            q = self._projection(q)
        found: list[list[tuple[float, int, str, str]]] = [[] for _ in range(len(q))]
        probe = max(PROBE_MIN_ROWS, PROBE_ROWS_PER_NEIGHBOUR * rows)
        for s, seg in enumerate(self._segments):
            seg_rows = seg.rows
            if not seg_rows:
                continue
            if seg.partition is not None and probe < len(seg_rows):
                for j in range(len(q)):  # the rows of the clusters nearest to each question
                    part_sims, part_rows = seg.read(q[j], probe)
                    take = min(rows, len(part_sims))
                    for r in np.argpartition(-part_sims, take - 1)[:take] if take else ():
                        doc_id, digest = seg_rows[int(part_rows[r])]
                        found[j].append((float(part_sims[r]), s, doc_id, digest))
                continue
            sims = seg.product(q)  # (rows, questions)
            take = min(rows, sims.shape[0])
            top = np.argpartition(-sims, take - 1, axis=0)[:take] if take < sims.shape[0] else \
                np.tile(np.arange(sims.shape[0])[:, None], (1, len(q)))
            for j in range(len(q)):
                for r in top[:, j]:
                    doc_id, digest = seg_rows[int(r)]
                    found[j].append((float(sims[r, j]), s, doc_id, digest))
        out: list[list[Neighbour]] = []
        for cands in found:
            best: dict[tuple[str, str], Neighbour] = {}
            for sim, _s, doc_id, digest in sorted(cands, key=lambda c: (-c[0], -c[1])):
                best.setdefault((doc_id, digest), Neighbour(doc_id, digest, sim))
            out.append(list(best.values()))
        return out


class Meaning:
    """A version's phrasing vectors and the encoder that reads questions the same way, opened lazily.

    ``search`` alone never loads the encoder; the first question asked by meaning does.  Without the
    encoder, or with vectors made by another encoder, there is nothing to find (the lexical path
    alone, as in an install without the ``encoder`` extra).
    """

    def __init__(self, gen_dir: Path, encoder_setting: str) -> None:
        self._gen_dir = gen_dir
        self._setting = encoder_setting
        self._lock = threading.Lock()
        self._opened = False
        self._vectors: PhrasingVectors | None = None
        self._encode: Encode | None = None

    def _open(self) -> None:
        with self._lock:
            if self._opened:
                return
            from ._encoder import load_encoder

            vectors = PhrasingVectors.open(self._gen_dir)
            encoder = load_encoder(self._setting) if vectors is not None and len(vectors) else None
            if encoder is not None and vectors is not None and encoder.name == vectors.encoder_name:
                self._vectors, self._encode = vectors, encoder.encode
            elif encoder is not None:
                log.warning("vectors of %s were made by %s, not %s: not used until a rebuild",
                            self._gen_dir.name, vectors.encoder_name if vectors else None, encoder.name)
            self._opened = True

    @property
    def available(self) -> bool:
        self._open()
        return self._vectors is not None

    def nearest(self, questions: Sequence[str], rows: int) -> list[list[Neighbour]]:
        """`PhrasingVectors.nearest` for question texts; empty lists when there are no vectors."""
        encoded = self.encode(questions)
        return [[] for _ in questions] if encoded is None else self.nearest_to(encoded, rows)

    def encode(self, questions: Sequence[str]) -> np.ndarray | None:
        """The questions' vectors, or None when there is nothing to find by meaning."""
        self._open()
        if self._vectors is None or self._encode is None or not questions:
            return None
        return np.asarray(self._encode(list(questions)), dtype=np.float32)

    def nearest_to(self, vectors: np.ndarray, rows: int) -> list[list[Neighbour]]:
        """`PhrasingVectors.nearest` for vectors from `encode` (a question looked for again, further,
        is not encoded again)."""
        self._open()
        return self._vectors.nearest(vectors, rows) if self._vectors is not None else [[] for _ in vectors]

    def vectors_of(self, doc_id: str, content_hash: str) -> np.ndarray | None:
        """`PhrasingVectors.vectors_of`, or None when there are no vectors."""
        self._open()
        return self._vectors.vectors_of(doc_id, content_hash) if self._vectors is not None else None
