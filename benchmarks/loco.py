"""Leave-one-corpus-out benchmark (issue 34, "Many voices"): train on three corpora, test on the fourth.

The four labelled corpora of ``../shared/data`` (RAVDESS actors 1-20, SAVEE, TESS, EMOVO) in the shared 7-class
vocabulary (RAVDESS's calm merged into neutral: ``--map calm=neutral``, the shipped model's class set). Each corpus
is held out in turn (``cross_validate(split="corpus")``); inside each fold the estimator chooses C, fits its
temperatures and its "uncertain" threshold on the three training corpora left out in turn, so nothing is tuned
on the test corpus. Per left-out corpus:

- emovae strict (one clip at a time) and adapted (each test speaker's clips together) UA, macro-F1, expected
  calibration error (15 bins), the share answered at the fold model's own "uncertain" threshold and the accuracy
  of those answers, and the risk-coverage curve (accuracy of the most confident clips against the share kept);
- the peers on the same folds: openSMILE eGeMAPSv02 and ComParE_2016 functionals + RBF SVM, strict (features
  z-scored over the training clips) and adapted (z-scored per speaker, as the findings compare them);
- ``--model DIR`` (repeatable, e.g. the shipped model before and after): what it says on ``librispeech-sample``
  (ordinary read speech, never trained or tuned on: the share whose most probable class is neutral or calm, and
  its answers) and its UA and ECE on each of the four corpora it was not trained on.

Fold models are saved in ``--folds DIR`` and reused when their test corpus, training data and configuration match
(the layout of ``emovae evaluate --split corpus --save-folds DIR``), so an interrupted run resumes.
``--refit-heads`` first fits the heads of every saved fold model again on its own training corpora
(``EmotionRecognizer.fit_heads``: C, temperatures, "uncertain" threshold), keeping its voice student and VAE: for
a change to the head stage only, at a fraction of a fold's cost (fold.json records it).

Usage: python benchmarks/loco.py --folds DIR [--voice-copies-per-epoch 1] [--degraded-copies 0] [--threads 1]
       [--model LABEL=DIR ...] [--out FILE]
A run whose folds are saved takes minutes (peers' features cached in ~/.cache/emovae/peers); fitting the four
folds takes about 45 minutes on one thread of a 2-core machine with ``--voice-copies-per-epoch 1``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import common

SOURCES = {"ravdess": "ravdess-speech", "savee": "savee", "tess": "tess", "emovo": "emovo"}
MAPPING = {"calm": "neutral"}
PEERS = ("eGeMAPSv02", "ComParE_2016")
COVERAGES = (1.0, 0.8, 0.6, 0.4, 0.2)


def fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def risk_coverage(conf: np.ndarray, hit: np.ndarray) -> dict[float, float]:
    """Accuracy of the most confident ``c`` share of the clips, for each c in COVERAGES."""
    order = np.argsort(-conf, kind="stable")
    return {c: float(hit[order[:max(1, int(round(c * len(order))))]].mean()) for c in COVERAGES}


def table_of(root: Path, fcfg, tcfg):
    """The four corpora as one augmented FeatureTable (7 classes)."""
    from emovae.extraction import default_cache_dir, extract_dataset

    table, problems = extract_dataset([f"{k}={root / v}" for k, v in SOURCES.items()], fcfg, mapping=MAPPING,
                                      cache_dir=default_cache_dir(), progress=False)
    for p in problems:
        print(f"[loco] skipped {p}", flush=True)
    return table.augment(tcfg.speed_perturb, degraded=tcfg.degraded_copies, cache_dir=default_cache_dir(),
                         progress=False)


def emovae_rows(table, args, configs) -> tuple[dict, dict]:
    """Per left-out corpus: emovae's metrics from the saved (or newly fitted) fold models."""
    from emovae.evaluate import calibration_error, compute_metrics, cross_validate, folds_for
    from emovae.train.estimator import EmotionRecognizer

    fcfg, vcfg, ccfg, tcfg = configs
    t0 = time.perf_counter()
    res = cross_validate(table, lambda: EmotionRecognizer(fcfg, vcfg, ccfg, tcfg), n_splits=4, seed=0,
                         progress=True, split="corpus", save_folds=args.folds)
    seconds = time.perf_counter() - t0
    y, classes = table.labels, table.classes
    rows = {}
    for k, (tr, te) in enumerate(folds_for(table, "corpus", 4, 0)):
        name = table.corpora[te][0]
        model = EmotionRecognizer.load(Path(args.folds) / f"seed0-fold{k}")
        conf, hit = res.proba[te].max(axis=1), res.y_pred[te] == y[te]
        t = model.calibration_.get("uncertain_below")
        answered = conf >= t if t is not None else np.ones(len(te), bool)
        m = compute_metrics(y[te], res.y_pred[te], classes)
        rows[name] = {"ua": m["balanced_accuracy"], "f1": m["macro_f1"], "n": len(te),
                      "adapted": res.metrics["adapted"]["folds"][k]["balanced_accuracy"],
                      "ece": calibration_error(res.proba[te], y[te], classes),
                      "threshold": t, "answered": float(answered.mean()),
                      "answered_acc": float(hit[answered].mean()) if answered.any() else float("nan"),
                      "rc": risk_coverage(conf, hit), "recall": m["per_class_recall"],
                      "temperature": model.calibration_.get("temperature"), "c": model.c_}
        print(f"[loco] emovae, {name} left out: UA {rows[name]['ua']:.3f}, adapted {rows[name]['adapted']:.3f}, "
              f"ECE {rows[name]['ece']:.3f}, answered {rows[name]['answered']:.2f} at {t}", flush=True)
    return rows, {"seconds": seconds, "reused": res.metrics.get("folds_reused", [])}


