"""The answer model on disk: JSON vocabularies and numpy / scipy ``.npz`` arrays (no pickles), in the
version's ``deflect/`` folder, ``model.json`` written last (it says which arrays to read).

Kept apart from `_model.AnswerModel` (what is scored) so the format is read and written in one place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from ..storage import _faults as faults
from ..storage import save_npy, save_sparse, write_json
from ._features import FEATURES, DocInfo
from ._vectors import _CHAR, _WORD, Rows, SentenceProjection, TermIndex, Vectorizer

log = logging.getLogger(__name__)

MODEL_DIR = "deflect"
#: Version of the stored model's layout; a model of another version is not used (rebuild to refit).
MODEL_FORMAT = 5
#: Older layouts this kbsearch still reads (4: no sentence vectors in the classifier).
READABLE_FORMATS = frozenset({4, MODEL_FORMAT})
PROJECTION_FILE = "sentence_projection.npz"


class StoredModel(Protocol):
    """What `write_model` reads of an `AnswerModel`."""

    docs: list[DocInfo]
    vec: Vectorizer
    phrasings: Rows
    bodies: Rows
    owners: np.ndarray
    terms: TermIndex
    clf_coef: Any
    clf_intercept: Any
    clf_classes: Any
    sem: np.ndarray | None
    sem_owners: np.ndarray
    encoder: Any
    page_encoder: Any
    covers_all: bool

    def _classifier_dense(self) -> Any: ...


@dataclass
class ModelParts:
    """A stored model as read back: `AnswerModel`'s constructor arguments and its sentence vectors."""

    docs: list[DocInfo]
    vec: Vectorizer
    phrasings: sp.csr_matrix
    owners: np.ndarray
    bodies: sp.csr_matrix
    terms: TermIndex
    clf_coef: sp.csr_matrix | np.ndarray | None
    clf_intercept: np.ndarray | None
    clf_classes: np.ndarray | None
    covers_all: bool
    encoder: Any = None
    sem: np.ndarray | None = None
    sem_owners: np.ndarray | None = None
    page_encoder: Any = None


def _encoder_record(encoder: Any) -> dict[str, str] | None:
    if encoder is None:
        return None
    return {"name": encoder.name, "sha256": encoder.digest, "path": str(encoder.model_dir)}


def write_model(model: StoredModel, path: Path) -> None:
    """Write ``model`` into the folder ``path`` (the arrays first, ``model.json`` last)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, v in (("word", model.vec.word), ("char", model.vec.char)):
        vocabulary = getattr(v, "vocabulary_", None) or v.vocabulary  # loaded: a parameter until used
        write_json(path / f"{name}_vocab.json", {k: int(i) for k, i in vocabulary.items()}, ensure_ascii=False)
        save_npy(path / f"{name}_idf.npy", v.idf_.astype(np.float64))
    model.terms.save(path, "terms")
    for name, m in (("phrasings", model.phrasings), ("bodies", model.bodies)):
        save_sparse(path / f"{name}.npz", m.rows())
    save_npy(path / "owners.npy", model.owners)
    if model.clf_coef is not None:
        save_sparse(path / "clf_coef.npz", sp.csr_matrix(model.clf_coef, dtype=np.float32))
        save_npy(path / "clf_intercept.npy", model.clf_intercept.astype(np.float32))
        save_npy(path / "clf_classes.npy", model.clf_classes.astype(np.int32))
    encoder = None
    if model.sem is not None:
        save_npy(path / "semantic.npy", model.sem.astype(np.float32))
        save_npy(path / "semantic_owners.npy", model.sem_owners.astype(np.int32))
        encoder = _encoder_record(model.encoder)
    classifier_encoder = None
    dense = model._classifier_dense()
    if dense is not None:
        classifier_encoder = _encoder_record(dense)
        model.vec.projection.save(path / PROJECTION_FILE)  # type: ignore[union-attr]
    meta = {"format": MODEL_FORMAT, "features": list(FEATURES), "docs": [d.to_dict() for d in model.docs],
            "covers_all": model.covers_all, "classifier": model.clf_coef is not None, "encoder": encoder,
            "classifier_encoder": classifier_encoder, "page_encoder": _encoder_record(model.page_encoder)}
    faults.checkpoint("deflect.model-arrays-written")
    write_json(path / "model.json", meta, ensure_ascii=False)  # last: it says which arrays to read


def read_model(path: Path) -> ModelParts | None:
    """The model stored in the folder ``path``; None when there is none or it was written by an older
    kbsearch, or with a sentence encoder not installed here (questions escalate until a rebuild)."""
    gen_dir = path.parent
    try:
        meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if meta.get("format") not in READABLE_FORMATS or meta.get("features") != list(FEATURES):
        log.warning("deflection model in %s is from an older kbsearch; questions escalate until the "
                    "next rebuild", gen_dir)
        return None
    vecs = []
    for name, params in (("word", _WORD), ("char", _CHAR)):
        v = TfidfVectorizer(vocabulary=json.loads((path / f"{name}_vocab.json").read_text(encoding="utf-8")),
                            **params)
        v.idf_ = np.load(path / f"{name}_idf.npy")
        vecs.append(v)
    coef = intercept = classes = None
    if meta.get("classifier"):
        # Sparse since the classifier is fitted on the phrasings' columns; dense before.
        coef = (sp.load_npz(path / "clf_coef.npz").tocsr() if (path / "clf_coef.npz").exists()
                else np.load(path / "clf_coef.npy"))
        intercept = np.load(path / "clf_intercept.npy")
        classes = np.load(path / "clf_classes.npy")
    from ..search._encoder import load_encoder

    if meta.get("word_vectors"):  # GloVe word vectors: no longer part of kbsearch
        log.warning("deflection model in %s was fitted with word vectors, which this kbsearch no longer "
                    "reads; questions escalate until the next rebuild", gen_dir)
        return None
    stored: dict[str, Any] = {}
    for key in ("encoder", "classifier_encoder", "page_encoder"):
        if meta.get(key):
            stored[key] = _stored_resource(meta[key], load_encoder)
            if stored[key] is None:
                log.warning("deflection model in %s was fitted with the sentence encoder %s, not installed "
                            "here; questions escalate until the next rebuild", gen_dir, meta[key].get("name"))
                return None
    encoder = stored.get("encoder")
    projection = None
    if stored.get("classifier_encoder") is not None:
        projection = SentenceProjection.load(path / PROJECTION_FILE)
    vec = Vectorizer(*vecs, encoder=stored.get("classifier_encoder"), projection=projection)
    parts = ModelParts([DocInfo.from_dict(d) for d in meta["docs"]], vec,
                       sp.load_npz(path / "phrasings.npz").tocsr(), np.load(path / "owners.npy"),
                       sp.load_npz(path / "bodies.npz").tocsr(), TermIndex.load(path, "terms"), coef, intercept,
                       classes, bool(meta.get("covers_all")))
    if encoder is not None:
        parts.encoder = encoder
        parts.sem = np.load(path / "semantic.npy")
        parts.sem_owners = np.load(path / "semantic_owners.npy")
    parts.page_encoder = stored.get("page_encoder")
    return parts


def _stored_resource(stored: dict[str, Any], load: Callable[[str], Any]) -> Any:
    """What a stored model was fitted with (a sentence encoder): the installed copy or the
    one at the recorded path, if its SHA-256 is the recorded one; else None."""
    from ..errors import ConfigError

    for setting in ("auto", stored.get("path") or ""):
        try:
            found = load(setting) if setting else None
        except (ConfigError, OSError):
            found = None
        if found is not None and found.digest == stored.get("sha256"):
            return found
    return None
