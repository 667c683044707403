"""The HTTP service: predictions by multipart and raw body, the page, and a JSON 4xx for every bad input."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from .conftest import SR, encode, voice_like

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from emovae.errors import ParameterError  # noqa: E402
from emovae.serve import ServeConfig, create_app  # noqa: E402

LIMITS = ServeConfig(max_bytes=200_000, max_seconds=4.0)  # 4 s of 16-bit 16 kHz WAV is 128 kB


@pytest.fixture(scope="module")
def client(recognizer):
    return TestClient(create_app(recognizer, LIMITS))


@pytest.fixture(scope="module")
def clip() -> bytes:
    return encode(voice_like(160, 1.2))


def check_prediction(body: dict, classes) -> None:
    assert body["emotion"] in classes
    assert list(body["probabilities"]) == list(classes)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["confidence"] == body["probabilities"][body["emotion"]]
    assert len(body["latent_map"]) == 2 and all(np.isfinite(body["latent_map"]))
    assert body["duration_s"] == pytest.approx(1.2, abs=0.1)
    assert body["model_version"]["emovae"] and body["model_version"]["backend"] in ("onnx", "torch")


def test_predict_multipart(client, recognizer, clip):
    r = client.post("/v1/predict", files={"file": ("hello.wav", clip, "audio/wav")})
    assert r.status_code == 200, r.text
    check_prediction(r.json(), recognizer.classes)


def test_predict_raw_body_matches_multipart_and_library(client, recognizer, clip):
    a = client.post("/v1/predict", content=clip, headers={"content-type": "audio/wav"}).json()
    b = client.post("/v1/predict", files={"file": ("x.wav", clip, "audio/wav")}).json()
    check_prediction(a, recognizer.classes)
    assert a["probabilities"] == b["probabilities"]
    from emovae.audio import load_bytes

    direct = recognizer.predict_signal(load_bytes(clip, SR), SR)  # one inference path: the library's numbers
    assert a["probabilities"] == pytest.approx(direct.probabilities, abs=1e-5)


@pytest.mark.parametrize("ctype", ["audio/flac", "application/octet-stream", "application/x-www-form-urlencoded"])
def test_predict_raw_flac_any_label(client, recognizer, ctype):
    r = client.post("/v1/predict", content=encode(voice_like(200, 1.2, sr=22050), 22050, "FLAC"),
                    headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    check_prediction(r.json(), recognizer.classes)


def test_health_model_docs_page(client, recognizer):
    from emovae.plots import EMOTION_COLORS

    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert h.json()["classes"] == list(recognizer.classes)
    m = client.get("/v1/model").json()
    assert m["classes"] == list(recognizer.classes)
    lm = m["latent_map"]
    assert len(lm["points"]) == len(lm["labels"]) > 0 and all(len(p) == 2 for p in lm["points"])
    assert m["colors"] == {c: EMOTION_COLORS[c] for c in recognizer.classes}
    assert m["limits"] == {"max_bytes": LIMITS.max_bytes, "max_seconds": LIMITS.max_seconds}
    assert client.get("/docs").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="emotion"' in page.text and 'type="file"' in page.text
    # self-contained: no scripts, styles or fonts fetched from elsewhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert "@import" not in page.text and "url(http" not in page.text


def test_unknown_route_is_json_404(client):
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and "error" in r.json()


def _bad_inputs(clip: bytes) -> dict[str, tuple[dict, int, str]]:
    """name -> (request kwargs, expected status, a word the error must contain)."""
    corrupt = clip[:12] + b"fmt \xff\xff\xff\x7f" + b"\x00" * 64  # a RIFF/WAVE header with a broken fmt chunk
    return {
        "empty": (dict(content=b"", headers={"content-type": "audio/wav"}), 400, "empty"),
        "empty file": (dict(files={"file": ("e.wav", b"", "audio/wav")}), 400, "empty"),
        "text": (dict(content=b"just some text, not audio\n" * 20, headers={"content-type": "text/plain"}),
                 415, "not a readable audio"),
        "text file": (dict(files={"file": ("notes.txt", b"hello " * 100, "text/plain")}), 415, "notes.txt"),
        "corrupt wav": (dict(content=corrupt, headers={"content-type": "audio/wav"}), 415, "not a readable"),
        "truncated wav": (dict(content=clip[:30], headers={"content-type": "audio/wav"}), 415, "not a readable"),
        "silence": (dict(content=encode(np.zeros(SR, np.float32)), headers={"content-type": "audio/wav"}),
                    422, "silent"),
        "too short": (dict(content=encode(voice_like(160, 0.05)), headers={"content-type": "audio/wav"}),
                      422, "too short"),
        "over max_bytes": (dict(content=encode(voice_like(160, 8.0)), headers={"content-type": "audio/wav"}),
                           413, "limit"),
        "over max_bytes multipart": (dict(files={"file": ("big.wav", encode(voice_like(160, 8.0)))}), 413, "limit"),
        "over max_bytes chunked": (dict(content=iter([b"\x00" * 50_000] * 6), headers={"content-type": "audio/wav"}),
                                   413, "limit"),
        "over max_seconds": (dict(content=encode(voice_like(160, 6.0), fmt="FLAC"),
                                  headers={"content-type": "audio/flac"}), 413, "at most 4 s"),
        "no file field": (dict(files={"other": ("a.wav", clip, "audio/wav")}), 400, "field 'file'"),
        "bad multipart": (dict(content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"}),
                          400, "multipart"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(b"RIFF\x00\x00\x00\x00WAVE")))
def test_bad_input_gives_json_4xx(client, clip, case):
    kwargs, status, word = _bad_inputs(clip)[case]
    r = client.post("/v1/predict", **kwargs)
    assert r.status_code == status, (case, r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert word in err, err
    assert "Traceback" not in err and "BytesIO" not in err


def test_content_length_checked_before_reading(client):
    """A declared size over the limit is refused from the header alone."""
    r = client.post("/v1/predict", content=b"x" * 10, headers={"content-type": "audio/wav",
                                                                 "content-length": str(LIMITS.max_bytes + 1)})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_unexpected_failure_is_json_500_and_service_survives(recognizer, clip):
    class Broken(type(recognizer)):
        def __init__(self, inner):
            self.__dict__.update(inner.__dict__)
            self.calls = 0

        def predict_features(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            return recognizer.predict_features(*args, **kwargs)

    c = TestClient(create_app(Broken(recognizer), LIMITS), raise_server_exceptions=False)
    r = c.post("/v1/predict", content=clip, headers={"content-type": "audio/wav"})
    assert r.status_code == 500 and "internal error" in r.json()["error"]
    assert c.post("/v1/predict", content=clip, headers={"content-type": "audio/wav"}).status_code == 200


def test_memory_does_not_grow_over_bad_requests(client, clip):
    cases = list(_bad_inputs(clip).values())
    cases = [c for c in cases if not hasattr(c[0].get("content"), "__next__")]  # generators run once

    def burst(n):
        for i in range(n):
            kwargs, status, _ = cases[i % len(cases)]
            assert client.post("/v1/predict", **kwargs).status_code == status

    burst(2 * len(cases))  # warm caches (imports, soxr, thread pool)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        burst(200)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 2_000_000, f"traced memory grew by {(after - before) / 1e6:.2f} MB over 200 bad requests"


def test_serve_config_validates():
    with pytest.raises(ParameterError):
        ServeConfig(max_bytes=0)
    with pytest.raises(ParameterError):
        ServeConfig(max_seconds=0)


def test_sessions_adapt_and_stay_apart(recognizer):
    client = TestClient(create_app(recognizer, LIMITS))
    clips = [encode(voice_like(130 + 20 * i, 1.2, seed=i)) for i in range(3)]
    first = client.post("/v1/predict?session=alice", content=clips[0], headers={"content-type": "audio/wav"}).json()
    assert first["session"] == "alice" and first["adapted"] is False and first["speaker_clips"] == 1
    second = client.post("/v1/predict", content=clips[1],
                         headers={"content-type": "audio/wav", "x-session-id": "alice"}).json()
    assert second["adapted"] is True and second["speaker_clips"] == 2
    bob = client.post("/v1/predict?session=bob", files={"file": ("c.wav", clips[2], "audio/wav")}).json()
    assert bob["speaker_clips"] == 1 and not bob["adapted"]
    assert client.get("/v1/sessions/alice").json() == {"session": "alice", "clips": 2, "adapted": True}
    # without a session id nothing is kept and the answer is the single-clip one
    plain = client.post("/v1/predict", content=clips[1], headers={"content-type": "audio/wav"}).json()
    assert "adapted" not in plain and "session" not in plain
    assert client.delete("/v1/sessions/alice").json() == {"session": "alice", "deleted": True}
    r = client.get("/v1/sessions/alice")
    assert r.status_code == 404 and "no live session" in r.json()["error"]
    again = client.post("/v1/predict?session=alice", content=clips[0], headers={"content-type": "audio/wav"}).json()
    assert again["speaker_clips"] == 1
    assert client.app.state.sessions.peek("bob").n_clips == 1


def test_session_ids_are_checked_and_expire(recognizer):
    cfg = ServeConfig(max_bytes=200_000, max_seconds=4.0, session_ttl_s=0.05, max_sessions=3)
    client = TestClient(create_app(recognizer, cfg))
    r = client.post("/v1/predict?session=" + "x" * 200, content=encode(voice_like(160, 1.2)),
                    headers={"content-type": "audio/wav"})
    assert r.status_code == 400 and "invalid session id" in r.json()["error"]
    assert client.get("/v1/sessions/bad%20id").status_code == 400
    for i in range(5):
        client.post(f"/v1/predict?session=s{i}", content=encode(voice_like(160, 1.2)),
                    headers={"content-type": "audio/wav"})
        assert len(client.app.state.sessions) <= 3
    import time

    time.sleep(0.1)
    assert len(client.app.state.sessions) == 0
    with pytest.raises(ParameterError):
        ServeConfig(session_ttl_s=0)


def test_a_square_wave_is_answered_not_speech_with_its_probabilities():
    """The shipped model's speech guard stops a square wave: the service answers "not speech" instead of an
    emotion, and still gives the probabilities."""
    from emovae.runtime import Recognizer

    t = np.arange(int(2.0 * SR)) / SR
    square = 0.5 * np.sign(np.sin(2 * np.pi * 220 * t))
    rec = Recognizer.load()
    body = TestClient(create_app(rec, LIMITS)).post(
        "/v1/predict", content=encode(square), headers={"content-type": "audio/wav"}).json()
    assert body["answer"] == "not speech" and body["in_domain"] is False
    assert body["emotion"] in rec.classes and sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_predict_answers_the_arousal_and_valence_of_the_library(client, recognizer, clip):
    """The tiny model has arousal and valence heads: the answer carries the library's numbers, and /docs names
    the fields."""
    from emovae.audio import load_bytes

    body = client.post("/v1/predict", content=clip, headers={"content-type": "audio/wav"}).json()
    direct = recognizer.predict_signal(load_bytes(clip, SR), SR)
    assert direct.arousal is not None and -1 <= body["arousal"] <= 1 and -1 <= body["valence"] <= 1
    assert (body["arousal"], body["valence"]) == pytest.approx((direct.arousal, direct.valence), abs=1e-4)
    docs = client.get("/docs").text
    assert "arousal" in docs and "valence" in docs
