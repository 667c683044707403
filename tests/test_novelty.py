"""The VAE as a guard: novelty scores, calibrated thresholds, in_domain flags and abstaining."""

import importlib.util
import json
import shutil

import numpy as np
import pytest

from emovae.runtime import PRETRAINED_DIR, UNKNOWN, Recognizer

from .conftest import SR, voice_like

pytest.importorskip("onnxruntime")


def noise(seconds=2.0, seed=0, db=-25):
    y = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return (y / y.std() * 10 ** (db / 20)).astype(np.float32)


def test_threshold_is_the_99th_percentile_of_the_inner_validation_speakers(tiny_model, train_table):
    """Calibrated on clips the VAE was not trained on: the inner validation actors of fit's own split."""
    pytest.importorskip("torch")
    from emovae.evaluate import table_features
    from emovae.train.estimator import inner_split

    tcfg = tiny_model.configs()[3]
    _, va = inner_split(train_table.speakers, tcfg.val_actors, tcfg.seed)
    X = table_features(train_table)
    scores = tiny_model.forward([X[i] for i in va])["novelty"]
    nov = tiny_model.novelty_
    assert nov["percentile"] == 99.0 and nov["calibrated_on"] == f"inner validation actors ({len(va)} clips)"
    assert nov["threshold"] == pytest.approx(float(np.percentile(scores, 99)), rel=1e-5)


def test_threshold_survives_save_load_and_export(tiny_model_dir, tmp_path):
    meta = json.loads((tiny_model_dir / "model.json").read_text())
    thr = meta["novelty"]["threshold"]
    shutil.copy(tiny_model_dir / "model.onnx", tmp_path / "bare.onnx")
    recs = [Recognizer.load(tiny_model_dir, backend="onnx"), Recognizer.load(tmp_path / "bare.onnx")]
    if importlib.util.find_spec("torch"):
        recs.append(Recognizer.load(tiny_model_dir, backend="torch"))
    assert [r.novelty_threshold for r in recs] == [thr] * len(recs)
    clips = [voice_like(170, 1.5, seed=1), noise()]
    preds = [[r.predict_signal(c, SR) for c in clips] for r in recs]
    for p in preds[1:]:
        assert [q.in_domain for q in p] == [q.in_domain for q in preds[0]]
        np.testing.assert_allclose([q.novelty for q in p], [q.novelty for q in preds[0]], rtol=1e-4)


def test_noise_is_more_novel_than_speech_and_abstains(tiny_model_dir):
    rec = Recognizer.load(tiny_model_dir, abstain=True)
    speech = rec.predict_signal(voice_like(170, 1.5, seed=2), SR)
    flagged = rec.predict_signal(noise(seed=3), SR)
    assert flagged.novelty > 5 * speech.novelty  # about 9x with the tests' tiny model (10x before the 8 kHz pitch)
    assert flagged.in_domain is False and flagged.emotion == UNKNOWN
    assert flagged.to_dict()["in_domain"] is False and flagged.confidence == max(flagged.probabilities.values())
    plain = Recognizer.load(tiny_model_dir).predict_signal(noise(seed=3), SR)
    assert plain.in_domain is False and plain.emotion == max(plain.probabilities, key=plain.probabilities.get)
    np.testing.assert_array_equal(list(plain.probabilities.values()), list(flagged.probabilities.values()))


@pytest.mark.realdata
@pytest.mark.skipif(not (PRETRAINED_DIR / "model.json").exists(), reason="no shipped model in this checkout")
def test_shipped_model_scores_noise_above_real_speech(real_data):
    rec = Recognizer.load(backend="onnx")
    files = sorted(real_data.glob("Actor_1*/*.flac"))[::40][:6]
    speech = [rec.predict_file(f) for f in files]
    noisy = [rec.predict_signal(noise(3.0, seed=s, db=db), SR) for s, db in ((1, -20), (2, -35), (3, -45))]
    assert max(p.novelty for p in speech) < min(p.novelty for p in noisy)
    assert all(p.in_domain for p in speech) and not any(p.in_domain for p in noisy)


def test_cli_predict_abstain(tiny_model_dir, tmp_path, capsys):
    import soundfile as sf

    from emovae.cli import main

    sf.write(tmp_path / "noise.wav", noise(), SR)
    assert main(["predict", str(tmp_path / "noise.wav"), "--model", str(tiny_model_dir), "--abstain", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["emotion"] == UNKNOWN and row["in_domain"] is False and row["novelty"] > 0
