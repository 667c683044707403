"""Speaker-independent evaluation: actor-grouped folds, metrics, predictions table, run-folder report.

Every fitted part (scalers, VAE, classifier) is fitted inside the training folds; the test fold is
touched once. Balanced accuracy (UA) leads: neutral has half the clips of each other emotion.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import EMOTIONS
from .errors import DataError, MissingDependencyError
from .extraction import FeatureTable
from .features import Features

CHANCE = 1.0 / len(EMOTIONS)
SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "reconstruction_loss")


def actor_folds(actors: np.ndarray, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold; actors shuffled with ``seed`` and dealt into ``n_splits`` test groups,
    so no actor is ever in two test folds nor in the train and test of one fold."""
    uniq = np.unique(actors)
    if n_splits < 2:
        raise DataError("cross-validation needs at least 2 folds")
    if len(uniq) < n_splits:
        raise DataError(f"{len(uniq)} actor(s) cannot fill {n_splits} actor-disjoint folds; use --cv {len(uniq)} "
                        "or add speakers" if len(uniq) >= 2 else "cross-validation needs clips of at least 2 actors")
    groups = np.array_split(np.random.default_rng(seed).permutation(uniq), n_splits)
    return [(np.flatnonzero(~np.isin(actors, g)), np.flatnonzero(np.isin(actors, g))) for g in groups]


