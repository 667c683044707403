"""Issue 7 experiments: speaker-independent search for better balanced accuracy (UA) with light models.

Every number is actor-grouped 5-fold CV over the 20 dev actors (``emovae.evaluate.actor_folds(actors, 5, seed)``)
for each seed (the seed redraws the actor folds and seeds the model and the inner split), so every configuration
is scored on exactly the same folds and can be compared pairwise. Scalers and models are fitted inside the
training folds. Hyper-parameters are either fixed a priori (written in the row name) or chosen on an inner
actor-disjoint split of the training fold (``emovae.model.inner_split``, 3 actors, like ``EmotionRecognizer``):
the "inner-C" rows.

Two modes:
- strict single-clip ("global"): features z-scored with the training fold's mean and std only.
- adapted ("speaker"): features first z-scored per speaker with ``emovae.features.speaker_normalize`` (all
  clips of that speaker, test speakers included, no labels), then z-scored with the training fold as above.

Usage (keep it gentle on a shared machine)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/python \
        benchmarks/experiments.py --groups heads feats combo --seeds 0 1 2
    ... --groups vae --seeds 0 1 2      # full-model VAE variants (about 10-15 s per fold on 2 cores)
    ... --shape-stats --groups heads vae  # the same on the 941 statistics (FeatureConfig(shape_stats=True))

Prints one markdown table per group and mode (sorted by UA) with the paired difference against the current
default head (LR inner-C on the 426 statistics) on the same folds. Raw per-fold scores are cached in --save,
so a rerun only computes what is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig  # noqa: E402
from emovae.data import EMOTIONS  # noqa: E402
from emovae.evaluate import actor_folds, table_features  # noqa: E402
from emovae.extraction import default_cache_dir, extract_dataset  # noqa: E402
from emovae.features import speaker_normalize  # noqa: E402
from emovae.model import inner_split  # noqa: E402

DATA = "/work/shared/data/ravdess-speech"


# ------------------------------------------------------------------------------------------------ features
def load_table(cfg: FeatureConfig):
    table, _ = extract_dataset(DATA, cfg, cache_dir=default_cache_dir(), n_jobs=1, progress=False)
    return table


def _cols(table, pred):
    return np.array([i for i, n in enumerate(table.stat_names) if pred(str(n))])


def _nan_stats(x: np.ndarray, fns) -> np.ndarray:
    out = []
    for j in range(x.shape[1]):
        v = x[np.isfinite(x[:, j]), j]
        out.append([f(v) if v.size > 3 else 0.0 for f in fns])
    return np.asarray(out, np.float64).ravel()


def _skew(v):
    s = v.std()
    return float(((v - v.mean()) ** 3).mean() / s ** 3) if s > 1e-9 else 0.0


def _kurt(v):
    s = v.std()
    return float(((v - v.mean()) ** 4).mean() / s ** 4 - 3.0) if s > 1e-9 else 0.0


def _slope(v):
    t = np.linspace(-1.0, 1.0, v.size)  # slope per clip length, so it does not depend on duration
    return float(np.polyfit(t, v, 1)[0]) if v.size > 3 else 0.0


def frame_extras(table, cache="/tmp/emovae-experiments-extras.npz") -> dict[str, np.ndarray]:
    """Extra utterance statistics computed from the cached frame matrices, one block (1200, k) per name
    (cached in ``cache``; delete it after changing this function). No labels are used."""
    if cache and Path(cache).exists():
        with np.load(cache) as z:
            if len(z[z.files[0]]) == len(table.frames):
                return {k: z[k] for k in z.files}
    ex = _frame_extras(table)
    if cache:
        np.savez(cache, **ex)
    return ex


def _frame_extras(table) -> dict[str, np.ndarray]:
    names = list(map(str, table.frame_names))
    i_f0 = names.index("f0_hz")
    i_mfcc = [i for i, n in enumerate(names) if n.startswith("mfcc_") and "delta" not in n]
    blocks = {k: [] for k in ("skew_kurt", "slope", "f0_semitone", "ddelta", "iqr_range", "mfcc_cmn_pct", "pct",
                              "rms_rel")}
    for fr in table.frames:
        x = fr.astype(np.float64)
        blocks["skew_kurt"].append(_nan_stats(x, (_skew, _kurt)))
        blocks["slope"].append(_nan_stats(x, (_slope,)))
        f0 = x[:, i_f0]
        v = f0[np.isfinite(f0) & (f0 > 0)]
        if v.size > 3:
            st = 12 * np.log2(v / np.median(v))
            d = np.diff(st)
            blocks["f0_semitone"].append([st.std(), *np.percentile(st, (5, 25, 75, 95)),
                                          np.percentile(st, 95) - np.percentile(st, 5), _slope(st),
                                          np.abs(d).mean(), d.std(), v.size / len(f0)])
        else:
            blocks["f0_semitone"].append([0.0] * 10)
        m = x[:, i_mfcc]
        dd = np.diff(m, n=2, axis=0) if len(m) > 3 else np.zeros((1, m.shape[1]))
        blocks["ddelta"].append(np.concatenate([np.abs(dd).mean(0), dd.std(0)]))
        fin = np.where(np.isfinite(x), x, np.nan)
        p = np.nanpercentile(fin, (10, 25, 75, 90), axis=0)
        blocks["iqr_range"].append(np.nan_to_num(np.concatenate([p[2] - p[1], p[3] - p[0]])))
        # the same percentiles utterance_stats computes, at 5/25/75/95 = FeatureConfig(percentiles=(5, 10, 25,
        # 50, 75, 90, 95)) minus the columns already there
        blocks["pct"].append(np.nan_to_num(np.nanpercentile(fin, (5, 25, 75, 95), axis=0).ravel()))
        r = x[:, names.index("rms_db")]  # level relative to the clip's loud frames: recording-gain free
        r = r - np.percentile(r, 95)
        blocks["rms_rel"].append([r.mean(), r.std(), *np.percentile(r, (10, 25, 50, 75)), (r > -10).mean(),
                                  (r > -20).mean()])
        c = m - m.mean(0)  # per-utterance cepstral mean normalisation: percentiles relative to the clip mean
        blocks["mfcc_cmn_pct"].append(np.percentile(c, (10, 50, 90), axis=0).ravel())
    return {k: np.nan_to_num(np.asarray(v, np.float64)) for k, v in blocks.items()}


def feature_sets(table) -> dict[str, np.ndarray]:
    S = table.stats.astype(np.float64)
    ex = frame_extras(table)
    is_mfcc_level = lambda n: n.startswith("mfcc_") and "delta" not in n and n.split("__")[1] in (  # noqa: E731
        "mean", "p10", "p50", "p90")
    no_level = np.setdiff1d(np.arange(S.shape[1]), _cols(table, is_mfcc_level))
    no_delta = _cols(table, lambda n: "delta" not in n)
    f0_other = _cols(table, lambda n: not n.startswith("f0_hz"))
    fs = {
        "stats": S,
        "stats - MFCC level (mean/pct)": S[:, no_level],
        "stats - MFCC level + CMN pct": np.hstack([S[:, no_level], ex["mfcc_cmn_pct"]]),
        "stats - deltas": S[:, no_delta],
        "stats + skew/kurt": np.hstack([S, ex["skew_kurt"]]),
        "stats + slopes": np.hstack([S, ex["slope"]]),
        "stats + F0 semitones": np.hstack([S, ex["f0_semitone"]]),
        "stats - F0 Hz + F0 semitones": np.hstack([S[:, f0_other], ex["f0_semitone"]]),
        "stats + ddelta": np.hstack([S, ex["ddelta"]]),
        "stats + pct 5/25/75/95": np.hstack([S, ex["pct"]]),
        "stats + relative RMS": np.hstack([S, ex["rms_rel"]]),
        "stats + IQR/range": np.hstack([S, ex["iqr_range"]]),
        "stats + F0 st + slopes + IQR": np.hstack([S, ex["f0_semitone"], ex["slope"], ex["iqr_range"]]),
        "stats + all extras": np.hstack([S] + [ex[k] for k in ("skew_kurt", "slope", "f0_semitone", "ddelta",
                                                                 "iqr_range", "rms_rel")]),
    }
    return fs


# --------------------------------------------------------------------------------------------------- heads
LR_GRID = (0.003, 0.01, 0.03, 0.1)  # ClassifierConfig().c_grid: the shipped default
WIDE_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _lr(c, weight="balanced"):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=c, class_weight=weight, max_iter=3000)


def _svm(c, seed, prob=False):
    from sklearn.svm import SVC
    return SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced", probability=prob, random_state=seed)


def _mlp(seed):
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier(hidden_layer_sizes=(128,), alpha=1.0, max_iter=200, early_stopping=False,
                         random_state=seed)


def make_head(name: str, seed: int):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import RidgeClassifier

    if name == "LR inner-C":
        return _InnerC(lambda c: _lr(c), LR_GRID, seed)
    if name == "LR inner-C wide":
        return _InnerC(lambda c: _lr(c), WIDE_GRID, seed)
    if name == "LR inner-C unweighted":
        return _InnerC(lambda c: _lr(c, None), LR_GRID, seed)
    if name == "LR inner-C wide 4-fold":
        return _InnerC(lambda c: _lr(c), WIDE_GRID, seed, inner_folds=4)
    if name == "SVM-RBF inner-C":
        return _InnerC(lambda c: _svm(c, seed), (0.3, 1.0, 3.0, 10.0, 30.0), seed)
    if name.startswith("LR C=") and name.endswith(" unweighted"):
        return _lr(float(name[5:].split()[0]), None)
    if name.startswith("LR C="):
        return _lr(float(name[5:]))
    if name.startswith("SVM-RBF C="):
        return _svm(float(name[10:]), seed)
    if name == "LDA shrinkage":
        return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    if name.startswith("Ridge a="):
        return RidgeClassifier(alpha=float(name[8:]), class_weight="balanced")
    if name == "MLP 128 (200 ep)":
        return _mlp(seed)
    if name == "LR+SVM prob avg":
        return _Avg([_lr(0.01), _svm(10, seed, prob=True)])
    if name == "LR+SVM+MLP prob avg":
        return _Avg([_lr(0.01), _svm(10, seed, prob=True), _mlp(seed)])
    if name == "LR+LDA prob avg":
        return _Avg([_lr(0.01), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")])
    raise KeyError(name)


class _Avg:
    """Average of the members' class probabilities (members fixed a priori)."""

    def __init__(self, models):
        self.models = models

    def fit(self, X, y, groups=None):
        for m in self.models:
            m.fit(X, y)
        self.classes_ = self.models[0].classes_
        return self

    def predict(self, X):
        return self.classes_[np.mean([m.predict_proba(X) for m in self.models], axis=0).argmax(1)]


