import numpy as np
import pytest
import soundfile as sf

from emovae import audio
from emovae.errors import AudioError


def test_load_downmixes_and_resamples(tmp_path):
    t = np.arange(48000) / 48000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    p = tmp_path / "stereo.flac"
    sf.write(p, np.stack([left, np.zeros_like(left)], axis=1), 48000)
    y = audio.load(p, 16000)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == 16000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) < 2  # same tone after resampling
    assert abs(np.max(np.abs(y[1000:-1000])) - 0.25) < 0.01  # mean of the two channels


@pytest.mark.parametrize("make,why", [
    (lambda d: d / "missing.wav", "file not found"),
    (lambda d: d, "is a folder"),
])
def test_load_missing(tmp_path, make, why):
    with pytest.raises(AudioError, match=why):
        audio.load(make(tmp_path))


def test_load_not_audio_names_file(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("hello, not audio")
    with pytest.raises(AudioError) as exc:
        audio.load(p)
    assert "text.wav" in str(exc.value) and "not a readable audio file" in str(exc.value)


def test_load_empty_and_short(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        audio.load(empty)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800, np.float32), 16000)
    with pytest.raises(AudioError, match="too short"):
        audio.load(short, min_duration=0.25)
    assert audio.load(short).shape == (800,)


def test_load_bytes_matches_load(tmp_path):
    p = tmp_path / "x.wav"
    sf.write(p, 0.1 * np.random.default_rng(0).standard_normal(22050), 22050)
    np.testing.assert_array_equal(audio.load(p), audio.load_bytes(p.read_bytes()))
    with pytest.raises(AudioError, match="empty upload"):
        audio.load_bytes(b"")


def test_is_silent():
    assert audio.is_silent(np.zeros(100, np.float32))
    assert not audio.is_silent(np.full(100, 0.1, np.float32))


def test_speed_perturb_scales_pitch_and_duration():
    from emovae.audio import speed_perturb
    from emovae.config import FeatureConfig
    from emovae.features import extract

    from .conftest import SR, tone

    y = tone(200.0, 1.0)
    fast = speed_perturb(y, SR, 1.1)
    assert fast.dtype == np.float32 and abs(len(fast) - len(y) / 1.1) < 2
    cfg = FeatureConfig()
    f0 = lambda s: float(np.nanmedian((f := extract(s, SR, cfg)).frames[:, f.frame_names.index("f0_hz")]))  # noqa: E731
    assert f0(fast) == pytest.approx(220.0, rel=0.01) and f0(y) == pytest.approx(200.0, rel=0.01)
    assert speed_perturb(y, SR, 1.0) is not None and len(speed_perturb(y, SR, 1.0)) == len(y)
