"""Sessions: recognition that improves as a speaker keeps talking, clip by clip (``Session``), for a batch of
clips grouped by speaker (``predict_by_speaker``), and sessions by id for a service (``SessionStore``).

The arithmetic (running moments from the model's prior, the trust n / (n + prior_weight) in the adapted head)
is ``speaker.py``'s. A session's first clip scores exactly as a lone clip. Only the moments are kept, never
audio. torch-free: works with either backend of ``runtime.Recognizer``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

import numpy as np

from .errors import ParameterError
from .features import Features
from .speaker import RunningMoments, SessionConfig, model_prior

__all__ = ["Session", "SessionConfig", "SessionStore", "predict_by_speaker"]


class Session:
    """One speaker's session over a ``runtime.Recognizer``: every clip predicted through it also updates the
    speaker's moments. Thread-safe; holds only the moments."""

    def __init__(self, recognizer, cfg: SessionConfig | None = None):
        self.recognizer = recognizer
        self.cfg = cfg or SessionConfig()
        self.moments = RunningMoments(*model_prior(recognizer.meta, recognizer.source), self.cfg.prior_weight)
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
    """Batch adaptation: each clip is normalised with the moments of all clips of its speaker (pooled with the
    prior), so the order of clips does not matter (``Recognizer.predict_by_speaker``)."""
    return recognizer.predict_by_speaker(X, speakers, names, cfg)


class SessionStore:
    """Sessions by id for a service: created on first use, dropped after ``ttl_s`` idle seconds, at most
    ``max_sessions`` (the least recently used goes first). Memory: one pair of (S,) vectors per session."""

    def __init__(self, recognizer, cfg: SessionConfig | None = None, ttl_s: float = 1800.0,
                 max_sessions: int = 10000, clock=time.monotonic):
        if ttl_s <= 0 or max_sessions < 1:
            raise ParameterError("SessionStore: ttl_s must be > 0 and max_sessions >= 1")
        model_prior(recognizer.meta, recognizer.source)  # fail now, not on the first request, for a model without an adapted head
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
