"""``kbsearch crawl``: crawl intranet pages ad hoc into the index (the same code as ``type = "web"`` sources)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .._text import terminal_safe
from ._common import emit_json, index_option, open_kb


def register(main: click.Group) -> None:
    main.add_command(crawl_cmd)


class _Progress:
    """Live counts on a terminal (stderr): pages fetched, pages/s, queue, errors."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, event: dict[str, Any]) -> None:
        self.shown = True
        click.echo(f"\r\x1b[2Kfetched {event.get('fetched', 0):,}  parsed {event.get('parsed', 0):,}  "
                   f"{event.get('pages_per_second', 0.0):.1f} pages/s  queued {event.get('queued', 0):,}  "
                   f"skipped {event.get('skipped', 0):,}  errors {event.get('errors', 0):,}", err=True, nl=False)

    def finish(self) -> None:
        if self.shown:
            click.echo("", err=True)


@click.command("crawl")
@click.argument("start_urls", nargs=-1, required=True)
@click.option("--max-pages", type=click.IntRange(1), default=None, help="Fetch at most N pages [default: crawl.max_pages].")
@click.option("--name", default=None, help="Source name for the documents and crawl state [default: the first URL's host].")
@click.option("--prefix", "prefixes", multiple=True, help="Allowed URL prefix (repeatable) [default: the start URLs' directories].")
@click.option("--exclude", "excludes", multiple=True, help="Regular expression of URLs never to fetch (repeatable).")
@click.option("--delay", type=click.FloatRange(0), default=None, help="Seconds between requests to one host.")
@click.option("--full", is_flag=True, help="Re-parse every page, ignoring ETags and content hashes.")
@click.option("--dry-run", is_flag=True, help="Fetch and extract, but write neither the index nor the crawl state.")
@click.option("--calibrate", is_flag=True,
              help="Also recalibrate deflection after the crawl (otherwise the next reindex does).")
@click.option("--json", "as_json", is_flag=True, help="Print the crawl report as JSON.")
@index_option
def crawl_cmd(start_urls: tuple[str, ...], max_pages: int | None, name: str | None, prefixes: tuple[str, ...],
              excludes: tuple[str, ...], delay: float | None, full: bool, dry_run: bool, calibrate: bool,
              as_json: bool,
              index_path: Path | None, config_file: Path | None) -> None:
    """Crawl intranet pages from START_URL... into the index, incrementally.

    Only the start URLs' hosts and directories are crawled unless --prefix widens the scope;
    robots.txt, sitemaps, noindex and the [crawl] settings apply.  A second run re-parses only
    what changed and removes pages that are gone.  Exits 1 when pages failed (listed with --json).

    \b
    Example:
      kbsearch crawl http://wiki.intranet/docs/ --max-pages 500 --index indexes/demo
    """
    progress = _Progress() if sys.stderr.isatty() and not as_json else None
    options: dict[str, Any] = {"max_pages": max_pages, "delay": delay,
                               "allowed_prefixes": list(prefixes) or None, "exclude": list(excludes) or None}
    with open_kb(index_path, config_file, create=True) as kb:
        try:
            report = kb.crawl(list(start_urls), name=name, full=full, dry_run=dry_run, calibrate=calibrate,
                              progress=progress,
                              **{k: v for k, v in options.items() if v is not None})
        finally:
            if progress is not None:
                progress.finish()
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(terminal_safe(report.summary(), multiline=True))
        for error in report.errors[:10]:
            click.echo(terminal_safe(f"  failed: {error['item']}: {error['reason']}"), err=True)
        if len(report.errors) > 10:
            click.echo(f"  ... and {report.failed - 10} more failures (see --json)", err=True)
    if report.failed:
        sys.exit(1)
