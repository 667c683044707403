"""Fitting the speech guard (``emovae.guard``): the training speech and a degraded copy of each clip against
synthetic non-speech (noise, hum, tones, melodies and chords, clicks and bursts, near-silence), a network with one
hidden layer of 16 over the 12 cues, and a threshold that passes 99.9 % of that speech."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..config import FeatureConfig
from .. import audio
from ..errors import AudioError, ParameterError
from ..features import extract, frame_energy_db, frame_names, speech_span
from ..guard import CUE_NAMES, SpeechGuard, cues, has_cues
from ..augment import degraded_copy, pink_noise

FAMILIES = ("white noise", "pink noise", "brown noise", "mains hum", "steady tone", "tone with vibrato", "glide",
            "melody", "chords", "clicks", "noise bursts", "near silence")
HIDDEN = 16  # hidden units of the guard's network (a logistic regression over the same cues flagged only 80-88 %
# of music-like chords on a dev split at the same threshold; docs/research.md)
PERCENTILE = 0.1  # % of the guard's training speech below its threshold: at 1 % strong reverberation (RT60 0.8 s)
# was flagged 11-12 % on held-out actors, at 0.1 % 4.7-5.5 %, every non-speech set still >= 99 % flagged (§33)


def non_speech(n: int, rng, sr: int = 16000) -> list[np.ndarray]:
    """``n`` clips of 1-5 s that are not speech, cycling over FAMILIES, at -45..-10 dBFS, float32."""
    out = []
    for i in range(n):
        L = int(rng.uniform(1.0, 5.0) * sr)
        t = np.arange(L) / sr
        fam = FAMILIES[i % len(FAMILIES)]
        if fam == "white noise":
            y = rng.standard_normal(L)
        elif fam == "pink noise":
            y = pink_noise(L, rng)
        elif fam == "brown noise":
            y = np.cumsum(rng.standard_normal(L))
            y = y - np.convolve(y, np.ones(801) / 801, mode="same")
        elif fam == "mains hum":
            f = rng.choice([50.0, 60.0])
            y = sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
            y = y + 0.05 * rng.standard_normal(L)
        elif fam in ("steady tone", "tone with vibrato"):
            depth = 0.02 if fam == "tone with vibrato" else 0.0
            f = rng.uniform(70, 3000) * (1 + depth * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
            y = sum(np.sin(2 * np.pi * np.cumsum(f * k) / sr) * rng.uniform(0.1, 1) for k in range(1, 4))
        elif fam == "glide":
            f = np.geomspace(rng.uniform(80, 600), rng.uniform(300, 4000), L)
            y = np.sin(2 * np.pi * np.cumsum(f) / sr)
        elif fam in ("melody", "chords"):
            y = np.zeros(L)
            step = int(rng.uniform(0.15, 0.8) * sr)
            repeat = rng.random() < 0.5  # one chord or note struck again and again, or a new one each time
            notes = 110 * 2 ** (rng.integers(0, 36, 1 if fam == "melody" else 3) / 12)
            for s in range(0, L, step):
                seg = np.arange(min(step, L - s)) / sr
                if not repeat:
                    notes = 110 * 2 ** (rng.integers(0, 36, 1 if fam == "melody" else 3) / 12)
                env = np.exp(-rng.uniform(1, 6) * seg) * np.minimum(1, seg * 200)
                y[s: s + len(seg)] = env * sum(np.sin(2 * np.pi * f0 * k * seg) / k for f0 in notes
                                               for k in range(1, 6))
        elif fam == "clicks":
            y = (rng.random(L) < rng.uniform(0.0002, 0.003)).astype(float) * rng.choice([-1, 1], L)
            y = np.convolve(y, np.exp(-np.arange(40) / 6.0), mode="same") + 1e-4 * rng.standard_normal(L)
        elif fam == "noise bursts":
            gate = np.repeat(rng.random(L // 800 + 1) < 0.3, 800)[:L]
            y = rng.standard_normal(L) * (gate + 0.01)
        else:  # near silence: a quiet room
            y = pink_noise(L, rng) * 0.05
        y = np.asarray(y, dtype=np.float64)
        y = y / (np.sqrt(np.mean(y**2)) + 1e-12) * 10 ** (rng.uniform(-45, -10) / 20)
        out.append(np.clip(y, -1, 1).astype(np.float32))
    return out


def clip_cues(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The guard's cues of one signal, through the model's own frame features (no voice student)."""
    f = extract(y, cfg.sample_rate, cfg)
    return cues(f.frames, f.frame_names, cfg.sample_rate / cfg.hop_length)


