"""CLI of the answer loop: escalate, list, answer, verify, duplicates, outdated, deliver, route, import.

Every command parses its options, calls one `KnowledgeBase` method and prints the result
(``--json`` for scripts).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from .._text import terminal_safe as safe
from ._common import KbsearchGroup, emit_json, index_option, load_settings, open_kb


def register(main: click.Group) -> None:
    for command in (escalate_cmd, escalations_cmd, answer_cmd, verify_cmd, duplicate_cmd, outdated_cmd,
                    deliver_cmd, route_cmd, route_eval_cmd, groups_cmd, import_group):
        main.add_command(command)


def _when(value: str | None) -> str:
    return (value or "")[:16].replace("T", " ")


def _print_escalation(esc: Any, detail: bool = False) -> None:
    """One escalation for a terminal; every stored text goes through `safe` (a question is user input)."""
    state = esc.status + ("" if not esc.answered else (", indexed" if esc.indexed else ", not indexed yet"))
    click.echo(click.style(safe(esc.id), bold=True)
               + safe(f"  [{esc.group}] {state}  {_when(esc.to_dict()['created'])}"))
    click.echo(f"   {safe(esc.question)}")
    if detail:
        if esc.routing.get("reason"):
            click.echo(f"   routed: {safe(esc.routing['reason'])}")
        if getattr(esc, "claimed_by", None):
            click.echo(safe(f"   held by: {esc.claimed_by} since {_when(esc.to_dict()['claimed_at'])}"))
        if esc.answer:
            click.echo(f"   answer ({safe(esc.answered_by or 'unknown')}): {safe(esc.answer)}")
        for event in esc.events:  # replaced answers are kept in the history: show who changed what
            if event["kind"] == "answer_changed":
                old = event["detail"]
                click.echo(safe(f"   replaced {_when(event['at'])} by {event['actor'] or 'the operator'}; earlier "
                                f"answer ({old.get('previous_by') or 'unknown'}): {old.get('previous')}"))
        if esc.duplicate_of:
            click.echo(f"   duplicate of: {safe(esc.duplicate_of)}")
        for a in esc.attachments:
            click.echo(safe(f"   attachment: {a.filename} ({a.content_type}, {a.size:,} bytes)"))
        for n in esc.notifications:
            extra = f" ({n['last_error']})" if n["last_error"] and n["status"] != "delivered" else ""
            click.echo(safe(f"   notify {n['channel']} {n['kind']}: {n['status']}, {n['attempts']} attempt(s){extra}"))


@click.command("escalate")
@click.argument("question")
@click.option("-g", "--group", default=None, help="Send to this group (otherwise routing picks one).")
@click.option("--user", default=None, help="Who asks (shown to the peers).")
@click.option("--note", default="", help="More details for the peers.")
@click.option("--attach", "attachments", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file to attach, e.g. a photo (repeatable).")
@click.option("--no-deliver", is_flag=True, help="Only store; `kbsearch deliver` sends the notifications.")
@click.option("--idempotency-key", default=None,
              help="A key for this question: run again with it (a retry), it prints the first escalation and sends nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def escalate_cmd(question: str, group: str | None, user: str | None, note: str, attachments: tuple[Path, ...],
                 no_deliver: bool, idempotency_key: str | None, as_json: bool, index_path: Path | None,
                 config_file: Path | None) -> None:
    """Send QUESTION to a peer group and notify it; prints the escalation id and group.

    \b
    Example:
      kbsearch escalate "The label printer in hall 3 prints blank pages" --attach photo.jpg
    """
    with open_kb(index_path, config_file, create=True) as kb:
        esc = kb.escalate(question, user=user, group=group, note=note, attachments=list(attachments),
                          deliver=False if no_deliver else None, idempotency_key=idempotency_key)
    if as_json:
        emit_json({**esc.to_dict(), "replayed": esc.replayed})
        return
    sent = sum(n["status"] == "delivered" for n in esc.notifications)
    click.echo(safe(f"{esc.id} -> {esc.group} ({esc.routing.get('reason', '')}); "
                    + ("stored before with this idempotency key: nothing sent now" if esc.replayed
                       else f"{sent}/{len(esc.notifications)} notifications sent")))


@click.command("escalations")
@click.argument("escalation_id", required=False)
@click.option("-g", "--group", default=None, help="Only this group's escalations.")
@click.option("--open", "open_only", is_flag=True, help="Only those still waiting for an answer.")
@click.option("--status", default=None, help="Only this status (escalated, answered, verified, duplicate, ...).")
@click.option("--user", default=None, help="Only this asker's escalations.")
@click.option("-n", "--limit", type=click.IntRange(1, 100000), default=100, help="At most this many [100].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@index_option
def escalations_cmd(escalation_id: str | None, group: str | None, open_only: bool, status: str | None,
                    user: str | None, limit: int, as_json: bool, index_path: Path | None,
                    config_file: Path | None) -> None:
    """List escalations (newest first), or show one ESCALATION_ID with its history.

    \b
    Example:
      kbsearch escalations --group it-support --open
    """
    with open_kb(index_path, config_file, create=True) as kb:
        if escalation_id:
            esc = kb.escalation(escalation_id)
            if as_json:
                emit_json(esc.to_dict())
            else:
                _print_escalation(esc, detail=True)
            return
        items = kb.escalations(group=group, status=status, open_only=open_only, user=user, limit=limit)
    if as_json:
        emit_json([e.to_dict() for e in items])
        return
    if not items:
        click.echo("no escalations")
    for esc in items:
        _print_escalation(esc)


@click.command("answer")
@click.argument("escalation_id")
@click.option("--text", default=None, help="The answer text.")
@click.option("--file", "text_file", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the answer from a file ('-' for stdin).")
@click.option("--by", default=None,
              help="Who answers; the rules apply to this person (an existing answer is changed only by its "
                   "answerer or an expert). Without --by you act as the operator.")
@click.option("--verify", is_flag=True, help="Mark the answer verified (experts of the group only).")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def answer_cmd(escalation_id: str, text: str | None, text_file: Any, by: str | None, verify: bool, as_json: bool,
               index_path: Path | None, config_file: Path | None) -> None:
    """Record the answer to an escalation; it is searchable at once (a replaced answer stays in the history).

    \b
    Example:
      kbsearch answer esc-1a2b3c4d5e6f --text "Hold the reset button for 10 s." --by bo@example.com --verify
    """
    if (text is None) == (text_file is None):
        raise click.UsageError("give the answer with exactly one of --text or --file")
    body = text if text is not None else text_file.read()
    with open_kb(index_path, config_file, create=True) as kb:
        esc = kb.answer(escalation_id, body, by=by, verify=verify)
    if as_json:
        emit_json(esc.to_dict())
    else:
        click.echo(safe(f"{esc.id}: {esc.status}") + (", searchable now" if esc.indexed else
                                              ", stored (the index is busy; `kbsearch deliver` indexes it)"))


@click.command("verify")
@click.argument("escalation_id")
@click.option("--by", default=None, help="The expert who verifies.")
@click.option("--undo", is_flag=True, help="Remove the verified mark.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def verify_cmd(escalation_id: str, by: str | None, undo: bool, as_json: bool, index_path: Path | None,
               config_file: Path | None) -> None:
    """Mark an answered escalation verified by an expert (verified answers rank higher).

    \b
    Example:
      kbsearch verify esc-1a2b3c4d5e6f --by bo@example.com
    """
    with open_kb(index_path, config_file) as kb:
        esc = kb.review_answer(escalation_id, verified=not undo, by=by)
    if as_json:
        emit_json(esc.to_dict())
    else:
        click.echo(f"{esc.id}: {esc.status}")


@click.command("duplicate")
@click.argument("escalation_id")
@click.argument("doc_id")
@click.option("--by", default=None, help="Who closes it.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def duplicate_cmd(escalation_id: str, doc_id: str, by: str | None, as_json: bool, index_path: Path | None,
                  config_file: Path | None) -> None:
    """Close an escalation as a duplicate of answer DOC_ID; its wording becomes a phrasing of that answer.

    \b
    Example:
      kbsearch duplicate esc-1a2b3c4d5e6f 5f0c9a1e2b3d4c5e6f7a8b9c
    """
    with open_kb(index_path, config_file) as kb:
        esc = kb.close_duplicate(escalation_id, doc_id, by=by)
    if as_json:
        emit_json(esc.to_dict())
    else:
        click.echo(safe(f"{esc.id}: closed as duplicate of {esc.duplicate_of}"))


@click.command("outdated")
@click.argument("doc_id")
@click.option("--undo", is_flag=True, help="Mark it current again.")
@click.option("--by", default=None, help="Who marks it.")
@index_option
def outdated_cmd(doc_id: str, undo: bool, by: str | None, index_path: Path | None, config_file: Path | None) -> None:
    """Mark a document outdated: it ranks lower and is never used to answer directly.

    \b
    Example:
      kbsearch outdated 5f0c9a1e2b3d4c5e6f7a8b9c
    """
    with open_kb(index_path, config_file) as kb:
        doc = kb.mark_outdated(doc_id, outdated=not undo, by=by)
    click.echo(safe(f"{doc.id}: {'outdated' if doc.outdated else 'current'}"))


@click.command("deliver")
@click.option("--watch", type=click.FloatRange(min=1), default=None,
              help="Keep running, one round every this many seconds (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option
def deliver_cmd(watch: float | None, as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Run the outbox: the SLA (reminders, fallback groups, leads), due notifications, answers not yet indexed.

    Exit status 1 when a notification failed for good (see `kbsearch escalations ID`).

    \b
    Example:
      kbsearch deliver --index indexes/default   # e.g. every minute from cron
    """
    with open_kb(index_path, config_file, create=True) as kb:
        while True:
            report = kb.deliver_notifications()
            if as_json:
                emit_json(report.to_dict())
            else:
                sla = report.sla or {}
                click.echo(f"delivered {report.delivered}, retrying {report.retrying}, failed {report.failed}, "
                           f"reminders {report.reminders + sla.get('reminders', 0)}, "
                           f"handed on {len(sla.get('handed_on', []))}, overdue {len(sla.get('overdue', []))}, "
                           f"answers indexed {report.indexed}, pending {report.pending}")
            if watch is None:
                break
            time.sleep(watch)
    if report.failed:
        sys.exit(1)


