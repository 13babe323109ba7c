"""Importers of past peer answers: Stack Exchange Posts.xml, Discourse (real HTTP server), JSONL, CSV."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from kbsearch import KnowledgeBase, make_id
from kbsearch.errors import ConfigError
from kbsearch.sources import SOURCE_TYPES, Source, make_source
from kbsearch.peers.service import answer_doc_id

from .conftest import EVAL, WebhookServer, peer_settings


@pytest.fixture
def store_url() -> str:
    """Importing archives tests the sources, not the store: the embedded store only (the store
    contract runs on both in test_store_contract.py and test_loop.py)."""
    return ""

POSTS = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" AcceptedAnswerId="3" CreationDate="2024-01-02T10:00:00.000" Score="5"
       Body="&lt;p&gt;When I connect, the VPN &lt;b&gt;drops&lt;/b&gt; after 10 minutes.&lt;/p&gt;"
       Title="VPN disconnects every ten minutes" Tags="&lt;vpn&gt;&lt;network&gt;" LastActivityDate="2024-02-01T00:00:00.000" />
  <row Id="2" PostTypeId="2" ParentId="1" Score="9" Body="&lt;p&gt;Reboot the router.&lt;/p&gt;" CreationDate="2024-01-02T11:00:00.000" />
  <row Id="3" PostTypeId="2" ParentId="1" Score="4" Body="&lt;p&gt;Update the client to &lt;code&gt;5.2&lt;/code&gt;.&lt;/p&gt;" CreationDate="2024-01-02T12:00:00.000" />
  <row Id="4" PostTypeId="1" CreationDate="2024-01-03T10:00:00.000" Score="1" Body="&lt;p&gt;How many days?&lt;/p&gt;"
       Title="How many vacation days do new hires get?" Tags="|hr|leave|" />
  <row Id="5" PostTypeId="2" ParentId="4" Score="3" Body="&lt;p&gt;25 days from day one.&lt;/p&gt;" />
  <row Id="6" PostTypeId="2" ParentId="4" Score="1" Body="&lt;p&gt;Ask HR.&lt;/p&gt;" />
  <row Id="7" PostTypeId="1" Title="Unanswered question about printers" Body="&lt;p&gt;?&lt;/p&gt;" Tags="&lt;printer&gt;" />
  <row Id="8" PostTypeId="5" Body="tag wiki" />
</posts>
"""


