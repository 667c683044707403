"""Accuracy benchmark: emovae, its ablations and three peer feature sets under one speaker-independent split.

Every system is scored on the SAME actor-grouped 5-fold split (``emovae.evaluate.actor_folds`` with the
run's seed) of the dev actors, so the per-fold numbers are paired:

  emovae                  the shipped recipe (the package defaults): a voice student (128-unit LSTM trained per
                          fold on the training actors to reproduce the GE2E teacher's second layer) -> its 512
                          statistics + VAE latent mean -> logistic regression; its adapted head for "UA adapted"
  emovae (no latent)      the same, the heads without the VAE latent
  emovae (voice + hand-made statistics)  the same, the heads reading the hand-made statistics too (head_stats "all")
  VAE latent alone        the same, the heads reading the VAE latent mean only
  emovae (no voice student)  hand-made statistics + VAE latent -> logistic regression (FeatureConfig.voice = 0)
  previous model          hand-made statistics + VAE latent -> logistic regression and an MLP of 64 per head,
                          averaged in thirds with a frame CNN and a log-mel CNN (the model shipped before)
  eGeMAPSv02 + SVM        openSMILE functionals (88) -> StandardScaler + RBF SVC (C=10)
  ComParE_2016 + SVM      openSMILE functionals (6373) -> same SVM
  MFCC-stats + SVM        40-MFCC mean/std + spectral-centroid mean/std (82) -> same SVM

Usage: python benchmarks/accuracy.py [--data DIR] [--seeds 0 1 ...] [--out benchmarks/results-accuracy.md] [--quick]
Each seed is both the fold seed and the model seed. The four voice rows of a fold share one voice student: the
student depends only on the training clips, the seed and its config, which those rows have in common, so it is
trained once per fold and seed (``SharedStudent``) instead of four times (about 5 minutes each). Needs the train and bench extras (torch, sklearn,
librosa, opensmile). Peer features are cached in ~/.cache/emovae/peers (their original extraction time is
kept and reported); emovae's features are extracted once, uncached, into a temporary cache directory so
its extraction time is real.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (benchmarks/peers.py)

CHANCE = 0.125
METRICS = ("balanced_accuracy", "accuracy", "macro_f1")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


VOICE_ROWS = {"emovae": {}, "emovae (no latent)": {"use_latent": False},
              "emovae (voice + hand-made statistics)": {"head_stats": "all"},
              "VAE latent alone": {"use_stats": False}}
PREVIOUS = {"cnn_channels": 64, "mel_cnn": True, "stats_mlp": 64, "adapted_mlp": 64}  # the model shipped before
HAND_ROWS = {"emovae (no voice student)": {}, "previous model": PREVIOUS}
DIMS = {"emovae": "voice student 512 + latent", "emovae (no latent)": "voice student 512",
        "emovae (voice + hand-made statistics)": "{n} + voice student 512 + latent", "VAE latent alone": "latent",
        "emovae (no voice student)": "{n} + latent",
        "previous model": "{n} + latent (+ MLPs); frames (CNN); log-mel (2-D CNN)"}


class SharedStudent:
    """Memoises ``emovae.voice.train_student`` on its inputs (a digest of the mel bands and the arguments), so rows
    that would train the same student on the same clips train it once; the teacher's targets are computed only for
    a student not trained yet."""

    def __init__(self):
        import emovae.voice as voice

        self.voice, self.students, self.trained, self.last = voice, {}, 0, (None, None)
        self.teacher_frames, self.train_student = voice.teacher_frames, voice.train_student

    def digest(self, mels) -> str:
        """sha1 of the clips' mel bands (the list of one fit is hashed once)."""
        import hashlib

        if self.last[0] is not mels:
            h = hashlib.sha1()
            for m in mels:
                h.update(str(m.shape).encode())
                h.update(np.ascontiguousarray(m).tobytes())
            self.last = (mels, h.hexdigest())
        return self.last[1]

    def __enter__(self):
        def teacher_frames(mels, teacher):
            if any(k[0] == self.digest(mels) for k in self.students):
                return None  # that student is trained already: train_student answers from the memo
            return self.teacher_frames(mels, teacher)

        def train_student(mels, targets, **kw):
            key = (self.digest(mels), repr(sorted((k, v) for k, v in kw.items() if k != "progress")))
            if key not in self.students:
                if targets is None:
                    targets = self.teacher_frames(mels, self.voice.load_teacher())
                self.students[key] = self.train_student(mels, targets, **kw)
                self.trained += 1
            return self.students[key]

        self.voice.teacher_frames, self.voice.train_student = teacher_frames, train_student
        return self

    def __exit__(self, *exc):
        self.voice.teacher_frames, self.voice.train_student = self.teacher_frames, self.train_student
        self.last = (None, None)