class _InnerC:
    """C chosen on the training fold only, then the model is refit on the whole training fold.

    inner_folds=1: one inner actor-disjoint split (``inner_split(groups, 3, seed)``, 3 validation actors), exactly
    like ``EmotionRecognizer`` (ties go to the smaller C). inner_folds=k>1: actor-grouped k-fold CV inside the
    training fold (``actor_folds(groups, k, seed)``), UA averaged over the k inner folds."""

    def __init__(self, make, grid, seed=0, inner_folds=1):
        self.make, self.grid, self.seed, self.inner_folds = make, grid, seed, inner_folds

    def fit(self, X, y, groups=None):
        from sklearn.metrics import balanced_accuracy_score

        splits = [inner_split(groups, 3, self.seed)] if self.inner_folds == 1 else \
            actor_folds(groups, self.inner_folds, self.seed)
        sc = {c: np.mean([balanced_accuracy_score(y[va], self.make(c).fit(X[tr], y[tr]).predict(X[va]))
                          for tr, va in splits]) for c in self.grid}
        self.c_ = max(sc, key=lambda c: (sc[c], -c))
        self.m = self.make(self.c_).fit(X, y)
        return self

    def predict(self, X):
        return self.m.predict(X)


# ------------------------------------------------------------------------------------------------ running
def scores(y, p):
    from sklearn.metrics import balanced_accuracy_score, f1_score
    return balanced_accuracy_score(y, p), f1_score(y, p, average="macro")