def test_stackexchange_posts_xml(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text(POSTS, encoding="utf-8")
    report = kb.import_source("stackexchange", name="teams", path=str(path), base_url="https://teams.example",
                              tag_groups={"vpn": "it-support", "hr": "hr"})
    assert (report.added, report.skipped, report.failed) == (2, 1, 0)
    vpn = kb.get(make_id("teams", "1"))
    assert vpn is not None and vpn.kind == "answer" and vpn.accepted and vpn.votes == 4
    assert vpn.text == "Update the client to 5.2." and vpn.group == "it-support"
    assert vpn.questions == ("When I connect, the VPN drops after 10 minutes.",)
    assert vpn.url == "https://teams.example/questions/1#3" and vpn.source == "teams"
    hr = kb.get(make_id("teams", "4"))
    assert hr is not None and not hr.accepted and hr.text == "25 days from day one." and hr.group == "hr"
    again = kb.import_source("stackexchange", name="teams", path=str(path), tag_groups={"vpn": "it-support", "hr": "hr"},
                             base_url="https://teams.example")
    assert (again.added, again.unchanged) == (0, 2)
    # require_accepted: the question without an accepted answer goes away on the next sync.
    strict = kb.import_source("stackexchange", name="teams", path=str(path), require_accepted=True,
                              tag_groups={"vpn": "it-support"}, base_url="https://teams.example")
    assert strict.deleted == 1 and kb.get(make_id("teams", "4")) is None


def test_broken_xml_fails_clearly_and_deletes_nothing(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text(POSTS, encoding="utf-8")
    kb.import_source("stackexchange", name="teams", path=str(path))
    path.write_text(POSTS[: len(POSTS) // 2], encoding="utf-8")
    with pytest.raises(Exception, match="not valid XML"):
        kb.import_source("stackexchange", name="teams", path=str(path))
    assert len(kb.ids(source="teams")) == 2


class Discourse:
    """A small Discourse-shaped JSON API on 127.0.0.1 (categories, latest topics, topics, posts)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.topics: dict[int, dict[str, Any]] = {
            10: {"id": 10, "title": "Printer shows error E42", "slug": "printer-e42", "category_id": 1,
                 "bumped_at": "2024-03-01T00:00:00Z", "created_at": "2024-02-01T00:00:00Z",
                 "posts": [(1, "<p>The hall printer shows <b>E42</b>.</p>", False, 0),
                           (2, "<p>Turn it off and on.</p>", False, 5),
                           (3, "<p>Open tray 2 and remove the jammed sheet.</p>", True, 2)]},
            11: {"id": 11, "title": "Is parking free for visitors?", "slug": "parking", "category_id": 2,
                 "bumped_at": "2024-03-02T00:00:00Z", "created_at": "2024-02-02T00:00:00Z",
                 "posts": [(1, "<p>Visitors ask me.</p>", False, 0), (2, "<p>Yes, use level -1.</p>", False, 4)]},
        }
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                outer.hits.append(url.path)
                body = outer.route(url.path, parse_qs(url.query))
                data = json.dumps(body).encode() if body is not None else b"{}"
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _post(self, tid: int, number: int, cooked: str, accepted: bool, likes: int) -> dict[str, Any]:
        return {"id": tid * 100 + number, "post_number": number, "cooked": cooked, "accepted_answer": accepted,
                "actions_summary": [{"id": 2, "count": likes}], "updated_at": "2024-03-01T00:00:00Z"}

    def route(self, path: str, query: dict[str, list[str]]) -> Any:
        if path == "/categories.json":
            return {"category_list": {"categories": [
                {"id": 1, "name": "IT Help", "slug": "it-help"}, {"id": 2, "name": "Facilities", "slug": "facilities"}]}}
        if path == "/latest.json":
            page = int(query.get("page", ["0"])[0])
            topics = [{k: v for k, v in t.items() if k != "posts"} for t in self.topics.values()]
            return {"topic_list": {"topics": topics if page == 0 else [],
                                   "more_topics_url": "/latest?page=1" if page == 0 else None}}
        if path.startswith("/t/") and path.endswith("/posts.json"):
            tid = int(path.split("/")[2])
            wanted = {int(x) for x in query.get("post_ids[]", [])}
            posts = [self._post(tid, *p) for p in self.topics[tid]["posts"]]
            return {"post_stream": {"posts": [p for p in posts if p["id"] in wanted]}}
        if path.startswith("/t/") and path.endswith(".json"):
            tid = int(path[3:-5])
            topic = self.topics.get(tid)
            if topic is None:
                return None
            posts = [self._post(tid, *p) for p in topic["posts"]]
            # Like Discourse: only the first posts inline, the rest listed in "stream".
            return {**{k: v for k, v in topic.items() if k != "posts"},
                    "post_stream": {"posts": posts[:2], "stream": [p["id"] for p in posts]}}
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def discourse() -> Iterator[Discourse]:
    server = Discourse()
    yield server
    server.close()


def test_discourse_import_over_http(kb: KnowledgeBase, discourse: Discourse) -> None:
    report = kb.import_source("discourse", name="forum", base_url=discourse.url,
                              category_groups={"IT Help": "it-support"})
    assert (report.added, report.skipped, report.failed) == (1, 1, 0)
    doc = kb.get(make_id("forum", "10"))
    assert doc is not None and doc.accepted and doc.text == "Open tray 2 and remove the jammed sheet."
    assert doc.group == "it-support" and doc.questions == ("The hall printer shows E42.",)
    assert doc.url == f"{discourse.url}/t/printer-e42/10/3"
    assert "/t/10/posts.json" in discourse.hits  # the accepted post was beyond the first page
    # Unsolved topics with a liked reply come in with include_unsolved; categories become groups.
    more = kb.import_source("discourse", name="forum", base_url=discourse.url, include_unsolved=True,
                            category_groups={"IT Help": "it-support"}, full=True)
    assert more.added == 1 and kb.get(make_id("forum", "11")).group == "Facilities"
    # Incremental: nothing changed, nothing fetched again, nothing deleted.
    discourse.hits.clear()
    again = kb.import_source("discourse", name="forum", base_url=discourse.url, include_unsolved=True,
                             category_groups={"IT Help": "it-support"})
    assert again.deleted == 0 and not any(h.startswith("/t/") for h in discourse.hits)
    assert len(kb.ids(source="forum")) == 2


def test_jsonl_archive_imports_as_is(kb: KnowledgeBase) -> None:
    report = kb.import_source("jsonl", name="stackfaq", path=str(EVAL / "stackfaq" / "archive.jsonl"))
    assert report.added == 30 and report.failed == 0
    first = json.loads((EVAL / "stackfaq" / "archive.jsonl").read_text(encoding="utf-8").splitlines()[0])
    doc = kb.get(first["id"])
    assert doc is not None and doc.kind == "answer" and doc.title == first["title"]
    assert list(doc.questions) == [q for q in first["questions"] if q.strip()]
    assert kb.search(first["title"])[0].id == first["id"]


def test_jsonl_bad_line_is_reported_not_fatal(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "x1", "title": "Q one", "answer": "A one"}\n{"id": "x2", "title": \n'
                    '{"id": "x3", "title": "Q three", "answer": "A three", "colour": 1}\n', encoding="utf-8")
    report = kb.import_source("jsonl", name="a", path=str(path))
    assert report.added == 1 and report.failed == 2 and not report.complete
    assert [e["item"] for e in report.errors] == ["a.jsonl:2", "a.jsonl:3"]
    assert "colour" in report.errors[1]["reason"]


def test_csv_import(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "faq.csv"
    path.write_text('id,question,answer,questions,group\n'
                    'c1,How do I book a room?,Use the calendar.,"reserve a room|meeting room booking",\n'
                    'c2,Where is the payslip?,In the HR portal.,,hr\n', encoding="utf-8")
    report = kb.import_source("csv", name="faq", path=str(path), group="facilities")
    assert report.added == 2
    c1 = kb.get("c1")
    assert c1.questions == ("reserve a room", "meeting room booking") and c1.group == "facilities"
    assert kb.get("c2").group == "hr" and kb.get("c2").kind == "answer"


@pytest.mark.parametrize("kind", ["jsonl", "csv", "stackexchange", "discourse", "escalations"])
def test_source_types_are_registered_and_validate_config(kind: str) -> None:
    assert kind in SOURCE_TYPES
    with pytest.raises(ConfigError):
        make_source("x", {"type": kind, "no_such_key": 1})
    table: dict[str, Any] = {"type": kind}
    if kind in ("jsonl", "csv", "stackexchange"):
        table["path"] = "x"
    if kind == "discourse":
        table["base_url"] = "http://127.0.0.1:9"
    assert isinstance(make_source("x", table), Source)


def test_answered_escalations_survive_a_rebuild(tmp_path: Path, hook_env: WebhookServer) -> None:
    kb = KnowledgeBase.open(settings=peer_settings(tmp_path / "i"))
    esc = kb.escalate("The badge reader at gate B beeps red", group="it-support", deliver=False)
    kb.answer(esc.id, "Badges expire yearly; renew it at the front desk.")
    report = kb.rebuild([])  # e.g. a reindex from sources that do not include the escalations
    assert report.answers_kept == 1 and kb.ids(source="escalations") == [answer_doc_id(esc.id)]
    assert kb.import_source("escalations").unchanged == 1  # the store's answer was kept, not lost
    assert kb.search("badge reader gate B beeps red")[0].title == esc.question
    kb.close()