@click.command("route")
@click.argument("question")
@click.option("-g", "--group", default=None, help="The asker's own choice (always wins).")
@click.option("--json", "as_json", is_flag=True, help="Print the routing as JSON.")
@index_option
def route_cmd(question: str, group: str | None, as_json: bool, index_path: Path | None,
              config_file: Path | None) -> None:
    """Show which peer group QUESTION would go to, with confidences and the reason.

    \b
    Example:
      kbsearch route "my VPN drops every 10 minutes"
    """
    with open_kb(index_path, config_file, create=True) as kb:
        routing = kb.route(question, group=group)
    if as_json:
        emit_json(routing.to_dict())
        return
    click.echo(safe(f"{routing.group}  (confidence {routing.confidence:.2f}: {routing.reason})"))
    for name, conf in routing.ranked[1:4]:
        click.echo(safe(f"   then {name} {conf:.2f}"))


@click.command("route-eval")
@click.argument("set_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--cv", "cross_validate", is_flag=True, default=None,
              help="Cross-validate over the archive even if questions have groups.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, help="Folds of the cross-validation [5].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@index_option
def route_eval_cmd(set_dir: Path, cross_validate: bool | None, folds: int, as_json: bool, index_path: Path | None,
                   config_file: Path | None) -> None:
    """Measure routing accuracy on an evaluation set (train on archive.jsonl, test on grouped questions).

    Sets whose questions carry no group are cross-validated over the archive's threads.

    \b
    Example:
      kbsearch route-eval tests/data/eval/clinc150 --json
    """
    from ..peers.route import evaluate_routing

    settings = load_settings(index_path, config_file)
    report = evaluate_routing(set_dir, cfg=settings.route, folds=folds, cross_validate=cross_validate or None)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.set}: routing accuracy {report.accuracy} (top-2 {report.top2_accuracy}) on "
               f"{report.questions} questions, {report.groups} groups, {report.mode}"
               + (f" ({report.folds} folds)" if report.folds else "") + f", {report.seconds:.1f}s")


