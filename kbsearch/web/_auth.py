"""Who is calling: identity and groups handed over by the portal, never chosen by the browser.

Two ways, both resting on one shared secret that the portal and kbsearch read from the environment:

* **Trusted headers** (a portal or reverse proxy in front of kbsearch): ``X-Kbsearch-Secret`` must
  equal the secret; then ``X-Kbsearch-User`` and ``X-Kbsearch-Groups`` (separated by ``;``) are
  believed.  Each must be sent once: see `check_single` for why a comma means "sent twice".
* **Signed token** (the portal links to the page or calls the API directly):
  ``Authorization: Bearer <token>`` where the token was made by `make_token` with the same secret; it
  carries the user and groups and expires (``web.token_max_age``).

Without either, a caller is anonymous: public documents only (or 401 when ``web.allow_anonymous`` is
off).  Wrong credentials are a 401, never a silent downgrade, so a misconfigured portal is noticed.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from ..errors import ConfigError, KbsearchError, PermissionDeniedError

SECRET_HEADER = "X-Kbsearch-Secret"
USER_HEADER = "X-Kbsearch-User"
GROUPS_HEADER = "X-Kbsearch-Groups"
_SALT = "kbsearch-web-token"
_NAME = re.compile(r"^[\w][\w .:@/+-]{0,99}$")
MIN_SECRET_CHARS = 16


class AuthError(KbsearchError):
    """Credentials were given but are not valid (or are required and missing)."""

    http_status = 401


class DuplicateHeaderError(KbsearchError):
    """A trusted header arrived more than once (merged into one value with commas): a 400, never a union."""


class ForbiddenError(PermissionDeniedError):
    """The caller may not do this over the web (e.g. answer for a group they are not in)."""


@dataclass(frozen=True)
class Identity:
    """The caller as the portal vouched for them; ``groups`` drive the access filter."""

    user: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)
    via: str = "anonymous"

    @property
    def anonymous(self) -> bool:
        return self.user is None

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "groups": list(self.groups), "via": self.via}


ANONYMOUS = Identity()


def _clean_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value.strip()):
        raise AuthError(f"invalid {what}: use 1-100 letters, digits, spaces or . : @ / + - _")
    return value.strip()


def _clean_groups(values: Iterable[object]) -> tuple[str, ...]:
    groups = []
    for value in values:
        name = _clean_name(value, "group name")
        if name not in groups:
            groups.append(name)
    if len(groups) > 100:
        raise AuthError("too many groups (at most 100)")
    return tuple(groups)


def read_secret(env_name: str, env: dict[str, str] | None = None) -> str | None:
    """The shared secret from the environment variable ``env_name`` (None when unset)."""
    value = (os.environ if env is None else env).get(env_name) or None
    if value is not None and len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"${env_name} is too short: use at least {MIN_SECRET_CHARS} random characters")
    return value


class _ClockSigner(TimestampSigner):
    """itsdangerous' timestamp signer reading an injected clock (tests move time instead of sleeping)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def _serializer(secret: str, clock: Callable[[], float] = time.time) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=_SALT, signer=_ClockSigner, signer_kwargs={"clock": clock})


def make_token(user: str, groups: Iterable[str] = (), *, secret: str | None = None,
               secret_env: str = "KBSEARCH_WEB_SECRET") -> str:
    """A signed, expiring token for ``user`` in ``groups`` that the portal hands to the page or API.

    The secret defaults to the environment variable ``secret_env``; the lifetime is checked on use.
    """
    secret = secret or read_secret(secret_env)
    if not secret:
        raise ConfigError(f"no shared secret: set ${secret_env}")
    payload = {"u": _clean_name(user, "user"), "g": list(_clean_groups(groups))}
    return _serializer(secret).dumps(payload)


