import warnings

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


def test_float_file_beyond_full_scale_is_scaled_with_a_warning(tmp_path):
    from emovae.errors import AudioWarning

    from .conftest import tone

    y = tone(220.0, 1.0, amp=1.0) * 2.27  # TESS's own float WAVs peak at 2.27
    p = tmp_path / "tess_like.wav"
    sf.write(p, y, 16000, subtype="FLOAT")
    with pytest.warns(AudioWarning, match=r"tess_like.wav: float samples reach 2.27.*scaled to peak 1"):
        out = audio.load(p)
    assert np.max(np.abs(out)) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(out, y / np.max(np.abs(y)), atol=1e-6)


@pytest.mark.parametrize("peak,ok", [(1.0, True), (1.5, True), (999.0, True), (1001.0, False), (32767.0, False)])
def test_float_arrays_are_scaled_up_to_an_absurd_peak(peak, ok):
    y = np.linspace(-1, 1, 1000, dtype=np.float32) * peak
    if not ok:
        with pytest.raises(AudioError, match="far beyond"):
            audio.as_float_samples(y, "x")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = audio.as_float_samples(y, "x")
    assert np.max(np.abs(out)) == pytest.approx(1.0) and len(caught) == (peak > 1)
    assert np.array_equal(audio.as_float_samples(y, "x", rescale=False), y) or peak > 1e3


def test_integer_lists_and_int64_are_refused_with_the_cast_to_make():
    pcm = [1000, -2000, 3000] * 100  # int16 values, which numpy would read as int64 (near silence)
    for bad, what in ((pcm, "list or tuple"), (tuple(pcm), "list or tuple"), (np.array(pcm), "int64"),
                      (np.abs(pcm).astype(np.uint64), "uint64")):
        with pytest.raises(AudioError, match=f"{what}.*np.int16"):
            audio.as_float_samples(bad, "x")
    np.testing.assert_allclose(audio.as_float_samples(np.array(pcm, np.int16)), np.array(pcm) / 32768, rtol=1e-6)
    np.testing.assert_allclose(audio.as_float_samples([0.5, -0.25]), [0.5, -0.25])  # a list of floats is fine
    np.testing.assert_allclose(audio.as_float_samples([np.int16(16384), np.int16(-8192)]), [0.5, -0.25])  # has a width
    with pytest.raises(AudioError, match=r"x: a list is not an array of audio samples; pass a numpy array"):
        audio.as_float_samples([[0.1, 0.2], [0.3]], "x")  # ragged
    with pytest.raises(AudioError, match="load_bytes"):
        audio.as_float_samples(b"RIFF....WAVE")


def test_tensors_and_half_floats_are_converted():
    torch = pytest.importorskip("torch")
    y = np.linspace(-0.5, 0.5, 4000, dtype=np.float32)
    for x, tol in ((torch.tensor(y, requires_grad=True), 0), (torch.tensor(y).to(torch.bfloat16), 4e-3),
                   (torch.tensor(y).half(), 5e-4), (y.astype(np.float16), 5e-4),
                   (torch.tensor((y * 32767).astype(np.int16)), 1e-4)):
        out = audio.as_float_samples(x, "x")
        assert out.dtype == np.float32 and out.shape == y.shape
        np.testing.assert_allclose(out, y, atol=tol + 1e-7)
    with pytest.raises(AudioError, match="int64.*np.int16"):
        audio.as_float_samples(torch.tensor([1, 2, 3]), "x")


def huge_wav(path, seconds: float, channels: int = 16, sr: int = 384_000) -> None:
    """A sparse PCM-16 WAV declaring ``seconds`` of ``channels`` channels at ``sr`` Hz (zeros; no disk used)."""
    import struct

    n = int(seconds * sr) * channels * 2
    block = channels * 2
    head = (b"RIFF" + struct.pack("<I", min(36 + n, 2**32 - 1)) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, 16) + b"data" + struct.pack("<I", n))
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + n)


def test_decoded_size_is_refused_from_the_header_naming_file_size_and_option(tmp_path):
    p = tmp_path / "huge.wav"
    huge_wav(p, 160.0)  # 1.97 GB on disk: 160 s of 16 channels at 384 kHz, 3.66 GiB as float32
    with pytest.raises(AudioError) as exc:
        audio.load(p)
    msg = str(exc.value)
    assert "huge.wav" in msg and "16 channel(s) at 384000 Hz" in msg and "3.66 GiB" in msg
    assert "128 MiB bound" in msg and "--max-decoded-mb 3750" in msg and "max_decoded_bytes=" in msg
    info = audio.open_info(str(p), str(p), max_seconds=None, max_decoded_bytes=None)  # the stream: no whole file
    assert info.channels == 16


def test_decoded_size_bound_is_an_option(tmp_path):
    p = tmp_path / "stereo.wav"
    sf.write(p, np.zeros((16000, 2), np.float32) + 0.1, 16000)  # 128 000 bytes decoded
    with pytest.raises(AudioError, match=r"stereo.wav: 1.0 s of 2 channel\(s\).*125 KiB decoded.*97.7 KiB bound"):
        audio.load(p, max_decoded_bytes=100_000)
    assert audio.load(p, max_decoded_bytes=128_000).shape == (16000,)
    assert audio.load(p, max_decoded_bytes=None).shape == (16000,)
    with pytest.raises(AudioError, match="an array of 32000 samples"):
        audio.check_signal(np.zeros((16000, 2), np.float32), 16000, name="arr", max_decoded_bytes=100_000)
