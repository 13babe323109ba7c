"""kbsearch: search the intranet and past peer answers first, ask the peers only when search fails.

The public names below are imported from their submodules on first use, so ``import kbsearch``
(and the CLI's start) do not load scikit-learn, SciPy or Whoosh until something needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Each public name and the submodule that defines it.
_SOURCES: dict[str, str] = {
    "ALL_GROUPS": "search",
    "Action": "deflect",
    "AddReport": "kb",
    "Answer": "deflect",
    "Attachment": "peers",
    "BuildReport": "kb",
    "ClaimConflictError": "errors",
    "ConfigError": "errors",
    "CrawlConfig": "config",
    "CrawlReport": "sources.crawl",
    "Decision": "deflect",
    "DeflectionReport": "ops.report",
    "DeliveryError": "errors",
    "DeliveryReport": "peers",
    "Document": "documents",
    "Escalation": "peers",
    "EvalReport": "evaluation.evaluate",
    "Group": "peers",
    "Hit": "documents",
    "IndexCorruptError": "errors",
    "IndexLockedError": "errors",
    "IndexNotFoundError": "errors",
    "IndexStats": "kb",
    "InvalidDocumentError": "errors",
    "IdempotencyKeyError": "errors",
    "InvalidEscalationError": "errors",
    "InvalidQuestionError": "errors",
    "KbsearchError": "errors",
    "KnowledgeBase": "kb",
    "NotFoundError": "errors",
    "PermissionDeniedError": "errors",
    "ReindexReport": "ops.reindex",
    "ReindexRunningError": "ops.reindex",
    "Routing": "peers.route",
    "ScoreParts": "documents",
    "Settings": "config",
    "SourceError": "errors",
    "WebSource": "sources.web",
    "evaluate": "evaluation.evaluate",
    "make_id": "documents",
    "read_jsonl": "documents",
}


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule, as the eager package did) on first access."""
    source = _SOURCES.get(name)
    if source is not None:
        value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
        globals()[name] = value
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the names resolve to, for type checkers and editors
    from .config import CrawlConfig, Settings
    from .sources.crawl import CrawlReport
    from .deflect import Action, Answer, Decision
    from .documents import Document, Hit, ScoreParts, make_id, read_jsonl
    from .errors import (
        ClaimConflictError,
        ConfigError,
        DeliveryError,
        IdempotencyKeyError,
        IndexCorruptError,
        IndexLockedError,
        IndexNotFoundError,
        InvalidDocumentError,
        InvalidEscalationError,
        InvalidQuestionError,
        KbsearchError,
        NotFoundError,
        PermissionDeniedError,
        SourceError,
    )
    from .evaluation.evaluate import EvalReport, evaluate
    from .kb import AddReport, BuildReport, IndexStats, KnowledgeBase
    from .peers import Attachment, DeliveryReport, Escalation, Group
    from .ops.reindex import ReindexReport, ReindexRunningError
    from .ops.report import DeflectionReport
    from .peers.route import Routing
    from .search import ALL_GROUPS
    from .sources.web import WebSource

__all__ = [
    "ALL_GROUPS",
    "Action",
    "AddReport",
    "Answer",
    "Attachment",
    "BuildReport",
    "ClaimConflictError",
    "ConfigError",
    "CrawlConfig",
    "CrawlReport",
    "Decision",
    "DeflectionReport",
    "DeliveryError",
    "DeliveryReport",
    "Document",
    "Escalation",
    "EvalReport",
    "Group",
    "Hit",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexStats",
    "InvalidDocumentError",
    "IdempotencyKeyError",
    "InvalidEscalationError",
    "InvalidQuestionError",
    "KbsearchError",
    "KnowledgeBase",
    "NotFoundError",
    "PermissionDeniedError",
    "ReindexReport",
    "ReindexRunningError",
    "Routing",
    "ScoreParts",
    "Settings",
    "SourceError",
    "WebSource",
    "evaluate",
    "make_id",
    "read_jsonl",
    "__version__",
]
