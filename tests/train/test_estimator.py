"""EmotionRecognizer: the scikit-learn contract, what fit learns from which clips, the adapted path, persistence."""

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig, from_dict  # noqa: E402
from emovae.data import EMOTIONS  # noqa: E402
from emovae.errors import DataError, ModelFormatError, ParameterError  # noqa: E402
from emovae.evaluate import table_features  # noqa: E402
from emovae.modelfile import CONFIG_FILE, ONNX_FILE, PRETRAINED_DIR  # noqa: E402
from emovae.network import n_head_stats  # noqa: E402
from emovae.speaker import SessionConfig, batch_moments, mix  # noqa: E402
from emovae.train.estimator import EmotionRecognizer, as_names, inner_split, scaler  # noqa: E402

from ..conftest import TINY_EMOTIONS, TINY_SPEEDS  # noqa: E402


@pytest.fixture(scope="module")
def X(train_table):
    return table_features(train_table)


@pytest.fixture(scope="module")
def refit(tiny_model, train_table, X):
    """The tiny model fitted again in this process with the configs the CLI stored."""
    return EmotionRecognizer(*tiny_model.configs()).fit(X, train_table.labels, groups=train_table.speakers,
                                                          augmented=train_table.augmented)


def test_a_seeded_fit_reproduces_the_cli_model(refit, tiny_model, X, train_table):
    """Same data and configs (seed included) give the same model; the one read back from model.onnx's float16
    weights computes what the in-memory fit does."""
    np.testing.assert_array_equal(refit.predict_proba(X), tiny_model.predict_proba(X))
    # the adapted path also reads the prior, which model.json stores with 7 significant digits
    np.testing.assert_allclose(refit.predict_proba(X, train_table.speakers),
                               tiny_model.predict_proba(X, train_table.speakers), rtol=1e-5, atol=1e-7)
    assert refit.c_ == tiny_model.c_ and refit.history_ == tiny_model.history_


def test_fit_predict_contract(refit, X, train_table):
    assert list(refit.classes_) == [EMOTIONS[e - 1] for e in TINY_EMOTIONS]  # EMOTIONS order
    p = refit.predict_proba(X)
    assert p.shape == (len(X), len(TINY_EMOTIONS)) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(refit.predict(X), refit.classes_[p.argmax(axis=1)])
    assert refit.transform(X).shape == (len(X), refit.vae_config.latent_dim)
    assert refit.get_params()["train_config"].speed_perturb == TINY_SPEEDS
    assert refit.n_augmented_ == len(TINY_SPEEDS) * len(X)


def test_it_learns_emotions_that_carry_to_unseen_speakers(tiny_model, new_table):
    """The synthetic emotions differ in pitch, formant and level: a model of 4 speakers names them for 2 others."""
    y = new_table.labels
    assert (tiny_model.predict(table_features(new_table)) == y).mean() >= 0.75


def test_sklearn_clone_gives_an_unfitted_copy(tiny_model):
    from sklearn.base import clone

    c = clone(tiny_model)
    assert c.vae_config == tiny_model.vae_config and not hasattr(c, "net_")
    with pytest.raises(ModelFormatError, match="not fitted"):
        c.predict_proba([])


def test_scalers_come_from_the_training_clips_alone(tiny_model, train_table):
    """The standardisation is fitted on the clips given to fit (never on other speakers' or the speed copies)."""
    mean, std = scaler(train_table.stats, axis=0)
    np.testing.assert_allclose(tiny_model.net_.stats_mean.numpy(), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tiny_model.net_.stats_std.numpy(), std, rtol=1e-6, atol=1e-6)
    with_copies = np.vstack([train_table.stats] + [np.stack([f.stats for f in a]) for a in
                                                   train_table.augmented.values()])
    assert not np.allclose(tiny_model.net_.stats_mean.numpy(), with_copies.mean(axis=0), rtol=1e-4, atol=1e-4)
    # the prior of a new speaker: the training clips' mean (model.json keeps 7 digits)
    np.testing.assert_allclose(tiny_model.speaker_prior_[0], train_table.stats.mean(axis=0), rtol=1e-6, atol=1e-6)


def test_scaler_passes_constant_columns_unscaled():
    mean, std = scaler(np.array([[1.0, 2.0], [3.0, 2.0]]), axis=0)
    np.testing.assert_array_equal(mean, [2.0, 2.0])
    np.testing.assert_array_equal(std, [1.0, 1.0])