def run_emovae(table, variant: str, seed: int, quick: bool, save_dir: Path | None = None) -> tuple[list[dict], float]:
    """Cross-validate one emovae variant -> (fold metric dicts, seconds for training + prediction). With
    ``save_dir``, each fold's fitted model is saved to ``save_dir/seed{seed}-fold{k}`` (``fold_models.py``)."""
    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
    from emovae.evaluate import cross_validate
    from emovae.model import EmotionRecognizer

    if variant in VOICE_ROWS:
        fcfg, ccfg = FeatureConfig(), ClassifierConfig(**VOICE_ROWS[variant])
    else:
        fcfg, ccfg = FeatureConfig(voice=0), ClassifierConfig(**HAND_ROWS[variant])
    vcfg = VAEConfig(epochs=5, warmup_epochs=2) if quick else VAEConfig()
    if quick:
        ccfg = ClassifierConfig(**{**ccfg.__dict__, "voice_epochs": 2})

    made = []

    def make():
        made.append(EmotionRecognizer(fcfg, vcfg, ccfg, TrainConfig(seed=seed)))
        return made[-1]

    t0 = time.perf_counter()
    res = cross_validate(table, make, n_splits=5, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    folds = res.metrics["folds"]
    if save_dir is not None:
        from fold_models import save_fold_model

        for k, (model, fold) in enumerate(zip(made, folds)):
            save_fold_model(model, save_dir, seed, k, fold["test_actors"], fold)
    for f, a in zip(folds, res.metrics["adapted"]["folds"]):  # the same models, speaker-normalised test clips
        f["adapted_balanced_accuracy"] = a["balanced_accuracy"]
    tta = res.metrics.get("test_time_augmented", {}).get("folds", [])  # the same models, test clips' copies
    for f, t in zip(tta, folds):
        t["tta"] = f
    return folds, seconds


def run_peer(X: np.ndarray, y_names: np.ndarray, actors: np.ndarray, seed: int) -> tuple[list[dict], float]:
    """SVM on a peer feature matrix over the same actor folds -> (fold metric dicts, seconds)."""
    from emovae.evaluate import actor_folds, compute_metrics

    from emovae.features import speaker_normalize

    folds = []
    t0 = time.perf_counter()
    Xs = speaker_normalize(X, actors)  # adapted mode: each actor's (unlabelled) clips z-scored together
    for tr, te in actor_folds(actors, n_splits=5, seed=seed):
        pred, _ = peers.svm_fold(X[tr], y_names[tr], X[te])
        m = compute_metrics(y_names[te], pred)
        m["test_actors"] = sorted(set(actors[te].tolist()))
        pred, _ = peers.svm_fold(Xs[tr], y_names[tr], Xs[te])
        m["adapted_balanced_accuracy"] = compute_metrics(y_names[te], pred)["balanced_accuracy"]
        folds.append(m)
    return folds, time.perf_counter() - t0


def fmt(vals) -> str:
    v = np.asarray(vals, dtype=float)
    return "—" if np.isnan(v).all() else f"{v.mean():.3f} ± {v.std():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/ravdess-speech"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold seed = model seed (default: 0)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results-accuracy.md"))
    ap.add_argument("--systems", nargs="+", metavar="NAME",
                    help="only these rows (names as in the table, e.g. emovae); default: all")
    ap.add_argument("--save-models", type=Path, metavar="DIR",
                    help="save the emovae row's fold models here (ood.py and adaptation.py --models reuse them)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: emovae, no-latent and eGeMAPS only, VAE trained for 5 epochs")
    args = ap.parse_args()
    t_run = time.perf_counter()

    from emovae.config import FeatureConfig
    from emovae.data import EMOTIONS
    from emovae.extraction import extract_dataset

    # emovae features: once, uncached (temp cache dir), so the time is the real cost.
    with tempfile.TemporaryDirectory(prefix="emovae-bench-") as tmp:
        t0 = time.perf_counter()
        table, skipped = extract_dataset(args.data, FeatureConfig(), cache_dir=Path(tmp), n_jobs=None,
                                         progress=True)
        emovae_extract_s = time.perf_counter() - t0
        from emovae.config import TrainConfig

        t0 = time.perf_counter()  # training augmentation: the clips played at other speeds (training cost)
        table.augment(TrainConfig().speed_perturb, cache_dir=Path(tmp), n_jobs=None, progress=True)
        augment_s = time.perf_counter() - t0
    n_jobs = os.cpu_count() or 1
    if skipped:
        print(f"[accuracy] skipped {len(skipped)} files, e.g. {skipped[:3]}")
    y_names = np.array(EMOTIONS)[table.labels]
    actors = table.actors
    paths = table.paths
    print(f"[accuracy] {len(table)} clips, {len(np.unique(actors))} actors; emovae features "
          f"({table.stats.shape[1]} statistics, {len(table.frame_names)} frame features) in "
          f"{emovae_extract_s:.1f} s on {n_jobs} processes", flush=True)

    # peer features (cached; original extraction seconds are reported).
    peer_sets = {"eGeMAPSv02 + SVM": lambda: peers.opensmile_functionals(paths, "eGeMAPSv02"),
                 "ComParE_2016 + SVM": lambda: peers.opensmile_functionals(paths, "ComParE_2016"),
                 "MFCC-stats + SVM": lambda: peers.mfcc_stats(paths)}
    emovae_variants = [*VOICE_ROWS, *HAND_ROWS]
    if args.quick:
        peer_sets = {"eGeMAPSv02 + SVM": peer_sets["eGeMAPSv02 + SVM"]}
        emovae_variants = ["emovae", "emovae (no latent)", "emovae (no voice student)"]
    if args.systems:
        unknown = set(args.systems) - set(emovae_variants) - set(peer_sets)
        if unknown:
            raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {emovae_variants + list(peer_sets)}")
        emovae_variants = [n for n in emovae_variants if n in args.systems]
        peer_sets = {n: f for n, f in peer_sets.items() if n in args.systems}
    peer_X = {}
    for name, extract in peer_sets.items():
        peer_X[name] = extract()

    # systems -> {"folds": [per seed, per fold metric dicts], "fit_s": seconds, "extract_s", "dims"}
    results: dict[str, dict] = {}
    for name in emovae_variants:
        results[name] = {"folds": [], "fit_s": augment_s, "extract_s": emovae_extract_s,
                         "dims": DIMS[name].format(n=len(table.stat_names))}
    for name, (X, seconds) in peer_X.items():
        results[name] = {"folds": [], "fit_s": 0.0, "extract_s": seconds, "dims": str(X.shape[1])}
    TTA = "emovae --tta (test clip + its 4 speed copies)"

    shared = SharedStudent()
    for seed in args.seeds:
        for name in emovae_variants:
            with shared:
                folds, s = run_emovae(table, name, seed, args.quick,
                                      args.save_models if name == "emovae" else None)
            results[name]["folds"].append(folds)
            if name == "emovae" and all("tta" in f for f in folds):  # same models: no training of its own
                results.setdefault(TTA, {"folds": [], "fit_s": 0.0, "extract_s": float("nan"),
                                         "dims": results[name]["dims"]})["folds"].append([f["tta"] for f in folds])
            results[name]["fit_s"] += s
            print(f"[accuracy] seed {seed} {name:<20} UA {fmt([f['balanced_accuracy'] for f in folds])}  "
                  f"({s:.1f} s)", flush=True)
        for name, (X, _) in peer_X.items():
            folds, s = run_peer(X, y_names, actors, seed)
            results[name]["folds"].append(folds)
            results[name]["fit_s"] += s
            print(f"[accuracy] seed {seed} {name:<20} UA {fmt([f['balanced_accuracy'] for f in folds])}  "
                  f"({s:.1f} s)", flush=True)

    # ---- table
    def flat(name, key):
        return [f.get(key, np.nan) for seed_folds in results[name]["folds"] for f in seed_folds]

    order = sorted(results, key=lambda n: -np.mean(flat(n, "balanced_accuracy")))
    n_folds_total = 5 * len(args.seeds)
    header = ("| system | features | UA (balanced acc.) | accuracy | macro-F1 | UA adapted (per speaker) | "
              f"feature extraction s | train + predict s ({n_folds_total} folds) |")
    lines = [header, "|" + "---|" * 8]
    for name in order:
        r = results[name]
        lines.append(f"| {name} | {r['dims']} | {fmt(flat(name, 'balanced_accuracy'))} | {fmt(flat(name, 'accuracy'))} | "
                     f"{fmt(flat(name, 'macro_f1'))} | {fmt(flat(name, 'adapted_balanced_accuracy'))} | "
                     f"{r['extract_s']:.1f} | {r['fit_s']:.1f} |".replace("| nan |", "| — |"))
    table_md = "\n".join(lines)

    # ---- paired difference: emovae - emovae (no latent), per fold
    diff_lines, diffs = [], []
    if "emovae" in results and "emovae (no latent)" in results:
        for si, seed in enumerate(args.seeds):
            a = results["emovae"]["folds"][si]
            b = results["emovae (no latent)"]["folds"][si]
            for k, (fa, fb) in enumerate(zip(a, b)):
                d = fa["balanced_accuracy"] - fb["balanced_accuracy"]
                diffs.append(d)
                diff_lines.append(f"| {seed} | {k} | {', '.join(str(x) for x in fa['test_actors'])} | "
                                  f"{fa['balanced_accuracy']:.3f} | {fb['balanced_accuracy']:.3f} | {d:+.3f} |")
    diffs = np.array(diffs)
    def paired(other: str, key: str) -> np.ndarray:
        """Per-fold ``key`` of emovae minus that of the ablation ``other`` (same folds), all seeds."""
        return np.array([fa[key] - fb[key] for si in range(len(args.seeds)) if other in results
                         for fa, fb in zip(results["emovae"]["folds"][si], results[other]["folds"][si])])

    # ---- interpretation (written from the numbers, whichever way they go)
    ua = {n: np.mean(flat(n, "balanced_accuracy")) for n in results}
    best = order[0]
    text = []
    if len(diffs):
        wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
        se = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        if abs(diffs.mean()) < 2 * se or np.isnan(se):
            verdict = ("the difference is within about two standard errors of zero, so this split gives no "
                       "evidence that the VAE latent improves recognition over the voice statistics alone")
        elif diffs.mean() > 0:
            verdict = "adding the VAE latent improves UA by more than two standard errors of the paired difference"
        else:
            verdict = "adding the VAE latent lowers UA by more than two standard errors of the paired difference"
        text.append(f"Adding the VAE latent to the voice statistics changes UA by {diffs.mean():+.3f} "
                    f"± {diffs.std():.3f} (mean ± std of the paired per-fold differences; standard error "
                    f"{se:.3f}); emovae is better on {wins} and worse on {losses} of {len(diffs)} folds: "
                    f"{verdict}.")
    for other, what in (("previous model", "the previous model (hand-made statistics, MLPs and two CNNs)"),
                        ("emovae (no voice student)", "the same heads on the hand-made statistics"),
                        ("emovae (voice + hand-made statistics)", "heads reading the hand-made statistics too")):
        d, d_a = paired(other, "balanced_accuracy"), paired(other, "adapted_balanced_accuracy")
        if len(d):
            text.append(f"Against {what}, emovae changes UA by {d.mean():+.3f} ± {d.std():.3f} (paired, "
                        f"{int((d > 0).sum())} of {len(d)} folds better) and the adapted UA by {d_a.mean():+.3f} ± "
                        f"{d_a.std():.3f} ({int((d_a > 0).sum())} of {len(d_a)} better).")
    if "VAE latent alone" in ua and "emovae (no latent)" in ua:
        text.append(f"The VAE latent alone reaches UA {ua['VAE latent alone']:.3f} (chance {CHANCE}), "
                    f"against {ua['emovae (no latent)']:.3f} for the voice statistics without it.")
    peer_names = [n for n in results if n in peer_X]
    if peer_names and "emovae" in ua:
        best_peer = max(peer_names, key=lambda n: ua[n])
        text.append((f"The best system is {best} (UA {ua[best]:.3f}); " if best != best_peer else "")
                    + ("the" if best != best_peer else "The") + f" best peer is {best_peer} (UA {ua[best_peer]:.3f}); emovae is "
                    f"{ua['emovae'] - ua[best_peer]:+.3f} UA from it. "
                    f"Fold-to-fold spread (the ± columns) is large because each test fold holds only "
                    f"{len(np.unique(actors)) // 5} speakers, so differences of a few points between systems "
                    f"are not resolved by this split.")
    if args.quick:
        text.append("**Quick smoke run** (VAE trained for 5 epochs, fewer systems): not a result.")

    cmd = "python benchmarks/accuracy.py" + ("" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:]))
    total_s = time.perf_counter() - t_run
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    md = [
        "# Accuracy benchmark: emovae vs. ablations and peer features",
        "",
        f"- Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- Machine: {platform.platform()}; CPU {cpu_model()}; {cores} cores; Python {platform.python_version()}",
        f"- Command: `{cmd}`",
        f"- Data: {len(table)} clips of {len(np.unique(actors))} actors ({Path(args.data).name}); "
        f"{len(skipped)} skipped",
        f"- Split: actor-grouped 5-fold cross-validation (`emovae.evaluate.actor_folds`, seed(s) "
        f"{', '.join(map(str, args.seeds))}), identical for every system. **Every number is speaker-independent**: "
        "no test actor's clips are used for training, scaling, early stopping or choosing C.",
        f"- Metrics: mean ± std over the {n_folds_total} folds ({len(args.seeds)} seed(s) x 5). "
        f"UA = balanced accuracy (mean per-class recall); chance = {CHANCE}.",
        f"- Whole run: {total_s:.0f} s wall.",
        "",
        "## Results (sorted by UA)",
        "",
        table_md,
        "",
        f"{TTA}: the models of the emovae row, each test clip scored also at 0.8x/0.9x/1.1x/1.2x speed "
        "and the five probability vectors averaged (`emovae predict --tta`); about 5 times the feature extraction "
        "per clip (results-latency.md), so it is not the default. Its extraction and training times are the "
        "emovae row's.",
        "",
        "UA adapted: the same folds in speaker-adapted mode, each system's features z-scored with all clips of "
        "the same speaker (unlabelled; test speakers included), emovae through its adapted head (same fitted "
        "models), the peers with an SVM trained on speaker-normalised features. The strict single-clip UA is the "
        "headline; adapted needs several clips of a speaker (see results-adaptation.md for the curve).",
        "",
        "Feature extraction time is wall time for all clips: emovae's was measured in this run, uncached "
        f"({n_jobs} processes); the peers' is the original (cached) extraction on all cores with openSMILE / "
        "librosa. Train + predict is the sum over folds (and seeds); for emovae it includes extracting the "
        f"features of every clip played at {'/'.join(f'{f:g}x' for f in TrainConfig().speed_perturb)} speed once ({augment_s:.1f} s: the classifier's training "
        "augmentation; only the training folds' copies are used in each fold). The emovae variants all train the VAE "
        "(the estimator always fits it), so \"no latent\" pays for a VAE it does not use. The voice rows share one "
        f"student per fold ({shared.trained} students trained for {len(args.seeds) * 5} folds), counted in the first "
        "voice row's time. Timings are wall "
        "times on a machine that may be shared with other work: compare them within one run only.",
        "",
        "## Paired difference: emovae − emovae (no latent)",
        "",
    ]
    if len(diffs):
        md += [f"UA difference per fold: **{diffs.mean():+.3f} ± {diffs.std():.3f}** (mean ± std over "
               f"{len(diffs)} folds).", "",
               "| seed | fold | test actors | UA emovae | UA no latent | difference |", "|---|---|---|---|---|---|",
               *diff_lines, ""]
    for other in ("previous model", "emovae (no voice student)", "emovae (voice + hand-made statistics)"):
        d, d_a = paired(other, "balanced_accuracy"), paired(other, "adapted_balanced_accuracy")
        if len(d):
            md += [f"## Paired difference: emovae − {other}", "",
                   f"UA difference per fold: **{d.mean():+.3f} ± {d.std():.3f}** (strict), "
                   f"**{d_a.mean():+.3f} ± {d_a.std():.3f}** (adapted), over {len(d)} folds: "
                   f"[{' '.join(f'{x:+.3f}' for x in d)}] / [{' '.join(f'{x:+.3f}' for x in d_a)}].", ""]
    md += ["## What it shows", "", " ".join(text), ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(md))

    print()
    print(table_md)
    if len(diffs):
        print(f"\nemovae − no latent, paired UA per fold: {diffs.mean():+.3f} ± {diffs.std():.3f}  "
              f"[{' '.join(f'{d:+.3f}' for d in diffs)}]")
    print("\n" + " ".join(text))
    print(f"\n[accuracy] wrote {args.out}; whole run {total_s:.0f} s")


if __name__ == "__main__":
    main()
