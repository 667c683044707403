"""Speaker-independent evaluation: speaker-grouped folds, metrics, predictions table, run-folder report.

Every fitted part (scalers, VAE, classifier) is fitted inside the training folds; the test fold is
touched once. Balanced accuracy (UA) leads: neutral has half the clips of each other emotion.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, EmovaeError, MissingDependencyError
from .extraction import FeatureTable
from .features import Features

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "reconstruction_loss", "ece")
SPLITS = ("speaker", "random", "corpus")


def speaker_folds(groups: np.ndarray, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) per fold; speakers (``groups``) shuffled with ``seed`` and dealt into ``n_splits``
    test groups, so no speaker is ever in two test folds nor in the train and test of one fold."""
    uniq = np.unique(groups)
    if n_splits < 2:
        raise DataError("cross-validation needs at least 2 folds")
    if len(uniq) < n_splits:
        raise DataError(f"{len(uniq)} speaker(s) cannot fill {n_splits} speaker-disjoint folds; use --cv "
                        f"{len(uniq)} or add speakers" if len(uniq) >= 2 else
                        "cross-validation needs clips of at least 2 speakers")
    parts = np.array_split(np.random.default_rng(seed).permutation(uniq), n_splits)
    return [(np.flatnonzero(~np.isin(groups, g)), np.flatnonzero(np.isin(groups, g))) for g in parts]


def folds_for(table: FeatureTable, split: str, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of a table: ``speaker`` (speaker-grouped; refused without speaker ids), ``corpus``
    (leave-one-corpus-out) or ``random`` (over files: speaker-dependent, labelled so in every report)."""
    if split == "speaker":
        if not table.has_speakers:
            raise DataError("these clips have no speaker ids, so folds cannot be split by speaker: give speakers "
                            "(a manifest's speaker column, or --speaker-pattern for a folder per label), or pass "
                            "--split random for a speaker-DEPENDENT estimate (inflated by 10-30 points)")
        return speaker_folds(table.speakers, n_splits, seed)
    if split == "corpus":
        corpora = table.corpora
        names = list(dict.fromkeys(corpora.tolist()))
        if len(names) < 2:
            raise DataError("--split corpus needs clips of at least 2 corpora (repeat --data)")
        return [(np.flatnonzero(corpora != c), np.flatnonzero(corpora == c)) for c in names]
    if split == "random":
        order = np.random.default_rng(seed).permutation(len(table))
        return [(np.setdiff1d(np.arange(len(table)), part), np.sort(part)) for part in np.array_split(order, n_splits)]
    raise DataError(f"split must be one of {SPLITS}, not {split!r}")


def compute_metrics(y_true, y_pred, labels) -> dict:
    """accuracy, balanced_accuracy (mean recall over classes present), macro_f1, per_class_recall,
    confusion (rows true, columns predicted, in ``labels`` order)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(labels)
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
        "confusion": {"labels": labels, "matrix": cm.tolist()},
        "n_files": int(cm.sum()),
        "chance": 1.0 / max(1, int(present.sum())),
    }


def calibration_error(proba: np.ndarray, y_true, classes, bins: int = 15) -> float:
    """Expected calibration error of the top probability: over ``bins`` equal-width confidence bins, the
    clip-weighted gap between mean confidence and accuracy. proba (N, len(classes)); y_true names (N,)."""
    proba = np.asarray(proba, dtype=np.float64)
    conf, hit = proba.max(axis=1), np.array(classes)[proba.argmax(axis=1)] == np.asarray(y_true)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(conf[which == b].mean() - hit[which == b].mean()) * (which == b).sum()
                     for b in range(bins) if (which == b).any()) / max(1, len(conf)))


@dataclass
class EvalResult:
    """Per-clip outcomes of an evaluation (cross-validated or of one saved model) and its metrics."""

    table: FeatureTable
    classes: tuple[str, ...]  # the columns of proba
    y_pred: np.ndarray  # label names (N,)
    proba: np.ndarray  # (N, len(classes))
    mu: np.ndarray  # latent means (N, L)
    recon_mse: np.ndarray  # (N,)
    fold: np.ndarray  # fold index per clip (0 for a single model)
    metrics: dict = field(default_factory=dict)
    histories: list[dict] = field(default_factory=list)


