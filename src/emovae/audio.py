"""The single place audio is decoded: any readable file -> mono float32 at one sample rate."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from .errors import AudioError


def to_mono_rate(y: np.ndarray, sr_in: int, sr: int, name: str) -> np.ndarray:
    """Downmix (frames, channels) or (frames,) to mono and resample to ``sr`` with soxr (librosa's default)."""
    if y.ndim == 2:
        y = y.mean(axis=1)
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        raise AudioError(f"{name}: the audio is empty (0 samples)")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{name}: the audio holds NaN or infinite samples")
    if sr_in != sr:
        import soxr

        y = soxr.resample(y, sr_in, sr, quality="HQ").astype(np.float32, copy=False)
    return y


def prepare(y, sr_in: int, sr: int, min_duration: float, name: str = "<signal>") -> np.ndarray:
    """A signal given as an array (mono (samples,) or (samples, channels)) made mono float32 at ``sr`` Hz and
    checked to last at least ``min_duration`` seconds: the array path's twin of ``load``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2):
        raise AudioError(f"{name}: expected audio of shape (samples,) or (samples, channels), got {y.shape}")
    return check_duration(to_mono_rate(y, sr_in, sr, name), sr, min_duration, name)


def speed_perturb(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """``y`` played ``factor`` times faster (tempo and pitch both scale by ``factor``; Kaldi-style speed
    perturbation for training augmentation), still at ``sr`` Hz, float32."""
    import soxr

    if factor <= 0:
        raise ValueError(f"speed factor must be positive, not {factor}")
    if factor == 1:
        return np.asarray(y, dtype=np.float32)
    return soxr.resample(np.asarray(y, dtype=np.float32), sr * factor, sr, quality="HQ").astype(np.float32, copy=False)


def load(path: str | os.PathLike, sr: int = 16000, *, min_duration: float = 0.0) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sr`` Hz, shape (samples,).

    Raises AudioError naming the file when it is missing, not audio, empty or shorter than
    ``min_duration`` seconds.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file")
    try:
        y, sr_in = sf.read(str(p), dtype="float32", always_2d=False)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"{p}: not a readable audio file ({_reason(exc)}); use WAV, FLAC or OGG") from None
    return check_duration(to_mono_rate(y, sr_in, sr, str(p)), sr, min_duration, str(p))


def load_bytes(data: bytes, sr: int = 16000, *, name: str = "<upload>", min_duration: float = 0.0) -> np.ndarray:
    """Like load(), for an encoded file held in memory (an HTTP upload, say)."""
    import soundfile as sf

    if not data:
        raise AudioError(f"{name}: no data (empty upload)")
    try:
        y, sr_in = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as exc:
        raise AudioError(f"{name}: not a readable audio file ({_reason(exc)}); use WAV, FLAC or OGG") from None
    return check_duration(to_mono_rate(y, sr_in, sr, name), sr, min_duration, name)


def check_duration(y: np.ndarray, sr: int, min_duration: float, name: str = "<signal>") -> np.ndarray:
    """Return ``y`` or raise AudioError when it is shorter than ``min_duration`` seconds."""
    if y.size < max(1, int(round(min_duration * sr))):
        raise AudioError(
            f"{name}: clip too short ({y.size / sr:.3f} s); emovae needs at least {min_duration:.2f} s of audio"
        )
    return y


def is_silent(y: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the signal's peak is below ``threshold_db`` dBFS (digital silence or near it)."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return peak <= 10 ** (threshold_db / 20)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    # libsndfile says "Error opening <_io.BytesIO object at 0x...>: Format not recognised."; keep the reason
    return re.sub(r"^Error opening .*?: ", "", text[-1]) if text else type(exc).__name__
