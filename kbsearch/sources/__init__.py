"""Sources of documents: intranet sites, Q&A exports and APIs, answered escalations.

Every source follows the small `Source` protocol: it has a ``name`` and syncs itself into a
`KnowledgeBase` incrementally (add what is new or changed, delete what is really gone) and reports
what it did.  Source definitions live in ``crawlers/*.toml``, one file per source, with a ``type``
naming one of `SOURCE_TYPES`.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:
    from .._protocols import DocumentStore

Progress = Callable[[dict[str, Any]], None]


@dataclass
class SourceReport:
    """What one sync of one source did; the same counts the CLI prints."""

    source: str
    kind: str = ""
    fetched: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    #: False when the run was cut short or failed: then nothing was deleted because of it.
    complete: bool = True
    #: One entry per failure: {"item": url-or-id, "reason": text}.
    errors: list[dict[str, str]] = field(default_factory=list)
    #: One entry per skipped item: {"item": ..., "reason": ...}.
    skips: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Source(Protocol):
    """Something that can bring its documents into a knowledge base, incrementally."""

    name: str

    def sync(self, kb: DocumentStore, *, full: bool = False, progress: Progress | None = None) -> SourceReport:
        """Bring ``kb`` up to date with this source; ``full`` ignores incremental state."""
        ...


#: ``type`` in a source file → "module:factory"; the factory takes (name, table) and returns a Source.
SOURCE_TYPES: dict[str, str] = {
    "web": "kbsearch.sources.web:make_web_source",
    "jsonl": "kbsearch.sources.jsonl:make_jsonl_source",
    "csv": "kbsearch.sources.jsonl:make_csv_source",
    "stackexchange": "kbsearch.sources.stackexchange:make_stackexchange_source",
    "discourse": "kbsearch.sources.discourse:make_discourse_source",
    "escalations": "kbsearch.sources.escalations:make_escalations_source",
}


def make_source(name: str, table: Mapping[str, Any]) -> Source:
    """Build the source described by one parsed TOML table (its ``type`` picks the implementation)."""
    kind = table.get("type")
    if kind not in SOURCE_TYPES:
        known = ", ".join(sorted(SOURCE_TYPES)) or "none"
        raise ConfigError(f"source {name!r}: unknown type {kind!r} (known: {known})")
    module_name, _, factory = SOURCE_TYPES[kind].partition(":")
    module = importlib.import_module(module_name, __package__)
    return getattr(module, factory)(name, table)


def load_source_file(path: str | Path) -> Source:
    """Read one ``crawlers/NAME.toml``; the source is named after the file unless it sets ``name``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read source file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    name = table.pop("name", path.stem)
    return make_source(str(name), table)


def load_sources(directory: str | Path = "crawlers") -> list[Source]:
    """Every source defined in ``directory`` (``*.toml``, sorted by name; ``*.example.toml`` skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"no sources directory {directory}")
    files = sorted(p for p in directory.glob("*.toml") if not p.name.endswith(".example.toml"))
    return [load_source_file(p) for p in files]
