"""Quick probes for issue 7 (strict single-clip mode): what might still add accuracy to the 941 statistics?

Logistic regression (C = 0.01, balanced, fixed a priori) on z-scored statistics, actor-grouped 5-fold CV for
fold seeds 0, 1, 2 (15 folds), paired against the 941 statistics alone on the same folds:

- gender: statistics z-scored per gender (training: true gender; test: the gender predicted by a logistic
  regression on the statistics, or the true one as an upper bound), with 0.9x/1.1x speed copies in training;
- egemaps: openSMILE eGeMAPSv02's 88 functionals appended (research-only licence: a probe of what is missing,
  not a dependency), whole set and per group;
- voice: a voice-quality block computed here from our own frames: HNR from YIN's aperiodicity d
  (10 log10((1 - d) / d) on voiced frames), loudness (sum over mel bands of power^0.3), jitter-like (relative
  change of consecutive F0 periods) and shimmer-like (change of consecutive voiced frames' level, dB); 7
  statistics each (mean, std, p10, p50, p90, skewness, slope).

- voice-copies: the voice-quality block with 0.9x/1.1x speed copies in training (block computed on the copies
  too), against the statistics with the same copies: the check on top of what is shipped.
- package-voice: the package's own voice-quality columns (`FeatureConfig(voice_quality=True)`, 981 statistics)
  against the same features without them (941), both with the shipped speed copies (`TrainConfig().speed_perturb`),
  strict and adapted (per-speaker z-scoring, each copy its own pseudo-speaker).

    python benchmarks/probes.py gender egemaps voice
    python benchmarks/probes.py package-voice --seeds 0 1 2 3 4 5
    python benchmarks/probes.py voice-copies --seeds 3 4 5     # confirm on re-drawn folds
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech"
EGEMAPS_GROUPS = ("F0semitone", "loudness", "spectralFlux", "mfcc", "jitter", "shimmer", "HNR", "logRelF0", "F1",
                  "F2", "F3", "alphaRatio", "hammarberg", "slope", "Segment", "equivalentSound")


def _seven(x: np.ndarray) -> np.ndarray:
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return np.zeros(7)
    m, s = x.mean(), x.std() + 1e-9
    return np.array([m, s, *np.percentile(x, [10, 50, 90]), ((x - m) ** 3).mean() / s**3,
                     np.polyfit(np.linspace(0, 1, len(x)), x, 1)[0]])


def voice_block(path: str, speed: float = 1.0) -> np.ndarray:
    """(28,) voice-quality statistics of one clip played at ``speed`` (see the module docstring)."""
    from emovae import audio
    from emovae import features as F
    from emovae.config import FeatureConfig

    cfg = FeatureConfig()
    y = audio.load(path, cfg.sample_rate)
    if speed != 1:
        y = audio.speed_perturb(y, cfg.sample_rate, speed)
    power, e = F.stft_power(y, cfg), F.frame_energy_db(y, cfg)
    loud = (e > cfg.silence_db) & (e > e.max() - cfg.trim_db)
    f0, ap = F.yin(y, cfg, frames_mask=loud)
    voiced = loud & (ap < cfg.yin_threshold)
    ap = np.clip(ap, 1e-4, 1 - 1e-4)
    hnr = np.where(voiced, 10 * np.log10((1 - ap) / ap), np.nan)
    loudness = np.where(loud, (F.mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels) @ power.T) ** 0.3, np.nan)
    span = F.speech_span(e, cfg)
    period = 1 / np.where(voiced, f0, np.nan)[span]
    return np.concatenate([_seven(hnr[span]), _seven(loudness.sum(0)[span]),
                           _seven(np.abs(np.diff(period)) / period[:-1]),
                           _seven(np.abs(np.diff(np.where(voiced, e, np.nan)[span])))])


def main(argv=None) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as bas

    from emovae.config import FeatureConfig
    from emovae.evaluate import actor_folds
    from emovae.extraction import default_cache_dir, extract_dataset

    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probes", nargs="*", default=["gender", "egemaps", "voice"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args(argv)
    probes = args.probes
    # the probes measure what the 941 statistics lacked before the voice-quality columns joined the package
    table, _ = extract_dataset(DATA, FeatureConfig(voice_quality=False), cache_dir=default_cache_dir(), progress=False)
    S, y, A = table.stats.astype(np.float64), np.asarray(table.labels), np.asarray(table.actors)
    G = A % 2
    folds = [f for seed in args.seeds for f in actor_folds(A, 5, seed)]

    def lr(c=0.01):
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)

    def cv(X):
        out = []
        for tr, te in folds:
            m, s = X[tr].mean(0), X[tr].std(0) + 1e-9
            out.append(bas(y[te], lr().fit((X[tr] - m) / s, y[tr]).predict((X[te] - m) / s)))
        return np.array(out)

    def row(name, r, base):
        d = r - base
        print(f"| {name} | {r.mean():.3f} ± {r.std():.3f} | {d.mean():+.3f} ± {d.std():.3f} | {int((d > 0).sum())}/{len(d)} |",
              flush=True)

    print("| probe | UA mean ± std | paired ΔUA | folds better |\n|---|---|---|---|")
    base = cv(S)
    row("941 statistics (reference)", base, base)
    if "gender" in probes:
        table.augment((0.9, 1.1), cache_dir=default_cache_dir(), progress=False)
        copies = [np.stack([x.stats for x in table.augmented[f]]).astype(np.float64) for f in (0.9, 1.1)]
        res = {k: [] for k in ("speed copies, global z-score (reference)", "gender z-score, true gender",
                               "gender z-score, predicted gender")}
        for tr, te in folds:
            Xtr = np.vstack([S[tr]] + [c[tr] for c in copies])
            ytr, gtr = np.tile(y[tr], 3), np.tile(G[tr], 3)
            m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
            res["speed copies, global z-score (reference)"].append(
                bas(y[te], lr().fit((Xtr - m) / s, ytr).predict((S[te] - m) / s)))
            gm = {g: Xtr[gtr == g].mean(0) for g in (0, 1)}
            gs = {g: Xtr[gtr == g].std(0) + 1e-9 for g in (0, 1)}
            head = lr().fit((Xtr - np.where(gtr[:, None] == 1, gm[1], gm[0])) / np.where(gtr[:, None] == 1, gs[1], gs[0]),
                            ytr)
            pred_g = lr(0.1).fit((Xtr - m) / s, gtr).predict((S[te] - m) / s)
            for name, g in (("gender z-score, true gender", G[te]), ("gender z-score, predicted gender", pred_g)):
                Xte = (S[te] - np.where(g[:, None] == 1, gm[1], gm[0])) / np.where(g[:, None] == 1, gs[1], gs[0])
                res[name].append(bas(y[te], head.predict(Xte)))
            print(f"  gender predicted correctly for {np.mean(pred_g == G[te]):.3f} of the test clips", file=sys.stderr)
        ref = np.array(res["speed copies, global z-score (reference)"])
        for name, r in res.items():
            row(name, np.array(r), ref)
    if "egemaps" in probes:
        import opensmile

        import peers

        E = np.asarray(peers.opensmile_functionals(table.paths, "eGeMAPSv02")[0], dtype=np.float64)
        row("+ eGeMAPSv02 (88)", cv(np.hstack([S, E])), base)
        names = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals).feature_names
        for g in EGEMAPS_GROUPS:
            idx = [i for i, n in enumerate(names) if g in n and not any(h in n for h in EGEMAPS_GROUPS[:EGEMAPS_GROUPS.index(g)])]
            row(f"+ eGeMAPS {g} ({len(idx)})", cv(np.hstack([S, E[:, idx]])), base)
    if "voice" in probes:
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            V = np.stack(list(pool.map(voice_block, table.paths, chunksize=20)))
        row("+ voice quality (28)", cv(np.hstack([S, V])), base)
        for i, name in enumerate(("HNR", "loudness", "jitter-like", "shimmer-like")):
            row(f"+ {name} (7)", cv(np.hstack([S, V[:, 7 * i:7 * i + 7]])), base)
    if "voice-copies" in probes:
        from functools import partial

        speeds = (0.9, 1.1)
        table.augment(speeds, cache_dir=default_cache_dir(), progress=False)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            V = [np.stack(list(pool.map(partial(voice_block, speed=f), table.paths, chunksize=20)))
                 for f in (1.0, *speeds)]
        stats = [S] + [np.stack([x.stats for x in table.augmented[f]]).astype(np.float64) for f in speeds]
        res = {"speed copies, 941 statistics (reference)": [], "speed copies, + voice quality (28)": []}
        for tr, te in folds:
            for name, blocks in zip(res, (stats, [np.hstack([a, v]) for a, v in zip(stats, V)])):
                Xtr, ytr = np.vstack([b[tr] for b in blocks]), np.tile(y[tr], len(blocks))
                m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
                res[name].append(bas(y[te], lr().fit((Xtr - m) / s, ytr).predict((blocks[0][te] - m) / s)))
        ref = np.array(res["speed copies, 941 statistics (reference)"])
        for name, r in res.items():
            row(name, np.array(r), ref)
    if "package-voice" in probes:
        from emovae.config import TrainConfig
        from emovae.features import speaker_normalize

        speeds = TrainConfig().speed_perturb
        blocks = {}
        for name, cfg in (("941 statistics (no voice quality)", FeatureConfig(voice_quality=False)),
                          ("981 statistics (with voice quality)", FeatureConfig(voice_quality=True))):
            t, _ = extract_dataset(DATA, cfg, cache_dir=default_cache_dir(), progress=False)
            t.augment(speeds, cache_dir=default_cache_dir(), progress=False)
            blocks[name] = [t.stats] + [np.stack([x.stats for x in t.augmented[f]]) for f in speeds]
        for mode in ("strict", "adapted"):
            res = {}
            for name, bl in blocks.items():
                bl = [speaker_normalize(b, A) if mode == "adapted" else b for b in bl]
                bl = [b.astype(np.float64) for b in bl]
                for tr, te in folds:
                    Xtr, ytr = np.vstack([b[tr] for b in bl]), np.tile(y[tr], len(bl))
                    m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
                    res.setdefault(f"{mode}, speed copies, {name}", []).append(
                        bas(y[te], lr().fit((Xtr - m) / s, ytr).predict((bl[0][te] - m) / s)))
            ref = np.array(next(iter(res.values())))
            for name, r in res.items():
                row(name, np.array(r), ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
