"""The deflection report from a real usage log and a real escalation store (SQLite files in tmp)."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
from werkzeug.test import Client

from kbsearch import KnowledgeBase
from kbsearch.deflect import Action, Answer, Decision
from kbsearch.ops.report import render_html, render_text
from kbsearch.web import WebApp, create_app, make_token

EVIL = "is <b>bold</b> & <script>x()</script> allowed in the zeppelin hangar?"


def decision(question: str, action: Action, answer_id: str | None = None) -> Decision:
    answers = [Answer(id=answer_id, title=answer_id, url="", kind="page", group=None, probability=0.9,
                      signals={})] if answer_id else []
    return Decision(id=f"d-{abs(hash((question, action))) % 10**9}", question=question, action=action,
                    confidence=0.9 if action is Action.ANSWER else 0.2, answers=answers, why="test")


@pytest.fixture(scope="module")
def kb_with_usage(tmp_path_factory, h):
    """Six asks, one feedback, one escalation answered by a peer, one page marked outdated."""
    base = tmp_path_factory.mktemp("report")
    index = h.build_index(base / "idx")
    config = base / "kbsearch.toml"
    config.write_text(h.GROUPS_TOML, encoding="utf-8")
    kb = KnowledgeBase.open(index, create=False, config_file=config)
    kb.config_file = config
    asked = [decision("how do I reset my VPN password", Action.ANSWER, "vpn-reset"),
             decision("printer jammed again", Action.ANSWER, "printer-jam"),
             decision("the coffee robot is on fire", Action.ESCALATE),
             decision("where is the zeppelin hangar", Action.SUGGEST),
             decision("Where is the Zeppelin hangar??", Action.SUGGEST),
             decision(EVIL, Action.SUGGEST)]
    for d in asked:
        kb.usage.log_ask(d, user="ulla", groups=["staff"])
    kb.feedback(asked[1].id, False, user="ulla")  # the printer answer did not help
    esc = kb.escalate("the coffee robot is on fire", user="ulla", group="facilities")
    kb.usage.set_escalation(asked[2].id, esc.id)
    kb.answer(esc.id, "Pull the red plug behind the robot and call the facilities desk.", by="fred")
    kb.mark_outdated("expenses", by="fred")
    yield kb
    kb.close()


def test_report_counts_deflection_gaps_and_outdated(kb_with_usage):
    rep = kb_with_usage.report(days=30)
    t = rep.totals
    assert (t.asked, t.answered, t.suggested, t.escalated) == (6, 2, 3, 1)
    assert t.deflected == 1  # the VPN answer; the printer answer was marked "still need help"
    assert rep.to_dict()["deflection_rate"] == pytest.approx(1 / 6, abs=1e-3)
    assert rep.not_helpful == 1 and rep.helpful == 0
    assert rep.answered_escalations == 1 and rep.open_escalations == 0
    assert rep.median_answer_hours is not None and 0 <= rep.median_answer_hours < 1
    groups = {b.key: b for b in rep.per_group}
    assert groups["facilities"].escalated == 1 and groups["facilities"].median_answer_hours is not None
    assert groups["it-support"].answered == 2  # grouped by the answered page's group
    gaps = [g["question"] for g in rep.content_gaps]
    # the same question in other case and punctuation counts as one gap, asked twice
    zeppelin = [g for g in rep.content_gaps if "zeppelin hangar" in g["question"].lower() and "bold" not in g["question"]]
    assert len(zeppelin) == 1 and zeppelin[0]["asked"] == 2, rep.content_gaps
    # answered by a peer since: no longer a gap (issue 24); never answered ones stay
    assert "the coffee robot is on fire" not in gaps and "how do I reset my VPN password" not in gaps
    assert [d["id"] for d in rep.outdated] == ["expenses"]
    assert sum(b.asked for b in rep.per_day) == 6


def test_text_and_html_renderings(kb_with_usage):
    rep = kb_with_usage.report(days=30)
    text = render_text(rep)
    assert "deflection rate 17%" in text and "Content gaps" in text and "Submitting travel expenses" in text
    page = render_html(rep)
    assert page.count("<svg") == 2 and "<polyline" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # user text escaped
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page


def test_report_cli_json_and_html(kb_with_usage, tmp_path, h):
    out = tmp_path / "report.html"
    done = subprocess.run([h.KBSEARCH, "report", "--index", str(kb_with_usage.root), "--config", str(kb_with_usage.config_file), "--json", "--html", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["totals"]["asked"] == 6 and data["deflection_rate"] == pytest.approx(1 / 6, abs=1e-3)
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    text = subprocess.run([h.KBSEARCH, "report", "--index", str(kb_with_usage.root), "--config", str(kb_with_usage.config_file), "--days", "7"],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "asked 6, answered from the index 2" in text.stdout


def test_report_endpoint_is_only_for_the_report_groups(kb_with_usage, h):
    """The report lists other people's unanswered questions: anonymous callers and signed-in staff
    outside ``web.report_groups`` get 403, members get it."""
    client = Client(create_app(kb_with_usage, secret=h.SECRET))

    def get(url: str, groups: list[str]):
        return client.get(url, headers={"Authorization": "Bearer " + make_token("mia", groups, secret=h.SECRET)})
    assert client.get("/api/report").status_code == 403
    outsider = get("/api/report?days=30", ["managers", "it"])
    assert outsider.status_code == 403 and "web.report_groups" in outsider.get_json()["error"]
    r = get("/api/report?days=30", ["it", "kbsearch-admins"])
    assert r.status_code == 200 and r.get_json()["totals"]["asked"] == 6
    assert get("/api/report?days=-3", ["kbsearch-admins"]).status_code == 400
    settings = copy.deepcopy(kb_with_usage.settings)
    settings.web.report_groups = ["managers"]
    configured = Client(WebApp(kb_with_usage, secret=h.SECRET, settings=settings))
    assert configured.get("/api/report", headers={"Authorization": "Bearer " + make_token(
        "mia", ["managers"], secret=h.SECRET)}).status_code == 200