def _outputs_in_class_order(model, X: list[Features], classes, groups=None) -> dict[str, np.ndarray]:
    """Network outputs of a fitted model with probabilities in ``classes`` order (0 for a class the model does
    not know): adapted to each speaker when ``groups`` (speakers) are given (``runtime.Network.forward_by_speaker``,
    what users get from ``predict --speaker-from``), else single-clip."""
    net = model.network()
    X = net.prepare(X)
    out = net.forward(X) if groups is None else net.forward_by_speaker(X, groups)
    proba = np.zeros((len(X), len(classes)), dtype=np.float32)
    for j, c in enumerate(model.classes_):
        if c in classes:
            proba[:, list(classes).index(c)] = out["probabilities"][:, j]
    out["probabilities"] = proba
    return out


def table_features(table: FeatureTable) -> list[Features]:
    """The table's clips as Features objects (the estimator's X)."""
    mels = table.mels if table.mels is not None else [None] * len(table)
    return [Features(f, table.frame_names, s, table.stat_names, m) for f, s, m in zip(table.frames, table.stats, mels)]


def _summary(fold_metrics: list[dict], keys=SCALAR_METRICS) -> dict:
    return {f"{stat}": {key: float(fn([f[key] for f in fold_metrics])) for key in keys}
            for stat, fn in (("mean", np.mean), ("std", np.std))}


def fold_digest(table: FeatureTable, rows) -> str:
    """A fingerprint (sha1 hex) of a fold's training data: each row's file (absolute path, size and modification
    time, as the feature cache keys it), label and speaker, and the names of the training copies: a saved fold
    model is reused only for the same data."""
    h = hashlib.sha1()
    speakers = table.speakers if table.has_speakers else np.full(len(table.labels), "")
    for i in rows:
        path = table.paths[i]
        st = os.stat(path) if os.path.exists(path) else None
        stamp = f"{st.st_size}|{st.st_mtime_ns}" if st else "missing"
        h.update(f"{os.path.abspath(path)}|{stamp}|{table.labels[i]}|{speakers[i]}\n".encode())
    h.update(repr(sorted(str(k) for k in table.augmented)).encode())
    return h.hexdigest()


def save_fold(model, root: str | os.PathLike, seed: int, fold: int, test_speakers, split: str = "speaker",
              train_digest: str | None = None) -> Path:
    """Save a fold's fitted model in ``root/seed{seed}-fold{fold}/`` with a fold.json naming its test speakers and
    its training data's ``fold_digest`` (the layout ``--save-folds`` writes and the benchmarks' ``--models``
    read). Returns the folder."""
    d = Path(model.save(Path(root) / f"seed{seed}-fold{fold}"))
    (d / "fold.json").write_text(json.dumps({"seed": seed, "fold": fold, "split": split,
                                             "test_speakers": sorted(set(np.asarray(test_speakers).tolist())),
                                             "train_digest": train_digest}))
    return d


def saved_fold(root: str | os.PathLike, seed: int, fold: int, test_speakers, split: str, train_digest: str,
               make_model: Callable[[], object]):
    """The model ``save_fold`` left in ``root`` for this fold, when it was held out of the same test speakers,
    trained on the same data (``train_digest``) with the configuration ``make_model()`` has (torch threads
    aside), else None: an interrupted ``--save-folds`` run resumes where it stopped."""
    from dataclasses import replace

    d = Path(root) / f"seed{seed}-fold{fold}"
    if not (d / "fold.json").is_file():
        return None
    fresh = make_model()
    if not hasattr(fresh, "configs") or not hasattr(type(fresh), "load"):
        return None
    try:
        meta = json.loads((d / "fold.json").read_text())
        saved = type(fresh).load(d)
    except (OSError, ValueError, EmovaeError):
        return None  # unreadable or half written: fitted again

    def recipe(model):
        *rest, tcfg = model.configs()
        return (*rest, replace(tcfg, threads=1))

    same = (meta.get("seed") == seed and meta.get("fold") == fold and meta.get("split", "speaker") == split
            and meta.get("test_speakers") == sorted(set(np.asarray(test_speakers).tolist()))
            and meta.get("train_digest") == train_digest and recipe(saved) == recipe(fresh))
    return saved if same else None


