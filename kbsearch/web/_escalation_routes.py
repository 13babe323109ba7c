"""Expert tools of the API: claim, assign and give back a question; what an escalation shows of them.

``POST /api/escalations/{id}/claim`` takes the question for the caller, or with ``{"to": name}``
hands it to a person of the group; ``POST /api/escalations/{id}/unclaim`` gives it back.  Both are for
members and experts of the group the question is with (the library adds who may assign or take it
from someone else: `peers._claims.ClaimRules`).  `escalation_extras` adds to every escalation the API
shows who holds it, the answer's earlier versions and its SLA state; it is only called for callers
the API already let see the escalation (`WebApp._escalation_for` / the group and asker filters).
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ._auth import ForbiddenError, Identity
from ._calls import call_kb

def rules() -> list[Rule]:
    """The URL rules of this module, fresh for each `WebApp.url_map` (a rule binds to one map)."""
    return [
        Rule("/api/escalations/<esc_id>/claim", endpoint="claim", methods=["POST"]),
        Rule("/api/escalations/<esc_id>/unclaim", endpoint="unclaim", methods=["POST"]),
    ]


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def answer_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier versions of an answer, oldest first, from the ``answer_changed`` events of an
    escalation's history: each replaced text with its author, when it was written and when and by whom
    it was replaced (the current text is the escalation's ``answer``)."""
    out = []
    for event in events or []:
        if not isinstance(event, dict) or event.get("kind") != "answer_changed":
            continue
        detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
        out.append({"text": detail.get("previous"), "by": detail.get("previous_by"),
                    "at": detail.get("previous_at"), "replaced_at": _iso(event.get("at")),
                    "replaced_by": event.get("actor"), "revision": detail.get("revision")})
    return out


def sla_view(kb: Any, escalation: Any) -> dict[str, Any] | None:
    """The SLA state of an open escalation read with its history (`KnowledgeBase.escalation_sla`):
    hours open in its group, reminders, next reminder, when it is overdue; None otherwise."""
    if not getattr(escalation, "events", None) or not getattr(escalation, "open", False):
        return None
    method = getattr(kb, "escalation_sla", None)
    return method(escalation) if callable(method) else None


def escalation_extras(escalation: Any) -> dict[str, Any]:
    """What the API adds to an escalation it shows: ``claimed_by`` / ``claimed_at`` / ``assigned_by``,
    and ``answer_history`` (earlier versions; empty when never changed), from the escalation object
    or its dict."""
    data = escalation.to_dict() if hasattr(escalation, "to_dict") else escalation
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {k: data.get(k) for k in ("claimed_by", "claimed_at", "assigned_by")}
    out["answer_history"] = answer_history(data.get("events") or [])
    return out


class EscalationRoutes:
    """The handlers of `rules`, mixed into `WebApp` (they use its identity, body and view helpers)."""

    def _holdable(self, who: Identity, esc_id: str) -> Any:
        """The escalation, when the caller is a member or an expert of the group it is with."""
        if who.anonymous:
            raise ForbiddenError("sign in through your portal to take a question")
        esc = call_kb(self.kb, "escalation", self.check_id(esc_id))
        if esc.group not in who.groups and esc.group not in self.verify_rights(who)["expert_of"]:
            raise ForbiddenError("only members and experts of the group a question is with can take or assign it")
        return esc

    def on_claim(self, request: Request, esc_id: str) -> Response:
        """Take the question (no ``to``: refused while someone else holds it), or hand it to ``to``, a
        person of its group (an expert naming themselves takes it over)."""
        who = self.identity(request)
        esc = self._holdable(who, esc_id)
        data = self.body(request) if request.content_length else {}
        to = self.text_field(data, "to", required=False, max_chars=200)
        if to is None:
            result = call_kb(self.kb, "claim", esc.id, by=who.user)
        else:
            result = call_kb(self.kb, "assign", esc.id, to, by=who.user)
        return self.json(self.view(who, result))

    def on_unclaim(self, request: Request, esc_id: str) -> Response:
        """Give the question back, so anyone of the group may take it."""
        who = self.identity(request)
        esc = self._holdable(who, esc_id)
        result = call_kb(self.kb, "unclaim", esc.id, by=who.user)
        return self.json(self.view(who, result))
