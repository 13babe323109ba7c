"""The document model: validation, JSONL reading, stable content hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbsearch import Document, InvalidDocumentError, read_jsonl


def test_minimal_document_needs_only_id_title_text() -> None:
    doc = Document.from_dict({"id": "a", "title": "T", "text": "body"})
    assert doc.kind == "page" and doc.allowed_groups == () and not doc.restricted


def test_archive_format_reads_as_answer() -> None:
    doc = Document.from_dict({"id": "t1", "title": "Q?", "questions": ["other wording"], "answer": "A.", "group": "it"})
    assert doc.kind == "answer" and doc.text == "A." and doc.questions == ("other wording",) and doc.group == "it"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"title": "T", "text": "x"}, "id"),
        ({"id": "a", "text": "x"}, "title"),
        ({"id": "a", "title": "T"}, "text"),
        ({"id": "a", "title": "T", "text": "x", "kind": "video"}, "kind"),
        ({"id": "a", "title": "T", "text": "x", "colour": "red"}, "unknown field"),
        ({"id": "a", "title": "T", "text": "x", "allowed_groups": "sales,hr"}, None),
        ({"id": "a", "title": "T", "text": "x", "allowed_groups": [1]}, "allowed_groups"),
        ({"id": "a", "title": "T", "text": "x", "updated": "yesterday"}, "updated"),
        ({"id": "a", "title": "T", "text": "x", "verified": "yes"}, "verified"),
        ({"id": "a\nb", "title": "T", "text": "x"}, "id"),
        ({"id": "a", "title": "", "text": ""}, "no title"),
    ],
    ids=["no-id", "no-title", "no-text", "bad-kind", "unknown-key", "groups-string-ok", "groups-not-str",
         "bad-date", "flag-not-bool", "id-newline", "empty"],
)
def test_bad_documents_are_rejected_clearly(data: dict, message: str | None) -> None:
    if message is None:
        assert Document.from_dict(data).allowed_groups == ("sales,hr",)
        return
    with pytest.raises(InvalidDocumentError, match=message):
        Document.from_dict(data)


def test_content_hash_is_stable_and_sensitive() -> None:
    a = Document(id="x", title="T", text="body", allowed_groups=("b", "a"))
    b = Document(id="x", title="T", text="body", allowed_groups=("a", "b"))
    assert a.content_hash == b.content_hash
    assert a.replace(text="body!").content_hash != a.content_hash
    assert a.replace(verified=True).content_hash != a.content_hash


def test_round_trip_through_json() -> None:
    doc = Document(id="x", kind="answer", title="Q", text="A", questions=("q2",), group="g",
                   allowed_groups=("g",), updated="2026-01-02T03:04:05Z", verified=True, votes=3)
    again = Document.from_dict(json.loads(doc.to_json()))
    assert again == doc


def test_read_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "title": "T", "text": "x"}\n\n{"id": "b", "title": "T"\n', encoding="utf-8")
    docs = read_jsonl(path)
    assert next(docs).id == "a"
    with pytest.raises(InvalidDocumentError, match=r"docs.jsonl:3: invalid JSON"):
        next(docs)


def test_read_jsonl_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidDocumentError, match="cannot read"):
        list(read_jsonl(tmp_path / "nope.jsonl"))
