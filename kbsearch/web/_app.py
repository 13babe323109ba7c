"""The WSGI application: JSON endpoints under ``/api/`` and the static page at ``/``.

Every endpoint authenticates the caller (see `_auth`), validates its input, calls one
`KnowledgeBase` method and returns JSON.  Errors are JSON too: `KbsearchError` subclasses map to their
``http_status`` (4xx), anything unexpected to a 500 that names a reference but never a traceback.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import uuid
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .._content_types import image_type
from ..errors import IndexLockedError, KbsearchError
from ._auth import Authenticator, ForbiddenError, Identity, read_secret
from ._calls import call_kb, has_kb
from ._admin_routes import AdminRoutes
from ._admin_routes import rules as admin_rules
from ._inputs import BadRequest, RequestInputs, parse_json
from ._escalation_routes import EscalationRoutes, escalation_extras, sla_view
from ._escalation_routes import rules as escalation_rules
from ._origin import OriginGuard
from ._results import enrich_answers, similar_hint
from ._views import _escalation_view, _to_jsonable

log = logging.getLogger(__name__)

_STATUSES = ("open", "all", "asked", "escalated", "answered", "accepted", "verified", "duplicate", "unanswerable")


class WebApp(EscalationRoutes, AdminRoutes, RequestInputs):
    """A WSGI callable serving the kbsearch API and page for one `KnowledgeBase`."""

    def __init__(self, kb: Any, *, secret: str | None = None, settings: Any = None) -> None:
        self.kb = kb
        self.cfg = (settings or kb.settings).web
        if secret is None:
            secret = read_secret(self.cfg.secret_env)
        self.auth = Authenticator(secret, max_age=self.cfg.token_max_age,
                                  allow_anonymous=self.cfg.allow_anonymous)
        self.origins = OriginGuard(self.cfg.portal_origins)
        self.static = resources.files("kbsearch.web") / "static"
        self.url_map = Map([
            Rule("/", endpoint="page", methods=["GET"]),
            Rule("/static/<path:name>", endpoint="static", methods=["GET"]),
            Rule("/api/health", endpoint="health", methods=["GET"]),
            Rule("/api/me", endpoint="me", methods=["GET"]),
            Rule("/api/groups", endpoint="groups", methods=["GET"]),
            Rule("/api/search", endpoint="search", methods=["POST"]),
            Rule("/api/ask", endpoint="ask", methods=["POST"]),
            Rule("/api/feedback", endpoint="feedback", methods=["POST"]),
            Rule("/api/escalations", endpoint="escalate", methods=["POST"]),
            Rule("/api/escalations", endpoint="escalations", methods=["GET"]),
            Rule("/api/route", endpoint="route", methods=["POST"]),
            Rule("/api/similar", endpoint="similar", methods=["POST"]),
            Rule("/api/escalations/<esc_id>/answer", endpoint="answer", methods=["POST"]),
            Rule("/api/escalations/<esc_id>/follow", endpoint="follow", methods=["POST"]),
            Rule("/api/escalations/<esc_id>/reroute", endpoint="reroute", methods=["POST"]),
            Rule("/api/escalations/<esc_id>", endpoint="escalation", methods=["GET"]),
            Rule("/api/escalations/<esc_id>/attachments/<att_id>", endpoint="attachment", methods=["GET"]),
            Rule("/api/report", endpoint="report", methods=["GET"]),
            *escalation_rules(),
            *admin_rules(),
        ], strict_slashes=False)

    # -- WSGI plumbing ----------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self.max_body_bytes
        # werkzeug applies this limit also to its multipart decoder's buffer, which takes 64 KiB chunks
        # on top of what it holds back: with the bare JSON limit, photos over ~100 KB got a 413.
        request.max_form_memory_size = self.cfg.max_json_bytes + 128 * 1024
        try:
            if (request.content_length or 0) > self.max_body_bytes:
                response = self.too_large()  # said before any byte of the body is read
            else:
                response = self.dispatch(request)
        finally:
            request.close()  # closes uploaded files (spooled temporary files)
        self._secure(response)
        return response(environ, start_response)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body taken: a photo and the form fields around it."""
        return int(self.cfg.max_photo_bytes) + 64 * 1024

    def too_large(self) -> Response:
        """The JSON 413 of every over-limit body (waitress answers the same way, see `serve`)."""
        return self.error(413, f"request too large (at most {self.cfg.max_photo_bytes} bytes with a photo, "
                          f"{self.cfg.max_json_bytes} bytes of JSON)", "RequestTooLarge")

    def dispatch(self, request: Request) -> Response:
        try:
            adapter = self.url_map.bind_to_environ(request.environ)
            endpoint, values = adapter.match()
            if not self.auth.uses_token(request.headers):  # cookies may stand behind trusted headers
                self.origins.check(request.method, request.headers, request.host)
            handler = getattr(self, "on_" + endpoint)
            return handler(request, **values)
        except KbsearchError as exc:
            status = getattr(exc, "http_status", 400)
            if status >= 500 and status != 501:
                log.error("%s %s: %s", request.method, request.path, exc)
            resp = self.error(status, str(exc), type(exc).__name__)
            if isinstance(exc, IndexLockedError):
                resp.headers["Retry-After"] = "5"
            return resp
        except RequestEntityTooLarge:
            return self.too_large()
        except HTTPException as exc:
            resp = self.error(exc.code or 400, exc.name, type(exc).__name__)
            if exc.code == 405 and getattr(exc, "valid_methods", None):
                resp.headers["Allow"] = ", ".join(exc.valid_methods)
            return resp
        except Exception:  # noqa: BLE001 - the API never shows a traceback to the caller
            ref = uuid.uuid4().hex[:12]
            log.exception("unexpected error %s in %s %s", ref, request.method, request.path)
            return self.error(500, f"internal error (reference {ref}; see the server log)", "InternalError")

    @staticmethod
    def error(status: int, message: str, kind: str) -> Response:
        return Response(json.dumps({"error": message, "type": kind}), status=status,
                        mimetype="application/json")

    @staticmethod
    def json(data: Any, status: int = 200) -> Response:
        data = _to_jsonable(data)
        try:
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from stored data: \u escapes are still valid JSON
            body = json.dumps(data, separators=(",", ":")).encode("ascii")
        return Response(body, status=status, mimetype="application/json")

    def _secure(self, response: Response) -> None:
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                     f"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors {self.cfg.frame_ancestors}")
        h.setdefault("Cache-Control", "no-store")

    def view(self, who: Identity, escalation: Any) -> dict[str, Any]:
        """`_escalation_view` for ``who``: documents in it that the caller may not see are left out.

        A question closed as a duplicate also shows the earlier answer (``duplicate_answer``: title,
        text, url) when the caller may read it, so the asker finds it on the page.
        """
        def visible(doc_id: str) -> bool:
            return self.kb.get(doc_id, user_groups=list(who.groups)) is not None
        out = _escalation_view(escalation, visible)
        if (getattr(escalation, "revision", 0) or 0) > 1 and not getattr(escalation, "events", None) \
                and has_kb(self.kb, "escalation"):
            escalation = self.kb.escalation(escalation.id)  # a list entry: read its history for earlier answers
        out.update(escalation_extras(escalation))
        sla = sla_view(self.kb, escalation)
        if sla is not None:
            out["sla"] = sla
        dup = out.get("duplicate_of")
        if isinstance(dup, str) and has_kb(self.kb, "get"):
            doc = self.kb.get(dup, user_groups=list(who.groups))
            out["duplicate_answer"] = ({"title": doc.title, "text": doc.text, "url": doc.url}
                                       if doc is not None else None)
        return out

    def verify_rights(self, who: Identity) -> dict[str, list[str]]:
        """Which peer groups list the caller as an expert (``expert_of``), and for which of the caller's
        groups an answer may be marked verified (``may_verify``: expert, or the group has no experts):
        the library's rule (`PeerLoop._check_expert`), so the page offers the box only where it works."""
        if who.anonymous or not has_kb(self.kb, "groups"):
            return {"expert_of": [], "may_verify": []}
        expert_of, may_verify = [], []
        for group in call_kb(self.kb, "groups"):
            name, experts = getattr(group, "name", None), tuple(getattr(group, "experts", ()) or ())
            if not isinstance(name, str):
                continue
            if who.user in experts:
                expert_of.append(name)
            if name in who.groups and (who.user in experts or not experts):
                may_verify.append(name)
        return {"expert_of": expert_of, "may_verify": may_verify}

    # -- page -------------------------------------------------------------------------------
    def on_page(self, request: Request) -> Response:
        return self._static_file("index.html")

    def on_static(self, request: Request, name: str) -> Response:
        return self._static_file(name)

    def _static_file(self, name: str) -> Response:
        if "/" in name or name.startswith(".") or "\\" in name:
            raise NotFound()
        path = self.static / name
        if not path.is_file():
            raise NotFound()
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        resp = Response(path.read_bytes(), mimetype=mime)
        if mime.startswith("text/") or mime in ("application/javascript",):
            resp.charset = "utf-8"
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    # -- API --------------------------------------------------------------------------------
    def on_health(self, request: Request) -> Response:
        features = {name: has_kb(self.kb, name) for name in
                    ("search", "ask", "feedback", "escalate", "escalations", "answer", "report", "reindex",
                     "route", "similar_questions", "follow", "reroute", "claim", "assign", "unclaim")}
        return self.json({"status": "ok", "generation": self.kb.generation_path.name, "features": features,
                          "limits": {"max_photo_bytes": int(self.cfg.max_photo_bytes)}})

    def on_me(self, request: Request) -> Response:
        who = self.identity(request)
        return self.json({**who.to_dict(), **self.verify_rights(who)})

    def on_groups(self, request: Request) -> Response:
        """The groups (name, description); for the caller's own groups also their named people
        (``people``: experts, then members), whom a question may be assigned to."""
        who = self.identity(request)
        if not has_kb(self.kb, "groups"):
            return self.json({"groups": []})
        groups = call_kb(self.kb, "groups")
        out = []
        for g in groups:
            if isinstance(g, str):
                out.append({"name": g, "description": ""})
            else:
                d = _to_jsonable(g)
                item = {"name": d.get("name"), "description": d.get("description", "")}
                if not who.anonymous and d.get("name") in who.groups:
                    item["people"] = list(dict.fromkeys([*(d.get("experts") or []), *(d.get("members") or [])]))
                out.append(item)
        return self.json({"groups": out})

    def on_search(self, request: Request) -> Response:
        who = self.identity(request)
        data = self.body(request)
        question = self.text_field(data, "question")
        limit = self.int_field(data, "limit", self.kb.settings.search.limit, 1, 50)
        hits = self.kb.search(question, limit=limit, user_groups=list(who.groups))
        return self.json({"question": question, "hits": hits})

    def on_ask(self, request: Request) -> Response:
        who = self.identity(request)
        data = self.body(request)
        question = self.text_field(data, "question")
        decision = call_kb(self.kb, "ask", question, user=who.user, groups=list(who.groups), escalate=False)
        data = _to_jsonable(decision)
        return self.json(enrich_answers(self.kb, data, list(who.groups)) if isinstance(data, dict) else data)

    def on_feedback(self, request: Request) -> Response:
        who = self.identity(request)
        data = self.body(request)
        decision_id = self.text_field(data, "decision_id", max_chars=200)
        helpful = self.bool_field(data, "helpful")
        comment = self.text_field(data, "comment", required=False, max_chars=2000)
        escalated = self.bool_field(data, "escalated", False)
        result = call_kb(self.kb, "feedback", decision_id, helpful, user=who.user, comment=comment,
                         escalated=escalated)
        return self.json({"ok": True, "feedback": result}, status=201)

    def on_escalate(self, request: Request) -> Response:
        who = self.identity(request)
        if who.anonymous:
            raise ForbiddenError("sign in through your portal to ask the peers")
        data = self.body(request, form=True)
        question = self.text_field(data, "question", max_chars=self.kb.settings.search.max_question_chars)
        details = self.text_field(data, "details", required=False, max_chars=10_000) or ""
        group = self.group_field(data)
        decision_id = self.text_field(data, "decision_id", required=False, max_chars=200)
        photo = self.photo(request) if request.mimetype == "multipart/form-data" else None
        seen = data.get("seen")
        if isinstance(seen, str):
            seen = parse_json(seen.encode("utf-8", "surrogatepass"), "'seen'")
        if seen is not None and (not isinstance(seen, list) or len(seen) > 50
                                 or not all(isinstance(x, str) and 0 < len(x) < 500 and x.isprintable() for x in seen)):
            raise BadRequest("'seen' must be a list of at most 50 document ids")
        attachments = [(photo["name"], photo["content_type"], photo["data"])] if photo else []
        # A phone that lost the answer sends the request again with the same key: one escalation.
        key = request.headers.get("Idempotency-Key")
        escalation = call_kb(self.kb, "escalate", question, user=who.user, group=group, groups=list(who.groups),
                             seen=seen or [],
                             attachments=attachments, note=details,
                             decision={"id": decision_id} if decision_id else None,
                             **({"idempotency_key": key} if key is not None else {}))
        if escalation.replayed:  # nothing stored, nothing sent: the first request's escalation
            out = self.view(who, escalation)
            out["similar"] = similar_hint(self.kb, escalation, user=who.user, groups=list(who.groups))
            replay = self.json(out, status=200)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        if decision_id and has_kb(self.kb, "usage"):
            try:  # link the logged decision to its escalation (the deflection report counts it)
                self.kb.usage.set_escalation(decision_id, str(escalation.id))
            except KbsearchError as exc:
                log.warning("escalation %s not linked to decision: %s", escalation.id, exc)
        out = self.view(who, escalation)
        out["similar"] = similar_hint(self.kb, escalation, user=who.user, groups=list(who.groups))
        return self.json(out, status=201)

    def on_escalations(self, request: Request) -> Response:
        who = self.identity(request)
        args = dict(request.args)
        group = self.group_field(args)
        status = args.get("status", "open")
        if status not in _STATUSES:
            raise BadRequest(f"'status' must be one of {', '.join(_STATUSES)}")
        limit = self.int_field(args, "limit", 100, 1, 500)
        mine = self.bool_field(args, "mine", False)
        if who.anonymous:
            raise ForbiddenError("sign in through your portal to see questions")
        filters: dict[str, Any] = {"open_only": status == "open", "limit": limit,
                                   "status": None if status in ("open", "all") else status}
        if mine:
            found = list(call_kb(self.kb, "escalations", user=who.user, **filters))
        else:
            if group is not None and group not in who.groups:
                raise ForbiddenError("you are not in that group")
            found = []
            for g in [group] if group else who.groups:
                found.extend(call_kb(self.kb, "escalations", group=g, **filters))
        return self.json({"escalations": [self.view(who, e) for e in found]})

    def _escalation_for(self, who: Identity, esc_id: str) -> Any:
        esc = call_kb(self.kb, "escalation", esc_id)
        if who.anonymous or (esc.group not in who.groups and esc.user != who.user):
            raise ForbiddenError("this question belongs to a group you are not in")
        return esc

    def on_escalation(self, request: Request, esc_id: str) -> Response:
        who = self.identity(request)
        esc = self._escalation_for(who, self.check_id(esc_id))
        return self.json(self.view(who, esc))

    def on_answer(self, request: Request, esc_id: str) -> Response:
        who = self.identity(request)
        esc_id = self.check_id(esc_id)
        if who.anonymous:
            raise ForbiddenError("sign in through your portal to answer")
        esc = self._escalation_for(who, esc_id)
        if esc.group not in who.groups:
            raise ForbiddenError("only members of the group can answer")
        data = self.body(request)
        text = self.text_field(data, "text", max_chars=50_000)
        verify = self.bool_field(data, "verify")
        result = call_kb(self.kb, "answer", esc_id, text, by=who.user, verify=verify)
        return self.json(self.view(who, result))

    def on_route(self, request: Request) -> Response:
        """The group a question would go to and why, for the caller (the reason names only words of
        documents they may see), so the page can show it before sending and keep it unless changed."""
        who = self.identity(request)
        data = self.body(request)
        question = self.text_field(data, "question", max_chars=self.kb.settings.search.max_question_chars)
        routing = call_kb(self.kb, "route", question, groups=list(who.groups))
        return self.json({k: getattr(routing, k, None) for k in ("group", "confidence", "reason")})

    def on_similar(self, request: Request) -> Response:
        """Open and answered questions like this one that the caller may see (their own, their groups',
        answered ones whose answer they may read): "asked already — follow it"."""
        who = self.identity(request)
        data = self.body(request)
        question = self.text_field(data, "question", max_chars=self.kb.settings.search.max_question_chars)
        limit = self.int_field(data, "limit", 5, 1, 20)
        found = call_kb(self.kb, "similar_questions", question, user=who.user, groups=list(who.groups), limit=limit)
        keys = ("id", "question", "status", "group", "open", "mine", "following", "followers", "answer", "verified")
        return self.json({"questions": [{k: q[k] for k in keys if k in q} for q in found]})

    def on_follow(self, request: Request, esc_id: str) -> Response:
        who = self.identity(request)
        esc_id = self.check_id(esc_id)
        if who.anonymous:
            raise ForbiddenError("sign in through your portal to follow a question")
        esc = call_kb(self.kb, "follow", esc_id, user=who.user, groups=list(who.groups))
        return self.json({**self.view(who, esc), "following": True})

    def on_reroute(self, request: Request, esc_id: str) -> Response:
        """Send a question to another group: members and experts of the group it is with now."""
        who = self.identity(request)
        esc_id = self.check_id(esc_id)
        if who.anonymous:
            raise ForbiddenError("sign in through your portal to reroute")
        esc = call_kb(self.kb, "escalation", esc_id)
        if esc.group not in who.groups and esc.group not in self.verify_rights(who)["expert_of"]:
            raise ForbiddenError("only members and experts of the group a question is with can reroute it")
        data = self.body(request)
        group = self.group_field(data)
        if group is None:
            raise BadRequest("'group' is required")
        reason = self.text_field(data, "reason", max_chars=2000)
        result = call_kb(self.kb, "reroute", esc_id, group, reason=reason, by=who.user)
        return self.json(self.view(who, result))

    def on_attachment(self, request: Request, esc_id: str, att_id: str) -> Response:
        who = self.identity(request)
        esc_id = self.check_id(esc_id)
        att_id = self.check_id(att_id)
        self._escalation_for(who, esc_id)
        att = call_kb(self.kb, "attachment", esc_id, att_id)
        data = getattr(att, "data", None) or b""
        mime = image_type(data)
        if mime is None:
            raise NotFound()
        resp = Response(data, mimetype=mime)
        resp.headers["Content-Disposition"] = "inline"
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    def on_report(self, request: Request) -> Response:
        who = self.identity(request)
        if who.anonymous or not set(who.groups) & set(self.cfg.report_groups):
            # It lists other people's unanswered questions: for the groups the operator named.
            raise ForbiddenError("the report is only for members of the groups in web.report_groups")
        days = self.int_field(dict(request.args), "days", 90, 1, 3650)
        report = call_kb(self.kb, "report", days=days)
        return self.json(report)

