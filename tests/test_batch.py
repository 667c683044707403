"""Batch in, table out (issue 23): inputs (files, folders, globs, manifests, stdin), one row per file with bad
files as rows, CSV/JSONL/Parquet tables resumed without scoring a file twice, ``Recognizer.predict_files`` and the
batch ``predict_proba``. Uses the shipped model on its demo clips (about a second)."""

from __future__ import annotations

import io
import json
import shutil
import sys

import numpy as np
import pytest

from emovae import batch
from emovae.cli import main
from emovae.errors import DataError, EmovaeError, MissingDependencyError
from emovae.evaluate import demo_clips

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def rec():
    pytest.importorskip("onnxruntime")
    from emovae.runtime import load_pretrained

    return load_pretrained()


@pytest.fixture
def tree(tmp_path):
    """demo clips in a/ (2) and a/b/ (2), plus a text file and a broken .wav"""
    src = demo_clips()[:4]
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i, f in enumerate(src):
        shutil.copy(f, tmp_path / "a" / ("b" if i >= 2 else "") / f.name)
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    return tmp_path


def test_inputs_expand_files_folders_globs_manifests_and_stdin(tree):
    a = sorted(str(p) for p in (tree / "a").rglob("*.flac"))
    files, problems = batch.expand_inputs([str(tree / "a")])
    assert files == a and problems == []  # recursive, audio only, sorted
    files, _ = batch.expand_inputs([str(tree / "a" / "*.flac"), str(tree / "a")])
    assert sorted(files) == a and len(files) == 4  # a file named twice is scored once
    (tree / "m.csv").write_text("path,label\na/" + (tree / "a" / "b").iterdir().__next__().name.join(["b/", ""])
                                + ",happy\n\n," + "x\n")
    files, problems = batch.expand_inputs([str(tree / "m.csv")])
    assert len(files) == 1 and files[0].startswith(str(tree / "a" / "b")) and problems[0][1] == "empty path"
    files, _ = batch.expand_inputs(["-"], io.StringIO("\n".join(a[:2]) + "\n\n"))
    assert files == a[:2]
    # the one vocabulary: 'file' is read as 'path' (a table predict wrote is a list of files to score again)
    (tree / "f.tsv").write_text("File\tspeaker\na/" + sorted((tree / "a").glob("*.flac"))[0].name + "\tx\n")
    files, problems = batch.expand_inputs([str(tree / "f.tsv")])
    assert files == [a[0]] and problems == []
    (tree / "bad.csv").write_text("clip,label\nx.wav,happy\n")
    with pytest.raises(DataError, match=r"bad.csv:1: a manifest for predict needs a header with columns path"):
        batch.expand_inputs([str(tree / "bad.csv")])
    files, problems = batch.expand_inputs([str(tree / "nothing*.wav"), str(tree / "missing.wav")])
    assert files == [str(tree / "missing.wav")] and "no audio file matches" in problems[0][1]


def test_predict_files_is_a_table_by_file_equal_to_predict_file(rec, tree):
    paths = [*sorted((tree / "a").rglob("*.flac")), tree / "broken.wav"]
    table = rec.predict_files(paths)
    assert list(table.index) == [str(p) for p in paths]
    assert list(table.columns) == batch.columns(rec.classes)[1:]
    for p in paths[:-1]:
        one = rec.predict_file(p)
        row = table.loc[str(p)]
        assert row["emotion"] == one.emotion and pd.isna(row["error"])
        np.testing.assert_allclose(row[list(rec.classes)].astype(float), [one.probabilities[c] for c in rec.classes],
                                   atol=1e-5)
        assert row["duration_s"] == pytest.approx(one.duration_s, abs=1e-3)
    bad = table.loc[str(paths[-1])]
    assert "broken.wav" in bad["error"] and pd.isna(bad["emotion"])


def test_predict_files_names_the_missing_extra(rec, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"emovae\[batch\]"):
        rec.predict_files(demo_clips()[:1])


