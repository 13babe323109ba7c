"""The HTTP API: authentication, access control, validation, limits, headers, mounting (WSGI and ASGI).

Most tests drive the real WSGI app in-process with werkzeug's test client (same code path as under
waitress); the ones marked by the ``server`` fixture talk HTTP to a real ``kbsearch serve``.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from kbsearch.web import create_app, create_asgi_app, make_token


def post(client, path, body, **kw):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kw)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_health_reports_generation_and_features(client, kb):
    r = client.get("/api/health")
    assert r.status_code == 200
    data = r.get_json()
    assert data["status"] == "ok"
    assert data["generation"] == kb.generation_path.name
    assert data["features"]["search"] is True


def test_search_returns_public_hit_with_link_and_escaped_snippet(client):
    r = post(client, "/api/search", {"question": "how do I reset my VPN password"})
    assert r.status_code == 200
    hits = r.get_json()["hits"]
    assert hits[0]["id"] == "vpn-reset"
    assert hits[0]["url"] == "https://intranet.example/it/vpn.html#reset"
    assert "<mark>" in hits[0]["snippet"]
    r = post(client, "/api/search", {"question": "script alert password"})
    snippet = " ".join(h["snippet"] for h in r.get_json()["hits"])
    assert "script" in snippet and "<script" not in snippet and "&lt;" in snippet


@pytest.mark.parametrize("who", ["anonymous", "token-other-group", "wrong-group-header"])
def test_restricted_text_never_reaches_outsiders(client, h, who):
    headers = {}
    if who == "token-other-group":
        headers = bearer(make_token("olga", ["it-support"], secret=h.SECRET))
    elif who == "wrong-group-header":
        headers = {"X-Kbsearch-Secret": h.SECRET, "X-Kbsearch-User": "ivan", "X-Kbsearch-Groups": "hr; it-support"}
    r = post(client, "/api/search", {"question": "payroll bank transfer routing number"}, headers=headers)
    assert r.status_code == 200
    assert h.RESTRICTED_SECRET not in r.get_data(as_text=True)
    assert all(hit["id"] != "payroll-bank" for hit in r.get_json()["hits"])


@pytest.mark.parametrize("how", ["token", "header"])
def test_member_sees_restricted_page(client, h, how):
    if how == "token":
        headers = bearer(make_token("fiona", ["finance"], secret=h.SECRET))
    else:
        headers = {"X-Kbsearch-Secret": h.SECRET, "X-Kbsearch-User": "fiona", "X-Kbsearch-Groups": "finance"}
    r = post(client, "/api/search", {"question": "payroll bank transfer routing number"}, headers=headers)
    assert r.get_json()["hits"][0]["id"] == "payroll-bank"
    me = client.get("/api/me", headers=headers).get_json()
    assert {k: me[k] for k in ("user", "groups", "via")} == {"user": "fiona", "groups": ["finance"], "via": how}


@pytest.mark.parametrize("headers", [
    pytest.param({"X-Kbsearch-Secret": "wrong-secret-wrong-secret", "X-Kbsearch-User": "eve",
                  "X-Kbsearch-Groups": "finance"}, id="wrong-secret"),
    pytest.param({"X-Kbsearch-User": "eve", "X-Kbsearch-Groups": "finance"}, id="headers-without-secret"),
    pytest.param({"Authorization": "Bearer not-a-token"}, id="garbage-token"),
    pytest.param({"Authorization": "Basic ZXZlOmV2ZQ=="}, id="basic-auth"),
    pytest.param({"Authorization": "Bearer " + make_token("eve", ["finance"], secret="another-secret-0123456789")},
                 id="token-other-secret"),
])
def test_bad_credentials_are_401_and_return_nothing(client, h, headers):
    r = post(client, "/api/search", {"question": "payroll bank transfer"}, headers=headers)
    assert r.status_code == 401
    assert r.get_json()["type"] == "AuthError"
    assert h.RESTRICTED_SECRET not in r.get_data(as_text=True)


def test_expired_token_is_401(kb, h):
    """A token older than ``web.token_max_age`` is refused; the app's clock is moved, not waited for."""
    kb.settings.web.token_max_age = 1
    try:
        webapp = create_app(kb, secret=h.SECRET)
        app = Client(webapp)
        token = make_token("fiona", ["finance"], secret=h.SECRET)
        assert post(app, "/api/search", {"question": "payroll"}, headers=bearer(token)).status_code == 200
        webapp.auth.clock = lambda: time.time() + 2.1
        r = post(app, "/api/search", {"question": "payroll"}, headers=bearer(token))
    finally:
        kb.settings.web.token_max_age = 12 * 3600
    assert r.status_code == 401 and "expired" in r.get_json()["error"]


