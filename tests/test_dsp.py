"""The DSP building blocks: framing, the window, the power STFT, the mel scale and filterbank, the DCT."""

import numpy as np
import pytest

from emovae import dsp

from .conftest import SR, voice_like

N_FFT, WIN, HOP = 512, 400, 160


def test_frames_are_centred_every_hop_with_zero_padding():
    y = np.arange(1, 1001, dtype=np.float64)
    frames = dsp.frame_signal(y, 64, 10)
    assert frames.shape == (1 + 1000 // 10, 64)
    np.testing.assert_array_equal(frames[:, 32], np.r_[y[::10], 0.0])  # frame t is centred on sample t * hop
    assert np.all(frames[0, :32] == 0) and frames[0, 32] == 1  # zeros before the signal
    assert np.all(frames[-1, 32:] == 0)  # and after it


def test_hann_window_is_periodic_and_centred_in_the_fft_frame():
    w = dsp.hann_window(WIN, N_FFT)
    assert w.shape == (N_FFT,)
    left = (N_FFT - WIN) // 2
    assert np.all(w[:left] == 0) and np.all(w[left + WIN:] == 0)
    core = w[left:left + WIN]
    assert core[0] == 0 and core[WIN // 2] == pytest.approx(1.0)
    np.testing.assert_allclose(core[1:], core[1:][::-1], atol=1e-12)  # periodic: symmetric without its first sample
    assert core.sum() == pytest.approx(WIN / 2)


@pytest.mark.parametrize("n_frames", [26, dsp.FFT_BLOCK, dsp.FFT_BLOCK + 1, 2 * dsp.FFT_BLOCK, 231])
def test_blocked_stft_power_equals_its_definition(n_frames):
    y = voice_like(150, 2.5, seed=7)[: (n_frames - 1) * HOP]  # 1 + len // hop frames
    frames = dsp.frame_signal(y, N_FFT, HOP)
    assert frames.shape[0] == n_frames
    direct = np.abs(np.fft.rfft(frames * dsp.hann_window(WIN, N_FFT), axis=1)) ** 2
    power = dsp.stft_power(y, N_FFT, WIN, HOP)
    assert power.shape == (n_frames, N_FFT // 2 + 1)
    np.testing.assert_allclose(power, direct, rtol=1e-9, atol=1e-12)


def test_a_tone_lands_in_its_bin():
    f = 1000.0
    y = np.sin(2 * np.pi * f * np.arange(SR) / SR)
    power = dsp.stft_power(y, N_FFT, WIN, HOP)
    assert np.all(np.argmax(power[5:-5], axis=1) == round(f * N_FFT / SR))


def test_mel_scale_is_slaneys():
    assert dsp.hz_to_mel(1000.0) == pytest.approx(15.0)  # linear below 1 kHz: 200/3 Hz per mel
    assert dsp.hz_to_mel(200.0) == pytest.approx(3.0)
    assert dsp.hz_to_mel(6400.0) == pytest.approx(15.0 + 27.0)  # log above: 27 mels per factor 6.4
    f = np.linspace(0, 8000, 101)
    np.testing.assert_allclose(dsp.mel_to_hz(dsp.hz_to_mel(f)), f, atol=1e-9)
    assert np.all(np.diff(dsp.hz_to_mel(f)) > 0)


def test_mel_filterbank_triangles_rise_with_frequency():
    fb = dsp.mel_filterbank(SR, N_FFT, 40)
    assert fb.shape == (40, N_FFT // 2 + 1) and np.all(fb >= 0)
    peaks = np.argmax(fb, axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > peaks[0]
    edges = dsp.mel_to_hz(np.linspace(dsp.hz_to_mel(0.0), dsp.hz_to_mel(SR / 2), 42))
    freqs = np.fft.rfftfreq(N_FFT, 1 / SR)
    for k in (0, 20, 39):  # zero outside its two neighbours' centres
        outside = (freqs <= edges[k]) | (freqs >= edges[k + 2])
        assert np.all(fb[k, outside] == 0)


def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    np.testing.assert_allclose(dsp.mel_filterbank(SR, N_FFT, 64), librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64),
                               atol=1e-6)
    np.testing.assert_allclose(dsp.mel_filterbank(SR, 400, 40), librosa.filters.mel(sr=SR, n_fft=400, n_mels=40),
                               atol=1e-6)


def test_dct_matrix_is_the_orthonormal_dct_ii():
    m = dsp.dct_matrix(12, 12)
    np.testing.assert_allclose(m.T @ m, np.eye(12), atol=1e-12)
    x = np.random.default_rng(0).standard_normal((3, 12))
    scipy_fft = pytest.importorskip("scipy.fft")
    np.testing.assert_allclose(x @ m, scipy_fft.dct(x, type=2, norm="ortho", axis=1), atol=1e-12)
    np.testing.assert_allclose(x @ dsp.dct_matrix(12, 5), (x @ m)[:, :5], atol=1e-12)  # the first coefficients


@pytest.mark.parametrize("n", [4000, 16000, 16161, 40000])
def test_a_span_spectrogram_is_the_spans_own_stft_from_the_clips_frames(n):
    y = (voice_like(150, 3.0, seed=2)[:n] + 0.01).astype(np.float32)  # no sample is zero
    n_frames = 1 + n // HOP
    spans = [(0, n), (3 * HOP, n), (5 * HOP, 70 * HOP), ((n_frames - 2) * HOP, n), (0, 7 * HOP), (4 * HOP, 4 * HOP),
             (10 * HOP, 10 * HOP + 1), (dsp.FFT_BLOCK * HOP - HOP, min(n, 2 * dsp.FFT_BLOCK * HOP + 33))]
    for start, stop in [(a, b) for a, b in spans if a <= b <= n]:
        power, span_power = dsp.stft_power(y, N_FFT, WIN, HOP, span=(start, stop), span_fft=WIN)
        np.testing.assert_allclose(power, dsp.stft_power(y, N_FFT, WIN, HOP), rtol=1e-12, atol=1e-12)
        own = dsp.stft_power(y[start:stop], WIN, WIN, HOP)
        assert span_power.shape == own.shape
        np.testing.assert_allclose(span_power, own, rtol=1e-9, atol=1e-9)


def test_a_span_framed_otherwise_is_refused():
    y = np.ones(4000, np.float32)
    with pytest.raises(ValueError, match="not framed as the clip"):
        dsp.stft_power(y, N_FFT, WIN, HOP, span=(HOP + 1, 2000), span_fft=WIN)  # not on the frame grid
    with pytest.raises(ValueError, match="not framed as the clip"):
        dsp.stft_power(y, N_FFT, WIN - 1, HOP, span=(HOP, 2000), span_fft=WIN - 1)  # an odd window placed otherwise
