"""CLI of index administration: ``kbsearch index delete`` (registered on the ``index`` group) and
``kbsearch move-to-postgresql``.

Each command parses its options, calls one `KnowledgeBase` method and prints the result.
"""

from __future__ import annotations

from pathlib import Path

import click

from .._text import terminal_safe as safe
from ._common import emit_json, index_option, open_kb


def register(main: click.Group) -> None:
    group = main.commands["index"]
    assert isinstance(group, click.Group)
    group.add_command(index_delete)
    main.add_command(move_to_postgresql)


@click.command("delete")
@click.argument("ids", nargs=-1)
@click.option("--source", default=None, help="Delete every document of this source (see `kbsearch stats`).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option
def index_delete(ids: tuple[str, ...], source: str | None, as_json: bool, index_path: Path | None,
                 config_file: Path | None) -> None:
    """Delete documents by ID (and/or all of a --source) in a new version; searches never see half of it.

    Exit status 1 when an ID was not in the index (the others are deleted).  A page still on its site
    comes back with the next crawl; delete it there too, or exclude it in the source's settings.

    \b
    Example:
      kbsearch index delete 5f0c9a1e2b3d4c5e6f7a8b9c
      kbsearch index delete --source old-wiki
    """
    with open_kb(index_path, config_file) as kb:
        report = kb.delete_documents(ids, source=source)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(safe(f"deleted {report.deleted} of {report.requested}"
                        + (f"; not found: {', '.join(report.missing)}" if report.missing else "")))
    if report.missing:
        raise SystemExit(1)


@click.command("move-to-postgresql")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option
def move_to_postgresql(as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Copy the index directory's SQLite state into the PostgreSQL of $KBSEARCH_DATABASE_URL.

    Escalations (history, attachments, claims, the outbox), the usage log and the crawl state, for
    the move from one machine to several (docs/postgresql.md). Nothing is copied when that database
    already holds any of it; the SQLite files stay where they are and are no longer read.

    \b
    Example:
      KBSEARCH_DATABASE_URL=postgresql://kbsearch@db.internal/kbsearch kbsearch move-to-postgresql
    """
    with open_kb(index_path, config_file) as kb:
        report = kb.move_to_postgresql()
    if as_json:
        emit_json(report.to_dict())
        return
    for name, tables in report.files.items():
        click.echo(safe(f"{name}: " + ", ".join(f"{n} {t}" for t, n in tables.items())))
    for name, why in report.kept.items():
        click.echo(safe(f"{name}: not copied ({why})"))
    files = f"{len(report.files)} file" + ("" if len(report.files) == 1 else "s")
    click.echo(safe(f"copied {report.rows} rows from {files} into {report.database} "
                    f"in {report.seconds:.1f} s"))
