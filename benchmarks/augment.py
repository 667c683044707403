"""Speed-perturbation experiment: does training the classifier also on the training clips played faster and
slower (pitch and tempo shifted: new pseudo-speakers) help on unseen speakers?

Statistics (the package's 941) -> logistic regression (C = 0.01, balanced class weights, fixed a priori), actor-
grouped 5-fold CV for fold seeds 0, 1, 2 (15 folds), strict (global z-scoring) and adapted (per-speaker z-scoring;
each perturbed copy of a speaker is its own pseudo-speaker). The copies of the TRAINING actors' clips join the
training rows; the test clips are never perturbed. Paired difference against no augmentation on the same folds.

    python benchmarks/augment.py --factors 0.9 1.1 --factors 0.8 0.9 1.1 1.2     # prints a markdown table
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


def main(argv=None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    from emovae.config import FeatureConfig
    from emovae.evaluate import actor_folds
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.features import speaker_normalize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factors", nargs="+", type=float, action="append", help="one set of speeds (repeatable)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args(argv)
    sets = args.factors or [[0.9, 1.1]]
    t0 = time.time()
    table, _ = extract_dataset(DATA, FeatureConfig(), cache_dir=default_cache_dir(), progress=False)
    table.augment(sorted({f for s in sets for f in s}), cache_dir=default_cache_dir(), progress=False)
    S, y, A = table.stats.astype(np.float64), np.asarray(table.labels), np.asarray(table.actors)
    aug = {f: np.stack([x.stats for x in table.augmented[f]]).astype(np.float64) for f in table.augmented}

    def score(Xtr, ytr, Xte, yte):
        m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
        h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000).fit((Xtr - m) / s, ytr)
        return balanced_accuracy_score(yte, h.predict((Xte - m) / s))

    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; {os.cpu_count()} cores; "
          f"`python benchmarks/augment.py {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    print("| speeds | mode | UA without | UA with | paired ΔUA | folds better |")
    print("|---|---|---|---|---|---|")
    for mode in ("strict", "adapted"):
        norm = (lambda x: speaker_normalize(x, A).astype(np.float64)) if mode == "adapted" else (lambda x: x)
        Xo, Xa = norm(S), {f: norm(v) for f, v in aug.items()}
        for factors in sets:
            base, withaug = [], []
            for seed in args.seeds:
                for tr, te in actor_folds(A, 5, seed):
                    base.append(score(Xo[tr], y[tr], Xo[te], y[te]))
                    rows = [Xo[tr]] + [Xa[f][tr] for f in factors]
                    withaug.append(score(np.vstack(rows), np.tile(y[tr], len(rows)), Xo[te], y[te]))
            b, a = np.array(base), np.array(withaug)
            d = a - b
            print(f"| {', '.join(f'{f:g}' for f in factors)} | {mode} | {b.mean():.3f} ± {b.std():.3f} | "
                  f"{a.mean():.3f} ± {a.std():.3f} | {d.mean():+.3f} ± {d.std():.3f} | {int((d > 0).sum())}/{len(d)} |",
                  flush=True)
    print(f"\nWhole run {time.time() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
