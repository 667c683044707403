"""Corpora benchmark: emovae and the peers beyond RAVDESS (issue 20, any corpus, any labels).

Four parts, each with emovae (``EmotionRecognizer``, the default recipe: voice student + VAE latent, the training
clips' speed copies) and the peers of ``common.py`` (MFCC-stats + SVM always; eGeMAPSv02 and ComParE_2016 + SVM
when opensmile is installed), every system on the same clips and folds:

  a  SAVEE leave-one-speaker-out: 4 folds, one speaker each (``cross_validate(table, make, n_splits=4,
     split="speaker")``; the peers on ``evaluate.folds_for``'s same folds). 7 classes, 480 clips.
  b  cross-corpus, train on one corpus and score the other (``evaluate.evaluate_model``): RAVDESS (20 dev
     actors, 8 classes) -> SAVEE and SAVEE -> RAVDESS. Headline: UA over the classes both share with the argmax
     restricted to them (RAVDESS -> SAVEE: SAVEE's 7; SAVEE -> RAVDESS: the 7 the model knows, calm clips left
     out); beside it the all-classes figure (argmax over every class of the model, every clip). The peers: the
     same SVM restricted to the shared classes through its one-vs-rest decision values.
  c  RAVDESS + SAVEE leave-one-corpus-out (``split="corpus"``): each corpus held out in turn, the model fitted
     on the other, the argmax over the union of the classes. With two corpora these are the models of part b, so
     the figures repeat b's all-classes ones through the cross-validation path (a consistency check).
  d  a 4-class model (angry, happy, neutral, sad) on RAVDESS through a CSV manifest (path,label,speaker,corpus)
     that this script writes, read with ``extract_dataset(manifest, labels=...)``; speaker-grouped 5-fold CV
     (calm is not merged into neutral: its clips are dropped with the other classes).

"UA adapted" is emovae's speaker-adapted mode (each test speaker's clips together, as ``predict --speaker-from``)
from the same fitted models. Features are cached (``emovae.extraction.default_cache_dir``, the peers' in
``~/.cache/emovae/peers``); the extraction times reported are of this run (cache hits are fast).

Usage: python benchmarks/corpora.py [--data RAVDESS_DIR] [--savee DIR] [--parts a b c d] [--seed 0]
       [--threads N] [--out FILE]
       python benchmarks/corpora.py --quick     # smoke run: 12 clips of 4 RAVDESS actors and 14 of each SAVEE
                                                # speaker, a few epochs, one thread; written to a temporary
                                                # folder; not a result
A full run writes benchmarks/results-corpora.md (about 40 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import common

PARTS = ("a", "b", "c", "d")
FOUR = ("angry", "happy", "neutral", "sad")
QUICK_RAVDESS, QUICK_SAVEE = 48, 56  # clips of the 4 quick speakers of each corpus


def fmt(vals) -> str:
    v = np.asarray(vals, dtype=float)
    return "—" if v.size == 0 or np.isnan(v).all() else f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}"


def num(v) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


class Bench:
    """Shared state of one run: configs, caches, the tables of each corpus and the peers' features."""

    def __init__(self, args, tmp: Path):
        from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
        from emovae.extraction import default_cache_dir

        self.args, self.tmp, self.seed = args, tmp, args.seed
        self.fcfg = FeatureConfig()
        if args.quick:
            vcfg, ccfg, tcfg = common.quick_configs(args.seed)
            # 3 student epochs, not 2: torch's OneCycleLR (pct_start 0.1) divides by zero when the student's
            # epochs x batches come to exactly 10 (2 epochs x 5 batches: the 56 quick SAVEE clips with copies)
            ccfg = replace(ccfg, voice_epochs=3)
        else:
            vcfg, ccfg, tcfg = VAEConfig(), ClassifierConfig(), TrainConfig(seed=args.seed, threads=args.threads)
        self.configs = (vcfg, ccfg, tcfg)
        self.cache = tmp / "features" if args.quick else default_cache_dir()
        self.peer_cache = tmp / "peers" if args.quick else common.DEFAULT_CACHE
        self.n_jobs = args.threads
        peers = common.peer_features(self.peer_cache)
        self.peers = {n: f for n, f in peers.items() if n == "MFCC-stats + SVM" or common.have_opensmile()}
        self.skipped_peers = [n for n in peers if n not in self.peers]

        self.tables: dict[str, object] = {}
        self.extract_s: dict[str, float] = {}
        self.peer_s: dict[str, float] = {}
        self.problems: dict[str, int] = {}

    # --- data
    def table(self, name: str, source, labels=None):
        """The augmented FeatureTable of ``source`` (cached under ``name``)."""
        from emovae.extraction import extract_dataset

        if name not in self.tables:
            t0 = time.perf_counter()
            table, problems = extract_dataset(source, self.fcfg, labels=labels, cache_dir=self.cache,
                                              n_jobs=self.n_jobs, progress=False)
            table.augment(self.configs[2].speed_perturb, cache_dir=self.cache, n_jobs=self.n_jobs, progress=False)
            self.extract_s[name] = time.perf_counter() - t0
            self.problems[name] = sum(not p.where.startswith("label ") for p in problems)  # not the dropped labels
            self.tables[name] = table
            print(f"[corpora] {name}: {len(table)} clips, {len(np.unique(table.speakers))} speakers, classes "
                  f"{dict(table.counts())}; {self.problems[name]} skipped; {self.extract_s[name]:.1f} s",
                  flush=True)
        return self.tables[name]

    def make(self):
        from emovae.train.estimator import EmotionRecognizer

        return EmotionRecognizer(self.fcfg, *self.configs)

    def peer_X(self, name: str, paths) -> np.ndarray:
        X, seconds = self.peers[name](list(paths))
        self.peer_s[(name, hash(tuple(sorted(paths))))] = seconds  # each clip set once (the cache keeps its time)
        return X

    # --- scoring
    def emovae_cv(self, table, n_splits: int, split: str) -> tuple[dict, float]:
        from emovae.evaluate import cross_validate

        t0 = time.perf_counter()
        res = cross_validate(table, self.make, n_splits=n_splits, seed=self.seed, progress=False, split=split)
        return res.metrics, time.perf_counter() - t0

    def peer_cv(self, name: str, table, folds) -> tuple[dict, float]:
        """The SVM on ``name``'s features over ``folds`` -> (metrics like cross_validate's, seconds)."""
        from emovae.evaluate import compute_metrics

        X = self.peer_X(name, table.paths)
        y, classes = table.labels, table.classes
        t0 = time.perf_counter()
        pred = np.empty(len(y), dtype=object)
        per_fold = []
        for tr, te in folds:
            pred[te], _ = common.svm_fold(X[tr], y[tr], X[te])
            per_fold.append(compute_metrics(y[te], pred[te], classes))
        m = compute_metrics(y, pred, classes)
        m["folds"] = per_fold
        return m, time.perf_counter() - t0

    def peer_transfer(self, name: str, train, test) -> tuple[dict, float]:
        """The SVM fitted on ``train``, scored on ``test`` as ``evaluate_model`` scores emovae: over the shared
        classes with the decision restricted to them, and the all-classes figure."""
        from emovae.evaluate import compute_metrics

        Xtr, Xte = self.peer_X(name, train.paths), self.peer_X(name, test.paths)
        t0 = time.perf_counter()
        model = common.svm().fit(Xtr, train.labels)
        known = list(model.classes_)
        shared = [c for c in known if c in set(test.classes)]
        y = test.labels
        keep = np.isin(y, shared)
        scores = model.decision_function(Xte)  # (n, classes) one-vs-rest shaped
        cols = [known.index(c) for c in shared]
        restricted = np.array(shared)[scores[:, cols].argmax(1)]
        m = compute_metrics(y[keep], restricted[keep], shared)
        full = model.predict(Xte)
        m["all_classes"] = compute_metrics(y, full, tuple(dict.fromkeys(known + list(test.classes))))
        m["left_out"] = int((~keep).sum())
        return m, time.perf_counter() - t0