def run_stats_config(F, y, actors, head: str, mode: str, seeds) -> list[tuple[float, float]]:
    from sklearn.preprocessing import StandardScaler

    X = speaker_normalize(F, actors).astype(np.float64) if mode == "speaker" else F
    out = []
    for seed in seeds:
        for tr, te in actor_folds(actors, 5, seed):
            sc = StandardScaler().fit(X[tr])
            m = make_head(head, seed)
            if isinstance(m, (_InnerC, _Avg)):
                m.fit(sc.transform(X[tr]), y[tr], groups=actors[tr])
            else:
                m.fit(sc.transform(X[tr]), y[tr])
            out.append(scores(y[te], m.predict(sc.transform(X[te]))))
    return out


def run_vae_config(table, fcfg: FeatureConfig, vcfg: VAEConfig, seeds, extra: dict[str, np.ndarray] | None = None
                   ) -> dict[str, list[tuple[float, float]]]:
    """The EmotionRecognizer's statistics ‖ VAE-mean head (LR, C on the inner split; the sequence CNN that the
    package averages with it is left out here and measured by benchmarks/sequence.py), one fit per fold; both
    heads are scored from the same fit: strict ("probabilities") and adapted ("probabilities_adapted", each test
    clip normalised with all clips of its speaker).

    ``extra`` maps a name to a feature matrix F (N, k): for each, a head of the shipped form is refit on
    F ‖ the same fit's latent mean (LR inner-C, same inner split as the model), strict (F z-scored with the
    training fold) and adapted (F z-scored per speaker first; the latent is not speaker-normalised, as in the
    shipped adapted head). Keys "<name> ‖ latent | <mode>"."""
    from sklearn.preprocessing import StandardScaler

    from emovae.model import EmotionRecognizer

    X = table_features(table)
    y, actors = np.asarray(table.labels), np.asarray(table.actors)
    extra = extra or {}
    out = {k: [] for k in ["global", "speaker"] + [f"{n} ‖ latent | {md}" for n in extra
                                                   for md in ("global", "speaker")]}
    for seed in seeds:
        for tr, te in actor_folds(actors, 5, seed):
            m = EmotionRecognizer(fcfg, vcfg, ClassifierConfig(cnn_channels=0), TrainConfig(seed=seed))
            m.fit([X[i] for i in tr], y[tr], groups=actors[tr])
            o = m.forward([X[i] for i in te], groups=actors[te])
            cls = np.array([EMOTIONS.index(str(c)) for c in m.classes_])
            out["global"].append(scores(y[te], cls[o["probabilities"].argmax(1)]))
            out["speaker"].append(scores(y[te], cls[o["probabilities_adapted"].argmax(1)]))
            if extra:
                mu = np.zeros((len(y), m.forward([X[0]])["mu"].shape[1]))
                mu[tr], mu[te] = m.forward([X[i] for i in tr])["mu"], o["mu"]
                zs = StandardScaler().fit(mu[tr])
                z = zs.transform(mu)
            for n, F in extra.items():
                for md in ("global", "speaker"):
                    G = speaker_normalize(F, actors).astype(np.float64) if md == "speaker" else F
                    sc = StandardScaler().fit(G[tr])
                    Z = np.hstack([sc.transform(G), z])
                    h = make_head("LR inner-C", seed).fit(Z[tr], y[tr], groups=actors[tr])
                    out[f"{n} ‖ latent | {md}"].append(scores(y[te], h.predict(Z[te])))
    return out


