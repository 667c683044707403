"""The model folder's format: model.json read and checked, old and retired keys, file names inside the folder,
ONNX sessions, and the shipped model against the format's input and output names."""

import json

import pytest

from emovae.errors import ModelFormatError
from emovae.modelfile import (CONFIG_FILE, DIMENSION_OUTPUTS, INPUTS, MAX_GRAPH_BYTES, MAX_JSON_BYTES, MAX_PARAMETERS,
                              MODEL_FORMAT, ONNX_FILE, OUTPUTS, PRETRAINED_DIR, VOICE_FILE, check_graph, check_meta,
                              inside, network_parameters, onnx_session, read_model_json)


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
    assert meta["feature_config"] == {"shape_stats": False, "voice_quality": False, "voice": 0, "pitch_decimation": 1}
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
    assert meta["classes"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]  # calm merged
    assert meta["training_data"]["label_map"] == {"calm": "neutral"}
    assert meta["voice"]["file"] == VOICE_FILE and (PRETRAINED_DIR / VOICE_FILE).is_file()
    size = sum(f.stat().st_size for f in PRETRAINED_DIR.iterdir())
    assert size <= 1024 * 1024, f"shipped model is {size} bytes"
    session = onnx_session(PRETRAINED_DIR / ONNX_FILE)
    assert tuple(i.name for i in session.get_inputs()) == INPUTS
    assert tuple(o.name for o in session.get_outputs()) == OUTPUTS + DIMENSION_OUTPUTS  # arousal and valence
    assert meta["dimensions"]["names"] == ["arousal", "valence"]
    stats = session.get_inputs()[1].shape[1]
    assert stats == len(meta["stat_names"]) == len(meta["speaker_prior"]["mean"])


def shipped_like() -> dict:
    """A complete, valid model description shaped like the shipped one (no network files needed)."""
    meta = minimal_meta()
    meta["feature_config"] = {"n_mfcc": 13, "voice": 0}
    meta["frame_names"], meta["stat_names"] = ["a", "b"], ["a__mean", "b__mean", "duration_s"]
    meta["speaker_prior"] = {"mean": [0.0, 1.0, 2.0], "std": [1.0, 1.0, 1.0]}
    meta["latent_map"] = {"mean": [0.0] * 16, "components": [[1.0] + [0.0] * 15, [0.0, 1.0] + [0.0] * 14]}
    meta["calibration"] = {"uncertain_below": 0.4, "temperature": 1.5}
    meta["novelty"] = {"threshold": 1.2}
    meta["latent_map"] |= {"points": [[0.0, 1.0], [2.0, 3.0]], "labels": ["neutral", "angry"]}
    meta["metrics"] = {"mean": {"balanced_accuracy": 0.6}, "std": {"balanced_accuracy": 0.05},
                       "adapted": {"mean": {"balanced_accuracy": 0.7}, "std": {"balanced_accuracy": 0.04}}}
    meta["training_data"] = {"label_map": {"calm": "neutral"}}
    meta["emovae_version"] = "0.1.0"
    meta["scalers"] = {"seq_mean": [0.0, 0.0], "seq_std": [1.0, 1.0], "stats_mean": [0.0] * 3,
                       "stats_std": [1.0] * 3, "z_mean": [0.0] * 16, "z_std": [1.0] * 16}
    return meta