# --- the parts --------------------------------------------------------------------------------------------------


def cv_row(m: dict, seconds: float, adapted: bool = True) -> dict:
    """A summary row of cross-validation metrics ``m``: per-fold UA, UA, accuracy, macro-F1, adapted UA, recall."""
    return {"folds": [f["balanced_accuracy"] for f in m["folds"]], "ua": m["balanced_accuracy"],
            "acc": m["accuracy"], "f1": m["macro_f1"],
            "adapted": m.get("adapted", {}).get("mean", {}).get("balanced_accuracy") if adapted else None,
            "s": seconds, "recall": m["per_class_recall"]}


def peer_rows(b, table, n: int, part: str) -> dict:
    """The peers' rows on the same speaker-grouped folds as emovae's."""
    from emovae.evaluate import folds_for

    rows, folds = {}, folds_for(table, "speaker", n, b.seed)
    for name in b.peers:
        pm, ps = b.peer_cv(name, table, folds)
        rows[name] = cv_row(pm, ps, adapted=False)
        print(f"[corpora] {part} {name} UA {fmt(rows[name]['folds'])}", flush=True)
    return rows


def part_a(b: Bench, savee_src) -> dict:
    """SAVEE leave-one-speaker-out."""
    table = b.table("savee", savee_src)
    n = len(np.unique(table.speakers))
    rows = {}
    m, s = b.emovae_cv(table, n, "speaker")
    rows["emovae"] = cv_row(m, s)
    rows["emovae"]["test"] = [common.short_speakers(f["test_speakers"]) for f in m["folds"]]
    print(f"[corpora] a emovae UA {fmt(rows['emovae']['folds'])} ({s:.0f} s)", flush=True)
    rows.update(peer_rows(b, table, n, "a"))
    return {"rows": rows, "n": len(table), "speakers": n, "classes": list(table.classes)}


