"""What the API adds to results so people can scan them, and the duplicate hint of a new escalation.

* `enrich_answers`: ``POST /api/ask``'s answers get the ``headings`` (page › section) and ``updated``
  date of their document, read through `KnowledgeBase.get` with the caller's groups (the access
  filter: a document the caller may not see adds nothing; ask never returns one anyway).
* `similar_hint`: a new escalation's response lists similar open and answered questions the asker
  may see (`KnowledgeBase.similar_questions`, access-filtered), so asking the same thing twice is
  pointed out by the server, whatever client sent it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import KbsearchError

log = logging.getLogger(__name__)

_SIMILAR_KEYS = ("id", "question", "status", "group", "open", "mine", "following", "followers", "answer", "verified")


def enrich_answers(kb: Any, decision: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    """``decision`` (ask's JSON) with ``headings`` and ``updated`` on each answer and closest match."""
    get = getattr(kb, "get", None)
    if not callable(get):
        return decision
    for key in ("answers", "closest"):
        items = decision.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "headings" in item:
                continue
            doc = get(item["id"], user_groups=groups)
            if doc is None:
                continue
            item["headings"] = list(doc.headings)
            item["updated"] = doc.updated.isoformat() if doc.updated else None
    return decision


def similar_hint(kb: Any, escalation: Any, *, user: str | None, groups: list[str], limit: int = 3) -> list[dict[str, Any]]:
    """Questions like ``escalation``'s that ``user`` may see, without itself; [] when none or on error
    (the escalation is stored either way: a hint never fails the request)."""
    method = getattr(kb, "similar_questions", None)
    if not callable(method):
        return []
    try:
        found = method(escalation.question, user=user, groups=groups, limit=limit + 1)
    except KbsearchError as exc:
        log.warning("no similar-question hint for %s: %s", escalation.id, exc)
        return []
    return [{k: q[k] for k in _SIMILAR_KEYS if k in q} for q in found if q.get("id") != escalation.id][:limit]
