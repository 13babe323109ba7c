"""`kbsearch eval --replay` on the vendored StackFAQ subset: the protocol the issue specifies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from kbsearch.cli import main
from kbsearch.evaluation.evaluate import load_questions
from kbsearch.evaluation.replay import replay

SET = Path(__file__).resolve().parents[1] / "data" / "eval" / "stackfaq"


def test_replay_decides_in_sha1_order_feeds_back_the_first_half_and_scores_the_second(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions.jsonl"
    result = CliRunner().invoke(main, ["eval", str(SET), "--replay", "--json", "--decisions", str(decisions)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    questions = load_questions(SET / "questions.jsonl")
    order = sorted(questions, key=lambda q: hashlib.sha1(q.id.encode("utf-8")).hexdigest())
    half = len(order) // 2
    lines = [json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [q.id for q in order]
    assert [line["phase"] for line in lines] == [1] * half + [2] * (len(order) - half)
    # The JSON scores the second half only.
    assert report["questions"] == len(order) - half



def test_every_first_half_decision_gets_an_outcome_before_the_rebuild(tmp_path: Path) -> None:
    report = replay(SET, workdir=tmp_path)
    outcomes = report.replay["outcomes"]
    half = len(load_questions(SET / "questions.jsonl")) // 2
    assert sum(outcomes.values()) == half and set(outcomes) <= {"helpful", "duplicate", "unanswerable"}
    assert outcomes.get("helpful", 0) > 0 and outcomes.get("duplicate", 0) + outcomes.get("unanswerable", 0) > 0
    assert report.questions == len(load_questions(SET / "questions.jsonl")) - half
