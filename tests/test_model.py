import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig  # noqa: E402
from emovae.data import EMOTIONS  # noqa: E402
from emovae.errors import DataError, ModelFormatError, ParameterError  # noqa: E402
from emovae.evaluate import table_features  # noqa: E402
from emovae.extraction import extract_dataset  # noqa: E402
from emovae.model import EmotionRecognizer, inner_split, n_head_stats  # noqa: E402

from .conftest import write_ravdess_tree  # noqa: E402

FCFG = FeatureConfig(n_mfcc=13)
VCFG = VAEConfig(seq_len=16, channels=8, latent_dim=4, epochs=15, warmup_epochs=2, patience=5)


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("ravdess")
    write_ravdess_tree(root, actors=(1, 2, 3, 4, 5, 6), emotions=(1, 3, 5, 8), per_emotion=2)
    table, skipped = extract_dataset(root, FCFG, n_jobs=1, progress=False)
    assert not skipped
    return table


def make():
    return EmotionRecognizer(FCFG, VCFG, ClassifierConfig(), TrainConfig(seed=0, val_actors=1))


def test_fit_predict_contract(small_table):
    X = table_features(small_table)
    m = make().fit(X, small_table.labels, groups=small_table.actors)
    assert list(m.classes_) == ["neutral", "happy", "angry", "surprised"]  # EMOTIONS order
    p = m.predict_proba(X)
    assert p.shape == (len(X), 4) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert set(m.predict(X)) <= set(m.classes_)
    assert m.transform(X).shape == (len(X), 4)
    assert (m.predict(X) == np.array(EMOTIONS)[small_table.labels]).mean() > 0.6  # learnable synthetic data
    assert m.get_params()["vae_config"] == VCFG


def test_sklearn_clone_gives_unfitted_copy(small_table):
    from sklearn.base import clone

    m = make().fit(table_features(small_table), small_table.labels, groups=small_table.actors)
    c = clone(m)
    assert c.vae_config == m.vae_config and not hasattr(c, "net_")


def test_save_load_identical_probabilities(small_table, tmp_path):
    X = table_features(small_table)
    m = make().fit(X, small_table.labels, groups=small_table.actors)
    m.save(tmp_path / "model", metrics={"balanced_accuracy": 0.5})
    back = EmotionRecognizer.load(tmp_path / "model")
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    assert back.metrics_ == {"balanced_accuracy": 0.5} and back.feature_config == FCFG


def test_seeded_fit_is_reproducible(small_table):
    X = table_features(small_table)
    a = make().fit(X, small_table.labels, groups=small_table.actors).predict_proba(X)
    b = make().fit(X, small_table.labels, groups=small_table.actors).predict_proba(X)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_inner_split_is_actor_disjoint():
    groups = np.repeat(np.arange(1, 9), 5)
    tr, va = inner_split(groups, 2, seed=0)
    assert len(va) == 10 and not set(groups[tr]) & set(groups[va])
    assert len(inner_split(np.ones(5), 2, 0)[1]) == 0


def test_one_emotion_is_clear_error(small_table):
    X = table_features(small_table)
    with pytest.raises(DataError, match="at least 2 emotions"):
        make().fit(X, ["angry"] * len(X), groups=small_table.actors)


@pytest.mark.parametrize("setup,why", [
    (lambda d: None, "no such model folder"),
    (lambda d: d.mkdir(), "no model.json"),
    (lambda d: (d.mkdir(), (d / "model.json").write_text("{oops")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "model.json").write_text('{"format": "other"}')), "not an emovae model"),
])
def test_load_bad_model_dir(tmp_path, setup, why):
    d = tmp_path / "m"
    setup(d)
    with pytest.raises(ModelFormatError, match=why):
        EmotionRecognizer.load(d)


def test_load_missing_weights(small_table, tmp_path):
    m = make().fit(table_features(small_table), small_table.labels, groups=small_table.actors)
    m.save(tmp_path / "m")
    (tmp_path / "m" / "weights.pt").unlink()
    with pytest.raises(ModelFormatError, match="incomplete"):
        EmotionRecognizer.load(tmp_path / "m")


