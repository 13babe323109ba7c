"""Fixtures shared by every test area: real knowledge bases in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kbsearch import Document, KnowledgeBase, read_jsonl

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def example_docs() -> list[Document]:
    """The bundled example intranet and peer answers."""
    return [*read_jsonl(EXAMPLES / "intranet.jsonl"), *read_jsonl(EXAMPLES / "answers.jsonl")]


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    """An empty knowledge base in a temporary folder."""
    with KnowledgeBase.open(tmp_path / "kb") as base:
        yield base


@pytest.fixture
def example_kb(kb: KnowledgeBase, example_docs: list[Document]) -> KnowledgeBase:
    """A knowledge base holding the bundled examples."""
    kb.add(example_docs)
    return kb
