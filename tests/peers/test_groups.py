"""Groups from [[groups]] in kbsearch.toml: parsed, validated, secrets kept out of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbsearch import Settings
from kbsearch.errors import ConfigError
from kbsearch.peers.groups import Groups


def _load(tmp_path: Path, text: str) -> Groups:
    path = tmp_path / "kbsearch.toml"
    path.write_text(text, encoding="utf-8")
    return Groups.from_config(Settings.load(path, env={}).peers)


def test_groups_from_toml_with_default(tmp_path: Path) -> None:
    groups = _load(tmp_path, """
[peers]
default_group = "helpdesk"
[[groups]]
name = "it-support"
description = "Laptops and VPN"
keywords = ["vpn"]
experts = ["bo@example.com"]
  [[groups.channels]]
  type = "slack"
  url_env = "IT_SLACK"
  [[groups.channels]]
  type = "email"
  to = ["it@example.com"]
""")
    it = groups.get("it-support")
    assert it is not None and it.experts == ("bo@example.com",)
    assert [(c.name, c.type) for c in it.channels] == [("slack", "slack"), ("email-2", "email")]
    assert groups.default == "helpdesk" and not groups.get("helpdesk").configured
    assert groups.notify_group("unknown-group").name == "helpdesk"
    assert groups.notify_group("it-support") is it


@pytest.mark.parametrize("text, message", [
    ('[[groups]]\nname = "a"\n[[groups.channels]]\ntype = "webhook"\nurl = "https://hooks/secret"\n',
     "environment variable"),
    ('[[groups]]\nname = "a"\ncolour = "red"\n', "unknown key"),
    ('[[groups]]\nname = "a"\n[[groups]]\nname = "a"\n', "defined twice"),
    ('[[groups]]\nname = "a"\n[[groups.channels]]\ntype = "pager"\n', "type must be one of"),
    ('[[groups]]\ndescription = "no name"\n', "invalid or missing name"),
], ids=["url-in-file", "unknown-key", "duplicate", "bad-channel-type", "no-name"])
def test_bad_group_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)
