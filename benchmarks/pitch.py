"""Pitch trackers on real RAVDESS clips: emovae's numpy YIN vs librosa YIN and pYIN (speed and agreement).

Usage: python benchmarks/pitch.py [--data ../shared/data/ravdess-speech] [--every 25]
Prints per-clip time (ms, single thread) and, against pYIN as reference, voicing agreement and median
F0 difference in cents. Needs the bench extra (librosa).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/ravdess-speech"))
    ap.add_argument("--every", type=int, default=25, help="take every N-th file")
    args = ap.parse_args()

    import librosa

    from emovae import audio
    from emovae.config import FeatureConfig
    from emovae.features import frame_energy_db, yin

    cfg = FeatureConfig()
    files = sorted(Path(args.data).rglob("*.flac"))[:: args.every]
    times = {"emovae yin": [], "librosa yin": [], "librosa pyin": []}
    agree, cents = [], []
    for f in files:
        y = audio.load(f, cfg.sample_rate)
        e = frame_energy_db(y, cfg)
        loud = (e > e.max() - cfg.trim_db) & (e > cfg.silence_db)
        t0 = time.perf_counter()
        f0, ap_ = yin(y, cfg, frames_mask=loud)
        times["emovae yin"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        librosa.yin(y, fmin=cfg.f0_min, fmax=cfg.f0_max, sr=cfg.sample_rate, frame_length=cfg.yin_frame_length,
                    hop_length=cfg.hop_length)
        times["librosa yin"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        f0p, vp, _ = librosa.pyin(y, fmin=cfg.f0_min, fmax=cfg.f0_max, sr=cfg.sample_rate,
                                  frame_length=cfg.yin_frame_length, hop_length=cfg.hop_length)
        times["librosa pyin"].append(time.perf_counter() - t0)
        voiced = ap_ < cfg.yin_threshold
        agree.append(np.mean((voiced == vp)[loud]))
        both = voiced & vp & loud
        if both.any():
            cents.append(np.median(np.abs(1200 * np.log2(f0[both] / f0p[both]))))
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"{len(files)} clips, config threshold {cfg.yin_threshold}")
    base = np.median(times["emovae yin"])
    for name, t in times.items():
        print(f"{name:14s} median {1000 * np.median(t):7.2f} ms/clip  ({np.median(t) / base:5.1f} x emovae yin)")
    print(f"voicing agreement with pYIN (loud frames): {np.mean(agree):.3f}")
    print(f"median |F0 - pYIN F0| on frames both call voiced: {np.median(cents):.1f} cents")


if __name__ == "__main__":
    main()
