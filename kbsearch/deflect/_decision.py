"""What deflection decides: the `Action`, each candidate `Answer` and the `Decision` for a question."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Action(str, Enum):
    """What kbsearch does with a question."""

    ANSWER = "answer"      # answered from the index (deflected)
    SUGGEST = "suggest"    # possible answers shown, with a one-click "ask the peers"
    ESCALATE = "escalate"  # goes to a peer group

    def __str__(self) -> str:
        return self.value


@dataclass
class Answer:
    """One candidate answer with the probability that it is right and the signals behind it."""

    id: str
    title: str
    url: str
    kind: str
    group: str | None
    probability: float
    signals: dict[str, float]
    verified: bool = False
    accepted: bool = False
    outdated: bool = False
    snippet: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "url": self.url, "kind": self.kind, "group": self.group,
                "probability": round(self.probability, 4), "signals": {k: round(v, 4) for k, v in self.signals.items()},
                "verified": self.verified, "accepted": self.accepted, "outdated": self.outdated,
                "snippet": self.snippet}


@dataclass
class Decision:
    """The outcome of `KnowledgeBase.ask`: an action, a calibrated confidence and why."""

    id: str
    question: str
    action: Action
    confidence: float
    answers: list[Answer]
    why: str
    signals: dict[str, float] = field(default_factory=dict)
    ranked: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    routing: Any = None
    escalation: Any = None
    generation: str = ""
    seconds: float = 0.0
    features: list[float] = field(default_factory=list)
    #: Group of the best candidate (a fallback for routing when no peer routing is configured).
    nearest_group: str | None = None
    #: ESCALATE only: the closest candidates found, best first (``answers`` stays empty: none of them
    #: is likely enough to show as an answer, but the asker and the peers can see what was found).
    closest: list[Answer] = field(default_factory=list)

    @property
    def answer(self) -> Answer | None:
        """The answer given (ANSWER decisions only)."""
        return self.answers[0] if self.action is Action.ANSWER and self.answers else None

    @property
    def deflected(self) -> bool:
        return self.action is Action.ANSWER

    @property
    def group(self) -> str | None:
        """The peer group routing picked (None when routing is not available)."""
        return getattr(self.routing, "group", None)

    def to_dict(self) -> dict[str, Any]:
        def plain(obj: Any) -> Any:
            if obj is None:
                return None
            if hasattr(obj, "to_dict"):
                return obj.to_dict()
            if hasattr(obj, "__dict__"):
                return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
            return obj
        return {
            "id": self.id, "question": self.question, "action": self.action.value,
            "confidence": round(self.confidence, 4), "why": self.why,
            "answers": [a.to_dict() for a in self.answers], "closest": [a.to_dict() for a in self.closest],
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "ranked": self.ranked, "thresholds": self.thresholds, "routing": plain(self.routing),
            "escalation": plain(self.escalation), "generation": self.generation, "seconds": round(self.seconds, 4),
        }
