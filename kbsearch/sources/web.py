"""The "web" source: an intranet site crawled into the knowledge base (see kbsearch/sources/crawl).

A source file ``crawlers/NAME.toml`` with ``type = "web"`` names start URLs, optional scope
(hosts, path prefixes, include / exclude regexes), access groups, authentication (names of
environment variables or a secrets file, never the secrets themselves) and any ``[crawl]`` setting
to override for this site.  ``kbsearch crawl URL...`` builds the same source ad hoc.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import CrawlConfig, Settings
from .crawl.crawler import Crawler, CrawlReport, CrawlSpec
from .crawl.fetch import Credentials
from ..errors import ConfigError
from . import Progress

if TYPE_CHECKING:
    from .._protocols import DocumentStore

#: Keys of a web source besides the `CrawlConfig` overrides.
SCOPE_KEYS = ("start_urls", "allowed_hosts", "allowed_prefixes", "include", "exclude", "allowed_groups", "group")
#: Keys of the ``[auth]`` table.
AUTH_KEYS = ("bearer_token_env", "username_env", "password_env", "headers_env", "cookies_env", "secrets_file")
_CRAWL_KEYS = frozenset(f.name for f in dataclasses.fields(CrawlConfig))


def default_name(start_urls: list[str]) -> str:
    """The source name of an ad hoc crawl: the first start URL's host (with port)."""
    try:
        return urlsplit(start_urls[0]).netloc.rpartition("@")[2].lower() or "web"
    except (IndexError, ValueError):
        return "web"


class WebSource:
    """A crawled intranet site; `sync` crawls it incrementally into a knowledge base."""

    kind = "web"

    def __init__(self, name: str, start_urls: list[str] | tuple[str, ...] | str, *,
                 auth: Mapping[str, Any] | None = None, **options: Any) -> None:
        if isinstance(start_urls, str):
            start_urls = [start_urls]
        if not start_urls or not all(isinstance(u, str) and u.strip() for u in start_urls):
            raise ConfigError(f"source {name!r}: start_urls must be a non-empty list of URLs")
        for url in start_urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ConfigError(f"source {name!r}: not an http(s) URL: {url!r}")
        self.name = name
        self.start_urls = list(start_urls)
        self.scope: dict[str, Any] = {}
        self.overrides: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in SCOPE_KEYS:
                self.scope[key] = _str_list(name, key, value) if key != "group" else str(value)
            elif key in _CRAWL_KEYS:
                self.overrides[key] = value
            else:
                raise ConfigError(f"source {name!r}: unknown setting {key!r}")
        Settings().apply_mapping({"crawl": self.overrides}, origin=f"source {name!r}")  # validates types
        self.auth = dict(auth or {})
        unknown = sorted(set(self.auth) - set(AUTH_KEYS))
        if unknown:
            raise ConfigError(f"source {name!r}: unknown auth setting(s) {', '.join(unknown)} "
                              f"(known: {', '.join(AUTH_KEYS)})")

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> WebSource:
        """Build from a parsed ``crawlers/NAME.toml`` (``type = "web"``)."""
        values = {k: v for k, v in table.items() if k != "type"}
        start = values.pop("start_urls", None) or values.pop("start_url", None)
        if start is None:
            raise ConfigError(f"source {name!r}: start_urls is required")
        crawl = values.pop("crawl", {})
        if not isinstance(crawl, Mapping):
            raise ConfigError(f"source {name!r}: [crawl] must be a table")
        auth = values.pop("auth", None)
        if auth is not None and not isinstance(auth, Mapping):
            raise ConfigError(f"source {name!r}: [auth] must be a table")
        return cls(name, start, auth=auth, **{**dict(crawl), **values})

    def config(self, base: CrawlConfig) -> CrawlConfig:
        """``base`` (the knowledge base's [crawl] settings) with this source's overrides applied."""
        settings = Settings(crawl=dataclasses.replace(base, strip_classes=list(base.strip_classes)))
        settings.apply_mapping({"crawl": self.overrides}, origin=f"source {self.name!r}")
        return settings.crawl

    def credentials(self, env: Mapping[str, str] | None = None) -> Credentials:
        """Resolve the auth table from the environment (or the secrets file); values never logged."""
        env = os.environ if env is None else env
        auth = self.auth
        file_values = _read_secrets_file(self.name, auth["secrets_file"]) if auth.get("secrets_file") else {}

        def secret(var: Any) -> str:
            if not isinstance(var, str) or not var:
                raise ConfigError(f"source {self.name!r}: auth settings name environment variables (strings)")
            value = env.get(var) or file_values.get(var)
            if not value:
                raise ConfigError(f"source {self.name!r}: secret {var} is not set "
                                  "(set the environment variable or add it to the secrets_file)")
            return value

        creds = Credentials()
        if auth.get("bearer_token_env"):
            creds.headers["Authorization"] = f"Bearer {secret(auth['bearer_token_env'])}"
        if auth.get("username_env") or auth.get("password_env"):
            creds.basic = (secret(auth.get("username_env")), secret(auth.get("password_env")))
        for key, target in (("headers_env", creds.headers), ("cookies_env", creds.cookies)):
            table = auth.get(key) or {}
            if not isinstance(table, Mapping):
                raise ConfigError(f"source {self.name!r}: auth.{key} must be a table of name = ENV_VAR")
            for header, var in table.items():
                target[str(header)] = secret(var)
        return creds

    def spec(self, base: CrawlConfig) -> CrawlSpec:
        return CrawlSpec(
            name=self.name, start_urls=self.start_urls, config=self.config(base),
            allowed_hosts=self.scope.get("allowed_hosts", []),
            allowed_prefixes=self.scope.get("allowed_prefixes", []),
            include=self.scope.get("include", []), exclude=self.scope.get("exclude", []),
            allowed_groups=self.scope.get("allowed_groups", []), group=self.scope.get("group"),
            credentials=self.credentials(),
        )

    def sync(self, kb: DocumentStore, *, full: bool = False, progress: Progress | None = None,
             dry_run: bool = False) -> CrawlReport:
        """Crawl the site into ``kb``: new and changed pages indexed, gone pages removed.

        ``full`` ignores ETags and hashes and re-parses every page (documents whose content did
        not change are still no-ops in the index); ``dry_run`` fetches and extracts but writes
        nothing (neither the index nor the crawl state).
        """
        return Crawler(kb, self.spec(kb.settings.crawl), full=full, dry_run=dry_run, progress=progress).run()

    def __repr__(self) -> str:
        return f"WebSource({self.name!r}, {self.start_urls!r})"


def make_web_source(name: str, table: Mapping[str, Any]) -> WebSource:
    """Factory named in `SOURCE_TYPES` for ``type = "web"``."""
    return WebSource.from_table(name, table)


def _str_list(name: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"source {name!r}: {key} must be a list of strings")
    return list(value)


def _read_secrets_file(name: str, path: Any) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, blank lines ignored)."""
    try:
        lines = Path(str(path)).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"source {name!r}: cannot read secrets_file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("\"'")
    return values
