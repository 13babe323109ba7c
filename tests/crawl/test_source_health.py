"""Per-source last run and health (issue 24, admins): ``kb.source_health``, ``kbsearch stats`` and
``GET /api/stats`` on real crawls of a real server on 127.0.0.1 and a real import."""

from __future__ import annotations

import json
from datetime import datetime

from click.testing import CliRunner
from werkzeug.test import Client

from kbsearch import KnowledgeBase, Settings
from kbsearch.cli import main

SECRET = "test-secret-0123456789abcdef"


def _site(site, html) -> None:
    site.page("/", html("Home", '<h1 id="home">Home</h1><p>Welcome to the garden wiki.</p>'
                                '<a href="/a.html">a</a> <a href="/b.html">b</a>'))
    site.page("/a.html", html("A", '<h1 id="a">Aphids</h1><p>Spray soapy water on aphids.</p>'))
    site.page("/b.html", html("B", '<h1 id="b">Bees</h1><p>Plant lavender for the bees.</p>'))


def _crawl(kb, site, fast):
    return kb.crawl([site.url("/")], name="garden", **{**fast, "sitemaps": False})


def _health(kb, name, **kw):
    return next(h for h in kb.source_health(**kw) if h.source == name)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Clock:
    """Stands in for the ``time`` module of `kbsearch.sources.crawl.state`, where runs are stamped."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_last_run_and_health_follow_the_crawls(kb, site, fast, html, monkeypatch):
    from kbsearch.sources.crawl import state

    clock = Clock(1_800_000_000.0)
    monkeypatch.setattr(state, "time", clock)
    assert kb.source_health() == []
    _site(site, html)
    assert _crawl(kb, site, fast).complete
    ok = _health(kb, "garden", now=clock.now)
    assert (ok.outcome, ok.health, ok.reason) == ("ok", "ok", None)
    assert (ok.fetched, ok.changed, ok.failed) == (3, 3, 0)
    assert _ts(ok.last_started) == _ts(ok.last_finished) == clock.now and ok.last_success == ok.last_finished

    clock.now += 3600  # unchanged an hour later: fetched again, nothing changed
    assert _crawl(kb, site, fast).complete
    again = _health(kb, "garden", now=clock.now)
    assert (again.fetched, again.changed, again.failed, again.health) == (3, 0, 0, "ok")
    assert _ts(again.last_success) == clock.now

    # The same success seen ten days later is stale (index.stale_after_days = 2).
    later = _health(kb, "garden", now=clock.now + 10 * 86400)
    assert later.outcome == "ok" and later.health == "stale: last success 10 days ago"

    # Two pages start failing: the run fails with a one-line reason; health says since when.
    site.route("/a.html", lambda h: h.send_error(500))
    site.route("/b.html", lambda h: h.send_error(500))
    clock.now += 3600
    first_failure = clock.now
    assert not _crawl(kb, site, fast).complete
    bad = _health(kb, "garden", now=clock.now)
    assert bad.outcome == "failed" and (bad.fetched, bad.failed) == (3, 2)
    assert bad.reason.startswith("2 failed, first http://127.0.0.1:") and "HTTP 500" in bad.reason
    assert "\n" not in bad.reason
    assert bad.health == f"failing since {bad.last_started} (last success 1 hour ago)"
    assert bad.last_success == again.last_success
    clock.now += 5 * 3600  # still failing: "since" stays at the first failure
    assert not _crawl(kb, site, fast).complete
    still = _health(kb, "garden", now=clock.now)
    assert _ts(still.last_started) == clock.now
    assert still.health == f"failing since {bad.last_started} (last success 6 hours ago)"
    assert _ts(bad.last_started) == first_failure

    # Fixed: ok again.
    site.handlers.clear()
    clock.now += 60
    assert _crawl(kb, site, fast).complete
    assert _health(kb, "garden", now=clock.now).health == "ok"


def test_a_source_that_never_succeeded_and_an_import(kb, site, fast, html, tmp_path):
    """A crawl whose start page fails has no documents but is listed; an import is recorded too."""
    site.route("/", lambda h: h.send_error(503))
    assert not _crawl(kb, site, fast).complete
    never = _health(kb, "garden")
    assert never.outcome == "failed" and never.health.endswith("(never succeeded)") and never.last_success is None

    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "q1", "title": "How do I water cacti?", "text": "Rarely."}) + "\n")
    kb.import_source("jsonl", path=str(answers), name="faq")
    faq = _health(kb, "faq")
    assert (faq.outcome, faq.health, faq.changed, faq.failed) == ("ok", "ok", 1, 0)
    assert {h.source for h in kb.source_health()} >= {"garden", "faq"}


def test_stats_cli_and_api_show_last_run_and_health(tmp_path, site, fast, html):
    _site(site, html)
    index = tmp_path / "index"
    with KnowledgeBase.open(index, settings=Settings.load(config_file=None, env={})) as kb:
        assert _crawl(kb, site, fast).complete
        site.route("/", lambda h: h.send_error(503))
        assert not kb.crawl([site.url("/")], name="broken", **{**fast, "sitemaps": False}).complete

    runner = CliRunner()
    env = {"KBSEARCH_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    out = runner.invoke(main, ["stats", "--index", str(index)], env=env)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    garden = lines.index(next(line for line in lines if line.strip().startswith("garden:")))
    assert "health: ok" in lines[garden + 1] and "3 fetched, 3 changed, 0 failed" in lines[garden + 1]
    broken = lines.index(next(line for line in lines if line.strip().startswith("broken:")))
    assert "0 documents" in lines[broken]
    assert ": failed (1 failed, first http://127.0.0.1:" in lines[broken + 1]
    assert "health: failing since " in lines[broken + 1]

    data = json.loads(runner.invoke(main, ["stats", "--json", "--index", str(index)], env=env).output)
    runs = {s["source"]: s["run"] for s in data["sources"]}
    assert runs["garden"]["health"] == "ok" and runs["garden"]["fetched"] == 3
    assert runs["broken"]["outcome"] == "failed"

    from kbsearch.web import create_app, make_token

    with KnowledgeBase.open(index, settings=Settings.load(config_file=None, env={})) as kb:
        client = Client(create_app(kb, secret=SECRET))
        token = make_token("ada", ["kbsearch-admins"], secret=SECRET)
        api = client.get("/api/stats", headers={"Authorization": "Bearer " + token}).get_json()
    assert {s["source"]: s["run"] for s in api["sources"]} == runs