def test_speed_copies_train_the_heads_only(refit, train_table, X):
    """Without the copies: the same VAE and scalers (trained on the originals alone), other heads."""
    configs = refit.configs()
    plain = EmotionRecognizer(*configs).fit(X, train_table.labels, groups=train_table.speakers)
    assert plain.n_augmented_ == 0
    for name, a in refit.net_.state_dict().items():
        b = plain.net_.state_dict()[name]
        assert (np.array_equal(a.numpy(), b.numpy())) == (not name.startswith(("classifier", "dimensions"))), name
    assert not np.allclose(plain.predict_proba(X), refit.predict_proba(X), atol=1e-4)


def test_mismatched_speed_copies_are_refused(train_table, X):
    few = list(range(8))
    cfgs = (FeatureConfig(voice=0, n_mfcc=13), VAEConfig(seq_len=8, channels=4, latent_dim=2, epochs=1),
            ClassifierConfig(), TrainConfig(threads=1))
    with pytest.raises(ParameterError, match="augmented copies at speed 0.9: 3 for 8 clips"):
        EmotionRecognizer(*cfgs).fit([X[i] for i in few], train_table.labels[few],
                                     groups=train_table.speakers[few],
                                     augmented={0.9: train_table.augmented[0.9][:3]})


def test_adapted_probabilities_are_the_users_path(tiny_model, tiny_model_dir, new_table):
    """predict_proba(X, groups) = Network.forward_by_speaker = Recognizer.predict_by_speaker: each clip's speaker
    moments pooled with the prior, the heads mixed by trust n / (n + 8), the single-clip head below 2 clips."""
    from emovae.runtime import Recognizer

    X = table_features(new_table)
    groups = new_table.speakers.astype(object)
    groups[0] = "lone"  # a speaker with a single clip
    got = tiny_model.predict_proba(X, groups)
    out = tiny_model.network().forward(X)
    mean, std, count = batch_moments(new_table.stats, groups, tiny_model.speaker_prior_, SessionConfig())
    assert count.tolist() == [1] + [int((groups == g).sum()) for g in groups[1:]]
    adapted = tiny_model.forward(X, mean, std)["probabilities_adapted"]
    np.testing.assert_allclose(got, mix(out["probabilities"], adapted, SessionConfig().trust(count)), atol=1e-6)
    np.testing.assert_allclose(got[0], out["probabilities"][0], atol=1e-7)  # a lone clip: single-clip
    assert not np.allclose(got[1:], out["probabilities"][1:], atol=1e-4)
    rec = Recognizer.load(tiny_model_dir, backend="onnx")
    preds = rec.predict_by_speaker(X, list(groups))
    np.testing.assert_allclose([[p.probabilities[c] for c in tiny_model.classes_] for p in preds], got, atol=1e-5)


def test_features_of_another_config_are_refused(tiny_model, train_table):
    from emovae.features import extract

    from ..conftest import SR, voice_like

    other = extract(voice_like(150, 1.0), SR, FeatureConfig(voice=0, n_mfcc=20))
    with pytest.raises(ParameterError, match="another feature config"):
        tiny_model.predict_proba([other])


def test_labels_are_checked(X):
    with pytest.raises(DataError, match="at least 2 classes"):
        EmotionRecognizer().fit(X, ["angry"] * len(X))
    with pytest.raises(ParameterError, match="clips but"):
        EmotionRecognizer().fit(X, ["angry", "sad"])
    with pytest.raises(ParameterError, match="empty label"):
        as_names(["angry", " "])
    assert as_names(["angry", "bored", "frustrated"]).tolist() == ["angry", "bored", "frustrated"]  # any labels
    with pytest.raises(ParameterError, match="0..7"):
        as_names([0, 8])
    assert as_names([0, 4]).tolist() == ["neutral", "angry"]


def test_voice_heads_need_a_voice_student(X, train_table):
    with pytest.raises(ParameterError, match="voice student"):
        EmotionRecognizer(FeatureConfig(voice=0), classifier_config=ClassifierConfig(head_stats="voice")).fit(
            X, train_table.labels, groups=train_table.speakers)


