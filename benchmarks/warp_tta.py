"""Cheap test-time copies (issue 7): speed copies made on the frame matrix instead of the audio.

Averaging the statistics LR over real speed copies of the test clip (resample, extract again) gains 2-3 points
but costs 5 extractions (`experiments.md` sections 8 and 11). A speed change by s maps F0 to s x F0, the
spectrum's frequency axis to s x f, and time to t / s. All of that can be applied to the clip's frame matrix:
rows interpolated at steps of s, F0 and the centroid multiplied by s, the 40 MFCCs turned back into the smooth
64-band log-mel they hold, shifted along frequency and turned into MFCCs again, the deltas recomputed, the band
energy ratio corrected by the change the shifted bands imply, jitter and shimmer recomputed. Then only the
statistics (about 0.8 ms) are computed again per copy, not the STFT and YIN.

Fixed before any result (2026-11-25 23:30): warped copies at 0.9 and 1.1x, and at 0.8/0.9/1.1/1.2x; the LR
(C = 0.01, class-balanced, trained on the clips and their real speed copies, as the package's) averaged over
the clip and its warped copies, against one pass and against real copies; alone and in the thirds with the two
CNNs of the `sequence.py` runs (one pass each); fold seeds 0-8. Rule: worth shipping if the thirds with the
warped 0.9/1.1x copies improve on average in each fold draw and on at least 60 % of the 45 folds.

Usage: python benchmarks/warp_tta.py --runs /tmp/seqruns/*.npz [--seeds 0 1 ...]
(needs .seqdata/seq128.npz or seq64.npz from `python benchmarks/sequence.py data`: the real copies' statistics)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sequence  # noqa: E402  (also puts the package's src/ on the path)

from emovae import features as F  # noqa: E402
from emovae.config import FeatureConfig  # noqa: E402

MAIN, MEL = "cnn+speed+specaug+mixup", "mfccmel2d+speed+specaug+mixup"


def _band_hz(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band, (n_mels,)."""
    mels = np.linspace(F._hz_to_mel(0.0), F._hz_to_mel(cfg.sample_rate / 2), cfg.n_mels + 2)
    return F._mel_to_hz(mels[1:-1])


