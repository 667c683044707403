"""The single place audio enters emovae: files are decoded and arrays are checked here, then made mono float32
at one sample rate. Every rule below holds for the CLI, the Python API, the stream and the service alike.

Rules for a signal (``check_signal``):
- sample rate: a finite number of Hz in [MIN_RATE, MAX_RATE] (1 kHz-384 kHz); not a bool or a string;
- samples: float in [-1, 1]; a float signal beyond full scale (a peak above 1, as in TESS's own float WAVs at 2.27)
  is scaled to peak 1 with an ``AudioWarning``, up to a peak of ``MAX_FLOAT_PEAK`` (1000): beyond that, or with
  NaN or infinite samples, it is refused (integer PCM stored as float). Integer PCM is converted by its full scale
  (int8/int16/int32 divided by 2^(bits-1), uint8/uint16/uint32 centred on their midpoint); 64-bit integers and
  Python lists of integers carry no sample width and are refused with the cast to make. float16 and torch tensors
  (any device, with requires_grad, bfloat16 or float16) are converted; bool, complex, object, string and bytes
  arrays are refused;
- shape: (samples,) mono, or 2-D with channels on the axis of at most MAX_CHANNELS entries that is shorter than
  the other (so (n, 2) and (2, n) are both stereo), averaged to mono;
- values: NaN or infinite samples are refused (never repaired silently);
- duration: at least the model's minimum (0.25 s) and at most MAX_SECONDS (10 minutes; longer recordings go
  through ``emovae stream``, which reads them window by window); a file's length is checked from its header
  before it is decoded;
- size: the decoded samples (float32, every channel) at most ``max_decoded_bytes`` (default
  ``MAX_DECODED_BYTES``, 128 MiB, the one default of the CLI, the API and the service: over 5 minutes of 48 kHz
  stereo, 35 of 16 kHz mono), checked from a file's header before anything is decoded, so that a 2 GB WAV declaring 16 channels at 384 kHz is refused up front, not half-decoded. The
  CLI's ``--max-decoded-mb`` and the API's ``max_decoded_bytes=`` raise it; a stream reads block by block and
  holds no whole file, so only its pushed chunks are bounded.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from .errors import AudioError, AudioWarning

MIN_RATE, MAX_RATE = 1_000, 384_000  # Hz
MAX_SECONDS = 600.0  # longest clip scored in one piece
MAX_CHANNELS = 16
MAX_FLOAT_PEAK = 1e3  # float samples beyond this are not audio scaled to +-1 (integer PCM cast to float, say)
MAX_DECODED_BYTES = 128 * 1024 * 1024  # decoded float32 samples of one clip, all channels: CLI, API and service
MIB = 1024 * 1024


def size_text(n: float) -> str:
    """A byte count for a message: '7.45 GiB', '256 MiB', '12.3 KiB', '80 bytes'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def check_decoded_size(n_values: float, name: str, what: str,
                       max_decoded_bytes: int | None = MAX_DECODED_BYTES) -> None:
    """AudioError naming ``name`` when ``n_values`` samples (all channels; ``what`` says how many seconds of how
    many channels at which rate) would take more than ``max_decoded_bytes`` as float32; None means no bound."""
    if max_decoded_bytes is None or 4 * n_values <= max_decoded_bytes:
        return
    raise AudioError(f"{name}: {what} would take {size_text(4 * n_values)} decoded, over the "
                     f"{size_text(max_decoded_bytes)} bound; convert it to mono at 16-48 kHz or cut it, or raise the "
                     f"bound (emovae predict --max-decoded-mb {math.ceil(4 * n_values / MIB)}; in Python, "
                     "max_decoded_bytes=)")


def check_rate(sr, name: str = "<signal>") -> float:
    """``sr`` as a float of Hz, or AudioError: a finite number in [MIN_RATE, MAX_RATE]."""
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)):
        raise AudioError(f"{name}: sample rate must be a number of Hz (e.g. 16000), not {type(sr).__name__} "
                         f"{sr!r}")
    if not math.isfinite(float(sr)) or not MIN_RATE <= float(sr) <= MAX_RATE:
        raise AudioError(f"{name}: sample rate {sr!r} Hz is outside {MIN_RATE}-{MAX_RATE} Hz; pass the rate the "
                         "audio was recorded at (e.g. 16000, 44100 or 48000)")
    return float(sr)


def as_array(y, name: str = "<signal>") -> np.ndarray:
    """``y`` as a numpy array, or AudioError with the fix: torch tensors (on any device, with requires_grad,
    bfloat16) become numpy; Python lists and tuples of integers, and 64-bit integer arrays, are refused because
    they carry no sample width (a list of int16 values read as int64 would be near-silent)."""
    if type(y).__module__.split(".")[0] == "torch" and hasattr(y, "detach"):  # no torch import: duck typing
        y = y.detach().cpu()
        if str(y.dtype) in ("torch.bfloat16", "torch.float16"):  # bfloat16 has no numpy twin
            y = y.float()
        y = y.numpy()
    if isinstance(y, (bytes, bytearray, memoryview)):
        raise AudioError(f"{name}: got the bytes of a file, not samples; decode them with "
                         "emovae.audio.load_bytes(data) or pass the file's path")
    from_list = isinstance(y, (list, tuple))
    try:
        y = np.asarray(y)
    except Exception:  # ragged lists, arrays on a GPU (CuPy refuses implicit copies) and the like
        raise AudioError(f"{name}: a {type(y).__name__} is not an array of audio samples; pass a numpy array of "
                         "one clip (a GPU array copied to the host first, e.g. x.get() or x.cpu().numpy())") from None
    if y.dtype.kind in "iu" and y.dtype.itemsize > 4:  # Python ints become int64; lists of np.int16 keep int16
        given = "a Python list or tuple of integers" if from_list else f"{y.dtype} samples"
        raise AudioError(f"{name}: the sample width of {given} is unknown (int16 values would be read as 64-bit, "
                         "near silence); cast them to the PCM type they were recorded in, e.g. "
                         "np.asarray(samples, dtype=np.int16) for 16-bit audio, or pass floats scaled to +-1")
    return y