def check_single(headers: Any, secret: str) -> None:
    """Refuse trusted headers that were sent more than once (`DuplicateHeaderError`, a 400).

    HTTP lets servers and proxies merge repeated header lines into one value joined by commas
    (waitress joins with ", ", werkzeug's and gunicorn's servers with ","; Apache's ``RequestHeader
    append`` does it in the proxy), so the application never sees two lines, only a comma.  A proxy
    that appends its header instead of replacing the client's would otherwise hand the client's
    groups through.  No valid user or group name contains a comma (see ``_NAME``), so for those a
    comma is proof of a merge, whichever server or proxy merged; that is why groups are separated by
    ``;`` and a comma-separated list is refused rather than guessed at.  The secret is checked the
    same way unless it equals the configured secret (which may itself contain a comma).
    """
    given = headers.get(SECRET_HEADER)
    if given is not None and "," in given and not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        raise DuplicateHeaderError(f"{SECRET_HEADER} was sent more than once: the proxy must replace it, not add it")
    user = headers.get(USER_HEADER)
    if user is not None and "," in user:
        raise DuplicateHeaderError(f"{USER_HEADER} was sent more than once (or contains a comma): the proxy must "
                                   "strip client-sent X-Kbsearch-* headers and set it once")
    groups = headers.get(GROUPS_HEADER)
    if groups is not None and "," in groups:
        raise DuplicateHeaderError(f"{GROUPS_HEADER} was sent more than once, or as a comma-separated list: the "
                                   "proxy must strip client-sent X-Kbsearch-* headers and set it once, with "
                                   "groups separated by ';'")


class Authenticator:
    """Turns a request's headers into an `Identity` (see the module docstring for the rules)."""

    def __init__(self, secret: str | None, *, max_age: int, allow_anonymous: bool,
                 clock: Callable[[], float] = time.time) -> None:
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"the shared secret is too short: use at least {MIN_SECRET_CHARS} characters")
        self.secret = secret
        self.max_age = max_age
        self.allow_anonymous = allow_anonymous
        #: What a token's age is measured against (seconds since the epoch).
        self.clock = clock

    def identify(self, headers: Any) -> Identity:
        given_secret = headers.get(SECRET_HEADER)
        if given_secret is not None or headers.get(USER_HEADER) is not None:
            return self._from_headers(given_secret, headers)
        auth = headers.get("Authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("unsupported Authorization header: use 'Bearer <token>'")
            return self._from_token(token.strip())
        if not self.allow_anonymous:
            raise AuthError("credentials required")
        return ANONYMOUS

    def uses_token(self, headers: Any) -> bool:
        """Whether `identify` would take the caller from a bearer token (never sent by a browser on its own)."""
        if headers.get(SECRET_HEADER) is not None or headers.get(USER_HEADER) is not None:
            return False
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and bool(token.strip())

    def _from_headers(self, given: str | None, headers: Any) -> Identity:
        if not self.secret:
            raise AuthError("trusted headers are not accepted: no shared secret is configured")
        check_single(headers, self.secret)
        if given is None or not hmac.compare_digest(given.encode("utf-8"), self.secret.encode("utf-8")):
            raise AuthError(f"missing or wrong {SECRET_HEADER}")
        user = headers.get(USER_HEADER)
        if not user:
            raise AuthError(f"{USER_HEADER} is required with {SECRET_HEADER}")
        raw_groups = headers.get(GROUPS_HEADER, "")
        groups = _clean_groups(g for g in raw_groups.split(";") if g.strip())
        return Identity(_clean_name(user, "user"), groups, "header")

    def _from_token(self, token: str) -> Identity:
        if not self.secret:
            raise AuthError("tokens are not accepted: no shared secret is configured")
        try:
            data = _serializer(self.secret, self.clock).loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise AuthError("token expired: ask the portal for a new one") from None
        except BadSignature:
            raise AuthError("invalid token") from None
        if not isinstance(data, dict) or not isinstance(data.get("g", []), list):
            raise AuthError("invalid token")
        return Identity(_clean_name(data.get("u"), "user"), _clean_groups(data.get("g", [])), "token")
