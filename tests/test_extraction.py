import os

import numpy as np
import pytest

from emovae.config import FeatureConfig
from emovae.errors import DataError
from emovae.extraction import FeatureCache, FeatureTable, extract_dataset, extract_files

from .conftest import write_ravdess_tree

CFG = FeatureConfig(n_mfcc=13)


def test_extract_dataset_and_roundtrip(tmp_path):
    write_ravdess_tree(tmp_path / "data", actors=(1, 2), emotions=(1, 5))
    (tmp_path / "data" / "Actor_01" / "badname.wav").write_bytes(b"x")
    (tmp_path / "data" / "Actor_02" / "03-01-03-01-01-01-02.wav").write_text("not audio")
    table, skipped = extract_dataset(tmp_path / "data", CFG, n_jobs=1, progress=False)
    assert len(table) == 4 and sorted(set(table.speakers)) == ["ravdess/01", "ravdess/02"]
    assert table.classes == ("neutral", "angry") and table.counts() == {"neutral": 2, "angry": 2}
    assert table.labels.tolist() == ["neutral", "angry"] * 2 and set(table.corpora) == {"ravdess"}
    assert table.has_speakers
    reasons = " ".join(pr.reason for pr in skipped)
    assert len(skipped) == 2 and "not a RAVDESS name" in reasons and "not a readable audio file" in reasons
    assert not any(pr.row for pr in skipped)  # files found in a folder, not manifest rows
    npz, csv_path = table.save(tmp_path / "out" / "feats.npz")
    back = FeatureTable.load(npz)
    np.testing.assert_array_equal(back.stats, table.stats)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(back.frames, table.frames))
    assert back.config == CFG and back.paths == table.paths and back.items == table.items
    assert back.classes == table.classes and back.speakers.tolist() == table.speakers.tolist()
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["file", "label", "speaker", "corpus", "n_frames"] and "mfcc_0__mean" in header


def test_parallel_equals_serial(tmp_path):
    paths = [str(p) for p in write_ravdess_tree(tmp_path, actors=(1, 2), emotions=(1, 2, 3))]
    a, _ = extract_files(paths, CFG, n_jobs=1, progress=False)
    b, _ = extract_files(paths, CFG, n_jobs=2, progress=False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.stats, y.stats)


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    import emovae.features

    paths = [str(p) for p in write_ravdess_tree(tmp_path / "d", actors=(1,), emotions=(1, 2))]
    cache = tmp_path / "cache"
    calls = []
    real = emovae.features.extract
    monkeypatch.setattr(emovae.features, "extract", lambda y, sr, cfg: calls.append(len(y)) or real(y, sr, cfg))
    first, _ = extract_files(paths, CFG, cache_dir=cache, n_jobs=1, progress=False)
    assert len(calls) == 2
    second, _ = extract_files(paths, CFG, cache_dir=cache, n_jobs=1, progress=False)
    assert len(calls) == 2  # served from the cache
    np.testing.assert_array_equal(first[0].stats, second[0].stats)
    # a changed config is never served stale results
    other, _ = extract_files(paths, FeatureConfig(n_mfcc=20), cache_dir=cache, n_jobs=1, progress=False)
    assert len(calls) == 4 and other[0].stats.shape != first[0].stats.shape
    # a changed file (new content, new mtime) is recomputed
    import soundfile as sf

    sf.write(paths[0], np.zeros(16000, np.float32) + 0.01 * np.random.default_rng(0).standard_normal(16000), 16000)
    os.utime(paths[0], ns=(1, 10**18))
    third, _ = extract_files(paths, CFG, cache_dir=cache, n_jobs=1, progress=False)
    assert len(calls) == 5 and calls[-1] == 16000  # only the changed file: its new length
    assert not np.array_equal(third[0].stats, first[0].stats)


