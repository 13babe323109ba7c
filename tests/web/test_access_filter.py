"""One access filter decides what a caller may see (`kbsearch.access`), on every path that turns
documents into text: search, ask (answers, why, ranked, signals, routing reasons), escalations
(``seen``, the packet the receiving group gets, its webhook payload).

The reproductions of the reported holes drive the real WSGI app in-process (werkzeug's client, the
code path waitress runs); notifications go to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from werkzeug.test import Client

from kbsearch import ALL_GROUPS, Document, KnowledgeBase, Settings
from kbsearch.web import create_app, make_token
from tests._hooks import WebhookServer

SECRET = "access-secret-0123456789abcdef"
WORD = "glorbex"  # occurs only in hr's restricted documents
HR_PAGE = "page:hr/salary-bands"
HR_ANSWER = "answer:hr-1"
HR_TITLE = "Salary bands 2026"

#: Restricted documents of the property test: one made-up marker word each, in id, title, url and text.
_rng = random.Random(20261207)
MARKERS = {g: ["qz" + "".join(_rng.choice("bcdfghjklmnpstvw") for _ in range(6)) for _ in range(6)]
           for g in ("hr", "finance")}
TOPICS = ["wifi network", "printer paper", "parking permit", "vpn password", "travel expenses", "laptop loan"]


def _docs() -> list[Document]:
    docs = [
        Document(id="wifi", title="Connecting to the office wifi", kind="page", group="it-support",
                 text="Choose the network CORP and sign in with your laptop account. Guests use CORP-GUEST.",
                 url="https://intranet/it/wifi"),
        Document(id="printer", title="Clearing a paper jam on the third floor printer", kind="page",
                 group="it-support", text="Open tray 2, pull the green lever and remove the jammed paper.",
                 url="https://intranet/it/printer"),
        Document(id="parking", title="Parking rules", kind="page", group="facilities",
                 text="Parking rules: park in the marked bays, the parking permit hangs behind the mirror.",
                 url="https://intranet/facilities/parking"),
        Document(id=HR_PAGE, title=HR_TITLE, kind="page", group="hr", allowed_groups=("hr",),
                 text=f"The {WORD} salary bands per job level, and the parking rules parking parking for "
                      "executives.", url="https://intranet/hr/salary-bands"),
        Document(id=HR_ANSWER, kind="answer", group="hr", allowed_groups=("hr",),
                 title=f"When is the {WORD} bonus paid?", questions=(f"{WORD} bonus payment date",
                                                                       f"{WORD} payout"),
                 text=f"The {WORD} bonus is paid with the March salary."),
    ]
    for i, (q, a) in enumerate([("How do I reset my vpn password?", "Use the self-service portal."),
                                ("My laptop does not start", "Bring it to the IT counter for a loan laptop."),
                                ("The printer says paper jam", "Open tray 2 and pull the green lever.")]):
        docs.append(Document(id=f"answer:it-{i}", kind="answer", group="it-support", title=q, text=a))
    for g, markers in MARKERS.items():
        for i, m in enumerate(markers):
            topic = TOPICS[i % len(TOPICS)]
            docs.append(Document(id=f"{g}-{m}", kind="answer" if i % 2 else "page", group=g, allowed_groups=(g,),
                                 title=f"{m} {topic} rules", questions=(f"how does {m} {topic} work",) if i % 2 else (),
                                 text=f"The {m} procedure for {topic}: ask {m} desk.", url=f"https://intranet/{g}/{m}"))
    docs += [Document(id=f"filler-{i}", title=f"About the {t}", kind="page", group="facilities",
                      text=f"The {t} procedure: contact the facilities desk and fill in form F-{i}.",
                      url=f"https://intranet/facilities/{i}")
             for i, t in enumerate(["canteen menu", "fire drill", "badge replacement", "meeting room booking",
                                    "visitor registration", "bicycle storage", "recycling rules", "desk booking"])]
    return docs


@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, hooks: WebhookServer) -> Iterator[KnowledgeBase]:
    with pytest.MonkeyPatch.context() as env:
        for name in ("it-support", "hr", "finance", "facilities"):
            env.setenv(f"KBT_HOOK_{name.upper().replace('-', '_')}", hooks.url(f"/{name}"))
        yield from _open(tmp_path_factory)


def _open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    settings = Settings()
    settings.index.path = tmp_path_factory.mktemp("access") / "idx"
    settings.peers.deliver_on_escalate = False
    settings.peers.groups = [
        {"name": name, "description": desc, "keywords": kw,
         "channels": [{"type": "webhook", "url_env": f"KBT_HOOK_{name.upper().replace('-', '_')}"}]}
        for name, desc, kw in [("it-support", "Laptops, VPN, passwords, printers and wifi", ["vpn", "printer"]),
                               ("hr", "Payroll, salary and contracts", ["payroll", "contract"]),
                               ("finance", "Invoices and expenses", ["invoice", "expenses"]),
                               ("facilities", "Buildings, parking and rooms", ["parking", "room"])]
    ]
    base = KnowledgeBase.open(settings=settings)
    base.rebuild(iter(_docs()))
    yield base
    base.close()


@pytest.fixture(scope="module")
def client(kb: KnowledgeBase) -> Client:
    return Client(create_app(kb, secret=SECRET))


def call(client: Client, method: str, path: str, body: Any = None, *, user: str | None = None,
         groups: tuple[str, ...] = ()) -> tuple[int, Any]:
    headers = {"Authorization": "Bearer " + make_token(user, groups, secret=SECRET)} if user else {}
    if body is None:
        resp = client.open(path, method=method, headers=headers)
    else:
        resp = client.open(path, method=method, headers=headers, data=json.dumps(body),
                           content_type="application/json")
    return resp.status_code, resp.get_json()


def without_questions(data: Any) -> Any:
    """The response minus the caller's own question text (echoed back as typed)."""
    if isinstance(data, dict):
        return {k: without_questions(v) for k, v in data.items() if k != "question"}
    if isinstance(data, list):
        return [without_questions(v) for v in data]
    return data


