"""What `KnowledgeBase`'s writes and `stats` report: plain dataclasses, also returned to Python callers.

They live apart from `kbsearch.kb` so the front door holds behaviour; `kbsearch.kb` re-exports them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class AddReport:
    """What `KnowledgeBase.add` did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    model_refitted: bool = False

    @property
    def changed(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuildReport:
    """What `KnowledgeBase.rebuild` did."""

    documents: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    generation: str = ""
    model_fitted_on: int = 0
    #: Answered escalations of the peer store added because ``documents`` did not hold them.
    answers_kept: int = 0
    #: Seconds spent writing the index and fitting the TF-IDF model (the indexing proper).
    index_seconds: float = 0.0
    #: Seconds spent in the after-build steps (routing model, deflection calibration).
    steps_seconds: float = 0.0
    steps: dict[str, Any] = field(default_factory=dict)

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["docs_per_second"] = round(self.docs_per_second, 1)
        out["index_docs_per_second"] = round(self.documents / self.index_seconds, 1) if self.index_seconds else 0.0
        return out


@dataclass
class IndexStats:
    """A summary of the live generation (`kbsearch stats`)."""

    path: str
    generation: str
    documents: int
    pages: int
    answers: int
    restricted: int
    size_bytes: int
    model_fitted_on: int
    created: str | None
    #: How deflection decides: "calibrated", or why it only suggests (`deflect.trusted_documents`).
    deflection: str = "calibrated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
