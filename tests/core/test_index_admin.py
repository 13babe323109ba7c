"""``kbsearch index delete`` and per-source statistics (issue 24, admins) on a real index: deletes are a
new version (copy-on-write, the earlier version untouched), unknown ids are reported, a source can go
at once, and ``stats`` / ``GET /api/stats`` count documents per source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.test import Client

from kbsearch import Document, KnowledgeBase
from kbsearch.cli import main
from kbsearch.errors import InvalidDocumentError

SECRET = "test-secret-0123456789abcdef"


def _docs() -> list[Document]:
    wiki = [Document(id=f"wiki-{i}", title=f"Wiki page {i} about the zanderfold press", source="wiki",
                     text=f"The zanderfold press step {i}: oil the rails.", updated=f"2026-0{i + 1}-01")
            for i in range(3)]
    forum = [Document(id=f"forum-{i}", title=f"Forum answer {i}", kind="answer", source="forum", verified=i == 0,
                      text="Restart the queue service.", allowed_groups=("it",) if i else ()) for i in range(2)]
    return [*wiki, *forum, Document(id="loose", title="A loose page", text="Added by hand.")]


@pytest.fixture
def kb(tmp_path: Path):
    base = KnowledgeBase.open(tmp_path / "idx")
    base.rebuild(iter(_docs()))
    yield base
    base.close()


def test_source_stats_count_each_source(kb: KnowledgeBase) -> None:
    stats = {s.source: s.to_dict() for s in kb.source_stats()}
    assert list(stats) == ["wiki", "forum", ""]  # most documents first
    assert stats["wiki"]["documents"] == 3 and stats["wiki"]["pages"] == 3
    assert stats["wiki"]["newest_updated"].startswith("2026-03-01")
    assert (stats["forum"]["answers"], stats["forum"]["restricted"], stats["forum"]["verified"]) == (2, 1, 1)
    assert stats[""]["documents"] == 1 and stats[""]["newest_updated"] is None


def test_delete_by_id_and_source_is_a_new_version(kb: KnowledgeBase) -> None:
    before = kb.generation_path
    before_files = {p.relative_to(before): p.read_bytes() for p in before.rglob("*") if p.is_file()}
    report = kb.delete_documents(["wiki-1", "nope"])
    assert (report.deleted, report.requested, report.missing) == (1, 2, ["nope"])
    assert kb.get("wiki-1") is None and kb.get("wiki-0") is not None
    assert kb.generation_path != before
    # Copy-on-write: the version searches used before is byte for byte what it was.
    assert {p.relative_to(before): p.read_bytes() for p in before.rglob("*") if p.is_file()} == before_files
    assert [h.id for h in kb.search("zanderfold press rails")] and \
        "wiki-1" not in [h.id for h in kb.search("zanderfold press rails")]

    report = kb.delete_documents(source="forum")
    assert (report.deleted, report.missing) == (2, [])
    assert {s.source for s in kb.source_stats()} == {"wiki", ""}
    with pytest.raises(InvalidDocumentError, match="no documents from source 'forum'"):
        kb.delete_documents(source="forum")
    with pytest.raises(InvalidDocumentError, match="name the documents"):
        kb.delete_documents([])


def test_cli_index_delete_and_stats(kb: KnowledgeBase, tmp_path: Path) -> None:
    runner = CliRunner()
    opts = ["--index", str(kb.root)]
    out = runner.invoke(main, ["stats", "--json", *opts])
    assert out.exit_code == 0 and {s["source"]: s["documents"] for s in json.loads(out.output)["sources"]} == \
        {"wiki": 3, "forum": 2, "": 1}
    out = runner.invoke(main, ["stats", *opts])
    assert "            wiki: 3 documents (3 pages, 0 answers, 0 restricted, newest 2026-03-01)" in out.output
    out = runner.invoke(main, ["index", "delete", "loose", "missing-id", *opts])
    assert out.exit_code == 1 and out.output == "deleted 1 of 2; not found: missing-id\n"
    out = runner.invoke(main, ["index", "delete", "--source", "wiki", "--json", *opts])
    assert out.exit_code == 0 and json.loads(out.output)["deleted"] == 3
    out = runner.invoke(main, ["index", "delete", *opts])
    assert out.exit_code == 1 and out.output.startswith("error: name the documents") and out.output.count("\n") == 1


def test_api_stats_for_report_groups_only(kb: KnowledgeBase) -> None:
    from kbsearch.web import create_app, make_token

    client = Client(create_app(kb, secret=SECRET))

    def get(groups: list[str]):
        return client.get("/api/stats", headers={"Authorization": "Bearer " + make_token("mia", groups, secret=SECRET)})
    assert client.get("/api/stats").status_code == 403
    assert get(["it"]).status_code == 403
    r = get(["kbsearch-admins"])
    assert r.status_code == 200 and r.get_json()["documents"] == 6
    assert [s["source"] for s in r.get_json()["sources"]] == ["wiki", "forum", ""]
