"""Sessions in a real store (issue 23): ``RedisSessionStore`` against a redis-server started here on a free
loopback port (no mock store): the same answers as the in-process store, atomic updates from two threads and two
processes (the n-th clip sees n-1 earlier ones), the TTL kept by the server, moments only, and two service apps
sharing one speaker's session. Skipped when ``redis-server`` is not installed (Debian: apt-get install
redis-server)."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from emovae.errors import EmovaeError, ParameterError
from emovae.session import RedisSessionStore, Session, SessionStore, open_store
from emovae.speaker import RunningMoments, SessionConfig

from .conftest import SR, voice_like

pytest.importorskip("redis")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None,
                                reason="redis-server is not on PATH (apt-get install redis-server)")
S = 6  # statistics of the stub model


class Stub:
    """What a store reads of a recognizer: the model's prior."""

    source = "stub"
    meta = {"speaker_prior": {"mean": [0.5] * S, "std": [2.0] * S}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(port: int) -> subprocess.Popen:
    """redis-server on 127.0.0.1:``port`` (no persistence), once it answers PING."""
    import redis

    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


@pytest.fixture(scope="module")
def redis_url():
    port = _free_port()
    proc = _start_redis(port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def url(redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def _stats(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 3.0, (n, S))


def test_moments_equal_the_in_process_store_and_only_moments_are_stored(url):
    import redis

    mem, red = SessionStore(Stub()), RedisSessionStore(Stub(), url)
    x = _stats(5)
    assert red.peek("a") is None and len(red) == 0 and red.get("a").n_clips == 0 and red.peek("a") is None
    for i, row in enumerate(x, 1):
        (m_mem, n_mem), (m_red, n_red) = mem.observe("a", row), red.observe("a", row)
        assert n_mem == n_red == i
        if i < SessionConfig().min_clips:
            assert m_mem is None and m_red is None
        else:
            np.testing.assert_array_equal(m_red[0], m_mem[0])
            np.testing.assert_array_equal(m_red[1], m_mem[1])
    assert red.peek("a").n_clips == 5 and len(red) == 1
    (key,) = redis.Redis.from_url(url).keys("*")
    assert set(redis.Redis.from_url(url).hgetall(key)) == {b"n", b"mean", b"m2"}  # moments, never audio
    assert red.delete("a") and not red.delete("a") and red.peek("a") is None and len(red) == 0


def test_the_ttl_is_kept_by_the_server(url):
    import redis

    red = RedisSessionStore(Stub(), url, ttl_s=0.3)
    red.observe("a", _stats(1)[0])
    ttl = redis.Redis.from_url(url).pttl(red._key("a"))
    assert 0 < ttl <= 300
    time.sleep(0.45)
    assert red.peek("a") is None and red.observe("a", _stats(1)[0])[1] == 1  # expired: a fresh session


def test_a_clip_counts_once_in_redis_too(url):
    """observe_once against the server: the same digest three times counts once, its moments equal the
    in-process store's, and the stored digests stay bounded (RECENT_CLIPS) beside the moments."""
    import redis

    from emovae.session import DIGEST_BYTES, RECENT_CLIPS, clip_digest

    mem, red = SessionStore(Stub()), RedisSessionStore(Stub(), url)
    rows = _stats(3, seed=4)
    seq = [0, 0, 1, 0, 2, 2]
    got = [red.observe_once("a", rows[i], clip_digest(bytes([i])))[1:] for i in seq]
    assert got == [(1, True), (1, False), (2, True), (2, False), (3, True), (3, False)]
    for i in (0, 1, 2):
        mem.observe_once("a", rows[i], clip_digest(bytes([i])))
    stored, ref = red.moments("a"), mem.peek("a").moments
    assert stored.n == ref.n == 3
    np.testing.assert_array_equal(stored.mean, ref.mean)
    np.testing.assert_array_equal(stored.m2, ref.m2)
    for i in range(RECENT_CLIPS + 10):
        red.observe_once("b", rows[0], clip_digest(i.to_bytes(4, "big")))
    fields = redis.Redis.from_url(url).hgetall(red._key("b"))
    assert set(fields) == {b"n", b"mean", b"m2", b"recent"} and len(fields[b"recent"]) == RECENT_CLIPS * DIGEST_BYTES
    with pytest.raises(ParameterError, match="invalid session id"):
        red.observe_once("..", rows[0])
    assert len(red) == 2


def _observe_many(url: str, rows: np.ndarray, out) -> None:
    store = RedisSessionStore(Stub(), url)  # its own connection, as another replica would have
    for row in rows:
        out.put(store.observe("spk", row)[1])


def _check_all_counted(url, rows, seen):
    assert sorted(seen) == list(range(1, len(rows) + 1)), "a clip was lost or counted twice"
    ref = RunningMoments(*Stub.meta["speaker_prior"].values(), SessionConfig().prior_weight)
    ref.update(rows)
    stored = RedisSessionStore(Stub(), url).moments("spk")
    assert stored.n == len(rows)
    np.testing.assert_allclose(stored.mean, ref.mean, rtol=1e-12)  # the order differs, the moments do not
    np.testing.assert_allclose(stored.m2, ref.m2, rtol=1e-9)


def test_two_threads_updating_one_speaker_lose_no_clip(url):
    import queue

    rows = _stats(80, seed=1)
    out = queue.Queue()
    threads = [threading.Thread(target=_observe_many, args=(url, part, out)) for part in (rows[::2], rows[1::2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    _check_all_counted(url, rows, [out.get_nowait() for _ in range(out.qsize())])


CHILD = """
import sys, numpy as np
from emovae.session import RedisSessionStore
class Stub:
    source, meta = "stub", {"speaker_prior": {"mean": [0.5] * %d, "std": [2.0] * %d}}
store = RedisSessionStore(Stub(), sys.argv[1])
import time; time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # both start together
print(" ".join(str(store.observe("spk", row)[1]) for row in np.load(sys.argv[2])))
""" % (S, S)


def test_two_processes_updating_one_speaker_lose_no_clip(url, tmp_path):
    import os
    import sys

    rows = _stats(60, seed=2)
    start = str(time.time() + 1.5)
    parts = []
    for i, part in enumerate((rows[::2], rows[1::2])):
        np.save(tmp_path / f"{i}.npy", part)
        parts.append(subprocess.Popen([sys.executable, "-c", CHILD, url, str(tmp_path / f"{i}.npy"), start],
                                      stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}))
    seen = []
    for p in parts:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        seen += [int(v) for v in out.split()]
    _check_all_counted(url, rows, seen)


def test_open_store_names_its_errors(url):
    assert isinstance(open_store(Stub()), SessionStore) and isinstance(open_store(Stub(), "memory"), SessionStore)
    assert isinstance(open_store(Stub(), url), RedisSessionStore)
    with pytest.raises(ParameterError, match="redis://"):
        open_store(Stub(), "mongodb://x")
    with pytest.raises(EmovaeError, match="cannot reach"):
        open_store(Stub(), f"redis://127.0.0.1:{_free_port()}/0")


# ----------------------------------------------------------------------------------- the service, shared
@pytest.fixture(scope="module")
def rec():
    pytest.importorskip("onnxruntime")
    from emovae.runtime import load_pretrained

    return load_pretrained()


def _wav(seed: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, voice_like(140 + 10 * seed, 1.2, seed=seed), SR, format="WAV")
    return buf.getvalue()


def test_two_service_apps_share_one_speakers_session(rec, url):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emovae.serve import ServeConfig, create_app

    cfg = ServeConfig(max_bytes=400_000, max_seconds=4.0, session_store=url)
    apps = [TestClient(create_app(rec, cfg)) for _ in range(2)]
    session = Session(rec)  # the same clips through one in-process session
    for i in range(5):
        body = apps[i % 2].post("/v1/predict?session=alice", content=_wav(i)).json()
        want = session.predict_signal(voice_like(140 + 10 * i, 1.2, seed=i), SR)
        assert body["speaker_clips"] == i + 1 and body["adapted"] == (i + 1 >= 2)
        assert body["emotion"] == want.emotion
        assert body["probabilities"] == pytest.approx(want.probabilities, abs=1e-3)  # the upload is 16-bit PCM
    assert apps[1].get("/v1/sessions/alice").json() == {"session": "alice", "clips": 5, "adapted": True}
    retry = apps[0].post("/v1/predict?session=alice", content=_wav(4)).json()  # the last clip, sent again
    assert retry["session_clips"] == 5 and retry["repeated"] is True
    assert retry["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)
    bad = apps[0].post("/v1/predict?session=bob", content=b"not audio")
    assert bad.status_code >= 400 and apps[1].get("/v1/sessions/bob").status_code == 404  # no session from a failure
    assert apps[0].delete("/v1/sessions/alice").json()["deleted"] is True
    assert apps[1].get("/v1/sessions/alice").status_code == 404


# ------------------------------------------------------------------------- real service processes
def _start_service(url: str, *extra: str) -> tuple[subprocess.Popen, int]:
    """``emovae serve`` (the shipped model) as a process of its own on a free loopback port, once it answers
    /health."""
    import os
    import sys
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "emovae", "-q", "serve", "--port", str(port), "--session-store",
                             url, "--max-seconds", "10", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"emovae serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("emovae serve did not answer within 90 s")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        proc.wait(10)


def _post(port: int, body: bytes, sid: str) -> dict:
    """One upload on a fresh connection (so that a multi-process server may hand it to any of its processes)."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", f"/v1/predict?session={sid}", body=body, headers={"Connection": "close"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        assert resp.status == 200, data
        return data
    finally:
        conn.close()


def test_two_service_processes_keep_one_speakers_session(url):
    """Two `emovae serve` processes on loopback, one Redis: clips of one speaker sent to either, alternately,
    see every earlier clip (the n-th sees n-1), whichever process answers."""
    servers = [_start_service(url) for _ in range(2)]
    try:
        for i in range(6):
            body = _post(servers[i % 2][1], _wav(i), "carol")
            assert body["speaker_clips"] == i + 1 and body["adapted"] == (i + 1 >= 2)
    finally:
        for proc, _ in servers:
            _stop(proc)


def test_serve_processes_2_shares_sessions_across_its_processes(url):
    """`emovae serve --processes 2`: two uvicorn worker processes on one port; 12 clips of one speaker from 4
    concurrent clients on fresh connections are each counted once: the answers hold 1..12 exactly."""
    import concurrent.futures
    from pathlib import Path

    proc, port = _start_service(url, "--processes", "2", "--workers", "1")
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if children.exists():  # the supervisor's children: 2 service processes (+ multiprocessing's helper)
            assert len(children.read_text().split()) >= 2
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            counts = sorted(pool.map(lambda i: _post(port, _wav(i), "dave")["speaker_clips"], range(12)))
        assert counts == list(range(1, 13))
        assert _post(port, _wav(12), "dave")["speaker_clips"] == 13
    finally:
        _stop(proc)


# ------------------------------------------------------------------------------- the store goes away
def test_a_redis_outage_is_503_logged_once_and_recovers_by_itself(rec, caplog):
    """redis-server stopped under load: requests with a session get 503 with Retry-After (body drained: no
    reset connection), the others 200; one log line when the outage starts and one when it ends, no
    traceback; once redis-server is started again, sessions work without restarting the service."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import concurrent.futures
    import logging

    import httpx

    from emovae.serve import ServeConfig, create_app
    from emovae.session import OUTAGE_RETRY_S

    from .conftest import live_server

    port = _free_port()
    proc = _start_redis(port)
    caplog.set_level(logging.INFO)
    app = create_app(rec, ServeConfig(max_bytes=400_000, max_seconds=4.0, session_store=f"redis://127.0.0.1:{port}/0"))
    clips = [_wav(i) for i in range(4)]
    try:
        with live_server(app) as (host, http_port), httpx.Client(base_url=f"http://{host}:{http_port}",
                                                                 timeout=30) as c:
            assert c.post("/v1/predict?session=erin", content=clips[0]).json()["session_clips"] == 1
            proc.terminate()
            proc.wait(10)
            t0 = time.monotonic()

            def one(i: int):
                sid = f"?session=erin-{i % 3}" if i % 4 else ""
                with httpx.Client(base_url=f"http://{host}:{http_port}", timeout=30) as own:  # new connections
                    r = own.post("/v1/predict" + sid, content=clips[i % 4])
                    return bool(sid), r.status_code, r.headers.get("retry-after"), r.json()

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(one, range(48)))
            elapsed = time.monotonic() - t0
            with_session = [a for a in answers if a[0]]
            assert {a[1] for a in with_session} == {503}, [a[1:] for a in with_session if a[1] != 503][:3]
            assert all(a[2] and 1 <= int(a[2]) <= 5 for a in with_session)
            assert all("session store is unreachable" in a[3]["error"] and "without a session id" in a[3]["error"]
                       for a in with_session)
            assert {a[1] for a in answers if not a[0]} == {200}  # no session: the store is not needed
            assert c.get("/v1/sessions/erin").status_code == 503
            assert c.get("/health").json()["session_store"] == "unreachable"
            assert elapsed < 30, elapsed  # failing fast, not each request waiting on the network

            proc = _start_redis(port)
            deadline, r = time.monotonic() + 3 * OUTAGE_RETRY_S + 5, None
            while time.monotonic() < deadline:
                r = c.post("/v1/predict?session=erin", content=clips[1])
                if r.status_code == 200:
                    break
                assert r.status_code == 503
                time.sleep(0.2)
            assert r is not None and r.status_code == 200, r.text
            assert r.json()["session_clips"] == 1  # a server without persistence came back empty
            assert c.post("/v1/predict?session=erin", content=clips[2]).json()["session_clips"] == 2
            assert c.get("/health").json()["session_store"] == "reachable"
    finally:
        proc.terminate()
        proc.wait(10)
    outage = [r.getMessage() for r in caplog.records if "session store" in r.getMessage()]
    assert len(outage) == 2, outage
    assert "is unreachable" in outage[0] and "is back after" in outage[1], outage
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text
