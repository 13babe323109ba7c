"""New knowledge takes part at once, pages are answers at any index size, and calibrations move boundedly."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch import Document, KnowledgeBase
from kbsearch.deflect._calibration import Calibration
from kbsearch.deflect import Action, Deflector, _deflector, anchor_thresholds

from .conftest import make_kb, thread_docs


def _encoder_installed() -> bool:
    from kbsearch.search._encoder import load_encoder

    try:
        return load_encoder("auto") is not None
    except Exception:
        return False


needs_encoder = pytest.mark.skipif(not _encoder_installed(), reason="the sentence encoder is not installed")

LAPTOP = Document(id="laptop", kind="answer", title="How do I order a new laptop?",
                  text="Use the IT shop catalogue; your manager approves the order and IT ships it in a week.")


@needs_encoder
def test_answer_added_after_the_rebuild_gets_sentence_features_and_is_answered(tmp_path: Path) -> None:
    """A peer answer written after the rebuild (outside the answer model, found by search) gets the
    sentence-encoder features of a covered one, so a rephrasing is decided on its meaning too."""
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        kb.add([LAPTOP])
        assert "laptop" not in _deflector(kb).model.index  # no refit: decided through search
        d = kb.ask("where can I order a new laptop for work")
        assert d.ranked and d.ranked[0] == "laptop"
        shown = (d.answers or d.closest)[0]
        assert shown.id == "laptop"
        assert shown.signals["encoded"] == 1.0 and shown.signals["semantic"] > 0.5
        assert d.action is not Action.ESCALATE, d.why


def _pages() -> list[Document]:
    topics = [("How do I reset the conference room projector?", "Hold the projector power button ten seconds."),
              ("Configuring the guest wifi", "Guests get a daily code from reception for the visitor network."),
              ("Ordering business cards", "Order business cards in the print shop portal; delivery in five days."),
              ("Shredding confidential paper", "Use the locked grey bins; they are shredded on site every Friday."),
              ("Booking a company car", "Company cars are booked in the fleet calendar at least a day ahead."),
              ("Recycling old electronics", "Bring old phones and cables to the IT desk for certified recycling."),
              ("Lost and found", "Found items are kept at reception for a month."),
              ("Bicycle storage", "The bike cage in the basement opens with your access badge.")]
    pages = []
    for j, (title, text) in enumerate(topics):
        pages.append(Document(id=f"page0-{j}", kind="page", title=title, text=text,
                              url=f"https://intranet.example/site/{j}"))
    return pages


def test_pages_outside_an_answers_only_model_are_calibrated_and_answered(tmp_path: Path) -> None:
    """An index larger than the answer model: its pages are sampled for calibration, pseudo-questions
    from their headings go through search, and a page found for its own heading is answered or
    suggested (not escalated as an unknown kind of candidate)."""
    with make_kb(tmp_path / "kb", thread_docs() + _pages(), **{"deflect.max_model_docs": 12,
                                                             "deflect.calibration_pages": 8}) as kb:
        cal = Calibration.load(kb.generation_path)
        assert cal is not None and cal.report["search_holdouts"] > 0
        assert cal.uncovered_scorer, "no scorer was fitted for documents outside the model"
        d = kb.ask("How do I reset the conference room projector?")
        assert d.ranked[0] == "page0-0"
        assert d.action in (Action.ANSWER, Action.SUGGEST), d.why


def test_escalation_carries_the_closest_hits(shared_kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    """When nothing is likely enough, the decision still lists what search found closest (``closest``),
    while ``answers`` stays empty as before."""
    deflector = _deflector(shared_kb)
    monkeypatch.setattr(deflector, "thresholds", lambda *a, **k: {"answer": 2.0, "suggest": 2.0})
    d = shared_kb.ask("i forgot my password")
    assert d.action is Action.ESCALATE
    assert d.answers == []
    assert d.closest and d.closest[0].id == "password" and d.closest[0].snippet
    assert d.to_dict()["closest"][0]["id"] == "password"
    monkeypatch.undo()
    answered = shared_kb.ask("i forgot my password")
    assert answered.action is not Action.ESCALATE and answered.closest == []


def test_answer_threshold_moves_a_bounded_step_between_calibrations(tmp_path: Path) -> None:
    """A refit's answer threshold stays within ``deflect.max_threshold_step`` of the one it replaces."""
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        first = Calibration.load(kb.generation_path)
        assert first is not None and first.anchor == {}  # nothing to hold on to at the first build
        before = Deflector(kb.generation_path, None, first).thresholds(kb.settings)["answer"]
        kb.rebuild(thread_docs()[:7])  # another archive: its own threshold, held near the old one
        second = Calibration.load(kb.generation_path)
        assert second is not None and second.anchor["all"] == pytest.approx(before)
        after = Deflector(kb.generation_path, None, second).thresholds(kb.settings)["answer"]
        assert abs(after - before) <= kb.settings.deflect.max_threshold_step + 1e-9