def compute_metrics(y_true, y_pred, labels=EMOTIONS) -> dict:
    """accuracy, balanced_accuracy (mean recall over classes present), macro_f1, per_class_recall,
    confusion (rows true, columns predicted, in ``labels`` order)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(labels)
    idx = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[idx[t], idx[p]] += 1
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    diag = np.diag(cm)
    recall = np.divide(diag, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(diag, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    return {
        "accuracy": float(diag.sum() / max(1, cm.sum())),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": {lab: float(r) for lab, r, s in zip(labels, recall, present) if s},
        "confusion": {"labels": list(labels), "matrix": cm.tolist()},
        "n_files": int(cm.sum()),
    }


@dataclass
class EvalResult:
    """Per-clip outcomes of an evaluation (cross-validated or of one saved model) and its metrics."""

    table: FeatureTable
    y_pred: np.ndarray  # emotion names (N,)
    proba: np.ndarray  # (N, 8) in EMOTIONS order
    mu: np.ndarray  # latent means (N, L)
    recon_mse: np.ndarray  # (N,)
    fold: np.ndarray  # fold index per clip (0 for a single model)
    metrics: dict = field(default_factory=dict)
    histories: list[dict] = field(default_factory=list)


def _outputs_in_emotion_order(model, X: list[Features], groups=None) -> dict[str, np.ndarray]:
    """Network outputs of a fitted model with probabilities in EMOTIONS order: adapted to each speaker when
    ``groups`` (speakers) are given (``runtime.Network.forward_by_speaker``, what users get from
    ``predict --speaker-from``), else single-clip."""
    net = model.network()
    X = net.prepare(X)
    out = net.forward(X) if groups is None else net.forward_by_speaker(X, groups)
    proba = np.zeros((len(X), len(EMOTIONS)), dtype=np.float32)
    for j, c in enumerate(model.classes_):
        proba[:, EMOTIONS.index(c)] = out["probabilities"][:, j]
    out["probabilities"] = proba
    return out


def table_features(table: FeatureTable) -> list[Features]:
    """The table's clips as Features objects (the estimator's X)."""
    mels = table.mels if table.mels is not None else [None] * len(table)
    return [Features(f, table.frame_names, s, table.stat_names, m) for f, s, m in zip(table.frames, table.stats, mels)]


def cross_validate(table: FeatureTable, make_model: Callable[[], object], n_splits: int = 5, seed: int = 0,
                   progress: bool = True, adapted: bool = False) -> EvalResult:
    """Actor-grouped K-fold CV: a fresh ``make_model()`` is fitted on each training fold (with actors as
    groups for its inner split) and scored once on the test fold: strict single-clip, or ``adapted`` (each
    test actor's clips normalised by all of that actor's unlabelled clips)."""
    from tqdm.auto import tqdm

    _check_trainable(table)
    X, y, actors = table_features(table), np.array(EMOTIONS)[table.labels], table.actors
    n = len(X)
    res = EvalResult(table, np.empty(n, dtype=object), np.zeros((n, len(EMOTIONS)), np.float32), None,
                     np.zeros(n, np.float32), np.zeros(n, dtype=int))
    fold_metrics, other_mode, tta = [], [], []  # the test folds scored in the other mode / with test-time copies
    for k, (tr, te) in enumerate(tqdm(actor_folds(actors, n_splits, seed), desc="folds", unit="fold",
                                      disable=not progress)):
        extra = {"augmented": table.augmented_for(tr)} if table.augmented else {}  # training clips' copies only
        model = make_model().fit([X[i] for i in tr], y[tr], groups=actors[tr], **extra)
        Xte = [X[i] for i in te]
        out = _outputs_in_emotion_order(model, Xte, actors[te] if adapted else None)
        if "probabilities_adapted" in out:
            alt = _outputs_in_emotion_order(model, Xte, None if adapted else actors[te])["probabilities"]
            other_mode.append(compute_metrics(y[te], np.array(EMOTIONS)[alt.argmax(axis=1)]))
        if table.augmented and not adapted:  # test-time augmentation: the test clips' own speed copies
            tta.append(compute_metrics(y[te], np.array(EMOTIONS)[_averaged_over_copies(
                model, out["probabilities"], [[a[i] for a in table.augmented.values()] for i in te]).argmax(1)]))
        if res.mu is None:
            res.mu = np.zeros((n, out["mu"].shape[1]), np.float32)
        res.proba[te], res.mu[te], res.recon_mse[te], res.fold[te] = (out["probabilities"], out["mu"],
                                                                     out["recon_mse"], k)
        res.y_pred[te] = np.array(EMOTIONS)[out["probabilities"].argmax(axis=1)]
        m = compute_metrics(y[te], res.y_pred[te])
        m.update(reconstruction_loss=float(out["recon_mse"].mean()), test_actors=sorted(set(actors[te].tolist())),
                 chosen_c=getattr(model, "c_", None))
        fold_metrics.append(m)
        res.histories.append(getattr(model, "history_", {}))
    res.metrics = compute_metrics(y, res.y_pred)
    res.metrics.update(
        reconstruction_loss=float(res.recon_mse.mean()),
        evaluation=f"actor-grouped {n_splits}-fold cross-validation (seed {seed})",
        mode=_mode(adapted),
        n_actors=int(len(np.unique(actors))), chance=CHANCE,
        folds=fold_metrics,
        mean={key: float(np.mean([f[key] for f in fold_metrics])) for key in SCALAR_METRICS},
        std={key: float(np.std([f[key] for f in fold_metrics])) for key in SCALAR_METRICS},
    )
    if other_mode:  # the same fitted models scored in the other mode, so both numbers always come together
        res.metrics["strict" if adapted else "adapted"] = {
            "mode": _mode(not adapted),
            **{f"{stat}": {key: float(fn([f[key] for f in other_mode])) for key in SCALAR_METRICS[:3]}
               for stat, fn in (("mean", np.mean), ("std", np.std))},
            "folds": [{key: f[key] for key in SCALAR_METRICS[:3]} for f in other_mode]}
    if tta:
        res.metrics["test_time_augmented"] = {
            "mode": "single clip averaged with its copies at the training speeds (predict --tta)",
            **{f"{stat}": {key: float(fn([f[key] for f in tta])) for key in SCALAR_METRICS[:3]}
               for stat, fn in (("mean", np.mean), ("std", np.std))},
            "folds": [{key: f[key] for key in SCALAR_METRICS[:3]} for f in tta]}
    return res


def _averaged_over_copies(model, proba: np.ndarray, copies: list[list]) -> np.ndarray:
    """Single-clip probabilities (N, 8) in EMOTIONS order averaged with those of each clip's copies (missing
    copies: None, skipped), as ``Recognizer(tta=True)`` does for one clip."""
    from .runtime import average_with_copies

    flat = [(i, c) for i, cs in enumerate(copies) for c in cs if c is not None]
    if not flat:
        return proba
    p = _outputs_in_emotion_order(model, [c for _, c in flat])["probabilities"]
    return average_with_copies(proba, p, np.array([i for i, _ in flat]))


def evaluate_model(model, table: FeatureTable, adapted: bool = False) -> EvalResult:
    """Score a fitted model once on every clip of ``table`` (speakers it has not been trained on)."""
    X, y = table_features(table), np.array(EMOTIONS)[table.labels]
    out = _outputs_in_emotion_order(model, X, table.actors if adapted else None)
    y_pred = np.array(EMOTIONS)[out["probabilities"].argmax(axis=1)]
    res = EvalResult(table, y_pred, out["probabilities"], out["mu"], out["recon_mse"], np.zeros(len(X), dtype=int))
    res.metrics = compute_metrics(y, y_pred)
    res.metrics.update(reconstruction_loss=float(out["recon_mse"].mean()), evaluation="saved model on new data",
                       mode=_mode(adapted),
                       n_actors=int(len(np.unique(table.actors))), chance=CHANCE)
    res.histories = [getattr(model, "history_", {})]
    return res


def _mode(adapted: bool) -> str:
    if adapted:
        return ("adapted: each clip with all of its speaker's unlabelled clips, as predict --speaker-from "
                "(speaker moments pooled with the model's prior, heads mixed by trust n / (n + prior weight))")
    return "strict single-clip"


def _check_trainable(table: FeatureTable) -> None:
    emotions = sorted(set(table.labels.tolist()))
    if len(emotions) < 2:
        raise DataError(f"the data holds only one emotion ({EMOTIONS[emotions[0]]}); training needs at least two")


def write_report(run_dir: str | os.PathLike, res: EvalResult, *, config: dict | None = None,
                 figures: bool = True) -> Path:
    """Write metrics.json, predictions.csv, config.json and figures (confusion, latent maps, curves)."""
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(res.metrics, indent=1))
    if config is not None:
        (d / "config.json").write_text(json.dumps(config, indent=1))
    with open(d / "predictions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "actor", "fold", "true", "predicted", *EMOTIONS])
        for i, u in enumerate(res.table.utterances):
            w.writerow([u.path, u.actor, int(res.fold[i]), u.emotion, res.y_pred[i],
                        *(f"{p:.5f}" for p in res.proba[i])])
    if figures:
        write_figures(d, res)
    return d


def write_figures(d: Path, res: EvalResult) -> None:
    from . import plots

    m = res.metrics
    title = f"UA {m['balanced_accuracy']:.3f}, accuracy {m['accuracy']:.3f} ({m['n_files']} clips)"
    plots.save_figure(plots.confusion_figure(np.array(m["confusion"]["matrix"]), m["confusion"]["labels"],
                                             title=title), d / "confusion.png")
    labels = [u.emotion for u in res.table.utterances]
    for method in ("pca", "tsne"):
        if len(labels) >= 5:
            pts = plots.project_2d(res.mu, method=method)
            plots.save_figure(plots.latent_map(pts, labels, title=f"VAE latent mean ({method.upper()})"),
                              d / f"latent_{method}.png")
    for k, hist in enumerate(h for h in res.histories if h):
        name = "curves.png" if len(res.histories) == 1 else f"curves_fold{k}.png"
        plots.save_figure(plots.curves_figure(hist, title="VAE training" + (f", fold {k}" if len(res.histories) > 1
                                                                            else "")), d / name)


DEMO_DIR = Path(__file__).resolve().parent / "demo"


def demo_clips() -> list[Path]:
    """The bundled example clips (RAVDESS-named, one per emotion)."""
    return sorted(DEMO_DIR.glob("*.flac"))


def demo_report(recognizer, out_dir: str | os.PathLike) -> tuple[list, dict, list[str]]:
    """Predict the bundled clips with ``recognizer``; write report.md, predictions.json and, with the plot
    extra, confusion.png and latent_map.png (the clips over the model's shipped map of its training clips) into
    ``out_dir``. Returns the predictions, the metrics and the names of the files written."""
    from .data import parse_name

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    clips = demo_clips()
    preds = [recognizer.predict_file(c) for c in clips]
    truth = [parse_name(c).emotion for c in clips]
    m = compute_metrics(truth, [p.emotion for p in preds])
    m["n_correct"] = int(sum(t == p.emotion for t, p in zip(truth, preds)))
    (d / "predictions.json").write_text(json.dumps([p.to_dict() | {"true": t} for p, t in zip(preds, truth)],
                                                   indent=1))
    written = ["predictions.json"]
    lines = ["# emovae demo", "", f"Model: `{recognizer.source}` ({recognizer.backend} backend)", "",
             "| clip | true | predicted | confidence |", "|---|---|---|---|"]
    lines += [f"| {Path(p.file).name} | {t} | {p.emotion} | {p.confidence:.2f} |" for p, t in zip(preds, truth)]
    lines += ["", f"{m['n_correct']} of {len(clips)} right. The clips' speakers are in the shipped model's training "
              "set: this shows the pipeline, not speaker-independent accuracy (see the model's CV metrics)."]
    try:
        from . import plots

        plots.save_figure(plots.confusion_figure(np.array(m["confusion"]["matrix"]), m["confusion"]["labels"],
                                                 normalize=False, title="demo clips"), d / "confusion.png")
        written.append("confusion.png")
        lmap = recognizer.meta.get("latent_map") or {}
        if lmap.get("points"):  # a bare ONNX file carries the projection but not the training clips' points
            fig = plots.latent_map(np.array(lmap["points"]), lmap["labels"],
                                   title="demo clips on the latent map of the training clips",
                                   highlight=np.array([p.map_xy for p in preds]),
                                   highlight_labels=[f"{t}" for t in truth])
            plots.save_figure(fig, d / "latent_map.png")
            written.append("latent_map.png")
        lines += ["", "![confusion](confusion.png)"] + (["", "![latent map](latent_map.png)"] if lmap.get("points")
                                                         else [])
    except MissingDependencyError:  # matplotlib missing (runtime install): the table alone
        lines += ["", "(figures need the plot extra: pip install 'emovae[plot]')"]
    (d / "report.md").write_text("\n".join(lines) + "\n")
    return preds, m, ["report.md", *written]