def cross_validate(table: FeatureTable, make_model: Callable[[], object], n_splits: int = 5, seed: int = 0,
                   progress: bool = True, adapted: bool = False, split: str = "speaker",
                   save_folds: str | os.PathLike | None = None) -> EvalResult:
    """K-fold CV grouped by speaker (``split``: see ``folds_for``): a fresh ``make_model()`` is fitted on each
    training fold (speakers as groups for its inner split) and scored once on the test fold: strict
    single-clip, or ``adapted`` (each test speaker's clips with all of that speaker's unlabelled clips).
    ``save_folds``: each fold's model is also saved there, in ``seed{seed}-fold{k}/`` with a fold.json naming its
    test speakers (the layout the benchmarks' ``--models`` read); a fold model already saved there for the same
    test speakers, training data and configuration is reused, not fitted again (``saved_fold``)."""
    from tqdm.auto import tqdm

    _check_trainable(table)
    folds = folds_for(table, split, n_splits, seed)
    if adapted and not table.has_speakers:
        raise DataError("adapted scoring needs speaker ids")
    X, y, groups, classes = table_features(table), table.labels, table.speakers, table.classes
    n = len(X)
    res = EvalResult(table, classes, np.empty(n, dtype=object), np.zeros((n, len(classes)), np.float32), None,
                     np.zeros(n, np.float32), np.zeros(n, dtype=int))
    fold_metrics, other_mode, tta = [], [], []  # the test folds scored in the other mode / with test-time copies
    reused = []  # folds whose model an earlier run saved in save_folds
    bar = tqdm(folds, desc="folds", unit="fold", disable=not progress)
    for k, (tr, te) in enumerate(bar):
        # the fold bar moves within a fold: its stage (fitting takes nearly all of a fold's time; the model's own
        # bars, voice student and VAE epochs, run beneath it), then a line per finished fold
        started = time.monotonic()
        bar.set_postfix_str(f"fold {k + 1}/{len(folds)}: fitting on {len(tr)} clips")
        extra = {"augmented": table.augmented_for(tr)} if table.augmented else {}  # training clips' copies only
        digest = fold_digest(table, tr) if save_folds is not None else None
        model = saved_fold(save_folds, seed, k, groups[te], split, digest, make_model) if digest else None
        if model is not None:
            reused.append(k)
            if progress:
                tqdm.write(f"fold {k + 1}/{len(folds)}: the model saved in {Path(save_folds) / f'seed{seed}-fold{k}'} "
                           "by an earlier run (same speakers, data and configuration)", file=sys.stderr)
        else:
            model = make_model()
            if "dimensions" in inspect.signature(model.fit).parameters:  # arousal/valence targets, where it takes them
                extra["dimensions"] = table.dimension_targets[tr]
            model = model.fit([X[i] for i in tr], y[tr], groups=groups[tr], corpora=table.corpora[tr], **extra)
            if save_folds is not None:
                save_fold(model, save_folds, seed, k, groups[te], split, digest)
        bar.set_postfix_str(f"fold {k + 1}/{len(folds)}: scoring {len(te)} clips")
        Xte = [X[i] for i in te]
        out = _outputs_in_class_order(model, Xte, classes, groups[te] if adapted else None)
        if table.has_speakers:
            alt = _outputs_in_class_order(model, Xte, classes, None if adapted else groups[te])["probabilities"]
            other_mode.append(compute_metrics(y[te], np.array(classes)[alt.argmax(axis=1)], classes))
        if table.speed_copies and not adapted:  # test-time augmentation: the test clips' own speed copies
            tta.append(compute_metrics(y[te], np.array(classes)[_averaged_over_copies(
                model, out["probabilities"], [[a[i] for a in table.speed_copies] for i in te],
                classes).argmax(1)], classes))
        if res.mu is None:
            res.mu = np.zeros((n, out["mu"].shape[1]), np.float32)
        res.proba[te], res.mu[te], res.recon_mse[te], res.fold[te] = (out["probabilities"], out["mu"],
                                                                     out["recon_mse"], k)
        res.y_pred[te] = np.array(classes)[out["probabilities"].argmax(axis=1)]
        m = compute_metrics(y[te], res.y_pred[te], classes)
        m.update(reconstruction_loss=float(out["recon_mse"].mean()), test_speakers=sorted(set(groups[te].tolist())),
                 ece=calibration_error(out["probabilities"], y[te], classes),
                 chosen_c=getattr(model, "c_", None))
        fold_metrics.append(m)
        res.histories.append(getattr(model, "history_", {}))
        if progress:
            tqdm.write(f"fold {k + 1}/{len(folds)}: UA {m['balanced_accuracy']:.3f} on {len(te)} clips of "
                       f"{len(m['test_speakers'])} test speaker(s) ({(time.monotonic() - started) / 60:.1f} min)",
                       file=sys.stderr)
    bar.close()
    res.metrics = compute_metrics(y, res.y_pred, classes)
    what = {"speaker": "speaker-grouped", "corpus": "leave-one-corpus-out", "random": "random (over files)"}[split]
    res.metrics.update(
        reconstruction_loss=float(res.recon_mse.mean()), ece=calibration_error(res.proba, y, classes),
        evaluation=f"{what} {len(folds)}-fold cross-validation (seed {seed})",
        speaker_independent=split != "random",
        mode=_mode(adapted),
        n_speakers=int(len(np.unique(groups))), classes=list(classes),
        folds=fold_metrics, **_summary(fold_metrics),
    )
    if reused:
        res.metrics["folds_reused"] = reused  # fitted by an earlier run with the same data and configuration
    if split == "random":
        res.metrics["warning"] = ("SPEAKER-DEPENDENT: the same speakers are in training and test folds; this "
                                  "overstates accuracy on new speakers by 10-30 points")
    res.metrics.update(per_corpus(table, res.y_pred, classes))
    if other_mode:  # the same fitted models scored in the other mode, so both numbers always come together
        res.metrics["strict" if adapted else "adapted"] = {
            "mode": _mode(not adapted), **_summary(other_mode, SCALAR_METRICS[:3]),
            "folds": [{key: f[key] for key in SCALAR_METRICS[:3]} for f in other_mode]}
    if tta:
        res.metrics["test_time_augmented"] = {
            "mode": "single clip averaged with its copies at the training speeds (predict --tta)",
            **_summary(tta, SCALAR_METRICS[:3]), "folds": [{key: f[key] for key in SCALAR_METRICS[:3]} for f in tta]}
    return res


