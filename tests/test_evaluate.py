import csv
import json

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

        def fit(self, X, y, groups=None, augmented=None, corpora=None):
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


# ------------------------------------------------------------------------------------------- any corpus (issue 20)
def _cfg():
    from emovae.config import FeatureConfig

    from .conftest import TINY_FEATURES

    return FeatureConfig(**TINY_FEATURES)


def test_without_speaker_ids_speaker_cv_is_refused_and_random_is_labelled(tmp_path):
    """A folder per label without a speaker pattern: no speaker-grouped CV; --split random runs and says, in every
    report, that it is speaker-dependent."""
    import soundfile as sf

    from emovae.evaluate import cross_validate, folds_for, write_report
    from emovae.extraction import extract_dataset

    from .conftest import voice_like

    for label, f0 in (("neutral", 110), ("angry", 220)):
        (tmp_path / "mine" / label).mkdir(parents=True)
        for k in range(4):
            sf.write(tmp_path / "mine" / label / f"take{k}.wav", voice_like(f0 + 7 * k, 0.5, seed=k), 16000)
    table, problems = extract_dataset(f"folders={tmp_path / 'mine'}", _cfg(), n_jobs=1, progress=False)
    assert not problems and len(table) == 8 and not table.has_speakers and table.classes == ("neutral", "angry")
    spy = make_spy(SpyNetwork())
    with pytest.raises(DataError, match="no speaker ids.*--split random"):
        cross_validate(table, spy, n_splits=2, progress=False)
    with pytest.raises(DataError, match="adapted scoring needs speaker ids"):
        cross_validate(table, spy, n_splits=2, progress=False, split="random", adapted=True)
    folds = folds_for(table, "random", 2, seed=0)
    assert sorted(i for _, te in folds for i in te) == list(range(8))
    assert all(not set(tr) & set(te) and len(tr) + len(te) == 8 for tr, te in folds)
    res = cross_validate(table, spy, n_splits=2, seed=0, progress=False, split="random")
    m = res.metrics
    assert m["speaker_independent"] is False and "SPEAKER-DEPENDENT" in m["warning"]
    assert m["evaluation"].startswith("random (over files) 2-fold")
    assert m["accuracy"] == 0.5 and m["chance"] == 0.5  # the spy calls every clip neutral
    assert "adapted" not in m and "per_corpus" not in m  # no speakers to adapt to; one corpus
    run = write_report(tmp_path / "run", res, figures=False)
    assert json.loads((run / "metrics.json").read_text())["speaker_independent"] is False
    rows = list(csv.reader((run / "predictions.csv").open()))
    assert rows[0] == ["path", "label", "speaker", "corpus", "fold", "predicted", "neutral", "angry"]
    assert {(r[2], r[3]) for r in rows[1:]} == {("", "mine")}
    report = (run / "report.md").read_text()
    assert "**WARNING: SPEAKER-DEPENDENT" in report and "random (over files) 2-fold" in report
    with pytest.raises(DataError, match="split must be one of"):
        folds_for(table, "actor", 2, 0)


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """A RAVDESS folder (actors 1, 2) and a manifest of another studio's clips (actors 3, 4, corpus studio2)."""
    from emovae.data import parse_name
    from emovae.extraction import extract_dataset

    from .conftest import write_ravdess_tree

    root = tmp_path_factory.mktemp("two_corpora")
    write_ravdess_tree(root / "rav", actors=(1, 2), emotions=(1, 5), seconds=0.5)
    other = write_ravdess_tree(root / "other", actors=(3, 4), emotions=(1, 5), seconds=0.5)
    (root / "studio2.csv").write_text("path,label,speaker,corpus\n" + "".join(
        f"{p.relative_to(root)},{parse_name(p).emotion},{p.parent.name},studio2\n" for p in other))
    table, problems = extract_dataset([root / "rav", root / "studio2.csv"], _cfg(), n_jobs=1, progress=False)
    assert not problems
    return table


