"""The service's feature processes (``serve.pool``): the same answers as its threads, errors that name the
upload, sessions kept in the serving process, and new workers after one dies."""

from __future__ import annotations

import os
import signal

import pytest

from .conftest import encode, voice_like

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from emovae.serve import ServeConfig, create_app  # noqa: E402
from emovae.serve.pool import MAX_DEFAULT_PROCESSES, FeaturePool, default_processes  # noqa: E402

LIMITS = ServeConfig(max_bytes=200_000, max_seconds=4.0)


@pytest.fixture(scope="module")
def pool(recognizer):
    p = FeaturePool(recognizer.feature_job, LIMITS, 2)
    yield p
    p.close()


@pytest.fixture(scope="module")
def pooled(recognizer, pool):
    return TestClient(create_app(recognizer, LIMITS, pool))


def test_default_processes_is_the_cores_this_process_may_use_up_to_a_bound(monkeypatch):
    assert default_processes() == min(len(os.sched_getaffinity(0)), MAX_DEFAULT_PROCESSES) >= 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert default_processes() == MAX_DEFAULT_PROCESSES


def test_pool_answers_as_the_threads_do(recognizer, pool, pooled):
    workers = pool.warm()
    assert workers and os.getpid() not in workers  # other processes do the work
    threads = TestClient(create_app(recognizer, LIMITS))
    for seconds, f0 in ((1.2, 160), (2.5, 220)):
        clip = encode(voice_like(f0, seconds))
        a = pooled.post("/v1/predict", content=clip).json()
        b = threads.post("/v1/predict", content=clip).json()
        assert a["emotion"] == b["emotion"] and a["duration_s"] == b["duration_s"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)


def test_pool_errors_name_the_upload(pooled):
    r = pooled.post("/v1/predict", files={"file": ("notes.txt", b"not audio at all" * 100, "text/plain")})
    assert r.status_code == 415 and "notes.txt" in r.json()["error"]
    r = pooled.post("/v1/predict", content=encode(voice_like(150, 6.0)), headers={"content-type": "audio/wav"})
    assert r.status_code == 413 and "4 s" in r.json()["error"]  # the header's length, read in the worker
    r = pooled.post("/v1/predict", content=encode(0 * voice_like(150, 1.0)))
    assert r.status_code == 422 and "silent" in r.json()["error"]


def test_pool_sessions_stay_in_the_service(recognizer, pooled):
    answers = [pooled.post("/v1/predict?session=spk-1", content=encode(voice_like(f0, 1.2))).json()
               for f0 in (150, 170, 190)]
    assert [a["session_clips"] for a in answers] == [1, 2, 3]
    assert pooled.get("/v1/sessions/spk-1").json()["clips"] == 3


def test_a_dead_worker_is_replaced(recognizer):
    p = FeaturePool(recognizer.feature_job, LIMITS, 1)
    try:
        client = TestClient(create_app(recognizer, LIMITS, p))
        (pid,) = p.warm()
        os.kill(pid, signal.SIGKILL)
        r = client.post("/v1/predict", content=encode(voice_like(160, 1.2)))
        assert r.status_code == 422 and "died" in r.json()["error"] and "retry" in r.json()["error"]
        r = client.post("/v1/predict", content=encode(voice_like(160, 1.2)))
        assert r.status_code == 200, r.text
    finally:
        p.close()


def _children(pid: int) -> set[int]:
    """Process ids of ``pid``'s descendants (Linux /proc)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for c in open(f"/proc/{p}/task/{p}/children").read().split()]
        except OSError:
            kids = []
        out.update(kids)
        todo += kids
    return out


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan whose exit nobody collected yet)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")
def test_serve_stops_its_feature_processes_with_it(tiny_model_dir):
    """``emovae serve`` ends by the signal it caught (uvicorn re-raises it): its workers must not outlive it."""
    import http.client
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "emovae", "-q", "serve", "--port", str(port), "--model",
                             str(tiny_model_dir), "--feature-processes", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) >= 2  # the two feature processes (and multiprocessing's resource tracker)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while (alive := [p for p in workers if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive
    finally:
        proc.kill()
