"""Session adaptation benchmark: balanced accuracy (UA) on unseen speakers against the number of earlier clips
of the same speaker, for emovae and for openSMILE ComParE_2016 + SVM given the same normalisation.

Speaker-grouped 5-fold CV of the dev actors (``emovae.evaluate.speaker_folds``, the shipped model's folds for
seed 0). In each fold emovae (default configs) and the peer are fitted on the training actors only; the emovae
model is then loaded as users load a model (``emovae.Recognizer``, torch backend: a fold model saved by
``accuracy.py --save-models``, or the one fitted here, saved to a temporary folder). Then, for every clip of a
test actor, k earlier clips of that speaker are drawn (a random order fixed per clip and draw, so the k = 1 clips
are among the k = 2 ones, ...) and the clip is predicted through a ``Session`` of that speaker
(``emovae.Session``, prior weight ``--prior-weights``): the session observes the k earlier clips and the clip
itself (unlabelled), and the prediction mixes the adapted and single-clip heads with weight n / (n + prior weight)
on the adapted one (n = clips behind the moments; the sessions' moments and trust go to one batched
``Recognizer.predict_features`` call per setting, which is what ``Session.predict_features`` does clip by clip).
The "adapted head alone" row is the ablation with trust 1. k = 0 is the single-clip head, so that point IS the
strict single-clip number. With "all" earlier clips and the default weight this is the batch path
(``Recognizer.predict_by_speaker``, the evaluation's adapted mode): the run checks they agree. Two enrolment
kinds: clips of any emotion in random order, and neutral/calm clips only (12 per RAVDESS actor, so k is capped
at the 11 or 12 available). "all" = every other clip of that kind.

The peer gets exactly the same: its functionals z-scored with the same running moments (prior: the training
folds' mean and mean within-speaker std), an RBF SVM (C=10, standardised) trained on per-speaker z-scored
training functionals for k >= 1, and the plain global SVM for k = 0.

    python benchmarks/adaptation.py                 # seed 0, 3 draws; writes results-adaptation.md + .png
    python benchmarks/adaptation.py --quick         # smoke run: 40 clips of 4 actors, 2 folds, MFCC peer
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import common

warnings.filterwarnings("ignore")
KS = (0, 1, 2, 4, 8, 16, "all")
KINDS = ("random", "neutral/calm")
PEERS = {"compare": "ComParE_2016 + SVM", "mfcc": "MFCC-stats + SVM"}


def enrolment_orders(speakers, labels, test_idx, kind: str, rng) -> dict[int, np.ndarray]:
    """For each test clip, the other clips of its speaker eligible for enrolment, in a random order (``labels``:
    label names)."""
    out = {}
    for i in test_idx:
        pool = np.flatnonzero((speakers == speakers[i]) & (np.arange(len(speakers)) != i))
        if kind == "neutral/calm":
            pool = pool[np.isin(labels[pool], ("neutral", "calm"))]
        out[i] = rng.permutation(pool)
    return out


def enrolment(orders, i, k) -> np.ndarray:
    return orders[i] if k == "all" else orders[i][:k]


def session_proba(rec, X, test_idx, orders, k, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Each test clip through a new ``Session`` of its speaker that first observes the clip's k earlier clips ->
    (probabilities (len(test_idx), C) as the session answers, those of the adapted head alone), ``rec.classes``
    order. X: the clips' features with the model's voice statistics (``rec.network.prepare``)."""
    means, stds, counts = [], [], []
    for i in test_idx:
        session = rec.session(cfg)
        for j in enrolment(orders, i, k):
            session.observe(X[j])
        moments, n = session.observe(X[i])
        if moments is None:  # too few clips: trust 0 gives the single-clip head, whatever the moments
            moments = session.moments.estimate()
        means.append(moments[0])
        stds.append(moments[1])
        counts.append(n)
    clips = [X[i] for i in test_idx]
    moments = (np.asarray(means), np.asarray(stds))

    def proba(trust):
        preds = rec.predict_features(clips, moments=moments, trust=trust)
        return np.array([[p.probabilities[c] for c in rec.classes] for p in preds])

    return proba(cfg.trust(np.asarray(counts))), proba(1.0)