def test_leave_one_corpus_out_gives_one_fold_per_corpus(two_corpora, tmp_path):
    from emovae.evaluate import cross_validate, folds_for, write_report

    table = two_corpora
    assert sorted(set(table.speakers)) == ["ravdess/01", "ravdess/02", "studio2/Actor_03", "studio2/Actor_04"]
    folds = folds_for(table, "corpus", 5, seed=0)  # one fold per corpus, whatever --cv says
    assert [sorted(set(table.corpora[te])) for _, te in folds] == [["ravdess"], ["studio2"]]
    assert [sorted(set(table.corpora[tr])) for tr, _ in folds] == [["studio2"], ["ravdess"]]
    res = cross_validate(table, make_spy(SpyNetwork()), n_splits=5, seed=0, progress=False, split="corpus")
    m = res.metrics
    assert len(m["folds"]) == 2 and m["evaluation"].startswith("leave-one-corpus-out 2-fold")
    assert m["speaker_independent"] is True and "warning" not in m and m["n_speakers"] == 4
    assert [f["test_speakers"] for f in m["folds"]] == [["ravdess/01", "ravdess/02"],
                                                       ["studio2/Actor_03", "studio2/Actor_04"]]
    assert set(m["per_corpus"]) == {"ravdess", "studio2"}
    assert all(pc["n_files"] == 4 and pc["accuracy"] == 0.5 for pc in m["per_corpus"].values())
    rows = list(csv.reader((write_report(tmp_path / "r", res, figures=False) / "predictions.csv").open()))[1:]
    assert {(r[3], r[4]) for r in rows} == {("ravdess", "0"), ("studio2", "1")}  # corpus column, its fold
    with pytest.raises(DataError, match="at least 2 corpora"):
        folds_for(table.subset(np.flatnonzero(table.corpora == "ravdess")), "corpus", 2, 0)
    for tr, te in folds_for(table, "speaker", 4, seed=0):  # speaker folds span corpora, one group per test fold
        assert len(set(table.speakers[te])) == 1 and not set(table.speakers[tr]) & set(table.speakers[te])


@pytest.fixture(scope="module")
def five_class_table(tmp_path_factory):
    """Clips of the tiny model's unseen speakers in its 4 classes and one more (sad)."""
    from emovae.extraction import extract_dataset

    from .conftest import NEW_ACTORS, write_ravdess_tree

    root = tmp_path_factory.mktemp("five")
    write_ravdess_tree(root, actors=NEW_ACTORS, emotions=(1, 3, 4, 5, 8))
    table, problems = extract_dataset(root, _cfg(), n_jobs=1, progress=False)
    assert not problems and table.classes == ("neutral", "happy", "sad", "angry", "surprised")
    return table


def test_a_model_scored_on_data_with_an_extra_class(tiny_model, five_class_table):
    """UA over the shared classes (clips of others left out), the unrestricted figure beside it."""
    from emovae.evaluate import evaluate_model

    table, classes = five_class_table, list(tiny_model.classes_)
    assert classes == ["neutral", "happy", "angry", "surprised"]
    res = evaluate_model(tiny_model, table)
    m = res.metrics
    assert res.classes == tuple(classes) and res.proba.shape == (len(table), 4)
    assert m["classes"] == classes and m["n_files"] == 8 and m["left_out"] == 2 and m["chance"] == 0.25
    assert set(m["per_class_recall"]) == set(classes) and set(res.y_pred) <= set(classes)
    keep = table.labels != "sad"
    assert m["accuracy"] == pytest.approx(np.mean(res.y_pred[keep] == table.labels[keep]))
    full = m["all_classes"]
    assert full["n_files"] == 10 and full["confusion"]["labels"] == classes + ["sad"]
    assert full["per_class_recall"]["sad"] == 0.0  # the model has no word for sad
    assert full["accuracy"] == pytest.approx(m["accuracy"] * 8 / 10)


