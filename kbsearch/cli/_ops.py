"""CLI commands for operators: ``reindex`` (nightly, from cron or a systemd timer) and ``report``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from .._text import terminal_safe
from ._common import emit_json, index_option, open_kb


def register(main: click.Group) -> None:
    main.add_command(reindex_cmd)
    main.add_command(report_cmd)


class _ReindexProgress:
    """A live status line on a terminal; plain, timestamped lines otherwise (cron mail, journald)."""

    def __init__(self, quiet: bool) -> None:
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.last = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        stage = event.get("stage")
        src = event.get("source", "")
        if self.tty:
            if stage == "sync":
                counts = " ".join(f"{k} {event[k]}" for k in ("fetched", "added", "updated", "failed") if k in event)
                self._line(f"syncing {src} {counts}")
            elif stage == "build":
                self._line(f"rebuilding: {event.get('documents', 0):,} documents")
            elif stage in ("synced", "sync-failed"):
                self._line("")
                click.echo(terminal_safe(self._plain(event)), err=True)
            elif stage == "done":
                self._line("")
            return
        if stage in ("synced", "sync-failed") or (stage == "sync" and len(event) == 2):
            click.echo(terminal_safe(self._plain(event)), err=True)
        elif stage == "build" and (event.get("documents", 0) == 0 or time.monotonic() - self.last > 10):
            self.last = time.monotonic()
            click.echo(terminal_safe(self._plain(event)), err=True)

    def _line(self, text: str) -> None:
        click.echo("\r\x1b[2K" + terminal_safe(text)[:120], err=True, nl=False)

    @staticmethod
    def _plain(event: dict[str, Any]) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        stage = event.get("stage")
        if stage == "sync":
            return f"{stamp} reindex: syncing source {event.get('source')}"
        if stage == "synced":
            return (f"{stamp} reindex: source {event.get('source')} done: +{event.get('added') or 0} "
                    f"~{event.get('updated') or 0} -{event.get('deleted') or 0}, {event.get('failed') or 0} errors")
        if stage == "sync-failed":
            return f"{stamp} reindex: source {event.get('source')} FAILED (previous documents kept): {event.get('error')}"
        return f"{stamp} reindex: rebuilding, {event.get('documents', 0):,} documents"


@click.command("reindex")
@click.option("--source", "only", multiple=True, help="Reindex only this source (repeatable; name of crawlers/NAME.toml).")
@click.option("--full", is_flag=True, help="Ignore incremental state (refetch / reimport everything).")
@click.option("--sources", "sources_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of source files [default crawlers; web.sources_dir].")
@click.option("--wait", type=click.FloatRange(0), default=None,
              help="Seconds to wait if another reindex is running [default 0: exit 75 at once].")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress; only the summary line.")
@index_option
def reindex_cmd(only: tuple[str, ...], full: bool, sources_dir: Path | None, wait: float | None, as_json: bool,
                quiet: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Sync every source in crawlers/ incrementally, refit, recalibrate and switch the index atomically.

    Searches keep working meanwhile. A failed source keeps its previous documents. Exit status:
    0 ok, 2 some source failed (index rebuilt from what it has), 1 error, 75 another reindex is running.

    \b
    Example:
      kbsearch reindex --index indexes/default --wait 600
    """
    from ..ops.reindex import EXIT_RUNNING, ReindexRunningError

    kb = open_kb(index_path, config_file, create=True)
    with kb:
        try:
            report = kb.reindex(sources_dir, only=only or None, full=full, wait=wait,
                                progress=_ReindexProgress(quiet or as_json))
        except ReindexRunningError as exc:
            click.echo(f"reindex skipped: {terminal_safe(exc)}", err=True)
            sys.exit(EXIT_RUNNING)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(terminal_safe(report.summary(), multiline=True))
    sys.exit(report.exit_code)


@click.command("report")
@click.option("--days", type=click.IntRange(1, 3650), default=90, help="Period covered, in days [default 90].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML page with charts to this file.")
@index_option
def report_cmd(days: int, as_json: bool, html_file: Path | None, index_path: Path | None,
               config_file: Path | None) -> None:
    """The deflection report: questions asked, answered from the index, escalated, content gaps.

    \b
    Example:
      kbsearch report --days 30 --html report.html
    """
    from ..ops.report import render_html, render_text

    with open_kb(index_path, config_file) as kb:
        report = kb.report(days=days)
    if html_file is not None:
        html_file.write_text(render_html(report), encoding="utf-8")
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(terminal_safe(render_text(report), multiline=True))  # it quotes people's questions
        if html_file is not None:
            click.echo(f"HTML report written to {html_file}")
