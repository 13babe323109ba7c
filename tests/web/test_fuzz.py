"""Issue 21: every endpoint with arbitrary bodies, headers and ids never answers 5xx nor shows a traceback.

The bulk of the examples drive the WSGI app in-process through werkzeug's test client (the same code
path waitress runs); a smaller part sends raw bytes to a real ``kbsearch serve`` and checks after each
example that it still serves.  Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from kbsearch import KnowledgeBase
from kbsearch.web import create_app, make_token

SECRET = "test-secret-0123456789abcdef"  # the web conftest's secret (helpers come through the `h` fixture)


def routes() -> list[tuple[str, str]]:
    """(method, path template) of every rule of the app's url_map, so a new endpoint is fuzzed too."""
    from kbsearch.config import Settings
    from kbsearch.web._app import WebApp

    app = WebApp(None, secret=SECRET, settings=Settings())  # the url_map needs no index
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"})


ROUTES = routes()

texts = st.text(max_size=40) | st.sampled_from(["", " ", "\x00\x00", "\ud800", "x\udfffy", "\x1b[2J", "🙂" * 5,
                                                 "a" * 3000, "../../etc/passwd", "%00", "esc-0123456789ab"])
numbers = (st.integers() | st.integers(min_value=-10**30, max_value=10**30) | st.floats(allow_nan=True)
           | st.sampled_from([0, 1, 50, 51, -1, 10**300]))
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(texts, inner, max_size=4), max_leaves=12)
fields = st.sampled_from(["question", "limit", "decision_id", "helpful", "comment", "escalated", "details",
                          "group", "seen", "text", "verify", "status", "mine", "days"])
objects = st.dictionaries(fields | texts, json_values, max_size=6)


def _dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    objects.map(_dumps),
    json_values.map(_dumps),
    st.binary(max_size=200),
    st.integers(1000, 30_000).map(lambda n: b"[" * n),  # over-deep nesting
    st.integers(1000, 30_000).map(lambda n: b'{"question": ' + b"[" * n + b"}"),
    st.integers(4301, 8000).map(lambda n: b'{"question": "vpn", "limit": ' + b"9" * n + b"}"),
    st.just(b'{"question": "\\ud800"}'),
    st.just(b'{"question": "\\u0000\\u0000", "seen": "' + b"[" * 5000 + b'"}'),
)
content_types = st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                                 "multipart/form-data", "multipart/form-data; boundary=xyz",
                                 "application/x-www-form-urlencoded", "", "application/json\x00"])
header_names = st.sampled_from(["Authorization", "X-Kbsearch-Secret", "X-Kbsearch-User", "X-Kbsearch-Groups",
                                "Accept", "Accept-Language", "Host", "X-Forwarded-For", "Cookie", "Range",
                                "If-None-Match", "Transfer-Encoding", "Content-Encoding"])
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60) | st.sampled_from([
    "Bearer " + make_token("ivan", ["it-support", "general", "finance"], secret=SECRET),
    "Bearer " + make_token("eve", [], secret=SECRET), "Bearer x", "Basic Og==", SECRET, "ivan", "finance, hr",
    "it-support," * 200, "gzip", "chunked", "bytes=0-1"])
headers = st.dictionaries(header_names, header_values, max_size=4)
ids = texts | st.from_regex(r"[A-Za-z0-9_.:\-]{1,130}", fullmatch=True) | st.sampled_from(["esc-", "a" * 129])
queries = st.dictionaries(fields | texts, texts | numbers.map(str), max_size=4)


def check(status: int, ctype: str, body: bytes) -> None:
    """Never a 5xx (a 501 is a documented "not in this installation"), 4xx is JSON, no traceback anywhere."""
    assert status < 500 or status == 501, (status, body[:300])
    assert b"Traceback" not in body and b'File "' not in body, body[:300]
    if 400 <= status < 500:
        assert ctype.startswith("application/json"), (status, ctype, body[:300])
        data = json.loads(body)
        assert isinstance(data.get("error"), str) and isinstance(data.get("type"), str), data


@pytest.fixture(scope="module")
def client(index_dir, h):
    with KnowledgeBase.open(index_dir, create=False) as kb:
        yield Client(create_app(kb, secret=h.SECRET))


def _path(template: str, esc_id: str, att_id: str, name: str) -> str:
    from urllib.parse import quote

    return (template.replace("<esc_id>", quote(esc_id, safe="", errors="surrogatepass"))
            .replace("<att_id>", quote(att_id, safe="", errors="surrogatepass"))
            .replace("<path:name>", quote(name, safe="/", errors="surrogatepass")))


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(route=st.sampled_from(ROUTES), body=bodies, ctype=content_types, hdrs=headers, esc_id=ids, att_id=ids,
       name=texts, query=queries, method_swap=st.booleans())
def test_every_endpoint_answers_4xx_json_never_5xx(client, route, body, ctype, hdrs, esc_id, att_id, name, query,
                                                     method_swap):
    method, template = route
    if method_swap:  # the other method on the same path: 405 with JSON
        method = "POST" if method == "GET" else "GET"
    path = _path(template, esc_id, att_id, name)
    hdrs = {k: v for k, v in hdrs.items() if k not in ("Transfer-Encoding", "Host")}
    resp = client.open(path, method=method, data=body if method == "POST" else None, content_type=ctype or None,
                       headers=hdrs, query_string={k.encode("utf-8", "surrogatepass"): v.encode(
                           "utf-8", "surrogatepass") for k, v in query.items()})
    data = resp.get_data()
    check(resp.status_code, resp.headers.get("Content-Type", ""), data)


def _raw(port: int, request: bytes) -> tuple[int, str, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ctype = next((v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
                  if k.strip().lower() == "content-type"), "")
    return int(lines[0].split()[1]), ctype, payload


header_lines = st.lists(st.tuples(header_names, header_values.map(lambda v: v.replace("\r", "").replace("\n", ""))),
                        max_size=3)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, ctype=content_types, extra=header_lines, esc_id=ids,
       chunked=st.booleans())
def test_real_server_answers_json_and_keeps_serving(server, route, body, ctype, extra, esc_id, chunked):
    method, template = route
    path = _path(template, esc_id, "a1", "app.js")
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if ctype:
        lines.append("Content-Type: " + ctype.replace("\x00", ""))
    lines += [f"{k}: {v}" for k, v in extra if k not in ("Host", "Transfer-Encoding", "Content-Length")]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    status, got_type, data = _raw(server.port, "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + payload)
    check(status, got_type, data)
    assert server.api("GET", "health").status_code == 200  # still serving
