"""Issue 21, item 6: hostile bodies get a 4xx JSON error, never a 500 or waitress's text/plain page.

Each reproduction from the issue is its own test: over-deep JSON (on every JSON endpoint and in the
multipart ``seen`` field), a 5000-digit integer, lone surrogates, NUL-only questions, and bodies over
the limit sent to a real ``kbsearch serve`` (with a Content-Length and chunked).
"""

from __future__ import annotations

import json
import socket

import pytest

from kbsearch import InvalidQuestionError
from kbsearch.web import make_token

DEEP = "[" * 20_000  # 20,000 nested brackets: json.loads raised RecursionError (a 500)
HUGE_INT = "1" * 5000  # more digits than int() converts by default: json.loads raised ValueError (a 500)


@pytest.fixture(scope="module")
def member(h):
    return {"Authorization": "Bearer " + make_token("ivan", ["it-support", "general"], secret=h.SECRET)}


def assert_json_error(r, status: int, needle: str = "") -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    data = r.get_json()
    assert set(data) == {"error", "type"} and needle in data["error"], data
    return data


@pytest.fixture(scope="module")
def esc_id(client, member):
    r = client.post("/api/escalations", data=json.dumps({"question": "the hall 2 badge reader beeps twice", "group": "general"}),
                    content_type="application/json", headers=member)
    assert r.status_code == 201
    return r.get_json()["id"]


@pytest.mark.parametrize("path", ["/api/search", "/api/ask", "/api/feedback", "/api/escalations", "answer"])
def test_deeply_nested_json_is_400_on_every_json_endpoint(client, member, esc_id, path):
    path = f"/api/escalations/{esc_id}/answer" if path == "answer" else path
    r = client.post(path, data=DEEP, content_type="application/json", headers=member)
    assert_json_error(r, 400, "nested too deeply")
    r = client.post(path, data='{"question": ' + DEEP + "}", content_type="application/json", headers=member)
    assert_json_error(r, 400, "nested too deeply")


def test_deeply_nested_seen_in_multipart_is_400(client, member):
    r = client.post("/api/escalations", headers=member, content_type="multipart/form-data",
                    data={"question": "the label printer prints blank labels", "seen": DEEP})
    assert_json_error(r, 400, "'seen' is nested too deeply")


def test_5000_digit_integer_is_400(client, member):
    for path in ("/api/search", "/api/ask"):
        r = client.post(path, data='{"question": "vpn", "limit": ' + HUGE_INT + "}", content_type="application/json",
                        headers=member)
        assert_json_error(r, 400, "too many digits")
    r = client.get("/api/escalations", query_string={"limit": HUGE_INT}, headers=member)
    assert_json_error(r, 400, "'limit' must be a whole number")


@pytest.mark.parametrize("path", ["/api/search", "/api/escalations"])
def test_lone_surrogate_is_refused_not_a_500(client, member, path):
    r = client.post(path, data='{"question": "\\ud800"}', content_type="application/json", headers=member)
    assert_json_error(r, 400, "'question' is required")


def test_lone_surrogate_inside_text_is_neutralised(client, member):
    r = client.post("/api/search", data='{"question": "reset vpn \\udfff password"}', content_type="application/json",
                    headers=member)
    assert r.status_code == 200
    assert r.get_json()["question"] == "reset vpn   password"
    assert r.get_json()["hits"][0]["id"] == "vpn-reset"


def test_nul_only_escalation_is_refused_like_ask(client, member):
    body = json.dumps({"question": "\x00\x00\x00"})
    assert_json_error(client.post("/api/ask", data=body, content_type="application/json", headers=member), 400,
                      "'question' is required")
    assert_json_error(client.post("/api/escalations", data=body, content_type="application/json", headers=member),
                      400, "'question' is required")
    r = client.post("/api/escalations", headers=member, content_type="multipart/form-data",
                    data={"question": "\x00\x1b\u200b"})
    assert_json_error(r, 400, "'question' is required")


def test_nul_only_escalation_is_refused_for_library_callers(kb):
    before = len(kb.escalations(limit=1000))
    for question in ("\x00\x00", "\x1b\x07 \u200b"):
        with pytest.raises(InvalidQuestionError, match="empty"):
            kb.escalate(question, user="lib", group="general")
    assert len(kb.escalations(limit=1000)) == before
    esc = kb.escalate("printer\x00 on floor\x1b[2J 3 jams", user="lib", group="general", deliver=False)
    assert esc.question == "printer  on floor [2J 3 jams"


def raw_http(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP/1.1 request to 127.0.0.1 and read the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def test_oversized_body_with_content_length_is_413_json_from_the_server(server):
    status, headers, payload = raw_http(
        server.port, "POST /api/escalations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
        "boundary=x\r\nContent-Length: 999999999")
    assert status == 413 and headers["content-type"] == "application/json"
    data = json.loads(payload)
    assert data["type"] == "RequestTooLarge" and "request too large" in data["error"], data
    assert headers.get("x-content-type-options") == "nosniff"


def test_oversized_chunked_body_is_413_json_from_the_server(server):
    size = 5 * 1024 * 1024 + 64 * 1024 + 10  # more than web.max_photo_bytes (default) and the form around it
    body = f"{size:x}\r\n".encode() + b"a" * size + b"\r\n0\r\n\r\n"
    status, headers, payload = raw_http(
        server.port, "POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked", body)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(payload)["type"] == "RequestTooLarge"


def test_chunked_json_over_the_json_limit_is_413_json_from_the_app(server):
    doc = json.dumps({"question": "x" * (70 * 1024)}).encode()
    body = f"{len(doc):x}\r\n".encode() + doc + b"\r\n0\r\n\r\n"
    status, headers, payload = raw_http(
        server.port, "POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close", body)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(payload)["type"] == "RequestTooLarge"


def test_malformed_request_is_json_from_the_server(server):
    status, headers, payload = raw_http(server.port, "POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        "Content-Length: banana")
    assert 400 <= status < 500 and headers["content-type"] == "application/json"
    assert set(json.loads(payload)) == {"error", "type"}
    assert server.api("GET", "health").status_code == 200  # and it keeps serving


def test_oversized_body_is_413_json_from_the_app_alone(client):
    """Mounted in another server (no waitress in front), the app refuses by Content-Length before reading."""
    r = client.post("/api/search", data=b"{}", content_type="application/json",
                    environ_overrides={"CONTENT_LENGTH": str(10**9)})
    assert_json_error(r, 413, "request too large")