def test_speaker_normalize_uses_each_speakers_own_statistics():
    from emovae.features import speaker_normalize

    rng = np.random.default_rng(0)
    stats = np.vstack([rng.normal(5, 2, (10, 3)), rng.normal(-3, 0.5, (10, 3))])
    spk = np.repeat([1, 2], 10)
    z = speaker_normalize(stats, spk)
    for s in (1, 2):
        np.testing.assert_allclose(z[spk == s].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(z[spk == s].std(axis=0), 1, atol=1e-4)


def test_adapted_head_uses_speaker_statistics(small_table):
    X = table_features(small_table)
    m = make().fit(X, small_table.labels, groups=small_table.actors)
    single = m.predict_proba(X)
    adapted = m.predict_proba(X, groups=small_table.actors)
    assert adapted.shape == single.shape and np.allclose(adapted.sum(axis=1), 1, atol=1e-5)
    assert not np.allclose(adapted, single, atol=1e-3)  # another head on other inputs
    # the adapted output depends on the speaker moments, the single-clip one does not
    seq_out = m.forward(X)
    np.testing.assert_allclose(seq_out["probabilities"], single, atol=1e-6)


def test_load_from_onnx_weights_alone(small_table, tmp_path):
    """A folder with model.json + model.onnx and no weights.pt rebuilds the same torch model."""
    pytest.importorskip("onnx")
    from emovae.export import export_model_dir

    X = table_features(small_table)
    m = make().fit(X, small_table.labels, groups=small_table.actors)
    m.save(tmp_path / "m")
    export_model_dir(m, tmp_path / "m")
    (tmp_path / "m" / "weights.pt").unlink()
    back = EmotionRecognizer.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    np.testing.assert_array_equal(back.predict_proba(X, groups=small_table.actors),
                                  m.predict_proba(X, groups=small_table.actors))


def test_speed_perturbed_copies_join_the_classifier(small_table):
    X = table_features(small_table)
    small_table.augment((0.9, 1.1), n_jobs=1, progress=False)
    plain = make().fit(X, small_table.labels, groups=small_table.actors)
    aug = make().fit(X, small_table.labels, groups=small_table.actors, augmented=small_table.augmented)
    assert plain.n_augmented_ == 0 and aug.n_augmented_ == 2 * len(X)
    # the VAE and the scalers of the hand-made statistics see the originals only; the heads change (and the voice
    # student, trained on the copies too, gives other voice statistics)
    n_voice = sum(n.startswith("voice_") for n in plain.stat_names_)
    assert n_voice == 512
    np.testing.assert_array_equal(plain.net_.stats_mean.numpy()[:-n_voice], aug.net_.stats_mean.numpy()[:-n_voice])
    assert not np.allclose(plain.net_.stats_mean.numpy()[-n_voice:], aug.net_.stats_mean.numpy()[-n_voice:])
    assert not np.allclose(plain.predict_proba(X), aug.predict_proba(X), atol=1e-4)
    with pytest.raises(ParameterError, match="augmented copies"):
        make().fit(X, small_table.labels, groups=small_table.actors, augmented={0.9: small_table.augmented[0.9][:3]})


def test_probabilities_average_the_cnn_and_the_linear_head(small_table, tmp_path):
    import torch

    X = table_features(small_table)
    ccfg = ClassifierConfig(cnn_channels=16, mel_cnn=True)  # the previous recipe's members (off by default)
    m = EmotionRecognizer(FCFG, VCFG, ccfg, TrainConfig(seed=0, val_actors=1))
    m.fit(X, small_table.labels, groups=small_table.actors)
    assert m.net_.cnn is not None and m.net_.mel_cnn is not None
    for arch in ("frames", "mel"):
        assert 1 <= m.cnn_selection_[arch]["epoch"] <= ClassifierConfig().cnn_epochs
    p = m.predict_proba(X)
    with torch.no_grad():  # silence the CNNs: the output must move to the linear head's probabilities
        for layer in (m.net_.cnn.head[1], m.net_.mel_cnn.head[1]):
            layer.weight.zero_()
            layer.bias.zero_()
    q = m.predict_proba(X)
    assert not np.allclose(p, q, atol=1e-3)
    np.testing.assert_allclose(q.sum(axis=1), 1, atol=1e-5)
    assert np.all(q >= (2 / 3) / len(m.classes_) - 1e-6)  # two thirds of each row: the CNNs' uniform outputs
    assert np.all(q <= (2 / 3) / len(m.classes_) + 1 / 3 + 1e-6)  # the linear head holds the other third
    assert m.net_.cnn_weight == pytest.approx(2 / 3)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_mlp_copied_into_the_graph_matches_scikit_learn(n_classes):
    import torch
    from torch import nn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 10))
    names = np.array(EMOTIONS[:n_classes])
    y = names[(X[:, 0] > 0).astype(int) + (2 * (X[:, 1] > 0) if n_classes == 4 else 0)]
    m = EmotionRecognizer()
    m.classes_ = names[::-1].copy()  # an output order unlike scikit-learn's sorted classes_
    mlp = m._fit_mlp(X, y, 6, seed=0)
    seq = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, n_classes))
    m._set_mlp(seq, mlp)
    with torch.no_grad():
        p = torch.softmax(seq(torch.from_numpy(X).float()), dim=1).numpy()
    expected = mlp.predict_proba(X)[:, [list(mlp.classes_).index(c) for c in m.classes_]]
    np.testing.assert_allclose(p, expected, atol=1e-5)