def fmt_row(name, res, base):
    ua, f1 = np.array(res).T
    d = ua - np.array(base)[:, 0]
    wins, ties = int((d > 1e-12).sum()), int((np.abs(d) <= 1e-12).sum())
    return (ua.mean(), f"| {name} | {ua.mean():.3f} ± {ua.std():.3f} | {f1.mean():.3f} ± {f1.std():.3f} | "
                       f"{d.mean():+.3f} ± {d.std():.3f} | {wins}/{len(d)}" + (f" ({ties} tied)" if ties else "")
                       + " |")


def print_group(title, rows, base_name, n_folds):
    print(f"\n### {title}\n\nPaired difference against **{base_name}** on the same {n_folds} folds.\n")
    print("| configuration | UA mean ± std | macro-F1 mean ± std | paired ΔUA vs baseline | folds better |")
    print("|---|---|---|---|---|")
    for _, line in sorted(rows, key=lambda r: -r[0]):
        print(line)
    sys.stdout.flush()


HEADS = ["LR inner-C", "LR C=0.001", "LR C=0.003", "LR C=0.01", "LR C=0.03", "LR C=0.1", "LR C=0.3", "LR C=1",
         "LR C=0.01 unweighted", "LR inner-C unweighted", "LR inner-C wide", "LR inner-C wide 4-fold",
         "SVM-RBF C=1", "SVM-RBF C=10", "SVM-RBF inner-C", "LDA shrinkage", "Ridge a=100", "Ridge a=1000",
         "MLP 128 (200 ep)", "LR+LDA prob avg", "LR+SVM prob avg", "LR+SVM+MLP prob avg"]
