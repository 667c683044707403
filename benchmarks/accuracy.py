"""Accuracy benchmark: emovae, its ablations and three peer feature sets under one speaker-independent split.

Every system is scored on the SAME speaker-grouped 5-fold split of the dev actors
(``emovae.evaluate.speaker_folds`` with the run's seed over the speakers "ravdess/01".."ravdess/20"; the folds of
the earlier ``actor_folds``), so the per-fold numbers are paired:

  emovae                  the shipped recipe (the package defaults): a voice student (128-unit LSTM trained per
                          fold on the training actors to reproduce the GE2E teacher's second layer) -> its 512
                          statistics + VAE latent mean -> logistic regression; ``emovae.evaluate.cross_validate``
  emovae (no latent)      the same, the heads without the VAE latent
  emovae (voice + hand-made statistics)  the same, the heads reading the hand-made statistics too
  VAE latent alone        the same, the heads reading the VAE latent mean only
  emovae (no voice student)  hand-made statistics + VAE latent -> logistic regression (FeatureConfig.voice = 0)
  eGeMAPSv02 + SVM        openSMILE functionals (88) -> StandardScaler + RBF SVC (C=10)
  ComParE_2016 + SVM      openSMILE functionals (6373) -> same SVM
  MFCC-stats + SVM        40-MFCC mean/std + spectral-centroid mean/std (82) -> same SVM

"UA adapted" is the users' adapted path for every emovae row (``Network.forward_by_speaker``, what
``evaluate --speaker-norm`` and ``predict --speaker-from`` answer: each speaker's moments pooled with the model's
prior of weight 8, the heads mixed with trust n / (n + 8)); for the peers, an SVM on speaker-normalised features.

The three ablations of the voice rows differ from the emovae row only in the heads, so they reuse the emovae row's
voice student of each fold instead of training their own (about 5 minutes each): the fold's fitted emovae model
appends its student's 512 statistics to every clip and speed copy (``EmotionRecognizer.prepare``), and each
ablation is an ``EmotionRecognizer`` with ``FeatureConfig(voice=0)`` fitted on those features ("no latent" on the
512 voice statistics alone, its heads then reading exactly what the voice-student model's heads read). Asking for
one of them also runs the emovae row. The previous model (the retired CNN/MLP recipe) is no longer a row: its numbers
stay in results-accuracy.md as history (its script last ran at commit 169fe87; docs/research.md).

Usage: python benchmarks/accuracy.py [--data DIR] [--seeds 0 1 ...] [--out FILE] [--systems NAME ...]
       [--save-models DIR] [--quick]
Each seed is both the fold seed and the model seed. Needs the train and bench extras (torch, sklearn, librosa,
opensmile). Peer features are cached in ~/.cache/emovae/peers (their original extraction time is kept and
reported); emovae's features are extracted once, uncached, into a temporary cache directory so its extraction time
is real. ``--quick``: 40 clips of 4 actors, 2 folds, a few epochs, emovae / no latent / no voice student and the
MFCC peer; about a minute, written to a temporary folder; not a result.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import common

CHANCE = 0.125
METRICS = ("balanced_accuracy", "accuracy", "macro_f1")

#: the voice rows whose heads differ from the emovae row's: ClassifierConfig fields, and the statistics they read
DERIVED = {"emovae (no latent)": ({"use_latent": False}, "voice"),
           "emovae (voice + hand-made statistics)": ({"head_stats": "all"}, "all"),
           "VAE latent alone": ({"use_stats": False}, "all")}
SYSTEMS = ["emovae", *DERIVED, "emovae (no voice student)"]
DIMS = {"emovae": "voice student 512 + latent", "emovae (no latent)": "voice student 512",
        "emovae (voice + hand-made statistics)": "{n} + voice student 512 + latent", "VAE latent alone": "latent",
        "emovae (no voice student)": "{n} + latent"}


def model_configs(quick: bool, seed: int):
    from emovae.config import ClassifierConfig, TrainConfig, VAEConfig

    return common.quick_configs(seed) if quick else (VAEConfig(), ClassifierConfig(), TrainConfig(seed=seed))


def run_emovae(table, variant: str, seed: int, n_splits: int, quick: bool,
               save_dir: Path | None = None) -> tuple[list[dict], float, list]:
    """Cross-validate the emovae row or the no-voice-student row -> (fold metric dicts, seconds for training +
    prediction, the fitted models in fold order). With ``save_dir``, each fold's model is saved to
    ``save_dir/seed{seed}-fold{k}`` (``common.save_fold_model``)."""
    from emovae.config import FeatureConfig
    from emovae.evaluate import cross_validate
    from emovae.train.estimator import EmotionRecognizer

    vcfg, ccfg, tcfg = model_configs(quick, seed)
    fcfg = FeatureConfig() if variant == "emovae" else FeatureConfig(voice=0)
    made = []

    def make():
        made.append(EmotionRecognizer(fcfg, vcfg, ccfg, tcfg))
        return made[-1]

    t0 = time.perf_counter()
    res = cross_validate(table, make, n_splits=n_splits, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    folds = res.metrics["folds"]
    if save_dir is not None:
        for k, (model, fold) in enumerate(zip(made, folds)):
            common.save_fold_model(model, save_dir, seed, k, fold["test_speakers"], fold)
    for f, a in zip(folds, res.metrics["adapted"]["folds"]):  # the same models, each test speaker's clips together
        f["adapted_balanced_accuracy"] = a["balanced_accuracy"]
    tta = res.metrics.get("test_time_augmented", {}).get("folds", [])  # the same models, test clips' copies
    for f, t in zip(tta, folds):
        t["tta"] = f
    return folds, seconds, made


def voice_features(model, X: list, augmented: dict) -> tuple[list, dict, float]:
    """Clips X and their speed copies with the fitted ``model``'s voice statistics appended -> (X, copies,
    seconds)."""
    t0 = time.perf_counter()
    Xv = model.prepare(X)
    copies = {}
    for f, cs in augmented.items():
        keep = [i for i, c in enumerate(cs) if c is not None]
        done = model.prepare([cs[i] for i in keep]) if keep else []
        copies[f] = [None] * len(cs)
        for i, c in zip(keep, done):
            copies[f][i] = c
    return Xv, copies, time.perf_counter() - t0


def only_voice(X: list) -> list:
    """Features with only the voice student's statistics (``emovae.voice.voice_names``) left; None stays None."""
    from emovae.voice import voice_names

    names = set(voice_names())
    first = next(f for f in X if f is not None)
    cols = [i for i, n in enumerate(first.stat_names) if n in names]
    kept = tuple(first.stat_names[i] for i in cols)
    return [None if f is None else replace(f, stats=f.stats[cols], stat_names=kept) for f in X]