@pytest.mark.parametrize("field,value,why", [
    ("feature_config.n_fft", 10**9, r"feature_config.n_fft is 1000000000; it must be an integer in \[16, 16384\]"),
    ("feature_config.n_mels", 10**9, r"feature_config.n_mels is 1000000000"),
    ("feature_config.min_duration", -1, r"feature_config.min_duration is -1; it must be a number in \[0, 60\]"),
    ("feature_config.sample_rate", "16000", r"feature_config.sample_rate is '16000'"),
    ("feature_config.sample_rate", 16000.0, r"feature_config.sample_rate is 16000.0; it must be an integer"),
    ("feature_config.deltas", 1, r"feature_config.deltas is 1; it must be true or false"),
    ("feature_config.hop_length", 1, r"feature_config.hop_length is 1; .*values per second"),
    ("feature_config.percentiles", [10, 500], r"feature_config.percentiles .* numbers in \[0, 100\]"),
    ("vae_config.seq_len", 10**10, r"vae_config.seq_len is 10000000000; it must be an integer in \[8, 4096\]"),
    ("vae_config.seq_len", 10**4000, r"vae_config.seq_len is 1000.*characters\); it must be an integer"),
    ("vae_config.latent_dim", float("inf"), r"vae_config.latent_dim is inf"),
    ("vae_config.channels", True, r"vae_config.channels is True"),
    ("classifier_config.c_grid", [], r"classifier_config.c_grid is \[\]"),
    ("train_config.speed_perturb", [1.1] * 100, r"train_config.speed_perturb .* at most 16|0 to 16 numbers"),
    ("feature_config.pitch_decimation", 0, r"feature_config.pitch_decimation is 0; it must be an integer in \[1, 64\]"),
    ("feature_config.pitch_decimation", "2", r"feature_config.pitch_decimation is '2'"),
    ("classes", ["a", "a"], r"classes is \['a', 'a'\]; it must be a list of 1 to 1000 different"),
    ("classes", [""], r"classes is \[''\]"),
    ("stat_names", "abc", r"stat_names is 'abc'"),
    ("speaker_prior", [1, 2], r"speaker_prior is \[1, 2\]"),
    ("speaker_prior.mean", [0.0, 1.0], r"speaker_prior.mean is \[0.0, 1.0\]; it must be a list of 3 finite"),
    ("speaker_prior.std", [1.0, 0.0, 1.0], r"speaker_prior.std .* positive finite numbers"),
    ("speaker_prior.mean", [0.0, 1e308, 1.0], r"speaker_prior.mean"),
    ("calibration.uncertain_below", 2, r"calibration.uncertain_below is 2; it must be null or a number in \[0, 1\]"),
    ("calibration", "x", r"calibration is 'x'; it must be an object"),
    ("novelty.threshold", "1", r"novelty.threshold is '1'"),
    ("latent_map.mean", [0.0], r"latent_map.mean is \[0.0\]; it must be a list of vae_config.latent_dim \(16\)"),
    ("latent_map.components", [[0.0] * 16], r"latent_map.components"),
    ("voice", {"units": 128}, r"voice is .*naming its graph file"),
    ("latent_map.points", [[0.0, 1.0], [2.0]], r"latent_map.points"),
    ("latent_map.labels", ["a"], r"latent_map.labels is \['a'\]; it must be a list of names, one per point"),
    ("emovae_version", 1, r"emovae_version is 1"),
    ("metrics", [], r"metrics is \[\]; it must be an object"),
    ("metrics.mean", {"balanced_accuracy": "0.6"}, r"metrics.mean is .*balanced_accuracy is in \[0, 1\]"),
    ("metrics.std", None, r"metrics.std is None"),
    ("metrics.adapted", 3, r"metrics.adapted is 3; it must be an object"),
    ("training_data", {"label_map": {"calm": 1}}, r"training_data is .*label_map maps names to names"),
    ("scalers", [1.0], r"scalers is \[1.0\]; it must be an object of lists"),
    ("scalers.stats_mean", [0.0, 1.0], r"scalers.stats_mean is \[0.0, 1.0\]; it must be a list of 3 finite"),
    ("scalers.z_std", [float("nan")] * 16, r"scalers.z_std is \[nan"),
])
def test_every_field_is_range_checked_naming_the_folder_and_the_field(tmp_path, field, value, why):
    meta = shipped_like()
    read_model_json(write(tmp_path / "ok", meta) or tmp_path / "ok")  # the unmutated description loads
    *parents, key = field.split(".")
    part = meta
    for p in parents:
        part = part[p]
    part[key] = value
    write(tmp_path / "m", meta)
    with pytest.raises(ModelFormatError, match=why) as exc:
        read_model_json(tmp_path / "m")
    assert str(tmp_path / "m" / CONFIG_FILE) in str(exc.value) and "retrain or reinstall" in str(exc.value)


