"""The ``kbsearch`` command: thin click wrappers over `KnowledgeBase`.

Each command parses options, calls one library method and formats the result (text for people,
``--json`` for scripts).  Library errors become a one-line message on stderr and exit status 1.
Commands of other areas live in this package's ``_*`` modules, registered on `main` below; what
they share is in `_common`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from . import _admin, _crawl, _deflect, _expert, _ops, _peers, _web
from ._common import (
    EXIT_ERROR,
    KbsearchGroup,
    emit_json,
    index_option,
    load_settings,
    open_kb,
    progress_counter,
)
from .._text import terminal_safe
from .._version import __version__
from ..documents import read_jsonl


@click.group(cls=KbsearchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kbsearch")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """Search intranet pages and past peer answers first; ask the peers only when search fails.

    \b
    Example:
      kbsearch index add examples/intranet.jsonl && kbsearch search "how do I reset my VPN password"
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@main.group("index", cls=KbsearchGroup)
def index_group() -> None:
    """Put documents into the index.

    \b
    Example:
      kbsearch index add examples/intranet.jsonl --index indexes/demo
    """


@index_group.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path, allow_dash=True))
@click.option("--rebuild", is_flag=True, help="Replace the whole index with these files (new generation, atomic switch).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option
def index_add(files: tuple[Path, ...], rebuild: bool, as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Add or update documents from JSONL files (one document per line; '-' reads stdin).

    Each line: {"id", "title", "text", "kind": "page"|"answer", "url", "questions": [...],
    "group", "allowed_groups": [...], "updated"}; only id, title and text are required.
    Unchanged documents are skipped, so re-running is cheap.

    \b
    Example:
      kbsearch index add examples/intranet.jsonl examples/answers.jsonl
    """
    from ..documents import iter_jsonl_lines

    def stream():
        for f in files:
            if str(f) == "-":
                yield from iter_jsonl_lines(click.get_text_stream("stdin"), "<stdin>")
            else:
                yield from read_jsonl(f)

    kb = open_kb(index_path, config_file, create=True)
    update, finish = progress_counter("documents", not as_json)
    with kb:
        report = kb.rebuild(stream(), progress=update) if rebuild else kb.add(stream(), progress=update)
    finish()
    if as_json:
        emit_json(report.to_dict())
    elif rebuild:
        kept = f" (with {report.answers_kept} peer answers from the escalation store)" if report.answers_kept else ""
        click.echo(f"rebuilt: {report.documents} documents{kept} in {report.seconds:.1f}s -> {report.generation}")
    else:
        click.echo(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}"
                   + (f", duplicate ids {report.duplicates}" if report.duplicates else "")
                   + f" in {report.seconds:.1f}s")


@main.command("search")
@click.argument("question")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=None, help="Number of hits [default 10].")
@click.option("-g", "--group", "groups", multiple=True, help="A group the asker belongs to (repeatable); "
              "restricted documents of other groups are never shown.")
@click.option("--json", "as_json", is_flag=True, help="Print hits as a JSON list.")
@index_option
def search_cmd(question: str, limit: int | None, groups: tuple[str, ...], as_json: bool,
               index_path: Path | None, config_file: Path | None) -> None:
    """Search intranet pages and past answers with a natural-language QUESTION.

    \b
    Example:
      kbsearch search "how do I reset my VPN password" --limit 5 --group it-support
    """
    with open_kb(index_path, config_file) as kb:
        hits = kb.search(question, limit=limit, user_groups=list(groups))
    if as_json:
        emit_json([h.to_dict() for h in hits])
        return
    if not hits:
        click.echo("no results")
        return
    for rank, h in enumerate(hits, 1):
        label = "answer" if h.kind == "answer" else "page"
        flags = "".join([" ✓verified" if h.verified else "", " (outdated)" if h.outdated else ""])
        click.echo(click.style(f"{rank}. {terminal_safe(h.title)}", bold=True)
                   + f"  [{label}{flags}, score {h.score:.3f}]")
        if h.url:
            click.echo(f"   {terminal_safe(h.url)}")
        # Highlights are marked after the text is made safe: only our own escape sequences reach the terminal.
        snippet = terminal_safe(h.snippet_text(("\x01", "\x02")))
        bold = ("\x1b[1m", "\x1b[0m") if sys.stdout.isatty() else ("", "")
        snippet = snippet.replace("\\x01", bold[0]).replace("\\x02", bold[1])
        if snippet:
            click.echo("   " + " ".join(snippet.split()))


@main.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@index_option
def stats_cmd(as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Show what the index holds: documents, pages, answers, size, model, and per source its
    documents, last sync run (start, end, outcome, pages fetched / changed / failed) and health.

    \b
    Example:
      kbsearch stats --json
    """
    from ..ops._source_runs import describe, with_health

    with open_kb(index_path, config_file) as kb:
        stats = kb.stats()
        counts = kb.source_stats()
        sources = with_health(counts, kb.source_health(sources=[s.source for s in counts]))
    if as_json:
        emit_json({**stats.to_dict(), "sources": sources})
        return
    for key, value in stats.to_dict().items():
        click.echo(f"{key:>16}: {terminal_safe(value)}")
    click.echo("per source:")
    for s in sources:
        newest = f", newest {s['newest_updated'][:10]}" if s["newest_updated"] else ""
        click.echo(terminal_safe(f"{s['source'] or '(none)':>16}: {s['documents']} documents ({s['pages']} pages, "
                                 f"{s['answers']} answers, {s['restricted']} restricted{newest})"))
        click.echo(terminal_safe(f"{'':>16}  {describe(s['run'])}"))


# The commands of the other areas, each in its own module.
for _area in (_crawl, _deflect, _ops, _peers, _web, _expert, _admin):
    _area.register(main)

__all__ = ["EXIT_ERROR", "KbsearchGroup", "emit_json", "index_option", "load_settings", "main", "open_kb",
           "progress_counter", "run"]


def run() -> None:  # pragma: no cover - console-script entry point
    main(prog_name="kbsearch")