def test_inner_split_is_actor_disjoint():
    groups = np.repeat(np.arange(1, 9), 5)
    tr, va = inner_split(groups, 2, seed=0)
    assert len(va) == 10 and not set(groups[tr]) & set(groups[va])
    assert sorted(np.r_[tr, va]) == list(range(40))
    assert set(groups[inner_split(groups, 2, seed=1)[1]]) != set(groups[va])  # the seed draws the actors
    assert len(inner_split(groups[:10], 2, 0)[1]) == 5  # at most a quarter of the actors (at least one)
    assert len(inner_split(np.ones(5), 2, 0)[1]) == 0


def test_save_load_gives_identical_probabilities(tiny_model, X, train_table, tmp_path):
    tiny_model.save(tmp_path / "m", metrics={"balanced_accuracy": 0.5})
    assert (tmp_path / "m" / "weights.pt").is_file()
    back = EmotionRecognizer.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict_proba(X), tiny_model.predict_proba(X))
    np.testing.assert_array_equal(back.predict_proba(X, train_table.speakers),
                                  tiny_model.predict_proba(X, train_table.speakers))
    assert back.metrics_ == {"balanced_accuracy": 0.5} and back.configs() == tiny_model.configs()
    assert back.novelty_ == tiny_model.novelty_ and list(back.classes_) == list(tiny_model.classes_)
    np.testing.assert_array_equal(copy.deepcopy(back).predict_proba(X), back.predict_proba(X))


