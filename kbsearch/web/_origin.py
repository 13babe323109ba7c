"""Refusing cross-site writes: a page on another site must not act as the signed-in user.

When a portal's reverse proxy turns the user's session cookie into trusted headers, the browser sends
that cookie with any request to the proxy, also one a page on another site makes it send (an
auto-submitted form).  So a state-changing request (POST, PUT, PATCH, DELETE) that is not
authenticated by a bearer token is refused (403) when the browser says it comes from elsewhere:

* an ``Origin`` header that is neither the request's own origin (the ``Host`` it was sent to) nor one
  of ``web.portal_origins``; ``Origin: null`` (sandboxed frames, ``file:``, some redirects) is never
  allowed;
* without ``Origin``, ``Sec-Fetch-Site: cross-site`` or ``same-site``.

Requests with neither header (curl, a portal's backend) pass: no browser made them.  A bearer token is
exempt because a browser never attaches an ``Authorization`` header by itself.  The own origin is
compared by host and port only: TLS usually ends at the proxy, so kbsearch sees ``http`` while the
browser says ``https``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, PermissionDeniedError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CrossSiteRequestError(PermissionDeniedError):
    """A state-changing request came from a page of another site (or an opaque ``null`` origin)."""


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` → (scheme, host, port); None for ``null`` or anything else."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if (parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        return None
    return parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme]


def parse_portal_origins(values: Iterable[str]) -> frozenset[tuple[str, str, int]]:
    """Validate ``web.portal_origins``; every entry must be an origin like ``https://portal.example``."""
    out = set()
    for value in values:
        origin = parse_origin(value) if isinstance(value, str) else None
        if origin is None:
            raise ConfigError(f"web.portal_origins: {value!r} is not an origin; write scheme://host[:port], "
                              "e.g. https://portal.example (no path, no '*', no 'null')")
        out.add(origin)
    return frozenset(out)


def _same_host(origin: tuple[str, str, int], host: str) -> bool:
    """Whether ``origin`` names the host and port the request was sent to (its ``Host`` header)."""
    try:
        parts = urlsplit("//" + host)
        port = parts.port
    except ValueError:
        return False
    if not parts.hostname or parts.hostname.lower() != origin[1]:
        return False
    return port == origin[2] if port is not None else origin[2] == _DEFAULT_PORTS[origin[0]]


class OriginGuard:
    """Decides whether a request may change state, from the ``Origin`` / ``Sec-Fetch-Site`` it carries."""

    def __init__(self, portal_origins: Iterable[str]) -> None:
        self.allowed = parse_portal_origins(portal_origins)

    def check(self, method: str, headers: Any, host: str) -> None:
        """Raise `CrossSiteRequestError` for a state-changing request a browser sent from another site."""
        if method.upper() not in UNSAFE_METHODS:
            return
        raw = headers.get("Origin")
        if raw is not None:
            origin = parse_origin(raw)
            if origin is not None and (origin in self.allowed or _same_host(origin, host)):
                return
            raise CrossSiteRequestError("cross-site request refused: its Origin is neither this site nor one "
                                        "of web.portal_origins (a portal calling from elsewhere uses a bearer "
                                        "token, or the operator lists its origin)")
        site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
        if site in ("cross-site", "same-site"):
            raise CrossSiteRequestError(f"cross-site request refused (Sec-Fetch-Site: {site})")