@click.command("groups")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@index_option
def groups_cmd(as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """List the peer groups from [[groups]] in the config (and the default group): channels, experts,
    members and their own SLA settings.

    \b
    Example:
      kbsearch groups --config kbsearch.toml
    """
    with open_kb(index_path, config_file, create=True) as kb:
        groups = kb.groups()
    if as_json:
        emit_json([g.to_dict() for g in groups])
        return
    for g in groups:
        channels = ", ".join(f"{c.name} ({c.type})" for c in g.channels) or "no channels"
        click.echo(click.style(safe(g.name), bold=True) + ("" if g.configured else " (default, implicit)")
                   + safe(f": {g.description}  [{channels}]"))
        if g.experts or g.members:
            click.echo(safe(f"   experts: {', '.join(g.experts) or '-'}; members: {', '.join(g.members) or '-'}"))
        sla = [f"{k.replace('_', ' ')} {v}" for k, v in (("fallback_after_hours", g.fallback_after_hours),
               ("fallback_group", g.fallback_group), ("lead", g.lead), ("remind_every_hours", g.remind_every_hours))
               if v is not None]
        if sla:
            click.echo(safe(f"   SLA: {', '.join(sla)}"))


@click.group("import", cls=KbsearchGroup)
def import_group() -> None:
    """Import past peer answers: Stack Exchange dump, Discourse, JSONL, CSV.

    \b
    Example:
      kbsearch import stackexchange Posts.xml --name teams --base-url https://teams.example.com
    """


def _run_import(kind: str, options: dict[str, Any], full: bool, as_json: bool, index_path: Path | None,
                config_file: Path | None) -> None:
    options = {k: v for k, v in options.items() if v not in (None, (), {}, [])}
    tty = sys.stderr.isatty() and not as_json

    def progress(event: dict[str, Any]) -> None:
        if tty:
            click.echo(f"\r{event.get('source')}: {event.get('fetched', 0):,} read", err=True, nl=False)

    with open_kb(index_path, config_file, create=True) as kb:
        report = kb.import_source(kind, full=full, progress=progress, **options)
    if tty:
        click.echo("", err=True)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(safe(f"{report.source}: {report.fetched} read, {report.added} added, {report.updated} updated, "
                        f"{report.unchanged} unchanged, {report.deleted} deleted, {report.skipped} skipped, "
                        f"{report.failed} failed in {report.seconds:.1f}s"))
        for err in report.errors[:10]:
            click.echo(safe(f"   failed {err['item']}: {err['reason']}"), err=True)
    if report.failed:
        sys.exit(1)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, group = value.partition("=")
        if not sep or not key or not group:
            raise click.BadParameter(f"expected NAME=GROUP, got {value!r}", param_hint=what)
        out[key] = group
    return out


_common = [
    click.option("--name", default=None, help="Source name (keeps its documents apart) [default: the type]."),
    click.option("--group", default=None, help="Group of imported answers that have none."),
    click.option("--full", is_flag=True, help="Ignore incremental state."),
    click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    index_option,
]


def _with_common(func: Any) -> Any:
    for deco in reversed(_common):
        func = deco(func)
    return func


@import_group.command("stackexchange")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--base-url", default="", help="Site URL for links to the questions.")
@click.option("--tag-group", "tag_groups", multiple=True, help="TAG=GROUP: questions with TAG go to GROUP (repeatable).")
@click.option("--require-accepted", is_flag=True, help="Skip questions without an accepted answer.")
@_with_common
def import_stackexchange(path: Path, base_url: str, tag_groups: tuple[str, ...], require_accepted: bool,
                         name: str | None, group: str | None, full: bool, as_json: bool, index_path: Path | None,
                         config_file: Path | None) -> None:
    """Import a Stack Exchange / Stack Overflow for Teams data dump (Posts.xml), streaming.

    \b
    Example:
      kbsearch import stackexchange dump/Posts.xml --name teams --tag-group vpn=it-support
    """
    _run_import("stackexchange", {"name": name or "stackexchange", "path": str(path), "base_url": base_url,
                                  "group": group, "tag_groups": _pairs(tag_groups, "--tag-group"),
                                  "require_accepted": require_accepted or None},
                full, as_json, index_path, config_file)


@import_group.command("discourse")
@click.argument("base_url")
@click.option("--api-key-env", default=None, help="Environment variable holding the API key.")
@click.option("--api-username", default=None, help="API username sent with the key.")
@click.option("--category", "categories", multiple=True, help="Only this category (name or slug; repeatable).")
@click.option("--category-group", "category_groups", multiple=True, help="CATEGORY=GROUP override (repeatable).")
@click.option("--include-unsolved", is_flag=True, help="Also import unsolved topics with a liked reply.")
@_with_common
def import_discourse(base_url: str, api_key_env: str | None, api_username: str | None, categories: tuple[str, ...],
                     category_groups: tuple[str, ...], include_unsolved: bool, name: str | None, group: str | None,
                     full: bool, as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Import solved topics of a Discourse forum over its REST API (categories become groups).

    \b
    Example:
      kbsearch import discourse https://forum.example.com --api-key-env DISCOURSE_KEY --name forum
    """
    if group:
        raise click.UsageError("Discourse answers take their group from the category; use --category-group")
    _run_import("discourse", {"name": name or "discourse", "base_url": base_url, "api_key_env": api_key_env,
                              "api_username": api_username, "categories": list(categories),
                              "category_groups": _pairs(category_groups, "--category-group"),
                              "include_unsolved": include_unsolved or None},
                full, as_json, index_path, config_file)


@import_group.command("jsonl")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_with_common
def import_jsonl(path: Path, name: str | None, group: str | None, full: bool, as_json: bool,
                 index_path: Path | None, config_file: Path | None) -> None:
    """Import documents or past answers from JSONL (the eval archive.jsonl format imports as-is).

    \b
    Example:
      kbsearch import jsonl tests/data/eval/stackfaq/archive.jsonl --name stackfaq
    """
    _run_import("jsonl", {"name": name or path.stem, "path": str(path), "group": group},
                full, as_json, index_path, config_file)


@import_group.command("csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--delimiter", default=",", help="Field delimiter [,].")
@click.option("--list-separator", default="|", help="Separator inside list cells such as questions [|].")
@_with_common
def import_csv(path: Path, delimiter: str, list_separator: str, name: str | None, group: str | None, full: bool,
               as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Import past answers from CSV with a header row (id, title/question, text/answer, questions, group, ...).

    \b
    Example:
      kbsearch import csv faq.csv --name hr-faq --group hr
    """
    _run_import("csv", {"name": name or path.stem, "path": str(path), "group": group, "delimiter": delimiter,
                        "list_separator": list_separator}, full, as_json, index_path, config_file)
