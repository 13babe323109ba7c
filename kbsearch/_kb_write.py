"""`KnowledgeBase`'s writes: add, delete, refit and rebuild, each published as a new index version.

Nothing is written into the live version.  A change forks it (hard links, `storage.versions.fork`),
commits the Whoosh writer and any refit in the fork (new files only), writes ``meta.json`` last and
switches ``CURRENT`` atomically; a rebuild does the same in a fresh directory.  A process killed at
any instant leaves the previous version serving, and the next writer removes the half-made one.
The `checkpoint` calls are a test hook (`storage._faults`) proving exactly that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .search import _generations as gens
from ._build_reports import AddReport, BuildReport
from .search._generations import Generation
from ._memory import release_memory
from .config import Settings
from .documents import Document
from .errors import InvalidDocumentError, KbsearchError
from .index import EngineIndex
from .search.rerank import Reservoir, TfidfModel, VectorCache, fit_on, sample_item
from ._protocols import Progress
from ._version import __version__
from .sources.escalations import PeerStoreOwner
from .storage._faults import checkpoint
from .search.vectors import VectorBuilder
from .search.vectors import append as append_vectors


class FrontDoor(PeerStoreOwner, Protocol):
    """The front door these writes work for (`kbsearch.kb.KnowledgeBase`; not imported, so that
    imports flow one way): this module is its own, so it uses its private parts."""

    def _current(self) -> Generation:
        """The live version."""
        ...

    def _after_build(self, generation: Generation, steps: dict[str, Any], *, calibrate: bool = True) -> None:
        """Routing and deflection after a new corpus model."""
        ...

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def check(doc: Document) -> None:
    """Refuse, naming it, a document nobody could be shown (`Document.checked`): it would break calibration."""
    try:
        doc.checked()
    except InvalidDocumentError as exc:
        raise InvalidDocumentError(f"document {doc.id!r}: {exc}") from None


def batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def new_meta(documents: int, fitted_on: int) -> dict[str, Any]:
    """``meta.json`` of a version built from scratch."""
    return {
        "format": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(),
        "documents_at_build": documents,
        "model_fitted_on": fitted_on,
    }


def models_digest(settings: Settings) -> str:
    """A fingerprint of everything that shapes a build's models (settings, kbsearch version)."""
    shaping = {name: asdict(getattr(settings, name)) for name in ("search", "rerank", "route", "deflect", "peers")}
    shaping["kbsearch"] = [__version__, FORMAT_VERSION]
    text = json.dumps(shaping, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _feedback_seen(kb: FrontDoor) -> int:
    from .storage.usage import open_usage

    usage = open_usage(kb.root, kb.settings)
    try:
        return usage.last_feedback_id()
    finally:
        usage.close()


def rebuild_reason(kb: FrontDoor) -> str | None:
    """Why the live version's models are out of date (a reindex must rebuild), or None when they are
    not: no document changed since the last rebuild, no new feedback, same model-shaping settings."""
    meta = kb._current().meta
    if meta.get("models_digest") != models_digest(kb.settings):
        return "settings (or kbsearch) changed since the last build"
    changed = int(meta.get("changes_since_build", 0))
    if changed:
        return f"{changed} documents changed since the last build"
    if _feedback_seen(kb) > int(meta.get("feedback_seen", 0)):
        return "new feedback since the last build"
    return None


def _forked_meta(parent: Generation) -> dict[str, Any]:
    """``meta.json`` of a version forked from ``parent``: the build's facts, plus when and from what."""
    meta = dict(parent.meta)
    meta["parent"] = parent.path.name
    meta["written"] = datetime.now(timezone.utc).isoformat()
    return meta


def publish(kb: FrontDoor, gen: Path, meta: dict[str, Any], what: str, parent: Path | None = None) -> None:
    """Mark ``gen`` complete (``meta.json``, last), make it live, then clean up old versions."""
    gens.write_meta(gen, meta)
    checkpoint(f"{what}.before-switch")
    gens.switch_to(kb.root, gen, parent)
    checkpoint(f"{what}.switched")
    kb._current()  # open the new version, letting go of this process's hold on the one it replaced
    gens.remove_stale(kb.root, kb.settings.index.keep_generations)


def _vector_encoder(kb: FrontDoor) -> Any:
    """The sentence encoder documents' phrasing vectors are written with, or None (none written)."""
    if kb.settings.deflect.dense_candidates <= 0:
        return None
    from .search._encoder import load_encoder

    return load_encoder(kb.settings.deflect.encoder)


def _bulk(encoder: Any) -> Any:
    """``encoder.encode`` for writing a version's vectors: outside its cache of recent texts, so what
    questions and the answer model encode is computed (and rounded) as if no index were written."""
    return lambda texts: encoder.encode(texts, cache=False)


def _discard(gen: Path) -> None:
    shutil.rmtree(gen, ignore_errors=True)


def _lock_timeout(kb: FrontDoor, lock_timeout: float | None) -> float:
    """Seconds a write waits for the writer lock: ``lock_timeout``, or ``index.writer_timeout``."""
    return kb.settings.index.writer_timeout if lock_timeout is None else lock_timeout


def add(kb: FrontDoor, documents: Iterable[Document], progress: Progress | None, refit: bool,
        lock_timeout: float | None = None) -> AddReport:
    """`KnowledgeBase.add`, in a fork of the live version published when anything changed."""
    report = AddReport()
    started = time.perf_counter()
    cfg = kb.settings.index
    with gens.writer_lock(kb.root, _lock_timeout(kb, lock_timeout)):
        live = kb._current()
        gen = gens.fork(kb.root, live.path)
        meta = _forked_meta(live)
        failure: KbsearchError | None = None
        try:
            engine = EngineIndex.open(gen)
            done = 0
            written: list[Document] = []
            try:
                for batch in batched(documents, cfg.batch_size):
                    latest: dict[str, Document] = {}
                    for doc in batch:
                        if not isinstance(doc, Document):
                            raise KbsearchError(f"expected a Document, got {type(doc).__name__}")
                        check(doc)
                        if doc.id in latest:
                            report.duplicates += 1
                        latest[doc.id] = doc
                    with engine.writer(limitmb=cfg.writer_limitmb) as writer:
                        for doc in latest.values():
                            status = writer.add(doc)
                            setattr(report, status, getattr(report, status) + 1)
                            if status != "unchanged":
                                written.append(doc)
                    done += len(batch)
                    if progress:
                        progress(done)
            except KbsearchError as exc:
                if not report.changed:
                    raise
                failure = type(exc)(f"{exc} ({report.changed} documents before it were indexed; "
                                    "re-running after fixing it is safe)")
            finally:
                engine.close()
            if not report.changed:
                _discard(gen)
            else:
                meta["changes_since_build"] = int(meta.get("changes_since_build", 0)) + report.changed
                if meta.get("deleted_since_build"):  # deleted, then written again: there once more
                    back = {d.id for d in written}
                    meta["deleted_since_build"] = [i for i in meta["deleted_since_build"] if i not in back]
                checkpoint("add.committed")
                encoder = _vector_encoder(kb)
                if encoder is not None:
                    append_vectors(gen, written, _bulk(encoder), encoder.name, start=not live.engine.doc_count())
                    checkpoint("add.vectors")
                if refit and failure is None:
                    report.model_refitted = refit_into(kb, gen, meta)
                publish(kb, gen, meta, "add", live.path)
        except BaseException:
            _discard(gen)
            raise
    kb._current()
    if failure is not None:
        raise failure
    report.seconds = time.perf_counter() - started
    log.info("add: %d added, %d updated, %d unchanged in %.2fs",
             report.added, report.updated, report.unchanged, report.seconds)
    return report


def delete(kb: FrontDoor, ids: Iterable[str], lock_timeout: float | None = None) -> int:
    """`KnowledgeBase.delete`, in a fork of the live version published when anything was deleted."""
    deleted = 0
    with gens.writer_lock(kb.root, _lock_timeout(kb, lock_timeout)):
        live = kb._current()
        gen = gens.fork(kb.root, live.path)
        try:
            engine = EngineIndex.open(gen)
            try:
                removed: list[str] = []
                with engine.writer(limitmb=kb.settings.index.writer_limitmb) as writer:
                    for doc_id in ids:
                        if writer.delete(doc_id):
                            removed.append(doc_id)
                deleted = len(removed)
            finally:
                engine.close()
            if deleted:
                checkpoint("delete.committed")
                meta = _forked_meta(live)
                meta["changes_since_build"] = int(meta.get("changes_since_build", 0)) + deleted
                # Deflection's model keeps what it was fitted on: it must know what is gone.
                meta["deleted_since_build"] = sorted({*meta.get("deleted_since_build", ()), *removed})
                publish(kb, gen, meta, "delete", live.path)
            else:
                _discard(gen)
        except BaseException:
            _discard(gen)
            raise
    kb._current()
    log.info("delete: %d documents removed", deleted)
    return deleted


def refit_into(kb: FrontDoor, gen: Path, meta: dict[str, Any], timings: dict[str, Any] | None = None, *,
               calibrate: bool = True) -> bool:
    """Refit the TF-IDF model of the unpublished version ``gen`` if it is small and grew (large ones are
    refitted by `rebuild`), then its router and deflection model; ``meta`` is updated to match.

    ``timings``, when given, receives ``refit_seconds`` (the TF-IDF model), ``after_build_seconds``
    (router and deflection steps) and ``steps`` (what those steps reported).  ``calibrate=False``
    leaves deflection's model as it is (documents it does not cover are found through search).
    """
    staged = Generation(gen, kb.settings, VectorCache(), meta)
    try:
        count = staged.engine.doc_count()
        sample = kb.settings.rerank.fit_sample
        fitted = staged.model.fitted_on
        if count > sample or (fitted and count < 2 * fitted):
            return False
        started = time.perf_counter()
        model = fit_on(staged.engine.iter_documents(), sample, kb.settings.rerank.doc_chars)
    finally:
        staged.close()
    model.save(gen)
    meta["model_fitted_on"] = model.fitted_on
    del model
    checkpoint("refit.model-saved")
    release_memory()  # the fit's hashing buffers: the after-build steps then start lower
    fitted_at = time.perf_counter()
    steps: dict[str, Any] = {}
    staged = Generation(gen, kb.settings, VectorCache(), meta)
    try:
        kb._after_build(staged, steps, calibrate=calibrate)
    finally:
        staged.close()
    if calibrate:
        meta.pop("deleted_since_build", None)  # deflection's model is fitted on what is there now
    checkpoint("refit.after-build")
    if timings is not None:
        timings.update(refit_seconds=fitted_at - started, after_build_seconds=time.perf_counter() - fitted_at,
                       steps=steps)
    return True


def refit(kb: FrontDoor, timings: dict[str, Any] | None = None, *, calibrate: bool = True,
          lock_timeout: float | None = None) -> bool:
    """Refit the live version's models if `refit_into` says so, as a new version; whether it did."""
    with gens.writer_lock(kb.root, _lock_timeout(kb, lock_timeout)):
        live = kb._current()
        gen = gens.fork(kb.root, live.path)
        meta = _forked_meta(live)
        try:
            if refit_into(kb, gen, meta, timings, calibrate=calibrate):
                publish(kb, gen, meta, "refit", live.path)
                done = True
            else:
                _discard(gen)
                done = False
        except BaseException:
            _discard(gen)
            raise
    kb._current()
    return done


def _kept_answers(kb: FrontDoor, seen: set[str]) -> Iterator[Document]:
    """Answered escalations of the peer store not among ``seen``: a rebuild must not drop them."""
    from .peers._open import STORE_FILE, uses_postgresql

    if (getattr(kb, "_peer_loop", None) is None and not uses_postgresql(kb.settings)
            and not (Path(kb.root) / STORE_FILE).is_file()):
        return
    from .sources.escalations import EscalationsSource

    indexed: list[tuple[str, str, int]] = []
    for item in EscalationsSource().items(kb, indexed):
        if isinstance(item, Document) and item.id not in seen:
            yield item


def _confirmed(kb: FrontDoor, documents: Iterable[Document]) -> Iterable[Document]:
    """``documents`` with the questions askers confirmed they answer among their phrasings (``deflect.learn_phrasings``)."""
    if not kb.settings.deflect.learn_phrasings:
        return documents
    from .deflect._outcomes import with_confirmed_phrasings

    return with_confirmed_phrasings(kb.root, documents, kb.settings.deflect.max_feedback, kb.settings)


def rebuild(kb: FrontDoor, documents: Iterable[Document], progress: Progress | None,
            lock_timeout: float | None = None) -> BuildReport:
    """`KnowledgeBase.rebuild`: a fresh version from ``documents`` plus the peer store's answers."""
    cfg = kb.settings.index
    report = BuildReport()
    started = time.perf_counter()
    with gens.writer_lock(kb.root, _lock_timeout(kb, lock_timeout)):
        gens.remove_stale(kb.root, cfg.keep_generations)
        gen = gens.new_generation_dir(kb.root)
        report.generation = gen.name
        try:
            engine = EngineIndex.create(gen)
            writer = engine.writer(fresh=True, limitmb=cfg.writer_limitmb)
            sample = Reservoir(kb.settings.rerank.fit_sample)
            seen: set[str] = set()
            encoder = _vector_encoder(kb)
            vectors = VectorBuilder(gen, _bulk(encoder), encoder.name) if encoder is not None else None

            def take(doc: Document) -> None:
                writer.add(doc)
                if vectors is not None:
                    vectors.offer(doc)
                sample.offer(sample_item(doc, kb.settings.rerank.doc_chars))
                report.documents += 1
                if progress and report.documents % 500 == 0:
                    progress(report.documents)

            try:
                with writer:
                    for doc in _confirmed(kb, documents):
                        check(doc)
                        if doc.id in seen:
                            report.duplicates += 1
                            log.warning("rebuild: duplicate id %r kept its first document", doc.id)
                            continue
                        seen.add(doc.id)
                        take(doc)
                    for doc in _kept_answers(kb, seen):
                        take(doc)
                        report.answers_kept += 1
            except BaseException:
                if vectors is not None:
                    vectors.cancel()
                raise
            finally:
                engine.close()
            del seen
            checkpoint("rebuild.indexed")
            if vectors is not None:
                report.steps["vectors"] = {"phrasings": vectors.finish()}
                checkpoint("rebuild.vectors")
            del vectors, writer
            release_memory()  # the writer's postings pool: the fits then start lower
            model = TfidfModel.fit(sample.items)
            del sample
            model.save(gen)
            report.model_fitted_on = model.fitted_on
            del model
            release_memory()
            meta = new_meta(report.documents, report.model_fitted_on)
            meta.update(models_digest=models_digest(kb.settings), feedback_seen=_feedback_seen(kb))
            report.index_seconds = time.perf_counter() - started
            staged = Generation(gen, kb.settings, VectorCache(), meta)
            try:
                kb._after_build(staged, report.steps)
            finally:
                staged.close()
            checkpoint("rebuild.after-build")
            report.steps_seconds = time.perf_counter() - started - report.index_seconds
            publish(kb, gen, meta, "rebuild")
        except BaseException:
            _discard(gen)
            raise
    kb._current()
    report.seconds = time.perf_counter() - started
    if progress:
        progress(report.documents)
    if report.answers_kept:
        log.info("rebuild: kept %d peer answers of the escalation store", report.answers_kept)
    log.info("rebuild: %d documents in %.1fs (%.0f docs/s) -> %s",
             report.documents, report.seconds, report.docs_per_second, report.generation)
    return report