# -- 1. seen ids --------------------------------------------------------------------------------------
def test_seen_ids_of_documents_the_caller_may_not_see_are_not_looked_up(client: Client) -> None:
    status, esc = call(client, "POST", "/api/escalations", {
        "question": "the wifi drops every hour", "group": "it-support",
        "seen": [HR_PAGE, HR_ANSWER, "wifi", "no-such-document"]}, user="mallory", groups=("it-support",))
    assert status == 201
    assert [s["id"] for s in esc["seen"]] == ["wifi"]
    text = json.dumps(esc)
    assert HR_TITLE not in text and WORD not in text and "salary-bands" not in text


def test_seen_as_multipart_form_is_filtered_too(client: Client) -> None:
    token = make_token("mallory", ["it-support"], secret=SECRET)
    resp = client.post("/api/escalations", headers={"Authorization": f"Bearer {token}"},
                       data={"question": "printer jams again", "seen": json.dumps([HR_PAGE, "printer"])},
                       content_type="multipart/form-data")
    assert resp.status_code == 201
    assert [s["id"] for s in resp.get_json()["seen"]] == ["printer"]


def test_an_hr_member_escalating_to_it_support_hands_it_no_hr_titles(client: Client, kb: KnowledgeBase,
                                                                       hooks: WebhookServer) -> None:
    # The asker may see the hr page; it-support's members and its webhook may not.
    status, esc = call(client, "POST", "/api/escalations", {
        "question": "my laptop will not start after the update", "group": "it-support",
        "seen": [HR_PAGE, "wifi"]}, user="hanna", groups=("hr",))
    assert status == 201 and [s["id"] for s in esc["seen"]] == ["wifi"]
    stored = kb.escalation(esc["id"])
    assert [s["id"] for s in stored.seen] == ["wifi"]
    kb.deliver_notifications()
    payloads = [b["json"] for b in hooks.requests if esc["id"] in json.dumps(b["json"])]
    assert payloads and all(b["path"] == "/it-support" for b in hooks.requests if esc["id"] in json.dumps(b["json"]))
    assert not any(HR_TITLE in json.dumps(p) or "salary-bands" in json.dumps(p) for p in payloads)
    status, seen_by_it = call(client, "GET", f"/api/escalations/{esc['id']}", user="ivan", groups=("it-support",))
    assert status == 200 and HR_TITLE not in json.dumps(seen_by_it)