def as_float_samples(y, name: str = "<signal>", max_decoded_bytes: int | None = MAX_DECODED_BYTES,
                     rescale: bool = True) -> np.ndarray:
    """Samples as float32 scaled to +-1 (integer PCM divided by its full scale; floats beyond +-1 scaled to peak 1
    with an AudioWarning), or AudioError for what is not audio (bool, complex, object, strings; floats beyond
    ``MAX_FLOAT_PEAK``; NaN or infinity; more than ``max_decoded_bytes`` of float32 samples). ``rescale=False``
    passes floats beyond +-1 (up to ``MAX_FLOAT_PEAK``) unchanged: for a stream's chunks, where one chunk's peak
    says nothing of the whole and a gain changing from chunk to chunk would be worse than the overs."""
    y = as_array(y, name)
    check_decoded_size(y.size, name, f"an array of {y.size} samples", max_decoded_bytes)
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
    if peak > 1.0 and rescale:
        warnings.warn(f"{name}: float samples reach {peak:.3g}, beyond full scale (+-1); scaled to peak 1",
                      AudioWarning, stacklevel=2)
        y = (y / np.float32(peak)).astype(np.float32, copy=False)
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


def check_signal(y, sr, min_duration: float = 0.0, name: str = "<signal>",
                 max_decoded_bytes: int | None = MAX_DECODED_BYTES) -> tuple[np.ndarray, float]:
    """(mono float32 samples, rate in Hz) of a signal given as an array, after every rule in the module
    docstring; AudioError naming ``name`` and the fix otherwise."""
    sr = check_rate(sr, name)
    y = to_mono(as_float_samples(y, name, max_decoded_bytes), name)
    check_length(len(y), sr, min_duration, name)
    return y, sr


def resample(y: np.ndarray, sr_in: float, sr: int) -> np.ndarray:
    """``y`` (mono float32) resampled from ``sr_in`` to ``sr`` Hz with soxr (librosa's default), float32."""
    if sr_in == sr:
        return y
    import soxr

    return soxr.resample(y, sr_in, sr, quality="HQ").astype(np.float32, copy=False)


def prepare(y, sr_in, sr: int, min_duration: float, name: str = "<signal>",
            max_decoded_bytes: int | None = MAX_DECODED_BYTES) -> np.ndarray:
    """A signal given as an array checked (``check_signal``) and made mono float32 at ``sr`` Hz: the array
    path's twin of ``load``."""
    y, sr_in = check_signal(y, sr_in, min_duration, name, max_decoded_bytes)
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


def load(path: str | os.PathLike, sr: int = 16000, *, min_duration: float = 0.0,
         max_decoded_bytes: int | None = MAX_DECODED_BYTES) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sr`` Hz, shape (samples,).

    Raises AudioError naming the file when it is missing, not audio, empty, shorter than ``min_duration``
    seconds, or when its header declares more than ``max_decoded_bytes`` of float32 samples (checked before
    decoding; None: no bound).
    """
    p = check_path(path)
    return _decode(str(p), str(p), sr, min_duration, max_decoded_bytes)


def load_bytes(data: bytes, sr: int = 16000, *, name: str = "<upload>", min_duration: float = 0.0,
               max_decoded_bytes: int | None = MAX_DECODED_BYTES) -> np.ndarray:
    """Like load(), for an encoded file held in memory (an HTTP upload, say)."""
    if not data:
        raise AudioError(f"{name}: no data (empty upload)")
    return _decode(io.BytesIO(data), name, sr, min_duration, max_decoded_bytes)


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


def open_info(source, name: str, max_seconds: float | None = MAX_SECONDS,
              max_decoded_bytes: int | None = MAX_DECODED_BYTES):
    """soundfile's header info of a file path or file object, or AudioError naming ``name``: a readable header,
    a sample rate and channel count in range, (unless ``max_seconds`` is None) a length within it and (unless
    ``max_decoded_bytes`` is None) decoded float32 samples, all channels, within that many bytes."""
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
    check_decoded_size(info.frames * info.channels, name, f"{info.frames / info.samplerate:.1f} s of "
                       f"{info.channels} channel(s) at {info.samplerate} Hz", max_decoded_bytes)
    return info


def _decode(source, name: str, sr: int, min_duration: float, max_decoded_bytes: int | None) -> np.ndarray:
    """Decode a file path or file object after its header passed ``open_info``: mono float32 at ``sr``."""
    import soundfile as sf

    info = open_info(source, name, max_decoded_bytes=max_decoded_bytes)
    try:
        y, sr_in = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{name}: the audio data is damaged or truncated ({_reason(exc)}); re-export the "
                         "file") from None
    y = to_mono(as_float_samples(y, name, None), name)  # the header's size was checked
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