COMBO_FEATS = ["stats", "stats + F0 st + slopes + IQR", "stats + all extras"]
COMBO_HEADS = ["LR inner-C", "LR C=0.01", "LR inner-C wide", "LR inner-C wide 4-fold", "LDA shrinkage",
               "LR+LDA prob avg", "MLP 128 (200 ep)", "SVM-RBF C=10", "LR+SVM prob avg", "LR+SVM+MLP prob avg"]
VAE_VARIANTS = {"default": VAEConfig(), "latent 8": VAEConfig(latent_dim=8), "latent 32": VAEConfig(latent_dim=32),
                "beta 0.1": VAEConfig(beta=0.1), "no stats": VAEConfig(with_stats=False),
                "no KL annealing": VAEConfig(warmup_epochs=0)}
BASE = "LR inner-C"
BASE_NAME = "stats (426), LR inner-C (the current default head without the latent)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", default=["heads", "feats", "combo"],
                    choices=["heads", "feats", "combo", "vae"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=["global", "speaker"], choices=["global", "speaker"])
    ap.add_argument("--heads", nargs="+", default=HEADS)
    ap.add_argument("--feats", nargs="+", default=None, help="feature sets for the feats group (default: all)")
    ap.add_argument("--combo-feats", nargs="+", default=COMBO_FEATS)
    ap.add_argument("--combo-heads", nargs="+", default=COMBO_HEADS)
    ap.add_argument("--vae", nargs="+", default=list(VAE_VARIANTS), choices=list(VAE_VARIANTS))
    ap.add_argument("--vae-extra", nargs="*", default=["stats", "stats + all extras"],
                    help="feature sets refit with each VAE fit's latent (shipped form, richer statistics)")
    ap.add_argument("--shape-stats", action="store_true",
                    help="use FeatureConfig(shape_stats=True) (941 statistics, the package default since 3eed73b) "
                         "as 'stats'; default: the 426 statistics of FeatureConfig(shape_stats=False). The "
                         "baseline of the paired differences is always LR inner-C on the 426 statistics.")
    ap.add_argument("--save", default="/tmp/emovae-experiments.json", help="raw per-fold scores (JSON)")
    a = ap.parse_args(argv)

    t0 = time.time()
    print(f"- Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {platform.platform()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; seeds {a.seeds} x 5 actor-grouped folds")
    fcfg = FeatureConfig(shape_stats=a.shape_stats)
    table = load_table(fcfg)
    table426 = table if not a.shape_stats else load_table(FeatureConfig(shape_stats=False))
    y, actors = np.asarray(table.labels), np.asarray(table.actors)
    assert np.array_equal(np.asarray(table426.actors), actors) and np.array_equal(np.asarray(table426.labels), y)
    S426 = table426.stats.astype(np.float64)
    tag = f"S{table.stats.shape[1]}"
    n = 5 * len(a.seeds)
    raw = json.loads(Path(a.save).read_text()) if Path(a.save).exists() else {}

    def rec(key, fn, stats_tag=None):  # keys name the base statistics set, so results never mix
        key = f"{stats_tag or tag} | {key} | seeds={a.seeds}"
        if key not in raw:
            t = time.time()
            raw[key] = {"folds": fn(), "s": time.time() - t}
            Path(a.save).write_text(json.dumps(raw))
            print(f"  [{key}: {raw[key]['s']:.0f} s]", file=sys.stderr, flush=True)
        return raw[key]["folds"]

    fs = feature_sets(table) if {"feats", "combo", "vae"} & set(a.groups) else {"stats": table.stats.astype(np.float64)}
    S = fs["stats"]
    for mode in a.modes:
        base = rec(f"{mode} | stats | {BASE}", lambda: run_stats_config(S426, y, actors, BASE, mode, a.seeds),
                   "S426")
        if "heads" in a.groups:
            rows = [fmt_row(h, rec(f"{mode} | stats | {h}", lambda h=h: run_stats_config(S, y, actors, h, mode,
                                                                                         a.seeds)), base)
                    for h in a.heads]
            print_group(f"Heads on the {S.shape[1]} statistics — {mode}", rows, BASE_NAME, n)
        if "feats" in a.groups:
            rows = [fmt_row("stats (426)", base, base)]
            for k in (a.feats or [k for k in fs if k != "stats"]):
                rows.append(fmt_row(f"{k} ({fs[k].shape[1]})", rec(f"{mode} | {k} | {BASE}",
                                    lambda k=k: run_stats_config(fs[k], y, actors, BASE, mode, a.seeds)), base))
            print_group(f"Feature sets / per-utterance normalisation, LR inner-C — {mode}", rows, BASE_NAME, n)
        if "combo" in a.groups:
            rows = []
            for k in a.combo_feats:
                for h in a.combo_heads:
                    rows.append(fmt_row(f"{k} ({fs[k].shape[1]}), {h}", rec(f"{mode} | {k} | {h}",
                                        lambda k=k, h=h: run_stats_config(fs[k], y, actors, h, mode, a.seeds)), base))
            print_group(f"Feature sets x heads — {mode}", rows, BASE_NAME, n)
    if "vae" in a.groups:
        ext = {k: fs[k] for k in a.vae_extra} if a.vae_extra else {}
        res = {v: rec(f"VAE {v} | emovae" + (f" + {sorted(ext)}" if ext else ""),
                      lambda v=v: run_vae_config(table, fcfg, VAE_VARIANTS[v], a.seeds, ext)) for v in a.vae}
        for mode in a.modes:
            base = rec(f"{mode} | stats | {BASE}", lambda: run_stats_config(S426, y, actors, BASE, mode,
                                                                             a.seeds), "S426")
            rows = [fmt_row("stats (426), LR inner-C (no VAE)", base, base)]
            for k in (k for k in ext if k != "stats" or a.shape_stats):
                r = rec(f"{mode} | {k} | {BASE}", lambda k=k: run_stats_config(fs[k], y, actors, BASE, mode, a.seeds))
                rows.append(fmt_row(f"{k} ({fs[k].shape[1]}), LR inner-C (no VAE)", r, base))
            for v in a.vae:
                c = VAE_VARIANTS[v]
                vtag = f"VAE {v} ({c.latent_dim}-d, beta {c.beta}, with_stats {c.with_stats})"
                rows.append(fmt_row(f"emovae: stats ({S.shape[1]}) ‖ {vtag}", res[v][mode], base))
                for k in ext:
                    rows.append(fmt_row(f"{k} ({fs[k].shape[1]}) ‖ {vtag}, LR inner-C (refit on the same fit's "
                                        f"latent)", res[v][f"{k} ‖ latent | {mode}"], base))
            print_group(f"Full model (statistics ‖ VAE latent -> LR inner-C) — {mode}"
                        + (" (adapted head of the same fit)" if mode == "speaker" else ""), rows, BASE_NAME, n)
    print(f"\nWhole run {time.time() - t0:.0f} s (cached configurations reused from {a.save}).")


if __name__ == "__main__":
    main()
