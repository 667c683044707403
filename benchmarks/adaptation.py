"""Session adaptation benchmark: balanced accuracy (UA) on unseen speakers against the number of earlier clips
of the same speaker, for emovae and for openSMILE ComParE_2016 + SVM given the same normalisation.

Actor-grouped 5-fold CV of the dev actors (``emovae.evaluate.actor_folds``, the shipped model's folds for
seed 0). In each fold emovae (default configs) and the peer are fitted on the training actors only. Then, for
every clip of a test actor, k earlier clips of that speaker are drawn (a random order fixed per clip and draw,
so the k = 1 clips are among the k = 2 ones, ...) and the clip is predicted the way ``emovae.session.Session``
does it: the speaker's moments are the model's prior (weight ``--prior-weight`` clips) merged with the k
earlier clips and the clip itself (unlabelled), and the prediction mixes the adapted and single-clip heads
with weight n / (n + prior weight) on the adapted one (n = clips behind the moments; the "adapted head alone"
row is the ablation without that mixture); k = 0 is the single-clip head, so that point IS the strict
single-clip number. Two enrolment kinds: clips of any emotion in random order, and neutral/calm clips only
(12 per RAVDESS actor, so k is capped at the 11 or 12 available). "all" = every other clip of that kind.

The peer gets exactly the same: its functionals z-scored with the same running moments (prior: the training
folds' mean and mean within-speaker std), an RBF SVM (C=10, standardised) trained on per-speaker z-scored
training functionals for k >= 1, and the plain global SVM for k = 0.

    python benchmarks/adaptation.py                 # seed 0, 3 draws; writes results-adaptation.md + .png
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
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fold_models import load_fold_model  # noqa: E402
DATA = HERE.parents[1] / "shared" / "data" / "ravdess-speech"
KS = (0, 1, 2, 4, 8, 16, "all")
KINDS = ("random", "neutral/calm")


def enrolment_orders(actors, labels, test_idx, kind: str, rng) -> dict[int, np.ndarray]:
    """For each test clip, the other clips of its speaker eligible for enrolment, in a random order."""
    out = {}
    for i in test_idx:
        pool = np.flatnonzero((actors == actors[i]) & (np.arange(len(actors)) != i))
        if kind == "neutral/calm":
            pool = pool[np.isin(labels[pool], (0, 1))]
        out[i] = rng.permutation(pool)
    return out


def session_moments(feats, test_idx, orders, k, prior, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std), each (len(test_idx), D): prior merged with the first k enrolment clips and the clip itself;
    and the number of the speaker's clips behind them, (len(test_idx),)."""
    from emovae.session import RunningMoments

    means, stds, counts = [], [], []
    for i in test_idx:
        enrol = orders[i] if k == "all" else orders[i][:k]
        m = RunningMoments(*prior, weight)
        m.update(feats[np.append(enrol, i)])
        mean, std = m.estimate()
        means.append(mean)
        stds.append(std)
        counts.append(m.n)
    return np.asarray(means), np.asarray(stds), np.asarray(counts)


def ua(y, pred) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, pred))