def per_corpus(table: FeatureTable, y_pred: np.ndarray, classes, keep: np.ndarray | None = None) -> dict:
    """{"per_corpus": {corpus: metrics}} when the table holds several corpora, else {}; ``keep`` (N,) bool: the
    clips scored (those of classes the model knows)."""
    corpora = table.corpora
    names = list(dict.fromkeys(corpora.tolist()))
    if len(names) < 2:
        return {}
    y = table.labels
    keep = np.ones(len(y), bool) if keep is None else keep
    return {"per_corpus": {c: compute_metrics(y[(corpora == c) & keep], y_pred[(corpora == c) & keep], classes)
                           for c in names if ((corpora == c) & keep).any()}}


def _averaged_over_copies(model, proba: np.ndarray, copies: list[list], classes) -> np.ndarray:
    """Single-clip probabilities (N, C) in ``classes`` order averaged with those of each clip's copies (missing
    copies: None, skipped), as ``Recognizer(tta=True)`` does for one clip."""
    from .runtime import average_with_copies

    flat = [(i, c) for i, cs in enumerate(copies) for c in cs if c is not None]
    if not flat:
        return proba
    p = _outputs_in_class_order(model, [c for _, c in flat], classes)["probabilities"]
    return average_with_copies(proba, p, np.array([i for i, _ in flat]))


def evaluate_model(model, table: FeatureTable, adapted: bool = False) -> EvalResult:
    """Score a fitted model once on every clip of ``table`` (speakers it has not been trained on). When the
    table's classes differ from the model's, the headline metrics are over the classes both share, with the
    argmax restricted to them (clips of other classes left out); the unrestricted figure is ``all_classes``."""
    if adapted and not table.has_speakers:
        raise DataError("adapted scoring needs speaker ids")
    X, y = table_features(table), table.labels
    model_classes = tuple(model.classes_)
    shared = tuple(c for c in model_classes if c in set(table.classes))
    if not shared:
        raise DataError(f"the model's classes {list(model_classes)} and the data's {list(table.classes)} have "
                        "none in common; map labels with --map (e.g. anger=angry)")
    out = _outputs_in_class_order(model, X, model_classes, table.speakers if adapted else None)
    keep = np.isin(y, shared)
    full_pred = np.array(model_classes)[out["probabilities"].argmax(axis=1)]
    cols = [model_classes.index(c) for c in shared]
    y_pred = np.array(shared)[out["probabilities"][:, cols].argmax(axis=1)]
    res = EvalResult(table, model_classes, y_pred, out["probabilities"], out["mu"], out["recon_mse"],
                     np.zeros(len(X), dtype=int))
    res.metrics = compute_metrics(y[keep], y_pred[keep], shared)
    res.metrics.update(reconstruction_loss=float(out["recon_mse"].mean()), evaluation="saved model on new data",
                       mode=_mode(adapted), n_speakers=int(len(np.unique(table.speakers))), classes=list(shared))
    if set(shared) != set(model_classes) or not keep.all():
        all_labels = tuple(dict.fromkeys(model_classes + table.classes))
        res.metrics["all_classes"] = {
            "note": f"argmax over all {len(model_classes)} model classes, every clip",
            **compute_metrics(y, full_pred, all_labels)}
        res.metrics["left_out"] = int((~keep).sum())
    res.metrics.update(per_corpus(table, y_pred, shared, keep))
    res.histories = [getattr(model, "history_", {})]
    return res


