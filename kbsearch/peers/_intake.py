"""What an asker hands in with an escalation, checked and reduced to what is stored: the documents
they saw (ids and scores only), their attachments (type, size and content checked) and what is kept
of the deflection decision (only what every reader of the escalation may see).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, Union

from .._content_types import contradicts
from ..config import PeersConfig
from ..errors import InvalidEscalationError


class _Identified(Protocol):
    """A search hit or anything else with a document ``id`` (and maybe a ``score``)."""

    @property
    def id(self) -> str: ...


class _Serialisable(Protocol):
    """A deflection decision (`kbsearch.deflect.Decision`): kept through its ``to_dict``."""

    def to_dict(self) -> dict[str, Any]: ...


class _FileLike(Protocol):
    """An uploaded file: ``filename``, ``content_type`` and ``data`` (bytes)."""

    filename: str
    content_type: str
    data: bytes


#: One thing the asker saw and rejected: a document id, a hit, or a dict with ``id`` (and ``score``).
SeenItem = Union[str, _Identified, Mapping[str, object]]
#: One attachment: a file path, ``(filename, content_type, bytes)``, a dict of those keys, or an upload.
AttachmentInput = Union[str, Path, tuple[str, str, bytes], Mapping[str, object], _FileLike]
#: The deflection decision that led to an escalation, or its dict.
DecisionInput = Union[_Serialisable, Mapping[str, object]]


def seen_id(item: SeenItem) -> tuple[str, float | None]:
    """The document id (and search score, if any) of one thing the asker saw: a hit, a dict or an id.

    Titles and links a caller hands in are never kept: they are read again from the index, through
    the access filter (`PeerLoop._seen`)."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, Mapping):
        doc_id, score = item.get("id"), item.get("score")
    elif hasattr(item, "id"):
        doc_id, score = getattr(item, "id"), getattr(item, "score", None)
    else:
        raise InvalidEscalationError(f"seen: expected hits, dicts or ids, got {type(item).__name__}")
    if not isinstance(doc_id, str):
        raise InvalidEscalationError("seen: every item needs a document id")
    return doc_id, round(float(score), 4) if isinstance(score, (int, float)) and not isinstance(score, bool) else None


def decision_dict(decision: DecisionInput | None, visible: Callable[[str], bool]) -> dict[str, Any] | None:
    """What the escalation keeps of the deflection decision: the parts made from documents only where
    every reader of the escalation may see those documents (its group's members, the asker)."""
    if decision is None:
        return None
    if isinstance(decision, Mapping):
        data = dict(decision)
    elif hasattr(decision, "to_dict"):
        data = decision.to_dict()
    else:
        return {"decision": str(decision)}
    answers = data.get("answers")
    ranked = data.get("ranked")
    hidden = False
    if isinstance(answers, list):
        kept = [a for a in answers if isinstance(a, Mapping) and isinstance(a.get("id"), str) and visible(a["id"])]
        hidden |= len(kept) != len(answers)
        data["answers"] = kept
    if isinstance(ranked, list):
        kept_ids = [i for i in ranked if isinstance(i, str) and visible(i)]
        hidden |= len(kept_ids) != len(ranked)
        data["ranked"] = kept_ids
    if hidden:  # the reason and signals may name or measure what was left out
        data["why"] = "documents this question's group may not see were left out"
        data.pop("signals", None)
        data.pop("features", None)
    return data


def check_attachments(attachments: Iterable[AttachmentInput], cfg: PeersConfig) -> list[tuple[str, str, bytes]]:
    """Each attachment as (safe filename, content type, bytes), checked against ``peers`` settings:
    accepted types, size, count, content that matches its type."""
    out = []
    for item in attachments:
        if isinstance(item, (str, Path)):
            path = Path(item)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InvalidEscalationError(f"attachment {path}: {exc.strerror}") from None
            filename, ctype = path.name, _guess_type(path.name)
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            filename, ctype, data = item
        elif isinstance(item, Mapping):
            filename, ctype, data = item.get("filename", ""), item.get("content_type", ""), item.get("data")
        else:
            filename, ctype, data = (getattr(item, "filename", ""), getattr(item, "content_type", ""),
                                     getattr(item, "data", None))
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidEscalationError("attachment: expected (filename, content_type, bytes)")
        data = bytes(data)
        filename = re.sub(r"[\x00-\x1f/\\]", "_", os.path.basename(str(filename or "attachment")))[:200]
        ctype = str(ctype or "").split(";")[0].strip().lower()
        if ctype not in cfg.attachment_types:
            raise InvalidEscalationError(f"attachment {filename}: type {ctype or '(none)'} not accepted "
                                         f"(accepted: {', '.join(cfg.attachment_types)})")
        if not data:
            raise InvalidEscalationError(f"attachment {filename}: empty")
        if len(data) > cfg.max_attachment_bytes:
            raise InvalidEscalationError(f"attachment {filename}: {len(data):,} bytes is over the limit of "
                                         f"{cfg.max_attachment_bytes:,}")
        if contradicts(data, ctype):
            raise InvalidEscalationError(f"attachment {filename}: content is not {ctype}")
        if ctype == "text/plain":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEscalationError(f"attachment {filename}: text is not UTF-8") from None
        out.append((filename, ctype, data))
    if len(out) > cfg.max_attachments:
        raise InvalidEscalationError(f"at most {cfg.max_attachments} attachments per question")
    return out


def _guess_type(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"
