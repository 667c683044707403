"""Voice statistics: how a speaker encoder's middle layer sees a clip, and a small student that learns it.

The first two LSTM layers of Resemblyzer's GE2E speaker encoder (Wan et al. 2018; weights Apache-2.0, see
``train/teacher/NOTICE.md``) run over 40 mel bands of the clip's speech span; the mean and std over frames of the second
layer's output (512 values) carry emotion across speakers: a linear head on them alone reaches 0.69 balanced
accuracy on unseen speakers (docs/research.md, sections 24-25). The two layers are too big and slow to
ship (830 k parameters, 5 ms per clip), so they serve as a teacher: ``emovae.train.student`` fits a one-layer
LSTM of 128 units to reproduce them frame by frame, which keeps most of that (0.66). This module is the runtime
half: the student's input (``encoder_mel``; ``features.extract`` computes it from the clip's own STFT frames) and
its ONNX graph run over clips (``with_voice``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from . import dsp
from .errors import EmovaeError
from .modelfile import onnx_session

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms Hann window, 10 ms step: the encoder's own input
HOP = 160
N_MELS = 40
TARGET_DBFS = -30.0  # clips quieter than this are levelled up to it (never down), as the encoder was trained
HIDDEN = 256
VOICE_DIM = 2 * HIDDEN  # voice statistics per clip: mean and std of 256 units


@lru_cache(maxsize=1)
def voice_names() -> tuple[str, ...]:
    """Names of the voice statistics: the second layer's mean per unit, then its std per unit."""
    return tuple(f"voice_{fn}_{i}" for fn in ("mean", "std") for i in range(HIDDEN))


def level_gain(y: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.float32:
    """The factor ``level`` multiplies ``y`` by (float32): what brings its mean power up to ``target_dbfs``, 1 when
    it is already louder or silent."""
    power = float(np.mean(np.square(y, dtype=np.float64))) if y.size else 0.0
    if power <= 0:
        return np.float32(1.0)
    gain_db = target_dbfs - 10 * np.log10(power)
    return np.float32(10 ** (gain_db / 20)) if gain_db > 0 else np.float32(1.0)


def level(y: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """``y`` scaled up so that its mean power is ``target_dbfs`` (unchanged when already louder or silent)."""
    gain = level_gain(y, target_dbfs)
    return y * gain if gain != 1 else y


def shares_framing(n_fft: int, win_length: int, hop_length: int) -> bool:
    """True when a clip's STFT with this framing (``dsp.stft_power``) cuts the encoder's frames: the same 400-sample
    window every 160 samples, placed alike; then ``features.extract`` takes the encoder's input from the clip's
    windowed frames (``dsp.stft_power(..., span=, span_fft=N_FFT)``) instead of framing the speech again."""
    return (win_length, hop_length) == (N_FFT, HOP) and dsp.window_offset(n_fft, win_length) == N_FFT // 2


def mel_of_power(power: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The encoder's input, mel band power (frames, 40) float32, from the 400-point power spectrogram (frames, 201)
    of the speech before levelling and the gain ``level`` applies (``level_gain``): levelling is a gain, so it
    scales the power by gain^2."""
    mel = power @ dsp.mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).T
    if gain != 1:
        mel *= float(gain) ** 2
    return mel.astype(np.float32)


def encoder_mel(y: np.ndarray) -> np.ndarray:
    """The encoder's input: mel band power (frames, 40) float32 of a 16 kHz signal, frames centred every 10 ms
    (librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)). The definition;
    ``features.extract`` gets the same bands of ``level(speech)`` from the clip's own frames."""
    return mel_of_power(dsp.stft_power(np.asarray(y, dtype=np.float32), N_FFT, N_FFT, HOP))


@lru_cache(maxsize=4)
def _file_session(path: str, stamp: tuple[int, int]):
    """One session per voice graph file (and version of it: ``stamp`` is its size and mtime) and process."""
    return onnx_session(path)


def voice_session(model_bytes_or_path):
    """An onnxruntime session of a voice graph (``build_voice_onnx``), from a file or serialised bytes."""
    if isinstance(model_bytes_or_path, (str, Path)):
        p = Path(model_bytes_or_path)
        if not p.is_file():
            raise EmovaeError(f"voice graph {p} is missing: reinstall emovae, or retrain the model")
        st = p.stat()
        return _file_session(str(p), (st.st_size, st.st_mtime_ns))
    return onnx_session(model_bytes_or_path)


def with_voice(X: list, session) -> list:
    """Features X with the voice statistics of each clip's mel (``Features.mel``) appended to its utterance
    statistics (names from ``voice_names``); None entries stay None."""
    from dataclasses import replace

    out = []
    for f in X:
        if f is None:
            out.append(None)
            continue
        if f.mel is None:
            raise EmovaeError("this model needs the voice student's mel bands: extract features with the model's "
                              "feature config (FeatureConfig.voice)")
        v = session.run(None, {"mel": f.mel.astype(np.float32)[None]})[0][0]
        out.append(replace(f, stats=np.concatenate([f.stats, v.astype(np.float32)]),
                           stat_names=tuple(f.stat_names) + voice_names(), mel=None))
    return out