def test_a_network_too_large_to_build_is_refused_before_torch_sees_it(tmp_path):
    meta = shipped_like() | {"vae_config": {"seq_len": 4096, "channels": 4096, "latent_dim": 4096}}
    assert network_parameters(meta) > MAX_PARAMETERS
    write(tmp_path, meta)
    with pytest.raises(ModelFormatError, match=r"describe a network of [\d,]+ parameters, more than 50,000,000"):
        read_model_json(tmp_path)


@pytest.mark.parametrize("text,why", [
    ('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"format": "emovae-model", "x": ' + "9" * 5000 + "}", "thousands of digits"),
    ("[" * 50 + "1" + "]" * 50, "not an emovae model"),
])
def test_hostile_json_text_is_refused(tmp_path, text, why):
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(ModelFormatError, match=why):
        read_model_json(tmp_path)


def test_a_huge_model_json_is_refused_before_it_is_read(tmp_path):
    with open(tmp_path / CONFIG_FILE, "wb") as fh:
        fh.truncate(MAX_JSON_BYTES + 1)  # sparse: nothing is written, and nothing may be read
    with pytest.raises(ModelFormatError, match=f"{MAX_JSON_BYTES + 1} bytes, more than any model.json"):
        read_model_json(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    (tmp_path / CONFIG_FILE).mkdir()
    with pytest.raises(ModelFormatError, match="a folder, not a file"):
        read_model_json(tmp_path)


def test_format_version_must_be_a_small_integer():
    for bad in (10**30, -1, True, "1", 1.0):
        with pytest.raises(ModelFormatError, match="model format"):
            check_meta(minimal_meta() | {"format_version": bad}, "x")


def test_check_graph_names_the_swap_and_the_field_that_disagrees():
    meta = shipped_like()
    inputs = [("seq", ["batch", 64, 2]), ("stats", ["batch", 3]), ("spk_mean", ["batch", 3]), ("spk_std", ["batch", 3])]
    outputs = [(n, ["batch", 2] if n.startswith("prob") else ["batch", 16] if n == "mu" else ["batch"])
               for n in OUTPUTS]
    check_graph(inputs, outputs, meta, "g")  # the graph model.json describes
    check_graph([(n, ["b", "t", "f"]) for n, _ in inputs], outputs, meta, "g")  # symbolic sizes: nothing to compare
    with pytest.raises(ModelFormatError, match=r"g: not an emovae network: inputs \['mel'\].*swapped"):
        check_graph([("mel", ["batch", "frames", 40])], [("voice", ["batch", 512])], meta, "g")
    for field, change in (("classes", lambda m: m.update(classes=["a", "b", "c"])),
                          ("vae_config.seq_len", lambda m: m["vae_config"].update(seq_len=32)),
                          ("frame_names", lambda m: m.update(frame_names=["a"])),
                          ("stat_names", lambda m: m.update(stat_names=["a"])),
                          ("vae_config.latent_dim", lambda m: m["vae_config"].update(latent_dim=8))):
        other = json.loads(json.dumps(meta))
        change(other)
        with pytest.raises(ModelFormatError, match=f"g: the network's .* model.json's {field} gives"):
            check_graph(inputs, outputs, other, "g")


def test_onnx_session_refuses_a_graph_larger_than_any_model(tmp_path):
    pytest.importorskip("onnxruntime")
    with open(tmp_path / "big.onnx", "wb") as fh:
        fh.truncate(MAX_GRAPH_BYTES + 1)
    with pytest.raises(ModelFormatError, match="big.onnx: .* more than any emovae graph"):
        onnx_session(tmp_path / "big.onnx")


def test_every_config_field_has_a_range_check():
    # a field missing from FIELDS reaches the config's own checks unvalidated (a string where a number belongs)
    from dataclasses import fields

    from emovae.config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig
    from emovae.modelfile import FIELDS

    for section, cls in (("feature_config", FeatureConfig), ("vae_config", VAEConfig),
                         ("classifier_config", ClassifierConfig), ("train_config", TrainConfig)):
        missing = {f.name for f in fields(cls)} - set(FIELDS[section])
        assert not missing, f"{section}: {sorted(missing)}"
