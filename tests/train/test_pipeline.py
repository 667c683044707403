"""The training pipeline behind ``emovae train``: what a model folder holds after training."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from emovae.evaluate import table_features  # noqa: E402
from emovae.modelfile import CONFIG_FILE, ONNX_FILE, VOICE_FILE, WEIGHTS_FILE, read_model_json  # noqa: E402
from emovae.runtime import project_to_map  # noqa: E402

from ..conftest import TRAIN_ACTORS  # noqa: E402


def test_the_model_folder_holds_the_onnx_weights_and_the_training_record(tiny_model_dir, tiny_model, train_table):
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == sorted([CONFIG_FILE, ONNX_FILE])
    assert not (tiny_model_dir / WEIGHTS_FILE).exists() and not (tiny_model_dir / VOICE_FILE).exists()
    meta = read_model_json(tiny_model_dir)
    data = meta["training_data"]
    assert data["n_files"] == len(train_table) and data["speakers"] == [f"ravdess/{a:02d}" for a in TRAIN_ACTORS]
    assert data["corpora"] == ["ravdess"] and data["clips_per_class"] == train_table.counts()
    assert data["command"].startswith("emovae -q train --data ")
    assert meta["metrics"] == {} and meta["novelty"]["threshold"] > 0


def test_the_shipped_latent_map_places_the_training_clips(tiny_model_dir, tiny_model, train_table):
    """The map's points are the training clips' latent means projected on its two components, with their labels."""
    lmap = read_model_json(tiny_model_dir)["latent_map"]
    X = table_features(train_table)
    assert lmap["labels"] == train_table.labels.tolist()
    np.testing.assert_allclose(project_to_map(tiny_model.transform(X), lmap), lmap["points"], atol=2e-3)
    comps = np.array(lmap["components"])
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-5)  # orthonormal directions


@pytest.mark.slow
def test_cross_validation_metrics_are_stored_with_the_model(train_table, tiny_model, tmp_path):
    from emovae.train.pipeline import train_model

    model, res = train_model(train_table, tmp_path / "m", *tiny_model.configs(), cv=2)
    metrics = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())["metrics"]
    folds = metrics["folds"]
    assert len(folds) == 2 and not set(folds[0]["test_speakers"]) & set(folds[1]["test_speakers"])
    assert sorted(folds[0]["test_speakers"] + folds[1]["test_speakers"]) == [f"ravdess/{a:02d}" for a in TRAIN_ACTORS]
    assert metrics["speaker_independent"] is True and metrics["n_speakers"] == len(TRAIN_ACTORS)
    assert metrics["balanced_accuracy"] == res.metrics["balanced_accuracy"]
    assert metrics["adapted"]["mean"]["balanced_accuracy"] == pytest.approx(
        np.mean([f["balanced_accuracy"] for f in metrics["adapted"]["folds"]]))
    assert not (tmp_path / "m" / WEIGHTS_FILE).exists()
