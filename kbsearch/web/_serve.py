"""Waitress with the API's error format: the requests waitress refuses itself are answered in JSON too.

Waitress answers some requests before the app sees them (a body over ``max_request_body_size``,
chunked or not; a malformed request line or header) with a text/plain page.  A client of the API
(the page on a phone, a portal) expects ``{"error", "type"}`` from every 4xx, so those answers are
written by `JsonErrorTask` instead.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

_TYPES = {413: "RequestTooLarge", 431: "RequestHeaderFieldsTooLarge", 400: "BadRequest",
          501: "NotImplementedApi", 500: "InternalError"}


class JsonErrorTask(ErrorTask):
    """Waitress's own error answer as the API's JSON error, with the app's security headers."""

    def execute(self) -> None:
        err = self.request.error
        app = self.channel.server.application
        if err.code == 413 and callable(getattr(app, "too_large", None)):
            body = app.too_large().get_data()  # the very answer the app gives
        else:
            if err.code == 413:
                message = f"request too large (at most {self.channel.server.adj.max_request_body_size - 1} bytes)"
            else:
                message = f"{err.reason}: {err.body}" if err.body else err.reason
            body = json.dumps({"error": message, "type": _TYPES.get(err.code, "BadRequest")}).encode("utf-8")
        self.status = f"{err.code} {err.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
                                      ("Cache-Control", "no-store")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    """An HTTP channel whose refusals (413, 400, 431 ...) are `JsonErrorTask` answers."""

    error_task_class = JsonErrorTask


def make_server(app: Any, *, host: str, port: int, **options: Any) -> Any:
    """``waitress.create_server(app, **options)`` on ``host:port``, answering its own errors in JSON.

    The address is bound here first, so one that cannot be bound (in use, not ours) raises `OSError`
    before waitress starts any thread or opens anything else.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    try:
        server = create_server(app, sockets=[sock], **options)
    except BaseException:
        sock.close()
        raise
    server.channel_class = JsonErrorChannel
    return server
