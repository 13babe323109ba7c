"""Retrieval and re-ranking on the bundled examples; natural language, never query syntax."""

from __future__ import annotations

import pytest

from kbsearch import Document, InvalidQuestionError, KnowledgeBase


@pytest.mark.parametrize(
    "question, expected",
    [
        ("vpn is not working in my hotel", "answer:1"),
        ("how do I change the oil of the C40 compressor", "page:maint/compressor#c40-oil"),
        ("what does alarm E02 mean on the compressor", "answer:9"),
        ("lock out tag out procedure padlock", "page:maint/safety#lockout"),
        ("I lost my badge", "page:ops/office#access"),
        ("carry over vacation days", "answer:7"),
        ("pump shaking after new seal", "answer:8"),
    ],
    ids=["vpn-hotel", "c40-oil", "e02", "lockout", "badge", "holidays", "pump-alt-phrasing"],
)
def test_finds_the_right_document_first(example_kb: KnowledgeBase, question: str, expected: str) -> None:
    hits = example_kb.search(question)
    assert hits and hits[0].id == expected, [h.id for h in hits[:3]]


def test_hit_explains_itself(example_kb: KnowledgeBase) -> None:
    hit = example_kb.search("compressor oil change interval")[0]
    assert hit.kind == "page" and hit.url.startswith("https://intranet.example/")
    assert hit.parts.bm25 > 0 and 0 < hit.parts.bm25_norm <= 1
    assert 0 < hit.parts.tfidf <= 1 and 0 <= hit.parts.question_match <= 1
    assert "<mark>oil</mark>" in hit.snippet
    cfg = example_kb.settings.rerank
    assert hit.score == pytest.approx(cfg.weight_tfidf * max(hit.parts.tfidf, hit.parts.question_match)
                                      + cfg.weight_bm25 * hit.parts.bm25_norm + hit.parts.signals)


def test_snippet_escapes_html(kb: KnowledgeBase) -> None:
    kb.add([Document(id="x", title="Script tags", text="Never paste <script>alert('x')</script> into the wiki editor.")])
    hit = kb.search("paste script into wiki")[0]
    assert "<script" not in hit.snippet and "</script" not in hit.snippet
    assert "&lt;<mark>script</mark>&gt;alert(&#x27;x&#x27;)" in hit.snippet
    assert "<mark>paste</mark>" in hit.snippet


def test_verified_answer_ranks_above_unverified_twin(kb: KnowledgeBase) -> None:
    text = "Restart the label printer and recalibrate it from the menu."
    kb.add([Document(id="plain", kind="answer", title="Label printer prints blank labels", text=text),
            Document(id="checked", kind="answer", title="Label printer prints blank labels", text=text, verified=True)])
    hits = kb.search("label printer prints blank labels")
    assert [h.id for h in hits] == ["checked", "plain"]
    assert hits[0].parts.details["verified"] > 0


def test_outdated_answer_ranks_below_current(kb: KnowledgeBase) -> None:
    kb.add([Document(id="old", kind="answer", title="Expense claims deadline", text="Claims within 60 days.", outdated=True),
            Document(id="new", kind="answer", title="Expense claims deadline", text="Claims within 30 days.")])
    assert [h.id for h in kb.search("expense claims deadline")] == ["new", "old"]


def test_kinds_filter(example_kb: KnowledgeBase) -> None:
    hits = example_kb.search("vpn", kinds=["page"])
    assert hits and all(h.kind == "page" for h in hits)


@pytest.mark.parametrize(
    "question",
    [
        'title:"VPN" AND (hotel',
        "acl:\x01restricted OR id:*",
        "vpn* ?otel~2 ^3",
        'he said "reset my password"',
        "((((((((",
        "🙂🚀 vpn 🙂",
        "Как подключиться к VPN?",
        "VPNに接続できません",
        "x" * 10_000,
        "how do I " * 900,
        "-vpn NOT hotel",
    ],
    ids=["field-syntax", "acl-field", "wildcards", "quotes", "brackets", "emoji", "cyrillic", "japanese",
         "10k-paste", "stopwords-paste", "operators"],
)
def test_odd_questions_are_just_words(example_kb: KnowledgeBase, question: str) -> None:
    """Every one of these is a valid question (text, not empty, under the length limit): it must not
    raise, and query syntax in it must not reach restricted documents."""
    hits = example_kb.search(question)
    assert isinstance(hits, list)
    assert all(not h.id.startswith("page:hr/salary") and h.id != "page:sales/commission#plan" for h in hits)


@pytest.mark.parametrize(
    "question, message",
    [("", "empty"), (" \n\t ", "empty"), ("\x00\x01", "empty"), (None, "must be text"), (42, "must be text"),
     (["vpn"], "must be text"), ("x" * 20_001, "too long")],
    ids=["empty", "blank", "control-only", "none", "int", "list", "too-long"],
)
def test_invalid_questions_raise_the_expected_error(example_kb: KnowledgeBase, question: object,
                                                    message: str) -> None:
    with pytest.raises(InvalidQuestionError, match=message):
        example_kb.search(question)  # type: ignore[arg-type]


def test_question_at_the_length_limit_is_searched(example_kb: KnowledgeBase) -> None:
    limit = example_kb.settings.search.max_question_chars
    question = ("vpn hotel " * limit)[:limit].strip()
    assert len(question) <= limit
    assert example_kb.search(question)[0].id == "answer:1"


def test_field_syntax_is_just_words(example_kb: KnowledgeBase) -> None:
    plain = [h.id for h in example_kb.search("VPN hotel")]
    syntax = [h.id for h in example_kb.search("title:VPN hotel")]
    assert syntax[:1] == plain[:1]


def test_empty_question_is_an_error(example_kb: KnowledgeBase) -> None:
    for q in ("", "   ", "\n\t"):
        with pytest.raises(InvalidQuestionError, match="empty"):
            example_kb.search(q)


def test_too_long_question_is_an_error(example_kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidQuestionError, match="too long"):
        example_kb.search("a " * 20_000)


@pytest.mark.parametrize("limit", [0, -1, 1001, True, "5"], ids=str)
def test_bad_limit_is_an_error(example_kb: KnowledgeBase, limit: object) -> None:
    with pytest.raises(InvalidQuestionError, match="limit"):
        example_kb.search("vpn", limit=limit)  # type: ignore[arg-type]


def test_non_text_question_is_an_error(example_kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidQuestionError):
        example_kb.search(42)  # type: ignore[arg-type]


def test_empty_index_returns_nothing(kb: KnowledgeBase) -> None:
    assert kb.search("anything at all") == []


def test_common_words_still_find_something(example_kb: KnowledgeBase) -> None:
    assert example_kb.search("the of and") == []  # stop words only: nothing to match, no error
    assert example_kb.search("the printer")[0].id == "page:it/printing#setup"
