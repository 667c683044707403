"""The disk-backed ragged store (emovae.ragged): round trip, slices, cleanup, and training through it."""

import os

import numpy as np
import pytest

from emovae.ragged import RaggedStore


def arrays(rng, n=7, width=5, dtype=np.float16):
    return [rng.standard_normal((int(rng.integers(0, 30)), width)).astype(dtype) for _ in range(n)]


def test_round_trip_gives_the_arrays_back(tmp_path):
    rng = np.random.default_rng(0)
    src = arrays(rng)
    with RaggedStore.write(iter(src), tmp_path) as store:  # any iterable: a generator is read once
        assert len(store) == len(src) and store.width == 5 and store.dtype == np.float16
        np.testing.assert_array_equal(store.lengths, [len(a) for a in src])
        for i, a in enumerate(src):
            got = store[i]
            assert got.dtype == a.dtype and got.shape == a.shape and got.flags.writeable
            np.testing.assert_array_equal(got, a)
        np.testing.assert_array_equal(store[-1], src[-1])
        for a, b in zip(store[2:5], src[2:5]):
            np.testing.assert_array_equal(a, b)
        assert [len(a) for a in store] == [len(a) for a in src]  # iterates like a list
        with pytest.raises(IndexError):
            store[len(src)]
        path = store.path
        assert os.path.getsize(path) == sum(a.nbytes for a in src)
    assert not os.path.exists(path)  # removed on leaving the block


def test_dtype_conversion_and_bad_widths(tmp_path):
    rng = np.random.default_rng(1)
    src = arrays(rng, dtype=np.float64)
    store = RaggedStore.write(src, tmp_path, dtype=np.float32)
    np.testing.assert_array_equal(store[3], src[3].astype(np.float32))
    store.close()
    store.close()  # idempotent
    with pytest.raises(ValueError):
        RaggedStore.write([np.zeros((2, 3)), np.zeros((2, 4))], tmp_path)
    assert os.listdir(tmp_path) == []  # nothing left behind


def test_the_student_trains_the_same_from_a_store_as_from_lists(tmp_path):
    """train_student and the teacher's targets give identical results from lists and from disk-backed stores."""
    pytest.importorskip("torch")
    from emovae.train.student import iter_teacher_frames, teacher_frames, train_student

    rng = np.random.default_rng(3)
    layers = [{"weight_ih": rng.standard_normal((24, 40)) * 0.1, "weight_hh": rng.standard_normal((24, 6)) * 0.1,
               "bias_ih": np.zeros(24), "bias_hh": np.zeros(24)}]
    mels = [(rng.random((int(rng.integers(10, 30)), 40)) * 10).astype(np.float16) for _ in range(20)]
    targets = teacher_frames(mels, layers, batch=8)
    with RaggedStore.write(mels, tmp_path) as m, RaggedStore.write(iter_teacher_frames(m, layers, 8), tmp_path) as t:
        for a, b in zip(t, targets):
            np.testing.assert_array_equal(a, b)
        a = train_student(m, t, hidden=4, epochs=2, batch=8)
    b = train_student(mels, targets, hidden=4, epochs=2, batch=8)
    assert a["loss"] == b["loss"]
    for la, lb in zip(a["layers"][0].values(), b["layers"][0].values()):
        np.testing.assert_array_equal(la, lb)


def test_fit_trains_the_student_it_trained_with_everything_in_memory(synthetic):
    """EmotionRecognizer.fit keeps the mel bands and the teacher's targets on disk; its voice student is the one
    the in-memory lists gave (the code before the store), byte for byte, so the model is unchanged."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
    from emovae.evaluate import table_features
    from emovae.extraction import extract_dataset
    from emovae.train.estimator import EmotionRecognizer
    from emovae.train.student import build_voice_onnx, load_teacher, teacher_frames, train_student

    fcfg = FeatureConfig(voice=8, n_mfcc=13)
    table, _ = extract_dataset(synthetic["train"], fcfg, cache_dir=synthetic["cache"], n_jobs=1, progress=False)
    table.augment((0.9,), cache_dir=synthetic["cache"], n_jobs=1, progress=False)
    model = EmotionRecognizer(fcfg, VAEConfig(latent_dim=4, epochs=2), ClassifierConfig(voice_epochs=2),
                              TrainConfig(threads=1)).fit(table_features(table), table.labels, groups=table.speakers,
                                                          augmented=table.augmented)
    mels = [m.astype(np.float32) for m in table.mels + [c.mel for c in table.augmented[0.9]]]
    student = train_student(mels, teacher_frames(mels, load_teacher()), hidden=8, epochs=2, seed=0)
    assert model.voice_loss_ == [round(v, 5) for v in student["loss"]]
    assert model.voice_onnx_ == build_voice_onnx(student["layers"], bits=16, log_scaler=student["log_scaler"],
                                                 projection=student["projection"]).SerializeToString()
    # voice_copies_per_epoch: the student's rows name their clip (-1 for a clip itself, its index for a copy)
    table.augment((0.9, 1.1), cache_dir=synthetic["cache"], n_jobs=1, progress=False)
    sampled = EmotionRecognizer(fcfg, VAEConfig(latent_dim=4, epochs=2),
                                ClassifierConfig(voice_epochs=2, voice_copies_per_epoch=1), TrainConfig(threads=1)).fit(
        table_features(table), table.labels, groups=table.speakers, augmented=table.augmented)
    mels = [m.astype(np.float32) for m in table.mels + [c.mel for f in (0.9, 1.1) for c in table.augmented[f]]]
    n = len(table.mels)
    source, targets = np.r_[np.full(n, -1), np.arange(n), np.arange(n)], teacher_frames(mels, load_teacher())
    student = train_student(mels, targets, hidden=8, epochs=2, seed=0, source=source, copies_per_epoch=1)
    every_row = train_student(mels, targets, hidden=8, epochs=2, seed=0)
    assert sampled.voice_loss_ == [round(v, 5) for v in student["loss"]] != [round(v, 5) for v in every_row["loss"]]
