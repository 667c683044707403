"""Degraded copies of training clips: noise at a signal-to-noise ratio, synthetic room reverberation, a telephone
channel, level and clipping, crops. Signals are mono float32 at ``sr`` Hz; every random choice comes from ``rng``."""

from __future__ import annotations

import os
import zlib

import numpy as np

#: the name of the k-th degraded copy of a training clip (k = 1, 2, ...), beside the speed factors of
#: ``FeatureTable.augmented``
DEGRADED = "degraded"
#: bump when ``degraded_copy`` changes what it makes for the same clip and name (cached features of copies)
AUGMENT_CODE_VERSION = 1


def degraded_names(n: int) -> tuple[str, ...]:
    """The keys of ``n`` degraded copies: ("degraded1", ..., "degradedN")."""
    return tuple(f"{DEGRADED}{k}" for k in range(1, n + 1))


def clip_rng(path: str | os.PathLike, name: str) -> np.random.Generator:
    """The random generator of copy ``name`` of the clip at ``path``: seeded by the file's name and the copy's, so
    a clip gets the same copy wherever the corpus lies and whichever fold it is in."""
    return np.random.default_rng([zlib.crc32(os.path.basename(str(path)).encode()), zlib.crc32(name.encode())])


def rms(y: np.ndarray) -> float:
    """Root mean square of ``y`` (never 0)."""
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) + 1e-12


def add_noise(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus ``noise`` (same length) scaled to ``snr_db`` below y's level."""
    return (y + noise * (rms(y) / rms(noise)) * 10 ** (-snr_db / 20)).astype(np.float32)


def pink_noise(n: int, rng) -> np.ndarray:
    """``n`` samples of 1/f noise, float32."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=float)
    f[0] = 1
    return np.fft.irfft(spec / np.sqrt(f), n).astype(np.float32)


def room_response(rt60: float, rng, sr: int = 16000) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise (-60 dB at ``rt60`` s)."""
    n = int(1.2 * rt60 * sr)
    t = np.arange(n) / sr
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 0.3
    h[0] = 1.0
    return h / np.sqrt(np.sum(h**2))


def reverberate(y: np.ndarray, rt60: float, rng, sr: int = 16000) -> np.ndarray:
    """``y`` in a synthetic room of reverberation time ``rt60`` s, at its own level and length."""
    from scipy.signal import fftconvolve

    out = fftconvolve(y, room_response(rt60, rng, sr))[: len(y)]
    return (out * rms(y) / rms(out)).astype(np.float32)


def telephone(y: np.ndarray, sr: int = 16000) -> np.ndarray:
    """8 kHz, 300-3400 Hz band, G.711 mu-law (8 bits), back at ``sr``."""
    import soxr
    from scipy.signal import butter, sosfilt

    x = soxr.resample(y, sr, 8000)
    x = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), x)
    x = np.clip(x, -1, 1)
    mu = 255.0
    q = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * 255)  # 256 levels
    x = np.sign(c := q / 255 * 2 - 1) * ((1 + mu) ** np.abs(c) - 1) / mu
    return soxr.resample(x.astype(np.float32), 8000, sr).astype(np.float32)


def degraded_copy(y: np.ndarray, rng, sr: int = 16000, span: tuple[int, int] | None = None) -> np.ndarray:
    """One randomly degraded copy of ``y``: white or pink noise at 5-20 dB SNR, reverberation (RT60 0.2-1.1 s),
    a telephone channel, a level of -45..-10 dBFS, +6..+15 dB clipped, or a 1.5-3 s window starting in the speech
    ``span`` (samples; the whole clip when None), within it when the span is long enough."""
    kind = rng.integers(7)
    if kind == 0:
        return add_noise(y, rng.standard_normal(len(y)).astype(np.float32), rng.uniform(5, 20))
    if kind == 1:
        return add_noise(y, pink_noise(len(y), rng), rng.uniform(5, 20))
    if kind == 2:
        return reverberate(y, rng.uniform(0.2, 1.1), rng, sr)
    if kind == 3:
        return telephone(y, sr)
    if kind == 4:
        return (y / rms(y) * 10 ** (rng.uniform(-45, -10) / 20)).astype(np.float32)
    if kind == 5:
        return np.clip(y * 10 ** (rng.uniform(6, 15) / 20), -1, 1).astype(np.float32)
    a, b = span or (0, len(y))
    n = int(rng.uniform(1.5, 3.0) * sr)
    start = a + int(rng.integers(0, max(1, b - a - n)))
    return y[start: start + n]
