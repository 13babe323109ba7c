"""Which URLs a crawl may visit, in which canonical form, and in which order.

Canonical URLs make one page one key however it is linked: scheme and host lower-cased, default
port, user info and fragment dropped, dot segments resolved, ``index.html`` folded into its
directory, tracking parameters removed and the query sorted.  `Scope` says what may be fetched
(hosts, path prefixes, include / exclude patterns, query-string traps); `Frontier` hands out each
canonical URL once, breadth first, bounded by depth.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

#: Final path segments served as their directory (``/a/index.html`` is ``/a/``).
INDEX_NAMES = frozenset({"index.html", "index.htm", "index.php", "default.htm", "default.html"})
#: Query parameters that never change a page's content.
TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_cid|mc_eid|_ga)$", re.I)
#: Extensions that are never HTML pages; they are skipped without being fetched.
NON_HTML_EXTENSIONS = frozenset("""
    png jpg jpeg gif svg webp ico bmp tif tiff css js mjs map json xml txt rst md csv tsv py c h
    pdf zip gz tgz bz2 xz 7z tar rar jar war whl egg deb rpm exe msi dmg iso bin woff woff2 ttf
    otf eot mp3 mp4 m4a ogg wav avi mov mkv webm doc docx xls xlsx ppt pptx odt ods odp epub
    ps eps dvi tex sql sh bat ps1 patch diff
""".split())
#: Scope refusals that reveal a crawler trap on the site (reported, unlike ordinary outside links).
TRAP_REASONS = frozenset({"URL too long", "repeated path segments (link loop)"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Characters left unescaped when re-quoting a path (RFC 3986 pchar plus "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"


@functools.lru_cache(maxsize=65536)
def canonical_url(url: str, *, index_names: frozenset[str] = INDEX_NAMES) -> str:
    """The canonical form of an absolute http(s) URL; raises ValueError for anything else.

    Fragments name a place in a page, not another page, so they are dropped; so are user info
    (credentials never travel in URLs we store) and tracking parameters.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise ValueError(f"URL without a host: {url!r}")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port  # raises ValueError for a bad port
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path or "/"
    # Resolve dot segments, keep a trailing slash (it is a different resource on most servers).
    trailing = path.endswith("/")
    path = posixpath.normpath(path)
    if path in (".", "//"):
        path = "/"
    path = re.sub(r"/{2,}", "/", path)
    if trailing and not path.endswith("/"):
        path += "/"
    if not path.startswith("/"):
        path = "/" + path
    head, _, last = path.rpartition("/")
    if last.lower() in index_names:
        path = head + "/"
    path = quote(unquote(path), safe=_PATH_SAFE.replace("%", ""))
    query = ""
    if parts.query:
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMS.match(k)]
        pairs.sort()
        query = urlencode(pairs)
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """``host[:port]`` of a canonical URL (the unit of politeness)."""
    return urlsplit(url).netloc


def extension_of(url: str) -> str:
    """Lower-case extension of the last path segment ('' when there is none)."""
    last = urlsplit(url).path.rpartition("/")[2]
    return last.rpartition(".")[2].lower() if "." in last else ""


@dataclass
class Scope:
    """What a crawl may fetch: hosts, path prefixes, patterns, and bounds against traps.

    By default the scope is the start URLs' hosts and their directories (``http://wiki/a/b.html``
    allows everything under ``http://wiki/a/``).
    """

    hosts: frozenset[str]
    prefixes: tuple[str, ...]
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    #: Distinct query strings allowed per path (endless calendars, faceted searches).
    max_query_variants: int = 20
    #: Longest URL accepted.
    max_url_length: int = 2000
    #: A path segment repeated more often than this is a link loop (``/a/a/a/a/``).
    max_repeated_segments: int = 3
    _variants: dict[str, set[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        start_urls: Sequence[str],
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_prefixes: Iterable[str] = (),
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        max_query_variants: int = 20,
    ) -> Scope:
        """A scope from start URLs and optional explicit hosts / prefixes / regex patterns."""
        starts = [canonical_url(u) for u in start_urls]
        prefixes = [canonical_url(p) for p in allowed_prefixes]
        if not prefixes:
            hosts_given = [h.lower() for h in allowed_hosts]
            if hosts_given:
                prefixes = [f"{urlsplit(s).scheme}://{h}/" for s in starts for h in hosts_given]
            prefixes += [s.partition("?")[0].rpartition("/")[0] + "/" for s in starts]
        hosts = frozenset({host_of(p) for p in prefixes} | {h.lower() for h in allowed_hosts})
        return cls(
            hosts=hosts,
            prefixes=tuple(dict.fromkeys(prefixes)),
            include=tuple(re.compile(p) for p in include),
            exclude=tuple(re.compile(p) for p in exclude),
            max_query_variants=max_query_variants,
        )

    def check(self, url: str) -> str | None:
        """None when the canonical ``url`` is in scope, else the reason it is not."""
        if len(url) > self.max_url_length:
            return "URL too long"
        if host_of(url) not in self.hosts:
            return "outside the allowed hosts"
        bare = url.partition("?")[0]
        if not any(bare.startswith(p) or bare + "/" == p for p in self.prefixes):
            return "outside the allowed path prefixes"
        if self.include and not any(p.search(url) for p in self.include):
            return "not matched by an include pattern"
        if any(p.search(url) for p in self.exclude):
            return "matched by an exclude pattern"
        segments = [s for s in urlsplit(url).path.split("/") if s]
        if segments and max(segments.count(s) for s in set(segments)) > self.max_repeated_segments:
            return "repeated path segments (link loop)"
        return None

    def admit_query(self, url: str) -> bool:
        """Count ``url``'s query variant; False once its path has too many (a query-string trap)."""
        bare, _, query = url.partition("?")
        if not query:
            return True
        seen = self._variants.setdefault(bare, set())
        if query in seen:
            return True
        if len(seen) >= self.max_query_variants:
            return False
        seen.add(query)
        return True


@dataclass(frozen=True)
class Task:
    """One URL to fetch, how deep it was found, and what linked to it."""

    url: str
    depth: int
    referrer: str = ""


class Frontier:
    """Breadth-first queue of canonical URLs; each URL is handed out at most once per run."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self._queue: deque[Task] = deque()
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._queue)

    def seen(self, url: str) -> bool:
        return url in self._seen

    def mark_seen(self, url: str) -> None:
        """Record ``url`` as handled (e.g. the target of a redirect) so it is not queued again."""
        self._seen.add(url)

    def push(self, url: str, depth: int, referrer: str = "", *, front: bool = False) -> bool:
        """Queue ``url`` unless seen or too deep; True when queued."""
        if url in self._seen or depth > self.max_depth:
            return False
        self._seen.add(url)
        task = Task(url, depth, referrer)
        if front:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)
        return True

    def pop(self) -> Task | None:
        return self._queue.popleft() if self._queue else None
