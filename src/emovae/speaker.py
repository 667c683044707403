"""Speaker adaptation arithmetic, the one place for it: moments of a speaker's utterance statistics, the model's
prior of a new speaker, running moments for sessions, and how much the adapted head is trusted.

The model has two heads: a single-clip head, and an adapted head that reads the statistics z-scored with the
speaker's moments. A speaker's moments start from the prior (the training clips' mean and typical within-speaker
std) counted as ``prior_weight`` clips and move toward the speaker's own clips (Welford, pooled with the prior).
After n clips of the speaker (at least ``min_clips``), probabilities are (1 - t) x single-clip + t x adapted with
t = n / (n + prior_weight); before that, the single-clip head alone. Sessions (clip by clip), batches grouped by
speaker (``predict --speaker-from``) and the evaluation's adapted mode all use these functions, so "adapted"
means one thing. Shapes: statistics (N, S) or (S,); moments (S,) or (N, S); float32 out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelFormatError, ParameterError

MIN_STD = 1e-6  # a speaker's statistic with a smaller std is not scaled (std 1 is used)
#: Clips the model's prior counts as in a speaker's moments. 8 keeps a session that hears only calm or neutral
#: speech at its single-clip accuracy, where 2 lost 8-10 points; it gains a little more slowly with varied speech
#: (docs/research.md, section 29).
PRIOR_WEIGHT = 8.0
MIN_CLIPS = 2  # clips of a speaker (the current one included) before the adapted head is used


@dataclass(frozen=True)
class SessionConfig:
    """How a speaker's clips adapt predictions: ``prior_weight`` (clips the model's prior counts as; 0: the
    speaker's own moments alone) and ``min_clips`` (clips of the speaker before the adapted head is used)."""

    prior_weight: float = PRIOR_WEIGHT
    min_clips: int = MIN_CLIPS

    def trust(self, n: int | np.ndarray) -> float | np.ndarray:
        """Weight of the adapted head after ``n`` clips of the speaker: n / (n + prior_weight), 0 below
        ``min_clips``."""
        n = np.asarray(n, dtype=np.float64)
        t = np.where(n + self.prior_weight > 0, n / np.maximum(n + self.prior_weight, 1e-12), 1.0)
        t = np.where(n >= self.min_clips, t, 0.0)
        return float(t) if t.ndim == 0 else t

    def __post_init__(self):
        if not np.isfinite(self.prior_weight) or self.prior_weight < 0:
            raise ParameterError("SessionConfig: prior_weight must be a finite number >= 0")
        if self.min_clips < 1:
            raise ParameterError("SessionConfig: min_clips must be >= 1")


def speaker_moments(stats: np.ndarray, speakers: np.ndarray, min_clips: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per clip, the mean and std (each (N, S)) of the statistics of all clips of its speaker, without a prior
    (how the adapted head is trained). With fewer than ``min_clips`` clips the std is not estimated (1 is used)."""
    stats = np.asarray(stats, dtype=np.float64)
    speakers = np.asarray(speakers)
    mean, std = np.empty_like(stats), np.ones_like(stats)
    for spk in np.unique(speakers):
        m = speakers == spk
        mean[m] = stats[m].mean(axis=0)
        if m.sum() >= min_clips:
            sd = stats[m].std(axis=0)
            std[m] = np.where(sd > MIN_STD, sd, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def speaker_normalize(stats: np.ndarray, speakers: np.ndarray, min_clips: int = 2) -> np.ndarray:
    """Z-score each row of ``stats`` (N, S) with the mean and std of all rows of the same speaker, (N, S).
    Uses no labels; a single clip is centred on itself, so this needs several clips per speaker."""
    mean, std = speaker_moments(stats, speakers, min_clips)
    return ((np.asarray(stats, dtype=np.float32) - mean) / std).astype(np.float32)


def speaker_prior(stats: np.ndarray, speakers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prior of a new speaker's statistics, each (S,): the mean over all clips, and the typical
    within-speaker std (root of the mean within-speaker variance)."""
    stats = np.asarray(stats, dtype=np.float64)
    speakers = np.asarray(speakers)
    var = np.mean([stats[speakers == spk].var(axis=0) for spk in np.unique(speakers)], axis=0)
    return stats.mean(axis=0).astype(np.float32), np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)


def model_prior(meta: dict, source: str = "this model") -> tuple[np.ndarray, np.ndarray]:
    """A model's prior (mean, std), each (S,) float64, from its model.json content ``meta``."""
    prior = meta.get("speaker_prior")
    if not prior:
        raise ModelFormatError(f"{source}: this model has no adapted head (trained by an older emovae); "
                               "retrain it with 'emovae train' to use speaker adaptation")
    return tuple(np.asarray(prior[k], dtype=np.float64) for k in ("mean", "std"))


def network_moments(stats: np.ndarray, spk_mean=None, spk_std=None, prior: dict | None = None):
    """The network's speaker-moment inputs, each (N, S) float32: the given moments (broadcast from (S,)), else
    the model's prior (``prior`` from model.json; without one, mean 0 and std 1, which only feed the adapted
    output)."""
    if spk_mean is None:
        if prior:
            spk_mean, spk_std = (np.asarray(prior[k], dtype=np.float32) for k in ("mean", "std"))
        else:
            spk_mean, spk_std = np.zeros(stats.shape[1], np.float32), np.ones(stats.shape[1], np.float32)
    return tuple(np.array(np.broadcast_to(np.asarray(a, dtype=np.float32), stats.shape)) for a in (spk_mean, spk_std))


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
        std = np.where(std > MIN_STD, std, 1.0)  # as speaker_moments, which the adapted head was fit with
        return mean.astype(np.float32), std.astype(np.float32)


def batch_moments(stats: np.ndarray, speakers, prior: tuple[np.ndarray, np.ndarray], cfg: SessionConfig
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch adaptation, order-free: each clip's moments are those of all clips of its speaker pooled with the
    prior. Returns (mean (N, S), std (N, S), clips of the clip's speaker (N,))."""
    stats = np.asarray(stats, dtype=np.float64)
    speakers = np.asarray(speakers, dtype=object)
    if len(speakers) != len(stats):
        raise ParameterError(f"got {len(stats)} clips but {len(speakers)} speakers")
    mean = np.empty(stats.shape, np.float32)
    std = np.empty(stats.shape, np.float32)
    count = np.zeros(len(stats), dtype=int)
    for spk in dict.fromkeys(speakers.tolist()):
        idx = np.flatnonzero(speakers == spk)
        m = RunningMoments(*prior, cfg.prior_weight)
        m.update(stats[idx])
        mean[idx], std[idx] = m.estimate()
        count[idx] = len(idx)
    return mean, std, count


def mix(p_single: np.ndarray, p_adapted: np.ndarray, trust) -> np.ndarray:
    """(1 - trust) x single-clip + trust x adapted probabilities, (N, C); ``trust`` a number or (N,)."""
    t = np.asarray(trust, dtype=np.float64)
    t = t[:, None] if t.ndim == 1 else t
    return ((1.0 - t) * p_single + t * p_adapted).astype(np.float32)
