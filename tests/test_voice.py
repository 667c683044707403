"""The voice student's runtime half: its input (levelled speech, 40 mel bands) and its graph run over clips."""

import numpy as np
import pytest

from emovae import dsp, voice
from emovae.errors import EmovaeError
from emovae.features import Features

from .conftest import SR


def test_level_raises_quiet_clips_to_minus_30_dbfs_and_leaves_loud_ones():
    t = np.arange(SR) / SR
    quiet = (0.001 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    loud = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    assert 10 * np.log10(np.mean(voice.level(quiet).astype(np.float64) ** 2)) == pytest.approx(-30, abs=0.01)
    assert np.array_equal(voice.level(loud), loud)
    assert np.array_equal(voice.level(np.zeros(100, np.float32)), np.zeros(100, np.float32))


def test_encoder_mel_puts_a_tone_in_its_band_every_10_ms():
    y = np.sin(2 * np.pi * 1000 * np.arange(8000) / SR).astype(np.float32)
    mel = voice.encoder_mel(y)
    assert mel.shape == (1 + 8000 // voice.HOP, voice.N_MELS) and mel.dtype == np.float32
    edges = dsp.mel_to_hz(np.linspace(dsp.hz_to_mel(0.0), dsp.hz_to_mel(SR / 2), voice.N_MELS + 2))
    band = int(np.argmax(mel[25]))
    assert edges[band] < 1000 < edges[band + 2]


def test_voice_names_match_the_encoder_output():
    names = voice.voice_names()
    assert len(names) == voice.VOICE_DIM == 512 and names[0] == "voice_mean_0" and names[-1] == "voice_std_255"


def _graph_bytes(seed: int) -> bytes:
    from emovae.train.student import build_voice_onnx

    rng = np.random.default_rng(seed)
    layer = {"weight_ih": rng.standard_normal((4 * voice.HIDDEN, voice.N_MELS)) * 0.1,
             "weight_hh": rng.standard_normal((4 * voice.HIDDEN, voice.HIDDEN)) * 0.1,
             "bias_ih": np.zeros(4 * voice.HIDDEN), "bias_hh": np.zeros(4 * voice.HIDDEN)}
    return build_voice_onnx([layer], bits=None).SerializeToString()


def test_with_voice_appends_the_graphs_statistics():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    session = voice.voice_session(_graph_bytes(0))
    mel = np.random.default_rng(0).random((30, voice.N_MELS)).astype(np.float16)
    f = Features(np.zeros((30, 2)), ("a", "b"), np.array([1.0, 2.0], np.float32), ("s1", "s2"), mel)
    out = voice.with_voice([f, None], session)
    assert out[1] is None and out[0].mel is None
    assert out[0].stat_names == ("s1", "s2") + voice.voice_names()
    expected = session.run(None, {"mel": mel.astype(np.float32)[None]})[0][0]
    np.testing.assert_array_equal(out[0].stats, np.r_[1.0, 2.0, expected].astype(np.float32))
    with pytest.raises(EmovaeError, match="mel bands"):
        voice.with_voice([Features(f.frames, f.frame_names, f.stats, f.stat_names)], session)


def test_a_missing_voice_graph_is_named(tmp_path):
    with pytest.raises(EmovaeError, match="missing"):
        voice.voice_session(tmp_path / "none.onnx")


def test_a_voice_graph_rewritten_in_place_is_read_again(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    mel = np.random.default_rng(0).random((1, 20, voice.N_MELS)).astype(np.float32)
    path = tmp_path / "voice.onnx"
    path.write_bytes(_graph_bytes(1))
    voice.voice_session(path).run(None, {"mel": mel})
    path.write_bytes(_graph_bytes(2))
    expected = voice.voice_session(path.read_bytes()).run(None, {"mel": mel})[0]
    np.testing.assert_array_equal(voice.voice_session(path).run(None, {"mel": mel})[0], expected)
