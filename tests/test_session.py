"""Session adaptation: running moments, the Session, batch adaptation by speaker, the store, stream and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emovae.errors import ParameterError
from emovae.features import speaker_moments
from emovae.session import RunningMoments, Session, SessionConfig, SessionStore, predict_by_speaker

from .conftest import SR, voice_like, write_ravdess_tree


def test_running_moments_match_batch_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)) * [1, 10, 100, 0.1, 3] + [0, 5, -50, 2, 1e3]
    m = RunningMoments(np.zeros(5), np.ones(5), prior_weight=0)
    for row in x:  # clip by clip
        m.update(row)
    mean, std = m.estimate()
    bm, bs = speaker_moments(x, np.zeros(len(x)))
    np.testing.assert_allclose(mean, bm[0], rtol=1e-6)
    np.testing.assert_allclose(std, bs[0], rtol=1e-5)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-5)


def test_prior_counts_as_pseudo_clips():
    """A prior of weight k with the mean and std of k clips estimates exactly what those k clips would."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3)) + 2, rng.standard_normal((7, 3)) * 3 - 1
    m = RunningMoments(a.mean(axis=0), a.std(axis=0), prior_weight=len(a))
    mean0, std0 = m.estimate()  # no clips yet: the prior itself
    np.testing.assert_allclose(mean0, a.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std0, a.std(axis=0), rtol=1e-6)
    m.update(b)
    mean, std = m.estimate()
    both = np.vstack([a, b])
    np.testing.assert_allclose(mean, both.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, both.std(axis=0), rtol=1e-5)
    m.reset()
    assert m.n == 0
    np.testing.assert_allclose(m.estimate()[0], a.mean(axis=0), rtol=1e-6)


def test_moments_shift_from_prior_toward_the_speaker():
    m = RunningMoments(np.zeros(2), np.ones(2), prior_weight=2)
    dist = []
    for _ in range(20):
        m.update(np.array([10.0, -10.0]))
        dist.append(np.abs(m.estimate()[0] - [10, -10]).max())
    assert all(d2 < d1 for d1, d2 in zip(dist, dist[1:]))
    assert dist[0] == pytest.approx(20 / 3, rel=1e-5) and dist[-1] < 1.0


def test_running_moments_reject_wrong_shape_and_empty():
    m = RunningMoments(np.zeros(3), np.ones(3), prior_weight=0)
    with pytest.raises(ParameterError, match="nothing to estimate"):
        m.estimate()
    with pytest.raises(ParameterError, match="shape"):
        m.update(np.zeros(4))
    with pytest.raises(ParameterError):
        SessionConfig(prior_weight=-1)


@pytest.fixture(scope="module")
def rec(tiny_model_dir):
    from emovae.runtime import Recognizer

    return Recognizer.load(tiny_model_dir)


def clips(n=6, seed=0):
    return [voice_like(120 + 15 * i, 1.0, seed=seed + i) for i in range(n)]


def test_session_first_clip_is_single_clip_then_adapts(rec):
    s = Session(rec)
    ys = clips()
    first = s.predict_signal(ys[0], SR)
    single = rec.predict_signal(ys[0], SR)
    assert not first.adapted and first.speaker_clips == 1
    assert first.probabilities == pytest.approx(single.probabilities, abs=1e-6)
    later = [s.predict_signal(y, SR) for y in ys[1:]]
    assert all(p.adapted for p in later) and [p.speaker_clips for p in later] == [2, 3, 4, 5, 6]
    assert s.n_clips == 6
    alone = rec.predict_signal(ys[-1], SR)
    assert not np.allclose(list(later[-1].probabilities.values()), list(alone.probabilities.values()), atol=1e-4)
    d = later[-1].to_dict()
    assert d["adapted"] is True and d["speaker_clips"] == 6
    s.reset()
    assert s.n_clips == 0 and not s.predict_signal(ys[0], SR).adapted


def test_session_probabilities_follow_classes(rec):
    s = Session(rec)
    for y in clips(3):
        p = s.predict_proba(y, SR)
    assert p.shape == (len(rec.classes),) and p.sum() == pytest.approx(1, abs=1e-5)


def test_session_matches_the_torch_backend(tiny_model_dir):
    pytest.importorskip("onnxruntime")
    from emovae.runtime import Recognizer

    onnx, torch_ = Recognizer.load(tiny_model_dir, backend="onnx"), Recognizer.load(tiny_model_dir, backend="torch")
    a, b = Session(onnx), Session(torch_)
    for y in clips(4):
        pa, pb = a.predict_signal(y, SR), b.predict_signal(y, SR)
    assert pa.adapted and pb.adapted
    np.testing.assert_allclose(list(pa.probabilities.values()), list(pb.probabilities.values()), atol=1e-4)


