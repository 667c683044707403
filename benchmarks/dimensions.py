"""Arousal and valence across corpora (issue 32): the arousal/valence heads scored on corpora they never heard.

The fold models of ``loco.py`` (train on three of RAVDESS 1-20, SAVEE, TESS, EMOVO, test on the fourth) carry
arousal/valence heads fitted on their training corpora's category coordinates (``emovae.affect``; RAVDESS refined
by its intensity field). Per left-out corpus:

- arousal AUROC, high (happy, angry, fearful, surprised) against low (neutral, calm, sad) clips, and valence
  AUROC, positive (happy, calm) against negative (sad, angry, fearful, disgust): the groups ``affect`` defines;
- concordance (CCC) of each dimension with the clips' coordinates;
- on RAVDESS, Spearman's rho of arousal with the intensity field (normal 0, strong 1; neutral has no strong take);
- against the same fold model's probability sums (the 8922f4a-style arousal: P(high classes); valence:
  P(positive classes)), the coordinates expected under its probabilities (sum of p_c x coordinates_c, a hand
  map at run time), and eGeMAPSv02 functionals + RBF SVR per dimension trained on the same three corpora.

``--refit`` fits the fold models' arousal/valence heads again first (``EmotionRecognizer.fit_dimensions``: the
emotion heads and the representation unchanged). ``--model LABEL=DIR``: where a model puts ``librispeech-sample``
(ordinary read speech, never trained or tuned on) on the two axes. ``--timing BEFORE=DIR,AFTER=DIR``: per-clip
time of two models on the same clips, interleaved.

Usage: python benchmarks/dimensions.py --folds DIR [--refit] [--model LABEL=DIR ...] [--timing A=DIR,B=DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import common
import loco


def auroc(score: np.ndarray, high: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``high`` (1 / 0; NaN rows left out)."""
    from sklearn.metrics import roc_auc_score

    keep = np.isfinite(high) & np.isfinite(score)
    return float(roc_auc_score(high[keep], score[keep])) if len(set(high[keep].tolist())) == 2 else float("nan")


def scores_of(dims: np.ndarray, targets: np.ndarray, acted, intensities) -> dict:
    """The metrics of arousal/valence predictions (N, 2) against the clips' coordinates (N, 2) and groups."""
    from scipy.stats import spearmanr

    from emovae.affect import HIGH_AROUSAL, LOW_AROUSAL, NEGATIVE, POSITIVE, side
    from emovae.train.estimator import concordance

    ok = np.isfinite(targets).all(axis=1)
    out = {"arousal_auc": auroc(dims[:, 0], side(acted, HIGH_AROUSAL, LOW_AROUSAL)),
           "valence_auc": auroc(dims[:, 1], side(acted, POSITIVE, NEGATIVE)),
           "arousal_ccc": concordance(targets[ok, 0], dims[ok, 0]),
           "valence_ccc": concordance(targets[ok, 1], dims[ok, 1])}
    strong = np.array([{"strong": 1.0, "normal": 0.0}.get(v, np.nan) if e != "neutral" else np.nan
                       for v, e in zip(intensities, acted)])
    keep = np.isfinite(strong)
    out["intensity_rho"] = float(spearmanr(dims[keep, 0], strong[keep])[0]) if keep.sum() > 10 else float("nan")
    return out