def refit_heads(table, folds_dir: Path, which: list[int]) -> list[int]:
    """Fit the heads of each saved fold model again on its training clips and copies (folds ``which``, empty:
    all); returns the folds done."""
    import json

    from emovae.evaluate import folds_for, table_features
    from emovae.train.estimator import EmotionRecognizer

    X, done = table_features(table), []
    for k, (tr, _) in enumerate(folds_for(table, "corpus", 4, 0)):
        d = folds_dir / f"seed0-fold{k}"
        if (which and k not in which) or not (d / "fold.json").is_file():
            continue
        t0 = time.perf_counter()
        model = EmotionRecognizer.load(d).fit_heads([X[i] for i in tr], table.labels[tr], groups=table.speakers[tr],
                                                    augmented=table.augmented_for(tr), corpora=table.corpora[tr])
        model.save(d)
        meta = json.loads((d / "fold.json").read_text())
        meta["heads_refit"] = common.git_commit()
        (d / "fold.json").write_text(json.dumps(meta))
        done.append(k)
        print(f"[loco] fold {k}: heads fitted again in {time.perf_counter() - t0:.0f} s (C {model.c_}, T "
              f"{model.calibration_['temperature']}, uncertain below {model.calibration_['uncertain_below']})",
              flush=True)
    return done


def ravdess_folds(table) -> list[tuple[np.ndarray, np.ndarray]]:
    """RAVDESS's speaker-grouped 5 folds (seed 0) with every other corpus always in training: (train, test) rows."""
    from emovae.evaluate import speaker_folds

    rav = np.flatnonzero(table.corpora == "ravdess")
    return [(np.setdiff1d(np.arange(len(table)), rav[te]), rav[te])
            for _, te in speaker_folds(table.speakers[rav], 5, 0)]


