"""Robustness benchmark: emovae and the peers on the clips users have, not RAVDESS studio takes.

On the dev actors' speaker-grouped folds (each clip scored by the fold model that never heard its speaker; fold
models from ``emovae train --cv 5 --save-folds DIR`` or ``accuracy.py --save-models DIR``, or fitted here),
balanced accuracy (UA, 8 classes) and the share of clips flagged
out of domain (``in_domain`` false) for each condition: clean; the first 1.0 / 1.5 / 2.0 / 3.0 s and a random
2 s window; leading and trailing silence removed, and doubled; white and babble noise (LibriSpeech sample) at
20 / 10 / 5 dB SNR; synthetic room reverberation (RT60 0.3 and 0.8 s); a telephone channel (8 kHz, 300-3400 Hz,
G.711 mu-law); Opus at a low bitrate (libsndfile); level -35 dBFS; +12 dB clipped; a DC offset of 0.04. The peers
(MFCC-stats + SVM always; eGeMAPSv02 + SVM when opensmile is installed) are fitted on the clean training folds
and scored on the same degraded clips. Expected calibration error (15 bins) of emovae's clean probabilities.
Cross-corpus with the shipped model (trained on the 20 dev actors): SAVEE UA over its 7 classes (argmax
restricted to them) and 8-way, flagged share; LibriSpeech read speech: flagged share and answer distribution.

In-domain flags come from the speech guard (the fold model's, or one fitted on the fold's training clips as
``emovae train`` does). ``--model``: the model scored cross-corpus (default: the shipped one).

Usage: python benchmarks/robustness.py --models DIR [--model MODEL_DIR] [--seed 0] [--jobs 2]
       [--pitch yin-acf|yin] [--voice 128|0] [--out benchmarks/results-robustness.md]
       python benchmarks/robustness.py --quick
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections import Counter
from dataclasses import replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import common
from emovae.augment import add_noise, reverberate, rms, telephone

SR = common.SAMPLE_RATE
CONDITIONS = ("clean", "first 1.0 s", "first 1.5 s", "first 2.0 s", "first 3.0 s", "random 2 s window",
              "silence removed", "silence doubled", "white 20 dB", "white 10 dB", "white 5 dB", "babble 20 dB",
              "babble 10 dB", "babble 5 dB", "reverb RT60 0.3 s", "reverb RT60 0.8 s", "telephone (8 kHz, mu-law)",
              "Opus low bitrate", "level -35 dBFS", "+12 dB clipped", "DC offset 0.04")
_BABBLE: np.ndarray | None = None  # per worker: a long mixture of LibriSpeech talkers


def opus(y: np.ndarray) -> np.ndarray:
    """Through Ogg Opus at libsndfile's lowest bitrate setting and back."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, SR, format="OGG", subtype="OPUS", compression_level=1.0)
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0][: len(y)]


def speech_bounds(y: np.ndarray) -> tuple[int, int]:
    """Sample span of the speech, as emovae trims it (``features.speech_bounds`` with the default config)."""
    from emovae.config import FeatureConfig
    from emovae.features import speech_bounds as bounds

    return bounds(y, FeatureConfig())


