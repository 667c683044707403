"""The speech guard behind ``in_domain``: is this clip speech, whatever its speaker, length and channel?

Twelve clip-level cues read off the frame features emovae computes anyway (pitch, voicing, energy, centroid,
harmonics-to-noise ratio): how much of the active signal is voiced, how pitch moves, how voicing comes in
syllable-sized runs, how energy is modulated at syllable rate. A small network's score over them, fitted at training
time on the training speech and its degraded copies against synthetic non-speech (``emovae.train.guard``),
with its threshold stored in model.json. The VAE's novelty stays beside it as a continuous score of how unlike
the *training* speech a clip is; it is not the flag (it flagged 78 % of the SAVEE corpus and 11 % of
LibriSpeech, docs/research.md).
"""

from __future__ import annotations

import numpy as np

from .errors import ModelFormatError

#: The cues, in the order of the stored coefficients.
CUE_NAMES: tuple[str, ...] = (
    "voiced_share",         # voiced frames / active frames
    "f0_spread",            # log1p of the std of F0 over voiced frames, semitones
    "voiced_runs_per_s",    # log1p of voiced runs per second of signal
    "voiced_run_median",    # log1p of 10x the median voiced run, s
    "longest_run_share",    # longest voiced run / active frames
    "energy_spread",        # log1p of the std of frame energy over active frames, dB
    "syllable_modulation",  # energy envelope power at 2-8 Hz / power above 0.5 Hz
    "f0_step",              # log1p of 5x the median (over runs) of the mean F0 step in a run, semitones/frame
    "hnr_median",           # median harmonics-to-noise ratio of voiced frames, dB, clipped to 0..40
    "stable_pitch_share",   # share of voiced frame pairs whose F0 moves < 0.1 semitone
    "centroid_spread",      # log1p of 5x the std of log(centroid + 50 Hz) over active frames
    "onset_share",          # share of active frames whose energy rises > 3 dB in one frame
)
#: Frame features the cues read.
NEEDS: tuple[str, ...] = ("f0_hz", "voiced", "rms_db", "centroid_hz", "hnr_db")
ACTIVE_DB = 40.0  # frames within this many dB of the loudest are the active signal
FRAME_RATE = 100.0  # frames per second at the default hop (160 samples at 16 kHz)


def has_cues(frame_names) -> bool:
    """Whether frames with these column names carry what the cues need."""
    return all(n in frame_names for n in NEEDS)


def cues(frames: np.ndarray, frame_names, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """The 12 cues (CUE_NAMES order) of one clip's frame matrix (frames, F) with column names ``frame_names``."""
    col = {n: list(frame_names).index(n) for n in NEEDS}
    F = np.asarray(frames, dtype=np.float64)
    if F.ndim != 2 or len(F) == 0:
        return np.zeros(len(CUE_NAMES))
    e = np.nan_to_num(F[:, col["rms_db"]], nan=-120.0)
    f0 = np.nan_to_num(F[:, col["f0_hz"]], nan=0.0)
    act = e > e.max() - ACTIVE_DB
    v = (np.nan_to_num(F[:, col["voiced"]]) > 0.5) & act & (f0 > 0)
    n_act = max(int(act.sum()), 1)
    semis = 12 * np.log2(np.clip(f0, 1.0, None) / 100.0)
    f0_spread = semis[v].std() if v.sum() > 2 else 0.0
    edges = np.diff(np.r_[0, v.astype(int), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = ends - starts
    steps = [np.abs(np.diff(semis[a:b])).mean() for a, b in zip(starts, ends) if b - a > 3]
    pairs = v[1:] & v[:-1]
    env = 10 ** (e / 20)
    env = env - env.mean()
    n_fft = max(512, len(env))
    power = np.abs(np.fft.rfft(env, n=n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / frame_rate)
    centroid = np.nan_to_num(F[act, col["centroid_hz"]], nan=0.0)
    rise = np.diff(e)[act[1:]]
    return np.array([
        v.sum() / n_act,
        np.log1p(f0_spread),
        np.log1p(len(runs) / (len(F) / frame_rate)),
        np.log1p(10 * np.median(runs) / frame_rate) if len(runs) else 0.0,
        runs.max() / n_act if len(runs) else 0.0,
        np.log1p(e[act].std()),
        power[(freqs > 2) & (freqs < 8)].sum() / (power[freqs > 0.5].sum() + 1e-12),
        np.log1p(5 * np.median(steps)) if steps else 0.0,
        np.clip(np.median(np.nan_to_num(F[v, col["hnr_db"]])), 0, 40) if v.any() else 0.0,
        (np.abs(np.diff(semis))[pairs] < 0.1).mean() if pairs.any() else 0.0,
        np.log1p(5 * np.log(centroid + 50).std()) if len(centroid) > 1 else 0.0,
        (rise > 3).mean() if len(rise) else 0.0,
    ])


class SpeechGuard:
    """A fitted guard: ``score`` (0..1, how speech-like) and ``is_speech`` (score >= threshold). The score is a
    one-hidden-layer network (ReLU) over the standardised cues, stored in model.json's ``guard``."""

    def __init__(self, params: dict):
        try:
            if tuple(params["cues"]) != CUE_NAMES:
                raise ModelFormatError(f"the model's speech guard reads cues {params['cues']}, not this emovae's "
                                       f"{list(CUE_NAMES)}: retrain it or update emovae")
            self.mean = np.asarray(params["mean"], dtype=np.float64)
            self.std = np.asarray(params["std"], dtype=np.float64)
            self.w1 = np.asarray(params["hidden_weight"], dtype=np.float64)  # (12, H)
            self.b1 = np.asarray(params["hidden_bias"], dtype=np.float64)  # (H,)
            self.w2 = np.asarray(params["out_weight"], dtype=np.float64)  # (H,)
            self.b2 = float(params["out_bias"])
            self.threshold = float(params["threshold"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFormatError(f"model.json: the speech guard is incomplete or malformed ({e})") from None
        k = len(CUE_NAMES)
        if (self.mean.shape != (k,) or self.std.shape != (k,) or self.w1.ndim != 2 or self.w1.shape[0] != k
                or self.b1.shape != self.w1.shape[1:] or self.w2.shape != self.w1.shape[1:]):
            raise ModelFormatError("model.json: the speech guard's arrays do not fit together")

    def score(self, cue_rows: np.ndarray) -> np.ndarray:
        """Speech score in 0..1 of cue rows (N, 12), shape (N,)."""
        z = (np.atleast_2d(cue_rows) - self.mean) / self.std
        h = np.maximum(z @ self.w1 + self.b1, 0.0)
        return 1.0 / (1.0 + np.exp(-(h @ self.w2 + self.b2)))

    def is_speech(self, cue_rows: np.ndarray) -> np.ndarray:
        """(N,) bool: the score reaches the threshold."""
        return self.score(cue_rows) >= self.threshold