def guard_examples(speech: Sequence, cfg: FeatureConfig, seed: int = 0, max_clips: int = 300,
                   copies: int = 3) -> tuple[np.ndarray, np.ndarray, int]:
    """The guard's training examples: cues (N, 12) of up to ``max_clips`` of ``speech`` (signals, mono float32 at
    cfg.sample_rate, or audio file paths) and ``copies`` degraded copies of each, then of as many synthetic
    non-speech clips; labels (N,), 1 = speech; and the number of speech clips used."""
    cfg = replace(cfg, voice=0)
    if not has_cues(frame_names(cfg)):
        raise ParameterError("the speech guard needs pitch, voicing, energy, centroid and HNR frames "
                             "(FeatureConfig.voice_quality=True)")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(speech))[:max_clips]
    pos, used = [], 0
    for i in pick:
        try:
            y = speech[i] if isinstance(speech[i], np.ndarray) else audio.load(speech[i], cfg.sample_rate,
                                                                                min_duration=cfg.min_duration)
        except AudioError:  # a clip training could not use either; the guard does without it
            continue
        used += 1
        span = speech_span(frame_energy_db(y, cfg), cfg)
        pos.append(clip_cues(y, cfg))
        for _ in range(copies):
            pos.append(clip_cues(degraded_copy(y, rng, cfg.sample_rate,
                                               (span.start * cfg.hop_length, span.stop * cfg.hop_length)), cfg))
    neg = [clip_cues(y, cfg) for y in non_speech(len(pos), rng, cfg.sample_rate)]
    return np.array(pos + neg), np.r_[np.ones(len(pos)), np.zeros(len(neg))], used


def fit_guard_examples(X: np.ndarray, y: np.ndarray, seed: int = 0, percentile: float = PERCENTILE) -> dict:
    """The guard's parameters from ``guard_examples``: the network, and a threshold that passes all but
    ``percentile`` % of the speech examples."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mean, std = X.mean(0), X.std(0) + 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = MLPClassifier((HIDDEN,), alpha=1e-2, max_iter=3000, random_state=seed).fit((X - mean) / std, y)
    params = {"cues": list(CUE_NAMES), "mean": mean.round(6).tolist(), "std": std.round(6).tolist(),
              "hidden_weight": net.coefs_[0].round(6).tolist(), "hidden_bias": net.intercepts_[0].round(6).tolist(),
              "out_weight": net.coefs_[1][:, 0].round(6).tolist(), "out_bias": round(float(net.intercepts_[1][0]), 6),
              "threshold": 0.0}
    scores = SpeechGuard(params).score(X)
    threshold = round(float(np.percentile(scores[y == 1], percentile)), 6)
    return {**params, "threshold": threshold, "percentile": percentile,
            "non_speech_passed": float(np.mean(scores[y == 0] >= threshold))}


def fit_guard(speech: Sequence, cfg: FeatureConfig, seed: int = 0, max_clips: int = 300, copies: int = 3,
              percentile: float = PERCENTILE, what: str = "training clips") -> dict:
    """The guard's parameters (model.json's ``guard``) from training speech: signals (mono float32 at
    cfg.sample_rate) or audio file paths. Up to ``max_clips`` of them and ``copies`` degraded copies of each, against
    as many non-speech clips; the threshold passes all but ``percentile`` % of that speech."""
    X, y, used = guard_examples(speech, cfg, seed, max_clips, copies)
    params = fit_guard_examples(X, y, seed, percentile)
    return {**params, "fitted_on": f"{used} {what} and {copies} degraded copies of each, against {int((y == 0).sum())}"
                                   f" synthetic non-speech clips ({', '.join(FAMILIES)})"}