def test_without_secret_configured_credentials_are_refused(kb, h, monkeypatch):
    monkeypatch.delenv("KBSEARCH_WEB_SECRET", raising=False)
    app = Client(create_app(kb))
    r = post(app, "/api/search", {"question": "payroll"},
             headers={"X-Kbsearch-Secret": "", "X-Kbsearch-User": "eve", "X-Kbsearch-Groups": "finance"})
    assert r.status_code == 401
    assert post(app, "/api/search", {"question": "vpn password"}).status_code == 200


@pytest.mark.parametrize("body,ctype,status,needle", [
    pytest.param(b"{not json", "application/json", 400, "not valid JSON", id="malformed-json"),
    pytest.param(b"[1, 2]", "application/json", 400, "JSON object", id="json-array"),
    pytest.param(b'{"question": 42}', "application/json", 400, "must be text", id="question-not-text"),
    pytest.param(b'{"question": "   "}', "application/json", 400, "required", id="blank-question"),
    pytest.param(b'{"question": "vpn", "limit": 0}', "application/json", 400, "limit", id="limit-zero"),
    pytest.param(b'{"question": "vpn", "limit": true}', "application/json", 400, "limit", id="limit-bool"),
    pytest.param(b"question=vpn", "application/x-www-form-urlencoded", 400, "application/json", id="form-body"),
    pytest.param(b"\xff\xfe\x00", "application/json", 400, "not valid JSON", id="binary"),
    pytest.param(json.dumps({"question": "x" * 30_000}).encode(), "application/json", 400, "too long", id="too-long"),
])
def test_bad_input_is_4xx_json(client, body, ctype, status, needle):
    r = client.post("/api/search", data=body, content_type=ctype)
    assert r.status_code == status
    assert r.mimetype == "application/json"
    assert needle in r.get_json()["error"]
    assert "Traceback" not in r.get_data(as_text=True)


def test_oversized_body_is_413(client, kb):
    big = json.dumps({"question": "vpn", "pad": "x" * (kb.settings.web.max_json_bytes + 10)})
    r = client.post("/api/search", data=big, content_type="application/json")
    assert r.status_code == 413
    assert "too large" in r.get_json()["error"]


def test_unknown_path_and_wrong_method_are_json(client):
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.get_json()["type"] == "NotFound"
    r = client.get("/api/search")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    r = client.get("/static/../../etc/passwd")
    assert r.status_code == 404


def test_user_input_is_not_reflected_in_errors(client):
    evil = "<img src=x onerror=alert(1)>"
    for r in (client.get(f"/api/{evil}"), post(client, "/api/search", {"question": evil, "limit": evil}),
              client.get("/api/escalations", query_string={"status": evil})):
        assert evil not in r.get_data(as_text=True)
        assert r.mimetype == "application/json"


def test_page_has_csp_and_security_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    html = r.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # no external assets
    for asset in ("static/app.js", "static/app.css"):
        a = client.get("/" + asset)
        assert a.status_code == 200
        assert "https://" not in a.get_data(as_text=True).replace("https:\"", "")


def test_mounted_under_a_prefix_in_a_wsgi_portal(kb, h):
    def portal(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"portal home"]

    app = Client(DispatcherMiddleware(portal, {"/kb": create_app(kb, secret=h.SECRET)}))
    assert app.get("/").get_data() == b"portal home"
    assert app.get("/kb/api/health").get_json()["status"] == "ok"
    r = post(app, "/kb/api/search", {"question": "paper jam printer"})
    assert r.get_json()["hits"][0]["id"] == "printer-jam"
    assert app.get("/kb/static/app.js").status_code == 200