def test_batch_adaptation_by_speaker(rec):
    ys = clips(6)
    X = [rec.features(y, SR) for y in ys]
    spk = ["a", "a", "a", "b", "b", "lone"]
    preds = predict_by_speaker(rec, X, spk, names=[f"c{i}" for i in range(6)])
    assert [p.file for p in preds] == [f"c{i}" for i in range(6)]
    assert [p.speaker_clips for p in preds] == [3, 3, 3, 2, 2, 1]
    assert [p.adapted for p in preds] == [True] * 5 + [False]
    # order within a speaker does not matter; other speakers do not change a speaker's results
    again = predict_by_speaker(rec, [X[2], X[0], X[1]], ["a"] * 3)
    assert again[0].probabilities == pytest.approx(preds[2].probabilities, abs=1e-6)
    # a batch of one speaker equals a session after all its clips, for the last clip
    s = Session(rec)
    for f in X[:3]:
        last = s.predict_features(f)
    assert last.probabilities == pytest.approx(preds[2].probabilities, abs=1e-5)
    with pytest.raises(ParameterError, match="speakers"):
        predict_by_speaker(rec, X, spk[:2])


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


def test_stream_as_one_session(rec):
    from emovae.stream import run

    y = np.concatenate([voice_like(150, 3.0, seed=3), voice_like(200, 3.0, seed=4)])
    s = Session(rec)
    events = list(run(rec, np.array_split(y, 20), SR, session=s))
    speech = [e for e in events if e.probabilities is not None]
    assert len(speech) >= 4 and not speech[0].adapted and all(e.adapted for e in speech[1:])
    assert s.n_clips == len(speech)
    assert json.loads(json.dumps(speech[-1].to_dict()))["adapted"] is True


def test_cli_predict_speaker_from(tiny_model_dir, tmp_path, capsys):
    from emovae.cli import main

    files = write_ravdess_tree(tmp_path / "d", actors=(5, 6), emotions=(1, 3, 5))
    rc = main(["predict", "--model", str(tiny_model_dir), "--json", "--speaker-from", "actor",
               *map(str, files)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and len(rows) == 6
    assert all(r["adapted"] and r["speaker_clips"] == 3 for r in rows)
    csv = tmp_path / "spk.csv"
    csv.write_text("file,speaker\n" + "".join(f"{f.name},x\n" for f in files))
    assert main(["predict", "--model", str(tiny_model_dir), "--json", "--speaker-from", str(csv),
                 *map(str, files)]) == 0
    assert {json.loads(line)["speaker_clips"] for line in capsys.readouterr().out.splitlines()} == {6}
    csv.write_text("file,speaker\n" + f"{files[0].name},x\n")
    assert main(["predict", "--model", str(tiny_model_dir), "--speaker-from", str(csv), *map(str, files)]) == 2
    assert "no speaker for 5 file(s)" in capsys.readouterr().err


def test_session_mixes_the_heads_with_growing_trust(rec):
    """After n clips: (1 - t) x single-clip head + t x adapted head, t = n / (n + prior_weight)."""
    s = Session(rec, SessionConfig(prior_weight=3.0))
    ys = clips(4)
    for y in ys:
        p = s.predict_signal(y, SR)
    f = rec.features(ys[-1], SR)
    mean, std = s.moments.estimate()
    out = rec.network.forward([f], spk_mean=mean, spk_std=std)
    t = 4 / 7
    expected = (1 - t) * out["probabilities"][0] + t * out["probabilities_adapted"][0]
    np.testing.assert_allclose([p.probabilities[c] for c in rec.classes], expected, atol=1e-6)
    assert SessionConfig(prior_weight=0).trust(1) == 1.0 and SessionConfig(prior_weight=2).trust(2) == 0.5


def test_every_entry_point_uses_the_same_default_prior_weight():
    """The CLI (predict, stream, serve), the service config and Recognizer.session share SessionConfig's default."""
    import inspect

    from emovae.cli import build_parser
    from emovae.runtime import Recognizer
    from emovae.serve import ServeConfig

    default = SessionConfig().prior_weight
    parser = build_parser()
    for argv in (["predict", "x.wav"], ["stream", "x.wav"], ["serve"]):
        assert parser.parse_args(argv).prior_weight == default, argv
    assert ServeConfig().prior_weight == default
    assert inspect.signature(Recognizer.session).parameters["prior_weight"].default == default
