"""Issue 21 items 2-4 over HTTP: answers changed only by their answerer or experts, no cross-site
writes through a cookie-based proxy, and trusted headers sent twice are a 400 (never a union).

Duplicate headers are tested against the real ``kbsearch serve`` (waitress merges repeated header
lines before the app sees them) with raw `http.client` requests; the rest runs the same WSGI app
in-process with werkzeug's test client.
"""

from __future__ import annotations

import copy
import http.client
import json

import pytest
from werkzeug.test import Client

from kbsearch import KnowledgeBase, Settings
from kbsearch.errors import ConfigError
from kbsearch.peers.service import answer_doc_id
from kbsearch.web import make_token
from kbsearch.web._app import WebApp

EVIL = "Download http://evil.example/driver.exe"
PORTAL = "https://portal.example"


@pytest.fixture(scope="module")
def kb(index_dir, h, tmp_path_factory):
    config = tmp_path_factory.mktemp("trust") / "kbsearch.toml"
    config.write_text(h.GROUPS_TOML, encoding="utf-8")  # it-support's expert is ivan
    with KnowledgeBase.open(index_dir, create=False, config_file=config) as kb:
        yield kb


@pytest.fixture(scope="module")
def portal_client(kb, h):
    settings = copy.deepcopy(kb.settings)
    settings.web.portal_origins = [PORTAL, "http://intranet.example:8000/"]
    return Client(WebApp(kb, secret=h.SECRET, settings=settings))


def trusted(h, user="ulla", groups="staff"):
    return {"X-Kbsearch-Secret": h.SECRET, "X-Kbsearch-User": user, "X-Kbsearch-Groups": groups}


def bearer(h, user, *groups):
    return {"Authorization": "Bearer " + make_token(user, groups, secret=h.SECRET)}


def post(client, path, body, headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)


# -- item 2: a non-expert cannot replace a verified answer ------------------------------------------
def test_member_cannot_replace_an_experts_verified_answer_over_the_api(client, kb, h):
    esc = kb.escalate("the badge reader at door 3 blinks red", group="it-support", deliver=False)
    url = f"/api/escalations/{esc.id}/answer"
    expert, member = bearer(h, "ivan", "it-support"), bearer(h, "max", "it-support")
    ok = post(client, url, {"text": "Re-enrol the badge at the front desk.", "verify": True}, expert)
    assert ok.status_code == 200 and ok.get_json()["status"] == "verified"
    r = post(client, url, {"text": EVIL, "verify": False}, member)
    assert r.status_code == 403 and r.get_json()["type"] == "PermissionDeniedError"
    shown = client.get(f"/api/escalations/{esc.id}", headers=member).get_json()
    assert shown["answer"] == "Re-enrol the badge at the front desk." and shown["verified"]
    assert EVIL not in kb.get(answer_doc_id(esc.id)).text and kb.get(answer_doc_id(esc.id)).verified


def test_answerer_edit_over_the_api_unverifies_and_expert_edit_keeps_it(client, kb, h):
    esc = kb.escalate("the laptop dock has no video", group="it-support", deliver=False)
    url = f"/api/escalations/{esc.id}/answer"
    expert, member = bearer(h, "ivan", "it-support"), bearer(h, "max", "it-support")
    assert post(client, url, {"text": "Update the dock firmware."}, member).status_code == 200
    assert post(client, url, {"text": "Update the dock firmware to 1.2.", "verify": True}, expert).get_json()["verified"]
    kept = post(client, url, {"text": "Update the dock firmware to 1.3."}, expert).get_json()
    assert kept["verified"] and kept["answer"].endswith("1.3.")
    assert post(client, url, {"text": "Update it."}, member).status_code == 403  # ivan's answer now
    esc = kb.escalate("the second screen flickers", group="it-support", deliver=False)
    url = f"/api/escalations/{esc.id}/answer"
    assert post(client, url, {"text": "Swap the cable."}, member).status_code == 200
    assert kb.review_answer(esc.id, verified=True, by="ivan").verified  # the API has no review endpoint
    own = post(client, url, {"text": "Swap the cable for a DisplayPort one."}, member).get_json()
    assert own["status"] == "answered" and not own["verified"]


# -- item 3: no cross-site writes -------------------------------------------------------------------
def test_cross_site_form_post_through_a_cookie_proxy_is_refused(server, h):
    """The reproduction: another site's auto-submitted multipart form reaches the proxy, which adds the
    signed-in user's trusted headers; the browser marks it cross-site."""
    headers = dict(trusted(h, user="csrf-victim"), Origin="https://evil.example", **{"Sec-Fetch-Site": "cross-site"})
    r = server.api("POST", "escalations", headers=headers,
                   files={"question": (None, "please reset my password to hunter2")})
    assert r.status_code == 403 and r.json()["type"] == "CrossSiteRequestError"
    mine = server.api("GET", "escalations?mine=1&status=all", headers=trusted(h, user="csrf-victim")).json()
    assert mine["escalations"] == []
    same = server.api("POST", "escalations", files={"question": (None, "my own question")},
                      headers=dict(trusted(h, user="csrf-victim"), Origin=f"http://127.0.0.1:{server.port}",
                                   **{"Sec-Fetch-Site": "same-origin"}))
    assert same.status_code == 201, same.text


