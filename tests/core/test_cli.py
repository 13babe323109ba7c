"""The CLI through click's CliRunner: thin commands, one-line errors, help with examples."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kbsearch.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, prefix + (name,))
        else:
            out.append(prefix + (name,))
    return out


@pytest.mark.parametrize("path", _all_commands(main), ids=lambda p: " ".join(p) or "kbsearch")
def test_every_command_has_help_with_an_example(runner: CliRunner, path: tuple[str, ...]) -> None:
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    tail = result.output[result.output.find("Example"):]
    assert "Example" in result.output and "kbsearch" in tail, result.output


def test_index_add_search_stats(runner: CliRunner, tmp_path: Path) -> None:
    index = str(tmp_path / "kb")
    result = runner.invoke(main, ["index", "add", str(EXAMPLES / "intranet.jsonl"), str(EXAMPLES / "answers.jsonl"),
                                  "--index", index])
    assert result.exit_code == 0 and result.output.startswith("added 35, updated 0, unchanged 0")
    again = runner.invoke(main, ["index", "add", str(EXAMPLES / "answers.jsonl"), "--index", index])
    assert "unchanged 12" in again.output
    result = runner.invoke(main, ["search", "what does the E02 alarm on the C40 mean", "--json", "--index", index, "-n", "3"])
    hits = json.loads(result.output)
    assert hits[0]["id"] == "answer:9" and len(hits) == 3
    assert {"id", "kind", "title", "url", "snippet", "score"} <= set(hits[0])
    text = runner.invoke(main, ["search", "what does the E02 alarm on the C40 mean", "--index", index])
    assert "1. C40 shows alarm E02" in text.output and "https://intranet.example/answers/9" in text.output
    stats = json.loads(runner.invoke(main, ["stats", "--json", "--index", index]).output)
    assert stats["documents"] == 35 and stats["answers"] == 12


def test_index_from_environment(runner: CliRunner, tmp_path: Path) -> None:
    env = {"KBSEARCH_INDEX": str(tmp_path / "envkb")}
    assert runner.invoke(main, ["index", "add", str(EXAMPLES / "answers.jsonl")], env=env).exit_code == 0
    assert json.loads(runner.invoke(main, ["stats", "--json"], env=env).output)["documents"] == 12


def test_group_flag_unlocks_restricted(runner: CliRunner, tmp_path: Path) -> None:
    index = str(tmp_path / "kb")
    runner.invoke(main, ["index", "add", str(EXAMPLES / "intranet.jsonl"), "--index", index])
    public = json.loads(runner.invoke(main, ["search", "salary bands job level", "--json", "--index", index]).output)
    hr = json.loads(runner.invoke(main, ["search", "salary bands job level", "--json", "-g", "hr", "--index", index]).output)
    assert "page:hr/salary#bands" not in [h["id"] for h in public]
    assert hr[0]["id"] == "page:hr/salary#bands"


def test_rebuild_flag(runner: CliRunner, tmp_path: Path) -> None:
    index = str(tmp_path / "kb")
    runner.invoke(main, ["index", "add", str(EXAMPLES / "intranet.jsonl"), "--index", index])
    result = runner.invoke(main, ["index", "add", "--rebuild", str(EXAMPLES / "answers.jsonl"), "--index", index, "--json"])
    assert json.loads(result.output)["documents"] == 12


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", ""], "error: the question is empty"),
        (["stats"], "error: no index at"),
        (["index", "add", "MISSING.jsonl"], "error: cannot read"),
        (["index", "add", "BAD.jsonl"], "error: BAD.jsonl:1: invalid JSON"),
    ],
    ids=["empty-question", "no-index", "missing-file", "bad-json"],
)
def test_errors_are_one_line_and_nonzero(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("BAD.jsonl").write_text("{not json\n", encoding="utf-8")
    if args[0] == "search":
        runner.invoke(main, ["index", "add", str(EXAMPLES / "answers.jsonl"), "--index", "kb"])
    result = runner.invoke(main, [*args, "--index", "kb" if args[0] != "stats" else "none"])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_py_runs_from_checkout(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(repo / "cli.py"), "--help"], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, check=False)
    assert out.returncode == 0 and "Usage: kbsearch" in out.stdout