def test_asgi_adapter_serves_the_same_api(kb, h):
    app = create_asgi_app(kb, secret=h.SECRET)
    body = json.dumps({"question": "paper jam printer"}).encode()

    async def call() -> tuple[int, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/api/search", "raw_path": b"/api/search", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict] = []

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

    status, payload = asyncio.run(call())
    assert status == 200
    assert json.loads(payload)["hits"][0]["id"] == "printer-jam"


def test_escalating_needs_a_signed_in_user(client):
    r = post(client, "/api/escalations", {"question": "who fixes the coffee machine?"})
    assert r.status_code == 403


def test_expert_queue_is_limited_to_own_groups(client, h):
    token = make_token("ivan", ["it-support"], secret=h.SECRET)
    r = client.get("/api/escalations", query_string={"group": "finance"}, headers=bearer(token))
    assert r.status_code == 403
    r = client.get("/api/escalations", query_string={"status": "bogus"}, headers=bearer(token))
    assert r.status_code == 400


def test_real_server_answers_over_http(server, h):
    r = server.api("POST", "search", json={"question": "how do I reset my VPN password"})
    assert r.status_code == 200 and r.json()["hits"][0]["id"] == "vpn-reset"
    r = server.api("POST", "search", json={"question": "payroll bank transfer routing"})
    assert h.RESTRICTED_SECRET not in r.text
    r = server.api("POST", "search", json={"question": "payroll bank transfer routing"},
                   token=h.token_for("fiona", "finance"))
    assert h.RESTRICTED_SECRET in r.text
    r = server.api("POST", "search", data=b"x" * (6 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    big_photo = b"\x89PNG\r\n\x1a\n" + b"0" * (5 * 1024 * 1024)
    r = server.api("POST", "escalations", token=h.token_for("ulla", "staff"), data={"question": "shutter"},
                   files={"photo": ("big.png", big_photo, "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    assert r.headers["Server"] == "kbsearch"


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")


def test_escalation_lifecycle_photo_and_group_boundaries(client, h):
    asker = bearer(make_token("ulla", ["staff"], secret=h.SECRET))
    r = client.post("/api/escalations", headers=asker, data={
        "question": "the loading dock shutter stops half way", "details": "since the storm",
        "photo": (__import__("io").BytesIO(PNG), "dock.png", "image/png")})
    assert r.status_code == 201, r.get_json()
    esc = r.get_json()
    group, esc_id = esc["group"], esc["id"]
    assert esc["user"] == "ulla" and esc["note"] == "since the storm" and esc["attachments"][0]["size"] == len(PNG)
    member = bearer(make_token("max", [group], secret=h.SECRET))
    outsider = bearer(make_token("olga", ["zz-other"], secret=h.SECRET))

    listed = client.get("/api/escalations", headers=member).get_json()["escalations"]
    assert esc_id in [e["id"] for e in listed]
    assert esc_id not in [e["id"] for e in client.get("/api/escalations", headers=outsider).get_json()["escalations"]]
    photo_url = f"/api/escalations/{esc_id}/attachments/{esc['attachments'][0]['id']}"
    got = client.get(photo_url, headers=member)
    assert got.status_code == 200 and got.mimetype == "image/png" and got.get_data() == PNG
    assert client.get(photo_url, headers=outsider).status_code == 403
    assert client.get(photo_url).status_code == 403

    answer = {"text": "Reset the shutter controller with the key switch."}
    assert post(client, f"/api/escalations/{esc_id}/answer", answer, headers=outsider).status_code == 403
    assert post(client, f"/api/escalations/{esc_id}/answer", answer, headers=asker).status_code == 403
    done = post(client, f"/api/escalations/{esc_id}/answer", answer, headers=member)
    assert done.status_code == 200 and done.get_json()["status"] in ("answered", "verified")
    mine = client.get("/api/escalations?mine=1&status=all", headers=asker).get_json()["escalations"]
    assert [e["answer"] for e in mine if e["id"] == esc_id] == [answer["text"]]
    assert client.get("/api/escalations/esc-doesnotexist", headers=member).status_code == 404
    assert client.get("/api/escalations/..%2Fetc", headers=member).status_code in (400, 404)


@pytest.mark.parametrize("data,status,needle", [
    pytest.param(b"GIF89a-but-actually-text", 201, "", id="gif-magic-accepted"),
    pytest.param(b"<svg onload=alert(1)></svg>", 400, "PNG, JPEG, GIF or WebP", id="svg-refused"),
    pytest.param(b"hello", 400, "PNG, JPEG, GIF or WebP", id="text-refused"),
])
def test_photo_checks(client, h, data, status, needle):
    import io

    r = client.post("/api/escalations", headers=bearer(make_token("ulla", ["staff"], secret=h.SECRET)),
                    data={"question": "the shutter again", "photo": (io.BytesIO(data), "x.png", "image/png")})
    assert r.status_code == status, r.get_json()
    if needle:
        assert needle in r.get_json()["error"]


def test_ask_and_feedback(client, h):
    who = bearer(make_token("ulla", ["staff"], secret=h.SECRET))
    d = post(client, "/api/ask", {"question": "how do I reset my VPN password"}, headers=who).get_json()
    assert d["action"] in ("answer", "suggest") and d["answers"][0]["id"] == "vpn-reset"
    assert "<mark>" in d["answers"][0]["snippet"]
    ok = post(client, "/api/feedback", {"decision_id": d["id"], "helpful": True}, headers=who)
    assert ok.status_code == 201
    assert post(client, "/api/feedback", {"decision_id": "nope", "helpful": True}).status_code == 404
    assert post(client, "/api/feedback", {"decision_id": d["id"], "helpful": "maybe"}).status_code == 400
    outsider = post(client, "/api/ask", {"question": "payroll bank transfer routing number"}, headers=who)
    assert h.RESTRICTED_SECRET not in outsider.get_data(as_text=True)


def test_questions_closed_as_unanswerable_are_listed_by_their_status(client, kb, h):
    asker = bearer(make_token("ulla", ["staff"], secret=h.SECRET))
    expert = bearer(make_token("hanna", ["hr"], secret=h.SECRET))
    r = post(client, "/api/escalations", {"question": "who repaints the car park lines?", "group": "hr"},
             headers=asker)
    assert r.status_code in (200, 201), r.get_json()
    esc_id = r.get_json()["id"]
    kb.close_unanswerable(esc_id, reason="nobody here knows")
    listed = client.get("/api/escalations", query_string={"status": "unanswerable"}, headers=expert)
    assert listed.status_code == 200
    assert [e["id"] for e in listed.get_json()["escalations"]] == [esc_id]
    still_open = client.get("/api/escalations", query_string={"status": "open"}, headers=expert)
    assert esc_id not in [e["id"] for e in still_open.get_json()["escalations"]]


def test_a_retried_escalation_with_its_idempotency_key_is_stored_once(client, h, kb):
    """A phone that lost the 201 sends the question again with the same key: 200, the same escalation,
    ``Idempotent-Replayed``; nothing is stored or sent twice.  Another question under the key is 422."""
    asker = bearer(make_token("ulla", ["staff"], secret=h.SECRET))
    body = {"question": "the freight lift stops between floors", "details": "since the storm"}
    first = post(client, "/api/escalations", body, headers={**asker, "Idempotency-Key": "tap-1"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = post(client, "/api/escalations", body, headers={**asker, "Idempotency-Key": "tap-1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"] and "similar" in again.get_json()
    assert len([e for e in kb.escalations(user="ulla") if e.question == body["question"]]) == 1
    stored = kb.escalation(first.get_json()["id"])
    assert [e["kind"] for e in stored.events] == ["asked", "escalated"]  # once
    other = post(client, "/api/escalations", {"question": "the scanner is slow"},
                 headers={**asker, "Idempotency-Key": "tap-1"})
    assert other.status_code == 422 and "another request" in other.get_json()["error"]
    for bad in ("", "ключ", "k" * 256, "tap-1, tap-2"):  # the last: two headers merged on the way
        r = post(client, "/api/escalations", body, headers={**asker, "Idempotency-Key": bad})
        assert r.status_code == 400 and "idempotency key" in r.get_json()["error"]
    plain = post(client, "/api/escalations", body, headers=asker)  # no key: every request is a question
    assert plain.status_code == 201 and plain.get_json()["id"] != first.get_json()["id"]
