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


# ------------------------------------------------------------------ the student's input from the clip's own STFT
def _reference_mel(y: np.ndarray, cfg) -> np.ndarray:
    """The definition: the encoder's mel bands of the levelled speech span, framed on their own."""
    from emovae.features import speech_bounds

    y = y - np.float32(y.mean())  # extract removes the DC offset first
    start, stop = speech_bounds(y, cfg)
    speech = y[start:stop]
    return voice.encoder_mel(voice.level(speech if speech.size else y)).astype(np.float16)


def _assert_same_mel(mel: np.ndarray, ref: np.ndarray) -> None:
    # float16 storage: a value computed as power x gain^2 instead of from the levelled float32 samples may round
    # to the neighbouring float16 (relative step 2^-11 = 4.9e-4), never further
    assert mel.shape == ref.shape and mel.dtype == np.float16
    np.testing.assert_allclose(mel.astype(np.float64), ref.astype(np.float64), rtol=1e-3, atol=1e-7)
    assert np.mean(mel != ref) < 0.01


def _clips():
    from .conftest import voice_like

    rng = np.random.default_rng(3)
    gap = np.zeros(SR // 3, np.float32)
    speech = voice_like(170, 1.3, seed=4)
    return {
        "quiet, in silence": np.concatenate([gap, 0.002 * speech, gap]),  # levelled up: gain > 1
        "loud": speech,  # gain 1
        "noise floor around": np.concatenate([gap, speech, gap]) + 1e-4 * rng.standard_normal(
            len(speech) + 2 * len(gap)).astype(np.float32),  # span edges fall inside the signal
        "odd length, speech to the end": np.concatenate([gap, 0.01 * speech[:-77]]),
        "hum and a DC offset": 0.05 + 0.01 * np.sin(2 * np.pi * 50 * np.arange(SR) / SR).astype(np.float32),
    }


@pytest.mark.parametrize("name", list(_clips()))
def test_extract_takes_the_encoder_input_from_the_clips_stft(name):
    from emovae.config import FeatureConfig
    from emovae.features import extract

    cfg = FeatureConfig()
    assert voice.shares_framing(cfg.n_fft, cfg.win_length, cfg.hop_length)
    y = _clips()[name]
    _assert_same_mel(extract(y, SR, cfg).mel, _reference_mel(y, cfg))


def test_a_config_framed_otherwise_frames_the_speech_again():
    from emovae.config import FeatureConfig
    from emovae.features import extract

    cfg = FeatureConfig(win_length=320, hop_length=128)
    assert not voice.shares_framing(cfg.n_fft, cfg.win_length, cfg.hop_length)
    y = _clips()["noise floor around"]
    _assert_same_mel(extract(y, SR, cfg).mel, _reference_mel(y, cfg))


@pytest.mark.realdata
def test_real_clips_give_the_encoder_input_of_their_levelled_speech(real_data):
    from emovae import audio
    from emovae.config import FeatureConfig
    from emovae.features import extract

    cfg = FeatureConfig()
    files = sorted(real_data.rglob("*.flac"))[::150][:8]
    assert files
    for f in files:
        y = audio.load(f, SR)
        _assert_same_mel(extract(y, SR, cfg).mel, _reference_mel(y, cfg))


@pytest.mark.realdata
def test_the_shipped_model_predicts_the_same_from_either_mel(real_data):
    pytest.importorskip("onnxruntime")
    from dataclasses import replace

    from emovae import audio
    from emovae.features import extract
    from emovae.runtime import load_pretrained

    rec = load_pretrained(backend="onnx")
    cfg = rec.feature_config
    ours, ref = [], []
    for f in sorted(real_data.rglob("*.flac"))[::97][:12]:
        y = audio.load(f, SR)
        feats = extract(y, SR, cfg)
        ours.append(feats)
        ref.append(replace(feats, mel=_reference_mel(y, cfg)))
    np.testing.assert_allclose(rec.network.forward(ours)["probabilities"], rec.network.forward(ref)["probabilities"],
                               atol=1e-4)