def run(seeds, draws, weights, log=print, models: Path | None = None) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    import peers
    from emovae.config import FeatureConfig
    from emovae.data import EMOTIONS
    from emovae.evaluate import actor_folds, table_features
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.features import model_inputs, speaker_normalize, speaker_prior
    from emovae.model import EmotionRecognizer
    from emovae.session import SessionConfig

    from emovae.config import TrainConfig

    table, _ = extract_dataset(DATA, FeatureConfig(), cache_dir=default_cache_dir(), n_jobs=os.cpu_count(),
                               progress=False)
    table.augment(TrainConfig().speed_perturb, cache_dir=default_cache_dir(), progress=False)
    X, labels, actors = table_features(table), np.asarray(table.labels), np.asarray(table.actors)
    y = np.array(EMOTIONS)[labels]
    compare, _ = peers.opensmile_functionals(table.paths, "ComParE_2016")
    res: dict = {}  # (system, kind, k) -> list of per-fold UA (mean over draws)

    def svm():
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10, gamma="scale"))

    for seed in seeds:
        for f, (tr, te) in enumerate(actor_folds(actors, 5, seed)):
            t0 = time.time()
            if models:  # the accuracy benchmark's model of this fold (same seed, same test actors)
                model = load_fold_model(models, seed, f, np.unique(actors[te]))
            else:
                model = EmotionRecognizer().fit([X[i] for i in tr], y[tr], groups=actors[tr],
                                                augmented=table.augmented_for(tr))
            # the test clips' statistics, with the fold's voice student's appended when the model has one
            seq_te, stats_te = model_inputs(model.prepare([X[i] for i in te]), model.net_.vae.seq_len)
            stats = np.zeros((len(X), stats_te.shape[1]), np.float32)  # indexed by clip; only test rows are used
            stats[te] = stats_te
            strict = model.classes_[model._run(seq_te, stats_te)["probabilities"].argmax(1)]
            peer_global = svm().fit(compare[tr], y[tr])
            peer_strict = peer_global.predict(compare[te])
            peer_adapted = svm().fit(speaker_normalize(compare[tr], actors[tr]), y[tr])
            peer_prior = speaker_prior(compare[tr], actors[tr])
            model_prior = model.speaker_prior_
            for kind in KINDS:
                for k in KS:
                    scores = {}
                    for d in range(draws):
                        rng = np.random.default_rng([seed, f, d, KINDS.index(kind)])
                        orders = enrolment_orders(actors, labels, te, kind, rng)
                        for w in weights:
                            key = ("emovae" if w == weights[0] else f"emovae (prior weight {w:g})", kind, k)
                            if k == 0:
                                pred = strict
                            else:  # as emovae.session does: the heads mixed with trust n / (n + w)
                                mean, std, n = session_moments(stats, te, orders, k, model_prior, w)
                                out = model._run(seq_te, stats_te, mean, std)
                                t = np.array([SessionConfig(prior_weight=w).trust(c) for c in n])[:, None]
                                p = (1 - t) * out["probabilities"] + t * out["probabilities_adapted"]
                                pred = model.classes_[p.argmax(1)]
                                if w == weights[0]:  # ablation: the adapted head alone
                                    alone = model.classes_[out["probabilities_adapted"].argmax(1)]
                                    scores.setdefault(("emovae (adapted head alone)", kind, k), []).append(
                                        ua(y[te], alone))
                            scores.setdefault(key, []).append(ua(y[te], pred))
                            if k == 0 and w == weights[0]:
                                scores.setdefault(("emovae (adapted head alone)", kind, k), []).append(
                                    ua(y[te], pred))
                        if k == 0:
                            pred = peer_strict
                        else:
                            mean, std, _ = session_moments(compare, te, orders, k, peer_prior, weights[0])
                            pred = peer_adapted.predict((compare[te] - mean) / std)
                        scores.setdefault(("ComParE_2016 + SVM", kind, k), []).append(ua(y[te], pred))
                    for key, v in scores.items():
                        res.setdefault(key, []).append(float(np.mean(v)))
            log(f"seed {seed} fold {f}: test actors {sorted(set(actors[te].tolist()))}, "
                f"emovae k=0 {res[('emovae', 'random', 0)][-1]:.3f}, k=8 {res[('emovae', 'random', 8)][-1]:.3f}, "
                f"all {res[('emovae', 'random', 'all')][-1]:.3f}; ComParE k=0 "
                f"{res[('ComParE_2016 + SVM', 'random', 0)][-1]:.3f}, k=8 {res[('ComParE_2016 + SVM', 'random', 8)][-1]:.3f}"
                f" ({time.time() - t0:.0f} s)")
    return res


