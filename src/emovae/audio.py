"""The single place audio enters emovae: files are decoded and arrays are checked here, then made mono float32
at one sample rate. Every rule below holds for the CLI, the Python API, the stream and the service alike.

Rules for a signal (``check_signal``):
- sample rate: a finite number of Hz in [MIN_RATE, MAX_RATE] (1 kHz-384 kHz); not a bool or a string;
- samples: float in [-1, 1] (a peak up to ``MAX_FLOAT_PEAK`` is taken as clipped audio; beyond it the array is
  refused as unscaled); integer PCM is converted by its full scale (int8/int16/int32/int64 divided by 2^(bits-1),
  uint8 centred on 128); bool, complex, object and string arrays are refused;
- shape: (samples,) mono, or 2-D with channels on the axis of at most MAX_CHANNELS entries that is shorter than
  the other (so (n, 2) and (2, n) are both stereo), averaged to mono;
- values: NaN or infinite samples are refused (never repaired silently);
- duration: at least the model's minimum (0.25 s) and at most MAX_SECONDS (10 minutes; longer recordings go
  through ``emovae stream``, which reads them window by window); a file's length is checked from its header
  before it is decoded.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

import numpy as np

from .errors import AudioError

MIN_RATE, MAX_RATE = 1_000, 384_000  # Hz
MAX_SECONDS = 600.0  # longest clip scored in one piece
MAX_CHANNELS = 16
MAX_FLOAT_PEAK = 2.0  # float samples beyond this are not audio scaled to +-1 (integer PCM cast to float, say)


def check_rate(sr, name: str = "<signal>") -> float:
    """``sr`` as a float of Hz, or AudioError: a finite number in [MIN_RATE, MAX_RATE]."""
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)):
        raise AudioError(f"{name}: sample rate must be a number of Hz (e.g. 16000), not {type(sr).__name__} "
                         f"{sr!r}")
    if not math.isfinite(float(sr)) or not MIN_RATE <= float(sr) <= MAX_RATE:
        raise AudioError(f"{name}: sample rate {sr!r} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; pass the rate the "
                         "audio was recorded at (e.g. 16000, 44100 or 48000)")
    return float(sr)


def as_float_samples(y, name: str = "<signal>") -> np.ndarray:
    """Samples as float32 scaled to +-1 (integer PCM divided by its full scale), or AudioError for arrays that
    are not audio (bool, complex, object, strings; floats far beyond +-1)."""
    try:
        y = np.asarray(y)
    except Exception:  # ragged lists and the like
        raise AudioError(f"{name}: not an array of audio samples") from None
    kind = y.dtype.kind
    if kind in "iu":
        bits = 8 * y.dtype.itemsize
        if kind == "u":
            return ((y.astype(np.float64) - 2 ** (bits - 1)) / 2 ** (bits - 1)).astype(np.float32)
        return (y.astype(np.float64) / 2 ** (bits - 1)).astype(np.float32)
    if kind != "f":
        raise AudioError(f"{name}: audio samples must be float (scaled to +-1) or integer PCM, not {y.dtype} "
                         "values")
    y = y.astype(np.float32, copy=False)
    if y.size and not np.all(np.isfinite(y)):
        raise AudioError(f"{name}: the audio holds NaN or infinite samples; clean or cut them before scoring")
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise AudioError(f"{name}: float samples reach {peak:.3g}, far beyond +-1; scale the audio to +-1 (integer "
                         "PCM stored as float: divide by 32768 for 16-bit) or pass the integer array itself")
    return y


def to_mono(y: np.ndarray, name: str = "<signal>") -> np.ndarray:
    """(samples,) from (samples,), (samples, channels) or (channels, samples); AudioError for other shapes."""
    if y.ndim == 1:
        return y
    if y.ndim == 2:
        a, b = y.shape
        if a * b == 0:
            raise AudioError(f"{name}: the audio is empty (0 samples)")
        if b <= MAX_CHANNELS and b <= a:
            return y.mean(axis=1, dtype=np.float64).astype(np.float32) if b > 1 else y[:, 0]
        if a <= MAX_CHANNELS and a < b:
            return y.mean(axis=0, dtype=np.float64).astype(np.float32) if a > 1 else y[0]
    raise AudioError(f"{name}: expected audio of shape (samples,) or (samples, channels) with at most "
                     f"{MAX_CHANNELS} channels, got {y.shape}")


def check_length(n_samples: int, sr: float, min_duration: float, name: str = "<signal>",
                 max_duration: float = MAX_SECONDS) -> None:
    """AudioError unless ``n_samples`` at ``sr`` Hz last between ``min_duration`` and ``max_duration`` seconds."""
    seconds = n_samples / sr
    if n_samples == 0:
        raise AudioError(f"{name}: the audio is empty (0 samples)")
    if n_samples < max(1, int(round(min_duration * sr))):
        raise AudioError(f"{name}: clip too short ({seconds:.3f} s); emovae needs at least {min_duration:.2f} s "
                         "of audio")
    if seconds > max_duration:
        raise AudioError(f"{name}: clip too long ({seconds:.0f} s; at most {max_duration:.0f} s in one piece); "
                         "cut it, or run 'emovae stream' on it for results window by window")


def check_signal(y, sr, min_duration: float = 0.0, name: str = "<signal>") -> tuple[np.ndarray, float]:
    """(mono float32 samples, rate in Hz) of a signal given as an array, after every rule in the module
    docstring; AudioError naming ``name`` and the fix otherwise."""
    sr = check_rate(sr, name)
    y = to_mono(as_float_samples(y, name), name)
    check_length(len(y), sr, min_duration, name)
    return y, sr


def resample(y: np.ndarray, sr_in: float, sr: int) -> np.ndarray:
    """``y`` (mono float32) resampled from ``sr_in`` to ``sr`` Hz with soxr (librosa's default), float32."""
    if sr_in == sr:
        return y
    import soxr

    return soxr.resample(y, sr_in, sr, quality="HQ").astype(np.float32, copy=False)


def prepare(y, sr_in, sr: int, min_duration: float, name: str = "<signal>") -> np.ndarray:
    """A signal given as an array checked (``check_signal``) and made mono float32 at ``sr`` Hz: the array
    path's twin of ``load``."""
    y, sr_in = check_signal(y, sr_in, min_duration, name)
    return resample(y, sr_in, sr)


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
    p = check_path(path)
    return _decode(str(p), str(p), sr, min_duration)


def load_bytes(data: bytes, sr: int = 16000, *, name: str = "<upload>", min_duration: float = 0.0) -> np.ndarray:
    """Like load(), for an encoded file held in memory (an HTTP upload, say)."""
    if not data:
        raise AudioError(f"{name}: no data (empty upload)")
    return _decode(io.BytesIO(data), name, sr, min_duration)


def check_path(path, what: str = "an audio file") -> Path:
    """``path`` as a Path of an existing regular file, or AudioError saying what is wrong with it."""
    if not isinstance(path, (str, os.PathLike)):
        raise AudioError(f"{path!r}: a file path must be a string or a path, not {type(path).__name__}")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioError(f"{p}: file not found" + (" (a broken symbolic link)" if p.is_symlink() else "")) from None
    except OSError as exc:  # a symbolic-link loop, a name too long, no permission to look
        raise AudioError(f"{p}: cannot be opened ({exc.strerror or type(exc).__name__})") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{p}: is a folder, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(f"{p}: not a regular file (a device, pipe or socket); pass {what}")
    return p


def open_info(source, name: str, max_seconds: float | None = MAX_SECONDS):
    """soundfile's header info of a file path or file object, or AudioError naming ``name``: a readable header,
    a sample rate and channel count in range and (unless ``max_seconds`` is None) a length within it."""
    import soundfile as sf

    try:
        info = sf.info(source)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"{name}: not a readable audio file ({_reason(exc)}); use WAV, FLAC or OGG") from None
    if hasattr(source, "seek"):
        source.seek(0)
    check_rate(info.samplerate, f"{name} (its header)")
    if info.channels < 1 or info.channels > MAX_CHANNELS:
        raise AudioError(f"{name}: {info.channels} channels in its header; at most {MAX_CHANNELS} are read")
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:  # before decoding anything
        check_length(info.frames, info.samplerate, 0.0, name, max_seconds)
    return info


def _decode(source, name: str, sr: int, min_duration: float) -> np.ndarray:
    """Decode a file path or file object after its header passed ``open_info``: mono float32 at ``sr``."""
    import soundfile as sf

    info = open_info(source, name)
    try:
        y, sr_in = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{name}: the audio data is damaged or truncated ({_reason(exc)}); re-export the "
                         "file") from None
    y = to_mono(as_float_samples(y, name), name)
    check_length(len(y), sr_in, min_duration, name)
    del info
    return resample(y, sr_in, sr)


def is_silent(y: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the signal's peak is below ``threshold_db`` dBFS (digital silence or near it)."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return peak <= 10 ** (threshold_db / 20)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    # libsndfile says "Error opening <_io.BytesIO object at 0x...>: Format not recognised."; keep the reason
    reason = re.sub(r"^Error opening .*?: ", "", text[-1]) if text else type(exc).__name__
    return {"psf_fseek() failed.": "the file ends before its header says it does"}.get(reason.strip(), reason)
