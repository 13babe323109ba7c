"""One place for every default: a documented settings tree and how it is loaded.

Precedence, lowest first: the defaults below < a TOML config file < ``KBSEARCH_*`` environment
variables < explicit arguments (CLI flags or keyword arguments).  A TOML file has one table per
section (``[index]``, ``[search]``, ``[rerank]``, ...); an environment variable names a section and a
field, e.g. ``KBSEARCH_SEARCH_CANDIDATES=50``; ``KBSEARCH_INDEX`` is short for the index path.
Secrets are never read from the config file: fields ending in ``_env`` name the environment
variable that holds the secret.

The sections are defined in `_engine` (index, search, rerank, deflect) and `_service` (web, peers,
store, route, crawl); `Settings` and the loading rules are here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._engine import DEFAULT_INDEX_PATH, DeflectConfig, IndexConfig, RerankConfig, SearchConfig
from ._service import CrawlConfig, PeersConfig, RouteConfig, StoreConfig, WebConfig

__all__ = ["DEFAULT_CONFIG_FILE", "DEFAULT_INDEX_PATH", "CrawlConfig", "DeflectConfig", "IndexConfig", "PeersConfig",
           "RerankConfig", "RouteConfig", "SearchConfig", "Settings", "StoreConfig", "WebConfig"]

#: Config file read when it exists in the working directory (or named by ``KBSEARCH_CONFIG``).
DEFAULT_CONFIG_FILE = Path("kbsearch.toml")


@dataclass
class Settings:
    """The whole settings tree; sections are added by the parts that own them."""

    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    web: WebConfig = field(default_factory=WebConfig)
    peers: PeersConfig = field(default_factory=PeersConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    route: RouteConfig = field(default_factory=RouteConfig)
    deflect: DeflectConfig = field(default_factory=DeflectConfig)

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults < ``config_file`` (or ``KBSEARCH_CONFIG`` / ./kbsearch.toml) < env < overrides.

        ``overrides`` use dotted names (``{"search.candidates": 50}``) or ``index_path``.
        """
        env = os.environ if env is None else env
        settings = cls()
        path = config_file or env.get("KBSEARCH_CONFIG")
        if path is None and DEFAULT_CONFIG_FILE.is_file():
            path = DEFAULT_CONFIG_FILE
        if path is not None:
            settings.apply_mapping(_read_toml(Path(path)), origin=str(path))
        settings.apply_env(env)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "index_path":
                key = "index.path"
            section, _, name = key.partition(".")
            settings._set(section, name, value, origin="argument")
        return settings

    def apply_mapping(self, data: Mapping[str, Any], origin: str) -> None:
        """Apply a parsed TOML document; unknown sections or keys are errors, not ignored."""
        for section, values in data.items():
            if section == "groups":  # [[groups]]: peer groups, validated by kbsearch.peers.groups
                self._set("peers", "groups", values if isinstance(values, list) else [values], origin=origin)
                continue
            if not isinstance(values, Mapping):
                if section in _SECTION_EXTRAS:
                    continue
                raise ConfigError(f"{origin}: [{section}] must be a table")
            if section in _SECTION_EXTRAS:
                continue  # tables owned by other parts (e.g. [[groups]]), read by them
            for name, value in values.items():
                if section == "store" and name == "url" and isinstance(value, str) and _has_password(value):
                    raise ConfigError(f"{origin}: store.url must not hold a password (secrets come from the "
                                      "environment: KBSEARCH_DATABASE_URL, PGPASSWORD or ~/.pgpass)")
                self._set(section, name, value, origin=origin)

    def apply_env(self, env: Mapping[str, str]) -> None:
        """Apply ``KBSEARCH_<SECTION>_<FIELD>`` variables (and ``KBSEARCH_INDEX``, ``KBSEARCH_DATABASE_URL``)."""
        if env.get("KBSEARCH_INDEX"):
            self._set("index", "path", env["KBSEARCH_INDEX"], origin="KBSEARCH_INDEX")
        url, store_url = env.get("KBSEARCH_DATABASE_URL"), env.get("KBSEARCH_STORE_URL")
        if url and store_url and url != store_url:
            raise ConfigError("KBSEARCH_DATABASE_URL and KBSEARCH_STORE_URL name different databases; set one")
        if url:
            self._set("store", "url", url, origin="KBSEARCH_DATABASE_URL")
        sections = {f.name for f in dataclasses.fields(self)}
        for key, raw in env.items():
            if not key.startswith("KBSEARCH_") or key in ("KBSEARCH_INDEX", "KBSEARCH_CONFIG", "KBSEARCH_DATABASE_URL"):
                continue
            rest = key[len("KBSEARCH_"):].lower()
            section, _, name = rest.partition("_")
            if section not in sections or not name:
                continue  # not a setting (a secret named by some *_env, say)
            if name in _field_names(getattr(self, section)):
                self._set(section, name, raw, origin=key)
            elif key not in self._secret_names():
                # KBSEARCH_SEARCH_CANDIDATE=60 must not be silently ignored, like an unknown TOML key.
                near = difflib.get_close_matches(name, sorted(_field_names(getattr(self, section))), n=1)
                hint = f" (did you mean KBSEARCH_{section.upper()}_{near[0].upper()}?)" if near else ""
                raise ConfigError(f"{key}: unknown setting {section}.{name}{hint}; a secret for a "
                                  f"setting ending in _env may use any other name")

    def _secret_names(self) -> set[str]:
        """The environment variables that settings ending in ``_env`` name (secrets, not settings)."""
        names: set[str] = set()

        def walk(value: Any, key: str = "") -> None:
            if isinstance(value, str) and key.endswith("_env"):
                names.add(value)
            elif isinstance(value, Mapping):
                for k, v in value.items():
                    walk(v, str(k))
            elif isinstance(value, list):
                for v in value:
                    walk(v, key)
        walk(self.to_dict())
        return names

    def _set(self, section: str, name: str, value: Any, origin: str) -> None:
        target = getattr(self, section, None)
        if target is None or not dataclasses.is_dataclass(target):
            raise ConfigError(f"{origin}: unknown settings section {section!r}")
        if name not in _field_names(target):
            raise ConfigError(f"{origin}: unknown setting {section}.{name}")
        hints = typing.get_type_hints(type(target))
        setattr(target, name, _coerce(value, hints[name], f"{origin}: {section}.{name}"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (paths as strings)."""
        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v
        return conv(dataclasses.asdict(self))


#: Top-level TOML tables that belong to other parts of kbsearch (not settings sections).
_SECTION_EXTRAS: set[str] = {"groups", "sources"}


def _has_password(url: str) -> bool:
    """Whether a database URL carries a password (``user:secret@`` or a ``password=`` parameter)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.password is not None or "password=" in parts.query
    except ValueError:
        return ":" in url.partition("@")[0].partition("://")[2]


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


#: Settings that are shares or probabilities: from 0 to 1.
_UNIT_SUFFIXES = ("_ratio", "_share", "precision", "_step", "_margin")
#: Settings whose documented -1 means "never".
_MINUS_ONE_MEANS_NEVER = frozenset({"parallel_fit_phrasings"})


def _in_range(number: int | float, where: str) -> int | float:
    """``number`` if it fits its setting: no setting is negative; shares and probabilities are at most 1."""
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}: must be a finite number")
    name = where.rsplit(".", 1)[-1]
    if number < 0 and not (number == -1 and name in _MINUS_ONE_MEANS_NEVER):
        raise ConfigError(f"{where}: must not be negative (got {number})")
    if name.endswith(_UNIT_SUFFIXES) and number > 1:
        raise ConfigError(f"{where}: must be between 0 and 1 (got {number})")
    return number


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (from TOML, env or a flag) to the annotated type or raise `ConfigError`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return _in_range(int(value), where)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return _in_range(float(value), where)
        if hint is Path:
            return Path(value)
        if hint is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return list(value) if origin is list else tuple(value)
        if origin is dict:
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: invalid value {value!r}") from None
    return value
