"""The training pipeline behind ``emovae train``: fit on a feature table (with its speed copies), optionally
cross-validate first, fit the speech guard on its clips, then write the model folder: model.json, model.onnx (parity-checked, holding the only
copy of the weights) and voice.onnx."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
from ..corpus import canonical_label
from ..evaluate import EvalResult, cross_validate, table_features
from ..extraction import FeatureTable
from ..guard import has_cues
from ..modelfile import WEIGHTS_FILE
from ..runtime import fit_latent_map
from .estimator import EmotionRecognizer
from .export import export_model_dir
from .guard import fit_guard


def train_model(table: FeatureTable, out: str | os.PathLike, fcfg: FeatureConfig, vcfg: VAEConfig,
                ccfg: ClassifierConfig, tcfg: TrainConfig, *, cv: int = 0, split: str = "speaker",
                command: str = "", progress: bool = False, save_folds=None,
                label_map: dict[str, str] | None = None) -> tuple[EmotionRecognizer, EvalResult | None]:
    """Train on every clip of ``table`` and write the model folder ``out``; with ``cv`` folds, first a
    speaker-grouped cross-validation whose metrics are stored in model.json (its fold models also saved under
    ``save_folds`` when given). ``label_map``: the labels merged into the table's (``--map``), stored so that
    scoring a corpus by its own labels merges them the same way. Returns the model and the CV result."""

    def make():
        return EmotionRecognizer(fcfg, vcfg, ccfg, tcfg, progress=progress)

    res, metrics = None, {}
    if cv:
        res = cross_validate(table, make, n_splits=cv, seed=tcfg.seed, progress=progress, split=split,
                             save_folds=save_folds)
        metrics = {k: v for k, v in res.metrics.items() if k != "folds"}
        metrics["folds"] = [{k: f[k] for k in ("balanced_accuracy", "accuracy", "macro_f1", "ece", "test_speakers")}
                            for f in res.metrics["folds"]]
    X = table_features(table)
    model = make().fit(X, table.labels, groups=table.speakers, augmented=table.augmented, corpora=table.corpora,
                       dimensions=table.dimension_targets)
    model.extra_ = {"training_data": {"n_files": len(table), "speakers": sorted(set(table.speakers.tolist())),
                                      "corpora": sorted(set(table.corpora.tolist())), "clips_per_class": table.counts(),
                                      "label_map": {canonical_label(k): canonical_label(v) for k, v in (label_map or {}).items()},
                                      "command": command},
                    "latent_map": fit_latent_map(model.transform(X), table.labels.tolist()),
                    # in_domain = "this is speech" (without the frames it needs: the VAE novelty's threshold)
                    "guard": fit_guard(table.paths, fcfg, seed=tcfg.seed) if has_cues(table.frame_names) else None}
    out = Path(out)
    model.save(out, metrics=metrics)
    export_model_dir(model, out)  # parity-checked against torch: the ONNX file then holds the only copy of the weights
    (out / WEIGHTS_FILE).unlink()
    return model, res
