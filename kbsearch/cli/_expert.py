"""CLI of the expert tools: claim, assign and give back escalations; the SLA run operators can cron.

Every command parses its options, calls one `KnowledgeBase` method and prints the result
(``--json`` for scripts); library errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._text import terminal_safe as safe
from ._common import emit_json, index_option, open_kb


def register(main: click.Group) -> None:
    for command in (claim_cmd, assign_cmd, unclaim_cmd, sla_cmd):
        main.add_command(command)


def _held(esc: Any) -> str:
    if esc.claimed_by is None:
        return f"{esc.id}: nobody holds it"
    by = f" (assigned by {esc.assigned_by})" if esc.assigned_by and esc.assigned_by != esc.claimed_by else ""
    return f"{esc.id}: held by {esc.claimed_by}{by}"


@click.command("claim")
@click.argument("escalation_id")
@click.option("--by", required=True, help="Who takes the question.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def claim_cmd(escalation_id: str, by: str, as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Take an open escalation so others see it is taken (refused while someone else holds it).

    \b
    Example:
      kbsearch claim esc-1a2b3c4d5e6f --by bo@example.com
    """
    with open_kb(index_path, config_file) as kb:
        esc = kb.claim(escalation_id, by=by)
    emit_json(esc.to_dict()) if as_json else click.echo(safe(_held(esc)))


@click.command("assign")
@click.argument("escalation_id")
@click.argument("person")
@click.option("--by", default=None, help="Who assigns (an expert of the group or its holder); "
              "without --by you act as the operator.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def assign_cmd(escalation_id: str, person: str, by: str | None, as_json: bool, index_path: Path | None,
               config_file: Path | None) -> None:
    """Hand an open escalation to PERSON of its group; they are told (e-mail when e-mail is in use).

    \b
    Example:
      kbsearch assign esc-1a2b3c4d5e6f ana@example.com --by bo@example.com
    """
    with open_kb(index_path, config_file) as kb:
        esc = kb.assign(escalation_id, person, by=by)
    emit_json(esc.to_dict()) if as_json else click.echo(safe(_held(esc)))


@click.command("unclaim")
@click.argument("escalation_id")
@click.option("--by", default=None, help="Who gives it back (its holder or an expert); without --by: the operator.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def unclaim_cmd(escalation_id: str, by: str | None, as_json: bool, index_path: Path | None,
                config_file: Path | None) -> None:
    """Give an escalation back so anyone of its group may take it.

    \b
    Example:
      kbsearch unclaim esc-1a2b3c4d5e6f --by bo@example.com
    """
    with open_kb(index_path, config_file) as kb:
        esc = kb.unclaim(escalation_id, by=by)
    emit_json(esc.to_dict()) if as_json else click.echo(safe(_held(esc)))


@click.command("sla")
@click.option("-g", "--group", default=None, help="Only this group's open questions.")
@click.option("--overdue", "overdue_only", is_flag=True, help="Only those past their group's fallback time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@index_option
def sla_cmd(group: str | None, overdue_only: bool, as_json: bool, index_path: Path | None,
            config_file: Path | None) -> None:
    """List open escalations with their SLA: hours waiting in their group, reminders, next step.

    The SLA itself (repeated reminders, handing to the fallback group, telling the lead) runs with
    every `kbsearch deliver`; cron that.  Exit status 1 when a question is overdue.

    \b
    Example:
      kbsearch sla --overdue
    """
    with open_kb(index_path, config_file, create=True) as kb:
        items = kb.sla_status(group=group)
    if overdue_only:
        items = [i for i in items if i["overdue"]]
    if as_json:
        emit_json(items)
    elif not items:
        click.echo("no open questions" + (" past their SLA" if overdue_only else ""))
    for item in [] if as_json else items:
        nxt = ("OVERDUE" + (f", goes to {item['fallback_group']}" if item["fallback_group"] else "")
               if item["overdue"] else (f"overdue at {(item['overdue_at'] or '')[:16]}" if item["overdue_at"] else
                                        "no fallback set"))
        click.echo(safe(f"{item['id']}  [{item['group']}] {item['hours_open']} h, {item['reminders']} reminder(s); "
                        f"{nxt}  {item['question'][:60]}"))
    if any(i["overdue"] for i in items):
        raise SystemExit(1)