def test_a_model_scored_on_data_with_fewer_classes_restricts_its_argmax(tiny_model, five_class_table):
    from emovae.evaluate import evaluate_model

    table = five_class_table
    two = table.subset(np.flatnonzero(np.isin(table.labels, ["neutral", "angry"])))
    res = evaluate_model(tiny_model, two)
    m = res.metrics
    assert m["classes"] == ["neutral", "angry"] and m["n_files"] == 4 and m["left_out"] == 0
    cols = [list(tiny_model.classes_).index(c) for c in ("neutral", "angry")]
    assert res.y_pred.tolist() == np.array(["neutral", "angry"])[res.proba[:, cols].argmax(1)].tolist()
    assert m["all_classes"]["confusion"]["labels"] == list(tiny_model.classes_) and m["chance"] == 0.5
    with pytest.raises(DataError, match="none in common"):
        evaluate_model(tiny_model, table.subset(np.flatnonzero(table.labels == "sad")))


def _two_corpora_of(table):
    import dataclasses

    from emovae.corpus import Item

    return dataclasses.replace(table, items=[Item(it.path, it.label, it.speaker, "other" if it.speaker == "06"
                                                  else it.corpus) for it in table.items])


def test_evaluate_model_reports_per_corpus_metrics(tiny_model, five_class_table):
    from emovae.evaluate import evaluate_model

    table = five_class_table
    table = _two_corpora_of(table.subset(np.flatnonzero(table.labels != "sad")))
    m = evaluate_model(tiny_model, table).metrics
    assert set(m["per_corpus"]) == {"ravdess", "other"}
    assert all(pc["n_files"] == 4 for pc in m["per_corpus"].values())
    assert np.mean([pc["accuracy"] for pc in m["per_corpus"].values()]) == pytest.approx(m["accuracy"])


def test_per_corpus_metrics_with_an_extra_class(tiny_model, five_class_table):
    from emovae.evaluate import evaluate_model

    m = evaluate_model(tiny_model, _two_corpora_of(five_class_table)).metrics
    assert sum(pc["n_files"] for pc in m["per_corpus"].values()) == m["n_files"] == 8


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    from emovae.evaluate import calibration_error

    classes = ("a", "b")
    proba = np.array([[0.9, 0.1]] * 10 + [[0.3, 0.7]] * 10)
    truth = np.array(["a"] * 9 + ["b"] + ["b"] * 7 + ["a"] * 3)  # 90 % and 70 % right: calibrated
    assert calibration_error(proba, truth, classes) == pytest.approx(0.0, abs=1e-9)
    truth = np.array(["a"] * 5 + ["b"] * 5 + ["b"] * 7 + ["a"] * 3)  # the 0.9 bin is right half the time
    assert calibration_error(proba, truth, classes) == pytest.approx(0.5 * 0.4, abs=1e-9)


def test_cv_passes_degraded_copies_to_training_but_never_averages_them_at_test(tmp_path):
    """Degraded copies join the training fold's copies; test-time augmentation averages the speed copies only."""
    from emovae.evaluate import cross_validate

    table = _two_emotion_table(tmp_path)
    table.augment((), degraded=1, n_jobs=1, progress=False)
    seen = []
    net = SpyNetwork(p=(0.6, 0.4), copy_p=(0.0, 1.0), copies=table.augmented["degraded1"])
    res = cross_validate(table, make_spy(net, seen), n_splits=2, seed=0, progress=False)
    for (tr, _), (X, _, aug) in zip(speaker_folds(table.speakers, 2, seed=0), seen):
        assert list(aug) == [0.9, "degraded1"] and len(aug["degraded1"]) == len(tr)
    assert res.metrics["test_time_augmented"]["mean"]["accuracy"] == np.mean(table.labels == "neutral")
    assert not any(id(x) in net.copies for kind, X, _ in net.calls for x in X)


