"""Shared test fixtures: synthetic audio and the real-data folder beside the repo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SR = 16000
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess-speech"


def tone(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, harmonics + 1))
    return np.asarray(y, dtype=np.float32)


def voice_like(f0: float, seconds: float, sr: int = SR, seed: int = 0, formant: float = 800.0) -> np.ndarray:
    """A crude vowel: a harmonic-rich pulse train at f0 with a vibrato, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    y = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - formant) / 1500) ** 2) for k in range(1, 30))
    y = y * np.hanning(len(t)) ** 0.2 + 0.003 * rng.standard_normal(len(t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real RAVDESS data not found at {REAL_DATA} (it lives in ../shared beside the repo)")
    return REAL_DATA


def write_ravdess_tree(root: Path, actors=(1, 2, 3, 4), emotions=range(1, 9), seconds: float = 0.8,
                       sr: int = SR, per_emotion: int = 1) -> list[Path]:
    """Write a small tree of synthetic clips named as RAVDESS (Actor_XX/03-01-EE-II-SS-RR-AA.wav).

    Each emotion gets its own pitch and loudness so that a classifier has something to learn.
    """
    import soundfile as sf

    paths = []
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for e in emotions:
            for r in range(per_emotion):
                y = voice_like(90 + 25 * e + 10 * (a % 2), seconds, sr, seed=100 * a + 10 * e + r,
                               formant=500 + 150 * e) * (0.3 + 0.08 * e)
                p = d / f"03-01-{e:02d}-01-{(r % 2) + 1:02d}-{(r // 2) % 2 + 1:02d}-{a:02d}.wav"
                sf.write(p, y, sr)
                paths.append(p)
    return paths


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small model trained by the CLI on synthetic clips (model.json, model.onnx holding the weights)."""
    pytest.importorskip("torch")
    from emovae.cli import main

    root = tmp_path_factory.mktemp("tiny")
    write_ravdess_tree(root / "data", actors=(1, 2, 3, 4), emotions=(1, 3, 5, 8))
    rc = main(["-q", "train", "--data", str(root / "data"), "--out", str(root / "model"), "--no-cache",
               "--jobs", "1", "--n-mfcc", "13", "--latent-dim", "4", "--epochs", "6"])
    assert rc == 0
    return root / "model"