def run_derived(table, models: list, variants: list[str], seed: int, n_splits: int, quick: bool
                ) -> tuple[dict[str, list[dict]], dict[str, float], float]:
    """The ablations of the voice rows on each fold's emovae student (``models``, in fold order) -> ({row: fold
    metric dicts}, {row: seconds for training + prediction}, seconds spent computing the voice statistics)."""
    from emovae.config import ClassifierConfig, FeatureConfig
    from emovae.evaluate import compute_metrics, speaker_folds, table_features
    from emovae.train.estimator import EmotionRecognizer

    vcfg, ccfg, tcfg = model_configs(quick, seed)
    X, y, speakers, classes = table_features(table), table.labels, table.speakers, table.classes
    folds: dict[str, list[dict]] = {v: [] for v in variants}
    seconds = dict.fromkeys(variants, 0.0)
    voice_s = 0.0
    for (tr, te), model in zip(speaker_folds(speakers, n_splits, seed), models):
        Xv, copies, s = voice_features(model, X, table.augmented_for(np.arange(len(X))))
        voice_s += s
        for v in variants:
            fields, reads = DERIVED[v]
            Xr = only_voice(Xv) if reads == "voice" else Xv
            cr = {f: only_voice(cs) if reads == "voice" else cs for f, cs in copies.items()}
            t0 = time.perf_counter()
            est = EmotionRecognizer(FeatureConfig(voice=0), vcfg, ClassifierConfig(**{**ccfg.__dict__, **fields}),
                                    tcfg)
            est.fit([Xr[i] for i in tr], y[tr], groups=speakers[tr],
                    augmented={f: [cs[i] for i in tr] for f, cs in cr.items()})
            Xte = [Xr[i] for i in te]
            m = compute_metrics(y[te], est.predict(Xte), classes)
            m["adapted_balanced_accuracy"] = compute_metrics(y[te], est.predict(Xte, speakers[te]),
                                                             classes)["balanced_accuracy"]
            m["test_speakers"] = sorted(set(speakers[te].tolist()))
            folds[v].append(m)
            seconds[v] += time.perf_counter() - t0
    return folds, seconds, voice_s


