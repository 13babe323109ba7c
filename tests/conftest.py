"""Fixtures shared by every test area: real knowledge bases in temporary folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole run (`tests._pg.PostgresCluster`)."""
    from ._pg import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres: Any) -> Iterator[str]:
    """The URL (password included) of a new, empty database of the test cluster, dropped afterwards."""
    url = postgres.database()
    yield url
    postgres.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Run a test on both stores: "" (the embedded SQLite file) and a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
