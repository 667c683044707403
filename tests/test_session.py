"""Sessions: clip-by-clip adaptation (``Session``), batches grouped by speaker, the store, the stream and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emovae.errors import ParameterError
from emovae.session import Session, SessionConfig, SessionStore, predict_by_speaker
from emovae.speaker import PRIOR_WEIGHT, RunningMoments, mix, model_prior

from .conftest import SR, voice_like

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def rec(tiny_model_dir):
    from emovae.runtime import Recognizer

    return Recognizer.load(tiny_model_dir, backend="onnx")


def clips(n=6, seed=0):
    return [voice_like(120 + 15 * i, 1.0, seed=seed + i) for i in range(n)]


def probs(p, classes) -> np.ndarray:
    return np.array([p.probabilities[c] for c in classes])


def test_session_first_clip_is_the_lone_clip_then_adapts(rec):
    s = Session(rec)
    ys = clips()
    first = s.predict_signal(ys[0], SR)
    single = rec.predict_signal(ys[0], SR)
    assert not first.adapted and first.speaker_clips == 1
    np.testing.assert_array_equal(probs(first, rec.classes), probs(single, rec.classes))
    assert first.latent == single.latent and first.novelty == single.novelty
    later = [s.predict_signal(y, SR) for y in ys[1:]]
    assert all(p.adapted for p in later) and [p.speaker_clips for p in later] == [2, 3, 4, 5, 6]
    assert s.n_clips == 6
    alone = rec.predict_signal(ys[-1], SR)
    assert not np.allclose(probs(later[-1], rec.classes), probs(alone, rec.classes), atol=1e-4)
    d = later[-1].to_dict()
    assert d["adapted"] is True and d["speaker_clips"] == 6
    s.reset()
    assert s.n_clips == 0 and not s.predict_signal(ys[0], SR).adapted


def test_the_nth_clip_uses_the_n_clips_so_far(rec):
    """After n clips: (1 - t) x single-clip + t x adapted head, t = n / (n + prior_weight), the adapted head
    reading the moments of those n clips pooled with the prior."""
    cfg = SessionConfig(prior_weight=3.0)
    s = Session(rec, cfg)
    X = [rec.features(y, SR) for y in clips(4)]
    moments = RunningMoments(*model_prior(rec.meta), prior_weight=3.0)
    for n, f in enumerate(X, start=1):
        got = s.predict_features(f)
        moments.update(f.stats)
        mean, std = moments.estimate()
        out = rec.network.forward([f], spk_mean=mean, spk_std=std)
        t = cfg.trust(n)
        assert t == (0.0 if n < 2 else pytest.approx(n / (n + 3)))
        expected = mix(out["probabilities"], out["probabilities_adapted"], t)[0]
        np.testing.assert_allclose(probs(got, rec.classes), expected, atol=1e-6)


def test_session_predict_proba_follows_classes(rec):
    a, b = Session(rec), Session(rec)
    for y in clips(3):
        p = a.predict_proba(y, SR)
        q = b.predict_signal(y, SR)
    assert p.shape == (len(rec.classes),)
    np.testing.assert_array_equal(p, probs(q, rec.classes))


def test_session_matches_the_torch_backend(tiny_model_dir, rec):
    pytest.importorskip("torch")
    from emovae.runtime import Recognizer

    a, b = Session(rec), Session(Recognizer.load(tiny_model_dir, backend="torch"))
    for y in clips(4):
        pa, pb = a.predict_signal(y, SR), b.predict_signal(y, SR)
    assert pa.adapted and pb.adapted
    np.testing.assert_allclose(probs(pa, rec.classes), probs(pb, rec.classes), atol=1e-4)


def test_batch_adaptation_by_speaker_is_order_free(rec):
    X = [rec.features(y, SR) for y in clips(6)]
    spk = ["a", "a", "a", "b", "b", "lone"]
    preds = predict_by_speaker(rec, X, spk, names=[f"c{i}" for i in range(6)])
    assert [p.file for p in preds] == [f"c{i}" for i in range(6)]
    assert [p.speaker_clips for p in preds] == [3, 3, 3, 2, 2, 1]
    assert [p.adapted for p in preds] == [True] * 5 + [False]
    np.testing.assert_array_equal(probs(preds[5], rec.classes), probs(rec.predict_features([X[5]])[0], rec.classes))
    # order within a speaker does not matter; other speakers do not change a speaker's results
    again = predict_by_speaker(rec, [X[2], X[0], X[1]], ["a"] * 3)
    np.testing.assert_allclose(probs(again[0], rec.classes), probs(preds[2], rec.classes), atol=1e-6)
    np.testing.assert_allclose(probs(again[1], rec.classes), probs(preds[0], rec.classes), atol=1e-6)
    # a batch of one speaker equals a session after all its clips, for the last clip
    s = Session(rec)
    for f in X[:3]:
        last = s.predict_features(f)
    np.testing.assert_allclose(probs(last, rec.classes), probs(preds[2], rec.classes), atol=1e-5)
    fewer = predict_by_speaker(rec, X, spk, cfg=SessionConfig(min_clips=3))
    assert [p.adapted for p in fewer] == [True] * 3 + [False] * 3
    with pytest.raises(ParameterError, match="speakers"):
        predict_by_speaker(rec, X, spk[:2])
    assert predict_by_speaker(rec, [], []) == []


def test_store_expires_evicts_and_resets(rec):
    now = [0.0]
    store = SessionStore(rec, ttl_s=10, max_sessions=2, clock=lambda: now[0])
    a = store.get("a")
    a.predict_signal(clips(1)[0], SR)
    assert store.get("a") is a and store.peek("a").n_clips == 1
    now[0] = 5
    store.get("b")
    now[0] = 12  # a idle 12 s > ttl; b idle 7 s
    assert store.peek("a") is None and store.peek("b") is not None
    fresh = store.get("a")
    assert fresh is not a and fresh.n_clips == 0
    store.get("c")  # a third session: the least recently used (b) goes
    assert store.peek("b") is None and len(store) == 2
    assert store.delete("c") and not store.delete("c") and len(store) == 1
    with pytest.raises(ParameterError):
        SessionStore(rec, ttl_s=0)


def test_stream_as_one_session(rec):
    from emovae.stream import run

    y = np.concatenate([voice_like(150, 3.0, seed=3), voice_like(200, 3.0, seed=4)])
    s = Session(rec)
    events = list(run(rec, np.array_split(y, 20), SR, session=s))
    speech = [e for e in events if e.probabilities is not None]
    assert len(speech) >= 4 and not speech[0].adapted and all(e.adapted for e in speech[1:])
    assert s.n_clips == len(speech)
    assert speech[-1].to_dict()["adapted"] is True


def test_cli_predict_speaker_from(tiny_model_dir, synthetic, rec, tmp_path, capsys):
    from emovae.cli import main

    files = sorted(synthetic["new"].rglob("*.wav"))
    rc = main(["predict", "--model", str(tiny_model_dir), "--json", "--speaker-from", "actor", *map(str, files)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and len(rows) == len(files) == 8
    assert all(r["adapted"] and r["speaker_clips"] == 4 for r in rows)
    X = [rec.features(*_read(f)) for f in files]
    spk = [f.parent.name for f in files]
    expected = rec.predict_by_speaker(X, spk)
    for r, p in zip(rows, expected):
        assert r["probabilities"] == pytest.approx(p.probabilities, abs=1e-5)
    assert main(["predict", "--model", str(tiny_model_dir), "--json", "--speaker-from", "folder", "--prior-weight",
                 "0", *map(str, files)]) == 0
    rows0 = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected0 = rec.predict_by_speaker(X, spk, cfg=SessionConfig(prior_weight=0))
    assert rows0[0]["probabilities"] == pytest.approx(expected0[0].probabilities, abs=1e-5)
    assert rows0[0]["probabilities"] != pytest.approx(rows[0]["probabilities"], abs=1e-4)
    csv = tmp_path / "spk.csv"
    csv.write_text("file,speaker\n" + "".join(f"{f.name},x\n" for f in files))
    assert main(["predict", "--model", str(tiny_model_dir), "--json", "--speaker-from", str(csv),
                 *map(str, files)]) == 0
    assert {json.loads(line)["speaker_clips"] for line in capsys.readouterr().out.splitlines()} == {8}


def _read(path):
    from .conftest import read

    return read(path)


def test_every_entry_point_uses_the_same_default_prior_weight(rec):
    """The CLI (predict, stream, serve), the service config, Session and Recognizer.session share one default."""
    from emovae.cli import build_parser

    parser = build_parser()
    for argv in (["predict", "x.wav"], ["stream", "x.wav"], ["serve"]):
        assert parser.parse_args(argv).prior_weight == PRIOR_WEIGHT, argv
    assert Session(rec).cfg == rec.session().cfg == SessionConfig()
    pytest.importorskip("fastapi")
    from emovae.serve import ServeConfig

    assert ServeConfig().prior_weight == PRIOR_WEIGHT


def test_a_clip_counts_once_per_session(rec):
    """observe_once: a clip whose digest the session has counted is answered with the moments as they are,
    neither counted nor moving them; the store's predict says whether it was counted."""
    from emovae.session import clip_digest

    s = Session(rec)
    X = [rec.features(y, SR) for y in clips(3)]
    keys = [clip_digest(str(i).encode()) for i in range(3)]
    assert s.observe_once(X[0].stats, keys[0])[1:] == (1, True)
    assert s.observe_once(X[0].stats, keys[0])[1:] == (1, False)
    m2, n, counted = s.observe_once(X[1].stats, keys[1])
    again, n_again, counted_again = s.observe_once(X[1].stats, keys[1])
    assert (n, counted, n_again, counted_again) == (2, True, 2, False)
    np.testing.assert_array_equal(again[0], m2[0])
    assert s.observe_once(X[1].stats)[1:] == (3, True)  # without a digest every call counts
    store = SessionStore(rec)
    first, counted_first = store.predict("bob", X[2], "c", keys[2])
    retry, counted_retry = store.predict("bob", X[2], "c", keys[2])
    assert (counted_first, counted_retry) == (True, False) and retry.speaker_clips == first.speaker_clips == 1
    assert retry.probabilities == first.probabilities
    s.reset()
    assert s.observe_once(X[0].stats, keys[0])[1:] == (1, True)  # a reset forgets the digests too


