"""The model folder's format: model.json read and checked, old and retired keys, file names inside the folder,
ONNX sessions, and the shipped model against the format's input and output names."""

import json

import pytest

from emovae.errors import ModelFormatError
from emovae.modelfile import (CONFIG_FILE, INPUTS, MODEL_FORMAT, ONNX_FILE, OUTPUTS, PRETRAINED_DIR, VOICE_FILE,
                              check_meta, inside, onnx_session, read_model_json)


def minimal_meta(**classifier) -> dict:
    return {"format": MODEL_FORMAT, "format_version": 1, "classes": ["neutral", "angry"], "feature_config": {},
            "vae_config": {}, "classifier_config": dict(classifier), "train_config": {}}


def write(d, meta) -> None:
    d.mkdir(exist_ok=True)
    (d / CONFIG_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("setup,why", [
    (lambda d: None, "no such model folder"),
    (lambda d: d.mkdir(), "no model.json"),
    (lambda d: (d.mkdir(), (d / "model.json").write_text("{oops")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "model.json").write_bytes(b"\xff\xfe\x00")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "model.json").write_text('{"format": "other"}')), "not an emovae model"),
    (lambda d: (d.mkdir(), (d / "model.json").write_text("[1, 2]")), "not an emovae model"),
    (lambda d: write(d, minimal_meta() | {"format_version": 99}), "newer than this emovae"),
    (lambda d: write(d, {k: v for k, v in minimal_meta().items() if k != "classes"}), r"missing or malformed.*classes"),
    (lambda d: write(d, minimal_meta() | {"vae_config": [1]}), r"missing or malformed.*vae_config"),
])
def test_read_model_json_names_the_problem(tmp_path, setup, why):
    d = tmp_path / "m"
    setup(d)
    with pytest.raises(ModelFormatError, match=why):
        read_model_json(d)


def test_model_json_from_before_newer_options_gets_their_old_meaning(tmp_path):
    write(tmp_path, minimal_meta())
    meta = read_model_json(tmp_path)
    assert meta["feature_config"] == {"shape_stats": False, "voice_quality": False, "voice": 0}
    assert meta["classifier_config"] == {"head_stats": "all"}


def test_retired_cnn_mlp_keys_load_when_off_and_are_dropped():
    off = {"cnn_channels": 0, "cnn_epochs": 30, "mel_cnn": False, "cnn_weight": 0.5, "stats_mlp": 0, "adapted_mlp": 0}
    meta = check_meta(minimal_meta(**off, head_stats="voice"), "x")
    assert meta["classifier_config"] == {"head_stats": "voice"}


@pytest.mark.parametrize("key,value", [("cnn_channels", 16), ("mel_cnn", True), ("stats_mlp", 32),
                                       ("adapted_mlp", 8)])
def test_a_model_trained_with_the_retired_recipe_is_refused(key, value):
    with pytest.raises(ModelFormatError, match=f"retired CNN/MLP recipe.*{key}.*retrain"):
        check_meta(minimal_meta(**{key: value}), "x")


def test_inside_keeps_file_names_inside_the_folder(tmp_path):
    assert inside(tmp_path, "voice.onnx") == (tmp_path / "voice.onnx").resolve()
    for bad in ("../voice.onnx", "/etc/passwd", "sub/../../x", "", None, 3):
        with pytest.raises(ModelFormatError, match="voice student"):
            inside(tmp_path, bad, "voice student")


def test_onnx_session_refuses_what_is_not_a_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(ModelFormatError, match="ONNX graph: not a loadable ONNX model"):
        onnx_session(b"not a graph")
    (tmp_path / "x.onnx").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFormatError, match="x.onnx: not a loadable"):
        onnx_session(tmp_path / "x.onnx")
    with pytest.raises(ModelFormatError, match="not a loadable"):
        onnx_session(tmp_path / "missing.onnx")


@pytest.mark.skipif(not (PRETRAINED_DIR / CONFIG_FILE).exists(), reason="no shipped model in this checkout")
def test_the_shipped_model_folder_follows_the_format():
    pytest.importorskip("onnxruntime")
    meta = read_model_json(PRETRAINED_DIR)
    assert meta["classes"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert meta["voice"]["file"] == VOICE_FILE and (PRETRAINED_DIR / VOICE_FILE).is_file()
    size = sum(f.stat().st_size for f in PRETRAINED_DIR.iterdir())
    assert size <= 1024 * 1024, f"shipped model is {size} bytes"
    session = onnx_session(PRETRAINED_DIR / ONNX_FILE)
    assert tuple(i.name for i in session.get_inputs()) == INPUTS
    assert tuple(o.name for o in session.get_outputs()) == OUTPUTS
    stats = session.get_inputs()[1].shape[1]
    assert stats == len(meta["stat_names"]) == len(meta["speaker_prior"]["mean"])
