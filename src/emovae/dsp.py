"""Signal processing building blocks shared by the features and the voice student's input: framing, the Hann
window, the power STFT, the mel scale and filterbank, the DCT. Pure numpy functions, librosa's conventions.

Shapes: a signal is (samples,); frames are (frames, frame_length); spectra are (frames, n_fft // 2 + 1).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

EPS = 1e-10  # floor under energies before a log or a division
#: Frames per FFT block in ``stft_power`` (and the features' YIN): keeps each temporary under about 0.4 MB, so
#: the allocator reuses memory instead of mapping fresh pages per clip (about 2 ms per 3.75 s clip on a 2-core VM,
#: benchmarks/results-latency.md). Results do not depend on it.
FFT_BLOCK = 64


# ---------------------------------------------------------------------------------------------- framing
def pad_for_frames(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int | None = None) -> np.ndarray:
    """``y`` as float64 with frame_length // 2 zeros before it and enough after it for ``frame_signal`` (or for
    ``n_frames`` frames)."""
    pad = frame_length // 2
    n_frames = 1 + len(y) // hop_length if n_frames is None else n_frames
    tail = max(pad, (n_frames - 1) * hop_length + frame_length - len(y) - pad)
    return np.pad(y.astype(np.float64, copy=False), (pad, tail))


def frames_of(yp: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """The frames view (n_frames, frame_length) of a signal padded by ``pad_for_frames`` (no copy)."""
    view = np.lib.stride_tricks.sliding_window_view(yp, frame_length)
    return view[: (n_frames - 1) * hop_length + 1 : hop_length]


def frame_signal(y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Centre-padded (zeros) frames of ``y``: (1 + len(y) // hop_length, frame_length); frame t is centred on
    sample t * hop_length, as librosa does with center=True."""
    return frames_of(pad_for_frames(y, frame_length, hop_length), frame_length, hop_length,
                     1 + len(y) // hop_length)


@lru_cache(maxsize=8)
def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of win_length, zero-padded to n_fft in the centre (librosa's convention), (n_fft,)."""
    n = np.arange(win_length)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left))


def window_offset(n_fft: int, win_length: int) -> int:
    """Samples from the start of a window's nonzero part to the centre of its ``n_fft`` frame: frame t's windowed
    samples are y[t * hop - offset : t * hop - offset + win_length]."""
    return n_fft // 2 - (n_fft - win_length) // 2


def stft_power(y: np.ndarray, n_fft: int, win_length: int, hop_length: int,
               span: tuple[int, int] | None = None, span_fft: int | None = None):
    """Power spectrogram |STFT|^2 of ``y``, (1 + len(y) // hop_length, n_fft // 2 + 1) float64, Hann window of
    ``win_length`` samples, frames centred every ``hop_length`` samples; FFT_BLOCK frames at a time. Only the
    window's nonzero part (win_length samples) of each frame is cut and windowed; its FFT zero-padded to n_fft has
    the power of the centred frame (a shift changes phases only).

    With ``span`` = (start, stop), sample bounds with start a multiple of hop_length, and ``span_fft``: returns
    (power, span_power), where span_power ((stop - start) // hop_length + 1, span_fft // 2 + 1) is
    ``stft_power(y[start:stop], span_fft, win_length, hop_length)`` taken from the same windowed frames: its frame
    k is the clip's frame start // hop_length + k with the samples outside the span zeroed (the zero padding of
    the span's own STFT). One framing and one window multiply feed both FFT lengths; span_fft must place the
    window as n_fft does (``window_offset`` equal), ValueError otherwise."""
    off = window_offset(n_fft, win_length)
    frames = frame_signal(y, n_fft, hop_length)[:, n_fft // 2 - off: n_fft // 2 - off + win_length]
    window = hann_window(win_length, win_length)
    out = np.empty((frames.shape[0], n_fft // 2 + 1))
    if span is not None:
        start, stop = int(span[0]), int(span[1])
        if span_fft is None or window_offset(span_fft, win_length) != off or start % hop_length \
                or not 0 <= start <= stop <= len(y):
            raise ValueError(f"span {span} with span_fft {span_fft}: not framed as the clip (n_fft {n_fft}, window "
                             f"{win_length}, hop {hop_length}, {len(y)} samples)")
        first = start // hop_length
        last = first + (stop - start) // hop_length  # the span's frames are the clip's first..last
        span_out = np.empty((last - first + 1, span_fft // 2 + 1))
    for s in range(0, frames.shape[0], FFT_BLOCK):
        windowed = frames[s : s + FFT_BLOCK] * window
        _power_into(np.fft.rfft(windowed, n=n_fft, axis=1), out[s : s + FFT_BLOCK])
        if span is None or s > last or s + len(windowed) <= first:
            continue
        a, b = max(s, first), min(s + len(windowed), last + 1)
        rows = windowed[a - s : b - s]
        first_sample = np.arange(a, b) * hop_length - off  # of each row's window
        edge = np.flatnonzero((first_sample < start) | (first_sample + win_length > stop))
        if edge.size:  # the few rows that reach over the span's ends
            rows = rows.copy()
            at = first_sample[edge, None] + np.arange(win_length)
            rows[edge] = np.where((at < start) | (at >= stop), 0.0, rows[edge])
        _power_into(np.fft.rfft(rows, n=span_fft, axis=1), span_out[a - first : b - first])
    return out if span is None else (out, span_out)


def _power_into(spec: np.ndarray, block: np.ndarray) -> None:
    """|spec|^2 written into ``block`` (same shape, float64) without a complex temporary."""
    np.multiply(spec.real, spec.real, out=block)
    block += spec.imag * spec.imag


# ------------------------------------------------------------------------------------------ mel and DCT
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, np.log(6.4) / 27.0  # Slaney's mel scale


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, log above), as librosa's default."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= _MIN_LOG_HZ,
                    _MIN_LOG_HZ / _F_SP + np.log(np.maximum(f, EPS) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    """The inverse of ``hz_to_mel``."""
    m = np.asarray(m, dtype=np.float64)
    min_log_mel = _MIN_LOG_HZ / _F_SP
    return np.where(m >= min_log_mel, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - min_log_mel)), _F_SP * m)


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape (n_mels, n_fft // 2 + 1) (matches librosa.filters.mel)."""
    fmax = sr / 2 if fmax is None else fmax
    fftfreqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


@lru_cache(maxsize=8)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II matrix, shape (n_in, n_out) (scipy.fft.dct(type=2, norm='ortho'))."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[:, 0] /= np.sqrt(2.0)
    return m