def test_a_session_remembers_its_last_clips_only():
    from emovae.session import DIGEST_BYTES, clip_digest, remember, seen_before

    recent = b""
    keys = [clip_digest(str(i).encode(), kind="key") for i in range(5)]
    for k in keys:
        recent = remember(recent, k, keep=3)
    assert len(recent) == 3 * DIGEST_BYTES
    assert [seen_before(recent, k) for k in keys] == [False, False, True, True, True]
    assert clip_digest(b"x") != clip_digest(b"x", kind="key") and len(clip_digest(b"x")) == DIGEST_BYTES


@pytest.mark.parametrize("sid", [".", "..", ".hidden", "-x", "a/b", "a b", "", "x" * 129, None])
def test_unsafe_session_ids_are_refused_by_the_store(rec, sid):
    from emovae.session import check_session_id

    store = SessionStore(rec)
    for call in (lambda: check_session_id(sid), lambda: store.get(sid), lambda: store.peek(sid),
                 lambda: store.delete(sid), lambda: store.observe(sid, np.zeros(3))):
        with pytest.raises(ParameterError, match="invalid session id"):
            call()
    assert len(store) == 0
    assert check_session_id("speaker-42.b_c") == "speaker-42.b_c"


def test_an_outage_fails_fast_probes_and_logs_once_each_way(caplog):
    """Outage (the breaker in front of an external store), on a fake clock: the first failure opens it and
    logs one warning; calls meanwhile raise StoreUnavailable without reaching the store; one probe per
    retry_s; the first success closes it with one line."""
    import logging

    from emovae.errors import EmovaeError
    from emovae.session import Outage, StoreUnavailable

    now, calls, up = [0.0], [], [True]

    def store():
        calls.append(now[0])
        if not up[0]:
            raise ConnectionError("refused")
        return "ok"

    caplog.set_level(logging.INFO, logger="emovae.session")
    o = Outage("redis://***@h:6379/0", (ConnectionError,), retry_s=2.0, clock=lambda: now[0])
    assert o.call(store) == "ok" and not o.down
    up[0] = False
    for t in (1.0, 1.5, 2.9, 3.1, 3.2, 5.0, 5.2):
        now[0] = t
        with pytest.raises(StoreUnavailable) as info:
            o.call(store)
        assert isinstance(info.value, EmovaeError) and 1.0 <= info.value.retry_after_s <= 2.0
    assert calls == [0.0, 1.0, 3.1, 5.2], "only the first failure and one probe per 2 s reach the store"
    assert o.down and o.refused == 7
    up[0] = True
    now[0] = 7.3
    assert o.call(store) == "ok" and not o.down
    now[0] = 7.4
    assert o.call(store) == "ok"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "is unreachable (ConnectionError: refused)" in lines[0]
    assert "is back after 6.3 s (7 requests" in lines[1]
    assert not any(r.exc_info for r in caplog.records)


def test_a_call_begun_before_an_outage_does_not_end_it():
    """A slow call that started before the store went down and returns afterwards (its answer was already on
    the way) must not close the breaker: the store is still down for the calls after it."""
    from emovae.session import Outage, StoreUnavailable

    now = [0.0]
    o = Outage("store", (ConnectionError,), retry_s=2.0, clock=lambda: now[0])

    def refused():
        raise ConnectionError("refused")

    def slow_but_fine():
        now[0] = 0.5
        with pytest.raises(StoreUnavailable):
            o.call(refused)  # meanwhile another call finds the store down
        now[0] = 0.6
        return "late answer"

    assert o.call(slow_but_fine) == "late answer"
    assert o.down
    with pytest.raises(StoreUnavailable):
        o.call(lambda: "not reached before the next probe")


def test_a_store_url_keeps_its_password_out_of_logs():
    from emovae.session import redacted

    assert redacted("redis://:s3cret@cache.example:6379/0") == "redis://***@cache.example:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
