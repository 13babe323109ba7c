"""Fetching pages politely: sessions, robots.txt, per-host limits, retries, conditional GET.

Retries and back-off (including ``Retry-After`` on 429/503) are urllib3's `Retry` mounted on
requests' `HTTPAdapter`; robots.txt is parsed by Protego.  Redirects are followed here, hop by hop,
so each hop is checked against the scope and robots.txt and loops are caught.  Bodies are streamed
with a size cap and a whole-page deadline (a server that drips bytes cannot hold a worker forever).
Credentials live only in the sessions' headers; they never appear in results or messages.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import requests
from protego import Protego
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from .frontier import canonical_url, host_of

log = logging.getLogger(__name__)

#: Content types parsed as HTML pages.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
#: Status codes retried (with back-off, honouring Retry-After).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHUNK = 64 * 1024


@dataclass
class FetchOptions:
    """The fetch-related part of the crawl settings (defaults live in `config.CrawlConfig`)."""

    user_agent: str
    connect_timeout: float
    read_timeout: float
    page_timeout: float
    retries: int
    backoff: float
    retry_after_max: float
    max_bytes: int
    max_redirects: int
    delay: float
    connections_per_host: int
    respect_robots: bool
    #: Consecutive transport failures after which a host is treated as gone for this run.
    host_failure_limit: int
    verify_tls: bool


@dataclass
class Credentials:
    """Per-source authentication material (never logged, never stored, never reported)."""

    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None

    def __repr__(self) -> str:  # keep secrets out of tracebacks and debug logs
        return (f"Credentials(headers={sorted(self.headers)}, cookies={sorted(self.cookies)}, "
                f"basic={'set' if self.basic else None})")


@dataclass
class FetchResult:
    """What fetching one URL gave: a body to parse, a 304, a definitive 404/410, a skip or a failure."""

    url: str
    final_url: str
    status: int = 0
    content_type: str = ""
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    x_robots: str = ""
    body: bytes | None = None
    body_hash: str | None = None
    #: Canonical URLs passed through on the way (redirect sources), final excluded.
    aliases: tuple[str, ...] = ()
    skip: str | None = None
    error: str | None = None
    retried: int = 0
    seconds: float = 0.0

    @property
    def gone(self) -> bool:
        return self.status in (404, 410)

    @property
    def updated(self) -> str | None:
        """Last-Modified as ISO-8601, when the server sent a parseable one."""
        if not self.last_modified:
            return None
        try:
            return parsedate_to_datetime(self.last_modified).isoformat()
        except (TypeError, ValueError):
            return None


class HostGate:
    """At most ``connections`` concurrent requests to a host, starts at least ``delay`` apart."""

    def __init__(self, connections: int, delay: float) -> None:
        self._slots = threading.BoundedSemaphore(max(1, connections))
        self._lock = threading.Lock()
        self._next = 0.0
        self.delay = delay
        self.failures = 0

    def __enter__(self) -> HostGate:
        self._slots.acquire()
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.delay
        if start > now:
            time.sleep(start - now)
        return self

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


def make_retry(opts: FetchOptions) -> Retry:
    """Bounded retries with exponential back-off; Retry-After honoured up to ``retry_after_max``."""
    kwargs: dict[str, Any] = dict(
        total=opts.retries, connect=opts.retries, read=opts.retries, status=opts.retries,
        other=0, redirect=0, backoff_factor=opts.backoff, backoff_max=max(opts.backoff * 8, 1.0),
        status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False,
    )
    try:
        return Retry(retry_after_max=int(max(1, opts.retry_after_max)), **kwargs)
    except TypeError:  # urllib3 < 2.6 has no retry_after_max
        return Retry(**kwargs)


class Fetcher:
    """Thread-safe fetching for one crawl: thread-local sessions, host gates, robots.txt cache."""

    def __init__(self, opts: FetchOptions, credentials: Credentials | None = None,
                 in_scope: Callable[[str], str | None] | None = None) -> None:
        self.opts = opts
        self._credentials = credentials or Credentials()
        self._in_scope = in_scope or (lambda url: None)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._gates: dict[str, HostGate] = {}
        self._robots: dict[str, Protego | None] = {}
        self._robots_notes: dict[str, str] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self.stopped = threading.Event()
        self._sessions: list[requests.Session] = []

    # -- sessions and gates ------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=make_retry(self.opts), pool_connections=8,
                                  pool_maxsize=max(1, self.opts.connections_per_host))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.opts.user_agent
            session.headers["Accept"] = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
            session.headers.update(self._credentials.headers)
            for name, value in self._credentials.cookies.items():
                session.cookies.set(name, value)
            if self._credentials.basic:
                session.auth = self._credentials.basic
            session.verify = self.opts.verify_tls
            session.trust_env = False  # no proxies or .netrc from the environment for intranet hosts
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def gate(self, host: str) -> HostGate:
        with self._lock:
            gate = self._gates.get(host)
            if gate is None:
                gate = self._gates[host] = HostGate(self.opts.connections_per_host, self.opts.delay)
            return gate

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    # -- robots.txt --------------------------------------------------------------------------
    def robots(self, url: str) -> Protego | None:
        """The parsed robots.txt of ``url``'s host (None: no rules), fetched once per crawl."""
        host = host_of(url)
        with self._lock:
            if host in self._robots:
                return self._robots[host]
            lock = self._robots_locks.setdefault(host, threading.Lock())
        with lock:
            with self._lock:
                if host in self._robots:
                    return self._robots[host]
            scheme = url.partition(":")[0]
            status, body, error = self.fetch_small(f"{scheme}://{host}/robots.txt", max_bytes=512_000)
            rules: Protego | None = None
            if status == 200 and body is not None:
                rules = Protego.parse(body.decode("utf-8", "replace"))
                delay = rules.crawl_delay(self.opts.user_agent)
                if delay:
                    gate = self.gate(host)
                    gate.delay = max(gate.delay, min(float(delay), 30.0))
            elif error or status >= 500 or status == 429:
                # RFC 9309: an unreachable robots.txt means "disallow everything" for now.
                rules = Protego.parse("User-agent: *\nDisallow: /\n")
                self._robots_notes[host] = f"robots.txt unavailable ({error or f'HTTP {status}'})"
            with self._lock:
                self._robots[host] = rules
            return rules

    def robots_note(self, url: str) -> str | None:
        """Why a host's robots.txt could not be read (everything on it is then disallowed)."""
        return self._robots_notes.get(host_of(url))

    def allowed(self, url: str) -> bool:
        """True when robots.txt lets our user agent fetch ``url``."""
        if not self.opts.respect_robots:
            return True
        rules = self.robots(url)
        return rules is None or rules.can_fetch(url, self.opts.user_agent)

    def sitemaps(self, url: str) -> list[str]:
        """Sitemap URLs named in the host's robots.txt."""
        rules = self.robots(url) if self.opts.respect_robots else None
        return list(rules.sitemaps) if rules is not None else []

    def fetch_small(self, url: str, max_bytes: int) -> tuple[int, bytes | None, str | None]:
        """GET a small auxiliary file (robots.txt, sitemap): (status, body, error)."""
        session = self._session()
        try:
            with self.gate(host_of(url)):
                with session.get(url, stream=True, allow_redirects=True,
                                 timeout=(self.opts.connect_timeout, self.opts.read_timeout)) as resp:
                    if resp.status_code != 200:
                        return resp.status_code, None, None
                    body = self._read_body(resp, max_bytes, time.monotonic() + self.opts.page_timeout)
                    return 200, body, None
        except _BodyTooLarge:
            return 200, None, f"larger than {max_bytes} bytes"
        except (requests.RequestException, Urllib3Error, OSError, _Deadline) as exc:
            return 0, None, describe_error(exc)

    # -- pages ---------------------------------------------------------------------------------
    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> FetchResult:
        """Fetch the canonical ``url``, following in-scope redirects; never raises for network trouble."""
        started = time.monotonic()
        result = FetchResult(url=url, final_url=url)
        chain = [url]
        current = url
        try:
            for _hop in range(self.opts.max_redirects + 1):
                if self.stopped.is_set():
                    result.error = "crawl stopped"
                    return result
                gate = self.gate(host_of(current))
                if gate.failures >= self.opts.host_failure_limit:
                    result.error = f"host unreachable ({gate.failures} failures in a row)"
                    return result
                headers = {}
                if current == url:
                    if etag:
                        headers["If-None-Match"] = etag
                    if last_modified:
                        headers["If-Modified-Since"] = last_modified
                location = self._fetch_once(current, headers, gate, result)
                if location is None:
                    break
                target = canonical_url(urljoin(current, location))
                if target in chain:
                    result.error = "redirect loop"
                    return result
                why = self._in_scope(target)
                if why:
                    result.skip = f"redirect to {target} ({why})"
                    return result
                if not self.allowed(target):
                    result.skip = f"redirect to {target} (disallowed by robots.txt)"
                    return result
                chain.append(target)
                current = target
                result.final_url = target
            else:
                result.error = f"more than {self.opts.max_redirects} redirects"
            result.aliases = tuple(chain[:-1])
            return result
        except ValueError as exc:  # a malformed Location header
            result.error = f"bad redirect: {exc}"
            return result
        finally:
            result.seconds = time.monotonic() - started

    def _fetch_once(self, url: str, headers: dict[str, str], gate: HostGate, result: FetchResult) -> str | None:
        """One request; fills ``result`` and returns a redirect Location to follow, if any."""
        session = self._session()
        opts = self.opts
        try:
            with gate:
                resp = session.get(url, headers=headers, stream=True, allow_redirects=False,
                                   timeout=(opts.connect_timeout, opts.read_timeout))
                try:
                    history = resp.raw.retries.history if resp.raw.retries is not None else ()
                    result.retried += len(history)
                    result.status = resp.status_code
                    if resp.is_redirect and resp.headers.get("Location"):
                        return resp.headers["Location"]
                    self._take_headers(resp, result)
                    if resp.status_code == 304:
                        return None
                    if resp.status_code != 200:
                        if resp.status_code not in (404, 410):
                            result.error = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
                        return None
                    if result.content_type and result.content_type not in HTML_TYPES:
                        result.skip = f"not HTML ({result.content_type})"
                        return None
                    length = resp.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > opts.max_bytes:
                        result.skip = f"larger than max_bytes ({int(length):,} > {opts.max_bytes:,})"
                        return None
                    deadline = time.monotonic() + opts.page_timeout
                    body = self._read_body(resp, opts.max_bytes, deadline)
                    result.body = body
                    result.body_hash = hashlib.blake2b(body, digest_size=16).hexdigest()
                finally:
                    resp.close()
            gate.failures = 0
            return None
        except _BodyTooLarge:
            result.skip = f"larger than max_bytes ({opts.max_bytes:,})"
            gate.failures = 0
        except _Deadline:
            result.error = f"page took longer than page_timeout ({opts.page_timeout:g}s)"
        except (requests.RequestException, Urllib3Error, OSError) as exc:
            result.error = describe_error(exc)
            if isinstance(exc, (requests.ConnectionError, requests.Timeout)) and not isinstance(
                    exc, requests.exceptions.ChunkedEncodingError):
                gate.failures += 1
        result.body = None
        return None

    @staticmethod
    def _take_headers(resp: requests.Response, result: FetchResult) -> None:
        ctype = resp.headers.get("Content-Type", "")
        mime, _, params = ctype.partition(";")
        result.content_type = mime.strip().lower()
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                result.charset = value.strip().strip("\"'")
        result.etag = resp.headers.get("ETag")
        result.last_modified = resp.headers.get("Last-Modified")
        result.x_robots = resp.headers.get("X-Robots-Tag", "")

    def _read_body(self, resp: requests.Response, max_bytes: int, deadline: float) -> bytes:
        """The whole body, at most ``max_bytes``, before ``deadline`` (checked after every read)."""
        raw = resp.raw
        chunks: list[bytes] = []
        size = 0
        while True:
            if self.stopped.is_set():
                raise _Deadline("crawl stopped")
            chunk = raw.read1(_CHUNK, decode_content=True) if hasattr(raw, "read1") else raw.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise _BodyTooLarge()
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise _Deadline()
        return b"".join(chunks)


class _BodyTooLarge(Exception):
    pass


class _Deadline(Exception):
    pass


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a network error for reports."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
        return "truncated body (connection closed early)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, (requests.exceptions.ReadTimeout,)) or "Read timed out" in text:
        return "read timed out"
    if "Max retries exceeded" in text:
        if "ResponseError" in text or "too many" in text:
            return "retries exhausted"
        reason = text.rsplit("(Caused by ", 1)[-1].rstrip(")")
        if "Connection refused" in reason:
            return "connection refused"
        if "reset" in reason.lower() or "aborted" in reason.lower():
            return "connection reset"
        return f"connection failed: {reason[:160]}"
    if "reset" in text.lower() or "aborted" in text.lower():
        return "connection reset"
    if isinstance(exc, requests.exceptions.InvalidURL):
        return "invalid URL"
    return f"{type(exc).__name__}: {text[:160]}"