def peer_moments(feats, test_idx, orders, k, prior, weight) -> tuple[np.ndarray, np.ndarray]:
    """The peer's (mean, std), each (len(test_idx), D): its prior merged with the first k enrolment clips and the
    clip itself, as a session's (``emovae.speaker.RunningMoments``)."""
    from emovae.speaker import RunningMoments

    means, stds = [], []
    for i in test_idx:
        m = RunningMoments(*prior, weight)
        m.update(feats[np.append(enrolment(orders, i, k), i)])
        mean, std = m.estimate()
        means.append(mean)
        stds.append(std)
    return np.asarray(means), np.asarray(stds)


def ua(y, pred) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, pred))


def fold_recognizer(models, seed, f, speakers, tr, te, X, y, table, tmp: Path, quick: bool):
    """This fold's emovae model as users load it: ``Recognizer.load`` of the accuracy benchmark's saved fold
    model (``models``), else of one fitted here on the training speakers and saved to ``tmp``."""
    from emovae import Recognizer

    if models:  # the accuracy benchmark's model of this fold (same seed, same test speakers)
        return Recognizer.load(common.fold_model_dir(models, seed, f, np.unique(speakers[te])), backend="torch")
    from emovae.train.estimator import EmotionRecognizer

    configs = common.quick_configs(seed) if quick else ()
    model = EmotionRecognizer(None, *configs).fit([X[i] for i in tr], y[tr], groups=speakers[tr],
                                                  augmented=table.augmented_for(tr))
    return Recognizer.load(model.save(tmp / f"seed{seed}-fold{f}"), backend="torch")


def run(args, log=print) -> tuple[dict, dict]:
    from emovae import SessionConfig
    from emovae.config import FeatureConfig, TrainConfig
    from emovae.evaluate import speaker_folds, table_features
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.speaker import speaker_normalize, speaker_prior

    seeds, draws, weights, peer = args.seeds, args.draws, args.prior_weights, PEERS[args.peer]
    tmp = Path(tempfile.mkdtemp(prefix="emovae-adaptation-"))
    data, cache, n_jobs = args.data, default_cache_dir(), None
    if args.quick:
        data, cache, n_jobs = common.quick_subset(args.data, tmp), tmp / "features", 1
    table, _ = extract_dataset(data, FeatureConfig(), cache_dir=cache, n_jobs=n_jobs, progress=False)
    table.augment(TrainConfig().speed_perturb, cache_dir=cache, n_jobs=n_jobs, progress=False)
    X, labels, speakers = table_features(table), table.labels, table.speakers
    y = labels
    features = common.peer_features(tmp / "peers" if args.quick else common.DEFAULT_CACHE)[peer]
    pX, _ = features(table.paths)
    res: dict = {}  # (system, kind, k) -> list of per-fold UA (mean over draws)
    checks = {"max_diff": 0.0, "disagree": 0, "clips": 0,  # k = all at the default weight vs predict_by_speaker
              "actors": len(np.unique(speakers))}
    cfgs = {w: SessionConfig(prior_weight=w) for w in weights}

    for seed in seeds:
        for f, (tr, te) in enumerate(speaker_folds(speakers, args.folds, seed)):
            t0 = time.time()
            rec = fold_recognizer(args.models, seed, f, speakers, tr, te, X, y, table, tmp, args.quick)
            Xp = [None] * len(X)  # the test clips with the fold's voice statistics; only test rows are used
            for i, xi in zip(te, rec.network.prepare([X[i] for i in te])):
                Xp[i] = xi
            classes = np.array(rec.classes)
            strict = classes[np.array([[p.probabilities[c] for c in rec.classes]
                                       for p in rec.predict_features([Xp[i] for i in te])]).argmax(1)]
            batch = rec.predict_by_speaker([Xp[i] for i in te], speakers[te], cfg=cfgs[weights[0]])
            batch = np.array([[p.probabilities[c] for c in rec.classes] for p in batch])
            peer_global = common.svm().fit(pX[tr], y[tr])
            peer_strict = peer_global.predict(pX[te])
            peer_adapted = common.svm().fit(speaker_normalize(pX[tr], speakers[tr]), y[tr])
            peer_prior = speaker_prior(pX[tr], speakers[tr])
            for kind in KINDS:
                for k in KS:
                    scores = {}
                    for d in range(draws):
                        rng = np.random.default_rng([seed, f, d, KINDS.index(kind)])
                        orders = enrolment_orders(speakers, labels, te, kind, rng)
                        for w in weights:
                            key = ("emovae" if w == weights[0] else f"emovae (prior weight {w:g})", kind, k)
                            if k == 0:
                                pred = alone = strict
                            else:  # as emovae.Session does: the heads mixed with trust n / (n + w)
                                p, p_alone = session_proba(rec, Xp, te, orders, k, cfgs[w])
                                pred, alone = classes[p.argmax(1)], classes[p_alone.argmax(1)]
                                if k == "all" and kind == "random" and w == weights[0]:
                                    checks["max_diff"] = max(checks["max_diff"], float(np.abs(p - batch).max()))
                                    checks["disagree"] += int((p.argmax(1) != batch.argmax(1)).sum())
                                    checks["clips"] += len(te)
                            scores.setdefault(key, []).append(ua(y[te], pred))
                            if w == weights[0]:  # ablation: the adapted head alone
                                scores.setdefault(("emovae (adapted head alone)", kind, k), []).append(
                                    ua(y[te], alone))
                        if k == 0:
                            pred = peer_strict
                        else:
                            mean, std = peer_moments(pX, te, orders, k, peer_prior, weights[0])
                            pred = peer_adapted.predict((pX[te] - mean) / std)
                        scores.setdefault((peer, kind, k), []).append(ua(y[te], pred))
                    for key, v in scores.items():
                        res.setdefault(key, []).append(float(np.mean(v)))
            log(f"seed {seed} fold {f}: test speakers {common.short_speakers(speakers[te])}, "
                f"emovae k=0 {res[('emovae', 'random', 0)][-1]:.3f}, k=8 {res[('emovae', 'random', 8)][-1]:.3f}, "
                f"all {res[('emovae', 'random', 'all')][-1]:.3f}; {peer} k=0 "
                f"{res[(peer, 'random', 0)][-1]:.3f}, k=8 {res[(peer, 'random', 8)][-1]:.3f}"
                f" ({time.time() - t0:.0f} s)")
    return res, checks


