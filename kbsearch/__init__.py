"""kbsearch: search the intranet and past peer answers first, ask the peers only when search fails."""

from .config import CrawlConfig, Settings
from .crawl import CrawlReport
from .deflect import Action, Answer, Decision
from .documents import Document, Hit, ScoreParts, make_id, read_jsonl
from .errors import (
    ConfigError,
    DeliveryError,
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
from .evaluate import EvalReport, evaluate
from .kb import AddReport, BuildReport, IndexStats, KnowledgeBase
from .peers import Attachment, DeliveryReport, Escalation, Group
from .route import Routing
from .reindex import ReindexReport, ReindexRunningError
from .report import DeflectionReport
from .search import ALL_GROUPS
from .sources.web import WebSource

__version__ = "0.1.0"

__all__ = [
    "ALL_GROUPS",
    "Action",
    "AddReport",
    "Answer",
    "Attachment",
    "BuildReport",
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