def fold_rows(table, folds_dir: Path, refit: bool) -> dict:
    """Per left-out corpus: emovae's heads (strict and adapted), the probability sums and the expected
    coordinates of the same fold model."""
    from emovae.affect import COORDINATES, HIGH_AROUSAL, POSITIVE, ravdess_fields
    from emovae.evaluate import folds_for, table_features
    from emovae.speaker import SessionConfig
    from emovae.train.estimator import EmotionRecognizer

    X, targets = table_features(table), table.dimension_targets
    emotions, intensities = ravdess_fields(table.paths)
    acted = np.array([e or label for e, label in zip(emotions, table.labels)], dtype=object)
    rows = {}
    for k, (tr, te) in enumerate(folds_for(table, "corpus", 4, 0)):
        d = folds_dir / f"seed0-fold{k}"
        model = EmotionRecognizer.load(d)
        if refit or not model.net_.has_dimensions:
            t0 = time.perf_counter()
            model.fit_dimensions([X[i] for i in tr], table.labels[tr], groups=table.speakers[tr],
                                 augmented=table.augmented_for(tr), corpora=table.corpora[tr], dimensions=targets[tr])
            model.save(d)
            print(f"[dimensions] fold {k}: heads fitted in {time.perf_counter() - t0:.0f} s, penalty "
                  f"{model.dimensions_['alpha']}", flush=True)
        Xte = [X[i] for i in te]
        out = model.forward(Xte)
        adapted = model.network().forward_by_speaker(model.prepare(Xte), table.speakers[te], SessionConfig())
        p, classes = out["probabilities"], list(model.classes_)
        sums = np.stack([p[:, [classes.index(c) for c in HIGH_AROUSAL if c in classes]].sum(1),
                         p[:, [classes.index(c) for c in POSITIVE if c in classes]].sum(1)], axis=1)
        expected = p @ np.array([COORDINATES.get(c, (0.0, 0.0)) for c in classes])
        name = table.corpora[te][0]
        args = (targets[te], acted[te], [intensities[i] for i in te])
        rows[name] = {"n": len(te), "emovae": scores_of(out["dimensions"], *args),
                      "adapted": scores_of(adapted["dimensions"], *args), "sums": scores_of(sums, *args),
                      "expected": scores_of(expected, *args), "alpha": model.dimensions_["alpha"]}
        r = rows[name]
        print(f"[dimensions] {name} left out: arousal AUROC {r['emovae']['arousal_auc']:.3f} (sums "
              f"{r['sums']['arousal_auc']:.3f}), valence {r['emovae']['valence_auc']:.3f} (sums "
              f"{r['sums']['valence_auc']:.3f})", flush=True)
        rows[name]["_args"] = args
    return rows


