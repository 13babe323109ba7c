"""Calibration from the archive alone: stored per generation, redone on rebuild, driven by the target."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest

from kbsearch import KnowledgeBase
from kbsearch.deflect._calibration import Calibration, deflection_at, low_deflection_hint
from kbsearch.deflect._curve import centred_knots, confidence_map, threshold_by_kind, threshold_for
from kbsearch.deflect._holdout import make_holdout, perturb
from kbsearch.config import DeflectConfig
from kbsearch.deflect import Action

from .conftest import make_kb, thread_docs


def _calibration(kb: KnowledgeBase) -> dict:
    return json.loads((kb.generation_path / "deflect" / "calibration.json").read_text())


def test_calibration_is_stored_with_the_generation_and_redone_on_rebuild(kb: KnowledgeBase) -> None:
    first_gen = kb.generation_path
    report = _calibration(kb)["report"]
    assert report["method"] == "holdout"
    assert report["holdout_answerable"] > 0 and report["holdout_unanswerable"] > 0
    assert (first_gen / "deflect" / "model.json").is_file()
    build = kb.rebuild(thread_docs()[:6])
    assert build.steps["deflect"]["documents"] == 6
    assert kb.generation_path != first_gen
    assert (kb.generation_path / "deflect" / "calibration.json").is_file()
    assert "badge" not in kb.ask("I lost my access badge").ranked


def test_operator_target_precision_moves_the_threshold(tmp_path: Path) -> None:
    loose = make_kb(tmp_path / "loose", thread_docs(), **{"deflect.target_precision": 0.5})
    strict = make_kb(tmp_path / "strict", thread_docs(), **{"deflect.target_precision": 0.99})
    with loose, strict:
        q = "printer jam"
        t_loose = loose.ask(q).thresholds["answer"]
        t_strict = strict.ask(q).thresholds["answer"]
        assert strict.ask(q).thresholds["target_precision"] == 0.99
        assert loose.ask(q).thresholds["target_precision"] == 0.5
        # Both archives are the same, so the hold-out curves are too; on it, some unanswerable
        # hold-outs score high, so 99% precision needs a higher threshold than 50% does ...
        assert t_strict > t_loose
        curve = Calibration.load(strict.generation_path)
        assert curve is not None
        conf, ok, w = np.asarray(curve.curve_conf), np.asarray(curve.curve_ok), np.asarray(curve.curve_w)
        assert _precision_at(conf, ok, w, t_loose) < 0.99
        # ... and each threshold answers hold-outs at (at least) its target precision, yet answers some.
        for threshold, target in ((t_loose, 0.5), (t_strict, 0.99)):
            assert (conf >= threshold).any()
            assert _precision_at(conf, ok, w, threshold) >= target
        assert deflection_at(curve, 0.5, 0.0) > deflection_at(curve, 0.99, 0.0) > 0.0


def _precision_at(conf: np.ndarray, ok: np.ndarray, w: np.ndarray, threshold: float) -> float:
    """Weighted precision of the hold-out questions answered at ``threshold``."""
    answered = conf >= threshold
    return float((ok * w)[answered].sum() / w[answered].sum())


def test_threshold_for_reaches_the_target() -> None:
    conf = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    ok = np.array([1, 1, 1, 0, 1, 0])
    w = np.ones(6)
    # Halfway between the lowest hold-out answered and the highest one left out.
    assert threshold_for(conf, ok, w, 1.0) == pytest.approx(0.75)
    assert threshold_for(conf, ok, w, 0.8) == pytest.approx(0.55)
    assert threshold_for(conf, ok, w, 0.5) == 0.5  # every hold-out answered: at the lowest
    assert threshold_for(np.array([0.4]), np.array([0]), np.ones(1), 0.5) > 1.0  # never answer


def test_a_gap_in_the_holdouts_puts_the_threshold_in_its_middle() -> None:
    """A small archive's hold-outs at 1 (right) and 0 (escalated): a question at 0.9 is answered."""
    conf = np.array([1.0] * 28 + [0.0] * 20)
    ok = np.array([1] * 28 + [1] * 8 + [0] * 12)
    threshold = threshold_for(conf, ok, np.ones(conf.size), 0.9)
    assert threshold == pytest.approx(0.5)
    assert 0.0 < threshold < 0.9