def test_library_escalation_from_a_decision_keeps_only_what_the_group_may_see(kb: KnowledgeBase) -> None:
    decision = kb.ask(f"{WORD} salary bands parking", groups=["hr"])
    assert HR_PAGE in decision.ranked  # the hr member was shown the hr page
    esc = kb.escalate(decision.question, user="hanna", groups=["hr"], group="facilities",
                      seen=decision.ranked[:3], decision=decision)
    packet = json.dumps({"seen": esc.seen, "decision": esc.decision})
    assert HR_PAGE not in packet and HR_TITLE not in packet
    assert esc.decision is not None and esc.decision["action"] == decision.action.value


def test_an_escalation_shows_its_reader_only_documents_they_may_see(client: Client, kb: KnowledgeBase) -> None:
    # A trusted caller (an operator tool) escalated to hr with the hr page; the asker is not in hr.
    esc = kb.escalate("salary question", user="eve", group="hr", seen=[HR_PAGE, "parking"])
    assert [s["id"] for s in esc.seen] == [HR_PAGE, "parking"]  # hr's members may see it
    status, view = call(client, "GET", f"/api/escalations/{esc.id}", user="eve", groups=("facilities",))
    assert status == 200 and [s["id"] for s in view["seen"]] == ["parking"]
    status, view = call(client, "GET", f"/api/escalations/{esc.id}", user="hr-lead", groups=("hr",))
    assert [s["id"] for s in view["seen"]] == [HR_PAGE, "parking"]


# -- 5. words of restricted content --------------------------------------------------------------------
def test_routing_reason_never_names_a_word_only_restricted_documents_contain(kb: KnowledgeBase,
                                                                              client: Client) -> None:
    inside = kb.route(f"{WORD} bonus payout", groups=["hr"])
    assert inside.group == "hr" and WORD in inside.reason  # what the filter removes for outsiders
    for groups in ([], ["it-support"]):
        assert WORD not in kb.route(f"{WORD} bonus payout", groups=groups).reason
    status, decision = call(client, "POST", "/api/ask", {"question": f"{WORD} bonus payout"})
    assert status == 200 and WORD not in json.dumps(without_questions(decision))


def _comparable(decision: Any) -> dict[str, Any]:
    d = decision.to_dict()
    for key in ("id", "question", "seconds", "escalation"):
        d.pop(key, None)
    return d


@pytest.mark.parametrize("groups", [[], ["it-support"]], ids=["anonymous", "it-support"])
def test_a_word_only_restricted_documents_contain_is_read_as_a_made_up_word(kb: KnowledgeBase,
                                                                           groups: list[str]) -> None:
    base = "parking rules for the car park"
    read = kb.visible_words(f"{base} {WORD}", groups=groups)
    stand_in = read.split()[-1]
    assert read.startswith(base) and stand_in != WORD and WORD not in read
    assert not kb.search(stand_in, user_groups=ALL_GROUPS)  # the index knows no such word
    # Everything downstream sees only the stand-in: asking with the hidden word is asking with it.
    assert _comparable(kb.ask(f"{base} {WORD}", groups=groups)) == _comparable(kb.ask(read, groups=groups))
    assert ([(h.id, h.score) for h in kb.search(f"{base} {WORD}", user_groups=groups)]
            == [(h.id, h.score) for h in kb.search(read, user_groups=groups)])
    # For hr the word is theirs: it is kept, and it counts.
    assert kb.visible_words(f"{base} {WORD}", groups=["hr"]) == f"{base} {WORD}"