def test_cv_saves_each_fold_model_with_its_test_speakers(tmp_path):
    import json

    from emovae.evaluate import cross_validate

    table = _two_emotion_table(tmp_path / "data")

    class Saving:
        def __init__(self):
            self.inner = make_spy(SpyNetwork())()

        def fit(self, X, y, groups=None, augmented=None, corpora=None):
            self.groups = sorted(set(groups.tolist()))
            return self

        def network(self):
            return self.inner.network()

        classes_ = np.array(["neutral", "angry"])

        def save(self, d):
            d.mkdir(parents=True)
            (d / "trained_on.json").write_text(json.dumps(self.groups))
            return d

    cross_validate(table, Saving, n_splits=2, seed=3, progress=False, save_folds=tmp_path / "folds")
    for k, (tr, te) in enumerate(speaker_folds(table.speakers, 2, seed=3)):
        d = tmp_path / "folds" / f"seed3-fold{k}"
        fold = json.loads((d / "fold.json").read_text())
        assert fold["test_speakers"] == sorted(set(table.speakers[te].tolist())) and fold["fold"] == k
        assert json.loads((d / "trained_on.json").read_text()) == sorted(set(table.speakers[tr].tolist()))


def test_cv_reuses_saved_fold_models_only_for_the_same_speakers_data_and_recipe(tmp_path):
    """A second run with --save-folds resumes: a fold saved for the same test speakers, training data and
    configuration (torch threads aside) is loaded, not fitted; another recipe, a missing fold.json or other
    data fits again."""
    import json
    import os
    from dataclasses import replace

    from emovae.config import TrainConfig
    from emovae.evaluate import cross_validate, fold_digest, speaker_folds

    table = _two_emotion_table(tmp_path / "data")
    fits = []

    class Resumable:
        classes_ = np.array(["neutral", "angry"])

        def __init__(self, recipe="a", threads=2):
            self.recipe, self.threads = recipe, threads
            self.inner = make_spy(SpyNetwork())()

        def configs(self):
            return (self.recipe, TrainConfig(threads=self.threads))

        def fit(self, X, y, groups=None, augmented=None, corpora=None):
            fits.append(self.recipe)
            return self

        def network(self):
            return self.inner.network()

        def save(self, d):
            d.mkdir(parents=True, exist_ok=True)
            (d / "recipe.json").write_text(json.dumps(self.recipe))
            return d

        @classmethod
        def load(cls, d):
            return cls(json.loads((d / "recipe.json").read_text()))

    root = tmp_path / "folds"

    def run(recipe="a", threads=2, data=table):
        return cross_validate(data, lambda: Resumable(recipe, threads), n_splits=2, seed=3, progress=False,
                              save_folds=root)

    first = run()
    assert fits == ["a", "a"] and "folds_reused" not in first.metrics
    again = run(threads=1)
    assert fits == ["a", "a"] and again.metrics["folds_reused"] == [0, 1]
    np.testing.assert_array_equal(again.proba, first.proba)
    run("b")
    assert fits == ["a", "a", "b", "b"]  # another recipe: fitted again (and saved over the old folds)
    (root / "seed3-fold1" / "fold.json").unlink()
    assert run("b").metrics["folds_reused"] == [0] and fits[-1] == "b" and len(fits) == 5
    tr = speaker_folds(table.speakers, 2, seed=3)[0][0]
    st = os.stat(table.paths[tr[0]])
    os.utime(table.paths[tr[0]], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed on disk
    # the clip is in fold 0's training data and fold 1's test data: only fold 0 is fitted again
    assert run("b").metrics["folds_reused"] == [1] and len(fits) == 6
    flip = {"neutral": "angry", "angry": "neutral"}
    relabelled = replace(table, items=[replace(it, label=flip[it.label]) if i == tr[0] else it
                                       for i, it in enumerate(table.items)])
    assert fold_digest(relabelled, tr) != fold_digest(table, tr)
    assert run("b", data=relabelled).metrics["folds_reused"] == [1] and len(fits) == 7


# ------------------------------------------------------------------------------------------- reports (issue 33)
def test_predictions_csv_is_a_manifest_in_the_one_vocabulary(two_corpora, tmp_path):
    """predictions.csv reads back through the corpus layer as the same clips, labels, speakers and corpora."""
    from emovae.corpus import read_manifest
    from emovae.evaluate import cross_validate, write_report

    res = cross_validate(two_corpora, make_spy(SpyNetwork()), n_splits=2, seed=0, progress=False)
    run = write_report(tmp_path / "run", res, figures=False)
    items, problems = read_manifest(run / "predictions.csv")
    assert not problems and items == list(two_corpora.items)


def test_report_md_says_what_was_evaluated_with_its_spread_per_fold_class_and_corpus(two_corpora, tmp_path):
    from emovae.evaluate import cross_validate, write_report

    res = cross_validate(two_corpora, make_spy(SpyNetwork()), n_splits=2, seed=0, progress=False)
    res.metrics["estimate"] = "QUICK ESTIMATE (test)"
    run = write_report(tmp_path / "run", res, config={"data": ["a.csv", "b"]}, figures=False)
    report = (run / "report.md").read_text()
    m = res.metrics
    assert report.startswith("# emovae evaluate\n\n**QUICK ESTIMATE (test)**")
    assert "speaker-grouped 2-fold cross-validation (seed 0) on `a.csv`, `b`: 8 clips of 4 speakers" in report
    assert (f"| balanced accuracy (UA) | {m['balanced_accuracy']:.3f} | {m['mean']['balanced_accuracy']:.3f} ± "
            f"{m['std']['balanced_accuracy']:.3f} |") in report
    assert f"{m['adapted']['mode']}: UA {m['adapted']['mean']['balanced_accuracy']:.3f}" in report
    for k, f in enumerate(m["folds"]):
        assert f"| {k} | {', '.join(f['test_speakers'])} | {f['n_files']} |" in report
    assert "| neutral | 1.000 |" in report and "| angry | 0.000 |" in report  # the spy calls every clip neutral
    assert "| ravdess | 4 |" in report and "| studio2 | 4 |" in report
    assert "| neutral | 4 | 0 |" in report and "| angry | 4 | 0 |" in report  # confusion rows
    assert "## Figures" not in report and "`config.json`" in report


def test_the_fold_bar_moves_within_a_fold(two_corpora, capsys):
    """With progress, each fold shows its stage (fitting, then scoring) and a line when it is done."""
    from emovae.evaluate import cross_validate

    cross_validate(two_corpora, make_spy(SpyNetwork()), n_splits=2, seed=0, progress=True)
    err = capsys.readouterr().err
    for k in (1, 2):
        assert f"fold {k}/2: fitting on 4 clips" in err and f"fold {k}/2: scoring 4 clips" in err
        assert f"fold {k}/2: UA 0.500 on 4 clips of 2 test speaker(s)" in err
    assert err.index("fold 1/2: scoring") < err.index("fold 2/2: fitting")
    cross_validate(two_corpora, make_spy(SpyNetwork()), n_splits=2, seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_report_md_of_a_saved_model_on_new_data(tiny_model, five_class_table, tmp_path):
    """One model, no folds: the headline without a spread, the unrestricted figure over all classes beside it."""
    from emovae.evaluate import evaluate_model, write_report

    res = evaluate_model(tiny_model, five_class_table)
    report = (write_report(tmp_path / "r", res, config={"model": "M", "data": ["D"]}, figures=False)
              / "report.md").read_text()
    m = res.metrics
    assert "saved model on new data of `M` on `D`" in report and "| measure | all clips | one model |" in report
    assert f"| balanced accuracy (UA) | {m['balanced_accuracy']:.3f} |  |" in report
    assert f"Over all {len(m['all_classes']['confusion']['labels'])} classes, unrestricted argmax" in report
    assert f"({m['left_out']} clips of classes the model does not know" in report and "## Per fold" not in report
