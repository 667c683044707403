import json

import numpy as np
import pytest

from emovae.errors import AudioError, ModelFormatError, ParameterError
from emovae.runtime import PRETRAINED_DIR, Recognizer, load_pretrained

from .conftest import SR, voice_like

pytest.importorskip("onnxruntime")


def test_onnx_and_torch_backends_agree(tiny_model_dir):
    onnx = Recognizer.load(tiny_model_dir, backend="onnx")
    torch_ = Recognizer.load(tiny_model_dir, backend="torch")
    assert onnx.backend == "onnx" and torch_.backend == "torch"
    y = voice_like(200, 1.5, seed=9)
    np.testing.assert_allclose(onnx.predict_proba(y, SR), torch_.predict_proba(y, SR), atol=1e-5)


def test_prediction_fields(tiny_model_dir, tmp_path):
    import soundfile as sf

    rec = Recognizer.load(tiny_model_dir)
    p = tmp_path / "clip.wav"
    sf.write(p, voice_like(180, 1.2, sr=22050), 22050)  # another rate: resampled on load
    pred = rec.predict_file(p)
    assert pred.emotion in rec.classes and pred.file == str(p)
    assert sum(pred.probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert list(pred.probabilities) == list(rec.classes)
    assert len(pred.top(3)) == 3 and pred.top(1)[0][0] == pred.emotion
    d = pred.to_dict()
    assert set(d) >= {"file", "emotion", "probabilities", "duration_s", "latent_map"}
    json.dumps(d)


def test_signal_errors(tiny_model_dir):
    rec = Recognizer.load(tiny_model_dir)
    with pytest.raises(AudioError, match="silent"):
        rec.predict_proba(np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="too short"):
        rec.predict_proba(voice_like(200, 0.05), SR)
    with pytest.raises(AudioError, match="shape"):
        rec.predict_proba(np.zeros((2, 2, 2), np.float32), SR)
    with pytest.raises(AudioError, match="file not found"):
        rec.predict_file("/no/such/file.wav")


def test_bare_onnx_file_runs_alone(tiny_model_dir, tmp_path):
    """model.onnx (metadata inside) runs without model.json, given its voice student beside it."""
    import shutil

    shutil.copy(tiny_model_dir / "model.onnx", tmp_path / "m.onnx")
    with pytest.raises(ModelFormatError, match="voice student voice.onnx"):
        Recognizer.load(tmp_path / "m.onnx")
    shutil.copy(tiny_model_dir / "voice.onnx", tmp_path / "voice.onnx")
    rec = Recognizer.load(tmp_path / "m.onnx")
    ref = Recognizer.load(tiny_model_dir, backend="onnx")
    y = voice_like(150, 1.0, seed=2)
    np.testing.assert_array_equal(rec.predict_proba(y, SR), ref.predict_proba(y, SR))
    assert rec.classes == ref.classes
    with pytest.raises(ParameterError, match="onnx backend"):
        Recognizer.load(tmp_path / "m.onnx", backend="torch")


def test_load_errors(tmp_path, tiny_model_dir):
    with pytest.raises(ModelFormatError, match="no such model folder"):
        Recognizer.load(tmp_path / "none")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFormatError, match="not a loadable ONNX"):
        Recognizer.load(tmp_path / "bad.onnx")
    with pytest.raises(ParameterError):
        Recognizer.load(tiny_model_dir, backend="tf")


def test_runtime_does_not_import_torch(tiny_model_dir):
    import subprocess
    import sys

    code = ("import sys; from emovae.runtime import Recognizer; r = Recognizer.load(sys.argv[1], backend='onnx');"
            "import numpy as np; t = np.arange(16000) / 16000;"
            "r.predict_proba((0.3 * np.sin(2 * np.pi * 200 * t)).astype('float32'), 16000);"
            "print('torch' in sys.modules, 'sklearn' in sys.modules, 'librosa' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


@pytest.mark.skipif(not (PRETRAINED_DIR / "model.json").exists(), reason="no shipped model in this checkout")
def test_shipped_model_loads_and_predicts():
    import os

    rec = load_pretrained()
    assert rec.classes == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    assert rec.meta["metrics"]["mean"]["balanced_accuracy"] > 0.3  # its stored speaker-independent CV score
    size = sum(f.stat().st_size for f in PRETRAINED_DIR.iterdir())
    assert size <= 1024 * 1024, f"shipped model is {size} bytes"
    assert os.path.exists(PRETRAINED_DIR / "model.onnx")
    p = rec.predict_proba(voice_like(200, 2.0), SR)
    assert p.shape == (8,) and abs(p.sum() - 1) < 1e-4


def test_test_time_augmentation_averages_the_speed_copies(tiny_model_dir):
    from emovae import audio
    from emovae.features import extract

    rec = Recognizer.load(tiny_model_dir)
    tta = Recognizer.load(tiny_model_dir, tta=True)
    speeds = tuple(json.loads((tiny_model_dir / "model.json").read_text())["train_config"]["speed_perturb"])
    assert rec.test_time_speeds == () and tta.test_time_speeds == speeds and speeds
    y = voice_like(190, 1.5, seed=4)
    cfg = rec.feature_config
    clips = [extract(y if f == 1 else audio.speed_perturb(y, SR, f), SR, cfg) for f in (1.0, *speeds)]
    expected = rec.network.forward(clips)["probabilities"].mean(axis=0)
    np.testing.assert_allclose(tta.predict_proba(y, SR), expected, atol=1e-6)
    assert not np.allclose(expected, rec.predict_proba(y, SR), atol=1e-4)  # the copies do change the answer
    pred, plain = tta.predict_signal(y, SR, "x"), rec.predict_signal(y, SR, "x")
    np.testing.assert_allclose(list(pred.probabilities.values()), expected, atol=1e-6)
    assert pred.latent == plain.latent and pred.novelty == plain.novelty  # the clip's own, not averaged
    with pytest.raises(ParameterError, match="single clips"):
        tta.predict_features(clips[:1], moments=(np.zeros(1), np.ones(1)), copies=[clips[1:]])


def test_average_with_copies_counts_each_clips_own_copies():
    from emovae.runtime import average_with_copies

    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    copies = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    out = average_with_copies(proba, copies, np.array([0, 0, 1]))  # clip 2 has no copies
    np.testing.assert_allclose(out, [[1 / 3, 2 / 3], [0.5, 0.5], [0.5, 0.5]], atol=1e-6)
