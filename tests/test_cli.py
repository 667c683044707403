import json
import sys

import numpy as np
import pytest

from emovae.cli import main
from emovae.data import EMOTIONS

from .conftest import write_ravdess_tree


def test_features_command(tmp_path, capsys):
    write_ravdess_tree(tmp_path / "data", actors=(1, 2), emotions=(1, 2))
    rc = main(["-q", "features", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "f.npz"),
               "--cache-dir", str(tmp_path / "cache"), "--n-mfcc", "13", "--jobs", "1"])
    assert rc == 0
    assert (tmp_path / "f.npz").exists() and (tmp_path / "f.csv").exists()
    out = capsys.readouterr().out
    assert "4 clips of 2 speakers (ravdess)" in out and "per class: neutral 2, calm 2" in out


def test_features_missing_folder_is_clear_error(tmp_path, capsys):
    rc = main(["features", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "f.npz")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "Traceback" not in err


def _tiny_model_args():
    return ["--n-mfcc", "13", "--latent-dim", "4", "--epochs", "4", "--jobs", "1", "--threads", "1", "--voice", "0",
            "--speed-perturb"]


def test_a_model_trained_by_the_cli_predicts_from_the_cli(tiny_model_dir, synthetic, capsys):
    """End to end: ``emovae train`` (the shared tiny model) then ``emovae predict`` on speakers it never heard."""
    from emovae.modelfile import read_model_json
    from emovae.runtime import Recognizer

    files = sorted(synthetic["new"].rglob("*.wav"))
    assert main(["predict", "--model", str(tiny_model_dir), "--json", *map(str, files)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rec = Recognizer.load(tiny_model_dir)
    assert [r["file"] for r in rows] == list(map(str, files))
    for r, f in zip(rows, files):
        assert r["probabilities"] == pytest.approx(rec.predict_file(f).probabilities, abs=1e-5)
    truth = [EMOTIONS[int(f.name.split("-")[2]) - 1] for f in files]
    assert np.mean([r["emotion"] == t for r, t in zip(rows, truth)]) >= 0.75
    meta = read_model_json(tiny_model_dir)
    assert meta["feature_config"]["voice"] == 0 and meta["train_config"]["speed_perturb"] == [0.9, 1.1]
    assert main(["predict", "--model", str(tiny_model_dir), str(files[0])]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{files[0]}: {rows[0]['emotion']} (") and "top 3:" in line


@pytest.mark.slow
def test_train_and_evaluate_commands(tmp_path, capsys):
    write_ravdess_tree(tmp_path / "data", actors=(1, 2, 3, 4), emotions=(1, 4, 5))
    write_ravdess_tree(tmp_path / "other", actors=(7, 8), emotions=(1, 4, 5))
    data, cache = str(tmp_path / "data"), str(tmp_path / "cache")
    assert main(["-q", "evaluate", "--data", data, "--cv", "2", "--out", str(tmp_path / "run"),
                 "--cache-dir", cache, *_tiny_model_args()]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class_recall", "confusion",
                "reconstruction_loss", "n_files", "folds", "mean", "std"):
        assert key in m
    assert m["n_files"] == 12 and len(m["folds"]) == 2
    for f in ("predictions.csv", "confusion.png", "latent_pca.png", "latent_tsne.png", "curves_fold0.png"):
        assert (tmp_path / "run" / f).exists(), f
    header = (tmp_path / "run" / "predictions.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["path", "label", "speaker", "corpus", "fold", "predicted"]
    assert (tmp_path / "run" / "report.md").read_text().startswith("# emovae evaluate")
    assert header[6:] == ["neutral", "sad", "angry"]  # the data's classes, in the shared order

    assert main(["-q", "train", "--data", data, "--out", str(tmp_path / "model"), "--cache-dir", cache,
                 *_tiny_model_args()]) == 0
    assert (tmp_path / "model" / "model.json").exists()
    assert main(["-q", "evaluate", "--data", str(tmp_path / "other"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "run2"), "--cache-dir", cache, "--no-figures"]) == 0
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["n_files"] == 6
    # adapted mode scores what predict --speaker-from answers
    assert main(["-q", "evaluate", "--data", str(tmp_path / "other"), "--model", str(tmp_path / "model"),
                 "--out", str(tmp_path / "run3"), "--cache-dir", cache, "--no-figures", "--speaker-norm"]) == 0
    m3 = json.loads((tmp_path / "run3" / "metrics.json").read_text())
    assert m3["mode"].startswith("adapted")
    rows = (tmp_path / "run3" / "predictions.csv").read_text().splitlines()[1:]
    files = [r.split(",")[0] for r in rows]
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "model"), "--json", "--speaker-from", "actor", *files]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for r, a in zip(rows, answers):
        stored = dict(zip(["neutral", "sad", "angry"], map(float, r.split(",")[6:])))
        assert {k: stored[k] for k in a["probabilities"]} == pytest.approx(a["probabilities"], abs=1e-4)
    # never overwrite earlier work silently
    assert main(["-q", "evaluate", "--data", data, "--out", str(tmp_path / "run"), "--cache-dir", cache]) == 2
    assert "already holds files" in capsys.readouterr().err


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r1")]) == 2
    assert "no .wav or .flac files" in capsys.readouterr().err
    write_ravdess_tree(tmp_path / "one", actors=(1, 2), emotions=(5,))
    assert main(["-q", "train", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "m"), "--no-cache",
                 *_tiny_model_args()]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
    (tmp_path / "badmodel").mkdir()
    write_ravdess_tree(tmp_path / "two", actors=(1, 2), emotions=(1, 5))
    assert main(["-q", "evaluate", "--data", str(tmp_path / "two"), "--model", str(tmp_path / "badmodel"),
                 "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "no model.json" in err and "Traceback" not in err


def test_predict_command_reports_bad_files_and_continues(tiny_model_dir, tmp_path, capsys):
    import soundfile as sf

    from .conftest import voice_like

    good = tmp_path / "good.wav"
    sf.write(good, voice_like(200, 1.0), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    rc = main(["predict", str(bad), str(good), str(tmp_path / "missing.wav"), "--model", str(tiny_model_dir),
               "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1 and rows[0]["file"] == str(good) and set(rows[0]["probabilities"]) <= set(EMOTIONS)
    assert err.count("emovae: error:") == 2 and "bad.wav" in err and "missing.wav" in err and "Traceback" not in err
    assert main(["predict", str(good), "--model", str(tiny_model_dir)]) == 0
    assert "top 3:" in capsys.readouterr().out


def test_stream_command(tiny_model_dir, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from .conftest import voice_like

    sf.write(tmp_path / "s.wav", np.concatenate([voice_like(200, 2.5), np.zeros(32000, np.float32)]), 16000)
    assert main(["stream", str(tmp_path / "s.wav"), "--model", str(tiny_model_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[   0.00 -    2.00 s]") and lines[-1].endswith("silence")


@pytest.mark.slow
def test_export_command(tiny_model_dir, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_model_dir), "--onnx", str(tmp_path / "e.onnx")]) == 0
    assert (tmp_path / "e.onnx").stat().st_size > 1000 and "parity" in capsys.readouterr().out


def test_demo_command(tiny_model_dir, tmp_path, capsys):
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert out.count("true ") == 8 and "demo clips right" in out
    for f in ("report.md", "predictions.json", "confusion.png", "latent_map.png"):
        assert (tmp_path / "demo" / f).exists()


def test_serve_bad_limits_exit_cleanly(capsys):
    pytest.importorskip("fastapi")
    try:  # refused by the argument parser (exit 2) or by ServeConfig (return 2)
        rc = main(["serve", "--max-mb", "0"])
    except SystemExit as exc:
        rc = exc.code
    assert rc == 2
    assert "Traceback" not in capsys.readouterr().err


def test_predict_tta_flag(tiny_model_dir, tmp_path, capsys):
    import soundfile as sf

    from emovae.runtime import Recognizer

    from .conftest import voice_like

    clip = tmp_path / "clip.wav"
    sf.write(clip, voice_like(210, 1.2, seed=5), 16000)
    assert main(["predict", str(clip), "--model", str(tiny_model_dir), "--json", "--tta"]) == 0
    row = json.loads(capsys.readouterr().out)
    expected = Recognizer.load(tiny_model_dir, tta=True).predict_file(clip).probabilities
    assert row["probabilities"] == pytest.approx(expected, abs=1e-5)
    assert main(["predict", str(clip), "--model", str(tiny_model_dir), "--tta", "--speaker-from", "folder"]) == 2
    assert "--tta" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--cnn-channels", "--mel-cnn", "--stats-mlp", "--adapted-mlp"])
def test_retired_cnn_mlp_options_are_gone(option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "d", "--out", "o", option, "16"])
    assert exc.value.code == 2 and option in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- any corpus (issue 20)
#: how the manifest below names the tiny model's emotions: aliases, and one class of the user's own
MANIFEST_LABELS = {"neutral": "neu", "happy": "joy", "angry": "Anger", "surprised": "excited"}


def _manifest(path, files, bad_rows=True):
    """A manifest of RAVDESS-named ``files`` (absolute paths) with speaker ids; with ``bad_rows``, line 3 names a
    missing file and line 6 has no speaker."""
    from emovae.data import parse_name

    rows = ["path,label,speaker"] + [f"{f},{MANIFEST_LABELS[parse_name(f).emotion]},spk{parse_name(f).actor}"
                                     for f in files]
    if bad_rows:
        rows.insert(2, f"{files[0].parent / 'missing.wav'},angry,spk1")
        rows.insert(5, f"{files[1]},angry,")
    path.write_text("\n".join(rows) + "\n")
    return path


def _one_take(folder):
    """One clip per speaker and emotion of a synthetic tree (statement 01): 16 of the tiny model's 32."""
    return [f for f in sorted(folder.rglob("*.wav")) if f.name.split("-")[4] == "01"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_bad_manifest_stops_with_file_and_line_and_writes_nothing(synthetic, tmp_path, capsys, command):
    m = _manifest(tmp_path / "calls.csv", _one_take(synthetic["train"]))
    assert main(["-q", command, "--data", str(m), "--out", str(tmp_path / "out"), "--cache-dir",
                 str(synthetic["cache"]), *_tiny_model_args()]) == 2
    err = capsys.readouterr().err
    assert f"{m}:3: file" in err and f"{m}:6: empty speaker" in err
    assert "2 bad manifest row(s)" in err and "--skip-bad-rows" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_skip_bad_rows_trains_a_4_class_model_that_predicts_its_classes(synthetic, tmp_path, capsys):
    """A manifest with the user's own label names trains a model of exactly its 4 classes; predict answers in
    them (JSON and text), and model.json keeps them."""
    from emovae.modelfile import read_model_json

    m = _manifest(tmp_path / "calls.csv", _one_take(synthetic["train"]))
    out = tmp_path / "model"
    assert main(["-q", "train", "--data", str(m), "--out", str(out), "--cache-dir", str(synthetic["cache"]),
                 "--skip-bad-rows", "--map", "Furious=angry", *_tiny_model_args()]) == 0
    std = capsys.readouterr()
    assert f"skipped: {m}:3: file" in std.err and f"skipped: {m}:6: empty speaker" in std.err
    assert "model trained on 16 clips of 4 speakers (calls); per class: neutral 4, happy 4, angry 4, excited 4" \
        in std.out
    classes = ["neutral", "happy", "angry", "excited"]
    meta = read_model_json(out)
    assert meta["classes"] == classes and meta["training_data"]["corpora"] == ["calls"]
    assert meta["training_data"]["speakers"] == [f"calls/spk{a}" for a in (1, 2, 3, 4)]
    assert meta["training_data"]["clips_per_class"] == dict.fromkeys(classes, 4)
    assert meta["training_data"]["label_map"] == {"furious": "angry"}  # kept, for scoring by the corpus's labels
    files = sorted(synthetic["new"].rglob("*.wav"))
    assert main(["predict", "--model", str(out), "--json", *map(str, files)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(files) and all(list(r["probabilities"]) == classes for r in rows)
    assert all(r["emotion"] in classes and sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
               for r in rows)
    assert main(["predict", "--model", str(out), str(files[0])]) == 0
    assert capsys.readouterr().out.startswith(f"{files[0]}: {rows[0]['answer']} (")
    assert all(r["answer"] in (r["emotion"], "uncertain", "not speech") for r in rows)


def test_features_mixing_two_sources_with_labels_and_map(tmp_path, capsys):
    import soundfile as sf

    from .conftest import voice_like

    write_ravdess_tree(tmp_path / "rav", actors=(1, 2), emotions=(1, 2, 3, 5), seconds=0.5)
    for k, name in enumerate(["DC_a01", "DC_n01", "DC_h01", "DC_sa01"]):
        (tmp_path / "sav").mkdir(exist_ok=True)
        sf.write(tmp_path / "sav" / f"{name}.wav", voice_like(120 + 30 * k, 0.5, seed=k), 16000)
    rc = main(["-q", "features", "--data", str(tmp_path / "rav"), "--data", f"savee={tmp_path / 'sav'}",
               "--labels", "angry,happy,neutral", "--map", "calm=neutral", "--out", str(tmp_path / "f.npz"),
               "--no-cache", "--voice", "0", "--n-mfcc", "13", "--jobs", "1"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "11 clips of 3 speakers (ravdess, savee); per class: neutral 5, happy 3, angry 3" in out
    assert "label 'sad': 1 clip(s) dropped" in err
    from emovae.extraction import FeatureTable

    back = FeatureTable.load(tmp_path / "f.npz")
    assert back.counts() == {"neutral": 5, "happy": 3, "angry": 3}
    assert sorted(set(back.speakers)) == ["ravdess/01", "ravdess/02", "savee/DC"]
    assert main(["features", "--data", str(tmp_path / "rav"), "--map", "calm", "--out", str(tmp_path / "g")]) == 2
    assert "FROM=TO" in capsys.readouterr().err


def test_train_refuses_clips_without_speaker_ids(tmp_path, capsys):
    import soundfile as sf

    from .conftest import voice_like

    for label, f0 in (("neutral", 110), ("angry", 220)):
        (tmp_path / "mine" / label).mkdir(parents=True)
        for k in range(2):
            sf.write(tmp_path / "mine" / label / f"take{k}.wav", voice_like(f0 + 7 * k, 0.5, seed=k), 16000)
    assert main(["-q", "train", "--data", f"folders={tmp_path / 'mine'}", "--out", str(tmp_path / "m"),
                 "--no-cache", *_tiny_model_args()]) == 2
    err = capsys.readouterr().err
    assert "no speaker ids" in err and "--speaker-pattern" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_serve_processes_without_a_shared_store_is_refused_before_starting(capsys):
    pytest.importorskip("uvicorn")
    assert main(["serve", "--processes", "2", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--processes 2" in err and "--session-store redis://" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------- speakers (issue 33)
SAVEE_NAMES = ("DC_a01", "DC_n01", "DC_h01", "JE_a01", "JE_n01")


def _savee_folder(root):
    """One flat folder of SAVEE-named clips of 2 speakers (DC: 3 clips, JE: 2), as SAVEE ships, and a clip whose
    name follows no convention."""
    import soundfile as sf

    from .conftest import voice_like

    root.mkdir(parents=True)
    files = []
    for k, name in enumerate((*SAVEE_NAMES, "holiday")):
        sf.write(root / f"{name}.wav", voice_like(110 + 20 * k, 0.8, seed=k, formant=500 + 90 * k), 16000)
        files.append(root / f"{name}.wav")
    return files


def _json_rows(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_speaker_from_name_reads_every_convention_and_each_row_names_its_speaker(tiny_model_dir, tmp_path, capsys):
    *named, other = _savee_folder(tmp_path / "savee")
    model = ["--model", str(tiny_model_dir)]
    assert main(["predict", *model, "--json", "--speaker-from", "name", *map(str, named), str(other)]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in rows] == list(map(str, named))
    assert [r["speaker"] for r in rows] == ["savee/DC"] * 3 + ["savee/JE"] * 2 and list(rows[0])[:2] == ["file",
                                                                                                       "speaker"]
    assert [r["speaker_clips"] for r in rows] == [3, 3, 3, 2, 2] and all(r["adapted"] for r in rows)
    assert "holiday.wav: skipped: its name follows no naming convention" in err and "savee" in err
    assert "Traceback" not in err
    # actor: the older name of the same thing
    assert main(["predict", *model, "--json", "--speaker-from", "actor", *map(str, named)]) == 0
    assert _json_rows(capsys) == rows
    # text lines carry the speaker too
    assert main(["predict", *model, "--speaker-from", "name", *map(str, named)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "[speaker savee/DC: adapted to 3 clip(s) of the speaker]" in lines[0]
    assert "[speaker savee/JE: adapted to 2 clip(s) of the speaker]" in lines[-1]


def test_speaker_from_folder_warns_when_the_names_say_several_speakers(tiny_model_dir, tmp_path, capsys):
    *named, _ = _savee_folder(tmp_path / "savee")
    model = ["--model", str(tiny_model_dir)]
    assert main(["predict", *model, "--json", "--speaker-from", "folder", *map(str, named)]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    folder = str((tmp_path / "savee").resolve())
    assert all(r["speaker"] == folder and r["speaker_clips"] == 5 for r in rows)
    assert f"warning: {folder}: its file names name 2 speakers (savee: DC, JE)" in err
    assert "ONE speaker" in err and "--speaker-from name" in err
    # one speaker per folder: no warning
    for f in named[3:]:
        (tmp_path / "je").mkdir(exist_ok=True)
        f.rename(tmp_path / "je" / f.name)
    assert main(["predict", *model, "--json", "--speaker-from", "folder", *map(str, named[:3])]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_a_training_manifest_drives_speaker_from_and_every_table_row_has_its_speaker(tiny_model_dir, tmp_path,
                                                                                      capsys, ext):
    """The one vocabulary: a training manifest (path,label,speaker; paths relative to it) is predict's input and
    its --speaker-from table; the adapted table has a speaker column in every format, and the same grouping as
    --speaker-from name gives the same scores."""
    from emovae import batch

    if ext == ".parquet":
        pytest.importorskip("pyarrow")
        pytest.importorskip("pandas")
    *named, _ = _savee_folder(tmp_path / "savee")
    m = tmp_path / "lists" / "train.csv"
    m.parent.mkdir()
    m.write_text("path,label,speaker\n" + "".join(f"../savee/{f.name},angry,{f.name[:2].lower()}\n" for f in named))
    model = ["--model", str(tiny_model_dir)]
    out = tmp_path / f"r{ext}"
    assert main(["predict", *model, str(m), "--speaker-from", str(m), "--out", str(out)]) == 0
    cols, rows = batch.read_table(out)
    assert cols[:2] == ["file", "speaker"] and [r["speaker"] for r in rows] == ["dc"] * 3 + ["je"] * 2
    assert main(["predict", *model, "--json", "--speaker-from", "name", *map(str, named)]) == 0
    by_name = _json_rows(capsys)
    for r, n in zip(rows, by_name):
        assert float(r["confidence"]) == pytest.approx(n["confidence"], abs=1e-5)
        assert r["speaker"] == n["speaker"].split("/")[1].lower()
    # an error row keeps its speaker; a file the table does not know is an error row without one
    bad = tmp_path / "savee" / "KL_a01.wav"
    bad.write_text("not audio")
    with m.open("a") as fh:
        fh.write("../savee/KL_a01.wav,angry,kl\n")
    stray = tmp_path / "stray.wav"
    stray.write_bytes(named[0].read_bytes())
    assert main(["predict", *model, str(m), str(stray), "--speaker-from", str(m), "--out",
                 str(tmp_path / f"r2{ext}")]) == 1
    rows = {batch._key(r["file"]): r for r in batch.read_table(tmp_path / f"r2{ext}")[1]}
    assert rows[batch._key(bad)]["speaker"] == "kl" and "KL_a01.wav" in rows[batch._key(bad)]["error"]
    assert batch._blank(rows[batch._key(stray)]["speaker"]) and "no speaker for it" in rows[batch._key(stray)]["error"]


def test_an_older_file_speaker_table_still_works_and_bad_tables_are_clear(tiny_model_dir, tmp_path, capsys):
    *named, _ = _savee_folder(tmp_path / "savee")
    t = tmp_path / "speakers.csv"
    t.write_text("file,speaker\n" + "".join(f"{f},{'one' if i < 2 else 'two'}\n" for i, f in enumerate(named)))
    model = ["--model", str(tiny_model_dir)]
    assert main(["predict", *model, "--json", "--speaker-from", str(t), *map(str, named)]) == 0
    assert [r["speaker"] for r in _json_rows(capsys)] == ["one", "one", "two", "two", "two"]
    assert main(["predict", *model, "--speaker-from", str(tmp_path / "none.csv"), str(named[0])]) == 2
    err = capsys.readouterr().err
    assert "not 'folder', 'name' (or 'actor')" in err and "path,speaker" in err and "Traceback" not in err
    t.write_text("clip,who\nx.wav,a\n")
    assert main(["predict", *model, "--speaker-from", str(t), str(named[0])]) == 2
    err = capsys.readouterr().err
    assert f"{t}:1: --speaker-from needs a header with columns path, speaker" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ costs and progress (issue 33)
def test_progress_bars_show_on_a_terminal_or_with_progress_and_never_with_q(tmp_path, capsys, monkeypatch):
    """The same rule in every command with bars: hidden when stderr is not a terminal (here: captured), shown with
    --progress (before or after the command's name), hidden by -q; the two together are refused."""
    write_ravdess_tree(tmp_path / "data", actors=(1, 2), emotions=(1, 5), seconds=0.5)
    base = ["--data", str(tmp_path / "data"), "--no-cache", "--n-mfcc", "13", "--voice", "0", "--jobs", "1"]
    assert main(["features", *base, "--out", str(tmp_path / "a.npz")]) == 0
    assert "|" not in capsys.readouterr().err
    assert main(["--progress", "features", *base, "--out", str(tmp_path / "b.npz")]) == 0
    assert "4/4" in capsys.readouterr().err
    assert main(["features", *base, "--out", str(tmp_path / "c.npz"), "--progress"]) == 0
    assert "4/4" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["features", *base, "--out", str(tmp_path / "d.npz")]) == 0
    assert "4/4" in capsys.readouterr().err
    assert main(["-q", "features", *base, "--out", str(tmp_path / "e.npz")]) == 0
    assert "|" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["-q", "features", *base, "--out", str(tmp_path / "f.npz"), "--progress"])
    assert exc.value.code == 2 and "give one of them" in capsys.readouterr().err


def test_predict_tables_follow_the_same_progress_rule(tiny_model_dir, synthetic, tmp_path, capsys):
    files = [str(f) for f in sorted(synthetic["new"].rglob("*.wav"))[:3]]
    model = ["--model", str(tiny_model_dir)]
    assert main(["predict", *model, *files, "--out", str(tmp_path / "a.csv")]) == 0
    assert "file/s" not in capsys.readouterr().err
    assert main(["predict", *model, *files, "--out", str(tmp_path / "b.csv"), "--progress"]) == 0
    assert "3/3" in capsys.readouterr().err


def test_evaluate_help_states_the_cost_and_the_quick_option(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "about 10 minutes per 1000 training clips per fold" in text and "1000 clips in 5 folds" in text
    assert "--voice-copies-per-epoch 1 fits about 2-4x faster" in text and "--quick" in text
    assert "QUICK ESTIMATE" in text


def test_the_cost_note_scales_with_clips_folds_and_copies():
    from emovae.cli import cv_cost_note
    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig

    note = cv_cost_note(1000, 5, FeatureConfig(), ClassifierConfig(), TrainConfig())
    assert note.startswith("5 folds of about 800 training clips: about 38 minutes") and "faster" not in note
    assert "about 77 minutes" in cv_cost_note(2000, 5, FeatureConfig(), ClassifierConfig(), TrainConfig())
    assert "about 54 minutes" in cv_cost_note(1000, 5, FeatureConfig(), ClassifierConfig(),
                                              TrainConfig(degraded_copies=2))
    quick = cv_cost_note(1000, 5, FeatureConfig(), ClassifierConfig(voice_epochs=20, voice_copies_per_epoch=1),
                         TrainConfig())
    assert "20 epochs of each clip and 1 copy(ies) make it faster" in quick
    assert "no voice student" in cv_cost_note(1000, 5, FeatureConfig(voice=0), ClassifierConfig(), TrainConfig())


def test_evaluate_quick_is_labelled_a_quick_estimate_and_writes_report_md(tmp_path, capsys):
    write_ravdess_tree(tmp_path / "data", actors=(1, 2, 3, 4), emotions=(1, 5), seconds=0.5)
    run = tmp_path / "run"
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--cv", "2", "--out", str(run), "--no-cache",
                 "--quick", "--no-figures", "--n-mfcc", "13", "--latent-dim", "4", "--epochs", "2", "--jobs", "1",
                 "--threads", "1", "--voice", "0", "--speed-perturb"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("QUICK ESTIMATE (--quick") and "report.md" in out
    assert "cross-validation: 2 folds of about 4 training clips" in err
    assert json.loads((run / "metrics.json").read_text())["estimate"].startswith("QUICK ESTIMATE")
    config = json.loads((run / "config.json").read_text())
    assert config["quick"] is True
    ccfg = config["classifier_config"]
    assert ccfg["voice_epochs"] == 20 and ccfg["voice_copies_per_epoch"] == 1
    report = (run / "report.md").read_text()
    assert report.startswith("# emovae evaluate\n\n**QUICK ESTIMATE") and "## Per fold" in report
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--model", str(tmp_path), "--out",
                 str(tmp_path / "r2"), "--quick"]) == 2
    assert "with --model nothing is fitted" in capsys.readouterr().err


def test_predict_lines_show_the_arousal_and_valence_that_json_gives(tiny_model_dir, synthetic, capsys):
    """The text line of each clip ends its top 3 with the clip's arousal and valence, the numbers of --json (the
    tiny model has the heads; a clip its guard calls not speech has neither)."""
    import re

    from emovae.runtime import Recognizer

    files = sorted(map(str, synthetic["new"].rglob("*.wav")))
    model = ["--model", str(tiny_model_dir)]
    assert main(["predict", *model, "--json", *files]) == 0
    rows = _json_rows(capsys)
    rec = Recognizer.load(tiny_model_dir)
    assert any("arousal" in r for r in rows)
    for r, f in zip(rows, files):
        p = rec.predict_file(f)
        assert ("arousal" in r) == ("valence" in r) == (p.arousal is not None)
        if p.arousal is not None:
            assert -1 <= r["arousal"] <= 1 and -1 <= r["valence"] <= 1
            assert (r["arousal"], r["valence"]) == pytest.approx((p.arousal, p.valence), abs=1e-4)
    assert main(["predict", *model, *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(files)
    for line, r in zip(lines, rows):
        m = re.search(r"top 3: [^\[]*?  arousal ([+-]\d\.\d\d) valence ([+-]\d\.\d\d)( |$)", line)
        if "arousal" not in r:
            assert m is None and "arousal" not in line, line
            continue
        assert m, line
        assert (float(m[1]), float(m[2])) == pytest.approx((r["arousal"], r["valence"]), abs=0.0051)
