import json

import numpy as np
import pytest

from emovae.data import EMOTIONS
from emovae.errors import DataError
from emovae.evaluate import actor_folds, compute_metrics


def test_actor_folds_are_disjoint_and_cover_everyone():
    actors = np.repeat(np.arange(1, 21), 60)
    folds = actor_folds(actors, 5, seed=0)
    seen = []
    for tr, te in folds:
        assert not set(actors[tr]) & set(actors[te])
        assert len(set(actors[te])) == 4 and len(tr) + len(te) == len(actors)
        seen += sorted(set(actors[te]))
    assert sorted(seen) == list(range(1, 21))
    assert [sorted(set(actors[te])) for _, te in actor_folds(actors, 5, seed=1)] != \
        [sorted(set(actors[te])) for _, te in folds]  # another seed draws other folds


def test_actor_folds_too_few_actors():
    with pytest.raises(DataError, match="cannot fill 5"):
        actor_folds(np.array([1, 1, 2, 3]), 5)


def test_metrics_known_values():
    y = ["angry"] * 4 + ["sad"] * 2
    p = ["angry", "angry", "angry", "sad", "sad", "angry"]
    m = compute_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["per_class_recall"] == {"sad": 0.5, "angry": 0.75}
    cm = np.array(m["confusion"]["matrix"])
    assert cm[EMOTIONS.index("angry"), EMOTIONS.index("sad")] == 1 and cm.sum() == 6
    f1_angry, f1_sad = 2 * .75 * .75 / 1.5, 0.5
    assert m["macro_f1"] == pytest.approx((f1_angry + f1_sad) / 2)
    json.dumps(m)


@pytest.mark.slow
def test_scaler_fitted_on_train_fold_only(tmp_path):
    """The model's stored scaler statistics equal those of its training clips, not of all clips."""
    pytest.importorskip("torch")
    from emovae.config import FeatureConfig, TrainConfig, VAEConfig
    from emovae.evaluate import table_features
    from emovae.extraction import extract_dataset
    from emovae.model import EmotionRecognizer

    from .conftest import write_ravdess_tree

    write_ravdess_tree(tmp_path, actors=(1, 2, 3, 4), emotions=(1, 5))
    table, _ = extract_dataset(tmp_path, FeatureConfig(n_mfcc=13), n_jobs=1, progress=False)
    tr, te = actor_folds(table.actors, 2, seed=0)[0]
    X = table_features(table)
    m = EmotionRecognizer(FeatureConfig(n_mfcc=13), VAEConfig(seq_len=8, channels=4, latent_dim=2, epochs=2),
                          train_config=TrainConfig(val_actors=1)).fit([X[i] for i in tr], table.labels[tr],
                                                                      groups=table.actors[tr])
    np.testing.assert_allclose(m.net_.stats_mean.numpy(), table.stats[tr].mean(axis=0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(m.net_.stats_mean.numpy(), table.stats.mean(axis=0), rtol=1e-4, atol=1e-4)


def test_cv_passes_only_the_training_actors_copies(tmp_path):
    """Speed-perturbed copies reach fit() for the training fold's clips only, aligned with them."""
    from emovae.config import FeatureConfig
    from emovae.evaluate import cross_validate
    from emovae.extraction import extract_dataset

    from .conftest import write_ravdess_tree

    write_ravdess_tree(tmp_path, actors=(1, 2, 3, 4), emotions=(1, 5))
    table, _ = extract_dataset(tmp_path, FeatureConfig(n_mfcc=13), n_jobs=1, progress=False)
    table.augment((0.9,), n_jobs=1, progress=False)
    seen = []

    class Spy:
        classes_ = np.array(["neutral", "angry"])

        def fit(self, X, y, groups=None, augmented=None):
            seen.append((X, groups, augmented))
            return self

        def forward(self, X, groups=None):
            n = len(X)
            return {"probabilities": np.tile([0.6, 0.4], (n, 1)), "mu": np.zeros((n, 2)), "recon_mse": np.zeros(n)}

    cross_validate(table, Spy, n_splits=2, seed=0, progress=False)
    assert len(seen) == 2
    paths = {tuple(np.round(f.stats[:3], 4)): p for f, p in zip(table.augmented[0.9], table.paths)}
    for (tr, te), (X, groups, aug) in zip(actor_folds(table.actors, 2, seed=0), seen):
        assert list(aug) == [0.9] and len(aug[0.9]) == len(X) == len(tr)
        copied = {paths[tuple(np.round(f.stats[:3], 4))] for f in aug[0.9]}
        assert copied == {table.paths[i] for i in tr}  # never a test actor's clip
        assert set(groups) == set(table.actors[tr])


def test_cv_scores_test_time_copies_of_the_test_clips_only(tmp_path):
    """With speed copies in the table, CV also scores each test clip averaged with its own copies."""
    from emovae.config import FeatureConfig
    from emovae.evaluate import cross_validate
    from emovae.extraction import extract_dataset

    from .conftest import write_ravdess_tree

    write_ravdess_tree(tmp_path, actors=(1, 2, 3, 4), emotions=(1, 5))
    table, _ = extract_dataset(tmp_path, FeatureConfig(n_mfcc=13), n_jobs=1, progress=False)
    table.augment((0.9,), n_jobs=1, progress=False)
    copies = {id(f): i for i, f in enumerate(table.augmented[0.9])}
    forwarded = []

    class Spy:
        classes_ = np.array(["neutral", "angry"])

        def fit(self, X, y, groups=None, augmented=None):
            return self

        def forward(self, X, groups=None):
            n = len(X)
            is_copy = np.array([id(x) in copies for x in X])
            forwarded.append([copies[id(x)] for x in X if id(x) in copies])
            # originals say neutral, copies say angry strongly: the average of the two says angry
            p = np.where(is_copy[:, None], [0.0, 1.0], [0.6, 0.4])
            return {"probabilities": p, "mu": np.zeros((n, 2)), "recon_mse": np.zeros(n)}

    res = cross_validate(table, Spy, n_splits=2, seed=0, progress=False)
    tta = res.metrics["test_time_augmented"]
    assert len(tta["folds"]) == 2
    truth = np.array(["neutral" if lab == 0 else "angry" for lab in table.labels])
    assert res.metrics["balanced_accuracy"] == 0.5  # every clip called neutral
    assert tta["mean"]["accuracy"] == np.mean(truth == "angry")  # every clip called angry
    scored = [i for batch in forwarded for i in batch]
    tests = [i for _, te in actor_folds(table.actors, 2, seed=0) for i in te]
    assert sorted(scored) == sorted(tests)  # each test clip's copy once, never a training clip's
