"""HTTP API and the page employees use, for portals in any language or mounted inside a Python portal.

``create_app(kb)`` returns a WSGI application (``create_asgi_app`` the same as ASGI); ``serve`` runs
it under waitress, the production WSGI server.  Identity and groups come from the portal: see
`kbsearch.web._auth` (trusted headers behind a shared secret, or a signed token from `make_token`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._app import WebApp
from ._delivery import DeliveryLoop
from ._auth import AuthError, DuplicateHeaderError, ForbiddenError, Identity, make_token
from ._origin import CrossSiteRequestError

if TYPE_CHECKING:
    from ..kb import KnowledgeBase

log = logging.getLogger(__name__)

__all__ = ["AuthError", "CrossSiteRequestError", "DuplicateHeaderError", "ForbiddenError", "Identity", "WebApp",
           "create_app", "create_asgi_app", "make_token", "serve"]


def create_app(kb: KnowledgeBase, *, secret: str | None = None) -> WebApp:
    """The WSGI app for ``kb``; ``secret`` defaults to the environment variable ``web.secret_env``.

    Mount it in a Python portal like any WSGI app, e.g. with werkzeug's ``DispatcherMiddleware``
    under ``/kb``.
    """
    return WebApp(kb, secret=secret)


def create_asgi_app(kb: KnowledgeBase, *, secret: str | None = None, workers: int = 10) -> Any:
    """The same app for ASGI portals (Starlette, FastAPI, Django ASGI), run in a thread pool by a2wsgi."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(create_app(kb, secret=secret), workers=workers)


def serve(kb: KnowledgeBase, *, host: str | None = None, port: int | None = None,
          threads: int | None = None, secret: str | None = None,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve ``kb`` with waitress until interrupted (``kbsearch serve``); binds 127.0.0.1 by default.

    Unless ``peers.deliver_every`` is 0, the outbox is run in the background as `kbsearch deliver` would.
    ``ready`` is called with the URL once the address is bound (port 0: the port the system chose);
    an address that cannot be bound raises `OSError`.
    """
    from ._serve import make_server

    cfg = kb.settings.web
    app = create_app(kb, secret=secret)
    host = host or cfg.host
    port = cfg.port if port is None else port
    # One byte above the app's own limit (waitress refuses a body >= its cap): the app answers first
    # when it can, and what waitress refuses itself (e.g. a chunked body) is JSON too (`_serve`).
    server = make_server(app, host=host, port=port, threads=threads or cfg.threads,
                         max_request_body_size=app.max_body_bytes + 1, ident="kbsearch",
                         clear_untrusted_proxy_headers=True, channel_timeout=60)
    url = f"http://{server.effective_host}:{server.effective_port}/"
    log.info("serving %s on %s", kb.root, url)
    if ready is not None:
        ready(url)
    every = kb.settings.peers.deliver_every
    loop = DeliveryLoop(kb, every).start() if every > 0 else None
    try:
        server.run()
    finally:
        if loop is not None:
            loop.stop()