def part_b(b: Bench, ravdess_src, savee_src) -> dict:
    """Train on one corpus, score the other."""
    from emovae.evaluate import evaluate_model, table_features

    tables = {"RAVDESS": b.table("ravdess", ravdess_src), "SAVEE": b.table("savee", savee_src)}
    out = {}
    for src, dst in (("RAVDESS", "SAVEE"), ("SAVEE", "RAVDESS")):
        train, test = tables[src], tables[dst]
        t0 = time.perf_counter()
        model = b.make().fit(table_features(train), train.labels, groups=train.speakers,
                             augmented=train.augmented)
        fit_s = time.perf_counter() - t0
        res = evaluate_model(model, test)
        adapted = evaluate_model(model, test, adapted=True).metrics
        m = res.metrics
        rows = {"emovae": {"ua": m["balanced_accuracy"], "acc": m["accuracy"], "f1": m["macro_f1"],
                           "all": m.get("all_classes", {}).get("balanced_accuracy", m["balanced_accuracy"]),
                           "adapted": adapted["balanced_accuracy"], "s": time.perf_counter() - t0,
                           "shared": m["classes"], "left_out": m.get("left_out", 0), "recall": m["per_class_recall"]}}
        print(f"[corpora] b {src} -> {dst} emovae UA {m['balanced_accuracy']:.3f} over {len(m['classes'])} shared "
              f"classes, all classes {rows['emovae']['all']:.3f} (fit {fit_s:.0f} s)", flush=True)
        for name in b.peers:
            pm, ps = b.peer_transfer(name, train, test)
            rows[name] = {"ua": pm["balanced_accuracy"], "acc": pm["accuracy"], "f1": pm["macro_f1"],
                          "all": pm["all_classes"]["balanced_accuracy"], "adapted": None, "s": ps,
                          "shared": list(pm["per_class_recall"]), "left_out": pm["left_out"],
                          "recall": pm["per_class_recall"]}
            print(f"[corpora] b {src} -> {dst} {name} UA {pm['balanced_accuracy']:.3f}, all classes "
                  f"{rows[name]['all']:.3f}", flush=True)
        out[f"{src} -> {dst}"] = {"rows": rows, "train": len(train), "test": len(test),
                                  "train_classes": list(train.classes), "test_classes": list(test.classes)}
    return out


def concat(tables):
    """One FeatureTable of several (items, features and speed copies in order)."""
    from emovae.extraction import FeatureTable

    t0 = tables[0]
    return FeatureTable([it for t in tables for it in t.items], np.vstack([t.stats for t in tables]), t0.stat_names,
                        [f for t in tables for f in t.frames], t0.frame_names, t0.config,
                        {f: [c for t in tables for c in t.augmented[f]] for f in t0.augmented},
                        None if t0.mels is None else [m for t in tables for m in t.mels])


