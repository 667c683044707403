"""Augmentation experiment: does training the classifier also on perturbed copies of the training clips (new
pseudo-speakers) help on unseen speakers?

Statistics (the package's default set: 941 until the voice-quality columns, 981 since) -> logistic regression (C = 0.01, balanced class weights, fixed a priori), actor-
grouped 5-fold CV for the given fold seeds (5 folds each), strict (global z-scoring) and adapted (per-speaker
z-scoring; each perturbed copy of a speaker is its own pseudo-speaker). The copies of the TRAINING actors' clips
join the training rows; the test clips are never perturbed. Paired difference against no augmentation on the
same folds.

A copy is named by kind and amount: speed0.9 (played 0.9x as fast: tempo and pitch, `emovae.audio.speed_perturb`,
as the package trains), pitch2 (+2 semitones, tempo kept), stretch1.15 (1.15x tempo, pitch kept; both librosa's
phase vocoder), noise20 (white noise at 20 dB SNR), pink15 (pink noise at 15 dB SNR), gain-6 (-6 dB),
vtlp1.1 (vocal-tract-length perturbation: the spectrum's frequency axis warped by 1.1, Jaitly & Hinton 2013, with
the bend at 4800 Hz; pitch, tempo and the time-domain YIN features untouched), reverb0.4 (convolved with a synthetic
room response: exponentially decaying Gaussian noise with a 0.4 s RT60 after a unit direct path, same RMS as the
clip). ``--base`` names copies that both arms of the comparison hold (say the shipped speed copies), so that a set
is measured on top of them.

    python benchmarks/augment.py --factors 0.9 1.1 --factors 0.8 0.9 1.1 1.2     # speed sets; markdown table
    python benchmarks/augment.py --set speed0.9,speed1.1,noise20 --set pitch-2,pitch2
    python benchmarks/augment.py --base speed0.8,speed0.9,speed1.1,speed1.2 --set vtlp0.9,vtlp1.1 --seeds 0 1 2 3 4 5
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
KINDS = ("speed", "pitch", "stretch", "noise", "pink", "gain", "vtlp", "reverb")
VTLP_BEND_HZ = 4800.0


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
    if kind == "vtlp":
        return y  # applied to the power spectrum inside the extraction (`_stats_of`)
    if kind == "reverb":
        return reverberate(y, sr, amount, rng)
    noise = rng.standard_normal(len(y))
    if kind == "pink":  # 1/f power: white noise shaped by 1/sqrt(f) in the frequency domain
        spec = np.fft.rfft(noise)
        noise = np.fft.irfft(spec / np.sqrt(np.maximum(np.arange(len(spec)), 1)), len(y))
    noise *= np.sqrt(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (amount / 10))
    return (y + noise).astype(np.float32)


def reverberate(y: np.ndarray, sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """y convolved with a synthetic room response (unit direct path, then Gaussian noise decaying by 60 dB over
    rt60 seconds, from 2.5 ms on, at 0.3 of the direct path's amplitude), rescaled to y's RMS; same length."""
    from scipy.signal import fftconvolve

    n = int(rt60 * sr)
    t = np.arange(n) / sr
    h = 0.3 * rng.standard_normal(n) * 10 ** (-3 * t / rt60)
    h[: int(0.0025 * sr)] = 0.0
    h[0] = 1.0
    wet = fftconvolve(y.astype(np.float64), h)[: len(y)]
    return (wet * np.sqrt(np.mean(y.astype(np.float64) ** 2) / max(np.mean(wet**2), 1e-20))).astype(np.float32)


def vtlp_warp(power: np.ndarray, sr: int, alpha: float, bend_hz: float = VTLP_BEND_HZ) -> np.ndarray:
    """Power spectrogram (frames, bins) with its frequency axis warped by alpha (a formant at f moves to alpha f
    below the bend; piecewise linear to the Nyquist frequency above it, which stays fixed)."""
    nyq = sr / 2
    g = np.linspace(0, nyq, power.shape[1])  # output bin frequencies
    knee = bend_hz * min(alpha, 1.0) / alpha  # source frequency of the bend
    src = np.where(g <= knee * alpha, g / alpha,
                   nyq - (nyq - g) * (nyq - knee) / (nyq - knee * alpha))
    lo = np.clip(np.floor(src / nyq * (power.shape[1] - 1)).astype(int), 0, power.shape[1] - 2)
    frac = src / nyq * (power.shape[1] - 1) - lo
    return power[:, lo] * (1 - frac) + power[:, lo + 1] * frac


def _stats_of(job: tuple) -> np.ndarray:
    i, path, name, cfg = job
    from emovae import audio, features

    y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
    kind, amount = parse_kind(name)
    if kind == "vtlp":  # warp the power spectrum every spectral feature is computed from
        stft = features.stft_power
        features.stft_power = lambda y_, cfg_: vtlp_warp(stft(y_, cfg_), cfg_.sample_rate, amount)
        try:
            return features.extract(y, cfg.sample_rate, cfg).stats
        finally:
            features.stft_power = stft
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
    ap.add_argument("--base", default="", help="copies in both arms, comma-separated (default: none)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args(argv)
    base_names = [n for n in args.base.split(",") if n]
    sets = [[f"speed{f:g}" for f in fs] for fs in args.factors or []] + [s.split(",") for s in args.sets]
    sets = sets or [["speed0.9", "speed1.1"]]
    t0 = time.time()
    table, _ = extract_dataset(DATA, FeatureConfig(), cache_dir=default_cache_dir(), progress=False)
    S, y, A = table.stats.astype(np.float64), np.asarray(table.labels), np.asarray(table.actors)
    aug = {n: perturbed_stats(table, n, default_cache_dir() / "augment-bench")
           for n in {n for s in sets for n in s} | set(base_names)}

    def score(Xtr, ytr, Xte, yte):
        m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
        h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000).fit((Xtr - m) / s, ytr)
        return balanced_accuracy_score(yte, h.predict((Xte - m) / s))

    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; {os.cpu_count()} cores; "
          f"`python benchmarks/augment.py {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    if base_names:
        print(f"Both arms train also on: {', '.join(base_names)}\n")
    print("| copies | mode | fold seeds | UA without | UA with | paired ΔUA | folds better |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("strict", "adapted"):
        norm = (lambda x: speaker_normalize(x, A).astype(np.float64)) if mode == "adapted" else (lambda x: x)
        Xo, Xa = norm(S), {n: norm(v) for n, v in aug.items()}
        for names in sets:
            base, withaug, seed_of = [], [], []
            for seed in args.seeds:
                for tr, te in actor_folds(A, 5, seed):
                    rows = [Xo[tr]] + [Xa[n][tr] for n in base_names]
                    base.append(score(np.vstack(rows), np.tile(y[tr], len(rows)), Xo[te], y[te]))
                    rows += [Xa[n][tr] for n in names]
                    withaug.append(score(np.vstack(rows), np.tile(y[tr], len(rows)), Xo[te], y[te]))
                    seed_of.append(seed)
            b, a, seed_of = np.array(base), np.array(withaug), np.array(seed_of)
            groups = [args.seeds] + ([args.seeds[i:i + 3] for i in range(0, len(args.seeds), 3)]
                                     if len(args.seeds) > 3 else [])
            for g in groups:
                keep = np.isin(seed_of, g)
                bg, ag = b[keep], a[keep]
                d = ag - bg
                print(f"| {', '.join(names)} | {mode} | {','.join(map(str, g))} | {bg.mean():.3f} ± {bg.std():.3f} | "
                      f"{ag.mean():.3f} ± {ag.std():.3f} | {d.mean():+.3f} ± {d.std():.3f} | "
                      f"{int((d > 0).sum())}/{len(d)} |", flush=True)
    print(f"\nWhole run {time.time() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
