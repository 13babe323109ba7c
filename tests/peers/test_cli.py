"""The peer commands: thin wrappers printing for people and JSON for scripts; errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbsearch.cli import main

from .conftest import WebhookServer

CONFIG = """
[peers]
retry_initial = 0.05
[[groups]]
name = "it-support"
description = "Laptops, VPN, passwords and printers"
keywords = ["vpn", "laptop", "printer"]
experts = ["bo@example.com"]
  [[groups.channels]]
  type = "webhook"
  url_env = "KBT_IT_HOOK"
[[groups]]
name = "hr"
description = "Holidays, payroll and contracts"
keywords = ["vacation", "salary", "payslip"]
"""


@pytest.fixture
def cli(tmp_path: Path, hook_env: WebhookServer) -> tuple[CliRunner, list[str]]:
    config = tmp_path / "kbsearch.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return CliRunner(), ["--index", str(tmp_path / "index"), "--config", str(config)]


def test_escalate_list_answer_deliver(cli: tuple[CliRunner, list[str]], hook_env: WebhookServer,
                                      tmp_path: Path) -> None:
    runner, opts = cli
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    out = runner.invoke(main, ["escalate", "my vpn drops all the time", "--attach", str(photo), "--json", *opts])
    assert out.exit_code == 0, out.output
    esc = json.loads(out.output)
    assert esc["group"] == "it-support" and esc["attachments"][0]["filename"] == "photo.png"
    assert hook_env.keys() == [f"{esc['id']}/it-support/webhook/escalated"]

    listed = runner.invoke(main, ["escalations", "--open", "--group", "it-support", "--json", *opts])
    assert [e["id"] for e in json.loads(listed.output)] == [esc["id"]]
    text = runner.invoke(main, ["escalations", esc["id"], *opts])
    assert "my vpn drops all the time" in text.output and "notify it-support/webhook escalated: delivered" in text.output

    answered = runner.invoke(main, ["answer", esc["id"], "--text", "Update the client.", "--by", "bo@example.com",
                                    "--verify", *opts])
    assert answered.exit_code == 0 and "verified, searchable now" in answered.output
    found = runner.invoke(main, ["search", "my vpn drops all the time", "--json", *opts])
    assert json.loads(found.output)[0]["title"] == "my vpn drops all the time"
    assert runner.invoke(main, ["escalations", "--open", "--json", *opts]).output.strip() == "[]"

    delivered = runner.invoke(main, ["deliver", "--json", *opts])
    assert delivered.exit_code == 0 and json.loads(delivered.output)["pending"] == 0


def test_errors_are_one_line_and_non_zero(cli: tuple[CliRunner, list[str]]) -> None:
    runner, opts = cli
    missing = runner.invoke(main, ["answer", "esc-000000000000", "--text", "x", *opts])
    assert missing.exit_code == 1 and missing.output.strip() == "error: no escalation 'esc-000000000000'"
    group = runner.invoke(main, ["escalate", "hello", "--group", "nope", *opts])
    assert group.exit_code == 1 and "unknown group 'nope'" in group.output
    usage = runner.invoke(main, ["answer", "esc-1", *opts])
    assert usage.exit_code == 2


def test_route_groups_and_import(cli: tuple[CliRunner, list[str]], tmp_path: Path) -> None:
    runner, opts = cli
    routed = runner.invoke(main, ["route", "how many vacation days are left", "--json", *opts])
    assert json.loads(routed.output)["group"] == "hr"
    groups = runner.invoke(main, ["groups", "--json", *opts])
    assert [g["name"] for g in json.loads(groups.output)] == ["it-support", "hr", "general"]
    archive = tmp_path / "archive.jsonl"
    archive.write_text("".join(json.dumps({"id": f"t{n}", "title": t, "questions": [q], "answer": "a", "group": g}) + "\n"
                               for n, (t, q, g) in enumerate([("vpn broken", "vpn fails", "it-support"),
                                                             ("laptop slow", "laptop is slow", "it-support"),
                                                             ("salary late", "payslip missing", "hr"),
                                                             ("vacation days", "holidays left", "hr")])),
                       encoding="utf-8")
    imported = runner.invoke(main, ["import", "jsonl", str(archive), "--json", *opts])
    assert imported.exit_code == 0 and json.loads(imported.output)["added"] == 4
    (tmp_path / "questions.jsonl").write_text(
        json.dumps({"id": "q1", "question": "my vpn fails", "answer_ids": ["t0"], "group": "it-support"}) + "\n"
        + json.dumps({"id": "q2", "question": "where is my payslip", "answer_ids": [], "group": "hr"}) + "\n",
        encoding="utf-8")
    evaluated = runner.invoke(main, ["route-eval", str(tmp_path), "--json", *opts])
    report = json.loads(evaluated.output)
    assert report["questions"] == 2 and report["accuracy"] == 1.0 and report["mode"] == "questions"


def test_escalate_run_again_with_its_idempotency_key_sends_nothing(cli: tuple[CliRunner, list[str]],
                                                                    hook_env: WebhookServer) -> None:
    """A script that retries `kbsearch escalate` after a timeout passes the same key: one escalation,
    one notification; the same key for another question is a one-line error."""
    runner, opts = cli
    first = runner.invoke(main, ["escalate", "my laptop fan is loud", "--idempotency-key", "ticket-77", "--json", *opts])
    assert first.exit_code == 0, first.output
    esc = json.loads(first.output)
    assert esc["replayed"] is False
    again = runner.invoke(main, ["escalate", "my laptop fan is loud", "--idempotency-key", "ticket-77", *opts])
    assert again.exit_code == 0 and again.output.startswith(esc["id"]) and "nothing sent now" in again.output
    assert hook_env.keys() == [f"{esc['id']}/it-support/webhook/escalated"]  # sent once
    other = runner.invoke(main, ["escalate", "my vpn drops", "--idempotency-key", "ticket-77", *opts])
    assert other.exit_code == 1 and len(other.output.strip().splitlines()) == 1 and "another request" in other.output
