"""``kbsearch ask``, ``kbsearch feedback`` and ``kbsearch eval``: deflection from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .._text import terminal_safe
from ._common import emit_json, index_option, load_settings, open_kb


def register(main: click.Group) -> None:
    for command in (ask_cmd, feedback_cmd, eval_cmd, unanswerable_cmd):
        main.add_command(command)


@click.command("ask")
@click.argument("question")
@click.option("-g", "--group", "groups", multiple=True, help="A group the asker belongs to (repeatable).")
@click.option("-u", "--user", default=None, help="Who asks (logged; the escalation's asker).")
@click.option("--dry-run", is_flag=True, help="Only show the decision; never escalate.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@index_option
def ask_cmd(question: str, groups: tuple[str, ...], user: str | None, dry_run: bool, as_json: bool,
            index_path: Path | None, config_file: Path | None) -> None:
    """Ask a QUESTION: answer it from the index, suggest answers, or escalate it to the peers.

    Without --dry-run an ESCALATE decision is sent to the routed peer group.

    \b
    Example:
      kbsearch ask "how do I reset my VPN password" --user alice --group staff --dry-run
    """
    with open_kb(index_path, config_file) as kb:
        decision = kb.ask(question, user=user, groups=list(groups), escalate=not dry_run)
    if as_json:
        emit_json(decision.to_dict())
        return
    action = decision.action.value.upper()
    click.echo(click.style(f"{action}", bold=True) + f"  (confidence {decision.confidence:.2f}; {terminal_safe(decision.why)})")
    for rank, a in enumerate(decision.answers, 1):
        marks = "".join([" ✓verified" if a.verified else "", " accepted" if a.accepted else ""])
        lead = "answer" if decision.action.value == "answer" and rank == 1 else f"{rank}."
        click.echo(f"  {lead} {terminal_safe(a.title)}{marks}  [p={a.probability:.2f}; id {terminal_safe(a.id)}]")
        if a.url:
            click.echo(f"     {terminal_safe(a.url)}")
        text = " ".join(terminal_safe(_plain(a.snippet)).split())
        if text:
            click.echo(f"     {text}")
    if decision.action.value != "answer":
        group = decision.group
        if decision.escalation is not None:
            esc_id = getattr(decision.escalation, "id", "")
            click.echo(f"escalated to {terminal_safe(group or 'the peers')}" + (f" (escalation {esc_id})" if esc_id else ""))
        elif group:
            verb = "would go" if dry_run or decision.action.value == "suggest" else "goes"
            click.echo(f"{verb} to peer group: {terminal_safe(group)}")
    if decision.action.value == "suggest":
        hint = f"kbsearch feedback {decision.id} yes --answer ID (the one that solved it) | no"
    elif decision.answers:
        hint = f"kbsearch feedback {decision.id} yes|no"
    else:
        hint = ""
    click.echo(f"decision {decision.id}" + (f"  (feedback: {hint})" if hint else ""))


def _plain(snippet: str) -> str:
    import html

    return html.unescape(snippet.replace("<mark>", "").replace("</mark>", ""))


@click.command("feedback")
@click.argument("decision_id")
@click.argument("helpful", type=click.Choice(["yes", "no"]))
@click.option("-u", "--user", default=None, help="Who answers.")
@click.option("--comment", default=None, help="Free text, stored with the feedback.")
@click.option("--answer", "answer_id", default=None,
              help="With yes: the id of the answer shown that solved it (a suggestion's answers are several).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored feedback as JSON.")
@index_option
def feedback_cmd(decision_id: str, helpful: str, user: str | None, comment: str | None, answer_id: str | None,
                 as_json: bool, index_path: Path | None, config_file: Path | None) -> None:
    """Record whether the answer of decision DECISION_ID helped (yes/no); the next rebuild learns from it.

    \b
    Example:
      kbsearch feedback 3f2a9c0d1e2b4c5d9e8f7a6b5c4d3e2f yes --user alice
    """
    with open_kb(index_path, config_file) as kb:
        record = kb.feedback(decision_id, helpful == "yes", user=user, comment=comment, answer_id=answer_id)
    if as_json:
        emit_json(record.to_dict())
    else:
        click.echo(f"feedback stored for {decision_id}: {'helpful' if record.helpful else 'not helpful'}")


@click.command("unanswerable")
@click.argument("escalation_id")
@click.option("--by", default=None, help="Who closes it (an expert of its group, when the group names experts).")
@click.option("--reason", default="", help="Why, kept in the escalation's history.")
@click.option("--json", "as_json", is_flag=True, help="Print the escalation as JSON.")
@index_option
def unanswerable_cmd(escalation_id: str, by: str | None, reason: str, as_json: bool, index_path: Path | None,
                     config_file: Path | None) -> None:
    """Close an escalation as unanswerable: nothing answers it and no answer will be written.

    The next rebuild learns from it that the question's best candidate was no answer.

    \b
    Example:
      kbsearch unanswerable esc-1a2b3c4d5e6f --reason "not something IT supports"
    """
    with open_kb(index_path, config_file) as kb:
        esc = kb.close_unanswerable(escalation_id, by=by, reason=reason)
    if as_json:
        emit_json(esc.to_dict())
    else:
        click.echo(terminal_safe(f"{esc.id}: closed as unanswerable"))


@click.command("eval")
@click.argument("set_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@click.option("--decisions", "decisions_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one JSON line per question: id, deflect, answer_id, ranked, confidence.")
@click.option("--details", is_flag=True, help="With --json: add timings, calibration and the reliability table.")
@click.option("--replay", is_flag=True,
              help="Replay production: decide the first half (by SHA-1 of the id), feed its outcomes back "
                   "(helpful, escalations closed as duplicates or unanswerable), rebuild, score the second half.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), envvar="KBSEARCH_CONFIG",
              help="TOML config file (e.g. a [deflect] target_precision).")
def eval_cmd(set_dir: Path, as_json: bool, decisions_file: Path | None, details: bool, replay: bool,
             config_file: Path | None) -> None:
    """Evaluate deflection on SET_DIR (archive.jsonl + questions.jsonl) with a fresh temporary index.

    The index is built and calibrated from the archive alone; the questions' labels are used only to score.
    With --replay the scores are the second half's, after learning from the first half's outcomes
    (decision lines then carry "phase": 1 or 2).

    \b
    Example:
      kbsearch eval tests/data/eval/clinc150 --json --decisions decisions.jsonl
      kbsearch eval tests/data/eval/stackfaq --replay --json
    """
    from ..evaluation.evaluate import evaluate
    from ..evaluation.replay import replay as run_replay

    settings = load_settings(None, config_file)
    show = sys.stderr.isatty()

    def progress(stage: str, done: int, total: int) -> None:
        click.echo(f"\r{stage}: {done:,}/{total:,}   ", err=True, nl=False)

    run = run_replay if replay else evaluate
    report = run(set_dir, settings=settings, decisions_file=decisions_file, progress=progress if show else None)
    if show:
        click.echo("", err=True)
    if as_json:
        emit_json(report.details() if details else report.to_dict())
        return

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"
    if replay:
        click.echo(f"replay: first half's outcomes {report.replay.get('outcomes')}; second half scored")
    click.echo(f"{report.set_name}: {report.questions} questions in {report.seconds:.1f}s "
               f"(build+calibrate {report.build_seconds:.1f}s, decide {report.decide_seconds:.1f}s)")
    for key in ("accuracy", "in_scope_accuracy", "oos_recall", "deflection_rate", "deflection_precision",
                "p_at_1", "mrr_at_10", "mcc", "routing_accuracy"):
        click.echo(f"{key:>22}: {fmt(getattr(report, key))}")
    click.echo(f"{'calibration error':>22}: {report.expected_calibration_error:.3f} (ECE over 10 bins)")

