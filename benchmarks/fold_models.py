"""Fold models shared between benchmarks: ``accuracy.py --save-models DIR`` saves the emovae row's model of each
actor-grouped fold, and ``ood.py`` / ``adaptation.py --models DIR`` load them instead of training the same models
again (a voice-student model takes about 5 minutes per fold on 2 cores). A saved model is used only for the fold
whose test actors it was saved with, so no benchmark scores a model on speakers it was trained on."""

from __future__ import annotations

import json
from pathlib import Path


def fold_dir(root: Path, seed: int, fold: int) -> Path:
    return Path(root) / f"seed{seed}-fold{fold}"


def save_fold_model(model, root: Path, seed: int, fold: int, test_actors, metrics: dict | None = None) -> Path:
    """``model.save`` into ``root/seed{seed}-fold{fold}`` with the fold's test actors in ``fold.json``."""
    d = fold_dir(root, seed, fold)
    model.save(d, metrics={k: v for k, v in (metrics or {}).items() if k != "test_actors"})
    (d / "fold.json").write_text(json.dumps({"seed": seed, "fold": fold,
                                             "test_actors": sorted(int(a) for a in test_actors)}))
    return d


def load_fold_model(root: Path, seed: int, fold: int, test_actors):
    """The saved model of that fold, after checking it was held out of exactly these test actors."""
    from emovae.model import EmotionRecognizer

    d = fold_dir(root, seed, fold)
    if not (d / "fold.json").is_file():
        raise SystemExit(f"{d}: no saved fold model; run benchmarks/accuracy.py --save-models {root} --seeds {seed}")
    saved = json.loads((d / "fold.json").read_text())["test_actors"]
    wanted = sorted(int(a) for a in test_actors)
    if saved != wanted:
        raise SystemExit(f"{d}: saved for test actors {saved}, this fold tests {wanted}; not reusable")
    return EmotionRecognizer.load(d)