def test_batch_predict_proba_shapes_and_values(rec):
    from emovae import audio

    sr = rec.feature_config.sample_rate
    ys = [audio.load(f, sr) for f in demo_clips()[:3]]
    single = np.stack([rec.predict_proba(y, sr) for y in ys])
    assert single.shape == (3, len(rec.classes))
    np.testing.assert_allclose(rec.predict_proba([(y, sr) for y in ys]), single, atol=1e-5)
    np.testing.assert_allclose(rec.predict_proba(ys, sr), single, atol=1e-5)
    n = min(len(y) for y in ys)
    equal = np.stack([y[:n] for y in ys])  # 3 rows: a multichannel clip unless told it is a batch
    assert rec.predict_proba(equal, sr).shape == (len(rec.classes),)
    batch_p = rec.predict_proba(equal, sr, batch=True)
    np.testing.assert_allclose(batch_p, np.stack([rec.predict_proba(y, sr) for y in equal]), atol=1e-5)
    many = np.tile(equal, (6, 1))  # 18 rows > MAX_CHANNELS: a batch without asking
    assert rec.predict_proba(many, sr).shape == (18, len(rec.classes))


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_cli_table_resumes_without_scoring_a_file_twice(rec, tree, ext, monkeypatch, capsys):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    out = tree / f"results{ext}"
    scored = []
    real = batch.score

    def spy(recognizer, paths, chunk=batch.CHUNK, jobs=1):
        paths = list(paths)
        scored.extend(paths)
        return real(recognizer, paths, chunk, jobs)

    monkeypatch.setattr(batch, "score", spy)
    first = sorted(str(p) for p in (tree / "a").glob("*.flac"))
    assert main(["predict", *first, str(tree / "broken.wav"), "--out", str(out)]) == 1
    assert "2 files scored, 1 failed" in capsys.readouterr().err
    # the broken file is fixed, and the whole tree is asked for: only files without a scored row are scored
    shutil.copy(demo_clips()[5], tree / "broken.wav")
    assert main(["predict", str(tree / "a"), str(tree / "broken.wav"), "--out", str(out)]) == 0
    assert "3 files scored, 0 failed, 2 already in the table" in capsys.readouterr().err
    assert sorted(scored) == sorted(first + [str(tree / "broken.wav")] * 2 + [
        str(p) for p in (tree / "a" / "b").glob("*.flac")])
    table = batch.read_table(out)[1]
    files = [r["file"] for r in table]
    assert len(files) == len(set(files)) == 5 and all(batch._blank(r["error"]) for r in table)
    assert set(r["emotion"] for r in table) <= set(rec.classes)
    assert batch.read_done(out) == {batch._key(f) for f in files}


