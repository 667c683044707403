"""The service's bounds: sessions only from requests that succeeded and at a limited rate, a budget of bodies
held at once (429 + Retry-After), body and header timeouts, the CORS policy, one-line aborted uploads and
an offline /docs. Timing tests run a real uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time

import numpy as np
import pytest

from .conftest import SR, encode, live_server, voice_like

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from emovae.errors import ParameterError  # noqa: E402
from emovae.serve import (  # noqa: E402
    MULTIPART_OVERHEAD,
    ByteBudget,
    DecodeBudget,
    RateLimit,
    ServeConfig,
    create_app,
    normalize_origin,
    same_origin,
)

BASE = dict(max_bytes=200_000, max_seconds=4.0)


@pytest.fixture(scope="module")
def clip() -> bytes:
    return encode(voice_like(160, 1.2))


WAV = {"content-type": "audio/wav"}


def open_upload(addr, length: int, sent: bytes = b"", path: str = "/v1/predict") -> socket.socket:
    """A raw connection that declares a body of ``length`` bytes and sends only ``sent`` of it."""
    s = socket.create_connection(addr, timeout=10)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
              f"Content-Length: {length}\r\n\r\n".encode() + sent)
    return s


def read_response(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    out = b""
    with contextlib.suppress(socket.timeout, ConnectionResetError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# ------------------------------------------------------------------------------------------- sessions
def test_failed_requests_create_and_evict_no_session(recognizer, clip):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE, max_sessions=2)))
    assert client.post("/v1/predict?session=alice", content=clip, headers=WAV).status_code == 200
    corrupt = clip[:12] + b"fmt \xff\xff\xff\x7f" + b"\x00" * 64
    bad = [
        (dict(content=b"", headers=WAV), 400),
        (dict(content=b"not audio at all\n" * 20, headers={"content-type": "text/plain"}), 415),
        (dict(content=corrupt, headers=WAV), 415),
        (dict(content=encode(np.zeros(SR, np.float32)), headers=WAV), 422),  # fails in feature extraction
        (dict(content=encode(voice_like(160, 0.05)), headers=WAV), 422),
        (dict(content=encode(voice_like(160, 8.0)), headers=WAV), 413),
        (dict(files={"other": ("a.wav", clip, "audio/wav")}), 400),
    ]
    for i in range(70):
        kwargs, status = bad[i % len(bad)]
        r = client.post(f"/v1/predict?session=x{i}", **kwargs)
        assert r.status_code == status, (i, r.text)
        r = client.post("/v1/predict", headers={**kwargs.get("headers", {}), "x-session-id": f"h{i}"},
                        **{k: v for k, v in kwargs.items() if k != "headers"})
        assert r.status_code == status, (i, r.text)
    store = client.app.state.sessions
    assert len(store) == 1, "failed requests created sessions"
    assert store.peek("alice") is not None and store.peek("alice").n_clips == 1  # not evicted (max_sessions=2)
    other = encode(voice_like(180, 1.2, seed=3))  # the same clip again would count once
    assert client.post("/v1/predict?session=alice", content=other, headers=WAV).json()["speaker_clips"] == 2


def test_session_creation_rate_per_client_and_total(recognizer, clip):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE, new_sessions_per_min=3)))
    codes = [client.post(f"/v1/predict?session=s{i}", content=clip, headers=WAV) for i in range(5)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    for r in codes[3:]:
        assert "too many new sessions" in r.json()["error"]
        assert 1 <= int(r.headers["retry-after"]) <= 60
    assert len(client.app.state.sessions) == 3
    # existing sessions go on; requests without a session are not limited
    again = {**WAV, "idempotency-key": "another clip"}  # the same bytes under their own request id count anew
    assert client.post("/v1/predict?session=s0", content=clip, headers=again).json()["speaker_clips"] == 2
    assert all(client.post("/v1/predict", content=clip, headers=WAV).status_code == 200 for _ in range(4))

    total = TestClient(create_app(recognizer, ServeConfig(**BASE, new_sessions_per_min_total=2)))
    assert [total.post(f"/v1/predict?session=t{i}", content=clip, headers=WAV).status_code
            for i in range(3)] == [200, 200, 429]


def test_rate_limit_refills_and_forgets_idle_clients():
    now = [0.0]
    rl = RateLimit(2, max_keys=3, clock=lambda: now[0])
    assert rl.take("a") == 0 and rl.take("a") == 0
    assert rl.take("a") == pytest.approx(30.0)  # 2 a minute: one more in 30 s
    now[0] = 30.0
    assert rl.wait_s("a") == 0 and rl.take("a") == 0
    for k in "bcdefg":
        rl.take(k)
    assert len(rl._buckets) <= 3  # noqa: SLF001


# ------------------------------------------------------------------------------------------- body budget
def test_byte_budget_waits_first_come_first_served_and_times_out():
    async def scenario():
        b = ByteBudget(100)
        assert await b.acquire(60, 1)
        assert not await b.acquire(50, 0.05)  # no room within the timeout
        assert b.used == 60
        waiter = asyncio.ensure_future(b.acquire(50, 5))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        b.release(60)
        assert await waiter and b.used == 50
        b.release(50)
        assert b.used == 0
        assert await b.acquire(100, 1)
        cancelled = asyncio.ensure_future(b.acquire(10, 5))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        b.release(100)
        assert b.used == 0 and not b._waiters  # noqa: SLF001

    asyncio.run(scenario())


def test_decode_budget_lets_large_decodes_take_turns_and_small_ones_share(recognizer, clip):
    """Two clips whose decoding needs more than half the budget decode one after the other (a 64 x 10 MB burst of
    8-channel FLAC peaked at 608 MB with two at once, 441 MB in turns); small ones hold it together; a clip
    larger than the budget still decodes, alone."""
    import threading

    b = DecodeBudget(100)
    inside, peak, lock = [0], [0], threading.Lock()

    def decode(n):
        with b.hold(n):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    for sizes, most in (([60, 60, 60], 1), ([30, 30, 30], 3), ([500, 10], 1)):
        peak[0] = 0
        threads = [threading.Thread(target=decode, args=(n,)) for n in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert peak[0] == most and b.used == 0, (sizes, peak[0], b.used)
    app = create_app(recognizer, ServeConfig(**BASE))
    assert app.state.decoding.total == 2 * ServeConfig().max_decoded_bytes
    assert TestClient(app).post("/v1/predict", content=clip, headers=WAV).status_code == 200
    assert app.state.decoding.used == 0


def test_uploads_beyond_the_budget_get_429_with_retry_after_and_aborts_log_one_line(recognizer, clip, caplog):
    cfg = ServeConfig(**BASE, max_pending_bytes=BASE["max_bytes"] + MULTIPART_OVERHEAD, queue_timeout_s=0.5,
                      body_timeout_s=30)
    app = create_app(recognizer, cfg)
    caplog.set_level(logging.INFO)
    with live_server(app) as addr:
        url = f"http://{addr[0]}:{addr[1]}/v1/predict"
        holder = open_upload(addr, 150_000, b"RIFF" + b"\x00" * 1000)  # holds 150 kB of the budget
        assert wait_for(lambda: app.state.budget.used == 150_000)
        t0 = time.monotonic()
        r = httpx.post(url, content=b"\x00" * 190_000, headers=WAV, timeout=10)
        assert r.status_code == 429 and "busy" in r.json()["error"], r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers.get("connection") != "close"  # body drained: the client reads the 429, no reset
        assert 0.4 <= time.monotonic() - t0 < 5
        # a small upload fits beside the held one
        assert httpx.post(url, content=clip, headers=WAV, timeout=10).status_code == 200
        caplog.clear()
        holder.close()  # the client aborts mid-body: budget back, one line logged
        assert wait_for(lambda: app.state.budget.used == 0)
        assert wait_for(lambda: any("aborted" in r.getMessage() for r in caplog.records))
        assert httpx.post(url, content=b"\x00" * 190_000, headers=WAV, timeout=10).status_code == 415
    aborted = [r for r in caplog.records if "aborted" in r.getMessage()]
    assert len(aborted) == 1 and "after 1004 bytes" in aborted[0].getMessage()
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


def test_a_client_waiting_for_100_continue_reads_its_429_not_a_reset(recognizer, clip):
    """curl sends a body over 1 MB with Expect: 100-continue and, after 1 s without an answer, the body anyway:
    kept waiting in the queue, it is drained and reads its 429 (it used to get a reset: Connection: close while
    it was still sending); refused at once (a session over its creation rate), it is answered before sending."""
    cfg = ServeConfig(**BASE, max_pending_bytes=BASE["max_bytes"] + MULTIPART_OVERHEAD, queue_timeout_s=1.5,
                      new_sessions_per_min=1)
    app = create_app(recognizer, cfg)
    with live_server(app) as addr:
        holder = open_upload(addr, 150_000, b"RIFF")  # holds 150 kB of the budget
        assert wait_for(lambda: app.state.budget.used == 150_000)
        body = b"\x00" * 190_000
        s = socket.create_connection(addr, timeout=10)
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(1.0)  # as curl: no answer within 1 s, so the body goes out
        s.sendall(body)  # the server is not reading yet: this fills the socket buffers
        resp = read_response(s, 5)
        s.close()
        head = resp.split(b"\r\n\r\n{")[0].lower()
        assert b"429" in head and b"retry-after" in head and b"connection: close" not in head, resp[:300]
        holder.close()
        assert wait_for(lambda: app.state.budget.used == 0)
        assert httpx.post(f"http://{addr[0]}:{addr[1]}/v1/predict?session=first", content=clip, headers=WAV,
                          timeout=10).status_code == 200
        s = socket.create_connection(addr, timeout=10)  # over the session rate: refused before the body
        s.sendall(b"POST /v1/predict?session=second HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.settimeout(5)
        resp = s.recv(65536)
        if resp.startswith(b"HTTP/1.1 100"):  # only when the refusal took over EXPECT_WAIT_S (a very busy machine)
            s.sendall(body)
        resp += read_response(s, 5)
        s.close()
        assert b"HTTP/1.1 429" in resp, resp[:300]
        assert resp.startswith(b"HTTP/1.1 100") or b"connection: close" in resp.lower()


def test_a_failed_upload_is_freed_at_once_not_at_the_next_garbage_collection(recognizer):
    """A failure comes back from the prediction thread as a value, so no traceback cycle keeps the upload: with
    the cyclic garbage collector off, five failed 1 MB uploads leave well under one upload allocated."""
    import gc
    import tracemalloc

    app = create_app(recognizer, ServeConfig(max_bytes=2_000_000, max_seconds=4.0))
    garbage = np.random.default_rng(0).integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    with live_server(app) as addr, httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}", timeout=30) as client:
        assert client.post("/v1/predict?session=x", content=garbage, headers=WAV).status_code == 415  # warm
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for k in range(5):
                r = client.post("/v1/predict" + ("?session=x" if k % 2 else ""), content=garbage, headers=WAV)
                assert r.status_code == 415, r.text
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gc.enable()
    assert kept < 700_000, f"{kept / 1e6:.1f} MB still allocated after 5 failed 1 MB uploads"


# ------------------------------------------------------------------------------------------- timeouts
def test_slow_body_gets_408_within_the_timeout_and_frees_the_budget(recognizer, caplog):
    app = create_app(recognizer, ServeConfig(**BASE, body_timeout_s=1.0))
    caplog.set_level(logging.INFO)
    with live_server(app) as addr:
        t0 = time.monotonic()
        s = open_upload(addr, 100_000, b"RIFF")
        for _ in range(3):  # a trickle does not reset the clock
            time.sleep(0.25)
            s.sendall(b"\x00")
        resp = read_response(s, 5)
        elapsed = time.monotonic() - t0
        s.close()
        assert resp.startswith(b"HTTP/1.1 408"), resp[:200]
        assert b"did not arrive within 1 s" in resp and b"connection: close" in resp.lower()
        assert 0.9 <= elapsed < 3.5, elapsed  # answered, and the connection closed (recv saw EOF)
        assert wait_for(lambda: app.state.budget.used == 0)
    assert not any(r.exc_info for r in caplog.records)


def test_connection_without_headers_is_closed(recognizer):
    app = create_app(recognizer, ServeConfig(**BASE))
    with live_server(app, header_timeout_s=0.5) as addr:
        s = socket.create_connection(addr, timeout=10)
        t0 = time.monotonic()
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        for _ in range(3):
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                s.sendall(b"X-Slow: 1\r\n")
        assert read_response(s, 5) == b""
        assert time.monotonic() - t0 < 3
        s.close()
        # keep-alive connections that finished a request get the same limit for the next one
        with httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}") as c:
            assert c.get("/health").status_code == 200


# ------------------------------------------------------------------------------------------- CORS
def test_foreign_origin_refused_and_given_no_cors_headers(recognizer, clip):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE)))
    evil = {"origin": "https://evil.example"}
    r = client.post("/v1/predict?session=victim", content=clip, headers={**WAV, **evil})
    assert r.status_code == 403 and "--allow-origin https://evil.example" in r.json()["error"]
    assert "access-control-allow-origin" not in r.headers
    assert client.app.state.sessions.peek("victim") is None
    assert client.delete("/v1/sessions/victim", headers=evil).status_code == 403
    pre = client.options("/v1/predict", headers={**evil, "access-control-request-method": "POST"})
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    g = client.get("/health", headers=evil)
    assert g.status_code == 200 and "access-control-allow-origin" not in g.headers
    for o in ("null", "http://testserver.evil.example", "http://testserver:8080"):
        assert client.post("/v1/predict", content=clip, headers={**WAV, "origin": o}).status_code == 403, o
    # the page's own origin (and clients without Origin: curl, scripts) are served
    same = client.post("/v1/predict", content=clip, headers={**WAV, "origin": "http://testserver"})
    assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
    assert client.post("/v1/predict", content=clip, headers=WAV).status_code == 200


def test_configured_origin_gets_cors_headers(recognizer, clip):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE, allow_origins=("https://App.example:443/",))))
    ok = {"origin": "https://app.example"}
    r = client.post("/v1/predict", content=clip, headers={**WAV, **ok})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert "Origin" in r.headers["vary"]
    pre = client.options("/v1/predict", headers={**ok, "access-control-request-method": "POST",
                                                 "access-control-request-headers": "content-type"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "x-session-id" in pre.headers["access-control-allow-headers"].lower()
    other = client.post("/v1/predict", content=clip, headers={**WAV, "origin": "https://other.example"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    anyone = TestClient(create_app(recognizer, ServeConfig(**BASE, allow_origins=("*",))))
    r = anyone.post("/v1/predict", content=clip, headers={**WAV, "origin": "https://x.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://x.example"


def test_origin_helpers():
    assert normalize_origin("HTTP://LocalHost:80/") == "http://localhost"
    assert normalize_origin("http://localhost:3000") == "http://localhost:3000"
    for bad in ("localhost:3000", "ftp://x", "https://x.example/path", ""):
        with pytest.raises(ParameterError):
            normalize_origin(bad)
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("https://svc.example", "svc.example")  # behind a TLS proxy
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("null", "127.0.0.1:8000") and not same_origin("http://a", None)


# ------------------------------------------------------------------------------------------- the rest
def test_decoded_size_is_bounded_before_decoding(recognizer):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE, max_decoded_bytes=100_000)))
    stereo = encode(np.stack([voice_like(160, 1.2)] * 2, axis=1))  # 2 x 19200 float32 samples: 154 kB
    r = client.post("/v1/predict", content=stereo, headers=WAV)
    assert r.status_code == 413 and "decoded" in r.json()["error"] and "mono" in r.json()["error"]


def test_docs_work_offline(recognizer):
    client = TestClient(create_app(recognizer, ServeConfig(**BASE)))
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/v1/predict" in docs.text and "openapi.json" in docs.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", docs.text)
    assert "<script" not in docs.text
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_serve_config_checks_new_limits():
    assert ServeConfig().pending_bytes >= ServeConfig().max_bytes
    for bad in (dict(max_pending_bytes=1000), dict(body_timeout_s=0), dict(queue_timeout_s=float("nan")),
                dict(new_sessions_per_min=0), dict(allow_origins=("not an origin",)), dict(max_decoded_bytes=0)):
        with pytest.raises(ParameterError):
            ServeConfig(**bad)
    assert ServeConfig(allow_origins="https://a.example/").allow_origins == ("https://a.example",)
