"""Routing: priors from group descriptions, learning from history, explicit choice, persistence, accuracy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kbsearch import Document, KnowledgeBase
from kbsearch.config import RouteConfig
from kbsearch.documents import read_jsonl
from kbsearch.errors import InvalidEscalationError
from kbsearch.peers.groups import Groups
from kbsearch.peers.route import SMALL_HISTORY, Router, evaluate_routing

from .conftest import EVAL, WebhookServer, peer_settings


def test_routes_from_descriptions_when_there_is_no_history(kb: KnowledgeBase) -> None:
    routing = kb.route("my payslip shows the wrong salary")
    assert routing.group == "hr" and not routing.explicit
    assert "description and keywords of hr" in routing.reason and "'salary'" in routing.reason
    assert [g for g, _ in routing.ranked][:2] == ["hr", "it-support"]
    assert abs(sum(c for _, c in routing.ranked) - 1.0) < 1e-6
    assert kb.route("the wifi on my laptop is slow").group == "it-support"


def test_explicit_group_always_wins_and_unknown_is_refused(kb: KnowledgeBase) -> None:
    routing = kb.route("my payslip shows the wrong salary", group="it-support")
    assert routing.group == "it-support" and routing.explicit and routing.confidence == 1.0
    with pytest.raises(InvalidEscalationError, match="unknown group"):
        kb.route("anything", group="no-such-group")
    assert kb.escalate("my payslip is wrong", group="it-support", deliver=False).group == "it-support"
    # A group handed over by a deflection decision that routing does not know is routed instead of lost.
    esc = kb.escalate("my payslip is wrong", group="no-such-group", decision={"action": "escalate"}, deliver=False)
    assert esc.group == "hr" and esc.decision == {"action": "escalate"}


def test_history_is_learned_at_rebuild_and_stored_without_pickles(tmp_path: Path, hook_env: WebhookServer) -> None:
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i"))
    history = [Document(id=f"h{n}", title=q, text="answer", kind="answer", group="facilities")
               for n, q in enumerate(["the coffee machine on floor 3 is broken", "coffee machine leaks water",
                                      "no hot water in the kitchen", "kitchen dishwasher is full",
                                      "coffee beans are empty again", "kitchen fridge smells"])]
    report = kb.rebuild(history)
    assert report.steps["route"]["answers"] == 6 and report.steps["route"]["groups"] == 3
    files = sorted(p.name for p in (kb.generation_path / "route").iterdir())
    assert files == ["coef.npy", "idf.npy", "intercept.npy", "router.json", "vocab.json"]
    routing = kb.route("the coffee machine makes no coffee")
    assert routing.group == "facilities" and "6 past answers of facilities" in routing.reason
    loaded = Router.load(kb.generation_path)
    assert loaded is not None and loaded.classes == ["facilities", "hr", "it-support"]
    kb.close()


def test_low_confidence_goes_to_the_default_group() -> None:
    router = Router.fit(["vpn password laptop", "salary holiday payslip", "coffee kitchen fridge"],
                        ["it", "hr", "facilities"], calibrate=False)
    groups = Groups([], "general")
    routing = router.route("laptop salary coffee", groups, min_confidence=0.5)
    assert routing.group == "general" and "no group fits well" in routing.reason


def test_question_of_only_unknown_words_goes_to_the_default_group() -> None:
    """With a small history, a question none of whose words routing has seen is not guessed."""
    router = Router.fit(["vpn password laptop", "salary holiday payslip", "coffee kitchen fridge"],
                        ["it", "hr", "facilities"], calibrate=False)
    assert router.meta["analyzer"] == "content"
    routing = router.route("zzzz qqqq", Groups([], "general"))
    assert routing.group == "general" and "none of the question's words" in routing.reason
    assert router.route("zzzz laptop", Groups([], "general")).group == "it"


@pytest.mark.parametrize("examples, analyzer", [(12, "content"), (SMALL_HISTORY, "plain")],
                         ids=["small-history", "large-history"])
def test_small_history_routes_by_content_words(tmp_path: Path, examples: int, analyzer: str) -> None:
    """With a few answers, words like "on" or "my" that happen to occur in one group's examples must
    not decide; from `SMALL_HISTORY` examples on every word counts (function words carry intent).
    The choice is stored with the model."""
    base = [("How do I get Teams on my phone?", "it"), ("My laptop does not start", "it"),
            ("Which oil goes into the compressor?", "maintenance"), ("The pump is vibrating", "maintenance"),
            ("Who approves a discount?", "sales"), ("Quote templates for customers", "sales")]
    texts = [base[i % len(base)][0] + ("" if i < len(base) else f" case {i}") for i in range(examples)]
    labels = [base[i % len(base)][1] for i in range(examples)]
    router = Router.fit(texts, labels, calibrate=False)
    assert router.meta["analyzer"] == analyzer
    router.save(tmp_path)
    loaded = Router.load(tmp_path)
    assert loaded is not None and loaded.meta["analyzer"] == analyzer
    question = "the coffee machine on floor 3 leaks water"
    assert (loaded.scores([question]) == router.scores([question])).all()
    routing = loaded.route(question, Groups([], "general"))
    if analyzer == "content":
        assert routing.group == "general"  # nothing about coffee was ever answered
        why = loaded.route("a customer wants a quote", Groups([], "general"))
        assert why.group == "sales" and "'customer'" in why.reason and "'quote'" in why.reason  # as written
    else:  # "the" and "on" are words it knows
        assert routing.group != "general" and "matched" in routing.reason


def test_clinc150_domain_routing_accuracy() -> None:
    """The CLINC150 subset: 3 intents of each of the 10 domains, 300 validation questions (the whole
    set: bench/route_bench.py)."""
    report = evaluate_routing(EVAL / "clinc150", cfg=RouteConfig())
    assert report.mode == "questions" and report.questions == 300 and report.groups == 10
    assert report.accuracy is not None and report.accuracy >= 0.95


def test_semeval_is_cross_validated_over_the_archive() -> None:
    """The SemEval subset: 20 threads of each of the 6 largest forum categories, no grouped questions."""
    archive = list(read_jsonl(EVAL / "semeval2016-qatarliving" / "archive.jsonl"))
    report = evaluate_routing(EVAL / "semeval2016-qatarliving", folds=3)
    assert report.mode == "cross-validation" and report.folds == 3 and report.questions == len(archive) == 120
    majority = max(Counter(d.group for d in archive).values()) / len(archive)  # 1/6: balanced
    assert report.accuracy is not None and report.accuracy > majority + 0.15


def test_fitting_is_reproducible() -> None:
    """The same history gives the same router (routing figures and stored models do not drift)."""
    docs = list(read_jsonl(EVAL / "clinc150" / "archive.jsonl"))[:40]
    first = Router.from_documents(docs, None, RouteConfig())
    second = Router.from_documents(docs, None, RouteConfig())
    assert first.temperature == second.temperature
    assert (first.coef == second.coef).all() and (first.intercept == second.intercept).all()


def test_small_history_of_function_words_only_still_routes() -> None:
    """Examples with no content word at all fall back to every word rather than to no model."""
    router = Router.fit(["how do I", "what is it", "who are you", "where is it"], ["a", "a", "b", "b"], calibrate=False)
    assert router.fitted and router.meta["analyzer"] == "plain"
    assert router.route("who are they").group == "b"


def test_groups_configured_after_the_rebuild_are_routed_to(tmp_path: Path, hook_env: WebhookServer) -> None:
    """A version's stored router fitted before [[groups]] existed must not route with the groups of then."""
    from kbsearch import Settings

    bare = Settings()
    bare.index.path = tmp_path / "i"
    with KnowledgeBase.open(settings=bare) as kb:
        kb.rebuild(iter([Document(id="a1", kind="answer", group="facilities", title="the coffee machine leaks",
                                  text="Call the facilities desk."),
                         Document(id="p1", title="Parking", text="Park in the marked bays.")]))
        assert kb.route("my payslip shows the wrong salary").group == "facilities"  # the only group it knew
    with KnowledgeBase.open(settings=peer_settings(tmp_path / "i")) as kb:
        assert kb.route("my payslip shows the wrong salary").group == "hr"