def test_threshold_step_clamps_and_can_be_lifted(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        cal = Calibration.load(kb.generation_path)
        free = Deflector(kb.generation_path, None, cal).thresholds(kb.settings)["answer"]
        anchored = Calibration(**{**{k: v for k, v in vars(cal).items() if not k.startswith("_")},
                                  "anchor": {"all": free - 0.3, "0": free - 0.3, "1": free - 0.3}})
        clamped = Deflector(kb.generation_path, None, anchored).thresholds(kb.settings)["answer"]
        assert clamped == pytest.approx(max(free - 0.3 + kb.settings.deflect.max_threshold_step, 0.05), abs=1e-4)
        kb.settings.deflect.max_threshold_step = 1.0
        assert Deflector(kb.generation_path, None, anchored).thresholds(kb.settings)["answer"] == pytest.approx(free)
        assert anchor_thresholds(None, kb.settings) == {} and anchor_thresholds(Calibration.prior(), kb.settings) == {}


class _TitleEngine:
    """The two engine calls `specific_titles` makes, over a list of titles."""

    def __init__(self, titles: list[str]) -> None:
        from kbsearch.index import analyze

        self.terms = [set(analyze(t)) for t in titles]

    def doc_count(self) -> int:
        return len(self.terms)

    def doc_frequencies(self, terms: list[str]) -> dict[str, dict[str, int]]:
        return {t: {"title": sum(t in ts for ts in self.terms)} for t in terms}


def test_generic_headings_are_no_pseudo_questions() -> None:
    """Headings that repeat, have one word, or only common words are left out of the sampled
    pseudo-questions; a specific heading is kept."""
    from kbsearch.deflect._pages import specific_titles

    index = ["Description"] * 30 + ["Examples of usage"] * 25 + ["Resizing an ext4 volume online"]
    engine = _TitleEngine(index)
    docs = [Document(id=str(i), kind="page", title=t, text="x") for i, t in enumerate(
        ["Description", "Navigation", "31.6. Restrictions", "Examples of usage", "Resizing an ext4 volume online",
         "Twice here", "Twice here"])]
    assert specific_titles(engine, docs) == [False, False, False, False, True, False, False]


def test_uncovered_scorer_reads_search_order() -> None:
    """Search's order of the hits is a feature of the uncovered scorer: with nothing else to tell two
    hits apart, the first one search found scores higher; a scorer without it still applies."""
    import numpy as np

    from kbsearch.deflect._features import FEATURES
    from kbsearch.deflect._pages import ORDER_COLUMNS, order_features

    class Hit:
        def __init__(self, bm25: float) -> None:
            self.bm25 = bm25

    order = order_features([Hit(4.0), Hit(2.0)])
    assert order.shape == (2, ORDER_COLUMNS) and order[0, 0] > order[1, 0] and order[0, 1] == 1.0
    n = len(FEATURES) + ORDER_COLUMNS
    cal = Calibration(mean=[0.0] * len(FEATURES), scale=[1.0] * len(FEATURES), coef=[0.0] * len(FEATURES),
                      intercept=0.0, iso_x=[], iso_y=[],
                      uncovered_scorer=[[0.0] * n, [1.0] * n, [0.0] * len(FEATURES) + [1.0, 1.0], [0.0]])
    feats = np.zeros((2, len(FEATURES)))
    p = cal.uncovered_prob(feats, order)
    assert p[0] > p[1]
    assert np.allclose(cal.uncovered_prob(feats), 0.5)


def _copy_plan(kb: KnowledgeBase, pages: list[Document], held_out: str):
    """A calibration split of ``pages`` asked for by headings (a sample of a large index), ``held_out``
    absent from search, with the split's answer model and the index's real searcher."""
    from kbsearch.config import DeflectConfig
    from kbsearch.deflect._features import doc_body
    from kbsearch.deflect._model import AnswerModel
    from kbsearch.deflect._pages import SearchPlan
    from kbsearch.deflect._vectors import Vectorizer

    cfg = DeflectConfig()
    train = [p for p in pages if p.id != held_out]
    vec = Vectorizer.fit([p.title for p in train] + [doc_body(p, cfg.body_chars) for p in train])
    model = AnswerModel.fit(train, body_chars=cfg.body_chars, min_phrasings=cfg.min_phrasings,
                            max_classes=cfg.max_classes, covers_all=True, vec=vec, classifier=False)
    assert model is not None
    plan = SearchPlan([], set(), set(), frozenset({held_out}), {p.id: p for p in train}, k=5, every=True)
    return model, plan, kb._current().searcher


def _decide_holdout(model, plan, searcher, query):
    import numpy as np

    scores = model.scores([query.text])
    allowed = plan.allowed(model)
    cands = model.candidates(scores, 0, 5, allowed)
    feats = model.features(scores, 0, cands, allowed)
    row = {k: v[0] for k, v in scores.items()}
    labels = np.zeros(len(cands), dtype=int)
    feats, labels, _uncovered, _order = plan.with_search_hits(model, searcher, query, row, feats, labels, cands, 1500)
    return feats, labels


def test_a_held_out_section_whose_heading_is_elsewhere_is_answered_by_that_copy(tmp_path: Path) -> None:
    """A large index's sampled section held out of calibration must not be answered, unless another
    section has its heading (another version or translation of the manual): then that copy is a
    right answer, as it is for the sections that must be found, and not a wrong one on the curve."""
    from kbsearch.deflect._holdout import HoldoutQuery

    sockets = [Document(id=f"socket-{v}", kind="page", title="Socket address families",
                        text=f"Python {v}: AF_INET takes a (host, port) pair, AF_UNIX a file system path.",
                        url=f"https://docs.example/{v}/library/socket.html#families") for v in ("3.11", "3.12")]
    pages = _pages() + sockets
    with make_kb(tmp_path / "kb", pages) as kb:
        model, plan, searcher = _copy_plan(kb, pages, held_out="socket-3.11")
        query = HoldoutQuery("Socket families address hotel", None, "thread", "Socket address families")
        feats, labels = _decide_holdout(model, plan, searcher, query)
        assert query.answer == "socket-3.12" and query.kind == "pseudo"
        # The copy is labelled right wherever it stands among the candidates; nothing else is.
        assert labels.sum() == 1 and len(labels) == len(feats)
        # Without a copy (the 3.12 section gone too), the held-out section stays unanswerable.
        model, plan, searcher = _copy_plan(kb, [p for p in pages if p.id != "socket-3.12"], held_out="socket-3.11")
        query = HoldoutQuery("Socket families address hotel", None, "thread", "Socket address families")
        plan.absent = frozenset({"socket-3.11", "socket-3.12"})
        feats, labels = _decide_holdout(model, plan, searcher, query)
        assert query.answer is None and labels.sum() == 0


@needs_encoder
def test_a_large_index_scorer_of_pages_leaves_out_what_headings_match_by_construction(tmp_path: Path) -> None:
    """Calibrated on a large index's headings, the scorer of pages outside the model does not read
    the character n-grams the question shares with the heading (high for pseudo-questions made of
    the heading's words, not for real rephrasings): the encoder judges how close they are."""
    from kbsearch.deflect._calibrate import HEADING_BIASED
    from kbsearch.deflect._features import FEATURES

    more = [("Renewing a parking permit", "Parking permits are renewed every January at the facilities desk."),
            ("Requesting a second monitor", "Second monitors are ordered through the IT shop with manager approval."),
            ("Reporting a broken window", "Broken windows are reported to building maintenance by phone."),
            ("Claiming overtime hours", "Overtime is entered in the time sheet and approved by your manager."),
            ("Changing your bank account for salary", "Payroll needs the new account number by the 15th."),
            ("Joining the company choir", "The choir rehearses on Thursdays in the canteen."),
            ("Borrowing a projector for an event", "Projectors are lent by the media desk for up to a week."),
            ("Updating your emergency contact", "Emergency contacts are kept in the HR self-service profile."),
            ("Ordering a standing desk", "Standing desks need an ergonomics assessment first."),
            ("Printing large posters", "The plotter on floor 2 prints posters up to A0."),
            ("Locking your screen when away", "Press Windows and L; screens lock by themselves after five minutes."),
            ("Finding the first aid kit", "First aid kits hang next to every fire extinguisher.")]
    pages = _pages() + [Document(id=f"more-{j}", kind="page", title=t, text=x, url=f"https://intranet.example/more/{j}")
                        for j, (t, x) in enumerate(more)]
    with make_kb(tmp_path / "kb", pages, **{"deflect.max_model_docs": 12, "deflect.calibration_pages": 8}) as kb:
        cal = Calibration.load(kb.generation_path)
        assert cal is not None and cal.uncovered_scorer
        assert cal.report["uncovered_scorer_ignores"] == list(HEADING_BIASED)
        coef = cal.uncovered_scorer[2]
        assert all(coef[FEATURES.index(n)] == 0.0 for n in HEADING_BIASED)
        assert coef[FEATURES.index("semantic_margin")] != 0.0
    # An index the model covers calibrates its uncovered scorer on real held-out phrasings: all features.
    with make_kb(tmp_path / "small", thread_docs()) as kb:
        cal = Calibration.load(kb.generation_path)
        assert cal is not None and "uncovered_scorer_ignores" not in cal.report and cal.uncovered_scorer
        assert cal.uncovered_scorer[2][FEATURES.index("phrasing_match")] != 0.0