@pytest.mark.parametrize("extra", [
    pytest.param({"Origin": "https://evil.example"}, id="other-origin"),
    pytest.param({"Origin": "null"}, id="null-origin"),
    pytest.param({"Origin": "http://localhost:8081"}, id="same-host-other-port"),
    pytest.param({"Origin": "http://localhost.evil.example"}, id="lookalike-host"),
    pytest.param({"Origin": "javascript://localhost"}, id="odd-scheme"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-cross-site"),
    pytest.param({"Sec-Fetch-Site": "same-site"}, id="sec-fetch-same-site-without-origin"),
    pytest.param({"Origin": "https://portal.example.evil", "Sec-Fetch-Site": "cross-site"}, id="unlisted-portal"),
])
@pytest.mark.parametrize("path,body", [
    ("/api/escalations", {"question": "who waters the plants?"}),
    ("/api/feedback", {"decision_id": "d-1", "helpful": True}),
    ("/api/search", {"question": "vpn"}),
], ids=["escalate", "feedback", "search-anonymous"])
def test_cross_site_writes_are_refused(portal_client, h, extra, path, body):
    headers = dict(trusted(h) if path != "/api/search" else {}, **extra)
    r = post(portal_client, path, body, headers)
    assert r.status_code == 403 and r.mimetype == "application/json"
    assert r.get_json()["type"] == "CrossSiteRequestError"


@pytest.mark.parametrize("extra", [
    pytest.param({"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}, id="same-origin-page"),
    pytest.param({"Origin": "https://localhost"}, id="same-host-behind-tls-proxy"),
    pytest.param({"Origin": PORTAL, "Sec-Fetch-Site": "cross-site"}, id="listed-portal"),
    pytest.param({"Origin": "http://intranet.example:8000"}, id="listed-portal-with-port"),
    pytest.param({}, id="no-browser-headers"),
    pytest.param({"Sec-Fetch-Site": "none"}, id="user-initiated"),
])
def test_same_origin_and_listed_portal_writes_work(portal_client, h, extra):
    r = post(portal_client, "/api/escalations", {"question": "who waters the office plants?"},
             dict(trusted(h), **extra))
    assert r.status_code == 201, r.get_json()


def test_bearer_token_is_exempt_and_reads_are_not_checked(client, h):
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    r = post(client, "/api/escalations", {"question": "where is the first aid kit?"},
             dict(bearer(h, "ulla", "staff"), **evil))
    assert r.status_code == 201, r.get_json()
    # A bearer header does not exempt a request that is authenticated by trusted headers.
    r = post(client, "/api/escalations", {"question": "where is the first aid kit?"},
             dict(trusted(h), Authorization=bearer(h, "ulla", "staff")["Authorization"], **evil))
    assert r.status_code == 403
    assert client.get("/api/me", headers=dict(trusted(h), **evil)).status_code == 200


@pytest.mark.parametrize("value", ["*", "null", "https://portal.example/path", "portal.example", "ftp://x.example"])
def test_portal_origins_must_be_origins(kb, h, value):
    settings = copy.deepcopy(kb.settings)
    settings.web.portal_origins = [value]
    with pytest.raises(ConfigError, match="portal_origins"):
        WebApp(kb, secret=h.SECRET, settings=settings)


def test_portal_origins_from_the_environment():
    settings = Settings.load(env={"KBSEARCH_WEB_PORTAL_ORIGINS": "https://a.example, https://b.example:8443"})
    assert settings.web.portal_origins == ["https://a.example", "https://b.example:8443"]


# -- item 4: trusted headers sent twice -------------------------------------------------------------
def raw_request(server, method, path, headers, body=b""):
    """Send ``headers`` (a list: names may repeat) exactly as given to the real server."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path)
        for name, value in headers:
            conn.putheader(name, value)
        if body:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("headers", [
    pytest.param([("X-Kbsearch-Groups", "finance")], id="groups-twice"),
    pytest.param([("X-Kbsearch-Groups", "")], id="groups-twice-one-empty"),
    pytest.param([("X-Kbsearch-User", "fiona")], id="user-twice"),
    pytest.param([("X-Kbsearch-Secret", "not-the-secret-at-all")], id="secret-twice"),
])
def test_trusted_header_sent_twice_is_400_on_the_real_server(server, h, headers):
    base = [("X-Kbsearch-Secret", h.SECRET), ("X-Kbsearch-User", "ivan"), ("X-Kbsearch-Groups", "it-support")]
    sent = base + headers  # the client's copy after the proxy's (a proxy that appends)
    for order in (sent, headers + base):  # and before it
        status, ctype, data = raw_request(server, "POST", "/api/search", order,
                                          json.dumps({"question": "payroll bank transfer routing"}).encode())
        assert (status, ctype, data["type"]) == (400, "application/json", "DuplicateHeaderError"), data
        assert h.RESTRICTED_SECRET not in json.dumps(data)


def test_groups_are_separated_by_semicolons_and_commas_are_refused(server, h):
    base = [("X-Kbsearch-Secret", h.SECRET), ("X-Kbsearch-User", "fiona")]
    status, _, me = raw_request(server, "GET", "/api/me", base + [("X-Kbsearch-Groups", "finance; it-support")])
    assert status == 200 and me["groups"] == ["finance", "it-support"]
    status, _, err = raw_request(server, "GET", "/api/me", base + [("X-Kbsearch-Groups", "finance,it-support")])
    assert status == 400 and "';'" in err["error"]
