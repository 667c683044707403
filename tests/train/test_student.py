"""The voice student: its ONNX graph against a plain LSTM, quantisation, learning a teacher, and a model trained
with a student (its statistics joined, voice.onnx travelling with the model)."""

import copy

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from emovae.modelfile import onnx_session  # noqa: E402
from emovae.train.student import (TEACHER_FILE, build_voice_onnx, epoch_rows, load_teacher,  # noqa: E402
                                  quantize_blocks, teacher_frames, train_student)

from ..conftest import read, write_ravdess_tree  # noqa: E402


def lstm_reference(x: np.ndarray, layers: list[dict]) -> np.ndarray:
    """A plain numpy LSTM stack (torch's gate order i, f, g, o): (T, in) -> (T, H) of the last layer."""
    def sig(a):
        return 1 / (1 + np.exp(-a))

    for p in layers:
        H = p["weight_hh"].shape[1]
        h, c, out = np.zeros(H), np.zeros(H), []
        for xt in x:
            g = p["weight_ih"] @ xt + p["bias_ih"] + p["weight_hh"] @ h + p["bias_hh"]
            i, f, gg, o = sig(g[:H]), sig(g[H:2 * H]), np.tanh(g[2 * H:3 * H]), sig(g[3 * H:])
            c = f * c + i * gg
            h = o * np.tanh(c)
            out.append(h)
        x = np.array(out)
    return x


def random_layers(rng, sizes=((40, 8), (8, 8))) -> list[dict]:
    # weights on a float16 grid: the graph stores biases at half precision
    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float16).astype(np.float32)

    return [{"weight_ih": w(4 * h, i), "weight_hh": w(4 * h, h), "bias_ih": w(4 * h), "bias_hh": w(4 * h)}
            for i, h in sizes]


def run(model, mel):
    return onnx_session(model.SerializeToString()).run(None, {"mel": mel})[0]


def test_float_graph_matches_a_numpy_lstm_and_summarises_by_mean_and_std():
    rng = np.random.default_rng(0)
    layers = random_layers(rng)
    mel = rng.random((2, 30, 40)).astype(np.float32)
    out = run(build_voice_onnx(layers, bits=None), mel)
    assert out.shape == (2, 16)
    for b in range(2):
        h = lstm_reference(mel[b].astype(np.float64), layers)
        np.testing.assert_allclose(out[b], np.concatenate([h.mean(0), h.std(0)]), atol=1e-5)
    frames = run(build_voice_onnx(layers, bits=None, frames=True), mel)  # the teacher's targets
    assert frames.shape == (30, 2, 8)
    np.testing.assert_allclose(frames[:, 0], lstm_reference(mel[0].astype(np.float64), layers), atol=1e-5)


def test_quantised_graphs_stay_close_and_eight_bits_closer_than_four():
    rng = np.random.default_rng(1)
    layers = random_layers(rng, ((40, 64), (64, 64)))
    mel = rng.random((1, 40, 40)).astype(np.float32)
    ref = run(build_voice_onnx(layers, bits=None), mel)
    err8 = np.abs(run(build_voice_onnx(layers, bits=8), mel) - ref).max()
    err4 = np.abs(run(build_voice_onnx(layers, bits=4), mel) - ref).max()
    err16 = np.abs(run(build_voice_onnx(layers, bits=16), mel) - ref).max()
    assert 0 <= err16 < err8 < err4 < 0.5
    assert err8 < min(0.05, err4 / 4)


def test_quantize_blocks_bounds_the_error_by_half_a_step():
    w = np.random.default_rng(2).standard_normal((6, 150))
    q, scale = quantize_blocks(w, bits=4, block=64)
    assert q.min() >= -8 and q.max() <= 7 and scale.shape == (6, 3)
    steps = np.repeat(scale.astype(np.float64), 64, axis=1)[:, :150]
    assert np.all(np.abs(q * steps - w) <= steps / 2 + 1e-3 * np.abs(w).max())
    q8, scale8 = quantize_blocks(w[:, :10], bits=8, block=64)  # fewer columns than a block: one block per row
    assert scale8.shape == (6, 1) and np.abs(q8).max() == 127


