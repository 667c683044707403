import numpy as np
import pytest

from emovae.data import EMOTIONS
from emovae.errors import DataError
from emovae.evaluate import compute_metrics, speaker_folds


def test_speaker_folds_are_disjoint_and_cover_everyone():
    actors = np.repeat(np.arange(1, 21), 60)
    folds = speaker_folds(actors, 5, seed=0)
    seen = []
    for tr, te in folds:
        assert not set(actors[tr]) & set(actors[te])
        assert len(set(actors[te])) == 4 and len(tr) + len(te) == len(actors)
        seen += sorted(set(actors[te]))
    assert sorted(seen) == list(range(1, 21))
    assert [sorted(set(actors[te])) for _, te in speaker_folds(actors, 5, seed=1)] != \
        [sorted(set(actors[te])) for _, te in folds]  # another seed draws other folds


def test_speaker_folds_too_few_actors():
    with pytest.raises(DataError, match="cannot fill 5"):
        speaker_folds(np.array([1, 1, 2, 3]), 5)


def test_metrics_known_values():
    y = ["angry"] * 4 + ["sad"] * 2
    p = ["angry", "angry", "angry", "sad", "sad", "angry"]
    m = compute_metrics(y, p, EMOTIONS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["per_class_recall"] == {"sad": 0.5, "angry": 0.75}
    cm = np.array(m["confusion"]["matrix"])
    assert cm[EMOTIONS.index("angry"), EMOTIONS.index("sad")] == 1 and cm.sum() == 6
    f1_angry, f1_sad = 2 * .75 * .75 / 1.5, 0.5
    assert m["macro_f1"] == pytest.approx((f1_angry + f1_sad) / 2)
    assert m["n_files"] == 6 and "neutral" not in m["per_class_recall"]  # classes without clips are left out
    assert m["chance"] == 0.5  # one over the classes present
    assert compute_metrics(y, p, ["angry", "sad"])["confusion"]["matrix"] == [[3, 1], [1, 1]]


def test_scaler_fitted_on_train_fold_only(train_table):
    """The model's stored scaler statistics equal those of its training fold's clips, not of all clips."""
    pytest.importorskip("torch")
    from emovae.config import FeatureConfig, TrainConfig, VAEConfig
    from emovae.evaluate import table_features
    from emovae.train.estimator import EmotionRecognizer

    tr, te = speaker_folds(train_table.speakers, 2, seed=0)[0]
    X = table_features(train_table)
    m = EmotionRecognizer(FeatureConfig(voice=0, n_mfcc=13), VAEConfig(seq_len=8, channels=4, latent_dim=2, epochs=1),
                          train_config=TrainConfig(val_actors=1, threads=1)).fit(
        [X[i] for i in tr], train_table.labels[tr], groups=train_table.speakers[tr])
    np.testing.assert_allclose(m.net_.stats_mean.numpy(), train_table.stats[tr].mean(axis=0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(m.net_.stats_mean.numpy(), train_table.stats.mean(axis=0), rtol=1e-4, atol=1e-4)


class SpyNetwork:
    """A network that records what it is asked and answers fixed probabilities (copies: ``copy_p``)."""

    def __init__(self, p=(0.6, 0.4), copy_p=(0.6, 0.4), copies=()):
        self.p, self.copy_p, self.copies, self.calls = p, copy_p, {id(c): i for i, c in enumerate(copies)}, []

    def prepare(self, X):
        return list(X)

    def forward(self, X):
        self.calls.append(("single", X, None))
        return self._out(X)

    def forward_by_speaker(self, X, speakers, cfg=None):
        self.calls.append(("adapted", X, list(speakers)))
        out = self._out(X)
        out["probabilities"] = np.tile([0.1, 0.9], (len(X), 1))  # adapted: always the second class
        return out

    def _out(self, X):
        n = len(X)
        is_copy = np.array([id(x) in self.copies for x in X], bool)
        p = np.where(is_copy[:, None], self.copy_p, self.p)
        return {"probabilities": p, "mu": np.zeros((n, 2)), "recon_mse": np.zeros(n),
                "probabilities_adapted": p}


def make_spy(net, seen=None):
    class Spy:
        classes_ = np.array(["neutral", "angry"])

        def fit(self, X, y, groups=None, augmented=None):
            if seen is not None:
                seen.append((X, groups, augmented))
            return self

        def network(self):
            return net

    return Spy


def _two_emotion_table(tmp_path, speeds=(0.9,)):
    from emovae.config import FeatureConfig
    from emovae.extraction import extract_dataset

    from .conftest import write_ravdess_tree

    write_ravdess_tree(tmp_path, actors=(1, 2, 3, 4), emotions=(1, 5), seconds=0.5)
    table, _ = extract_dataset(tmp_path, FeatureConfig(n_mfcc=13, voice=0), n_jobs=1, progress=False)
    return table.augment(speeds, n_jobs=1, progress=False)


def test_adapted_mode_scores_each_test_speaker_with_its_own_clips(tmp_path):
    """--speaker-norm: each test fold goes through forward_by_speaker with its clips' actors; the same models are
    also scored single-clip, and both numbers come together."""
    from emovae.evaluate import cross_validate

    table = _two_emotion_table(tmp_path, speeds=())
    net = SpyNetwork()
    res = cross_validate(table, make_spy(net), n_splits=2, seed=0, progress=False, adapted=True)
    folds = speaker_folds(table.speakers, 2, seed=0)
    adapted = [c for c in net.calls if c[0] == "adapted"]
    assert len(adapted) == 2
    for (_, te), (_, X, speakers) in zip(folds, adapted):
        assert speakers == table.speakers[te].tolist() and len(X) == len(te)
    truth = table.labels
    assert res.metrics["mode"].startswith("adapted") and res.metrics["accuracy"] == np.mean(truth == "angry")
    assert res.metrics["strict"]["mean"]["accuracy"] == np.mean(truth == "neutral")


def test_evaluate_adapted_is_what_predict_by_speaker_answers(tiny_model, tiny_model_dir, new_table):
    """The number reported for adapted mode comes from the users' path (Recognizer.predict_by_speaker)."""
    from emovae.evaluate import evaluate_model, table_features
    from emovae.runtime import Recognizer

    res = evaluate_model(tiny_model, new_table, adapted=True)
    preds = Recognizer.load(tiny_model_dir, backend="onnx").predict_by_speaker(table_features(new_table),
                                                                                new_table.speakers.tolist())
    expected = np.zeros_like(res.proba)
    for i, p in enumerate(preds):
        for c, v in p.probabilities.items():
            expected[i, res.classes.index(c)] = v
    np.testing.assert_allclose(res.proba, expected, atol=1e-5)
    assert res.y_pred.tolist() == [p.emotion for p in preds]
    strict = evaluate_model(tiny_model, new_table)
    assert strict.metrics["mode"] == "strict single-clip" and not np.allclose(strict.proba, res.proba, atol=1e-4)


def test_cv_passes_only_the_training_actors_copies(tmp_path):
    """Speed-perturbed copies reach fit() for the training fold's clips only, aligned with them."""
    from emovae.evaluate import cross_validate

    table = _two_emotion_table(tmp_path)
    seen = []
    cross_validate(table, make_spy(SpyNetwork(), seen), n_splits=2, seed=0, progress=False)
    assert len(seen) == 2
    paths = {id(f): p for f, p in zip(table.augmented[0.9], table.paths)}
    for (tr, te), (X, groups, aug) in zip(speaker_folds(table.speakers, 2, seed=0), seen):
        assert list(aug) == [0.9] and len(aug[0.9]) == len(X) == len(tr)
        assert [paths[id(f)] for f in aug[0.9]] == [table.paths[i] for i in tr]  # never a test actor's clip
        assert set(groups) == set(table.speakers[tr])


def test_cv_scores_test_time_copies_of_the_test_clips_only(tmp_path):
    """With speed copies in the table, CV also scores each test clip averaged with its own copies."""
    from emovae.evaluate import cross_validate

    table = _two_emotion_table(tmp_path)
    # originals say neutral, copies say angry strongly: the average of the two says angry
    net = SpyNetwork(p=(0.6, 0.4), copy_p=(0.0, 1.0), copies=table.augmented[0.9])
    res = cross_validate(table, make_spy(net), n_splits=2, seed=0, progress=False)
    tta = res.metrics["test_time_augmented"]
    assert len(tta["folds"]) == 2
    truth = table.labels
    assert res.metrics["balanced_accuracy"] == 0.5  # every clip called neutral
    assert tta["mean"]["accuracy"] == np.mean(truth == "angry")  # every clip called angry
    scored = [net.copies[id(x)] for kind, X, _ in net.calls if kind == "single" for x in X if id(x) in net.copies]
    tests = [i for _, te in speaker_folds(table.speakers, 2, seed=0) for i in te]
    assert sorted(scored) == sorted(tests)  # each test clip's copy once, never a training clip's