def _mode(adapted: bool) -> str:
    if adapted:
        return ("adapted: each clip with all of its speaker's unlabelled clips, as predict --speaker-from "
                "(speaker moments pooled with the model's prior, heads mixed by trust n / (n + prior weight))")
    return "strict single-clip"


def _check_trainable(table: FeatureTable) -> None:
    if len(table.classes) < 2:
        raise DataError(f"the data holds only one class ({table.classes[0]}); training needs at least two")


#: the columns of predictions.csv before the class probabilities: the one table vocabulary (``corpus.read_rows``),
#: so the file is itself a manifest (``--data predictions.csv``) and a ``--speaker-from`` table
PREDICTION_COLUMNS = ("path", "label", "speaker", "corpus", "fold", "predicted")


def write_report(run_dir: str | os.PathLike, res: EvalResult, *, config: dict | None = None,
                 figures: bool = True) -> Path:
    """Write metrics.json, predictions.csv (``PREDICTION_COLUMNS``, then one probability per class), config.json,
    figures (confusion, latent maps, curves) and report.md, the run read in one page (as ``emovae demo`` writes)."""
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(res.metrics, indent=1))
    if config is not None:
        (d / "config.json").write_text(json.dumps(config, indent=1))
    with open(d / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*PREDICTION_COLUMNS, *res.classes])
        for i, it in enumerate(res.table.items):
            w.writerow([it.path, it.label, it.speaker, it.corpus, int(res.fold[i]), res.y_pred[i],
                        *(f"{p:.5f}" for p in res.proba[i])])
    written = write_figures(d, res) if figures else []
    (d / "report.md").write_text(report_markdown(res.metrics, config, written))
    return d


def _pm(block: dict, key: str = "balanced_accuracy") -> str:
    return f"{block['mean'][key]:.3f} ± {block['std'][key]:.3f}"


def report_markdown(m: dict, config: dict | None, figures: list[str]) -> str:
    """report.md of an evaluation run: what was evaluated and how, the headline with its spread over folds, the
    other scoring mode, per fold, per class, per corpus, the confusion matrix, the figures and the files."""
    lines = ["# emovae evaluate", ""]
    if m.get("estimate"):
        lines += [f"**{m['estimate']}**", ""]
    if m.get("warning"):
        lines += [f"**WARNING: {m['warning']}**", ""]
    what = m.get("evaluation", "evaluation")
    if config and config.get("model"):
        what += f" of `{config['model']}`"
    data = ", ".join(f"`{x}`" for x in (config or {}).get("data", []))
    lines += [f"{what}{' on ' + data if data else ''}: {m['n_files']} clips of {m.get('n_speakers', '?')} speakers, "
              f"{len(m['confusion']['labels'])} classes; scored {m.get('mode', 'strict single-clip')}.", ""]
    folds = "mean ± std over folds" if "mean" in m else "one model"
    lines += ["| measure | all clips | " + folds + " |", "|---|---|---|"]
    for key, name in (("balanced_accuracy", "balanced accuracy (UA)"), ("accuracy", "accuracy"),
                      ("macro_f1", "macro-F1"), ("ece", "expected calibration error (15 bins)")):
        if key in m:
            lines.append(f"| {name} | {m[key]:.3f} | {_pm(m, key) if 'mean' in m else ''} |")
    lines += [f"| chance | {m['chance']:.3f} | |", ""]
    for other in ("strict", "adapted", "test_time_augmented"):
        if other in m:
            lines += [f"{m[other]['mode']}: UA {_pm(m[other])} (the same folds and models).", ""]
    if "all_classes" in m:
        lines += [f"Over all {len(m['all_classes']['confusion']['labels'])} classes, unrestricted argmax: UA "
                  f"{m['all_classes']['balanced_accuracy']:.3f} ({m.get('left_out', 0)} clips of classes the model "
                  "does not know left out of the headline).", ""]
    if m.get("folds"):
        lines += ["## Per fold", "", "| fold | test speakers | clips | UA | accuracy |", "|---|---|---|---|---|"]
        for k, f in enumerate(m["folds"]):
            spk = ", ".join(f.get("test_speakers", []))
            lines.append(f"| {k} | {spk} | {f['n_files']} | {f['balanced_accuracy']:.3f} | {f['accuracy']:.3f} |")
        if m.get("folds_reused"):
            lines += ["", f"Folds {', '.join(map(str, m['folds_reused']))}: models saved by an earlier run (same "
                      "speakers, data and configuration), not fitted again."]
        lines.append("")
    lines += ["## Per class", "", "| class | recall |", "|---|---|"]
    lines += [f"| {c} | {r:.3f} |" for c, r in m["per_class_recall"].items()] + [""]
    if m.get("per_corpus"):
        lines += ["## Per corpus", "", "| corpus | clips | UA |", "|---|---|---|"]
        lines += [f"| {c} | {cm['n_files']} | {cm['balanced_accuracy']:.3f} |" for c, cm in m["per_corpus"].items()]
        lines.append("")
    labels, matrix = m["confusion"]["labels"], m["confusion"]["matrix"]
    lines += ["## Confusion matrix", "", "Rows: true class; columns: predicted.", "",
              "| true ↓ predicted → | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {lab} | " + " | ".join(str(v) for v in row) + " |" for lab, row in zip(labels, matrix)] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    lines += ["## Files", "", "- `metrics.json`: every figure above, per fold too",
              "- `predictions.csv`: one row per clip (" + ", ".join(PREDICTION_COLUMNS) + ", then the probability of "
              "each class); its path, label and speaker columns make it a manifest (`--data`) and a "
              "`--speaker-from` table"]
    if config is not None:
        lines.append("- `config.json`: the data and the configuration of this run")
    return "\n".join(lines) + "\n"