def test_mlps_average_with_the_linear_heads_and_survive_export(small_table, tmp_path):
    import torch

    from emovae.export import export_model_dir
    from emovae.runtime import Recognizer

    X = table_features(small_table)
    ccfg = ClassifierConfig(cnn_channels=0, mel_cnn=False, stats_mlp=16, adapted_mlp=8)
    m = EmotionRecognizer(FCFG, VCFG, ccfg, TrainConfig(seed=0, val_actors=1))
    m.fit(X, small_table.labels, groups=small_table.actors)
    assert isinstance(m.net_.classifier_mlp[0], torch.nn.Linear) and m.net_.classifier_mlp[0].out_features == 16
    assert m.net_.classifier_adapted_mlp[0].out_features == 8
    groups = small_table.actors
    for name, mine, other in (("classifier_mlp", None, groups), ("classifier_adapted_mlp", groups, None)):
        silenced = copy.deepcopy(m)
        with torch.no_grad():  # a uniform MLP: its head's output must become the average of the linear head and 1 / C
            getattr(silenced.net_, name)[2].weight.zero_()
            getattr(silenced.net_, name)[2].bias.zero_()
        q = silenced.predict_proba(X, groups=mine)
        assert not np.allclose(m.predict_proba(X, groups=mine), q, atol=1e-3)
        assert np.all(q >= 0.5 / len(m.classes_) - 1e-6) and np.all(q <= 0.5 / len(m.classes_) + 0.5 + 1e-6)
        np.testing.assert_array_equal(silenced.predict_proba(X, groups=other), m.predict_proba(X, groups=other))
    m.save(tmp_path / "mlp")
    export_model_dir(m, tmp_path / "mlp")
    rec = Recognizer.load(tmp_path / "mlp", backend="onnx")  # the graph holds the MLP: same probabilities
    onnx_p = np.array([[r.probabilities[c] for c in m.classes_] for r in rec.predict_features(X)])
    np.testing.assert_allclose(onnx_p, m.predict_proba(X), atol=1e-4)
    (tmp_path / "mlp" / "weights.pt").unlink()  # the ONNX initializers alone rebuild it
    back = EmotionRecognizer.load(tmp_path / "mlp")
    np.testing.assert_allclose(back.predict_proba(X), m.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(back.predict_proba(X, groups=groups), m.predict_proba(X, groups=groups), atol=1e-6)


def test_model_json_from_before_the_voice_student_loads_without_one(small_table, tmp_path):
    """A model.json written before FeatureConfig.voice and ClassifierConfig.head_stats existed (whose defaults are
    now a student and its statistics) loads as the hand-made-statistics model it is."""
    import json

    X = table_features(small_table)
    ccfg = ClassifierConfig(head_stats="all")
    old = EmotionRecognizer(FeatureConfig(n_mfcc=13, voice=0), VCFG, ccfg, TrainConfig(seed=0, val_actors=1))
    old.fit(X, small_table.labels, groups=small_table.actors).save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["feature_config"]["voice"]  # as written before the voice student existed
    for key in ("head_stats", "voice_epochs"):
        del meta["classifier_config"][key]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    back = EmotionRecognizer.load(tmp_path / "old")
    assert back.feature_config.voice == 0 and back.net_.n_head == len(back.stat_names_)
    np.testing.assert_array_equal(back.predict_proba(X), old.predict_proba(X))


@pytest.mark.parametrize("ccfg, missing", [
    (ClassifierConfig(cnn_channels=0, mel_cnn=False, stats_mlp=0, adapted_mlp=0),
     ("cnn_channels", "mel_cnn", "stats_mlp", "adapted_mlp")),
    (ClassifierConfig(mel_cnn=False, cnn_weight=0.5, stats_mlp=0, adapted_mlp=0),
     ("mel_cnn", "stats_mlp", "adapted_mlp")),  # before the log-mel CNN
    (ClassifierConfig(stats_mlp=0, adapted_mlp=0), ("stats_mlp", "adapted_mlp")),  # before the statistics MLP
    (ClassifierConfig(adapted_mlp=0), ("adapted_mlp",)),  # before the adapted head's MLP
])
def test_model_json_without_cnn_loads_without_it(small_table, tmp_path, ccfg, missing):
    import json

    X = table_features(small_table)
    old = EmotionRecognizer(FCFG, VCFG, ccfg, TrainConfig(seed=0, val_actors=1))
    old.fit(X, small_table.labels, groups=small_table.actors).save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    for key in missing:  # as written before that network existed
        del meta["classifier_config"][key]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    back = EmotionRecognizer.load(tmp_path / "old")
    assert (back.net_.classifier_mlp is None) == (ccfg.stats_mlp == 0) and back.net_.classifier_adapted_mlp is None
    assert (back.net_.mel_cnn is None) == (not ccfg.mel_cnn)
    assert (back.net_.cnn is None) == (ccfg.cnn_channels == 0)
    np.testing.assert_array_equal(back.predict_proba(X), old.predict_proba(X))


def test_default_configs_train_the_shipped_recipe():
    """ClassifierConfig(), FeatureConfig() and VAEConfig() are the configuration the shipped model was trained with
    (its head_stats "voice" is what the default "auto" resolves to with a voice student)."""
    import dataclasses
    import json

    from emovae.config import from_dict
    from emovae.runtime import PRETRAINED_DIR

    meta = json.loads((PRETRAINED_DIR / "model.json").read_text())
    assert from_dict(FeatureConfig, meta["feature_config"]) == FeatureConfig()
    assert from_dict(VAEConfig, meta["vae_config"]) == VAEConfig()
    shipped = from_dict(ClassifierConfig, meta["classifier_config"])
    assert shipped == dataclasses.replace(ClassifierConfig(), head_stats=shipped.head_stats)
    assert n_head_stats(1000, shipped, True) == n_head_stats(1000, ClassifierConfig(), FeatureConfig().voice > 0)


def test_heads_read_the_voice_statistics_when_asked_or_when_auto_finds_a_student():
    assert n_head_stats(1000, ClassifierConfig(head_stats="all"), True) == 1000
    assert n_head_stats(1000, ClassifierConfig(head_stats="voice"), True) == 512
    assert n_head_stats(1000, ClassifierConfig(head_stats="auto"), True) == 512
    assert n_head_stats(1000, ClassifierConfig(head_stats="auto"), False) == 1000
    with pytest.raises(ParameterError, match="head_stats"):
        ClassifierConfig(head_stats="some")


@pytest.mark.parametrize("head_stats", ["all", "auto"])
def test_a_voice_student_joins_its_statistics_and_travels_with_the_model(tmp_path, head_stats):
    """--voice: the model trains a student of the GE2E teacher on its clips, appends its 512 statistics to
    the utterance statistics, saves it as voice.onnx, and both backends give the same probabilities; by default
    (head_stats "auto") the heads read those 512 (and the latent) only. A deep copy predicts the same."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from emovae.cli import main
    from emovae.runtime import Recognizer
    from emovae.voice import voice_names

    write_ravdess_tree(tmp_path / "data", actors=(1, 2, 3, 4), emotions=(1, 3, 5, 8))
    rc = main(["-q", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "model"), "--no-cache",
               "--jobs", "1", "--n-mfcc", "13", "--latent-dim", "4", "--epochs", "3", "--voice", "8",
               "--voice-epochs", "2", "--speed-perturb", "--head-stats", head_stats])
    assert rc == 0
    model_dir = tmp_path / "model"
    assert (model_dir / "voice.onnx").is_file()
    net = EmotionRecognizer.load(model_dir).net_
    n_stats = len(EmotionRecognizer.load(model_dir).stat_names_)
    assert net.classifier.in_features == (n_stats if head_stats == "all" else 512) + 4  # + the latent
    assert net.cnn is None and net.mel_cnn is None and net.classifier_mlp is None  # the default recipe's heads
    onnx_rec = Recognizer.load(model_dir, backend="onnx")
    torch_rec = Recognizer.load(model_dir, backend="torch")
    clip = sorted((tmp_path / "data").rglob("*.wav"))[0]
    f = onnx_rec.features(*_read(clip))
    assert f.stat_names[-512:] == voice_names() and np.all(np.isfinite(f.stats[-512:]))
    assert np.std(f.stats[-512:]) > 0  # the student's statistics, not a constant filler
    p_onnx = onnx_rec.predict_file(clip).probabilities
    p_torch = torch_rec.predict_file(clip).probabilities
    np.testing.assert_allclose([p_onnx[k] for k in p_torch], list(p_torch.values()), atol=1e-4)
    model = EmotionRecognizer.load(model_dir)
    feats = [torch_rec.features(*_read(c)) for c in sorted((tmp_path / "data").rglob("*.wav"))[:4]]
    p = model.predict_proba(feats)  # builds the student's onnxruntime session, which a copy must leave out
    np.testing.assert_array_equal(copy.deepcopy(model).predict_proba(feats), p)
    # the folder without its student is refused with a clear message, not a shape error deep in onnxruntime
    (model_dir / "voice.onnx").unlink()
    with pytest.raises(Exception, match="voice"):
        Recognizer.load(model_dir, backend="onnx")


def _read(path):
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32")
    return y, sr


def test_voice_heads_need_a_voice_student(small_table):
    with pytest.raises(ParameterError, match="voice student"):
        EmotionRecognizer(FeatureConfig(voice=0), classifier_config=ClassifierConfig(head_stats="voice")).fit(
            table_features(small_table), small_table.labels, groups=small_table.actors)