def test_a_student_learns_a_teacher_and_its_graph_computes_the_same_statistics():
    rng = np.random.default_rng(3)
    teacher = random_layers(rng, ((40, 6),))
    mels = [(rng.random((int(rng.integers(20, 40)), 40)) * 10 ** rng.uniform(-1, 0.5, 40)).astype(np.float32)
            for _ in range(24)]
    targets = teacher_frames(mels, teacher)
    assert [t.shape for t in targets] == [(len(m), 6) for m in mels]
    np.testing.assert_allclose(targets[0], lstm_reference(mels[0].astype(np.float64), teacher), atol=2e-3)  # float16
    student = train_student(mels, targets, hidden=16, epochs=30, batch=8, lr=1e-2)
    assert len(student["loss"]) == 30
    assert student["loss"][-1] < 0.5 * student["loss"][0]  # it learns (z-scored targets: 1.0 = the mean)
    # the exported graph = log, standardise, the student's LSTM, its linear map, mean and std over frames
    out = run(build_voice_onnx(student["layers"], bits=None, log_scaler=student["log_scaler"],
                               projection=student["projection"]), mels[1][None])
    m, s = student["log_scaler"]
    x = (10 * np.log10(mels[1].astype(np.float64) + 1e-10) - m) / s
    h = lstm_reference(x, student["layers"]) @ student["projection"][0].T + student["projection"][1]
    np.testing.assert_allclose(out[0], np.concatenate([h.mean(0), h.std(0)]), atol=1e-4)
    half = run(build_voice_onnx(student["layers"], bits=16, log_scaler=student["log_scaler"],
                                projection=student["projection"]), mels[1][None])
    assert np.abs(half - out).max() < 0.05


def test_teacher_weights_load_as_two_layers_of_256():
    if not TEACHER_FILE.is_file():
        pytest.skip("teacher weights not built")
    layers = load_teacher()
    assert len(layers) == 2 and layers[0]["weight_ih"].shape == (1024, 40)
    assert layers[1]["weight_hh"].shape == (1024, 256)
    with pytest.raises(Exception, match="missing"):
        load_teacher(TEACHER_FILE.parent / "none.npz")


@pytest.fixture(scope="module")
def voice_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("voice")
    return write_ravdess_tree(root, actors=(1, 2, 3, 4), emotions=(1, 5), seconds=0.6)


@pytest.fixture(scope="module")
def voice_model(voice_clips, tmp_path_factory):
    """A model with a voice student of 8 units trained for 2 epochs on 8 clips (saved with weights.pt)."""
    if not TEACHER_FILE.is_file():
        pytest.skip("teacher weights not built")
    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
    from emovae.data import parse_name
    from emovae.features import extract
    from emovae.train.estimator import EmotionRecognizer

    fcfg = FeatureConfig(voice=8, n_mfcc=13)
    X = [extract(*read(p), fcfg) for p in voice_clips]
    model = EmotionRecognizer(fcfg, VAEConfig(seq_len=8, channels=4, latent_dim=2, epochs=2),
                              ClassifierConfig(voice_epochs=2), TrainConfig(threads=1, speed_perturb=()))
    model.fit(X, [parse_name(p).emotion for p in voice_clips], groups=[parse_name(p).actor for p in voice_clips])
    out = tmp_path_factory.mktemp("voice_model") / "m"
    model.save(out)
    return model, X, out


def test_a_voice_student_joins_its_statistics_and_travels_with_the_model(voice_model, voice_clips):
    from emovae.modelfile import read_model_json
    from emovae.runtime import Recognizer
    from emovae.train.estimator import EmotionRecognizer
    from emovae.voice import voice_names

    model, X, out = voice_model
    assert model.stat_names_[-512:] == voice_names() and len(model.voice_loss_) == 2
    assert model.net_.classifier.in_features == 512 + 2  # "auto" with a student: its 512 statistics + the latent
    meta = read_model_json(out)
    assert meta["voice"]["file"] == "voice.onnx" and meta["voice"]["units"] == 8 and (out / "voice.onnx").is_file()
    p = model.predict_proba(X)  # the estimator appends the voice statistics itself
    rec = Recognizer.load(out, backend="torch")
    f = rec.features(*read(voice_clips[0]))
    assert f.stat_names[-512:] == voice_names() and np.std(f.stats[-512:]) > 0  # the student's, not a filler
    np.testing.assert_allclose(list(rec.predict_file(voice_clips[0]).probabilities.values()), p[0], atol=1e-5)
    np.testing.assert_array_equal(copy.deepcopy(model).predict_proba(X), p)  # a copy rebuilds the student's session
    np.testing.assert_array_equal(EmotionRecognizer.load(out).predict_proba(X), p)


def test_a_folder_without_its_voice_student_is_refused_clearly(voice_model, tmp_path):
    import shutil

    from emovae.errors import ModelFormatError
    from emovae.runtime import Recognizer

    shutil.copytree(voice_model[2], tmp_path / "m")
    (tmp_path / "m" / "voice.onnx").unlink()
    with pytest.raises(ModelFormatError, match="needs its voice student voice.onnx"):
        Recognizer.load(tmp_path / "m", backend="torch")


def test_a_voice_student_needs_the_mel_bands(voice_clips):
    from emovae.config import FeatureConfig
    from emovae.errors import ParameterError
    from emovae.features import extract
    from emovae.train.estimator import EmotionRecognizer

    X = [extract(*read(p), FeatureConfig(voice=0, n_mfcc=13)) for p in voice_clips[:4]]
    with pytest.raises(ParameterError, match="no mel bands"):
        EmotionRecognizer(FeatureConfig(voice=8, n_mfcc=13)).fit(X, ["neutral", "angry"] * 2, groups=[1, 1, 2, 2])


