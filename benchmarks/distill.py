"""Distillation experiment (issue 7, the path toward 0.75): how much of a better teacher's gain does a light
student keep? The teacher here is one we have: the statistics LR averaged over test-time speed copies (0.8-1.2x),
about 2-3 points better than one pass but 5x the extraction cost. Fixed before any result (2026-11-25 23:05):

- Teacher soft labels for every training clip come out of fold: the outer fold's training actors are dealt into 4
  groups (seeded); each group is predicted by an LR trained on the other groups (clips + 4 speed copies), its
  probabilities averaged over the clip's 5 speeds.
- Student: the same LR (C = 0.01, class-balanced, clips + 4 speed copies, z-scored with the training fold), target
  = 0.5 x one-hot + 0.5 x the clip's teacher label for every copy of the clip (per-class rows with weights).
  The baseline goes through the same code with the one-hot target (identical to the package's LR head).
- Scored in one pass (speed 1 only) on the outer test actors: the LR alone, and in the shipped thirds with the
  frame CNN and the log-mel CNN of `benchmarks/sequence.py` runs (their saved test probabilities).
- Fold seeds 0-8 (three draws of 5 folds). Rule: the distilled LR counts as a gain if the thirds improve on
  average in each draw and on at least 60 % of the 45 folds.

Usage: python benchmarks/distill.py --runs /tmp/seqruns/*.npz [--seeds 0 1 2 ...] [--jobs 2]
(needs .seqdata/seq64.npz from `python benchmarks/sequence.py data`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sequence  # noqa: E402  (also puts the package's src/ on the path)

ALPHA = 0.5  # weight of the one-hot label in the student's target
TEACHER_GROUPS = 4
MAIN, MEL = "cnn+speed+specaug+mixup", "mfccmel2d+speed+specaug+mixup"


def fit_lr(X: np.ndarray, Q: np.ndarray, y: np.ndarray, n_classes: int = 8):
    """Class-balanced multinomial LR (C = 0.01) on rows X (n, S) with soft targets Q (n, C): one weighted row per
    (clip, class with Q > 0), weight Q times the balanced weight of the clip's true class y."""
    from sklearn.linear_model import LogisticRegression

    counts = np.bincount(y, minlength=n_classes)
    bw = len(y) / (n_classes * np.maximum(counts, 1))
    rows, cls = np.nonzero(Q > 0)
    h = LogisticRegression(C=0.01, max_iter=3000)
    h.fit(X[rows], cls, sample_weight=Q[rows, cls] * bw[y[rows]])
    return h


def run_fold(job):
    """(seed, fold) -> {"base": probs, "student": probs, "teacher_tta": probs} on the fold's test clips."""
    seed, k, stats, y, actors = job
    from emovae.evaluate import actor_folds

    tr, te = actor_folds(actors, 5, seed)[k]
    n_copies = stats.shape[0]
    onehot = np.eye(8)[y]

    def train(idx, Q):  # LR on clips idx and their speed copies, each copy with its clip's target
        X = stats[:, idx].reshape(-1, stats.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        h = fit_lr((X - m) / s, np.tile(Q, (n_copies, 1)), np.tile(y[idx], n_copies))
        return lambda rows, c=0: h.predict_proba((stats[c, rows] - m) / s)

    # out-of-fold teacher labels: the LR with test-time speeds, from the other training actor groups
    groups = np.array_split(np.random.default_rng(1000 + seed * 10 + k).permutation(np.unique(actors[tr])),
                            TEACHER_GROUPS)
    soft = np.zeros((len(y), 8))
    for g in groups:
        held = tr[np.isin(actors[tr], g)]
        rest = tr[~np.isin(actors[tr], g)]
        pred = train(rest, onehot[rest])
        soft[held] = np.mean([pred(held, c) for c in range(n_copies)], axis=0)
    base = train(tr, onehot[tr])
    student = train(tr, ALPHA * onehot[tr] + (1 - ALPHA) * soft[tr])
    return {"key": (seed, k), "base": base(te), "student": student(te),
            "teacher_tta": np.mean([base(te, c) for c in range(n_copies)], axis=0),
            "teacher_train_ua": float(np.mean(soft[tr].argmax(1) == y[tr]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=".seqdata/seq64.npz")
    ap.add_argument("--runs", nargs="+", required=True, help="sequence.py train outputs (CNN test probabilities)")
    ap.add_argument("--seeds", nargs="+", type=int, default=list(range(9)))
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    from sklearn.metrics import balanced_accuracy_score as bas

    from emovae.evaluate import actor_folds

    t0 = time.time()
    d = sequence.load(Path(args.data))
    stats, y, actors = d["stats"].astype(np.float64), d["labels"], d["actors"]
    by, _, _ = sequence.load_runs(args.runs)
    jobs = [(s, k, stats, y, actors) for s in args.seeds for k in range(5)]
    with ProcessPoolExecutor(args.jobs) as pool:
        res = {r["key"]: r for r in pool.map(run_fold, jobs)}
    rows: dict[str, dict] = {"LR (one-hot targets, reference)": {}, "LR with test-time speeds 0.8-1.2x (teacher)": {},
                             "distilled LR (student)": {}, "shipped thirds: LR, frame CNN, log-mel CNN": {},
                             "thirds with the distilled LR": {}}
    for key, r in res.items():
        names = list(rows)
        for name, p in zip(names[:3], (r["base"], r["teacher_tta"], r["student"])):
            rows[name][key] = p
        if (MAIN, *key) in by and (MEL, *key) in by:
            cnns = by[(MAIN, *key)][0] + by[(MEL, *key)][0]
            rows[names[3]][key] = (r["base"] + cnns) / 3
            rows[names[4]][key] = (r["student"] + cnns) / 3

    def ua(probs, key):
        te = actor_folds(actors, 5, key[0])[key[1]][1]
        return bas(y[te], probs[key].argmax(1))

    print(f"- {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {time.time() - t0:.0f} s: "
          f"`python benchmarks/distill.py {' '.join(sys.argv[1:])}`; out-of-fold teacher accuracy on the "
          f"training clips {np.mean([r['teacher_train_ua'] for r in res.values()]):.3f}\n")
    draws = sorted({s // 3 for s in args.seeds})
    print("| configuration (strict, one pass) | " + " | ".join(f"seeds {3 * g}-{3 * g + 2}" for g in draws) + " |")
    print("|---" * (len(draws) + 1) + "|")
    for name, probs in rows.items():
        cells = []
        for g in draws:
            keys = [key for key in probs if key[0] // 3 == g]
            cells.append(f"{np.mean([ua(probs, key) for key in keys]):.3f}" if keys else "")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for new, ref in (("distilled LR (student)", "LR (one-hot targets, reference)"),
                     ("thirds with the distilled LR", "shipped thirds: LR, frame CNN, log-mel CNN")):
        for g in draws:
            keys = [key for key in rows[new] if key[0] // 3 == g]
            if keys:
                diff = np.array([ua(rows[new], key) - ua(rows[ref], key) for key in keys])
                print(f"- {new} vs {ref}, seeds {3 * g}-{3 * g + 2}: {diff.mean():+.4f} ± {diff.std():.4f}, "
                      f"better on {int((diff > 0).sum())}/{len(diff)}, equal on {int((diff == 0).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
