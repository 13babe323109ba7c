"""`KnowledgeBase.ask` on real indexes built from small self-made archives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbsearch import Document, InvalidQuestionError, KnowledgeBase
from kbsearch.deflect._features import FEATURES
from kbsearch.deflect import Action, Decision

from .conftest import THREADS, make_kb, thread_docs


def test_paraphrase_of_an_archived_question_is_answered(shared_kb: KnowledgeBase) -> None:
    d = shared_kb.ask("my vpn will not connect from the hotel wifi")
    assert isinstance(d, Decision)
    assert d.action is Action.ANSWER
    assert d.answer is not None and d.answer.id == "vpn"
    assert 0.0 <= d.confidence <= 1.0 and d.confidence >= d.thresholds["answer"]
    assert d.ranked[0] == "vpn"
    assert d.answer.url == "https://intranet.example/answers/vpn"
    # The signals behind it are explained.
    for key in ("classifier", "phrasing_match", "tfidf", "bm25_norm", "coverage", "verified", "probability"):
        assert key in d.signals
    assert d.signals["phrasing_match"] > 0.3


@pytest.mark.parametrize("question", ["what is the boiling point of mercury",
                                      "who won the football world cup in 1954"],
                         ids=["chemistry", "football"])
def test_unrelated_question_is_not_deflected(shared_kb: KnowledgeBase, question: str) -> None:
    d = shared_kb.ask(question)
    assert d.action is not Action.ANSWER
    assert d.answer is None
    assert d.confidence < d.thresholds["answer"]


def test_decision_json_is_complete(shared_kb: KnowledgeBase) -> None:
    d = shared_kb.ask("how many days of vacation per year")
    data = json.loads(json.dumps(d.to_dict()))
    assert data["action"] in ("answer", "suggest", "escalate")
    assert set(data) >= {"id", "question", "action", "confidence", "why", "answers", "signals", "ranked",
                         "thresholds", "routing", "escalation"}
    assert data["ranked"][0] == "holiday"


def test_routing_is_attached_when_not_answered(shared_kb: KnowledgeBase) -> None:
    question = "what is the boiling point of mercury"
    d = shared_kb.ask(question)
    assert d.action is not Action.ANSWER
    routing = shared_kb.route(question)
    assert d.routing is not None and d.routing == routing  # the same routing `route` gives
    assert d.group == routing.group == "general" and "default group" in routing.reason  # nothing learned fits
    assert d.to_dict()["routing"]["group"] == "general"


def test_outdated_answer_is_never_used_to_deflect(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", thread_docs(outdated={"printer"})) as kb:
        d = kb.ask("The printer on floor 3 shows a paper jam")
        assert d.action is not Action.ANSWER
        assert all(a.id != "printer" for a in d.answers)
        assert "outdated" in d.why
        # Other questions still deflect.
        assert kb.ask("i forgot my password").action is Action.ANSWER


def test_marked_outdated_or_deleted_since_the_model_was_fitted_is_honoured_by_the_next_decision(tmp_path: Path) -> None:
    """The answer model keeps a copy of each document's flags from its fit; the live index wins."""
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        question = "The printer on floor 3 shows a paper jam"
        assert kb.ask(question).answer.id == "printer"  # type: ignore[union-attr]
        printer = kb.get("printer")
        assert printer is not None
        kb.add([printer.replace(outdated=True)], refit=False)  # no refit: the model's copy is stale
        d = kb.ask(question)
        assert d.action is not Action.ANSWER and "outdated" in d.why
        assert all(a.id != "printer" for a in d.answers)
        password = "i forgot my password"
        assert kb.ask(password).answer.id == "password"  # type: ignore[union-attr]
        kb.delete(["password"])
        d = kb.ask(password)
        assert "password" not in d.ranked and all(a.id != "password" for a in d.answers)


