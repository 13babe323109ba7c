"""What every ``kbsearch`` command module shares: the error-handling group, the ``--index`` /
``--config`` options, opening the knowledge base, JSON output and a progress counter.

`kbsearch.cli` and the area modules (``_crawl``, ``_peers``, ...) import this; it imports none of them, so the CLI's
imports flow one way (cli -> area modules -> _common).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._text import json_safe, terminal_safe
from ..config import Settings
from ..errors import KbsearchError

if TYPE_CHECKING:  # imported when a command opens an index: `--help` does not load the engine
    from ..kb import KnowledgeBase

EXIT_ERROR = 1


class KbsearchGroup(click.Group):
    """A click group that turns `KbsearchError` into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KbsearchError as exc:
            click.echo(f"error: {terminal_safe(exc)}", err=True)
            ctx.exit(EXIT_ERROR)


def index_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--index DIR`` (env ``KBSEARCH_INDEX``; default ``indexes/default``) and ``--config FILE``."""
    func = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                        envvar="KBSEARCH_CONFIG", help="TOML config file (default ./kbsearch.toml if present).")(func)
    func = click.option("--index", "index_path", type=click.Path(file_okay=False, path_type=Path),
                        default=None, help="Index directory [env KBSEARCH_INDEX; default indexes/default].")(func)
    return func


def load_settings(index_path: Path | None, config_file: Path | None, **overrides: Any) -> Settings:
    """Settings with the documented precedence: default < file < env < these flags."""
    return Settings.load(config_file=config_file, index_path=index_path, **overrides)


def open_kb(index_path: Path | None, config_file: Path | None, create: bool = False, **overrides: Any) -> KnowledgeBase:
    """Open the knowledge base named by the common options."""
    from ..kb import KnowledgeBase

    return KnowledgeBase.open(settings=load_settings(index_path, config_file, **overrides), create=create)


def emit_json(data: Any) -> None:
    """``data`` as indented JSON; control characters in strings stay escaped (`json_safe`), so JSON of
    user text cannot drive the terminal either."""
    click.echo(json_safe(json.dumps(data, ensure_ascii=False, indent=2, default=str)))


def progress_counter(label: str, enabled: bool) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A live "N documents" counter on a terminal (stderr); returns (callback, finish)."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None

    def update(n: int) -> None:
        click.echo(f"\r{label}: {n:,}", err=True, nl=False)

    def finish() -> None:
        click.echo("", err=True)

    return update, finish
