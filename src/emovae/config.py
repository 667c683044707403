"""Configuration: one small frozen dataclass per concern, saved as JSON beside every model and run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ParameterError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """A config as a plain JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict | None) -> T:
    """Rebuild a config from a dict; unknown keys are an error, missing keys take their defaults."""
    data = dict(data or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ParameterError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return cls(**data)


def config_hash(cfg: Any) -> str:
    """A short stable hash of a config's values (for cache keys)."""
    blob = json.dumps({"type": type(cfg).__name__, **to_dict(cfg)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes features. Frame step is ``hop_length / sample_rate`` seconds (10 ms by default)."""

    sample_rate: int = 16000
    n_fft: int = 512  # STFT size in samples (32 ms at 16 kHz)
    win_length: int = 400  # analysis window in samples (25 ms)
    hop_length: int = 160  # frame step in samples (10 ms)
    n_mels: int = 64
    n_mfcc: int = 40
    deltas: bool = True  # add first-order MFCC deltas
    pitch_method: str = "yin-acf"  # "yin-acf": YIN from the autocorrelation of frames on the STFT's grid, at
    # sample_rate / pitch_decimation (features.yin_acf; docs/research.md 37, 41); "yin": YIN on its own
    # yin_frame_length frames (the models before 2026-12-07); "max": the highest spectral peak per frame
    pitch_decimation: int = 2  # "yin-acf" runs at sample_rate / this (8 kHz: F0 <= 600 Hz needs no more); 1: none
    f0_min: float = 60.0  # Hz
    f0_max: float = 600.0  # Hz
    yin_frame_length: int = 1024  # samples (pitch_method "yin" only); must hold two periods of f0_min
    yin_threshold: float = 0.35  # CMNDF dip below which a frame counts as voiced (82 % frame agreement with pYIN)
    ber_split_hz: float = 2000.0  # band energy ratio split frequency
    trim_db: float = 40.0  # leading/trailing frames quieter than (loudest - trim_db) are trimmed
    silence_db: float = -70.0  # frames below this absolute level (dBFS) are treated as silent
    percentiles: tuple[int, ...] = (10, 50, 90)  # robust utterance statistics, besides mean and std
    shape_stats: bool = True  # also skewness, kurtosis, slope, ranges per column, F0 contour, MFCC acceleration
    voice_quality: bool = True  # also HNR, loudness, jitter and shimmer per frame (+1 UA strict, docs/research.md 7c)
    min_duration: float = 0.25  # seconds; shorter clips are rejected
    voice: int = 128  # units of a voice student (emovae.voice): > 0 keeps each clip's 40 mel bands, and a model
    # trained on them learns a student of the GE2E teacher whose 512 voice statistics join the utterance
    # statistics (docs/research.md, sections 24-27; the shipped model); 0 = off (hand-made features only)

    def __post_init__(self):
        errors = []
        if self.sample_rate < 8000:
            errors.append("sample_rate must be at least 8000 Hz")
        if not 0 < self.win_length <= self.n_fft:
            errors.append("win_length must be in (0, n_fft]")
        if self.hop_length <= 0:
            errors.append("hop_length must be positive")
        if not 1 <= self.n_mfcc <= self.n_mels:
            errors.append("n_mfcc must be in [1, n_mels]")
        if self.pitch_method not in ("yin", "max", "yin-acf"):
            errors.append(f"pitch_method must be 'yin', 'max' or 'yin-acf', not {self.pitch_method!r}")
        k = self.pitch_decimation
        if k < 1 or self.n_fft % k or self.hop_length % k:
            errors.append(f"pitch_decimation ({k}) must be >= 1 and divide n_fft and hop_length")
        elif self.f0_max >= self.sample_rate / k / 2:
            errors.append("need f0_max < sample_rate / pitch_decimation / 2")
        if not 0 < self.f0_min < self.f0_max < self.sample_rate / 2:
            errors.append("need 0 < f0_min < f0_max < sample_rate / 2")
        if self.yin_frame_length < 2 * self.sample_rate / self.f0_min + 2:
            errors.append("yin_frame_length must hold two periods of f0_min")
        if not 0 < self.ber_split_hz < self.sample_rate / 2:
            errors.append("ber_split_hz must be in (0, sample_rate / 2)")
        if any(not 0 <= p <= 100 for p in self.percentiles):
            errors.append("percentiles must be in [0, 100]")
        if self.voice < 0 or (self.voice and self.sample_rate != 16000):
            errors.append("voice must be >= 0, and the voice student needs sample_rate 16000 (for another rate, "
                          "turn it off: voice=0, CLI --voice 0)")
        if errors:
            raise ParameterError("FeatureConfig: " + "; ".join(errors))


@dataclass(frozen=True)
class VAEConfig:
    """The sequence VAE: frames pooled to ``seq_len`` steps -> 1-D conv encoder -> z -> conv decoder."""

    seq_len: int = 64  # time steps the speech span is average-pooled to
    channels: int = 32
    latent_dim: int = 16
    beta: float = 1.0  # KL weight
    warmup_epochs: int = 10  # beta rises linearly from 0 over these epochs (KL annealing); 0 = off
    epochs: int = 80
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 12  # early stopping on the inner actor-disjoint validation loss
    with_stats: bool = True  # the VAE also encodes and reconstructs the utterance statistics

    def __post_init__(self):
        if self.seq_len % 4 or self.seq_len < 8:
            raise ParameterError("VAEConfig: seq_len must be a multiple of 4, at least 8")
        if self.latent_dim < 1 or self.channels < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ParameterError("VAEConfig: latent_dim, channels, epochs and batch_size must be positive")
        if self.beta < 0 or self.warmup_epochs < 0:
            raise ParameterError("VAEConfig: beta and warmup_epochs must be non-negative")


@dataclass(frozen=True)
class ClassifierConfig:
    """Multinomial logistic regression on [statistics, VAE mean]; C chosen on the inner split. The defaults are
    the shipped recipe (docs/research.md section 27): the heads read the voice student's statistics and the
    latent."""

    use_stats: bool = True
    use_latent: bool = True
    c_grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
    class_weight: str | None = "balanced"  # neutral has half the clips of the other emotions; with several
    # corpora "balanced" also weighs every corpus alike (train.estimator.balanced_weights)
    answer_accuracy: float = 0.5  # below the confidence at which clips the heads did not see were right this often
    # (left-out corpora, else the inner validation speakers), a prediction's answer is "uncertain"
    adapted_head: bool = True  # also fit a head on statistics z-scored per speaker (session adaptation)
    voice_epochs: int = 40  # training epochs of the voice student (with FeatureConfig.voice)
    voice_copies_per_epoch: int = 0  # each epoch of the voice student reads every clip and this many of its
    # training copies (speed, degraded), drawn afresh per epoch; 0 = every copy in every epoch. 1 fits about 4x
    # faster with 2 degraded copies but loses most of their gain on noisy channels (docs/research.md section 32)
    dimension_alphas: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0, 100000.0)  # ridge penalties tried for
    # the arousal/valence heads (chosen like C: on corpora left out in turn, else the inner validation speakers)
    head_stats: str = "auto"  # the statistics the heads read: "all", "voice" (only the voice student's 512;
    # alone they beat every mix with the hand-made statistics on unseen speakers, docs/research.md section 25), or
    # "auto": "voice" when the model has a voice student (FeatureConfig.voice), else "all"

    def __post_init__(self):
        if not (self.use_stats or self.use_latent):
            raise ParameterError("ClassifierConfig: use at least one of use_stats, use_latent")
        if self.voice_epochs < 1:
            raise ParameterError("ClassifierConfig: voice_epochs must be at least 1")
        if self.voice_copies_per_epoch < 0:
            raise ParameterError("ClassifierConfig: voice_copies_per_epoch must be 0 (all copies) or more")
        if self.head_stats not in ("auto", "all", "voice"):
            raise ParameterError("ClassifierConfig: head_stats must be 'auto', 'all' or 'voice', "
                                 f"not {self.head_stats!r}")
        if not 0 < self.answer_accuracy < 1:
            raise ParameterError("ClassifierConfig: answer_accuracy must lie in (0, 1)")
        if not self.dimension_alphas or any(a <= 0 for a in self.dimension_alphas):
            raise ParameterError("ClassifierConfig: dimension_alphas must hold positive values")
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ParameterError("ClassifierConfig: c_grid must hold positive values")


@dataclass(frozen=True)
class TrainConfig:
    """Seed and the inner, actor-disjoint validation split used for early stopping and selection."""

    seed: int = 0
    val_actors: int = 3  # actors held out of the training set for early stopping / choosing C
    threads: int = 2  # torch threads while training: the voice student trains about 3x faster on 2 than on 1
    # (docs/research.md section 26); the rest of the model is small, and more threads mostly add contention
    speed_perturb: tuple[float, ...] = (0.8, 0.9, 1.1, 1.2)  # the classifier also learns from training clips
    # played at these speeds (pseudo-speakers: pitch and tempo shifted); () = off. +2.9 UA strict, +3.1 adapted
    # (docs/research.md, section 6)
    degraded_copies: int = 0  # and from this many degraded copies of each clip (augment.degraded_copy: noise,
    # a room, a telephone channel, level, clipping or a 1.5-3 s window; seeded per clip): they join the voice
    # student's and the heads' rows as the speed copies do; 0 = off

    def __post_init__(self):
        if not 0 <= self.degraded_copies <= 8:
            raise ParameterError("TrainConfig: degraded_copies must lie in 0..8")
        if self.val_actors < 1:
            raise ParameterError("TrainConfig: val_actors must be at least 1")
        if any(not 0.5 <= f <= 2.0 or f == 1.0 for f in self.speed_perturb):
            raise ParameterError("TrainConfig: speed_perturb factors must lie in [0.5, 2], other than 1")