def _isotonic(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, labels (right with probability p²), weights and isotonic fit of ``n`` hold-outs."""
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(seed)
    p = rng.random(n)
    ok = (rng.random(n) < p ** 2).astype(int)
    w = np.ones(n)
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, ok, sample_weight=w).predict(p)
    return p, ok, w, fitted


def test_centred_map_keeps_the_order_isotonic_pools() -> None:
    p, _ok, w, fitted = _isotonic(seed=0)
    xs, ys = centred_knots(p, w, fitted)
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) >= 0)
    assert min(ys) >= 0.0 and max(ys) <= 1.0
    # One knot per isotonic block, at the block's mean probability, with the block's value.
    blocks = np.unique(fitted)
    assert len(xs) == len(blocks) + 2
    for x, y, value in zip(xs[1:-1], ys[1:-1], blocks):
        assert y == pytest.approx(value, abs=1e-6)
        assert x == pytest.approx(p[fitted == value].mean(), abs=1e-6)
    # Isotonic gives few distinct confidences; the centred map keeps probabilities apart between
    # its first and last centre.
    conf = np.interp(p, xs, ys)
    inner = (p > xs[1]) & (p < xs[-2])
    assert len(np.unique(fitted)) < 50
    assert len(np.unique(conf[inner])) == len(np.unique(p[inner]))


@pytest.mark.parametrize("target", [0.7, 0.8, 0.9], ids=lambda t: f"target{t}")
def test_a_centred_map_answers_at_least_as_much_at_the_same_precision(target: float) -> None:
    answered_step, answered_centred = [], []
    for seed in range(5):
        p, ok, w, fitted = _isotonic(seed)
        xs, ys = centred_knots(p, w, fitted)
        conf = np.interp(p, xs, ys)
        t_step, t_centred = threshold_for(fitted, ok, w, target), threshold_for(conf, ok, w, target)
        assert ok[conf >= t_centred].mean() >= target
        answered_step.append(float((fitted >= t_step).mean()))
        answered_centred.append(float((conf >= t_centred).mean()))
    # A step threshold can only fall between whole blocks; the centred one anywhere in the order.
    assert all(c >= s for c, s in zip(answered_centred, answered_step))
    assert sum(answered_centred) > sum(answered_step)


def test_centred_knots_of_degenerate_curves() -> None:
    assert centred_knots(np.zeros(0), np.zeros(0), np.zeros(0)) == ([0.0, 1.0], [0.0, 1.0])
    xs, ys = centred_knots(np.array([0.5]), np.array([1.0]), np.array([1.0]))
    assert np.interp(0.5, xs, ys) == 1.0 and np.interp(0.1, xs, ys) == 1.0
    xs, ys = centred_knots(np.array([0.2, 0.5]), np.ones(2), np.array([0.0, 1.0]))
    assert (xs, ys) == ([0.2, 0.5], [0.0, 1.0])


def test_hold_outs_without_evidence_sit_at_confidence_zero_and_do_not_shape_the_map() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 400)
    ok = (rng.uniform(0, 1, 400) < p).astype(int)
    w = np.ones(400)
    evidence = np.ones(400, dtype=bool)
    # High probabilities, all wrong, and no evidence: escalated at decision time whatever they score.
    p_none, ok_none = np.full(60, 0.95), np.zeros(60, dtype=int)
    xs, ys, conf = confidence_map(np.r_[p, p_none], np.r_[ok, ok_none], np.ones(460),
                                  np.r_[evidence, np.zeros(60, dtype=bool)])
    assert (conf[400:] == 0.0).all() and (conf[:400] > 0).any()
    assert (xs, ys) == tuple(centred_knots(p, w, _iso_fit(p, ok, w)))  # as if they were not there
    # Counted in the map, the same points would have dragged the top of it down.
    xs_all, ys_all, _ = confidence_map(np.r_[p, p_none], np.r_[ok, ok_none], np.ones(460), np.ones(460, dtype=bool))
    assert np.interp(0.95, xs_all, ys_all) < np.interp(0.95, xs, ys) - 0.2
    # No evidence anywhere (a tiny archive): the map is fitted on everything rather than on nothing.
    xs_none, ys_none, conf_none = confidence_map(p, ok, w, np.zeros(400, dtype=bool))
    assert (xs_none, ys_none) == tuple(centred_knots(p, w, _iso_fit(p, ok, w))) and (conf_none == 0).all()


def _iso_fit(p: np.ndarray, ok: np.ndarray, w: np.ndarray) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    return iso.fit(p, ok, sample_weight=w).predict(p)


def _flat_curve(right: float, n: int = 400) -> Calibration:
    """A hold-out curve whose answerable questions are right with probability ``right`` at every
    confidence (a hard archive), beside unanswerable ones that mostly score low."""
    rng = np.random.default_rng(5)
    conf = np.r_[rng.uniform(0.05, 1, n), rng.uniform(0.05, 0.5, n // 4)]
    ok = np.r_[(rng.uniform(0, 1, n) < right).astype(int), np.zeros(n // 4, dtype=int)]
    kinds = ["phrasing"] * n + ["thread"] * (n // 4)
    w = np.r_[np.full(n, 0.8 / n), np.full(n // 4, 0.2 / (n // 4))]
    cal = Calibration(mean=[], scale=[], coef=[], intercept=0.0, iso_x=[], iso_y=[], curve_conf=conf.tolist(),
                      curve_ok=ok.tolist(), curve_w=w.tolist(), curve_kind=kinds, curve_segment=[1] * len(conf))
    cal.report["holdout_deflection"] = deflection_at(cal, 0.85, 0.05)
    return cal


def test_a_target_the_hold_outs_cannot_reach_comes_with_what_lower_targets_would_answer() -> None:
    cfg = DeflectConfig()
    hard = _flat_curve(right=0.7)
    assert hard.report["holdout_deflection"] < 0.05
    hint = low_deflection_hint(hard, cfg)
    assert hint is not None and list(hint) == ["0.80", "0.70", "0.60"]
    # Answering about 70 % right is within reach of a 0.60 or 0.70 target, not of 0.80.
    assert hint["0.80"] < 0.05 and hint["0.60"] > 0.5 and hint["0.70"] <= hint["0.60"]
    easy = _flat_curve(right=0.97)
    assert easy.report["holdout_deflection"] > 0.5 and low_deflection_hint(easy, cfg) is None


def test_holdout_never_leaks_held_out_phrasings() -> None:
    docs = thread_docs()
    train, queries = make_holdout(docs, DeflectConfig())
    kept = {d.id: set(d.questions) for d in train}
    held_threads = {d.id for d in docs} - set(kept)
    assert held_threads, "some whole threads are held out"
    for q in queries:
        if q.answer is None:
            continue
        assert q.answer in kept
        if q.kind == "phrasing":
            assert q.text not in kept[q.answer]
    assert {q.kind for q in queries if q.answer is None} == {"thread"}


def test_a_forum_thread_holds_out_its_body_as_a_real_question() -> None:
    """A thread with a subject, one body question and an answer: the body, held out, is a real
    question; the thread keeps its subject and answer, and the body never stays in training."""
    from kbsearch import Document

    docs = [Document(id=f"t{i}", kind="answer", title=f"subject {i}",
                     questions=[f"a long body that asks question number {i} at length"], text=f"answer {i}")
            for i in range(60)]
    train, queries = make_holdout(docs, DeflectConfig())
    kept = {d.id: d for d in train}
    bodies = [q for q in queries if q.kind == "phrasing"]
    assert 10 <= len(bodies) <= 40  # about half of the threads that stay
    for q in bodies:
        doc = kept[q.answer]
        assert q.text == f"a long body that asks question number {q.answer[1:]} at length"
        assert doc.questions == () and doc.title == f"subject {q.answer[1:]}" and doc.text
    others = {q.kind for q in queries if q.answer is not None} - {"phrasing"}
    assert others <= {"title", "pseudo"} and others, "the other threads keep the simulated kinds"
    # A body stored twice (other spacing) leaves with both copies.
    twice = [d.replace(questions=(d.questions[0], f" {d.questions[0]}  ")) for d in docs]
    train, queries = make_holdout(twice, DeflectConfig())
    kept = {d.id: d for d in train}
    held = [q for q in queries if q.kind == "phrasing"]
    assert held and all(kept[q.answer].questions == () for q in held)
    # A "body" that is the subject again (other case, other spacing) would find itself: not held out.
    echoes = [d.replace(questions=(f"  SUBJECT {d.id[1:]} ",)) for d in docs]
    _train, queries = make_holdout(echoes, DeflectConfig())
    assert not [q for q in queries if q.kind == "phrasing"]


def test_perturb_keeps_a_subset_of_words_in_order() -> None:
    rng = random.Random(1)
    text = "how do I connect to the company vpn from a hotel room"
    out = perturb(text, rng).split()
    words = text.split()
    assert 2 <= len(out) <= len(words)
    it = iter(words)
    assert all(w in it for w in out)


def test_feedback_is_logged_and_feeds_the_next_calibration(kb: KnowledgeBase) -> None:
    d = kb.ask("i forgot my password")
    assert d.action is Action.ANSWER
    rec = kb.feedback(d.id, True, user="bob", comment="thanks")
    assert rec.helpful and rec.decision_id == d.id
    other = kb.ask("printer jam")
    kb.feedback(other.id, False, escalated=True)
    assert [f.helpful for f in kb.usage.feedback()] == [True, False]
    build = kb.rebuild(kb.documents())
    assert build.steps["deflect"]["feedback_examples"] == 2


def _curve(kind_rows: dict[str, list[tuple[float, int]]]) -> tuple[np.ndarray, ...]:
    conf, ok, kinds = [], [], []
    for kind, rows in kind_rows.items():
        for c, k in rows:
            conf.append(c)
            ok.append(k)
            kinds.append(kind)
    return np.array(conf), np.array(ok), np.ones(len(conf)), np.array(kinds)


def test_every_kind_of_holdout_must_reach_the_target() -> None:
    """A kind of hold-out that is right only at high confidence raises the threshold for all."""
    easy = [(0.9 - i * 0.01, 1) for i in range(40)]                   # right down to 0.51
    hard = [(0.9 - i * 0.01, int(i < 20)) for i in range(40)]         # wrong below 0.71
    conf, ok, w, kinds = _curve({"phrasing": easy, "title": hard})
    pooled = threshold_for(conf, ok, w, 0.9)
    by_kind = threshold_by_kind(conf, ok, w, kinds, 0.9)
    assert by_kind > pooled
    only_easy = threshold_by_kind(*_curve({"phrasing": easy})[:3], np.array(["phrasing"] * 40), 0.9)
    assert only_easy == min(c for c, _ in easy)


def test_simulated_holdouts_must_clear_a_margin_real_ones_do_not() -> None:
    rows = [(1.0 - i * 0.01, int(i % 10 != 9)) for i in range(60)]  # 90% right at every depth
    for kind in ("title", "phrasing"):
        conf, ok, w, kinds = _curve({kind: rows})
        plain = threshold_by_kind(conf, ok, w, kinds, 0.88)
        strict = threshold_by_kind(conf, ok, w, kinds, 0.88, simulated_margin=0.05)
        if kind == "phrasing":
            assert strict == plain          # real rephrasings: the operator's target as it is
        else:
            assert strict > plain           # simulated: 0.93 is not reached as deep as 0.88


def test_calibration_threshold_uses_the_kinds_it_stored(kb: KnowledgeBase) -> None:
    cal = Calibration.load(kb.generation_path)
    assert cal is not None and len(cal.curve_kind) == len(cal.curve_conf)
    assert set(cal.curve_kind) == {"phrasing", "thread"}  # every thread has real rephrasings
    # Real rephrasings need the target itself: the margin for simulated questions changes nothing.
    assert cal.threshold(0.9, simulated_margin=0.1) == cal.threshold(0.9)
    # The same curve stored with its answerable hold-outs as simulated ones (titles): now they must
    # reach 0.9 + 0.1, which this curve only does at a higher threshold.
    path = kb.generation_path / "deflect" / "calibration.json"
    data = json.loads(path.read_text())
    data["curve_kind"] = ["title" if k == "phrasing" else k for k in data["curve_kind"]]
    path.write_text(json.dumps(data))
    relabelled = Calibration.load(kb.generation_path)
    assert relabelled is not None and set(relabelled.curve_kind) == {"title", "thread"}
    assert relabelled.threshold(0.9) == cal.threshold(0.9)
    assert relabelled.threshold(0.9, simulated_margin=0.1) > relabelled.threshold(0.9)


def test_a_kind_that_never_reaches_the_target_does_not_block_the_others() -> None:
    good = [(0.9 - i * 0.01, 1) for i in range(40)]
    hopeless = [(0.5 - i * 0.01, 0) for i in range(40)]
    conf, ok, w, kinds = _curve({"phrasing": good, "title": hopeless})
    tau = threshold_by_kind(conf, ok, w, kinds, 0.85)
    assert tau <= 1.0                                   # still answers ...
    assert tau > max(c for c, _ in hopeless)           # ... but none of the hopeless kind's questions


def _segmented(rows: list[tuple[str, int, float, int]]) -> Calibration:
    """A calibration whose curve is (kind, segment, confidence, right) rows."""
    cal = Calibration.prior()
    cal.curve_kind = [k for k, _s, _c, _o in rows]
    cal.curve_segment = [s for _k, s, _c, _o in rows]
    cal.curve_conf = [c for _k, _s, c, _o in rows]
    cal.curve_ok = [o for *_rest, o in rows]
    cal.curve_w = [1.0] * len(rows)
    return cal


def test_each_segment_gets_the_threshold_its_own_holdouts_need() -> None:
    """Threads with phrasings of their own are held to their rephrasings, the others to theirs."""
    phrased = [("phrasing", 1, 0.9 - i * 0.01, 1) for i in range(40)]            # right down to 0.51
    unphrased = [("pseudo", 0, 0.9 - i * 0.01, int(i < 20)) for i in range(40)]  # wrong below 0.71
    threads = [("thread", i % 2, 0.3, 0) for i in range(20)]
    cal = _segmented(phrased + unphrased + threads)
    t_phrased, t_unphrased, t_all = cal.threshold(0.9, 0.0, 1), cal.threshold(0.9, 0.0, 0), cal.threshold(0.9)
    # Halfway between the lowest hold-out answered and the next one down (`threshold_for`).
    assert t_phrased == pytest.approx((min(c for _k, _s, c, _o in phrased) + 0.3) / 2)
    assert t_unphrased == pytest.approx(0.685)      # 20 right of the 22 down to 0.69: 0.91
    assert t_all == t_unphrased                     # without a segment: every kind must reach the target
    # A segment with too few answerable hold-outs of its own uses the threshold of all of them.
    few = _segmented(phrased[:10] + unphrased + threads)
    assert few.threshold(0.9, 0.0, 1) == few.threshold(0.9)


def test_a_segment_turns_away_unanswerable_holdouts_whose_best_was_in_the_other_segment() -> None:
    """An unanswerable hold-out answered best by a page still had a close phrased thread: the phrased
    threshold must turn it away too, or a real question just like it gets that thread's answer."""
    phrased = [("phrasing", 1, 0.9 - i * 0.01, 1) for i in range(40)]  # right down to 0.51
    unphrased = [("pseudo", 0, 0.9 - i * 0.01, 1) for i in range(40)]
    threads = [("thread", 0, 0.3, 0) for _ in range(20)]             # best candidate: unphrased
    cal = _segmented(phrased + unphrased + threads)
    assert cal.threshold(0.9, 0.0, 1) == pytest.approx(0.51)        # no unanswerable hold-out of its own
    unphrased_before = cal.threshold(0.9, 0.0, 0)
    cal.rival_conf, cal.rival_segment, cal.rival_w = [0.8] * 20, [1] * 20, [1.0] * 20
    assert cal.threshold(0.9, 0.0, 1) == pytest.approx(0.805)       # above every rival
    assert cal.threshold(0.9, 0.0, 0) == unphrased_before           # rivals count in their own segment only
    # Re-weighted like the other unanswerable hold-outs: fewer unanswerable questions, lower threshold.
    assert cal.threshold(0.9, 0.0, 1, unanswerable_share=0.02) < 0.805


def test_rivals_are_stored_for_a_mixed_archive(tmp_path: Path) -> None:
    with make_kb(tmp_path / "kb", thread_docs() + _unphrased_docs(40)) as kb:
        cal = _calibration(kb)
        assert len(cal["rival_conf"]) == len(cal["rival_segment"]) == len(cal["rival_w"]) > 0
        assert set(cal["rival_segment"]) <= {0, 1}
        assert all(0.0 <= c <= 1.0 for c in cal["rival_conf"])
        assert Calibration.load(kb.generation_path).rival_segment == cal["rival_segment"]


def _unphrased_docs(n: int) -> list:
    from kbsearch import Document

    things = ["monitor", "headset", "laptop dock", "label printer", "scanner", "projector", "webcam", "keyboard",
              "desk phone", "tablet", "badge reader", "conference speaker", "shredder", "plotter", "router",
              "barcode gun", "smart board", "coffee machine", "water cooler", "standing desk"]
    actions = [("replace the battery of", "Order a battery in the shop, open the back cover and swap it."),
               ("reset", "Hold the power button for ten seconds until the light blinks twice.")]
    docs = []
    for i in range(n):
        thing = things[i % len(things)]
        verb, answer = actions[(i // len(things)) % len(actions)]
        docs.append(Document(id=f"page{i}", title=f"How do I {verb} the {thing}?", kind="page",
                             text=f"{answer} This applies to every {thing} of model {i} in the building.",
                             url=f"https://intranet.example/pages/{i}"))
    return docs


def test_mixed_archive_decisions_use_their_segment_threshold(tmp_path: Path) -> None:
    from kbsearch.config import Settings
    from kbsearch.deflect import Deflector

    with make_kb(tmp_path / "kb", thread_docs() + _unphrased_docs(40)) as kb:
        cal = _calibration(kb)
        assert set(cal["curve_segment"]) == {0, 1}
        assert set(cal["report"]["answer_thresholds"]) == {"phrased", "unphrased"}
        deflector = Deflector.load(kb.generation_path)
        settings: Settings = kb.settings
        phrased = kb.ask("paper stuck in the printer tray")
        assert phrased.ranked[0] == "printer"
        assert phrased.thresholds["answer"] == deflector.thresholds(settings, 1)["answer"]
        unphrased = kb.ask("how to reset the projector")
        assert unphrased.ranked[0].startswith("page")
        assert unphrased.thresholds["answer"] == deflector.thresholds(settings, 0)["answer"]


def test_unanswerable_share_is_estimated_from_unlabelled_confidences() -> None:
    """EM on real questions' confidences recovers how many of them were unanswerable."""
    from kbsearch.deflect._calibration import MIN_ASKS_FOR_ESTIMATE, estimate_unanswerable_share

    rng = np.random.default_rng(0)
    answerable = list(np.clip(rng.normal(0.85, 0.1, 400), 0, 1))
    unanswerable = list(np.clip(rng.normal(0.2, 0.12, 400), 0, 1))
    cal = _segmented([("phrasing", 1, c, 1) for c in answerable] + [("thread", 1, c, 0) for c in unanswerable])
    for share in (0.1, 0.5, 0.7):
        n_un = int(600 * share)
        asked = list(rng.choice(answerable, 600 - n_un)) + list(rng.choice(unanswerable, n_un))
        assert estimate_unanswerable_share(cal, asked) == pytest.approx(share, abs=0.06)
    assert estimate_unanswerable_share(cal, answerable[:MIN_ASKS_FOR_ESTIMATE - 1]) is None


def test_a_larger_unanswerable_share_raises_the_threshold() -> None:
    rows = [("phrasing", 1, 0.95 - i * 0.01, int(i % 7 != 6)) for i in range(60)]
    rows += [("thread", 1, 0.9 - i * 0.02, 0) for i in range(40)]
    cal = _segmented(rows)
    base = cal.threshold(0.85)
    assert cal.threshold(0.85, unanswerable_share=cal.unanswerable_share) == base
    assert cal.threshold(0.85, unanswerable_share=0.6) > base
    assert cal.threshold(0.85, unanswerable_share=0.05) <= base


#: Questions about nothing the archive holds (none of their words occurs in it).
OFF_TOPIC = [f"{animal} {verb} {place}" for animal in ("zebra", "giraffe", "walrus", "koala", "lynx", "otter")
             for verb in ("migration", "diet", "lifespan", "habitat", "predators")
             for place in ("serengeti", "arctic", "amazon", "tasmania")]

@pytest.mark.parametrize("setting", [None, True, False], ids=["default", "learning-on", "learning-off"])
def test_rebuild_learns_the_unanswerable_share_from_questions_asked(tmp_path: Path, setting: bool | None) -> None:
    """People asking mostly what the archive does not hold raise the answer threshold at the next
    rebuild (by default; unless the operator turned learning off); the estimate is in the calibration report."""
    learn = True if setting is None else setting
    options = {} if setting is None else {"deflect.learn_unanswerable_share": setting}
    with make_kb(tmp_path / "kb", thread_docs(), **options) as kb:
        before = kb.ask("paper stuck in the printer tray").thresholds
        assert before["unanswerable_share"] == 0.2
        for q in OFF_TOPIC:
            kb.ask(q)
        kb.rebuild(thread_docs())
        estimate = _calibration(kb)["report"]["unanswerable_share_estimate"]
        assert estimate > 0.6
        after = kb.ask("paper stuck in the printer tray").thresholds
        if learn:
            assert after["unanswerable_share"] == pytest.approx(min(estimate, 0.8), abs=1e-4)
            assert after["answer"] >= before["answer"]
        else:
            assert after["unanswerable_share"] == 0.2
        # The operator sees both in the deflection report.
        from kbsearch.ops.report import render_text

        report = kb.report(days=1)
        share = report.to_dict()["unanswerable_share"]
        assert share["assumed"] == 0.2 and share["estimated"] == estimate and share["learning"] is learn
        assert share["used"] == after["unanswerable_share"] and share["estimated_from_asks"] == len(OFF_TOPIC) + 1
        text = render_text(report)
        assert f"estimated from the last {len(OFF_TOPIC) + 1} questions asked" in text
        assert ("deciding with" in text) is learn and ("or learn it" in text) is not learn


def test_term_index_of_an_archive_without_content_words_survives_saving(tmp_path: Path) -> None:
    """An archive of nothing but question words falls back to plain words; a stored model must read
    questions the same way after loading."""
    from kbsearch.deflect._vectors import TermIndex

    fitted = TermIndex.fit(["how do I", "what is my", "why"])
    fitted.save(tmp_path, "terms")
    loaded = TermIndex.load(tmp_path, "terms")
    q = ["how do I"]
    assert fitted.query(q).nnz == 3 and (fitted.query(q) != loaded.query(q)).nnz == 0


def _stored_model(kb: KnowledgeBase) -> dict[str, object]:
    """The stored answer model and calibration, without the calibration's timings."""
    folder = kb.generation_path / "deflect"
    out: dict[str, object] = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "calibration.json"}
    calibration = json.loads((folder / "calibration.json").read_text())
    calibration["report"].pop("seconds")
    out["calibration.json"] = calibration
    return out


QUESTIONS = ["my vpn will not connect from the hotel", "paper jam in the printer", "zebra migration routes"]


@pytest.mark.parametrize("worker", ["starts", "cannot-start"])
def test_answer_model_fitted_in_a_worker_is_the_one_fitted_here(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch, worker: str) -> None:
    """From `parallel_fit_phrasings` phrasings on, the answering model is fitted in a worker process
    while the calibration runs; what is stored, and so every decision, is what an in-process fit gives.
    Where no worker can start, the model is fitted in-process, with a warning."""
    with make_kb(tmp_path / "here", thread_docs(), **{"deflect.parallel_fit_phrasings": -1}) as here:
        expected = _stored_model(here)
        decided = [d.to_dict() for d in here.ask_many(QUESTIONS)]
    if worker == "cannot-start":
        import kbsearch._workers

        def no_processes(workers: int) -> None:
            raise OSError("no processes here")
        monkeypatch.setattr(kbsearch._workers, "process_pool", no_processes)
    with caplog.at_level(logging.INFO, logger="kbsearch.deflect"):
        with make_kb(tmp_path / "worker", thread_docs(), **{"deflect.parallel_fit_phrasings": 0}) as there:
            assert _stored_model(there) == expected
            again = [d.to_dict() for d in there.ask_many(QUESTIONS)]
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("kbsearch.deflect")]
    assert any("in a worker process" in m for m in messages)
    fell_back = [m for m in messages if "in this process" in m or "fitting here" in m]
    assert bool(fell_back) is (worker == "cannot-start")
    for d in decided + again:
        for key in ("id", "generation", "seconds"):
            d.pop(key)
    assert again == decided


def test_answer_model_survives_pickling(kb: KnowledgeBase) -> None:
    """A model crosses from the worker process by pickle: it scores the same on the other side."""
    import pickle

    from kbsearch.deflect import Deflector

    model = Deflector.load(kb.generation_path).model
    assert model is not None
    copy = pickle.loads(pickle.dumps(model))
    a, b = model.scores(QUESTIONS), copy.scores(QUESTIONS)
    for key in ("classifier", "phrasing_match", "tfidf", "bm25", "coverage"):
        assert (a[key] == b[key]).all()
    assert copy._extra_lock is not model._extra_lock
