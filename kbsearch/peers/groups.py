"""Peer groups: who answers what, and where they are told about new questions.

Groups are ``[[groups]]`` tables of the project config file (kbsearch.toml)::

    [[groups]]
    name = "it-support"
    description = "Laptops, VPN, passwords, e-mail and printers"
    keywords = ["vpn", "password", "laptop", "printer"]
    members = ["ana@example.com"]
    experts = ["bo@example.com"]
      [[groups.channels]]
      type = "slack"                   # webhook | slack | teams | email
      url_env = "KBSEARCH_IT_SLACK_URL"  # the secret URL lives in the environment

A group named by ``peers.default_group`` catches what fits nowhere; it exists even when not configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import PeersConfig
from ..errors import ConfigError

CHANNEL_TYPES = ("webhook", "slack", "teams", "email")
_NAME = re.compile(r"^[\w][\w .:@/+-]{0,99}$")


@dataclass(frozen=True)
class ChannelSpec:
    """One configured notification channel of a group (secrets are environment variable *names*)."""

    name: str
    type: str
    url_env: str = ""
    to: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "url_env": self.url_env, "to": list(self.to)}


@dataclass(frozen=True)
class Group:
    """A peer group: what it answers (description, keywords), who is in it, how it is notified."""

    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    experts: tuple[str, ...] = ()
    channels: tuple[ChannelSpec, ...] = ()
    configured: bool = True
    #: Groups that may see this group's answers in search and ask (empty: everyone).
    answers_visible_to: tuple[str, ...] = ()
    #: SLA overrides of ``peers.remind_every_hours`` / ``fallback_after_hours`` / ``fallback_group`` /
    #: ``sla_lead`` for this group (None: the ``[peers]`` value; see `peers._sla`).
    remind_every_hours: float | None = None
    fallback_after_hours: float | None = None
    fallback_group: str | None = None
    lead: str | None = None

    def channel(self, name: str) -> ChannelSpec | None:
        return next((c for c in self.channels if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "keywords": list(self.keywords),
            "members": list(self.members), "experts": list(self.experts),
            "channels": [c.to_dict() for c in self.channels], "configured": self.configured,
            "answers_visible_to": list(self.answers_visible_to),
            "remind_every_hours": self.remind_every_hours, "fallback_after_hours": self.fallback_after_hours,
            "fallback_group": self.fallback_group, "lead": self.lead,
        }


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _channel(raw: Any, group: str, n: int) -> ChannelSpec:
    where = f"[[groups]] {group!r} channel {n + 1}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(raw) - {"name", "type", "url_env", "to", "url"}
    if "url" in raw:
        raise ConfigError(f"{where}: put the URL in an environment variable and name it with url_env "
                          "(webhook URLs are secrets and never belong in the config file)")
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kind = raw.get("type")
    if kind not in CHANNEL_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}")
    url_env = str(raw.get("url_env", ""))
    if kind != "email" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", url_env):
        raise ConfigError(f"{where}: url_env must name the environment variable holding the URL")
    to = _strings(raw.get("to"), f"{where}.to")
    name = str(raw.get("name") or (kind if n == 0 else f"{kind}-{n + 1}"))
    if name.startswith("@"):  # "@asker" is the outbox's name for the e-mail to the asker
        raise ConfigError(f"{where}: channel names starting with '@' are reserved")
    return ChannelSpec(name=name, type=kind, url_env=url_env, to=to)


def parse_group(raw: Any) -> Group:
    """Validate one ``[[groups]]`` table; every mistake is a `ConfigError` naming the group."""
    if not isinstance(raw, Mapping):
        raise ConfigError("[[groups]]: each group must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name.strip()):
        raise ConfigError(f"[[groups]]: invalid or missing name {name!r}")
    name = name.strip()
    unknown = set(raw) - {"name", "description", "keywords", "members", "experts", "channels", "answers_visible_to",
                          *_SLA_KEYS}
    if unknown:
        raise ConfigError(f"[[groups]] {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"[[groups]] {name!r}: description must be a string")
    channels_raw = raw.get("channels", [])
    if isinstance(channels_raw, Mapping):
        channels_raw = [channels_raw]
    if not isinstance(channels_raw, list):
        raise ConfigError(f"[[groups]] {name!r}: channels must be a list of tables")
    channels = tuple(_channel(c, name, i) for i, c in enumerate(channels_raw))
    if len({c.name for c in channels}) != len(channels):
        raise ConfigError(f"[[groups]] {name!r}: two channels share a name; give them distinct names")
    return Group(
        name=name, description=description.strip(), keywords=_strings(raw.get("keywords"), f"{name}.keywords"),
        members=_strings(raw.get("members"), f"{name}.members"),
        experts=_strings(raw.get("experts"), f"{name}.experts"), channels=channels,
        answers_visible_to=_strings(raw.get("answers_visible_to"), f"{name}.answers_visible_to"),
        **_sla_fields(raw, name),
    )


_SLA_KEYS = ("remind_every_hours", "fallback_after_hours", "fallback_group", "lead")


def _sla_fields(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A group's SLA overrides: hours are non-negative numbers, the fallback group and lead are names."""
    out: dict[str, Any] = {}
    for key in ("remind_every_hours", "fallback_after_hours"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
            raise ConfigError(f"[[groups]] {name!r}: {key} must be a number of hours (0 or more)")
        out[key] = float(value)
    for key in ("fallback_group", "lead"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise ConfigError(f"[[groups]] {name!r}: {key} must be a name")
        out[key] = value.strip()
    return out


class Groups:
    """The configured groups by name, plus the default group (implicit when not configured)."""

    def __init__(self, groups: Iterable[Group], default: str) -> None:
        self._groups: dict[str, Group] = {}
        for group in groups:
            if group.name in self._groups:
                raise ConfigError(f"[[groups]]: group {group.name!r} is defined twice")
            self._groups[group.name] = group
        self.default = default
        if default not in self._groups:
            # No description or keywords: routing never learns it, it only catches low-confidence questions.
            self._groups[default] = Group(name=default, configured=False)
        for group in self._groups.values():
            if group.fallback_group is not None and group.fallback_group not in self._groups:
                raise ConfigError(f"[[groups]] {group.name!r}: fallback_group {group.fallback_group!r} is not a group")

    @classmethod
    def from_config(cls, cfg: PeersConfig) -> Groups:
        groups = cls((parse_group(raw) for raw in cfg.groups), cfg.default_group)
        if cfg.fallback_group and cfg.fallback_group not in groups:
            raise ConfigError(f"peers.fallback_group {cfg.fallback_group!r} is not a group")
        return groups

    def __iter__(self) -> Iterator[Group]:
        return iter(self._groups.values())

    def __contains__(self, name: object) -> bool:
        return name in self._groups

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, name: str | None) -> Group | None:
        return self._groups.get(name) if name else None

    def configured(self) -> list[Group]:
        return [g for g in self._groups.values() if g.configured]

    def notify_group(self, name: str) -> Group:
        """The group whose channels carry notifications for ``name`` (the default one for unknown names)."""
        group = self._groups.get(name)
        if group is not None and group.channels:
            return group
        return self._groups[self.default]