@pytest.mark.slow
@pytest.mark.parametrize("head_stats", ["all", "auto"])
def test_cli_trains_a_voice_student_and_both_backends_agree(tmp_path, head_stats):
    """--voice: the CLI trains a student, exports both graphs, and onnxruntime and torch give the same
    probabilities; head_stats "all" reads every statistic, "auto" only the student's 512."""
    from emovae.cli import main
    from emovae.runtime import Recognizer
    from emovae.train.estimator import EmotionRecognizer

    write_ravdess_tree(tmp_path / "data", actors=(1, 2, 3, 4), emotions=(1, 3, 5, 8))
    assert main(["-q", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "model"), "--no-cache",
                 "--jobs", "1", "--threads", "1", "--n-mfcc", "13", "--latent-dim", "4", "--epochs", "3",
                 "--voice", "8", "--voice-epochs", "2", "--speed-perturb", "--head-stats", head_stats]) == 0
    model = EmotionRecognizer.load(tmp_path / "model")
    assert model.net_.classifier.in_features == (len(model.stat_names_) if head_stats == "all" else 512) + 4
    clip = sorted((tmp_path / "data").rglob("*.wav"))[0]
    p_onnx = Recognizer.load(tmp_path / "model", backend="onnx").predict_file(clip).probabilities
    p_torch = Recognizer.load(tmp_path / "model", backend="torch").predict_file(clip).probabilities
    np.testing.assert_allclose([p_onnx[k] for k in p_torch], list(p_torch.values()), atol=1e-4)


@pytest.mark.parametrize("clips, epochs", [(8, 1), (40, 2), (16, 2)])
def test_short_schedules_train(clips, epochs):
    """Smoke-sized runs (1, 10 and 4 optimiser steps) train without the one-cycle schedule dividing by zero."""
    pytest.importorskip("torch")
    from emovae.train.student import train_student

    rng = np.random.default_rng(0)
    mels = [rng.random((30, 40)).astype(np.float32) for _ in range(clips)]
    targets = [rng.standard_normal((30, 8)).astype(np.float16) for _ in mels]
    out = train_student(mels, targets, hidden=4, epochs=epochs, batch=8)
    assert len(out["loss"]) == epochs and all(np.isfinite(out["loss"]))


def test_epoch_rows_reads_every_clip_and_k_of_its_copies_drawn_afresh():
    rng = np.random.default_rng(0)
    source = np.r_[np.full(5, -1), np.tile(np.arange(5), 3), 0]  # 5 clips, 3 copies each, clip 0 a fourth
    draws = [epoch_rows(source, 1, rng) for _ in range(30)]
    for rows in draws:
        assert set(range(5)) <= set(rows.tolist())  # every clip itself
        assert np.bincount(source[rows][source[rows] >= 0], minlength=5).tolist() == [1] * 5
    assert len({tuple(r) for r in draws}) > 1  # drawn afresh each epoch
    assert {int(r[source[r] == 0][0]) for r in draws} == {5, 10, 15, 20}  # clip 0's pick: any of its 4 copies
    assert np.bincount(source[epoch_rows(source, 2, rng)] + 1).tolist() == [5, 2, 2, 2, 2, 2]
    np.testing.assert_array_equal(epoch_rows(source, 9, rng), np.arange(len(source)))  # k above the copies: all
    np.testing.assert_array_equal(epoch_rows(np.full(3, -1), 1, rng), [0, 1, 2])  # no copies at all


def test_copies_per_epoch_reads_fewer_rows_and_still_learns():
    """With source and copies_per_epoch = 1 an epoch reads each clip and one of its three copies: half the rows."""
    class Reads(list):
        reads = 0

        def __getitem__(self, i):
            Reads.reads += 1
            return super().__getitem__(i)

    rng = np.random.default_rng(4)
    teacher = random_layers(rng, ((40, 6),))
    clips = [(rng.random((int(rng.integers(20, 40)), 40)) * 10 ** rng.uniform(-1, 0.5, 40)).astype(np.float32)
             for _ in range(8)]
    mels = clips + [(c * rng.uniform(0.8, 1.25)).astype(np.float32) for _ in range(3) for c in clips]
    source = np.r_[np.full(8, -1), np.tile(np.arange(8), 3)]
    targets = teacher_frames(mels, teacher)
    for k, per_epoch in ((0, 32), (1, 16)):
        Reads.reads = 0
        out = train_student(Reads(mels), targets, hidden=16, epochs=30, batch=8, lr=1e-2, source=source,
                            copies_per_epoch=k)
        assert Reads.reads == 1 + 30 * per_epoch  # mels[0] for the input size, then the rows of each epoch
        assert out["loss"][-1] < 0.5 * out["loss"][0]
