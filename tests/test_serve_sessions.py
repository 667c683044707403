"""Sessions over HTTP (serve/sessions.py): each clip counts once per session (a client's Idempotency-Key or
X-Request-Id, else the clip's bytes), so retries do not shift a speaker's statistics; the answer says how many
distinct clips the session holds; unsafe session ids are a clear 400 wherever they are given."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import encode, voice_like

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from emovae.serve import ServeConfig, create_app  # noqa: E402

BASE = dict(max_bytes=200_000, max_seconds=4.0)
WAV = {"content-type": "audio/wav"}


@pytest.fixture(scope="module")
def clips() -> list[bytes]:
    return [encode(voice_like(130 + 25 * i, 1.2, seed=i)) for i in range(3)]


@pytest.fixture
def client(recognizer):
    return TestClient(create_app(recognizer, ServeConfig(**BASE)))


def post(client, clip: bytes, sid: str, **headers) -> dict:
    r = client.post(f"/v1/predict?session={sid}", content=clip, headers={**WAV, **headers})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_same_clip_three_times_counts_once(client, clips):
    answers = [post(client, clips[0], "bob") for _ in range(3)]
    assert [a["session_clips"] for a in answers] == [1, 1, 1]
    assert [a["repeated"] for a in answers] == [False, True, True]
    assert all(a["speaker_clips"] == 1 and a["session"] == "bob" for a in answers)
    assert answers[1]["probabilities"] == answers[0]["probabilities"] == answers[2]["probabilities"]
    assert client.get("/v1/sessions/bob").json()["clips"] == 1
    second = post(client, clips[1], "bob")
    assert second["session_clips"] == 2 and second["repeated"] is False and second["adapted"] is True
    assert post(client, clips[0], "bob")["session_clips"] == 2  # still known after another clip
    # multipart carries the same bytes: the same clip
    r = client.post("/v1/predict?session=bob", files={"file": ("again.wav", clips[1], "audio/wav")}).json()
    assert r["session_clips"] == 2 and r["repeated"] is True
    assert client.app.state.sessions.peek("bob").n_clips == 2


def test_retries_leave_the_speakers_statistics_as_one_pass(client, clips):
    for i in (0, 0, 1, 0, 2, 1, 2):
        post(client, clips[i], "retrying")
    for i in (0, 1, 2):
        post(client, clips[i], "once")
    store = client.app.state.sessions
    a, b = store.peek("retrying").moments, store.peek("once").moments
    assert a.n == b.n == 3
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.m2, b.m2)


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Request-Id"])
def test_a_request_id_names_the_clip(client, clips, header):
    assert post(client, clips[0], "k", **{header: "upload-1"})["session_clips"] == 1
    retry = post(client, clips[0], "k", **{header: "upload-1"})
    assert retry["session_clips"] == 1 and retry["repeated"] is True
    # the id wins over the bytes: another id is another clip, even with the same bytes ...
    assert post(client, clips[0], "k", **{header: "upload-2"})["session_clips"] == 2
    # ... and a retry keeps its id even if the client re-encoded the audio
    assert post(client, clips[1], "k", **{header: "upload-2"})["repeated"] is True
    assert client.get("/v1/sessions/k").json()["clips"] == 2


def test_without_a_session_nothing_is_counted_or_said(client, clips):
    body = client.post("/v1/predict", content=clips[0], headers=WAV).json()
    assert not {"session", "session_clips", "repeated"} & set(body)


UNSAFE = (".", "..", "...", ".hidden", "-rf", "_x", "a/b", "a b", "a:b", "é", "x" * 129, "a\\b")


@pytest.mark.parametrize("sid", UNSAFE)
def test_unsafe_session_ids_are_a_clear_400(client, clips, sid):
    from urllib.parse import quote

    q = quote(sid, safe="")
    for r in (client.post(f"/v1/predict?session={q}", content=clips[0], headers=WAV),
              client.get(f"/v1/sessions/{q}"), client.delete(f"/v1/sessions/{q}")):
        if r.status_code == 404 and ("/" in sid or not r.request.url.raw_path.endswith(q.encode())):
            continue  # a slash splits the path, or the client folded "..": the server never sees the id
        assert r.status_code == 400, (sid, r.request.url, r.status_code, r.text)
        assert "invalid session id" in r.json()["error"] and "starting with a letter or digit" in r.json()["error"]
    if sid.isascii() and sid.isprintable():  # header values are latin-1 text
        r = client.post("/v1/predict", content=clips[0], headers={**WAV, "x-session-id": sid})
        assert r.status_code == 400 and "invalid session id" in r.json()["error"], (sid, r.text)
    assert len(client.app.state.sessions) == 0


def test_dot_ids_in_the_path_are_400_over_a_real_socket(recognizer):
    """httpx folds /v1/sessions/.. into /v1; a raw request keeps it, and gets 400, not another endpoint."""
    import socket

    from .conftest import live_server

    with live_server(create_app(recognizer, ServeConfig(**BASE))) as addr:
        for path in (b"/v1/sessions/..", b"/v1/sessions/.", b"/v1/sessions/%2E%2E"):
            with socket.create_connection(addr, timeout=10) as s:
                s.sendall(b"DELETE " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400") and b"invalid session id" in answer, (path, answer[:300])


def test_ordinary_ids_are_accepted(client, clips):
    for sid in ("bob", "page-0123abcd", "a.b_c-d", "A" * 128, "42"):
        assert post(client, clips[0], sid)["session"] == sid


def test_session_answers_carry_the_sessions_arousal_and_valence(client, clips, recognizer):
    """A session's answers carry arousal and valence, adapted as the library's own session adapts them."""
    from emovae.audio import load_bytes
    from emovae.session import Session
    from emovae.speaker import SessionConfig

    local = Session(recognizer, SessionConfig(prior_weight=ServeConfig(**BASE).prior_weight))
    for clip in clips:
        body = post(client, clip, "affect")
        p = local.predict_signal(load_bytes(clip, recognizer.feature_config.sample_rate),
                                 recognizer.feature_config.sample_rate)
        assert p.arousal is not None and body["speaker_clips"] == p.speaker_clips
        assert (body["arousal"], body["valence"]) == pytest.approx((p.arousal, p.valence), abs=1e-4)
    assert body["adapted"] is True