def fit_folds(table, folds_dir: Path, configs, which: list[int], folds=None, split: str = "corpus") -> None:
    """Fit and save the fold models named (the ones a full run would fit; ``folds``: other (train, test) rows, e.g.
    ``ravdess_folds``), so that separate processes can fit different folds at once; a later run reuses them."""
    from emovae.evaluate import fold_digest, folds_for, save_fold, table_features
    from emovae.train.estimator import EmotionRecognizer

    X = table_features(table)
    for k, (tr, te) in enumerate(folds if folds is not None else folds_for(table, "corpus", 4, 0)):
        if k not in which:
            continue
        t0 = time.perf_counter()
        model = EmotionRecognizer(*configs).fit([X[i] for i in tr], table.labels[tr], groups=table.speakers[tr],
                                                corpora=table.corpora[tr], augmented=table.augmented_for(tr),
                                                dimensions=table.dimension_targets[tr])
        save_fold(model, folds_dir, 0, k, table.speakers[te], split, fold_digest(table, tr))
        print(f"[loco] fold {k} fitted in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def ravdess_rows(table, folds_dir: Path) -> list[dict]:
    """RAVDESS's speaker-grouped CV with the other corpora in training: per saved fold, strict and adapted UA over
    its 7 classes (calm merged) on its 4 test actors."""
    from emovae.evaluate import compute_metrics, table_features
    from emovae.speaker import SessionConfig
    from emovae.train.estimator import EmotionRecognizer

    X, out = table_features(table), []
    for k, (_, te) in enumerate(ravdess_folds(table)):
        d = folds_dir / f"seed0-fold{k}"
        if not (d / "fold.json").is_file():
            continue
        model = EmotionRecognizer.load(d)
        Xte, y = [X[i] for i in te], table.labels[te]
        strict = model.predict(Xte)
        adapted = model.classes_[model.network().forward_by_speaker(model.prepare(Xte), table.speakers[te],
                                                                    SessionConfig())["probabilities"].argmax(1)]
        out.append({"fold": k, "actors": sorted({s.split("/")[-1] for s in table.speakers[te]}),
                    "ua": compute_metrics(y, strict, table.classes)["balanced_accuracy"],
                    "adapted": compute_metrics(y, adapted, table.classes)["balanced_accuracy"]})
        print(f"[loco] RAVDESS CV fold {k}: UA {out[-1]['ua']:.3f}, adapted {out[-1]['adapted']:.3f}", flush=True)
    return out


def peer_rows(table) -> dict:
    """Per peer and left-out corpus: the SVM's strict and per-speaker-normalised UA and macro-F1."""
    from emovae.evaluate import compute_metrics, folds_for
    from emovae.speaker import speaker_normalize

    y, classes, speakers = table.labels, table.classes, table.speakers
    out = {}
    for peer in PEERS:
        X, seconds = common.opensmile_functionals(table.paths, peer)
        Xn = speaker_normalize(X, speakers)
        out[peer] = {"extract_s": seconds}
        for tr, te in folds_for(table, "corpus", 4, 0):
            name = table.corpora[te][0]
            strict = common.svm().fit(X[tr], y[tr]).predict(X[te])
            adapted = common.svm().fit(Xn[tr], y[tr]).predict(Xn[te])
            m = compute_metrics(y[te], strict, classes)
            out[peer][name] = {"ua": m["balanced_accuracy"], "f1": m["macro_f1"],
                               "adapted": compute_metrics(y[te], adapted, classes)["balanced_accuracy"]}
            print(f"[loco] {peer}, {name} left out: UA {m['balanced_accuracy']:.3f}", flush=True)
    return out


def model_checks(specs, table, root: Path) -> dict:
    """Per model folder: librispeech-sample answers, and UA / ECE on each corpus it was not trained on."""
    from emovae.batch import expand_inputs
    from emovae.evaluate import calibration_error, evaluate_model
    from emovae.runtime import Recognizer
    from emovae.train.estimator import EmotionRecognizer

    libri, _ = expand_inputs([str(root / "librispeech-sample")])
    out = {}
    for spec in specs:
        label, _, path = spec.rpartition("=")
        label = label or Path(path).name
        rec = Recognizer.load(path, backend="onnx")
        preds = [rec.predict_file(f) for f in libri]
        top = np.array([p.emotion for p in preds])
        answers = np.array([p.answer for p in preds])
        seen = set((rec.meta.get("training_data") or {}).get("corpora") or ["ravdess"])
        model = EmotionRecognizer.load(path)
        per = {}
        for name in SOURCES:
            if name in seen:
                continue
            keep = np.flatnonzero(table.corpora == name)
            sub = table.subset(keep)
            r = evaluate_model(model, sub)
            shared = [model.classes_.tolist().index(c) for c in r.metrics["classes"]]
            p = r.proba[:, shared] / r.proba[:, shared].sum(axis=1, keepdims=True)
            ok = np.isin(sub.labels, r.metrics["classes"])
            per[name] = {"ua": r.metrics["balanced_accuracy"],
                         "ece": calibration_error(p[ok], sub.labels[ok], r.metrics["classes"])}
        out[label] = {"path": path, "classes": list(rec.classes), "trained_on": sorted(seen), "n_libri": len(preds),
                      "neutral_or_calm": float(np.isin(top, ["neutral", "calm"]).mean()),
                      "top": {c: float((top == c).mean()) for c in rec.classes},
                      "uncertain": float((answers == "uncertain").mean()),
                      "not_speech": float((answers == "not speech").mean()),
                      "median_conf": float(np.median([p.confidence for p in preds])), "corpora": per}
        print(f"[loco] {label}: librispeech neutral/calm {out[label]['neutral_or_calm']:.2f}, uncertain "
              f"{out[label]['uncertain']:.2f}; " + ", ".join(f"{k} {v['ua']:.3f}" for k, v in per.items()), flush=True)
    return out


def report(rows, info, peers, checks, configs, seconds) -> str:
    names = list(rows)
    mean = lambda d, key: float(np.mean([d[n][key] for n in names]))  # noqa: E731
    lines = ["# Leave-one-corpus-out (issue 34)", "", *common.header_lines("loco.py"),
             f"- Fold models: {info['seconds'] / 60:.1f} min for this run (folds reused from an earlier run: "
             f"{info['reused'] or 'none'}; heads fitted again on the saved representation: "
             f"{info.get('refit') or 'none'}); recipe {configs_text(configs)}",
             f"- Whole run: {seconds / 60:.1f} min", "",
             "Train on three corpora, test on the fourth; 7 classes (calm merged into neutral); UA = balanced "
             "accuracy (chance 0.143). C, temperatures and the uncertain threshold are chosen inside each fold on "
             "the training corpora left out in turn: nothing is tuned on the test corpus. Whisper-base anchor: the "
             "issue's figures (frozen encoder mean+std + logistic regression), not run here.", "",
             "| left-out corpus (clips) | emovae UA strict | adapted | macro-F1 | ECE | eGeMAPS+SVM strict / adapted "
             "| ComParE+SVM strict / adapted | Whisper-base anchor |", "|---|---|---|---|---|---|---|---|"]
    anchor = {"ravdess": 0.37, "savee": 0.24, "tess": 0.21, "emovo": 0.28}
    for n in names:
        r = rows[n]
        cells = [f"{fmt(peers[p][n]['ua'])} / {fmt(peers[p][n]['adapted'])}" if p in peers else "—" for p in PEERS]
        lines.append(f"| {n} ({r['n']}) | **{r['ua']:.3f}** | {r['adapted']:.3f} | {r['f1']:.3f} | {r['ece']:.3f} | "
                     f"{cells[0]} | {cells[1]} | {anchor.get(n, float('nan')):.2f} |")
    pm = [f"{np.mean([peers[p][n]['ua'] for n in names]):.3f} / {np.mean([peers[p][n]['adapted'] for n in names]):.3f}"
          if p in peers else "—" for p in PEERS]
    lines += [f"| **mean** | **{mean(rows, 'ua'):.3f}** | {mean(rows, 'adapted'):.3f} | {mean(rows, 'f1'):.3f} | "
              f"{mean(rows, 'ece'):.3f} | {pm[0]} | {pm[1]} | 0.28 |", "",
              "## Uncertain answers and risk-coverage (emovae, strict)", "",
              "The fold model's own threshold (chosen on its training corpora) and the accuracy of the clips it "
              "answers; then the accuracy of the most confident share of the clips.", "",
              "| left-out corpus | threshold | answered | accuracy answered | accuracy of all | "
              + " | ".join(f"top {int(100 * c)} %" for c in COVERAGES[1:]) + " | T | C |",
              "|---|---|---|---|---|" + "---|" * (len(COVERAGES) - 1) + "---|---|"]
    for n in names:
        r = rows[n]
        lines.append(f"| {n} | {fmt(r['threshold'])} | {r['answered']:.2f} | {fmt(r['answered_acc'])} | "
                     f"{r['rc'][1.0]:.3f} | " + " | ".join(f"{r['rc'][c]:.3f}" for c in COVERAGES[1:])
                     + f" | {r['temperature']} | {r['c']} |")
    cv = info.get("ravdess_cv") or []
    if cv:
        ua, ad = np.array([f["ua"] for f in cv]), np.array([f["adapted"] for f in cv])
        lines += ["", "## RAVDESS, speaker-grouped 5-fold CV, the other corpora always in training", "",
                  f"Test: 4 of the 20 RAVDESS development actors per fold ({len(cv)} of 5 folds fitted); training: the "
                  "other 16 actors with SAVEE, TESS and EMOVO; 7 classes (calm merged into neutral, chance 0.143); "
                  "the fold recipe above. The RAVDESS-only recipe scored 0.672 ± 0.066 strict over 8 classes.", "",
                  "| fold | test actors | UA strict | adapted |", "|---|---|---|---|",
                  *(f"| {f['fold']} | {', '.join(f['actors'])} | {f['ua']:.3f} | {f['adapted']:.3f} |" for f in cv),
                  f"| **mean ± std** | | **{ua.mean():.3f} ± {ua.std():.3f}** | {ad.mean():.3f} ± {ad.std():.3f} |"]
    lines += ["", "Recall per class (strict):", ""]
    for n in names:
        lines.append(f"- {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[n]["recall"].items()))
    if checks:
        lines += ["", "## Models on ordinary speech and on corpora they did not train on", "",
                  "`librispeech-sample`: 250 clips of read speech, mostly neutral in tone (a check, never trained "
                  "or tuned on). UA on a corpus is over the classes the model and the corpus share.", "",
                  "| model | trained on | LibriSpeech: neutral or calm | uncertain | not speech | median confidence "
                  "| unseen corpora: UA (ECE) |", "|---|---|---|---|---|---|---|"]
        for label, c in checks.items():
            unseen = ", ".join(f"{k} {v['ua']:.3f} ({v['ece']:.3f})" for k, v in c["corpora"].items()) or "—"
            lines.append(f"| {label} | {', '.join(c['trained_on'])} | {c['neutral_or_calm']:.2f} | "
                         f"{c['uncertain']:.2f} | {c['not_speech']:.2f} | {c['median_conf']:.2f} | {unseen} |")
        for label, c in checks.items():
            lines.append(f"\n{label} on LibriSpeech, most probable class: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in c["top"].items()))
    return "\n".join(lines) + "\n"


def configs_text(configs) -> str:
    _, _, ccfg, tcfg = configs
    return (f"speed copies {list(tcfg.speed_perturb)}, {tcfg.degraded_copies} degraded copies, voice student "
            f"{ccfg.voice_epochs} epochs with {ccfg.voice_copies_per_epoch or 'all'} copies per epoch")


def main(argv=None) -> int:
    from dataclasses import replace

    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(common.data_root()), help="folder holding the corpora")
    ap.add_argument("--folds", required=True, help="fold models: reused when they match, else fitted and saved")
    ap.add_argument("--voice-copies-per-epoch", type=int, default=1)
    ap.add_argument("--degraded-copies", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                    help="a model folder to check on librispeech-sample and the corpora it did not train on")
    ap.add_argument("--refit-heads", nargs="*", type=int, metavar="FOLD",
                    help="fit the heads of the saved fold models again first (their student and VAE kept): the "
                         "folds named, or every fold")
    ap.add_argument("--refit-only", action="store_true", help="with --refit-heads: stop after it")
    ap.add_argument("--fit-folds", nargs="+", type=int, metavar="FOLD",
                    help="only fit and save these fold models, then stop (run folds in separate processes)")
    ap.add_argument("--ravdess-cv", nargs="*", type=int, metavar="FOLD",
                    help="RAVDESS's speaker-grouped 5-fold CV with the other corpora in training (models in "
                         "FOLDS/ravdess-cv): fit the folds named and stop; without folds, report the saved ones")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--out", default=str(common.results_path("loco")))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    configs = (FeatureConfig(), VAEConfig(),
               replace(ClassifierConfig(), voice_copies_per_epoch=args.voice_copies_per_epoch),
               TrainConfig(threads=args.threads, degraded_copies=args.degraded_copies))
    root = Path(args.root)
    table = table_of(root, configs[0], configs[3])
    if args.fit_folds:
        fit_folds(table, Path(args.folds), configs, args.fit_folds)
        return 0
    if args.ravdess_cv:
        fit_folds(table, Path(args.folds) / "ravdess-cv", configs, args.ravdess_cv, ravdess_folds(table), "speaker")
        return 0
    refit = refit_heads(table, Path(args.folds), args.refit_heads) if args.refit_heads is not None else []
    if args.refit_only:
        return 0
    rows, info = emovae_rows(table, args, configs)
    info["refit"] = refit
    peers = {} if args.no_peers or not common.have_opensmile() else peer_rows(table)
    checks = model_checks(args.model, table, root)
    info["ravdess_cv"] = ravdess_rows(table, Path(args.folds) / "ravdess-cv")
    common.write_results(args.out, report(rows, info, peers, checks, configs, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