def test_a_folder_without_weights_is_refused(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    (tmp_path / "m" / ONNX_FILE).unlink()
    with pytest.raises(ModelFormatError, match="no model.onnx"):
        EmotionRecognizer.load(tmp_path / "m")


def edited_copy(src, dst, edit):
    shutil.copytree(src, dst)
    meta = json.loads((dst / CONFIG_FILE).read_text())
    edit(meta)
    (dst / CONFIG_FILE).write_text(json.dumps(meta))
    return dst


def test_model_json_from_before_the_voice_student_loads_without_one(tiny_model, tiny_model_dir, X, tmp_path):
    def edit(meta):
        del meta["feature_config"]["voice"]
        del meta["classifier_config"]["head_stats"]
        del meta["classifier_config"]["voice_epochs"]

    back = EmotionRecognizer.load(edited_copy(tiny_model_dir, tmp_path / "old", edit))
    assert back.feature_config.voice == 0 and back.classifier_config.head_stats == "all"
    np.testing.assert_array_equal(back.predict_proba(X), tiny_model.predict_proba(X))


def test_retired_cnn_mlp_keys_load_when_off_and_refuse_when_on(tiny_model, tiny_model_dir, X, tmp_path):
    from emovae.runtime import Recognizer

    off = {"cnn_channels": 0, "mel_cnn": False, "cnn_epochs": 30, "cnn_weight": 0.5, "stats_mlp": 0,
           "adapted_mlp": 0}
    d = edited_copy(tiny_model_dir, tmp_path / "off", lambda m: m["classifier_config"].update(off))
    np.testing.assert_array_equal(EmotionRecognizer.load(d).predict_proba(X), tiny_model.predict_proba(X))
    assert Recognizer.load(d).classes == tuple(tiny_model.classes_)
    d = edited_copy(tiny_model_dir, tmp_path / "on", lambda m: m["classifier_config"].update(off, stats_mlp=32))
    for load in (EmotionRecognizer.load, Recognizer.load):
        with pytest.raises(ModelFormatError, match="retired CNN/MLP recipe"):
            load(d)


@pytest.mark.skipif(not (PRETRAINED_DIR / CONFIG_FILE).exists(), reason="no shipped model in this checkout")
def test_default_configs_train_the_shipped_recipe():
    """ClassifierConfig(), FeatureConfig() and VAEConfig() are the configuration the shipped model was trained with
    (its head_stats "voice" is what the default "auto" resolves to with a voice student), but for the one option
    its training command names (--voice-copies-per-epoch 1, docs/model-card.md)."""
    meta = json.loads((PRETRAINED_DIR / CONFIG_FILE).read_text())
    assert from_dict(FeatureConfig, meta["feature_config"]) == FeatureConfig()
    assert from_dict(VAEConfig, meta["vae_config"]) == VAEConfig()
    shipped = from_dict(ClassifierConfig, {k: v for k, v in meta["classifier_config"].items()
                                           if k in {f.name for f in dataclasses.fields(ClassifierConfig)}})
    assert shipped == dataclasses.replace(ClassifierConfig(), head_stats=shipped.head_stats, voice_copies_per_epoch=1)
    assert "--voice-copies-per-epoch 1" in meta["training_data"]["command"]
    assert n_head_stats(1000, shipped, True) == n_head_stats(1000, ClassifierConfig(), FeatureConfig().voice > 0)


def test_fit_temperature_recovers_the_temperature_of_the_labels():
    from emovae.train.estimator import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    for t_true in (0.5, 2.0):  # labels drawn from softmax(logits / t_true): the fit must find t_true
        p = np.exp(logits / t_true)
        p /= p.sum(1, keepdims=True)
        y = np.array([rng.choice(5, p=row) for row in p])
        assert fit_temperature(logits, y) == pytest.approx(t_true, rel=0.1)


def test_heads_are_calibrated_on_the_inner_validation_speakers(tiny_model, tiny_model_dir):
    import json

    cal = tiny_model.calibration_
    assert cal["fitted_on"].startswith("inner validation speakers")
    assert 0.25 <= cal["temperature"] <= 20 and 0.25 <= cal["temperature_adapted"] <= 20
    assert json.loads((tiny_model_dir / "model.json").read_text())["calibration"] == cal


def test_no_temperature_from_a_validation_set_it_gets_all_right():
    from emovae.train.estimator import fit_temperature

    logits = np.array([[3.0, 0.0], [0.0, 2.0], [4.0, 1.0]])
    assert fit_temperature(logits, np.array([0, 1, 0])) == 1.0
    assert fit_temperature(logits, np.array([0, 1, 1])) > 1.0  # one confident mistake: soften


def test_balanced_weights_weigh_every_corpus_and_every_class_within_it_alike():
    from emovae.train.estimator import balanced_weights

    y = np.array(["a"] * 6 + ["b"] * 2 + ["a"] * 10 + ["b"] * 10 + ["c"] * 20)
    corpora = np.array(["x"] * 8 + ["z"] * 40)
    w = balanced_weights(y, corpora)
    assert w.mean() == pytest.approx(1.0)
    assert w[corpora == "x"].sum() == pytest.approx(w[corpora == "z"].sum())  # 8 clips weigh as much as 40
    for c in ("x", "z"):
        sums = [w[(corpora == c) & (y == k)].sum() for k in np.unique(y[corpora == c])]
        assert np.allclose(sums, sums[0])
    # one corpus: scikit-learn's class_weight="balanced"
    from sklearn.utils.class_weight import compute_sample_weight

    one = np.array(["x"] * len(y))
    np.testing.assert_allclose(balanced_weights(y, one), compute_sample_weight("balanced", y))


def test_uncertain_threshold_is_the_lowest_that_reaches_the_accuracy():
    from emovae.train.estimator import uncertain_threshold

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 20000)
    hit = rng.uniform(size=conf.size) < conf  # calibrated: right with probability = confidence
    got = uncertain_threshold(conf, hit, 0.7)
    t = got["uncertain_below"]
    assert hit[conf >= t].mean() >= 0.7 and hit[conf >= t - 0.01].mean() < 0.7
    assert 0.35 < t < 0.5  # accuracy of U(t, 1) clips is (1 + t) / 2 -> t = 0.4
    assert got["risk_coverage"][0][:2] == [0.0, 1.0]
    never = uncertain_threshold(np.full(100, 0.3), np.zeros(100, bool), 0.5)  # never right: the top kept grid point
    assert never["uncertain_below"] == 0.3


def test_several_corpora_choose_and_calibrate_on_left_out_corpora(X, train_table):
    """With two corpora in the training data, C, the temperatures and the uncertain threshold come from heads that
    never saw the corpus they score."""
    from emovae.train.estimator import EmotionRecognizer

    spk = train_table.speakers
    corpora = np.where(np.isin(spk, np.unique(spk)[:2]), "one", "two")
    model = EmotionRecognizer(*tiny_configs_of(train_table)).fit(X, train_table.labels, groups=spk, corpora=corpora)
    cal = model.calibration_
    assert cal["fitted_on"].startswith("left-out corpora (one, two")
    assert model.c_ in model.configs()[2].c_grid and set(model.selection_scores_) == {
        str(c) for c in model.configs()[2].c_grid}
    assert 0.25 <= cal["temperature"] <= 20 and 0 <= cal["uncertain_below"] < 1
    # the synthetic emotions carry across speakers: heads that never saw a corpus still name its clips (a scoring
    # head's columns put in the wrong class order scored about chance here)
    assert max(model.selection_scores_.values()) > 0.6, model.selection_scores_
    curve = np.array(cal["risk_coverage"])  # answering fewer, surer clips is right more often
    assert curve[0, 1] == 1.0 and curve[-1, 2] >= curve[0, 2]
    # fit_heads on the fitted representation gives the same heads' choices
    again = copy.deepcopy(model).fit_heads(X, train_table.labels, groups=spk, corpora=corpora)
    assert again.c_ == model.c_ and again.calibration_["temperature"] == pytest.approx(cal["temperature"], rel=0.05)
    np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X), atol=0.02)
    with pytest.raises(ParameterError, match="keeps the model's classes"):
        two = np.flatnonzero(np.isin(train_table.labels, model.classes_[:2]))  # two of its four classes
        copy.deepcopy(model).fit_heads([X[i] for i in two], train_table.labels[two], groups=spk[two],
                                       corpora=corpora[two])
    with pytest.raises(ParameterError, match="corpus names"):
        EmotionRecognizer(*tiny_configs_of(train_table)).fit(X, train_table.labels, groups=spk, corpora=["one"])