def test_restricted_answer_only_for_its_group(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", thread_docs(restricted={"payslip": ["staff"]})) as kb:
        outsider = kb.ask("where can i download my payslip")
        assert "payslip" not in outsider.ranked
        assert all(a.id != "payslip" for a in outsider.answers)
        member = kb.ask("where can i download my payslip", groups=["staff"])
        assert member.action is Action.ANSWER and member.answer is not None and member.answer.id == "payslip"


def test_bad_questions_raise_clear_errors(shared_kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidQuestionError):
        shared_kb.ask("   ")
    with pytest.raises(InvalidQuestionError):
        shared_kb.ask(42)  # type: ignore[arg-type]


def test_query_syntax_is_just_words(shared_kb: KnowledgeBase) -> None:
    d = shared_kb.ask('title:"password" OR (reset* AND expired)')
    assert d.ranked and d.ranked[0] == "password"


def test_empty_index_escalates(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "empty") as kb:
        d = kb.ask("how do I reset my password")
        assert d.action is Action.ESCALATE and d.answers == [] and d.confidence == 0.0


def test_tiny_archive_degrades_gracefully(tmp_path: Path) -> None:
    docs = [Document(id="a", title="How do I reset my password?", text="Use the self-service portal.", kind="answer"),
            Document(id="b", title="Where is the canteen?", text="Building C, ground floor.", kind="page")]
    with make_kb(tmp_path / "kb", docs) as kb:
        report = kb.stats()
        assert report.documents == 2
        d = kb.ask("reset my password")
        assert d.ranked[0] == "a"
        assert 0.0 <= d.confidence <= 1.0
        assert kb.ask("quantum chromodynamics lecture notes").action is not Action.ANSWER


def test_archive_without_phrasings(tmp_path: Path) -> None:
    docs = [Document(id=tid, title=title, text=answer, kind="answer")
            for tid, (_g, title, answer, _p) in THREADS.items()]
    with make_kb(tmp_path / "kb", docs) as kb:
        steps = json.loads((kb.generation_path / "deflect" / "calibration.json").read_text())["report"]
        assert steps["method"] == "holdout" and steps["classifier"] is False
        d = kb.ask("How do I submit my travel expenses")
        assert d.ranked[0] == "expenses"


@pytest.mark.parametrize("phrased", [True, False], ids=["threads-with-phrasings", "titles-only"])
def test_answer_model_has_a_classifier_only_when_calibration_had_one(tmp_path: Path, phrased: bool) -> None:
    """The answering model has a classifier only when the calibration saw one, so its scores mean
    what the calibration learned them to mean."""
    docs = thread_docs() if phrased else [Document(id=tid, title=title, text=answer, kind="answer")
                                          for tid, (_g, title, answer, _p) in THREADS.items()]
    with make_kb(tmp_path / "kb", docs) as kb:
        folder = kb.generation_path / "deflect"
        calibrated = json.loads((folder / "calibration.json").read_text())["report"]["classifier"]
        assert calibrated is phrased
        assert json.loads((folder / "model.json").read_text())["classifier"] is calibrated


def test_without_classifier_scores_as_if_none_was_fitted(shared_kb: KnowledgeBase) -> None:
    """The answering model drops its classifier when the calibration had none; the other signals stay."""
    from kbsearch.deflect import Deflector

    model = Deflector.load(shared_kb.generation_path).model
    assert model is not None and model.clf_coef is not None
    bare = model.without_classifier()
    assert model.clf_coef is not None and bare.clf_coef is None  # the original is untouched
    q = ["How do I submit my travel expenses"]
    with_clf, without = model.scores(q), bare.scores(q)
    assert (with_clf["classifier"] != 0).any() and not (without["classifier"] != 0).any()
    cands = bare.candidates(without, 0, 5)
    feats = bare.features(without, 0, cands)
    assert not feats[:, FEATURES.index("has_classifier")].any()
    assert (feats[:, FEATURES.index("tfidf")] == model.features(with_clf, 0, cands)[:, FEATURES.index("tfidf")]).all()


def test_escalate_true_escalates_through_the_peers(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        d = kb.ask("what is the boiling point of mercury", user="alice", escalate=True)
        assert d.action is Action.ESCALATE
        assert d.escalation is not None
        stored = kb.escalations(user="alice")
        assert [e.id for e in stored] == [d.escalation.id]
        logged = kb.usage.asks()[-1]
        assert logged["escalation_id"] == str(d.escalation.id)
        # An answered question is never escalated, even with escalate=True.
        assert kb.ask("i forgot my password", escalate=True).escalation is None


def test_answer_added_after_the_rebuild_is_found(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        new = Document(id="door", kind="answer", verified=True,
                       title="the badge reader at the north door blinks orange and beeps twice",
                       text="The reader lost its network link; facilities re-encode the badge at reception.")
        kb.add([new])
        d = kb.ask("the badge reader at the north door blinks orange and beeps twice")
        assert d.ranked[0] == "door"
        assert d.answers and d.answers[0].id == "door" and "re-encode" in d.answers[0].snippet


def test_documents_outside_the_model_score_the_same_cached_or_not(tmp_path: Path) -> None:
    """Page vectors are cached between questions; a cached page scores exactly as a fresh one, and a
    changed page is vectorised again (the cache is keyed by content)."""
    from kbsearch.deflect import _deflector

    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        model = _deflector(kb).model
        assert model is not None
        page = Document(id="door", kind="page", title="Door badge readers",
                        text="The badge reader blinks orange when its network link is down.")
        q = "badge reader blinks orange"
        row = {k: v[0] for k, v in model.scores([q]).items()}
        first = model.extra_features(q, [page], row)
        assert len(model._extra_cache) == 1
        again = model.extra_features(q, [page], row)
        assert (first == again).all()
        changed = page.replace(text="Printers on floor 3 jam when the tray is overfilled.")
        after = model.extra_features(q, [changed], row)
        assert len(model._extra_cache) == 2
        assert after[0, 5] < first[0, 5]  # TF-IDF of the changed text no longer matches the question


@pytest.mark.parametrize("change", [{"format": 1}, {"features": ["tfidf", "classifier"]}],
                         ids=["older-format", "other-features"])
def test_model_of_an_older_format_is_not_used(tmp_path: Path, change: dict) -> None:
    """A stored model of another layout (or with other features than this kbsearch computes)
    escalates with a clear log line instead of crashing; a rebuild fits a current one."""
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        meta_path = kb.generation_path / "deflect" / "model.json"
        meta = json.loads(meta_path.read_text())
        meta.update(change)
        meta_path.write_text(json.dumps(meta))
        kb._deflect_cache.clear()
        from kbsearch.deflect import Deflector

        assert Deflector.load(kb.generation_path).model is None
        kb.rebuild(thread_docs())
        assert Deflector.load(kb.generation_path).model is not None


def _projector_pages(headings: list[str]) -> list[Document]:
    return [Document(id=f"p{i}", kind="page", title=heading, url=f"https://intranet.example/rooms/{i}#reset",
                     text=f"Room {i}: hold the projector's power button for ten seconds until the lamp blinks.")
            for i, heading in enumerate(headings)]


@pytest.mark.parametrize("rivals", [0, 1], ids=["one-page-with-the-heading", "two-pages-with-the-heading"])
def test_pages_outside_the_model_compete_with_each_other(tmp_path: Path, rivals: int) -> None:
    """In an index larger than the answer model, a page's margins count the other pages found too:
    two pages with the same heading are no clear winner.  Parts of one section (one link) are one answer."""
    headings = ["How do I reset the projector?"] * (1 + rivals) + ["Projector lamp hours", "Booking the boardroom"]
    pages = _projector_pages(headings)
    same_link = pages[0].replace(id="p0-part2", text="If the lamp keeps blinking, call facilities.")
    with make_kb(tmp_path / "kb", thread_docs() + pages + [same_link], **{"deflect.max_model_docs": 10}) as kb:
        d = kb.ask("How do I reset the projector?")
        assert d.ranked[0].startswith("p0") or d.ranked[0] == "p1"
        margin = d.answers[0].signals["phrasing_margin"] if d.answers else None
        if rivals:
            assert d.signals["phrasing_margin"] == pytest.approx(0.0, abs=1e-6)
        else:
            assert d.signals["phrasing_margin"] > 0.3
        assert margin is None or margin == d.signals["phrasing_margin"]


@pytest.mark.parametrize("question", ["what is the population of japan", "how do I bake sourdough bread",
                                      "who won the world cup"], ids=["what-is", "how-do-i", "who"])
def test_question_words_alone_are_no_match(shared_kb: KnowledgeBase, question: str) -> None:
    """"how do I", "what is my" frame questions; they carry no topic, so a question about something the
    archive never mentions is not covered by them (and is not answered)."""
    from kbsearch.index import content_terms

    assert not {"how", "do", "what", "who"} & set(content_terms(question))
    d = shared_kb.ask(question)
    assert d.action is not Action.ANSWER
    assert d.signals.get("coverage", 0.0) == 0.0


@pytest.mark.parametrize("docs", ["threads", "pages-and-one-accepted-answer"])
def test_no_shared_word_and_no_classifier_vote_is_never_an_answer(tmp_path: Path, docs: str) -> None:
    """A small archive can teach the scorer odd weights (the one accepted answer "wins" everything);
    a question sharing no word with any document escalates with confidence 0 whatever it says."""
    archive = thread_docs() if docs == "threads" else [
        Document(id=f"page{i}", kind="page", title=f"About the {t}", url=f"https://intranet.example/{i}",
                 text=f"The {t} procedure: contact the facilities desk and fill in form F-{i}.")
        for i, t in enumerate(["parking permit", "canteen menu", "fire drill", "badge replacement", "laptop loan",
                               "desk booking", "lost and found", "first aid kit", "bicycle storage", "recycling"])
    ] + [Document(id="holiday", kind="answer", title="How many holiday days do I get", accepted=True,
                  text="Full-time staff get 28 holiday days a year.", questions=("annual leave allowance",))]
    with make_kb(tmp_path / "kb", archive) as kb:
        for question in ("xyzzy plugh", "zorbling quixotic marmalade flumph"):
            d = kb.ask(question)
            assert d.action is Action.ESCALATE and d.confidence == 0.0
            assert "no word of the question" in d.why


def test_has_evidence_needs_a_shared_word_or_a_classifier_vote() -> None:
    import numpy as np

    from kbsearch.deflect._features import FEATURES
    from kbsearch.deflect import has_evidence

    def feats(**values: float) -> np.ndarray:
        row = np.zeros(len(FEATURES))
        for name, value in values.items():
            row[FEATURES.index(name)] = value
        return row
    assert not has_evidence(feats(accepted=1.0, tfidf=0.1, phrasing_match=0.05))
    assert has_evidence(feats(coverage=0.5))
    assert has_evidence(feats(has_classifier=1.0, classifier=0.2))
    assert not has_evidence(feats(has_classifier=1.0, classifier=-0.3))
    assert not has_evidence(feats(has_classifier=0.0, classifier=0.2))  # no class of its own: no vote
