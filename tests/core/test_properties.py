"""Property-based: arbitrary text is searched (or rejected as empty, nothing else); no hit escapes its groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kbsearch import Document, InvalidQuestionError, KnowledgeBase
from kbsearch._text import clean_text

GROUPS = ["sales", "hr", "it", "field"]
WORDS = ["pump", "vpn", "seal", "oil", "badge", "quote", "discount", "printer", "alarm", "holiday"]


@pytest.fixture(scope="module")
def acl_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    docs = []
    for i in range(120):
        words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 6))
        allowed = tuple(GROUPS[j] for j in range(len(GROUPS)) if (i >> j) & 1) if i % 3 else ()
        docs.append(Document(id=f"d{i}", title=f"{words} {i}", text=f"{words} text {i}", allowed_groups=allowed,
                             kind="answer" if i % 2 else "page"))
    path: Path = tmp_path_factory.mktemp("acl") / "kb"
    with KnowledgeBase.open(path) as kb:
        kb.add(docs)
        yield kb


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=st.text(max_size=300))
def test_arbitrary_text_is_searched_or_rejected_as_empty(acl_kb: KnowledgeBase, question: str) -> None:
    """Text that cleans to nothing is the one invalid question here (300 characters is far below the
    length limit): it raises `InvalidQuestionError`; any other text is searched without an error."""
    if not clean_text(question):
        with pytest.raises(InvalidQuestionError, match="empty"):
            acl_kb.search(question)
        return
    hits = acl_kb.search(question)
    assert isinstance(hits, list)
    assert all(not acl_kb.get(h.id).restricted for h in hits)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=5),
       groups=st.lists(st.sampled_from(GROUPS + ["nobody"]), max_size=3),
       limit=st.integers(min_value=1, max_value=50))
def test_no_result_escapes_the_callers_groups(acl_kb: KnowledgeBase, words: list[str], groups: list[str], limit: int) -> None:
    hits = acl_kb.search(" ".join(words), user_groups=groups, limit=limit)
    for h in hits:
        allowed = acl_kb.get(h.id).allowed_groups
        assert not allowed or set(allowed) & set(groups)
    assert len(hits) <= limit