def speed_warp(frames: np.ndarray, factor: float, cfg: FeatureConfig) -> np.ndarray:
    """The frame matrix (frames, F) of ``frames``' clip as if played ``factor`` times faster, approximately."""
    names = F.frame_names(cfg)
    col = {n: i for i, n in enumerate(names)}
    n = frames.shape[0]
    m = max(2, int(round(n / factor)))
    pos = np.minimum(np.arange(m) * factor, n - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0)[:, None]
    x = (1 - w) * frames[i0].astype(np.float64) + w * frames[i1]  # NaN (unvoiced) where either row is
    nm = cfg.n_mfcc
    dct = F._dct_matrix(cfg.n_mels, nm)  # (n_mels, n_mfcc), orthonormal columns
    logmel = x[:, :nm] @ dct.T  # the smooth log-mel the MFCCs hold, (m, n_mels)
    hz = _band_hz(cfg)
    src = F._hz_to_mel(hz / factor)  # band k of the faster clip holds what band at hz / factor held
    ref = F._hz_to_mel(hz)
    floor = logmel.min(axis=1, keepdims=True)
    warped = np.stack([np.interp(src, ref, row, left=row[0], right=np.nan) for row in logmel])
    warped = np.where(np.isnan(warped), floor, warped)  # above the old Nyquist: nothing
    x[:, :nm] = warped @ dct
    if cfg.deltas:
        x[:, nm : 2 * nm] = F.deltas(x[:, :nm])
    f0 = x[:, col["f0_hz"]] * factor
    x[:, col["f0_hz"]] = f0
    x[:, col["voiced"]] = np.isfinite(f0)
    x[:, col["centroid_hz"]] *= factor
    below = hz < cfg.ber_split_hz

    def ber(lm):
        p = 10 ** (lm / 10)
        return 10 * np.log10(p[:, below].sum(1) / np.maximum(p[:, ~below].sum(1), 1e-30))

    x[:, col["ber_db"]] += ber(warped) - ber(logmel)
    if cfg.voice_quality:
        period = 1.0 / f0
        x[:, col["jitter"]] = np.concatenate([[np.nan], np.abs(np.diff(period)) / period[:-1]])
        level = np.where(np.isfinite(f0), x[:, col["rms_db"]], np.nan)
        x[:, col["shimmer_db"]] = np.concatenate([[np.nan], np.abs(np.diff(level))])
        x[:, col["hnr_db"]] = np.where(np.isfinite(f0), x[:, col["hnr_db"]], np.nan)
    return x.astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".seqdata/seq128.npz")
    ap.add_argument("--runs", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", type=int, default=list(range(9)))
    args = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as bas

    from emovae.evaluate import actor_folds
    from emovae.extraction import default_cache_dir, extract_dataset

    t0 = time.time()
    cfg = FeatureConfig()
    d = sequence.load(Path(args.data))
    stats, y, actors = d["stats"].astype(np.float64), d["labels"], d["actors"]
    table, _ = extract_dataset(sequence.DATA, cfg, cache_dir=default_cache_dir(), progress=False)
    assert np.array_equal(table.labels, y) and np.array_equal(table.actors, actors)
    factors = {"0.9/1.1x": (0.9, 1.1), "0.8-1.2x": (0.8, 0.9, 1.1, 1.2)}
    t1 = time.perf_counter()
    warped = {f: np.stack([F.utterance_stats(speed_warp(fr, f, cfg), cfg) for fr in table.frames]).astype(np.float64)
              for f in (0.8, 0.9, 1.1, 1.2)}
    per_copy_ms = (time.perf_counter() - t1) / (4 * len(y)) * 1000
    speeds = [float(s) for s in d["speeds"]]  # order of the real copies in stats: 1, 0.8, 0.9, 1.1, 1.2
    # how close are the warped statistics to the real copies'? (z-scored with all clips at speed 1)
    # (median over clips and statistics; statistics with no spread at speed 1 left out)
    z_sd = stats[0].std(0)
    keep = z_sd > 1e-6
    closeness = {f: np.median((np.abs(warped[f] - stats[speeds.index(f)]) / (z_sd + 1e-9))[:, keep]) for f in warped}
    untouched = {f: np.median((np.abs(stats[0] - stats[speeds.index(f)]) / (z_sd + 1e-9))[:, keep]) for f in warped}
    by, _, _ = sequence.load_runs(args.runs)
    rows: dict[str, dict] = {}
    for seed in args.seeds:
        for k, (tr, te) in enumerate(actor_folds(actors, 5, seed)):
            X = stats[:, tr].reshape(-1, stats.shape[-1])
            mu, sd = X.mean(0), X.std(0) + 1e-9
            h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
            h.fit((X - mu) / sd, np.tile(y[tr], stats.shape[0]))

            def proba(S):
                return h.predict_proba((S[te] - mu) / sd)

            one = proba(stats[0])
            cand = {"LR, one pass": one,
                    "LR, real copies 0.9/1.1x": np.mean([one] + [proba(stats[speeds.index(f)]) for f in (0.9, 1.1)], 0),
                    "LR, real copies 0.8-1.2x": np.mean([proba(s_) for s_ in stats], 0)}
            for name, fs in factors.items():
                cand[f"LR, warped copies {name}"] = np.mean([one] + [proba(warped[f]) for f in fs], 0)
            if (MAIN, seed, k) in by and (MEL, seed, k) in by:
                cnns = by[(MAIN, seed, k)][0] + by[(MEL, seed, k)][0]
                for name in ("LR, one pass", "LR, real copies 0.9/1.1x", "LR, warped copies 0.9/1.1x",
                             "LR, warped copies 0.8-1.2x"):
                    cand[f"thirds with {name}"] = (cand[name] + cnns) / 3
            for name, p in cand.items():
                rows.setdefault(name, {})[(seed, k)] = bas(y[te], p.argmax(1))
    print(f"- {time.strftime('%Y-%m-%d %H:%M')}, {time.time() - t0:.0f} s: `python benchmarks/warp_tta.py "
          f"{' '.join(sys.argv[1:])}`; one warped copy's statistics (warp + statistics, one thread): "
          f"{per_copy_ms:.2f} ms per clip\n")
    print("Median |difference| from the real speed copy's statistics, in standard deviations of each statistic: "
          + "; ".join(f"{f}x warped {closeness[f]:.3f}, unwarped {untouched[f]:.3f}" for f in warped) + "\n")
    draws = sorted({s // 3 for s in args.seeds})
    print("| strict UA | " + " | ".join(f"seeds {3 * g}-{3 * g + 2}" for g in draws) + " |")
    print("|---" * (len(draws) + 1) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.mean([v for (s_, _), v in r.items() if s_ // 3 == g]):.3f}"
                                           for g in draws) + " |")
    print()
    for new, ref in (("LR, warped copies 0.9/1.1x", "LR, one pass"), ("LR, warped copies 0.8-1.2x", "LR, one pass"),
                     ("thirds with LR, warped copies 0.9/1.1x", "thirds with LR, one pass"),
                     ("thirds with LR, warped copies 0.8-1.2x", "thirds with LR, one pass")):
        if new not in rows:
            continue
        for g in draws:
            keys = [key for key in rows[new] if key[0] // 3 == g]
            diff = np.array([rows[new][key] - rows[ref][key] for key in keys])
            print(f"- {new} vs {ref}, seeds {3 * g}-{3 * g + 2}: {diff.mean():+.4f} ± {diff.std():.4f}, better on "
                  f"{int((diff > 0).sum())}/{len(diff)}, equal on {int((diff == 0).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