def peer_rows(table, rows: dict) -> None:
    """eGeMAPSv02 functionals + RBF SVR per dimension on the same folds (clips only, corpus- and class-balanced
    weights as emovae's heads), into ``rows[corpus]["egemaps"]``."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    from emovae.evaluate import folds_for
    from emovae.train.estimator import balanced_weights

    X, _ = common.opensmile_functionals(table.paths, "eGeMAPSv02")
    targets, y, corpora = table.dimension_targets, table.labels, table.corpora
    for tr, te in folds_for(table, "corpus", 4, 0):
        tr = tr[np.isfinite(targets[tr]).all(axis=1)]
        w = balanced_weights(y[tr], corpora[tr])
        pred = np.stack([make_pipeline(StandardScaler(), SVR(kernel="rbf", C=1.0, gamma="scale"))
                         .fit(X[tr], targets[tr, j], svr__sample_weight=w).predict(X[te]) for j in range(2)], axis=1)
        name = corpora[te][0]
        rows[name]["egemaps"] = scores_of(np.clip(pred, -1, 1), *rows[name]["_args"])
        print(f"[dimensions] eGeMAPS+SVR, {name} left out: arousal AUROC {rows[name]['egemaps']['arousal_auc']:.3f}",
              flush=True)


def librispeech(specs: list[str], root: Path) -> dict:
    """Per model: where it puts librispeech-sample on the two axes (median and quartiles)."""
    from emovae.runtime import Recognizer

    files = sorted(str(p) for p in (root / "librispeech-sample").rglob("*") if p.suffix.lower() in
                   (".flac", ".wav"))
    out = {}
    for spec in specs:
        label, path = spec.split("=", 1)
        rec = Recognizer.load(path)
        preds = [rec.predict_file(f) for f in files]
        dims = np.array([[p.arousal, p.valence] for p in preds if p.arousal is not None], dtype=float)
        out[label] = {"n": len(files), "with": len(dims),
                      "quartiles": np.percentile(dims, [25, 50, 75], axis=0).round(3).tolist() if len(dims) else None}
        print(f"[dimensions] {label} on LibriSpeech: {out[label]}", flush=True)
    return out


def timing(spec: str, root: Path, n: int = 100, rounds: int = 3) -> dict:
    """Median per-clip seconds of each model (LABEL=DIR,LABEL=DIR) over the same ``n`` RAVDESS files, the models
    interleaved round by round (a noisy machine slows both alike)."""
    from emovae.runtime import Recognizer

    models = [(lab, Recognizer.load(p)) for lab, p in (s.split("=", 1) for s in spec.split(","))]
    files = sorted(str(p) for p in (root / "ravdess-speech").rglob("*.flac"))[:n]
    times: dict[str, list[float]] = {lab: [] for lab, _ in models}
    for _ in range(rounds):
        for f in files:
            for lab, rec in models:
                t0 = time.perf_counter()
                rec.predict_file(f)
                times[lab].append(time.perf_counter() - t0)
    return {lab: float(np.median(v)) for lab, v in times.items()}


def report(rows: dict, libri: dict, times: dict, seconds: float) -> str:
    """The results file's text."""
    cols = (("emovae", "emovae heads"), ("adapted", "emovae, adapted"), ("sums", "probability sums"),
            ("expected", "expected coordinates"), ("egemaps", "eGeMAPS+SVR"))
    lines = ["# Arousal and valence on corpora the heads never heard (issue 32)", "",
             *common.header_lines("dimensions.py"), f"- Whole run: {seconds / 60:.1f} min", "",
             "Train on three corpora, test on the fourth (the fold models of `loco.py`). AUROC: arousal high (happy, "
             "angry, fearful, surprised) vs low (neutral, calm, sad); valence positive (happy, calm) vs negative (sad, "
             "angry, fearful, disgust). CCC: concordance with the category coordinates (`emovae.affect`). rho: "
             "Spearman of arousal with RAVDESS's intensity (normal 0, strong 1; not neutral).", ""]
    for metric, title in (("arousal_auc", "Arousal AUROC (high vs low)"), ("valence_auc", "Valence AUROC (positive vs "
                          "negative)"), ("arousal_ccc", "Arousal CCC"), ("valence_ccc", "Valence CCC")):
        lines += [f"### {title}", "", "| left-out corpus (clips) | " + " | ".join(c for _, c in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for name, r in rows.items():
            lines.append(f"| {name} ({r['n']}) | " + " | ".join(loco.fmt(r.get(k, {}).get(metric)) for k, _ in cols)
                         + " |")
        means = [loco.fmt(np.mean([r[k][metric] for r in rows.values()])) if all(k in r for r in rows.values())
                 else "—" for k, _ in cols]
        lines.append("| **mean** | " + " | ".join(means) + " |")
        lines.append("")
    if "ravdess" in rows:
        r = rows["ravdess"]
        lines += ["RAVDESS left out, Spearman's rho of arousal with intensity: " + ", ".join(
            f"{c} {loco.fmt(r[k]['intensity_rho'])}" for k, c in cols if k in r), ""]
    penalties = ", ".join(f"{n} {' / '.join(f'{a:g}' for a in np.atleast_1d(r['alpha']))}" for n, r in rows.items())
    lines.append("Ridge penalty of each fold's heads, arousal / valence (chosen on its training corpora left out in "
                 f"turn): {penalties}")
    if libri:
        lines += ["", "## librispeech-sample (read speech, never trained or tuned on)", "",
                  "| model | clips with dimensions | arousal 25/50/75 % | valence 25/50/75 % |", "|---|---|---|---|"]
        for lab, v in libri.items():
            q = v["quartiles"]
            lines.append(f"| {lab} | {v['with']} / {v['n']} | " + (" | ".join(
                " / ".join(f"{q[i][j]:+.2f}" for i in range(3)) for j in range(2)) if q else "— | —") + " |")
    if times:
        base = next(iter(times.values()))
        lines += ["", "## Per-clip time (predict_file, median over 3 interleaved rounds of the same 100 clips)", ""]
        lines += [f"- {lab}: {t * 1000:.2f} ms ({t / base:.3f} x {next(iter(times))})" for lab, t in times.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from emovae.config import FeatureConfig, TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(common.data_root()), help="folder holding the corpora")
    ap.add_argument("--folds", required=True, help="the fold models of loco.py")
    ap.add_argument("--refit", action="store_true", help="fit the fold models' arousal/valence heads again first")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=DIR")
    ap.add_argument("--timing", metavar="A=DIR,B=DIR", help="per-clip time of models on the same clips")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--out", default=str(common.results_path("dimensions")))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = Path(args.root)
    table = loco.table_of(root, FeatureConfig(), TrainConfig(degraded_copies=0))
    rows = fold_rows(table, Path(args.folds), args.refit)
    if not args.no_peers and common.have_opensmile():
        peer_rows(table, rows)
    for r in rows.values():
        r.pop("_args")
    libri = librispeech(args.model, root)
    times = timing(args.timing, root) if args.timing else {}
    common.write_results(args.out, report(rows, libri, times, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