def test_stand_ins_are_stable_and_words_found_nowhere_are_kept(kb: KnowledgeBase) -> None:
    first = kb.visible_words(f"{WORD} bonus", groups=[])
    with KnowledgeBase.open(kb.root, settings=kb.settings, create=False) as other:  # another reader
        assert other.visible_words(f"{WORD} bonus", groups=[]) == first
    assert kb.visible_words("my laptp does not start", groups=[]) == "my laptp does not start"  # a typo
    assert kb.visible_words(f"{WORD} bonus", groups=ALL_GROUPS) == f"{WORD} bonus"


def test_signals_compare_with_documents_the_caller_may_see(kb: KnowledgeBase) -> None:
    # The hr page says "parking rules" more often than the public page: for an outsider the public
    # page is still the best BM25 match (1.0) and leads every margin.
    decision = kb.ask("parking rules", groups=[])
    top = decision.answers[0] if decision.answers else None
    features = dict(zip(("classifier", "classifier_margin", "has_classifier", "phrasing_match", "phrasing_margin",
                         "tfidf", "tfidf_margin", "bm25_norm"), decision.features))
    assert decision.ranked[0] == "parking" and (top is None or top.id == "parking")
    assert features["bm25_norm"] == pytest.approx(1.0)
    assert features["phrasing_margin"] >= 0 and features["tfidf_margin"] >= 0
    inside = kb.ask("parking rules", groups=["hr"])
    assert HR_PAGE in inside.ranked  # the hr page does compete for hr


# -- the property: nothing of a document outside the caller's groups ever appears -------------------------
_GROUP_SETS = [(), ("it-support",), ("hr",), ("finance",), ("hr", "finance"), ("facilities", "it-support")]
_ALL_MARKERS = [(g, m) for g, ms in MARKERS.items() for m in ms]
_WORDS = [m for _g, m in _ALL_MARKERS] + " ".join(TOPICS).split() + ["rules", "procedure", "desk", WORD]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(groups=st.sampled_from(_GROUP_SETS), user=st.sampled_from(["ana", "bo", None]),
       words=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=5),
       seen=st.lists(st.sampled_from([f"{g}-{m}" for g, m in _ALL_MARKERS] + ["wifi", "parking", HR_PAGE]),
                     max_size=4),
       endpoint=st.sampled_from(["search", "ask", "escalate"]))
def test_nothing_derived_from_a_hidden_document_appears(client: Client, groups: tuple[str, ...], user: str | None,
                                                        words: list[str], seen: list[str], endpoint: str) -> None:
    hidden = [m for g, m in _ALL_MARKERS if g not in groups]
    if "hr" not in groups:
        hidden += [WORD, HR_TITLE, "salary-bands"]
    question = " ".join(words)
    caller = {"user": user, "groups": groups if user else ()}
    if endpoint == "search":
        status, data = call(client, "POST", "/api/search", {"question": question}, **caller)
        responses = [data]
    elif endpoint == "ask":
        status, data = call(client, "POST", "/api/ask", {"question": question}, **caller)
        responses = [data]
    else:
        if user is None:
            return  # anonymous callers may not escalate (403, tested elsewhere)
        status, data = call(client, "POST", "/api/escalations", {"question": question, "seen": seen}, **caller)
        assert status == 201, data
        _s, again = call(client, "GET", f"/api/escalations/{data['id']}", **caller)
        _s, mine = call(client, "GET", "/api/escalations?mine=1&status=all", **caller)
        responses = [data, again, mine]
    assert status in (200, 201), data
    text = json.dumps([without_questions(r) for r in responses])
    leaked = [h for h in hidden if h in text]
    assert not leaked, (groups, question, leaked)