def tiny_configs_of(table):
    """Tiny configs (no voice student, a few epochs) for fits inside a test."""
    return (FeatureConfig(voice=0), VAEConfig(epochs=2, warmup_epochs=1), ClassifierConfig(c_grid=(0.01, 0.1)),
            TrainConfig(threads=1, speed_perturb=()))


def test_arousal_and_valence_heads_carry_to_unseen_speakers(tiny_model, tiny_model_dir, new_table):
    """The CLI's model has arousal/valence heads fitted on the labels' coordinates: on speakers it never heard,
    angry clips come out more activated than neutral ones and happy ones more pleasant than angry ones."""
    meta = json.loads((tiny_model_dir / CONFIG_FILE).read_text())
    assert meta["dimensions"]["names"] == ["arousal", "valence"]
    assert set(meta["dimensions"]["alpha"]) <= set(tiny_model.configs()[2].dimension_alphas)
    out = tiny_model.forward(table_features(new_table))
    dims, y = out["dimensions"], new_table.labels
    assert dims.shape == (len(y), 2) and np.abs(dims).max() <= 1
    assert dims[y == "angry", 0].mean() > dims[y == "neutral", 0].mean() + 0.2
    assert dims[y == "happy", 1].mean() > dims[y == "angry", 1].mean() + 0.2


def test_fit_dimensions_adds_the_heads_and_leaves_the_emotions_alone(X, train_table):
    """A model fitted without coordinates has no arousal/valence heads; fit_dimensions adds them on its own
    representation, and the emotion probabilities stay bit-identical."""
    labels = np.array([f"e{v}" for v in train_table.labels], dtype=object)  # no coordinates for these names
    model = EmotionRecognizer(*tiny_configs_of(train_table)).fit(X, labels, groups=train_table.speakers)
    assert not model.net_.has_dimensions and "dimensions" not in model.forward(X[:2])
    before = model.predict_proba(X)
    targets = np.array([[1.0, 0.0] if v == "eangry" else [-0.5, 0.5] for v in labels])
    model.fit_dimensions(X, labels, groups=train_table.speakers, dimensions=targets)
    np.testing.assert_array_equal(model.predict_proba(X), before)
    dims = model.forward(X)["dimensions"]
    angry = labels == "eangry"
    assert dims[angry, 0].mean() > dims[~angry, 0].mean() + 0.5
    assert model.dimensions_["fitted_on"].endswith("every fifth training speaker")
    with pytest.raises(ParameterError, match="coordinates"):
        model.fit_dimensions(X, labels, groups=train_table.speakers)
    with pytest.raises(ParameterError, match=r"\[-1, 1\]"):
        model.fit_dimensions(X, labels, groups=train_table.speakers, dimensions=targets * 3)


def test_the_latent_of_many_clips_is_computed_in_batches_alike(refit, X):
    """``_latent`` encodes a corpus a batch at a time (bounded memory): the same latent as all at once."""
    from emovae.features import model_inputs

    seq, stats = model_inputs(X, refit.configs()[1].seq_len)
    whole = EmotionRecognizer._latent(refit.net_, seq, stats, batch=len(X))
    np.testing.assert_allclose(EmotionRecognizer._latent(refit.net_, seq, stats, batch=3), whole, atol=1e-5)
    assert whole.shape == (len(X), refit.configs()[1].latent_dim)