def write_figures(d: Path, res: EvalResult) -> list[str]:
    """The run's figures in ``d``: the confusion matrix, latent maps (PCA, t-SNE) and training curves; returns the
    names of the files written."""
    from . import plots

    m = res.metrics
    title = f"UA {m['balanced_accuracy']:.3f}, accuracy {m['accuracy']:.3f} ({m['n_files']} clips)"
    plots.save_figure(plots.confusion_figure(np.array(m["confusion"]["matrix"]), m["confusion"]["labels"],
                                             title=title), d / "confusion.png")
    written = ["confusion.png"]
    labels = res.table.labels.tolist()
    for method in ("pca", "tsne"):
        if len(labels) >= 5:
            pts = plots.project_2d(res.mu, method=method)
            plots.save_figure(plots.latent_map(pts, labels, title=f"VAE latent mean ({method.upper()})"),
                              d / f"latent_{method}.png")
            written.append(f"latent_{method}.png")
    for k, hist in enumerate(h for h in res.histories if h):
        name = "curves.png" if len(res.histories) == 1 else f"curves_fold{k}.png"
        plots.save_figure(plots.curves_figure(hist, title="VAE training" + (f", fold {k}" if len(res.histories) > 1
                                                                            else "")), d / name)
        written.append(name)
    return written


DEMO_DIR = Path(__file__).resolve().parent / "demo"


def demo_clips() -> list[Path]:
    """The bundled example clips (RAVDESS-named, one per emotion)."""
    return sorted(DEMO_DIR.glob("*.flac"))


def demo_truth(recognizer, clips) -> list[str]:
    """The RAVDESS labels of ``clips`` in the model's vocabulary: merged as its training merged them
    (``training_data.label_map``, e.g. calm -> neutral)."""
    from .data import parse_name

    merged = (recognizer.meta.get("training_data") or {}).get("label_map") or {}
    return [merged.get(parse_name(c).emotion, parse_name(c).emotion) for c in clips]


def demo_report(recognizer, out_dir: str | os.PathLike) -> tuple[list, dict, list[str]]:
    """Predict the bundled clips with ``recognizer``; write report.md, predictions.json and, with the plot
    extra, confusion.png and latent_map.png (the clips over the model's shipped map of its training clips) into
    ``out_dir``. Returns the predictions, the metrics and the names of the files written."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    clips = demo_clips()
    preds = [recognizer.predict_file(c) for c in clips]
    truth = demo_truth(recognizer, clips)
    m = compute_metrics(truth, [p.emotion for p in preds], tuple(dict.fromkeys((*recognizer.classes, *truth))))
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
