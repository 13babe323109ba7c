"""What the API shows of library objects: reports, dataclasses, enums and dates as plain JSON values,
and an escalation as its lifecycle fields and only the documents the caller may see."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

#: Fields of an escalation shown through the API (not the notification log or internal routing).
_ESCALATION_FIELDS = ("id", "question", "group", "status", "created", "updated", "user", "note", "answer",
                      "answered_by", "answered_at", "verified", "accepted", "doc_id", "duplicate_of", "open")


def _to_jsonable(obj: Any) -> Any:
    """Report objects, dataclasses, enums and dates → plain JSON values."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _to_jsonable(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_jsonable(asdict(obj))
    if isinstance(obj, Enum):
        return obj.value if isinstance(obj.value, (str, int)) else obj.name
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return None
    return str(obj)


def _escalation_view(escalation: Any, visible: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """What the API shows of an escalation: its lifecycle fields, what the asker saw (only documents
    the caller may see: ``visible``), its attachments."""
    data = _to_jsonable(escalation)
    if not isinstance(data, dict):
        return {"escalation": data}
    out = {k: data.get(k) for k in _ESCALATION_FIELDS if k in data}
    out["seen"] = [{k: s.get(k) for k in ("id", "title", "url") if k in s}
                   for s in data.get("seen") or []
                   if isinstance(s, dict) and (visible is None or visible(str(s.get("id"))))]
    out["attachments"] = [{k: a.get(k) for k in ("id", "filename", "content_type", "size")}
                          for a in data.get("attachments") or [] if isinstance(a, dict)]
    routing = data.get("routing") if isinstance(data.get("routing"), dict) else {}
    if routing.get("rerouted_from"):  # a person's reroute and the reason they gave (not the model's words)
        out["rerouted_from"] = routing.get("rerouted_from")
        out["reroute_reason"] = routing.get("reroute_reason", "")
    return out