def test_cli_table_from_stdin_and_text_mode_reads_folders(rec, tree, monkeypatch, capsys):
    paths = sorted(str(p) for p in (tree / "a").rglob("*.flac"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(paths)))
    assert main(["predict", "-", "--out", str(tree / "r.jsonl")]) == 0
    rows = [json.loads(line) for line in (tree / "r.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == paths and list(rows[0]) == batch.columns(rec.classes)
    capsys.readouterr()
    assert main(["predict", "--json", str(tree / "a"), str(tree / "a" / "none*.wav")]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["file"] for line in out.splitlines()] == paths
    assert "no audio file matches" in err


def test_speaker_column_only_in_adapted_tables(rec):
    c = batch.columns(rec.classes)
    assert "speaker" not in c and batch.columns(rec.classes, speaker=True) == [c[0], "speaker", *c[1:]]
    row = batch.error_row("x.wav", "bad", rec.classes, speaker="s1")
    assert list(row) == batch.columns(rec.classes, speaker=True) and row["speaker"] == "s1"
    assert "speaker" not in batch.error_row("x.wav", "bad", rec.classes)
    with pytest.raises(Exception, match="clash"):
        batch.columns(("speaker", "angry"), speaker=True)
    assert batch.columns(("speaker", "angry"))[4] == "speaker"  # a class of that name is fine without adapting


def test_a_cut_csv_row_is_scored_again(rec, tree, capsys):
    out = tree / "r.csv"
    paths = sorted(str(p) for p in (tree / "a").glob("*.flac"))
    assert main(["predict", *paths, "--out", str(out)]) == 0
    text = out.read_text()
    out.write_text(text[: text.rindex(",", 0, len(text) - 12)])  # a kill in the middle of the last row
    assert main(["predict", *paths, "--out", str(out)]) == 0
    assert "1 files scored, 0 failed, 1 already in the table" in capsys.readouterr().err
    assert [r["file"] for r in batch.read_table(out)[1]] == paths


class PidJob:
    """A stand-in for ``runtime.FeatureJob`` (picklable: module level): a file's "features" are the id of the
    process that computed them; a file named bad* raises."""

    def file(self, path):
        import os

        if "bad" in str(path):
            raise ValueError("not a clip")
        return [os.getpid()]


def test_file_features_run_on_worker_processes_in_order_with_errors_as_messages():
    import os

    paths = [f"clip{i}.wav" for i in range(9)] + ["bad.wav"]
    here = list(batch.file_features(PidJob(), paths, jobs=1))
    assert all(X == [os.getpid()] and err is None for X, err in here[:-1])
    assert here[-1] == (None, "bad.wav: ValueError: not a clip")
    pool = list(batch.file_features(PidJob(), paths, jobs=2))
    assert len(pool) == len(paths) and pool[-1] == here[-1]
    pids = {X[0] for X, _ in pool[:-1]}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {X[0] for X, _ in batch.file_features(PidJob(), paths[:3], jobs=2)} == {os.getpid()}  # < 4 files: here


def test_a_daemonic_worker_computes_features_itself(monkeypatch):
    import multiprocessing
    import os

    class Daemon:
        daemon = True

    monkeypatch.setattr(multiprocessing, "current_process", lambda: Daemon())
    assert {X[0] for X, _ in batch.file_features(PidJob(), [f"c{i}.wav" for i in range(8)], jobs=2)} == {os.getpid()}


def test_worker_processes_and_batches_predict_what_one_process_does(rec, tree):
    flacs = sorted((tree / "a").rglob("*.flac"))
    paths = [*flacs, tree / "broken.wav", *flacs[:2]]  # 7 files, a bad one among them: the pool runs
    one = rec.predict_files(paths, jobs=1)
    pool = rec.predict_files(paths, jobs=2)
    assert list(pool.index) == list(one.index) and list(pool["emotion"]) == list(one["emotion"])
    cols = [*rec.classes, "novelty", "duration_s"]
    np.testing.assert_allclose(pool[cols].astype(float), one[cols].astype(float), atol=1e-6, equal_nan=True)
    assert pool["error"].isna().sum() == 6 and "broken.wav" in pool.loc[str(tree / "broken.wav"), "error"]
    for p in flacs:  # and what one clip at a time gives (the network on batches of CHUNK clips)
        single = rec.predict_file(p)
        np.testing.assert_allclose(pool.loc[str(p), list(rec.classes)].astype(float).values.reshape(-1, len(
            rec.classes))[0], [single.probabilities[c] for c in rec.classes], atol=1e-5)


def test_cli_predict_jobs_gives_the_same_table_and_lines(rec, tree, capsys):
    files = [str(p) for p in sorted((tree / "a").rglob("*.flac"))] + [str(tree / "broken.wav")]
    assert main(["predict", *files, "--out", str(tree / "one.csv"), "--jobs", "1"]) == 1
    assert main(["predict", *files, "--out", str(tree / "two.csv"), "--jobs", "2"]) == 1
    assert (tree / "one.csv").read_text() == (tree / "two.csv").read_text()
    capsys.readouterr()
    assert main(["predict", *files, "--json", "--jobs", "2"]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in rows] == files[:-1] and "broken.wav" in err
    for r, f in zip(rows, files):
        assert r["probabilities"] == pytest.approx(rec.predict_file(f).probabilities, abs=1e-5)


class DyingJob:
    """A stand-in job whose worker process dies (as killed for memory) on a file named die*."""

    def file(self, path):
        import os

        if "die" in str(path):
            os._exit(1)
        return [0]


def test_a_dead_feature_worker_stops_the_run_with_one_line_to_resume():
    paths = [f"clip{i}.wav" for i in range(6)] + ["die.wav"]
    with pytest.raises(EmovaeError, match="worker process computing features died.*resume"):
        list(batch.file_features(DyingJob(), paths, jobs=2))


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_tables_have_arousal_and_valence_columns_empty_when_absent(recognizer, tmp_path, ext):
    """Rows carry each clip's arousal and valence (the tiny model has the heads) after the class columns; a file
    that failed, and a prediction without them, leave the columns empty."""
    import dataclasses

    import soundfile as sf

    from .conftest import SR, voice_like

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    good = tmp_path / "good.wav"
    sf.write(good, voice_like(170, 1.2, seed=3), SR)
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    cols = batch.columns(recognizer.classes)
    assert cols[cols.index(recognizer.classes[-1]) + 1 : cols.index("in_domain")] == ["arousal", "valence"]
    rows = list(batch.score(recognizer, [str(good), str(tmp_path / "broken.wav")]))
    p = recognizer.predict_file(good)
    assert p.arousal is not None
    assert (rows[0]["arousal"], rows[0]["valence"]) == pytest.approx((p.arousal, p.valence), abs=1e-5)
    assert rows[1]["error"] and rows[1]["arousal"] is None and rows[1]["valence"] is None
    no_heads = batch.prediction_row(dataclasses.replace(p, arousal=None, valence=None), recognizer.classes)
    assert no_heads["arousal"] is None and no_heads["valence"] is None and list(no_heads) == cols
    out = tmp_path / f"t{ext}"
    batch.write_table([*rows, no_heads], out, recognizer.classes)
    read_cols, back = batch.read_table(out)
    assert read_cols == cols
    assert float(back[0]["arousal"]) == pytest.approx(rows[0]["arousal"], abs=1e-6)
    assert float(back[0]["valence"]) == pytest.approx(rows[0]["valence"], abs=1e-6)
    assert all(batch._blank(r[k]) for r in back[1:] for k in ("arousal", "valence"))
