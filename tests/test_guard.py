"""The speech guard behind in_domain: its cues, its stored parameters, fitting it, and the shipped model's guard
on speech it never heard (LibriSpeech, SAVEE) and on non-speech."""

import json
import shutil

import numpy as np
import pytest

from emovae.config import FeatureConfig
from emovae.errors import ModelFormatError
from emovae.features import extract
from emovae.guard import CUE_NAMES, SpeechGuard, cues
from emovae.runtime import Recognizer

from .conftest import REAL_DATA, SR, tone, voice_like

SHARED = REAL_DATA.parent


def syllables(seed: int, seconds: float = 2.5) -> np.ndarray:
    """Speech-like: voiced syllables of 120-250 ms with a moving pitch, separated by short pauses."""
    rng = np.random.default_rng(seed)
    parts = []
    while sum(map(len, parts)) < seconds * SR:
        parts.append(voice_like(rng.uniform(100, 260), rng.uniform(0.12, 0.25), seed=int(rng.integers(1e6))))
        parts.append(np.zeros(int(rng.uniform(0.05, 0.2) * SR), np.float32))
    return (np.concatenate(parts) + 1e-3 * rng.standard_normal(sum(map(len, parts)))).astype(np.float32)


def cues_of(y: np.ndarray) -> dict:
    f = extract(y, SR, FeatureConfig(voice=0))
    return dict(zip(CUE_NAMES, cues(f.frames, f.frame_names)))


def test_cues_tell_a_steady_tone_noise_and_syllables_apart():
    t, n, s = cues_of(tone(220.0, 2.0)), cues_of(0.05 * np.random.default_rng(0).standard_normal(2 * SR)), \
        cues_of(syllables(0))
    assert len(t) == len(CUE_NAMES) == 12
    assert t["voiced_share"] > 0.9 and t["f0_spread"] < 0.05 and t["longest_run_share"] > 0.9
    assert n["voiced_share"] < 0.05 and n["hnr_median"] == 0
    assert 0.3 < s["voiced_share"] < 0.95 and s["voiced_runs_per_s"] > np.log1p(2) and s["longest_run_share"] < 0.3
    assert s["energy_spread"] > n["energy_spread"] and s["energy_spread"] > t["energy_spread"]


def test_a_malformed_guard_is_a_model_format_error():
    good = {"cues": list(CUE_NAMES), "mean": [0] * 12, "std": [1] * 12, "hidden_weight": [[0.1] * 4] * 12,
            "hidden_bias": [0] * 4, "out_weight": [1] * 4, "out_bias": 0.0, "threshold": 0.5}
    assert SpeechGuard(good).score(np.zeros((3, 12))).shape == (3,)
    for bad in ({**good, "cues": list(CUE_NAMES[:-1])}, {**good, "hidden_bias": [0] * 5},
                {k: v for k, v in good.items() if k != "threshold"}, {**good, "mean": "x"}):
        with pytest.raises(ModelFormatError):
            SpeechGuard(bad)


def test_fit_guard_passes_its_speech_and_stops_noise_and_tones():
    pytest.importorskip("sklearn")
    from emovae.train.guard import fit_guard, non_speech

    speech = [syllables(s) for s in range(40)]
    params = fit_guard(speech, FeatureConfig(), seed=0, copies=1)
    guard = SpeechGuard(json.loads(json.dumps(params)))  # what model.json stores
    assert params["non_speech_passed"] < 0.05
    held_out = np.array([list(cues_of(syllables(100 + s)).values()) for s in range(10)])
    assert guard.is_speech(held_out).mean() >= 0.8
    others = [tone(300.0, 2.0), 0.05 * np.random.default_rng(1).standard_normal(2 * SR)]
    others += non_speech(6, np.random.default_rng(7))
    assert not guard.is_speech(np.array([list(cues_of(y).values()) for y in others])).any()


def test_a_model_without_a_guard_flags_by_novelty(tiny_model_dir, tmp_path):
    d = tmp_path / "old"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    assert meta["guard"]["threshold"] > 0  # emovae train fits one
    del meta["guard"]
    (d / "model.json").write_text(json.dumps(meta))
    rec = Recognizer.load(d, backend="onnx")
    p = rec.predict_signal(voice_like(170, 1.5, seed=2), SR)
    assert rec.guard is None and p.speech is None and "speech" not in p.to_dict()
    assert p.in_domain == (p.novelty <= rec.novelty_threshold)


@pytest.mark.realdata
def test_shipped_guard_passes_unheard_speech_and_stops_non_speech():
    from emovae import audio, corpus

    libri = sorted((SHARED / "librispeech-sample").rglob("*.flac"))[::25]
    savee = [it.path for it in corpus.scan(SHARED / "savee")[0]][::48] if (SHARED / "savee").is_dir() else []
    if not libri:
        pytest.skip(f"no LibriSpeech sample at {SHARED}")
    rec = Recognizer.load(backend="onnx")
    speech = [rec.predict_signal(audio.load(p, SR), SR) for p in libri + savee]
    assert all(p.in_domain for p in speech), [(p.speech, f) for p, f in zip(speech, libri + savee)]
    rng = np.random.default_rng(3)
    other = [rec.predict_signal(y, SR) for y in [tone(440.0, 3.0), 0.03 * rng.standard_normal(3 * SR)]]
    assert not any(p.in_domain for p in other)
    assert min(p.speech for p in speech) > max(p.speech for p in other)