def plot(res, path: Path, peer: str, folds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = np.arange(len(KS))
    styles = {("emovae", "random"): ("C0", "-o"), ("emovae", "neutral/calm"): ("C0", "--s"),
              (peer, "random"): ("C3", "-o"), (peer, "neutral/calm"): ("C3", "--s")}
    for (system, kind), (color, fmt) in styles.items():
        m = [np.mean(res[(system, kind, k)]) for k in KS]
        s = [np.std(res[(system, kind, k)]) for k in KS]
        ax.errorbar(xs + (0.04 if system != "emovae" else -0.04), m, yerr=s, fmt=fmt, color=color, capsize=3,
                    label=f"{system}, enrolment: {kind}", alpha=0.9, markersize=4)
    ax.axhline(0.125, color="grey", lw=0.8, ls=":")
    ax.set_xticks(xs, [str(k) for k in KS])
    ax.set_xlabel("earlier clips of the same speaker")
    ax.set_ylabel("balanced accuracy (UA), unseen speakers")
    ax.set_title(f"Session adaptation: speaker-grouped {folds}-fold CV, mean ± std over folds", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(res, checks: dict, args, seconds: float) -> str:
    def cell(key):
        v = res[key]
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    peer, n = PEERS[args.peer], args.folds
    systems = sorted({key[0] for key in res}, key=lambda s: (s != "emovae", s == peer, s))
    lines = [
        "# Session adaptation benchmark",
        "",
        *common.header_lines("adaptation.py"),
        f"- Split: speaker-grouped {n}-fold CV of the {checks['actors']} dev actors (seeds {args.seeds}); "
        f"{args.draws} random "
        "enrolment draws per clip, averaged; UA mean ± std over folds. Both systems fitted on the training actors "
        "only; the test speakers' clips are used unlabelled, as a session would see them.",
        f"- Normalisation: the clip and its k earlier clips, merged with the training prior counted as "
        f"{args.prior_weights[0]:g} clips (`emovae.Session` for emovae, `emovae.speaker.RunningMoments` for the "
        "peer); k = 0 is the strict single-clip model of each system.",
        f"- The path users get: with all earlier clips and prior weight {args.prior_weights[0]:g}, the sessions "
        f"match `Recognizer.predict_by_speaker` (the evaluation's adapted mode) on {checks['clips']} clip "
        f"predictions: max probability difference {checks['max_diff']:.1e}, {checks['disagree']} different labels.",
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
    p8 = np.array(res[(peer, "random", 8)])
    e0 = np.array(res[("emovae", "random", 0)])
    lines += ["", "## What it shows", "",
              f"After 8 earlier clips of a speaker (random emotions), emovae's UA is {e8.mean():.3f} against "
              f"{e0.mean():.3f} single-clip: {e8.mean() - e0.mean():+.3f} (paired over folds, better on "
              f"{int(((e8 - e0) > 0).sum())} of {len(e8)} folds). {peer} with the same normalisation "
              f"reaches {p8.mean():.3f} at k = 8; emovae - peer = {np.mean(e8 - p8):+.3f} ± {np.std(e8 - p8):.3f} "
              f"(emovae better on {int(((e8 - p8) > 0).sum())} of {len(e8)} folds).",
              ""]
    if len(args.seeds) > 1:  # each fold draw on its own (folds are stored seed by seed, n per seed)
        lines += [f"Per fold draw ({n} folds each), emovae random enrolment: " + "; ".join(
            f"seed {s}: k=0 {e0[n * i:n * i + n].mean():.3f}, k=8 {e8[n * i:n * i + n].mean():.3f} "
            f"({(e8 - e0)[n * i:n * i + n].mean():+.3f})" for i, s in enumerate(args.seeds)) + ".", ""]
        lines += [f"UA at k = 8 and its paired change from k = 0, per fold draw (mean over its {n} folds):", "",
                  "| system | enrolment | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
                  "|---|---|" + "---|" * len(args.seeds)]
        for system in systems:
            for kind in KINDS:
                if (system, kind, 8) in res:
                    k8, k0 = np.array(res[(system, kind, 8)]), np.array(res[(system, kind, 0)])
                    lines.append(f"| {system} | {kind} | " + " | ".join(
                        f"{k8[n * i:n * i + n].mean():.3f} ({(k8 - k0)[n * i:n * i + n].mean():+.3f})"
                        for i in range(len(args.seeds))) + " |")
        lines.append("")
    if args.quick:
        lines += ["**Quick smoke run** (a few clips, short training): not a result.", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(ap, quick="2 folds, 1 draw, prior weight 8 only, a few epochs, the MFCC peer")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--folds", type=int, default=5, help="speaker-grouped folds (default 5)")
    ap.add_argument("--draws", type=int, default=3, help="random enrolment orders per clip")
    ap.add_argument("--prior-weights", nargs="+", type=float, default=[8.0, 0.0, 2.0, 4.0], dest="prior_weights",
                    help="the first is the default used for both systems; the others are emovae ablations")
    ap.add_argument("--peer", choices=sorted(PEERS), default="compare",
                    help="the peer's features: ComParE_2016 functionals (default) or MFCC statistics")
    ap.add_argument("--out", help="folder for results-adaptation.md and adaptation.png (default: benchmarks/)")
    ap.add_argument("--models", type=Path, metavar="DIR",
                    help="the fold models saved by accuracy.py --save-models DIR (same seeds) instead of training "
                         "each fold's emovae model here")
    args = ap.parse_args(argv)
    if args.quick:
        args.folds, args.draws, args.prior_weights, args.peer = 2, 1, args.prior_weights[:1], "mfcc"
    out = Path(args.out) if args.out else common.results_path("adaptation", args.quick).parent
    t0 = time.time()
    res, checks = run(args)
    out.mkdir(parents=True, exist_ok=True)
    plot(res, out / "adaptation.png", PEERS[args.peer], args.folds)
    text = report(res, checks, args, time.time() - t0)
    common.write_results(out / "results-adaptation.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