def test_cache_ignores_corrupt_entry(tmp_path):
    p = str(write_ravdess_tree(tmp_path / "d", actors=(1,), emotions=(1,))[0])
    cache = FeatureCache(tmp_path / "c", CFG)
    cache.dir.mkdir(parents=True)
    (cache.dir / f"{cache.key(p)}.npz").write_bytes(b"garbage")
    assert cache.get(p) is None
    feats, _ = extract_files([p], CFG, cache_dir=tmp_path / "c", n_jobs=1, progress=False)
    assert feats[0] is not None and cache.get(p) is not None


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no .wav or .flac files"):
        extract_dataset(tmp_path, CFG, progress=False)


@pytest.mark.realdata
def test_real_files_extract(real_data, tmp_path):
    paths = sorted(str(p) for p in (real_data / "Actor_02").glob("*.flac"))[:4]
    feats, failures = extract_files(paths, FeatureConfig(), n_jobs=1, progress=False)
    assert not failures and all(np.all(np.isfinite(f.stats)) for f in feats)


def test_degraded_copies_are_extracted_cached_and_kept_apart_from_speed_copies(tmp_path):
    write_ravdess_tree(tmp_path / "data", actors=(1, 2), emotions=(1, 5), seconds=1.0)
    table, _ = extract_dataset(tmp_path / "data", CFG, n_jobs=1, progress=False)
    table.augment((0.9,), degraded=2, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    assert list(table.augmented) == [0.9, "degraded1", "degraded2"]
    assert len(table.speed_copies) == 1 and table.speed_copies[0] is table.augmented[0.9]
    d1, d2 = table.augmented["degraded1"], table.augmented["degraded2"]
    assert all(f is not None for f in d1 + d2) and len(d1) == len(table)
    assert any(not np.array_equal(a.stats, b.stats) for a, b in zip(d1, d2))  # two different copies
    assert not np.array_equal(d1[0].stats, table.stats[0])  # not the clip itself
    assert sorted(p.name.split("-", 3)[-1] for p in (tmp_path / "cache").iterdir()) == [
        "degraded1-a1", "degraded2-a1", "speed0.9"] or len(list((tmp_path / "cache").iterdir())) == 4
    again, _ = extract_dataset(tmp_path / "data", CFG, n_jobs=1, progress=False)
    again.augment((), degraded=1, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    for a, b in zip(again.augmented["degraded1"], d1):  # the same copy, from the cache or made again
        np.testing.assert_array_equal(a.stats, b.stats)


def test_copies_pooled_to_the_vae_steps_give_the_same_model_inputs(tmp_path):
    """``augment(pool_to=seq_len)`` keeps a copy's frames pooled: what training reads of them is unchanged."""
    from emovae.features import model_inputs

    write_ravdess_tree(tmp_path / "data", actors=(1, 2), emotions=(1, 5), seconds=1.0)
    raw, _ = extract_dataset(tmp_path / "data", CFG, n_jobs=1, progress=False)
    raw.augment((0.8, 1.2), degraded=1, cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    pooled, _ = extract_dataset(tmp_path / "data", CFG, n_jobs=1, progress=False)  # from the cache
    pooled.augment((0.8, 1.2), degraded=1, cache_dir=tmp_path / "cache", n_jobs=1, progress=False, pool_to=16)
    fresh, _ = extract_dataset(tmp_path / "data", CFG, n_jobs=1, progress=False)  # extracted anew
    fresh.augment((0.8, 1.2), degraded=1, n_jobs=1, progress=False, pool_to=16)
    for f in raw.augmented:
        a, b = raw.augmented[f], pooled.augmented[f]
        for x, y in zip(model_inputs(b, 16), model_inputs(fresh.augmented[f], 16)):
            np.testing.assert_array_equal(x, y)
        assert all(c.frames.shape[0] == 16 for c in b) and any(c.frames.shape[0] > 16 for c in a)
        for x, y in zip(model_inputs(a, 16), model_inputs(b, 16)):
            np.testing.assert_array_equal(x, y)  # the VAE's input and the statistics, bit for bit
        assert all(np.array_equal(p.mel, q.mel) for p, q in zip(a, b))
    assert np.array_equal(raw.stats, pooled.stats)
    assert all(np.array_equal(p, q, equal_nan=True) for p, q in zip(raw.frames, pooled.frames))  # clips: all frames