def part_c(b: Bench, ravdess_src, savee_src) -> dict:
    """RAVDESS + SAVEE leave-one-corpus-out."""
    from emovae.evaluate import folds_for

    table = concat([b.table("ravdess", ravdess_src), b.table("savee", savee_src)])
    m, s = b.emovae_cv(table, 2, "corpus")
    held = [sorted({x.split("/", 1)[0] for x in f["test_speakers"]})[0] for f in m["folds"]]
    rows = {"emovae": {"folds": [f["balanced_accuracy"] for f in m["folds"]], "ua": m["balanced_accuracy"],
                       "adapted_folds": [f["balanced_accuracy"] for f in m.get("adapted", {}).get("folds", [])],
                       "s": s}}
    print(f"[corpora] c emovae UA per held-out corpus {dict(zip(held, rows['emovae']['folds']))} ({s:.0f} s)",
          flush=True)
    folds = folds_for(table, "corpus", 2, b.seed)
    for name in b.peers:
        pm, ps = b.peer_cv(name, table, folds)
        rows[name] = {"folds": [f["balanced_accuracy"] for f in pm["folds"]], "ua": pm["balanced_accuracy"],
                      "adapted_folds": [], "s": ps}
        print(f"[corpora] c {name} UA per held-out corpus {dict(zip(held, rows[name]['folds']))}", flush=True)
    return {"rows": rows, "held": held, "n": len(table), "classes": list(table.classes)}


def write_manifest(ravdess_src, path: Path) -> tuple[Path, int]:
    """A CSV manifest (path,label,speaker,corpus) of every clip of the RAVDESS folder -> (path, rows)."""
    from emovae.corpus import scan

    items = scan(ravdess_src)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker", "corpus"])
        for it in items:
            w.writerow([os.path.abspath(it.path), it.label, it.speaker, it.corpus])
    return path, len(items)