def plot(res, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = np.arange(len(KS))
    styles = {("emovae", "random"): ("C0", "-o"), ("emovae", "neutral/calm"): ("C0", "--s"),
              ("ComParE_2016 + SVM", "random"): ("C3", "-o"), ("ComParE_2016 + SVM", "neutral/calm"): ("C3", "--s")}
    for (system, kind), (color, fmt) in styles.items():
        m = [np.mean(res[(system, kind, k)]) for k in KS]
        s = [np.std(res[(system, kind, k)]) for k in KS]
        ax.errorbar(xs + (0.04 if system != "emovae" else -0.04), m, yerr=s, fmt=fmt, color=color, capsize=3,
                    label=f"{system}, enrolment: {kind}", alpha=0.9, markersize=4)
    ax.axhline(0.125, color="grey", lw=0.8, ls=":")
    ax.set_xticks(xs, [str(k) for k in KS])
    ax.set_xlabel("earlier clips of the same speaker")
    ax.set_ylabel("balanced accuracy (UA), unseen speakers")
    ax.set_title("Session adaptation: actor-grouped 5-fold CV, mean ± std over folds", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(res, args, seconds: float) -> str:
    def cell(key):
        v = res[key]
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    systems = sorted({key[0] for key in res}, key=lambda s: (s != "emovae", "ComParE" in s, s))
    lines = [
        "# Session adaptation benchmark",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- Machine: {platform.platform()}; {os.cpu_count()} cores; Python {platform.python_version()}",
        f"- Command: `python benchmarks/adaptation.py {' '.join(sys.argv[1:])}".rstrip() + "`",
        f"- Split: actor-grouped 5-fold CV of the 20 dev actors (seeds {args.seeds}); {args.draws} random "
        "enrolment draws per clip, averaged; UA mean ± std over folds. Both systems fitted on the training actors "
        "only; the test speakers' clips are used unlabelled, as a session would see them.",
        f"- Normalisation: the clip and its k earlier clips, merged with the training prior counted as "
        f"{args.prior_weights[0]:g} clips (`emovae.session.RunningMoments`), for both systems; k = 0 is the "
        "strict single-clip model of each system.",
        f"- Whole run: {seconds:.0f} s wall.",
        "",
        "![UA against earlier clips](adaptation.png)",
        "",
        "| system | enrolment | " + " | ".join(f"k={k}" for k in KS) + " |",
        "|---|---|" + "---|" * len(KS),
    ]
    for system in systems:
        for kind in KINDS:
            if (system, kind, 0) in res:
                lines.append(f"| {system} | {kind} | " + " | ".join(cell((system, kind, k)) for k in KS) + " |")
    lines += ["", "Paired gain over the same system's single-clip number (k = 0), mean ± std over folds:", "",
              "| system | enrolment | k=1 | k=2 | k=4 | k=8 | k=16 | all |", "|---|---|---|---|---|---|---|---|"]
    for system in systems:
        for kind in KINDS:
            if (system, kind, 0) in res:
                base = np.array(res[(system, kind, 0)])
                lines.append(f"| {system} | {kind} | " + " | ".join(
                    f"{np.mean(np.array(res[(system, kind, k)]) - base):+.3f} ± "
                    f"{np.std(np.array(res[(system, kind, k)]) - base):.3f}" for k in KS[1:]) + " |")
    e8 = np.array(res[("emovae", "random", 8)])
    p8 = np.array(res[("ComParE_2016 + SVM", "random", 8)])
    e0 = np.array(res[("emovae", "random", 0)])
    lines += ["", "## What it shows", "",
              f"After 8 earlier clips of a speaker (random emotions), emovae's UA is {e8.mean():.3f} against "
              f"{e0.mean():.3f} single-clip: {e8.mean() - e0.mean():+.3f} (paired over folds, better on "
              f"{int(((e8 - e0) > 0).sum())} of {len(e8)} folds). ComParE_2016 + SVM with the same normalisation "
              f"reaches {p8.mean():.3f} at k = 8; emovae - ComParE = {np.mean(e8 - p8):+.3f} ± {np.std(e8 - p8):.3f} "
              f"(emovae better on {int(((e8 - p8) > 0).sum())} of {len(e8)} folds).",
              ""]
    if len(args.seeds) > 1:  # each fold draw on its own (folds are stored seed by seed, 5 per seed)
        lines += ["Per fold draw (5 folds each), emovae random enrolment: " + "; ".join(
            f"seed {s}: k=0 {e0[5 * i:5 * i + 5].mean():.3f}, k=8 {e8[5 * i:5 * i + 5].mean():.3f} "
            f"({(e8 - e0)[5 * i:5 * i + 5].mean():+.3f})" for i, s in enumerate(args.seeds)) + ".", ""]
        lines += ["UA at k = 8 and its paired change from k = 0, per fold draw (mean over its 5 folds):", "",
                  "| system | enrolment | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
                  "|---|---|" + "---|" * len(args.seeds)]
        for system in systems:
            for kind in KINDS:
                if (system, kind, 8) in res:
                    k8, k0 = np.array(res[(system, kind, 8)]), np.array(res[(system, kind, 0)])
                    lines.append(f"| {system} | {kind} | " + " | ".join(
                        f"{k8[5 * i:5 * i + 5].mean():.3f} ({(k8 - k0)[5 * i:5 * i + 5].mean():+.3f})"
                        for i in range(len(args.seeds))) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--draws", type=int, default=3, help="random enrolment orders per clip")
    ap.add_argument("--prior-weights", nargs="+", type=float, default=[8.0, 0.0, 2.0, 4.0], dest="prior_weights",
                    help="the first is the default used for both systems; the others are emovae ablations")
    ap.add_argument("--out", default=str(HERE), help="folder for results-adaptation.md and adaptation.png")
    ap.add_argument("--models", type=Path, metavar="DIR",
                    help="the fold models saved by accuracy.py --save-models DIR (same seeds) instead of training "
                         "each fold's emovae model here")
    args = ap.parse_args(argv)
    t0 = time.time()
    res = run(args.seeds, args.draws, args.prior_weights, models=args.models)
    out = Path(args.out)
    plot(res, out / "adaptation.png")
    text = report(res, args, time.time() - t0)
    (out / "results-adaptation.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