def run_peer(X: np.ndarray, y_names: np.ndarray, speakers: np.ndarray, classes, seed: int, n_splits: int
             ) -> tuple[list[dict], float]:
    """SVM on a peer feature matrix over the same speaker folds -> (fold metric dicts, seconds)."""
    from emovae.evaluate import compute_metrics, speaker_folds
    from emovae.speaker import speaker_normalize

    folds = []
    t0 = time.perf_counter()
    Xs = speaker_normalize(X, speakers)  # adapted mode: each speaker's (unlabelled) clips z-scored together
    for tr, te in speaker_folds(speakers, n_splits=n_splits, seed=seed):
        pred, _ = common.svm_fold(X[tr], y_names[tr], X[te])
        m = compute_metrics(y_names[te], pred, classes)
        m["test_speakers"] = sorted(set(speakers[te].tolist()))
        pred, _ = common.svm_fold(Xs[tr], y_names[tr], Xs[te])
        m["adapted_balanced_accuracy"] = compute_metrics(y_names[te], pred, classes)["balanced_accuracy"]
        folds.append(m)
    return folds, time.perf_counter() - t0


def fmt(vals) -> str:
    v = np.asarray(vals, dtype=float)
    return "—" if np.isnan(v).all() else f"{v.mean():.3f} ± {v.std():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(ap, quick="2 folds, a few epochs, emovae / no latent / no voice student and the "
                                          "MFCC peer")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="fold seed = model seed (default: 0)")
    ap.add_argument("--out", help="results file (default: benchmarks/results-accuracy.md)")
    ap.add_argument("--systems", nargs="+", metavar="NAME",
                    help="only these rows (names as in the table, e.g. emovae); default: all")
    ap.add_argument("--save-models", type=Path, metavar="DIR",
                    help="save the emovae row's fold models here (ood.py and adaptation.py --models reuse them)")
    args = ap.parse_args()
    args.out = args.out or str(common.results_path("accuracy", args.quick))
    t_run = time.perf_counter()

    from emovae.config import FeatureConfig, TrainConfig
    from emovae.extraction import extract_dataset

    n_splits, data, peer_cache, n_jobs = 5, args.data, common.DEFAULT_CACHE, None
    if args.quick:  # kept until the process ends: the peers read the linked clips
        quick_tmp = tempfile.TemporaryDirectory(prefix="emovae-quick-")
        n_splits, n_jobs = 2, 1
        data, peer_cache = common.quick_subset(args.data, quick_tmp.name), Path(quick_tmp.name) / "peers"

    # emovae features: once, uncached (temp cache dir), so the time is the real cost.
    with tempfile.TemporaryDirectory(prefix="emovae-bench-") as tmp:
        t0 = time.perf_counter()
        table, skipped = extract_dataset(data, FeatureConfig(), cache_dir=Path(tmp), n_jobs=n_jobs,
                                         progress=not args.quick)
        emovae_extract_s = time.perf_counter() - t0
        t0 = time.perf_counter()  # training augmentation: the clips played at other speeds (training cost)
        table.augment(TrainConfig().speed_perturb, cache_dir=Path(tmp), n_jobs=n_jobs, progress=not args.quick)
        augment_s = time.perf_counter() - t0
    n_procs = n_jobs or common.cores()
    if skipped:
        print(f"[accuracy] skipped {len(skipped)} files, e.g. {'; '.join(map(str, skipped[:3]))}")
    y_names, classes = table.labels, table.classes
    speakers = table.speakers
    paths = table.paths
    print(f"[accuracy] {len(table)} clips, {len(np.unique(speakers))} speakers; emovae features "
          f"({table.stats.shape[1]} statistics, {len(table.frame_names)} frame features) in "
          f"{emovae_extract_s:.1f} s on {n_procs} processes", flush=True)

    # peer features (cached; original extraction seconds are reported).
    peer_sets = common.peer_features(peer_cache)
    emovae_variants = list(SYSTEMS)
    if args.quick:  # the MFCC peer, and three emovae rows unless --systems names others
        peer_sets = {"MFCC-stats + SVM": peer_sets["MFCC-stats + SVM"]}
        emovae_variants = emovae_variants if args.systems else ["emovae", "emovae (no latent)",
                                                                 "emovae (no voice student)"]
    if args.systems:
        unknown = set(args.systems) - set(emovae_variants) - set(peer_sets)
        if unknown:
            raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {emovae_variants + list(peer_sets)}")
        wanted = set(args.systems) | ({"emovae"} if set(args.systems) & set(DERIVED) else set())
        emovae_variants = [n for n in emovae_variants if n in wanted]
        peer_sets = {n: f for n, f in peer_sets.items() if n in args.systems}
    peer_X = {}
    for name, extract in peer_sets.items():
        peer_X[name] = extract(paths)

    # systems -> {"folds": [per seed, per fold metric dicts], "fit_s": seconds, "extract_s", "dims"}
    results: dict[str, dict] = {}
    for name in emovae_variants:
        results[name] = {"folds": [], "fit_s": augment_s, "extract_s": emovae_extract_s,
                         "dims": DIMS[name].format(n=len(table.stat_names))}
    for name, (X, seconds) in peer_X.items():
        results[name] = {"folds": [], "fit_s": 0.0, "extract_s": seconds, "dims": str(X.shape[1])}
    TTA = "emovae --tta (test clip + its 4 speed copies)"

    def log(name, seed, folds, s):
        print(f"[accuracy] seed {seed} {name:<20} UA {fmt([f['balanced_accuracy'] for f in folds])}  ({s:.1f} s)",
              flush=True)

    derived = [n for n in emovae_variants if n in DERIVED]
    voice_s = 0.0  # computing the fold students' statistics for the derived rows
    for seed in args.seeds:
        models = []
        for name in (n for n in emovae_variants if n not in DERIVED):
            folds, s, made = run_emovae(table, name, seed, n_splits, args.quick,
                                        args.save_models if name == "emovae" else None)
            models = made if name == "emovae" else models
            results[name]["folds"].append(folds)
            if name == "emovae" and all("tta" in f for f in folds):  # same models: no training of its own
                results.setdefault(TTA, {"folds": [], "fit_s": 0.0, "extract_s": float("nan"),
                                         "dims": results[name]["dims"]})["folds"].append([f["tta"] for f in folds])
            results[name]["fit_s"] += s
            log(name, seed, folds, s)
        if derived:
            dfolds, dsec, s = run_derived(table, models, derived, seed, n_splits, args.quick)
            voice_s += s
            for name in derived:
                results[name]["folds"].append(dfolds[name])
                results[name]["fit_s"] += dsec[name]
                log(name, seed, dfolds[name], dsec[name])
        for name, (X, _) in peer_X.items():
            folds, s = run_peer(X, y_names, speakers, classes, seed, n_splits)
            results[name]["folds"].append(folds)
            results[name]["fit_s"] += s
            log(name, seed, folds, s)

    # ---- table
    def flat(name, key):
        return [f.get(key, np.nan) for seed_folds in results[name]["folds"] for f in seed_folds]

    order = sorted(results, key=lambda n: -np.mean(flat(n, "balanced_accuracy")))
    n_folds_total = n_splits * len(args.seeds)
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
                diff_lines.append(f"| {seed} | {k} | {common.short_speakers(fa['test_speakers'])} | "
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
        if abs(diffs.mean()) <= 2 * se or np.isnan(se):
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
    for other, what in (("emovae (no voice student)", "the same heads on the hand-made statistics"),
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
                    f"{len(np.unique(speakers)) // n_splits} speakers, so differences of a few points between systems "
                    f"are not resolved by this split.")
    if args.quick:
        text.append(f"**Quick smoke run** ({len(table)} clips, {n_splits} folds, a few epochs, fewer systems): "
                    "not a result.")

    total_s = time.perf_counter() - t_run
    md = [
        "# Accuracy benchmark: emovae vs. ablations and peer features",
        "",
        *common.header_lines("accuracy.py"),
        f"- Data: {len(table)} clips of {len(np.unique(speakers))} actors ({Path(args.data).name}); "
        f"{len(skipped)} skipped",
        f"- Split: speaker-grouped {n_splits}-fold cross-validation (`emovae.evaluate.speaker_folds`, seed(s) "
        f"{', '.join(map(str, args.seeds))}), identical for every system. **Every number is speaker-independent**: "
        "no test actor's clips are used for training, scaling, early stopping or choosing C.",
        f"- Metrics: mean ± std over the {n_folds_total} folds ({len(args.seeds)} seed(s) x {n_splits}). "
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
        "UA adapted: the same folds and fitted models in speaker-adapted mode, using all clips of each test "
        "speaker (unlabelled): emovae as users get it from `predict --speaker-from` (`Network.forward_by_speaker`: "
        "the speaker's moments pooled with the model's prior of weight 8, the single-clip and adapted heads mixed "
        "with trust n / (n + 8)), the peers with an SVM trained on speaker-normalised features and each test "
        "speaker's features z-scored with all of its clips. The strict single-clip UA is the headline; adapted needs "
        "several clips of a speaker (see results-adaptation.md for the curve).",
        "",
        "Feature extraction time is wall time for all clips: emovae's was measured in this run, uncached "
        f"({n_procs} processes); the peers' is the original (cached) extraction on all cores with openSMILE / "
        "librosa. Train + predict is the sum over folds (and seeds); for emovae it includes extracting the "
        f"features of every clip played at {'/'.join(f'{f:g}x' for f in TrainConfig().speed_perturb)} speed once ({augment_s:.1f} s: the classifier's training "
        "augmentation; only the training folds' copies are used in each fold). The emovae variants all train the VAE "
        "(the estimator always fits it), so \"no latent\" pays for a VAE it does not use. The ablations of the voice "
        "rows reuse the emovae row's student of each fold (trained once per fold, counted in the emovae row's time; "
        f"its statistics for every clip and copy took {voice_s:.1f} s in all, counted in no row). Timings are wall "
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
    for other in ("emovae (no voice student)", "emovae (voice + hand-made statistics)"):
        d, d_a = paired(other, "balanced_accuracy"), paired(other, "adapted_balanced_accuracy")
        if len(d):
            md += [f"## Paired difference: emovae − {other}", "",
                   f"UA difference per fold: **{d.mean():+.3f} ± {d.std():.3f}** (strict), "
                   f"**{d_a.mean():+.3f} ± {d_a.std():.3f}** (adapted), over {len(d)} folds: "
                   f"[{' '.join(f'{x:+.3f}' for x in d)}] / [{' '.join(f'{x:+.3f}' for x in d_a)}].", ""]
    md += ["## What it shows", "", " ".join(text), ""]
    common.write_results(args.out, "\n".join(md))

    print()
    print(table_md)
    if len(diffs):
        print(f"\nemovae − no latent, paired UA per fold: {diffs.mean():+.3f} ± {diffs.std():.3f}  "
              f"[{' '.join(f'{d:+.3f}' for d in diffs)}]")
    print("\n" + " ".join(text))
    print(f"\n[accuracy] wrote {args.out}; whole run {total_s:.0f} s")


if __name__ == "__main__":
    main()
