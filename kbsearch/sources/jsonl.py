"""Generic Q&A imports: JSONL (kbsearch's document format and the eval ``archive.jsonl`` format) and CSV.

JSONL lines are `Document.from_dict` objects, so an archive line ``{"id", "title", "questions",
"answer", "group"}`` imports as-is as a peer answer.  CSV files name their columns in a header row;
``id``, ``title`` (or ``question``) and ``text`` (or ``answer``) are the usual ones, ``questions`` and
``allowed_groups`` hold lists separated by ``list_separator`` (default ``|``).  A bad line is
reported with its line number and skipped; the rest is imported.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..documents import Document, make_id
from ..errors import ConfigError, InvalidDocumentError, SourceError
from . import Progress, SourceReport
from ._qa import Item, check_keys, option, sync_stream

if TYPE_CHECKING:
    from .._protocols import DocumentStore

_CSV_LISTS = ("questions", "allowed_groups", "headings")
_CSV_BOOLS = ("accepted", "verified", "outdated")


class JsonlSource:
    """Documents from a JSONL file (one object a line); ``group`` fills in lines without one."""

    def __init__(self, name: str, path: str | Path, *, group: str | None = None, delete_missing: bool = True) -> None:
        self.name = name
        self.path = Path(path)
        self.group = group
        self.delete_missing = delete_missing

    def items(self) -> Iterator[Item]:
        try:
            handle = self.path.open("r", encoding="utf-8")
        except OSError as exc:
            raise SourceError(f"source {self.name}: cannot read {self.path}: {exc.strerror}") from None
        with handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                label = f"{self.path.name}:{number}"
                try:
                    data = json.loads(line)
                    if isinstance(data, dict) and self.group and not data.get("group"):
                        data["group"] = self.group
                    yield Document.from_dict(data)
                except json.JSONDecodeError as exc:
                    yield (label, f"invalid JSON: {exc.msg}")
                except InvalidDocumentError as exc:
                    yield (label, str(exc))

    def sync(self, kb: DocumentStore, *, full: bool = False, progress: Progress | None = None) -> SourceReport:
        """Import the file; documents of this source missing from it are deleted (when it read cleanly)."""
        return sync_stream(kb, self.name, "jsonl", self.items(), progress=progress,
                           delete_missing=self.delete_missing)


def _split(value: str, sep: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            loaded = json.loads(value)
            if isinstance(loaded, list):
                return [str(v) for v in loaded]
        except json.JSONDecodeError:
            pass
    return [v.strip() for v in value.split(sep) if v.strip()]


class CsvSource:
    """Documents from a CSV file with a header row; one row is one page section or peer answer."""

    def __init__(self, name: str, path: str | Path, *, delimiter: str = ",", list_separator: str = "|",
                 kind: str = "answer", group: str | None = None, columns: Mapping[str, str] | None = None,
                 delete_missing: bool = True) -> None:
        self.name = name
        self.path = Path(path)
        self.delimiter = delimiter
        self.list_separator = list_separator
        self.kind = kind
        self.group = group
        self.columns = dict(columns or {})  # CSV header -> document field
        self.delete_missing = delete_missing

    def _record(self, row: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in row.items():
            if key is None:
                raise InvalidDocumentError("more cells than header columns")
            field = self.columns.get(key, key).strip()
            if value is None or value == "":
                continue
            if field in _CSV_LISTS:
                data[field] = _split(value, self.list_separator)
            elif field in _CSV_BOOLS:
                data[field] = value.strip().lower() in ("1", "true", "yes", "y")
            elif field == "votes":
                data[field] = int(value)
            else:
                data[field] = value
        data.setdefault("kind", self.kind)
        if self.group and not data.get("group"):
            data["group"] = self.group
        if "id" not in data:
            title = data.get("title") or data.get("question") or ""
            data["id"] = make_id(self.name, str(title))
        return data

    def items(self) -> Iterator[Item]:
        try:
            handle = self.path.open("r", encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise SourceError(f"source {self.name}: cannot read {self.path}: {exc.strerror}") from None
        with handle:
            reader = csv.DictReader(handle, delimiter=self.delimiter)
            if not reader.fieldnames:
                raise SourceError(f"source {self.name}: {self.path} has no header row")
            for row in reader:
                label = f"{self.path.name}:{reader.line_num}"
                try:
                    yield Document.from_dict(self._record(row))
                except (InvalidDocumentError, ValueError) as exc:
                    yield (label, str(exc))

    def sync(self, kb: DocumentStore, *, full: bool = False, progress: Progress | None = None) -> SourceReport:
        return sync_stream(kb, self.name, "csv", self.items(), progress=progress, delete_missing=self.delete_missing)


def make_jsonl_source(name: str, table: Mapping[str, Any]) -> JsonlSource:
    """``type = "jsonl"``: ``path`` (required), ``group``, ``delete_missing``."""
    check_keys(table, {"path", "group", "delete_missing"}, name)
    path = option(table, "path", (str, Path), None, name)
    if not path:
        raise ConfigError(f"source {name!r}: path is required")
    return JsonlSource(name, path, group=option(table, "group", str, None, name),
                       delete_missing=bool(table.get("delete_missing", True)))


def make_csv_source(name: str, table: Mapping[str, Any]) -> CsvSource:
    """``type = "csv"``: ``path`` (required), ``delimiter``, ``list_separator``, ``kind``, ``group``, ``columns``."""
    check_keys(table, {"path", "delimiter", "list_separator", "kind", "group", "columns", "delete_missing"}, name)
    path = option(table, "path", (str, Path), None, name)
    if not path:
        raise ConfigError(f"source {name!r}: path is required")
    return CsvSource(name, path, delimiter=option(table, "delimiter", str, ",", name),
                     list_separator=option(table, "list_separator", str, "|", name),
                     kind=option(table, "kind", str, "answer", name), group=option(table, "group", str, None, name),
                     columns=option(table, "columns", dict, {}, name),
                     delete_missing=bool(table.get("delete_missing", True)))
