"""Augmentation experiment: does training the classifier also on perturbed copies of the training clips (new
pseudo-speakers) help on unseen speakers?

Statistics (the package's default set: 941 until the voice-quality columns, 981 since) -> logistic regression (C = 0.01, balanced class weights, fixed a priori), actor-
grouped 5-fold CV for the given fold seeds (5 folds each), strict (global z-scoring) and adapted (per-speaker
z-scoring; each perturbed copy of a speaker is its own pseudo-speaker). The copies of the TRAINING actors' clips
join the training rows; the test clips are never perturbed. Paired difference against no augmentation on the
same folds.

A copy is named by kind and amount: speed0.9 (played 0.9x as fast: tempo and pitch, `emovae.audio.speed_perturb`,
as the package trains), pitch2 (+2 semitones, tempo kept), stretch1.15 (1.15x tempo, pitch kept; both librosa's
phase vocoder), noise20 (white noise at 20 dB SNR), pink15 (pink noise at 15 dB SNR), gain-6 (-6 dB).

    python benchmarks/augment.py --factors 0.9 1.1 --factors 0.8 0.9 1.1 1.2     # speed sets; markdown table
    python benchmarks/augment.py --set speed0.9,speed1.1,noise20 --set pitch-2,pitch2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech"
KINDS = ("speed", "pitch", "stretch", "noise", "pink", "gain")


def parse_kind(name: str) -> tuple[str, float]:
    """'pitch-2' -> ('pitch', -2.0)."""
    for kind in KINDS:
        if name.startswith(kind):
            return kind, float(name[len(kind):])
    raise SystemExit(f"unknown augmentation {name!r}: use one of {', '.join(KINDS)} followed by an amount")


def perturb(y: np.ndarray, sr: int, name: str, rng: np.random.Generator) -> np.ndarray:
    """The clip y (float32, sr Hz) perturbed as ``name`` says (see the module docstring)."""
    kind, amount = parse_kind(name)
    if kind == "speed":
        from emovae.audio import speed_perturb

        return speed_perturb(y, sr, amount)
    if kind in ("pitch", "stretch"):
        import librosa

        if kind == "pitch":
            return librosa.effects.pitch_shift(y, sr=sr, n_steps=amount).astype(np.float32)
        return librosa.effects.time_stretch(y, rate=amount).astype(np.float32)
    if kind == "gain":
        return (y * 10 ** (amount / 20)).astype(np.float32)
    noise = rng.standard_normal(len(y))
    if kind == "pink":  # 1/f power: white noise shaped by 1/sqrt(f) in the frequency domain
        spec = np.fft.rfft(noise)
        noise = np.fft.irfft(spec / np.sqrt(np.maximum(np.arange(len(spec)), 1)), len(y))
    noise *= np.sqrt(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (amount / 10))
    return (y + noise).astype(np.float32)


def _stats_of(job: tuple) -> np.ndarray:
    i, path, name, cfg = job
    from emovae import audio, features

    y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
    return features.extract(perturb(y, cfg.sample_rate, name, np.random.default_rng(i)), cfg.sample_rate, cfg).stats


def perturbed_stats(table, name: str, cache: Path) -> np.ndarray:
    """(N, S) statistics of every clip of ``table`` perturbed as ``name``; speed copies come from the package's
    own cache (``FeatureTable.augment``), the others are computed here and kept in ``cache``."""
    from concurrent.futures import ProcessPoolExecutor

    from emovae.config import config_hash

    kind, amount = parse_kind(name)
    if kind == "speed":
        from emovae.extraction import default_cache_dir

        table.augment([amount], cache_dir=default_cache_dir(), progress=False)
        return np.stack([x.stats for x in table.augmented[amount]]).astype(np.float64)
    f = cache / f"{config_hash(table.config)}-{len(table)}-{name}.npy"
    if not f.exists():
        cache.mkdir(parents=True, exist_ok=True)
        jobs = [(i, p, name, table.config) for i, p in enumerate(table.paths)]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            np.save(f, np.stack(list(pool.map(_stats_of, jobs, chunksize=20))))
    return np.load(f).astype(np.float64)


def main(argv=None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    from emovae.config import FeatureConfig
    from emovae.evaluate import actor_folds
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.features import speaker_normalize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factors", nargs="+", type=float, action="append", help="one set of speeds (repeatable)")
    ap.add_argument("--set", action="append", dest="sets", default=[],
                    help="one set of copies, comma-separated, e.g. speed0.9,speed1.1,noise20 (repeatable)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args(argv)
    sets = [[f"speed{f:g}" for f in fs] for fs in args.factors or []] + [s.split(",") for s in args.sets]
    sets = sets or [["speed0.9", "speed1.1"]]
    t0 = time.time()
    table, _ = extract_dataset(DATA, FeatureConfig(), cache_dir=default_cache_dir(), progress=False)
    S, y, A = table.stats.astype(np.float64), np.asarray(table.labels), np.asarray(table.actors)
    aug = {n: perturbed_stats(table, n, default_cache_dir() / "augment-bench") for n in {n for s in sets for n in s}}

    def score(Xtr, ytr, Xte, yte):
        m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
        h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000).fit((Xtr - m) / s, ytr)
        return balanced_accuracy_score(yte, h.predict((Xte - m) / s))

    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; {os.cpu_count()} cores; "
          f"`python benchmarks/augment.py {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    print("| copies | mode | UA without | UA with | paired ΔUA | folds better |")
    print("|---|---|---|---|---|---|")
    for mode in ("strict", "adapted"):
        norm = (lambda x: speaker_normalize(x, A).astype(np.float64)) if mode == "adapted" else (lambda x: x)
        Xo, Xa = norm(S), {n: norm(v) for n, v in aug.items()}
        for names in sets:
            base, withaug = [], []
            for seed in args.seeds:
                for tr, te in actor_folds(A, 5, seed):
                    base.append(score(Xo[tr], y[tr], Xo[te], y[te]))
                    rows = [Xo[tr]] + [Xa[n][tr] for n in names]
                    withaug.append(score(np.vstack(rows), np.tile(y[tr], len(rows)), Xo[te], y[te]))
            b, a = np.array(base), np.array(withaug)
            d = a - b
            print(f"| {', '.join(names)} | {mode} | {b.mean():.3f} ± {b.std():.3f} | "
                  f"{a.mean():.3f} ± {a.std():.3f} | {d.mean():+.3f} ± {d.std():.3f} | {int((d > 0).sum())}/{len(d)} |",
                  flush=True)
    print(f"\nWhole run {time.time() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