def part_d(b: Bench, ravdess_src) -> dict:
    """A 4-class model on RAVDESS from a manifest."""
    manifest, n_rows = write_manifest(ravdess_src, b.tmp / "ravdess-manifest.csv")
    table = b.table("ravdess 4-class (manifest)", f"manifest={manifest}", labels=FOUR)
    n = min(5, len(np.unique(table.speakers)) // 2) if b.args.quick else 5
    m, s = b.emovae_cv(table, n, "speaker")
    rows = {"emovae": cv_row(m, s)}
    print(f"[corpora] d emovae UA {fmt(rows['emovae']['folds'])} ({s:.0f} s)", flush=True)
    rows.update(peer_rows(b, table, n, "d"))
    return {"rows": rows, "n": len(table), "rows_in_manifest": n_rows, "folds": n,
            "speakers": len(np.unique(table.speakers)), "counts": dict(table.counts())}


# --- report -------------------------------------------------------------------------------------------------------


def recall_cells(recall: dict, classes) -> str:
    return " | ".join(num(recall.get(c)) for c in classes)


def report(b: Bench, res: dict, seconds: float) -> tuple[str, list[str]]:
    args = b.args
    sysnames = ["emovae", *b.peers]
    md = ["# Corpora benchmark: SAVEE, cross-corpus, leave-one-corpus-out, a 4-class manifest", "",
          *common.header_lines("corpora.py"),
          f"- Data: RAVDESS `{Path(args.data).name}` and SAVEE `{Path(args.savee).name}`"
          + "".join(f"; {name} {len(t)} clips of {len(np.unique(t.speakers))} speakers "
                    f"({b.problems[name]} skipped; features + speed copies {b.extract_s[name]:.0f} s)"
                    for name, t in b.tables.items()),
          f"- emovae: `EmotionRecognizer` with the package defaults (seed {args.seed}, "
          f"{b.configs[2].threads} torch thread(s)); training clips' copies at "
          f"{'/'.join(f'{f:g}x' for f in b.configs[2].speed_perturb)} speed. Peers: "
          + ", ".join(b.peers) + " (StandardScaler + RBF SVC C=10)"
          + (f"; {', '.join(b.skipped_peers)} skipped: opensmile is not installed" if b.skipped_peers else "") + ".",
          f"- Whole run: {seconds:.0f} s wall.", ""]
    head, md = md, []
    summary = ["| part | setting | " + " | ".join(f"{n} UA" for n in sysnames) + " | chance |",
               "|---|---|" + "---|" * (len(sysnames) + 1)]

    if "a" in res:
        r = res["a"]
        k = len(r["classes"])
        md += [f"## a. SAVEE, leave-one-speaker-out ({r['speakers']} folds, {r['n']} clips, {k} classes)", "",
               "Speaker-grouped folds with one speaker each (`split=\"speaker\"`, "
               f"n_splits={r['speakers']}); the same folds for every system. UA mean ± std over the folds; pooled: "
               "over all clips.", "",
               "| system | UA (mean ± std over folds) | per fold | UA pooled | accuracy | macro-F1 | UA adapted | "
               "train + predict s |", "|---|---|---|---|---|---|---|---|"]
        for n in sysnames:
            x = r["rows"][n]
            md.append(f"| {n} | {fmt(x['folds'])} | {' '.join(f'{v:.3f}' for v in x['folds'])} | {x['ua']:.3f} | "
                      f"{x['acc']:.3f} | {x['f1']:.3f} | {num(x['adapted'])} | {x['s']:.0f} |")
        md += ["", f"Test speaker per fold: {'; '.join(r['rows']['emovae']['test'])}.", "",
               "Recall per class (pooled):", "", "| system | " + " | ".join(r["classes"]) + " |",
               "|---|" + "---|" * k]
        md += [f"| {n} | {recall_cells(r['rows'][n]['recall'], r['classes'])} |" for n in sysnames]
        md.append("")
        summary.append(f"| a | SAVEE leave-one-speaker-out ({k} classes) | "
                       + " | ".join(fmt(r["rows"][n]["folds"]) for n in sysnames) + f" | {1 / k:.3f} |")

    if "b" in res:
        md += ["## b. Cross-corpus: train on one corpus, score the other", "",
               "`evaluate_model`: UA over the classes the model and the test corpus share, the argmax restricted to "
               "them (clips of other classes left out); \"all classes\": the argmax over every class of the model, "
               "every clip (a class the model lacks is always wrong). The peers' SVM restricted the same way "
               "through its one-vs-rest decision values.", "",
               "| direction | system | shared classes | UA shared | accuracy shared | macro-F1 shared | UA all classes "
               "| UA adapted (shared) | clips left out | train + predict s |", "|---|---|---|---|---|---|---|---|---|---|"]
        for d, r in res["b"].items():
            for n in sysnames:
                x = r["rows"][n]
                md.append(f"| {d} | {n} | {len(x['shared'])} | {x['ua']:.3f} | {x['acc']:.3f} | {x['f1']:.3f} | "
                          f"{x['all']:.3f} | {num(x['adapted'])} | {x['left_out']} | {x['s']:.0f} |")
            shared = r["rows"]["emovae"]["shared"]
            summary.append(f"| b | {d} ({len(shared)} shared classes) | "
                           + " | ".join(f"{r['rows'][n]['ua']:.3f}" for n in sysnames) + f" | {1 / len(shared):.3f} |")
        md += ["", "Recall per class over the shared classes:", ""]
        for d, r in res["b"].items():
            shared = r["rows"]["emovae"]["shared"]
            md += [f"{d} ({r['train']} training clips, {r['test']} test clips):", "",
                   "| system | " + " | ".join(shared) + " |", "|---|" + "---|" * len(shared)]
            md += [f"| {n} | {recall_cells(r['rows'][n]['recall'], shared)} |" for n in sysnames]
            md.append("")

    if "c" in res:
        r = res["c"]
        md += [f"## c. RAVDESS + SAVEE, leave-one-corpus-out ({r['n']} clips, {len(r['classes'])} classes in all)",
               "", "`cross_validate(..., split=\"corpus\")`: each corpus held out in turn, the model fitted on the "
               "other; the argmax over the union of the classes (a class only the held-out corpus has, such as "
               "calm, is never predicted). With two corpora the fitted models are those of part b, so these are "
               "b's all-classes figures reached through the cross-validation path.", "",
               "| system | " + " | ".join(f"UA, {h} held out" for h in r["held"]) + " | mean | "
               + " | ".join(f"UA adapted, {h}" for h in r["held"]) + " |",
               "|---|" + "---|" * (2 * len(r["held"]) + 1)]
        for n in sysnames:
            x = r["rows"][n]
            ad = x["adapted_folds"] or [None] * len(r["held"])
            md.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in x["folds"]) + f" | {np.mean(x['folds']):.3f} | "
                      + " | ".join(num(v) for v in ad) + " |")
        md.append("")
        summary.append("| c | leave-one-corpus-out (mean of " + ", ".join(r["held"]) + " held out) | "
                       + " | ".join(f"{np.mean(r['rows'][n]['folds']):.3f}" for n in sysnames) + " | — |")

    if "d" in res:
        r = res["d"]
        md += [f"## d. A 4-class model on RAVDESS through a CSV manifest ({r['n']} clips)", "",
               f"The script writes a manifest of the {r['rows_in_manifest']} RAVDESS clips "
               "(`path,label,speaker,corpus`) and reads it with `extract_dataset(manifest, labels=(angry, happy, "
               f"neutral, sad))`; the {r['rows_in_manifest'] - r['n']} clips of other labels are dropped (calm is "
               "not merged into neutral). Clips per class: "
               + ", ".join(f"{c} {v}" for c, v in r["counts"].items())
               + f". Speaker-grouped {r['folds']}-fold CV over {r['speakers']} speakers (seed {args.seed}).", "",
               "| system | UA (mean ± std over folds) | UA pooled | accuracy | macro-F1 | UA adapted | "
               "train + predict s |", "|---|---|---|---|---|---|---|"]
        for n in sysnames:
            x = r["rows"][n]
            md.append(f"| {n} | {fmt(x['folds'])} | {x['ua']:.3f} | {x['acc']:.3f} | {x['f1']:.3f} | "
                      f"{num(x['adapted'])} | {x['s']:.0f} |")
        md += ["", "| system | " + " | ".join(FOUR) + " |", "|---|" + "---|" * len(FOUR)]
        md += [f"| {n} | {recall_cells(r['rows'][n]['recall'], FOUR)} |" for n in sysnames]
        md.append("")
        summary.append("| d | RAVDESS 4 classes from a manifest | "
                       + " | ".join(fmt(r["rows"][n]["folds"]) for n in sysnames) + " | 0.250 |")

    peer_s: dict[str, float] = {}
    for (n, _), s in b.peer_s.items():
        peer_s[n] = peer_s.get(n, 0.0) + s
    peer_times = "; ".join(f"{n} {s:.0f} s" for n, s in peer_s.items())
    md += ["## Notes", "",
           "Every figure is speaker-independent: no test speaker's clips are used for training, scaling, early "
           "stopping or choosing C (the estimator's inner validation split is speaker-disjoint inside the training "
           "clips). The folds hold few speakers (SAVEE has four, all male), so fold-to-fold spread is large and "
           "differences of a few points are not resolved. Train + predict times are wall times on a machine that "
           "may be shared; peer feature extraction (wall time of the original extraction of each clip set, kept with "
           "the cache, on all cores): "
           + (peer_times or "none") + "."]
    if args.quick:
        md += ["", "**Quick smoke run** (a few clips per speaker, a few epochs): not a result."]
    md = head + ["## Summary", "", *summary, ""] + md
    return "\n".join(md) + "\n", summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(ap, quick=f"{QUICK_RAVDESS // common.QUICK_ACTORS} RAVDESS and "
                                          f"{QUICK_SAVEE // common.QUICK_ACTORS} SAVEE clips per speaker, a few "
                                          "epochs, one thread")
    ap.add_argument("--savee", default=str(common.data_path("savee")), help="the SAVEE folder")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="fold and model seed (default 0)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads and feature-extraction processes (default: all cores; 1 with --quick)")
    ap.add_argument("--out", help="results file (default: benchmarks/results-corpora.md)")
    args = ap.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.quick else common.cores()
    out = Path(args.out) if args.out else common.results_path("corpora", args.quick)
    t_run = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="emovae-corpora-") as tmpdir:
        tmp = Path(tmpdir)
        ravdess, savee = args.data, f"savee={args.savee}"
        if args.quick:
            ravdess = common.quick_subset(args.data, tmp, common.QUICK_ACTORS, QUICK_RAVDESS)
            savee = f"savee={common.quick_subset(args.savee, tmp, common.QUICK_ACTORS, QUICK_SAVEE, kind='savee')}"
        b = Bench(args, tmp)
        res: dict = {}
        part_s = {}
        for p in PARTS:
            if p not in args.parts:
                continue
            t0 = time.perf_counter()
            res[p] = {"a": lambda: part_a(b, savee), "b": lambda: part_b(b, ravdess, savee),
                      "c": lambda: part_c(b, ravdess, savee), "d": lambda: part_d(b, ravdess)}[p]()
            part_s[p] = time.perf_counter() - t0
            print(f"[corpora] part {p} done in {part_s[p]:.0f} s", flush=True)
        text, summary = report(b, res, time.perf_counter() - t_run)
        text = text.replace("- Whole run:", "- Per part: " + ", ".join(f"{p} {s:.0f} s" for p, s in part_s.items())
                            + ".\n- Whole run:", 1)
    common.write_results(out, text)
    print("\n" + "\n".join(summary))
    print(f"\n[corpora] wrote {out}; whole run {time.perf_counter() - t_run:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