def degrade(y: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """``y`` (16 kHz mono float32) under ``condition`` (one of CONDITIONS); seeded per clip."""
    rng = np.random.default_rng(seed)
    if condition == "clean":
        return y
    if condition.startswith("first "):
        return y[: int(float(condition.split()[1]) * SR)]
    if condition == "random 2 s window":
        n = 2 * SR
        start = int(rng.integers(0, max(1, len(y) - n)))
        return y[start: start + n]
    if condition.startswith("silence"):
        a, b = speech_bounds(y)
        if condition == "silence removed":
            return y[a:b]
        return np.concatenate([y[:a], y[:a], y[a:b], y[b:], y[b:]])
    if condition.startswith("white"):
        return add_noise(y, rng.standard_normal(len(y)).astype(np.float32), float(condition.split()[1]))
    if condition.startswith("babble"):
        start = int(rng.integers(0, len(_BABBLE) - len(y)))
        return add_noise(y, _BABBLE[start: start + len(y)], float(condition.split()[1]))
    if condition.startswith("reverb"):
        return reverberate(y, float(condition.split()[2]), rng, SR)
    if condition.startswith("telephone"):
        return telephone(y)
    if condition.startswith("Opus"):
        return opus(y)
    if condition == "level -35 dBFS":
        return (y / rms(y) * 10 ** (-35 / 20)).astype(np.float32)
    if condition == "+12 dB clipped":
        return np.clip(y * 10 ** (12 / 20), -1, 1).astype(np.float32)
    if condition == "DC offset 0.04":
        return (y + 0.04).astype(np.float32)
    raise ValueError(condition)


def init_worker(librispeech: str, peers: tuple[str, ...]) -> None:
    """Per process: the babble (four talkers at a time, from the LibriSpeech sample) and the peer extractors."""
    global _BABBLE
    from emovae.audio import load

    files = sorted(Path(librispeech).rglob("*.flac"))
    rng = np.random.default_rng(0)
    talkers = [np.concatenate([load(str(f), SR) for f in rng.choice(files, 12, replace=False)]) for _ in range(4)]
    n = min(len(t) for t in talkers)
    _BABBLE = np.sum([t[:n] / rms(t[:n]) for t in talkers], axis=0).astype(np.float32)
    if "eGeMAPSv02 + SVM" in peers:
        common.init_smile("eGeMAPSv02")


def extract(job):
    """One clip under one condition, job (path, seed, condition, peers, the models' FeatureConfig): (emovae
    Features or None, {peer: vector}, error or None)."""
    from emovae.audio import load
    from emovae.errors import EmovaeError
    from emovae.features import extract as features

    path, seed, condition, peers, fcfg = job
    try:
        y = degrade(load(path, SR), condition, seed)
        f = features(y, SR, fcfg)
    except EmovaeError as exc:
        return None, {}, str(exc)
    vec = {}
    if "MFCC-stats + SVM" in peers:
        vec["MFCC-stats + SVM"] = common.mfcc_vector(y)
    if "eGeMAPSv02 + SVM" in peers:
        vec["eGeMAPSv02 + SVM"] = common.smile_signal(y)
    return f, vec, None


def balanced_accuracy(y_true, y_pred, classes) -> float:
    recalls = [np.mean(np.asarray(y_pred)[np.asarray(y_true) == c] == c) for c in classes if np.any(np.asarray(y_true) == c)]
    return float(np.mean(recalls))


def cross_corpus(rec, savee: Path, librispeech: Path, limit: int | None) -> dict:
    """The shipped model on SAVEE (UA over its 7 classes, argmax restricted to them; 8-way) and LibriSpeech."""
    from emovae.corpus import scan

    items = scan(f"savee={savee}")[0]
    items = items[:: max(1, len(items) // limit)] if limit else items
    classes = list(rec.classes)
    present = sorted({it.label for it in items}, key=classes.index)
    proba, flagged = [], []
    for it in items:
        p = rec.predict_file(it.path)
        proba.append([p.probabilities[c] for c in classes])
        flagged.append(p.in_domain is False)
    proba = np.array(proba)
    truth = [it.label for it in items]
    keep = [classes.index(c) for c in present]
    out = {"savee_ua7": balanced_accuracy(truth, [present[i] for i in proba[:, keep].argmax(1)], present),
           "savee_ua8": balanced_accuracy(truth, [classes[i] for i in proba.argmax(1)], present),
           "savee_flagged": float(np.mean(flagged)), "savee_n": len(items)}
    libri = sorted(Path(librispeech).rglob("*.flac"))
    libri = libri[:: max(1, len(libri) // limit)] if limit else libri
    answers, flagged = Counter(), []
    for f in libri:
        p = rec.predict_file(f)
        answers[p.emotion] += 1
        flagged.append(p.in_domain is False)
    out.update(libri_flagged=float(np.mean(flagged)), libri_n=len(libri),
               libri_answers={k: v / len(libri) for k, v in answers.most_common()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(ap, quick="2 folds, 6 conditions, 20 SAVEE and LibriSpeech clips")
    ap.add_argument("--models", help="fold models saved by emovae train/evaluate --save-folds or accuracy.py "
                    "--save-models (else fitted here)")
    ap.add_argument("--seed", type=int, default=0, help="fold seed (default 0)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=common.cores())
    ap.add_argument("--peers", nargs="*", default=None,
                    help="peer rows (default: MFCC-stats + SVM, and eGeMAPSv02 + SVM when opensmile is installed)")
    ap.add_argument("--model", help="model folder scored on SAVEE and LibriSpeech (default: the shipped model; "
                    "'folds': each scored fold model, averaged)")
    ap.add_argument("--only-folds", type=int, nargs="+", metavar="K", help="score only these folds (default: all)")
    ap.add_argument("--save-models", type=Path, metavar="DIR",
                    help="without --models: save the fold models fitted here (the --save-folds layout; a fold "
                    "already saved there for the same data and recipe is reused, as emovae train --cv reuses it)")
    ap.add_argument("--degraded-copies", type=int, default=0,
                    help="fold models fitted here: TrainConfig.degraded_copies (default 0)")
    ap.add_argument("--voice-copies-per-epoch", type=int, default=0,
                    help="fold models fitted here: ClassifierConfig.voice_copies_per_epoch (default 0: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the fold models fitted here")
    ap.add_argument("--pitch", default="yin-acf", choices=["yin-acf", "yin"],
                    help="the fold models' FeatureConfig.pitch_method (fitted here, or checked against --models)")
    ap.add_argument("--voice", type=int, default=128,
                    help="the fold models' FeatureConfig.voice (0: no voice student; fitted here, or checked)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig
    from emovae.evaluate import calibration_error, fold_digest, save_fold, saved_fold, speaker_folds, table_features
    from emovae.guard import SpeechGuard, cues
    from emovae.train.guard import fit_guard
    from emovae.extraction import extract_dataset
    from emovae.runtime import Recognizer, load_pretrained
    from emovae.train.estimator import EmotionRecognizer

    t_start = time.time()
    tmp = tempfile.mkdtemp(prefix="emovae-robust-")
    data = common.quick_subset(args.data, tmp) if args.quick else Path(args.data)
    conditions = CONDITIONS if not args.quick else ("clean", "first 2.0 s", "white 10 dB", "babble 10 dB",
                                                    "telephone (8 kHz, mu-law)", "Opus low bitrate")
    n_folds = 2 if args.quick else args.folds
    peers = tuple(args.peers) if args.peers is not None else (
        ("MFCC-stats + SVM",) + (("eGeMAPSv02 + SVM",) if common.have_opensmile() else ()))
    fcfg = FeatureConfig(pitch_method=args.pitch, voice=args.voice)
    table, _ = extract_dataset(data, fcfg, cache_dir=None if args.quick else common.DEFAULT_CACHE.parent,
                               n_jobs=args.jobs, progress=False)
    paths, speakers, labels, classes = table.paths, table.speakers, table.labels, list(table.classes)
    folds = [f for k, f in enumerate(speaker_folds(speakers, n_folds, args.seed))
             if not args.only_folds or k in args.only_folds]
    fold_ids = [k for k in range(n_folds) if not args.only_folds or k in args.only_folds]
    scored = np.zeros(len(paths), bool)
    for _, te in folds:
        scored[te] = True
    if not args.models:  # the shipped recipe: the training clips with their speed (and degraded) copies
        vcfg, ccfg, tcfg = common.quick_configs(args.seed) if args.quick else (None, None, TrainConfig(seed=args.seed))
        tcfg = TrainConfig(seed=args.seed, threads=args.threads, degraded_copies=args.degraded_copies,
                           speed_perturb=tcfg.speed_perturb)
        ccfg = replace(ccfg or ClassifierConfig(), voice_copies_per_epoch=args.voice_copies_per_epoch)
        table.augment(tcfg.speed_perturb, degraded=tcfg.degraded_copies, n_jobs=args.jobs, progress=False,
                      cache_dir=None if args.quick else common.DEFAULT_CACHE.parent)
        X = table_features(table)
    recs, guards = [], []
    for k, (tr, te) in zip(fold_ids, folds):
        if args.models:
            d = common.fold_model_dir(Path(args.models), args.seed, k, np.unique(speakers[te]))
        else:
            root = args.save_models or Path(tmp)
            d, digest = root / f"seed{args.seed}-fold{k}", fold_digest(table, tr)
            if saved_fold(root, args.seed, k, speakers[te], "speaker", digest,
                          lambda: EmotionRecognizer(fcfg, vcfg, ccfg, tcfg)) is None:
                t0 = time.time()
                save_fold(EmotionRecognizer(fcfg, vcfg, ccfg, tcfg).fit(
                    [X[i] for i in tr], labels[tr], groups=speakers[tr], augmented=table.augmented_for(tr)),
                    root, args.seed, k, speakers[te], train_digest=digest)
                print(f"fold {k} fitted ({time.time() - t0:.0f} s)", flush=True)
        recs.append(Recognizer.load(d, backend="torch"))
        if recs[-1].feature_config != fcfg:
            raise SystemExit(f"{d}: its features are {recs[-1].feature_config}, not those of --pitch {args.pitch} "
                             f"--voice {args.voice}: pass the flags the fold models were trained with")
        # in_domain as the runtime answers it: the model's speech guard, or one fitted on the fold's training clips
        # as `emovae train` fits it (fold models saved by cross-validation carry none)
        guards.append(recs[-1].guard or SpeechGuard(fit_guard([paths[i] for i in tr], fcfg,
                                                              seed=args.seed + k)))
        recs[-1].guard = guards[-1]  # the cross-corpus rows answer in_domain with it too
    results: dict[str, dict] = {}
    with ProcessPoolExecutor(args.jobs, initializer=init_worker,
                             initargs=(str(common.data_path("librispeech")), peers)) as pool:
        clean_vec = None
        for cond in conditions:
            t0 = time.time()
            todo = [i for i in range(len(paths)) if scored[i] or (cond == "clean" and peers)]
            rows = [(None, {}, "not scored")] * len(paths)
            jobs = [(paths[i], 1000 * i + 7, cond, peers, fcfg) for i in todo]
            for i, r in zip(todo, pool.map(extract, jobs, chunksize=8)):
                rows[i] = r
            if cond == "clean":
                clean_vec = {name: np.array([r[1][name] for r in rows]) for name in peers}
            pred = np.empty(len(paths), dtype=object)
            flag = np.zeros(len(paths), bool)
            proba = np.zeros((len(paths), len(recs[0].classes)), np.float32)
            failed = 0
            for k, (tr, te) in enumerate(folds):  # k: the position among the scored folds
                ok = [i for i in te if rows[i][0] is not None]
                failed += len(te) - len(ok)
                if not ok:
                    continue
                rec = recs[k]
                out = rec.network.forward([rows[i][0] for i in ok])
                proba[ok] = out["probabilities"]
                pred[ok] = np.array(rec.classes)[out["probabilities"].argmax(1)]
                flag[ok] = ~guards[k].is_speech(np.array([cues(rows[i][0].frames, rows[i][0].frame_names)
                                                           for i in ok]))
            row = {"emovae": balanced_accuracy(labels[scored], pred[scored], classes),
                   "emovae flagged": float(flag[scored].mean()), "failed": failed}
            if cond == "clean":
                row["ece"] = calibration_error(proba[scored], labels[scored], list(recs[0].classes))
            for name in peers:
                ppred = np.empty(len(paths), dtype=object)
                for tr, te in folds:
                    ok = [i for i in te if rows[i][0] is not None]
                    Xte = np.nan_to_num(np.array([rows[i][1][name] for i in ok]))
                    ppred[ok] = common.svm().fit(np.nan_to_num(clean_vec[name][tr]), labels[tr]).predict(Xte)
                row[name] = balanced_accuracy(labels[scored], ppred[scored], classes)
            results[cond] = row
            print(f"{cond:28s} emovae UA {row['emovae']:.3f} flagged {row['emovae flagged']:.3f}  "
                  + "  ".join(f"{n} {row[n]:.3f}" for n in peers) + f"  ({time.time() - t0:.0f} s)", flush=True)
    xc_models = (recs if args.model == "folds" else [Recognizer.load(args.model)] if args.model
                 else [load_pretrained()])
    per_model = [cross_corpus(rec, common.data_path("savee"), common.data_path("librispeech"),
                              20 if args.quick else None) for rec in xc_models]
    xc = {key: (float(np.mean([m[key] for m in per_model])) if key != "libri_answers" else
                {c: float(np.mean([m[key].get(c, 0.0) for m in per_model])) for c in per_model[0][key]})
          for key in per_model[0]}
    xc["libri_answers"] = dict(sorted(xc["libri_answers"].items(), key=lambda kv: -kv[1]))
    xc["savee_n"], xc["libri_n"] = int(xc["savee_n"]), int(xc["libri_n"])
    print(xc, flush=True)

    degraded = [c for c in conditions if c != "clean"]
    names = ("emovae",) + peers
    mean_deg = {n: float(np.mean([results[c][n] for c in degraded])) for n in names}
    lines = common.header_lines("robustness.py")
    recipe = (f"fitted here (the shipped recipe, speed copies {'/'.join(f'{f:g}' for f in tcfg.speed_perturb)}, "
              f"{tcfg.degraded_copies} degraded copies)" if not args.models else f"from {args.models}")
    lines += ["", f"Fold seed {args.seed}, {n_folds} speaker-grouped folds of {len(paths)} dev clips"
              + (f", folds {' '.join(map(str, fold_ids))} scored ({int(scored.sum())} clips)"
                 if args.only_folds else "")
              + "; fold models " + recipe + f". Wall time {time.time() - t_start:.0f} s.",
              "", "## Summary", "",
              "| system | clean UA | mean degraded UA | 2 s crop UA | flagged (mean over degraded) | ECE clean |",
              "|---|---|---|---|---|---|"]
    crop = "first 2.0 s"
    lines.append(f"| emovae | {results['clean']['emovae']:.3f} | {mean_deg['emovae']:.3f} | "
                 f"{results[crop]['emovae']:.3f} | {np.mean([results[c]['emovae flagged'] for c in degraded]):.3f} | "
                 f"{results['clean']['ece']:.3f} |")
    for n in peers:
        lines.append(f"| {n} | {results['clean'][n]:.3f} | {mean_deg[n]:.3f} | {results[crop][n]:.3f} | — | — |")
    lines += ["", "## Per condition (UA, 8 classes; flagged = share with in_domain false: the speech guard)", "",
              "| condition | emovae UA | emovae flagged | " + " | ".join(peers) + " | clips refused |",
              "|---|---|---|" + "---|" * len(peers) + "---|"]
    for c in conditions:
        r = results[c]
        lines.append(f"| {c} | {r['emovae']:.3f} | {r['emovae flagged']:.3f} | "
                     + " | ".join(f"{r[n]:.3f}" for n in peers) + f" | {r['failed']} |")
    who = (f"the {len(recs)} scored fold models, each trained on its training actors; means" if args.model == "folds"
           else f"{args.model or 'the shipped model'}, trained on the 20 dev actors")
    lines += ["", f"## Cross-corpus ({who})", "",
              f"- SAVEE ({xc['savee_n']} clips, 4 speakers, 7 classes): UA over its 7 classes **{xc['savee_ua7']:.3f}**"
              f" (chance 0.143), 8-way {xc['savee_ua8']:.3f}; flagged out of domain {xc['savee_flagged']:.1%}.",
              f"- LibriSpeech sample ({xc['libri_n']} clips of read speech): flagged {xc['libri_flagged']:.1%}; "
              "answers " + ", ".join(f"{k} {v:.0%}" for k, v in xc["libri_answers"].items()) + "."]
    path = common.results_path("robustness", args.quick) if args.out is None else Path(args.out)
    print("->", common.write_results(path, "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
