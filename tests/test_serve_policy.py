"""The service's header policies (serve/policy.py, serve/page.py): malformed Origin and Host headers are a 400,
never a 500; a Host allow-list against DNS rebinding (``--allow-host``, by default the localhost names and the
bound name; IP addresses always pass); the security headers on every answer and a Content-Security-Policy
the page runs under."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket

import pytest

from .conftest import encode, live_server, voice_like

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from emovae.errors import ParameterError  # noqa: E402
from emovae.serve import ServeConfig, create_app  # noqa: E402
from emovae.serve.policy import (  # noqa: E402
    LOCAL_HOSTS,
    default_hosts,
    normalize_host_pattern,
    normalize_origin,
    parse_host,
    parse_origin,
    same_origin,
)

BASE = dict(max_bytes=200_000, max_seconds=4.0)
WAV = {"content-type": "audio/wav"}
BAD_ORIGINS = ("http://x:99999999999", "http://[::1", "http://x:-1", "https://", "http://a b", "http://[zz]:80")
BAD_HOSTS = ("x:99999999999", "[::1", "x:-1", "[::1]:abc", "a:1:2", "a/b")
ENDPOINTS = (("GET", "/health"), ("GET", "/"), ("POST", "/v1/predict"), ("GET", "/v1/sessions/a"),
             ("DELETE", "/v1/sessions/a"), ("OPTIONS", "/v1/predict"), ("GET", "/no/such/page"))


@pytest.fixture(scope="module")
def clip() -> bytes:
    return encode(voice_like(160, 1.2))


@pytest.fixture(scope="module")
def client(recognizer):
    return TestClient(create_app(recognizer, ServeConfig(**BASE)), raise_server_exceptions=False)


# ------------------------------------------------------------------------------------ malformed headers
@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_a_malformed_origin_is_400_on_every_endpoint(client, origin):
    for method, path in ENDPOINTS:
        r = client.request(method, path, headers={"origin": origin, "access-control-request-method": "POST"})
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert "malformed Origin header" in r.json()["error"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_malformed_host_is_400_on_every_endpoint(client, host):
    for method, path in ENDPOINTS:
        r = client.request(method, path, headers={"host": host, "origin": "http://localhost"})
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert "malformed Host header" in r.json()["error"]


def test_malformed_headers_over_a_real_socket_get_400_and_log_no_traceback(recognizer, caplog):
    """uvicorn, not the test client: the raw bytes of the probe that found the 500s."""
    caplog.set_level(logging.INFO)
    with live_server(create_app(recognizer, ServeConfig(**BASE))) as addr:
        for extra in (b"Origin: http://x:99999999999\r\n", b"Origin: http://[::1\r\n"):
            for request_line in (b"GET /health", b"POST /v1/predict"):
                with socket.create_connection(addr, timeout=10) as s:
                    s.sendall(request_line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra +
                              b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    answer = b""
                    while chunk := s.recv(65536):
                        answer += chunk
                assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text


def test_header_parsers_never_raise():
    assert parse_host("Example.com:8080") == ("example.com", 8080)
    assert parse_host("[::1]:8000") == ("::1", 8000) and parse_host("127.0.0.1") == ("127.0.0.1", None)
    assert parse_host("svc:") == ("svc", None)
    for bad in (*BAD_HOSTS, "x:\u00b2", "x:\u0663"):  # digits to str.isdigit, not to a port
        assert parse_host(bad) is None, bad
    assert parse_origin("HTTP://LocalHost:80/") == ("http", "localhost", 80)
    assert parse_origin("https://[::1]") == ("https", "::1", 443)
    for bad in (*BAD_ORIGINS, "null", "ftp://x", "http://u@h", "http://a/b", "localhost:3000", ""):
        assert parse_origin(bad) is None, bad
        assert not same_origin(bad, "x:80")
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("https://svc.example", "svc.example")  # behind a TLS proxy
    assert same_origin("http://[::1]:8000", "[::1]:8000")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("http://a", "x:99999999999") and not same_origin("http://a", None)
    assert normalize_origin("http://[::1]:3000/") == "http://[::1]:3000"
    with pytest.raises(ParameterError):
        normalize_origin("http://x:99999999999")


# ------------------------------------------------------------------------------------ Host allow-list
def test_a_dns_rebinding_page_is_refused_by_the_host_allow_list(recognizer, clip):
    """evil.example resolved to 127.0.0.1: the browser sends Origin and Host evil.example, which look
    same-origin; the Host check refuses them before the session is touched."""
    app = create_app(recognizer, ServeConfig(**BASE, allow_hosts=LOCAL_HOSTS))
    client = TestClient(app, base_url="http://localhost:8000")
    evil = {"origin": "https://evil.example", "host": "evil.example"}
    r = client.post("/v1/predict?session=victim", content=clip, headers={**WAV, **evil})
    assert r.status_code == 400 and "--allow-host evil.example" in r.json()["error"], r.text
    assert "DNS rebinding" in r.json()["error"]
    assert client.get("/health", headers={"host": "evil.example:8000"}).status_code == 400
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400  # the page is not served either
    assert app.state.sessions.peek("victim") is None
    # this machine's names and any IP address are served
    for host in ("localhost:8000", "app.localhost", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3", "LOCALHOST"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    assert client.post("/v1/predict?session=me", content=clip,
                       headers={**WAV, "origin": "http://localhost:8000"}).status_code == 200


def test_allowed_hosts_names_and_suffixes(recognizer):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE, allow_hosts=("svc.example", "*.corp.example"))))
    ok = ("svc.example", "SVC.example:443", "a.corp.example", "b.a.corp.example:8000")
    for host in ok:
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    for host in ("corp.example", "svc.example.evil", "xsvc.example", "evilcorp.example"):
        assert client.get("/health", headers={"host": host}).status_code == 400, host
    anyone = TestClient(create_app(recognizer, ServeConfig(**BASE, allow_hosts=("*",))))
    assert anyone.get("/health", headers={"host": "whatever.example"}).status_code == 200


def test_host_patterns_and_defaults_are_checked():
    assert normalize_host_pattern(" Svc.Example ") == "svc.example"
    assert normalize_host_pattern("[::1]") == "::1" and normalize_host_pattern("*.Example.com") == "*.example.com"
    for bad in ("http://svc.example", "svc.example:80", "*bad.example", "a.*.example", "", "a b"):
        with pytest.raises(ParameterError, match="allowed host"):
            normalize_host_pattern(bad)
    with pytest.raises(ParameterError):
        ServeConfig(allow_hosts=("svc.example:8000",))
    assert ServeConfig(allow_hosts="A.example").allow_hosts == ("a.example",)
    assert ServeConfig().allow_hosts is None  # create_app alone: only well-formedness is checked
    assert default_hosts("127.0.0.1") == LOCAL_HOSTS == default_hosts("0.0.0.0") == default_hosts("::")
    assert default_hosts("MyBox.lan") == (*LOCAL_HOSTS, "mybox.lan")


def test_serve_command_passes_allow_host_and_run_adds_the_defaults(monkeypatch, recognizer):
    """``emovae serve --allow-host`` -> ServeConfig.allow_hosts; ``run`` adds the localhost names and the bound
    name to them, and the app it serves refuses other names."""
    import uvicorn

    import emovae.serve
    import emovae.serve.server as server
    from emovae.cli import main

    seen = {}
    monkeypatch.setattr(emovae.serve, "run", lambda *a, **kw: seen.update(args=a, kw=kw))
    assert main(["serve", "--allow-host", "svc.example", "--allow-host", "*.corp.example"]) == 0
    assert seen["args"][4].allow_hosts == ("svc.example", "*.corp.example")

    from emovae.runtime import Recognizer

    monkeypatch.setattr(Recognizer, "load", classmethod(lambda cls, *a, **kw: recognizer))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, uvicorn=kw))
    server.run("box.lan", 8123, cfg=ServeConfig(**BASE, allow_hosts=("svc.example",)))
    client = TestClient(seen["app"])
    for host in ("box.lan:8123", "svc.example", "localhost:8123", "192.168.1.9:8123"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    assert client.get("/health", headers={"host": "evil.example"}).status_code == 400


# ------------------------------------------------------------------------------------ security headers
def test_every_answer_carries_the_security_headers(client, clip):
    answers = [client.get("/health"), client.get("/no/such/page"),
               client.post("/v1/predict", content=clip, headers=WAV),
               client.post("/v1/predict", content=clip, headers={**WAV, "origin": "https://evil.example"}),  # 403
               client.get("/health", headers={"origin": "http://[::1"})]  # 400 from a policy
    assert [r.status_code for r in answers] == [200, 404, 200, 403, 400]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["content-security-policy"].startswith("default-src 'none'")


def test_the_page_has_no_inline_script_or_style_and_a_strict_csp(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), "an inline <script> would be blocked"
    assert "<style" not in page.text and " style=" not in page.text and not re.search(r"\son[a-z]+=", page.text)
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        assert f'"{name}"' in page.text  # relative: the page works under a path prefix too
        r = client.get("/" + name)
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype) and len(r.text) > 500
    assert "fetch(\"v1/model\")" in client.get("/app.js").text


def test_docs_csp_allows_exactly_its_inline_style(client):
    docs = client.get("/docs")
    (style,) = re.findall(r"<style>(.*?)</style>", docs.text, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = docs.headers["content-security-policy"]
    assert f"style-src 'sha256-{digest}'" in csp and "script-src" not in csp and "unsafe-inline" not in csp


WEIRD = ("", " ", "null", "*", "http://", "http://[::1", "http://x:99999999999", "[", "]", ":", "::::", "%00",
         "a" * 5000, "http://a\tb", "é", "\x7f", "1e3", "-1", "99999999999999999999", "http://[fe80::1%25eth0]",
         "https://xn--nxasmq6b.example", "..", "/etc/passwd", "' OR 1=1 --", "multipart/form-data; boundary=")


@pytest.mark.parametrize("name", ["origin", "host", "content-length", "content-type", "x-session-id",
                                  "idempotency-key", "x-request-id", "expect", "access-control-request-method"])
def test_no_header_value_makes_a_500(client, clip, name):
    """Odd values of every header the service reads, on every endpoint: always an answer below 500, in JSON."""
    for value in WEIRD:
        for method, path in ENDPOINTS:
            kwargs = {"content": clip} if method == "POST" and name != "content-length" else {}
            try:
                r = client.request(method, path, headers={name: value}, **kwargs)
            except (UnicodeEncodeError, ValueError):  # the client itself refuses to send it
                continue
            assert r.status_code < 500, (name, value[:40], method, path, r.status_code, r.text[:300])
            if r.status_code >= 400:
                assert "error" in r.json(), (name, value[:40], method, path, r.text[:200])
