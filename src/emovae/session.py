"""Session adaptation: recognition that improves as a speaker keeps talking.

A speaker's utterance statistics are tracked with running moments (Welford) that start from the model's prior
(the training clips' mean, and their typical within-speaker std) weighted as ``prior_weight`` clips, and shift
toward the speaker's own as clips arrive. Once ``min_clips`` clips of the speaker are in (the current one
included), predictions mix the model's adapted head, which reads the statistics z-scored with these moments,
with its single-clip head: weight n / (n + prior_weight) on the adapted head after n clips, the same trust the
moments put in the speaker's own clips. Before that, the single-clip head alone, so a session's first clip
scores exactly as a lone clip.
Only the moments are kept, never audio. torch-free: works with either backend of ``runtime.Recognizer``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .errors import ModelFormatError, ParameterError
from .features import MIN_STD, Features


@dataclass(frozen=True)
class SessionConfig:
    """``prior_weight``: how many clips the model's prior counts as (0: the speaker's own moments alone). 8 keeps a
    session that hears only calm or neutral speech at its single-clip accuracy, where 2 lost 8-10 points with the
    voice-student model; it gains a little more slowly with varied speech (+3.4 to +4.0 points after 8 clips,
    against +5.6 to +6.0), benchmarks/experiments.md section 29.
    ``min_clips``: clips of the speaker, the current one included, before the adapted head is used."""

    prior_weight: float = 8.0
    min_clips: int = 2

    def trust(self, n: int) -> float:
        """Weight of the adapted head after ``n`` clips of the speaker: n / (n + prior_weight)."""
        return n / (n + self.prior_weight) if n + self.prior_weight > 0 else 1.0

    def __post_init__(self):
        if self.prior_weight < 0:
            raise ParameterError("SessionConfig: prior_weight must be >= 0")
        if self.min_clips < 1:
            raise ParameterError("SessionConfig: min_clips must be >= 1")


class RunningMoments:
    """Running mean and (population) variance of statistic vectors (S,), float64, by Welford's update; the
    estimate merges them with a prior of ``prior_weight`` pseudo-clips (Chan et al.'s pairwise combination)."""

    def __init__(self, prior_mean: np.ndarray, prior_std: np.ndarray, prior_weight: float = 0.0):
        self.prior_mean = np.asarray(prior_mean, dtype=np.float64)
        self.prior_var = np.asarray(prior_std, dtype=np.float64) ** 2
        self.prior_weight = float(prior_weight)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = np.zeros_like(self.prior_mean)
        self.m2 = np.zeros_like(self.prior_mean)

    def update(self, x: np.ndarray) -> None:
        """Add one clip's statistics (S,), or several (N, S) in order."""
        x = np.asarray(x, dtype=np.float64)
        for row in np.atleast_2d(x):
            if row.shape != self.mean.shape:
                raise ParameterError(f"statistics of shape {row.shape}; this model expects {self.mean.shape}")
            self.n += 1
            delta = row - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (row - self.mean)

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (S,) float32: the prior and the clips seen so far, pooled."""
        w, n = self.prior_weight, self.n
        if n == 0 and w == 0:
            raise ParameterError("no clips seen and no prior: nothing to estimate speaker moments from")
        total = w + n
        delta = self.mean - self.prior_mean
        mean = self.prior_mean + delta * (n / total)
        m2 = w * self.prior_var + self.m2 + delta**2 * (w * n / total)
        std = np.sqrt(m2 / total)
        std = np.where(std > MIN_STD, std, 1.0)  # as features.speaker_moments, which the adapted head was fit with
        return mean.astype(np.float32), std.astype(np.float32)


def model_prior(recognizer) -> tuple[np.ndarray, np.ndarray]:
    """The model's prior of a new speaker's statistics (mean, std), each (S,), from its model.json."""
    prior = recognizer.meta.get("speaker_prior")
    if not prior:
        raise ModelFormatError(f"{recognizer.source}: this model has no adapted head (trained by an older emovae); "
                               "retrain it with 'emovae train' to use session adaptation")
    return tuple(np.asarray(prior[k], dtype=np.float64) for k in ("mean", "std"))


class Session:
    """One speaker's session over a ``runtime.Recognizer``: every clip predicted through it also updates the
    speaker's moments. Thread-safe; holds only the moments."""

    def __init__(self, recognizer, cfg: SessionConfig | None = None):
        self.recognizer = recognizer
        self.cfg = cfg or SessionConfig()
        self.moments = RunningMoments(*model_prior(recognizer), self.cfg.prior_weight)
        self._lock = threading.Lock()

    @property
    def n_clips(self) -> int:
        return self.moments.n

    def reset(self) -> None:
        """Forget the speaker: back to the prior."""
        with self._lock:
            self.moments.reset()

    def observe(self, f: Features) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
        """Add a clip's statistics; returns the moments to normalise it with (None while fewer than
        ``min_clips`` clips are in) and the number of clips they hold."""
        stats = np.asarray(f.stats, dtype=np.float64)
        with self._lock:
            self.moments.update(stats)
            n = self.moments.n
            return (self.moments.estimate() if n >= self.cfg.min_clips else None), n

    def predict_features(self, f: Features, name: str | None = None):
        moments, n = self.observe(f)
        return self.recognizer.predict_features([f], [name], moments=moments, speaker_clips=n,
                                                trust=self.cfg.trust(n))[0]

    def predict_signal(self, signal: np.ndarray, sr: int, name: str | None = None):
        """Prediction of one clip of this speaker (mono or (samples, channels) at ``sr`` Hz)."""
        return self.predict_features(self.recognizer.features(signal, sr, name or "<signal>"), name)

    def predict_file(self, path: str | os.PathLike):
        from . import audio

        cfg = self.recognizer.feature_config
        y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
        return self.predict_signal(y, cfg.sample_rate, str(path))

    def predict_proba(self, signal: np.ndarray, sr: int) -> np.ndarray:
        """Probabilities (len(classes),) of one clip, in ``recognizer.classes`` order."""
        p = self.predict_signal(signal, sr)
        return np.array([p.probabilities[c] for c in self.recognizer.classes])


def predict_by_speaker(recognizer, X: list[Features], speakers, names=None, cfg: SessionConfig | None = None):
    """Batch adaptation: each clip is normalised with the moments of all clips of its speaker (merged with the
    prior), so the order of clips does not matter. Speakers with fewer than ``min_clips`` clips get the
    single-clip head. Returns predictions in the order of X."""
    cfg = cfg or SessionConfig()
    speakers = np.asarray(speakers, dtype=object)
    if len(speakers) != len(X):
        raise ParameterError(f"got {len(X)} clips but {len(speakers)} speakers")
    names = list(names) if names is not None else [None] * len(X)
    prior = model_prior(recognizer)
    stats = np.stack([f.stats for f in X]).astype(np.float64) if X else np.zeros((0, len(prior[0])))
    out = [None] * len(X)
    for spk in dict.fromkeys(speakers.tolist()):
        idx = np.flatnonzero(speakers == spk)
        m = RunningMoments(*prior, cfg.prior_weight)
        m.update(stats[idx])
        moments = m.estimate() if len(idx) >= cfg.min_clips else None
        preds = recognizer.predict_features([X[i] for i in idx], [names[i] for i in idx], moments=moments,
                                            speaker_clips=len(idx), trust=cfg.trust(len(idx)))
        for i, p in zip(idx, preds):
            out[i] = p
    return out


class SessionStore:
    """Sessions by id for a service: created on first use, dropped after ``ttl_s`` idle seconds, at most
    ``max_sessions`` (the least recently used goes first). Memory: one pair of (S,) vectors per session."""

    def __init__(self, recognizer, cfg: SessionConfig | None = None, ttl_s: float = 1800.0,
                 max_sessions: int = 10000, clock=time.monotonic):
        if ttl_s <= 0 or max_sessions < 1:
            raise ParameterError("SessionStore: ttl_s must be > 0 and max_sessions >= 1")
        model_prior(recognizer)  # fail now, not on the first request, for a model without an adapted head
        self.recognizer, self.cfg = recognizer, cfg or SessionConfig()
        self.ttl_s, self.max_sessions = ttl_s, max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[Session, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._sessions:
            sid, (_, last) = next(iter(self._sessions.items()))
            if now - last <= self.ttl_s and len(self._sessions) <= self.max_sessions:
                break
            del self._sessions[sid]

    def get(self, sid: str) -> Session:
        """The session ``sid``, created if new or expired; marks it used now."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            s = self._sessions.pop(sid, (None, 0.0))[0] or Session(self.recognizer, self.cfg)
            self._sessions[sid] = (s, now)
            self._expire(now)
            return s

    def peek(self, sid: str) -> Session | None:
        """The live session ``sid`` without creating or touching it."""
        with self._lock:
            self._expire(self._clock())
            item = self._sessions.get(sid)
            return item[0] if item else None

    def delete(self, sid: str) -> bool:
        """Forget session ``sid``; False when there was none."""
        with self._lock:
            return self._sessions.pop(sid, None) is not None

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._sessions)
