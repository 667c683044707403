"""Inference: the Recognizer over both backends, predictions and their fields, bare ONNX files, errors, test-time
augmentation, the latent map, and the shipped model."""

import json
import shutil

import numpy as np
import pytest

from emovae.errors import AudioError, ModelFormatError, ParameterError
from emovae.modelfile import CONFIG_FILE, PRETRAINED_DIR
from emovae.runtime import Recognizer, average_with_copies, fit_latent_map, load_pretrained, project_to_map

from .conftest import SR, voice_like

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def rec(tiny_model_dir):
    return Recognizer.load(tiny_model_dir, backend="onnx")


def test_onnx_and_torch_backends_agree(tiny_model_dir, rec):
    pytest.importorskip("torch")
    torch_ = Recognizer.load(tiny_model_dir, backend="torch")
    auto = Recognizer.load(tiny_model_dir)
    assert rec.backend == auto.backend == "onnx" and torch_.backend == "torch"
    y = voice_like(200, 1.5, seed=9)
    np.testing.assert_allclose(rec.predict_proba(y, SR), torch_.predict_proba(y, SR), atol=1e-5)
    a, b = rec.predict_signal(y, SR), torch_.predict_signal(y, SR)
    np.testing.assert_allclose(a.latent, b.latent, atol=1e-4)
    assert a.novelty == pytest.approx(b.novelty, rel=1e-4)


def test_a_prediction_reports_what_the_network_computed(rec, tmp_path):
    import soundfile as sf

    from emovae import audio

    p = tmp_path / "clip.wav"
    sf.write(p, voice_like(180, 1.2, sr=22050), 22050)  # another rate: resampled on load
    pred = rec.predict_file(p)
    f = rec.features(audio.load(p, SR), SR)
    out = rec.network.forward([f])
    assert pred.file == str(p) and list(pred.probabilities) == list(rec.classes)
    np.testing.assert_allclose(list(pred.probabilities.values()), out["probabilities"][0], atol=1e-6)
    assert pred.emotion == rec.classes[int(np.argmax(out["probabilities"][0]))]
    assert pred.confidence == max(pred.probabilities.values()) and pred.top(1)[0] == (pred.emotion, pred.confidence)
    assert [e for e, _ in pred.top(4)] == sorted(rec.classes, key=lambda c: -pred.probabilities[c])
    np.testing.assert_allclose(pred.latent, out["mu"][0], atol=1e-6)
    np.testing.assert_allclose(pred.map_xy, project_to_map(out["mu"], rec.meta["latent_map"])[0], atol=1e-6)
    assert pred.novelty == pytest.approx(float(out["novelty"][0]))
    assert 0 <= pred.speech <= 1 and pred.in_domain == (pred.speech >= rec.guard.threshold)  # the speech guard
    assert pred.duration_s == pytest.approx(f.frames.shape[0] * 0.01) and 0.5 < pred.duration_s <= 1.21
    d = pred.to_dict()
    assert d["emotion"] == pred.emotion and d["latent_map"] == [round(v, 4) for v in pred.map_xy]
    assert d["probabilities"] == {k: round(v, 6) for k, v in pred.probabilities.items()}
    assert "adapted" not in d and "file" not in rec.predict_signal(voice_like(180, 1.0), SR).to_dict()


def test_the_speech_guard_reads_cues_computed_with_the_features_as_it_would_compute_them(rec):
    # a service's feature worker computes the cues, so the serving process does not; the answer must not change
    from dataclasses import replace

    from emovae.guard import cues

    y = voice_like(190, 1.3, seed=4)
    f = rec.feature_job.signal(y, SR, copies=False)[0]
    np.testing.assert_array_equal(f.cues, cues(f.frames, f.frame_names))
    with_cues = rec.predict_features([f])[0]
    without = rec.predict_features([replace(f, cues=None)])[0]
    assert with_cues.speech == without.speech == rec.predict_signal(y, SR).speech
    wrong = rec.predict_features([replace(f, cues=np.zeros_like(f.cues))])[0]
    assert wrong.speech != with_cues.speech  # the stored cues are what the guard reads


def test_signal_errors(rec):
    with pytest.raises(AudioError, match="silent"):
        rec.predict_proba(np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="too short"):
        rec.predict_proba(voice_like(200, 0.05), SR)
    with pytest.raises(AudioError, match="shape"):
        rec.predict_proba(np.zeros((2, 2, 2), np.float32), SR)
    with pytest.raises(AudioError, match="file not found"):
        rec.predict_file("/no/such/file.wav")


def test_a_bare_onnx_file_runs_alone(tiny_model_dir, rec, tmp_path):
    """model.onnx carries model.json's inference part as metadata: it runs without the folder."""
    shutil.copy(tiny_model_dir / "model.onnx", tmp_path / "m.onnx")
    bare = Recognizer.load(tmp_path / "m.onnx")
    y = voice_like(150, 1.0, seed=2)
    np.testing.assert_array_equal(bare.predict_proba(y, SR), rec.predict_proba(y, SR))
    assert bare.classes == rec.classes and bare.novelty_threshold == rec.novelty_threshold
    assert bare.predict_signal(y, SR).map_xy == rec.predict_signal(y, SR).map_xy
    with pytest.raises(ParameterError, match="onnx backend"):
        Recognizer.load(tmp_path / "m.onnx", backend="torch")


def test_load_errors(tmp_path, tiny_model_dir):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    with pytest.raises(ModelFormatError, match="no such model folder"):
        Recognizer.load(tmp_path / "none")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFormatError, match="not a loadable ONNX"):
        Recognizer.load(tmp_path / "bad.onnx")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    (tmp_path / "plain.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelFormatError, match="without emovae metadata"):
        Recognizer.load(tmp_path / "plain.onnx")
    with pytest.raises(ParameterError, match="backend"):
        Recognizer.load(tiny_model_dir, backend="tf")
    (tmp_path / "folder").mkdir()
    shutil.copy(tiny_model_dir / CONFIG_FILE, tmp_path / "folder" / CONFIG_FILE)
    with pytest.raises(ModelFormatError, match="no model.onnx"):
        Recognizer.load(tmp_path / "folder", backend="onnx")


def test_test_time_augmentation_averages_the_speed_copies(tiny_model_dir, rec):
    from emovae import audio
    from emovae.features import extract

    tta = Recognizer.load(tiny_model_dir, tta=True)
    speeds = tuple(json.loads((tiny_model_dir / CONFIG_FILE).read_text())["train_config"]["speed_perturb"])
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
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    copies = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    out = average_with_copies(proba, copies, np.array([0, 0, 1]))  # clip 2 has no copies
    np.testing.assert_allclose(out, [[1 / 3, 2 / 3], [0.5, 0.5], [0.5, 0.5]], atol=1e-6)


def test_latent_map_is_the_pca_of_the_training_latents():
    rng = np.random.default_rng(0)
    t = rng.standard_normal(50)
    mu = np.outer(t, [3.0, 0.0, 4.0]) + 0.01 * rng.standard_normal((50, 3)) + [1.0, 2.0, 3.0]  # along (3, 0, 4)
    lmap = fit_latent_map(mu, ["neutral"] * 50)
    first = np.array(lmap["components"][0])
    np.testing.assert_allclose(np.abs(first), [0.6, 0.0, 0.8], atol=1e-2)
    assert first[0] > 0  # the sign convention: the first coordinate of each component is positive
    np.testing.assert_allclose(project_to_map(mu, lmap), lmap["points"], atol=1e-3)
    np.testing.assert_allclose(np.array(lmap["points"])[:, 0], (t - t.mean()) * 5 * np.sign(first[0]), atol=0.05)
    assert project_to_map(mu[0], lmap).shape == (1, 2)


@pytest.mark.skipif(not (PRETRAINED_DIR / CONFIG_FILE).exists(), reason="no shipped model in this checkout")
def test_the_shipped_model_names_the_demo_clips():
    """The bundled clips' speakers are among the shipped model's training speakers: it must name most of them (the
    four-corpus model, regularised for corpora it never heard, names 6 of the 8; the RAVDESS-only one named 8)."""
    from emovae.data import parse_name
    from emovae.evaluate import demo_clips

    rec = load_pretrained(backend="onnx")
    clips = demo_clips()
    preds = [rec.predict_file(c) for c in clips]
    assert len(clips) == 8 and all(p.in_domain for p in preds)
    merged = rec.meta["training_data"].get("label_map") or {}  # the labels the model was trained with merged
    truth = [merged.get(parse_name(c).emotion, parse_name(c).emotion) for c in clips]
    assert set(truth) <= set(rec.classes)
    assert sum(p.emotion == t for p, t in zip(preds, truth)) >= 6


def test_answer_of_says_not_speech_then_uncertain_then_the_emotion():
    from emovae.runtime import NOT_SPEECH, UNCERTAIN, answer_of

    assert answer_of("happy", 0.9, False, 0.4) == NOT_SPEECH  # the guard wins, however sure the heads are
    assert answer_of("happy", 0.39, True, 0.4) == UNCERTAIN
    assert answer_of("happy", 0.4, True, 0.4) == "happy"
    assert answer_of("happy", 0.1, None, None) == "happy"  # a model without a threshold always names the emotion


def test_the_answer_follows_the_models_uncertain_threshold(tiny_model_dir, tmp_path):
    """The threshold model.json's calibration stores turns low-confidence clips into "uncertain" in the API, its
    JSON and the stream, with the probabilities kept."""
    from emovae.stream import run

    y = voice_like(200, 1.5, seed=9)
    plain = Recognizer.load(tiny_model_dir, backend="onnx")
    conf = plain.predict_signal(y, SR).confidence
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / CONFIG_FILE).read_text())
    for below, expected in ((conf + 0.01, "uncertain"), (conf - 0.01, None)):
        meta["calibration"]["uncertain_below"] = below
        (d / CONFIG_FILE).write_text(json.dumps(meta))
        p = Recognizer.load(d, backend="onnx").predict_signal(y, SR)
        assert p.answer == (expected or p.emotion) and p.emotion in plain.classes
        assert p.to_dict()["answer"] == p.answer and p.probabilities == plain.predict_signal(y, SR).probabilities
    meta["calibration"]["uncertain_below"] = 1.0  # every clip uncertain: the stream says so too
    (d / CONFIG_FILE).write_text(json.dumps(meta))
    events = [e for e in run(Recognizer.load(d, backend="onnx"), [y], SR) if e.probabilities is not None]
    assert events and all(e.answer == "uncertain" and e.to_dict()["answer"] == "uncertain" for e in events)
    assert "uncertain (most probable" in str(events[0])


def damaged_copy(src, dst, change=None):
    """A copy of the model folder ``src`` at ``dst`` with model.json changed by ``change(meta)``."""
    shutil.copytree(src, dst)
    if change is not None:
        meta = json.loads((dst / CONFIG_FILE).read_text())
        change(meta)
        (dst / CONFIG_FILE).write_text(json.dumps(meta))
    return dst


def test_a_missing_model_onnx_is_named_as_such_by_every_backend(tiny_model_dir, tmp_path):
    d = damaged_copy(tiny_model_dir, tmp_path / "m")
    (d / "model.onnx").unlink()
    for backend in ("auto", "onnx", "torch"):
        with pytest.raises(ModelFormatError, match=r"m: no model.onnx") as exc:
            Recognizer.load(d, backend=backend)
        assert "weights.pt" not in str(exc.value)


@pytest.mark.parametrize("change,field", [
    (lambda m: m.update(classes=m["classes"][:3]), "classes"),  # 3 classes for a network with 4 outputs
    (lambda m: m["vae_config"].update(seq_len=32), "vae_config.seq_len"),
])
def test_a_model_json_that_does_not_fit_its_network_is_refused_at_load(tiny_model_dir, tmp_path, change, field):
    d = damaged_copy(tiny_model_dir, tmp_path / "m", change)
    with pytest.raises(ModelFormatError, match=f"m/model.onnx: the network's .* model.json's {field} gives"):
        Recognizer.load(d, backend="onnx")
    pytest.importorskip("torch")
    with pytest.raises(ModelFormatError, match="model.onnx: its .* has shape"):
        Recognizer.load(d, backend="torch")


@pytest.mark.parametrize("change,why", [
    (lambda m: m["feature_config"].update(n_mfcc=12), "frame_names .* are not the .* its feature_config gives"),
    (lambda m: m["feature_config"].update(percentiles=[50]), "stat_names .* are not the .* its feature_config"),
    (lambda m: m["guard"].update(threshold=float("nan")), "guard holds numbers that are not finite"),
    (lambda m: m["guard"].update(mean=[0.0]), "speech guard's arrays do not fit"),
])
def test_configs_edited_after_training_are_refused_naming_the_folder(tiny_model_dir, tmp_path, change, why):
    d = damaged_copy(tiny_model_dir, tmp_path / "m", change)
    with pytest.raises(ModelFormatError, match=why) as exc:
        Recognizer.load(d)
    assert str(d) in str(exc.value)


@pytest.mark.skipif(not (PRETRAINED_DIR / CONFIG_FILE).exists(), reason="no shipped model in this checkout")
def test_swapped_network_and_voice_student_are_named(tmp_path):
    d = damaged_copy(PRETRAINED_DIR, tmp_path / "m")
    (d / "model.onnx").rename(d / "x")
    (d / "voice.onnx").rename(d / "model.onnx")
    (d / "x").rename(d / "voice.onnx")
    with pytest.raises(ModelFormatError, match=r"m/model.onnx: not an emovae network: inputs \['mel'\].*swapped"):
        Recognizer.load(d, backend="onnx")
    (d / "model.onnx").unlink()
    shutil.copy(d / "voice.onnx", d / "model.onnx")  # now the network twice: voice.onnx is not a student
    with pytest.raises(ModelFormatError, match=r"m/voice.onnx: not a voice student.*swapped"):
        Recognizer.load(d, backend="onnx")


def test_a_bare_onnx_files_metadata_is_checked_as_model_json_is(tiny_model_dir, tmp_path):
    onnx = pytest.importorskip("onnx")
    from emovae.modelfile import METADATA_KEY

    proto = onnx.load(str(tiny_model_dir / "model.onnx"))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(entry.value)
    for value, why in ((json.dumps(meta | {"vae_config": meta["vae_config"] | {"seq_len": 10**10}}),
                        r"m.onnx \(its emovae metadata\): vae_config.seq_len is 10000000000"),
                       ("[" * 100_000, r"m.onnx \(its emovae metadata\): JSON nested too deeply")):
        entry.value = value
        onnx.save(proto, str(tmp_path / "m.onnx"))
        with pytest.raises(ModelFormatError, match=why):
            Recognizer.load(tmp_path / "m.onnx")


def test_the_decoded_size_bound_is_an_option_of_the_recognizer(tiny_model_dir, tmp_path):
    import soundfile as sf

    y = voice_like(180, 1.0, seed=4)
    sf.write(tmp_path / "stereo.wav", np.stack([y, y], 1), SR)  # 128 000 bytes decoded
    small = Recognizer.load(tiny_model_dir, max_decoded_bytes=100_000)
    with pytest.raises(AudioError, match=r"stereo.wav: 1.0 s of 2 channel\(s\) at 16000 Hz .* over the 97.7 KiB"):
        small.predict_file(tmp_path / "stereo.wav")
    with pytest.raises(AudioError, match=r"<signal>: an array of 32000 samples"):
        small.predict_proba(np.stack([y, y], 1), SR)
    assert small.predict_proba(y, SR).shape == (len(small.classes),)  # mono: 64 000 bytes, within the bound
    assert Recognizer.load(tiny_model_dir).predict_file(tmp_path / "stereo.wav").emotion in small.classes


def test_arousal_and_valence_come_from_their_heads_and_not_for_non_speech(rec):
    """Each prediction carries the arousal/valence heads' outputs: single-clip, or mixed with the adapted heads by
    the trust a speaker's clips earn (as the probabilities are); a clip the guard calls not speech gets none."""
    y = voice_like(200, 1.5, seed=9)
    f = rec.features(y, SR)
    pred = rec.predict_signal(y, SR)
    assert pred.in_domain is not False
    np.testing.assert_allclose([pred.arousal, pred.valence], rec.network.forward([f])["dimensions"][0], atol=1e-6)
    assert pred.to_dict()["arousal"] == round(pred.arousal, 4) and -1 <= pred.valence <= 1
    stats = rec.network.prepare([f])[0].stats
    moments = (stats * 0.9, np.abs(stats) * 0.5 + 1)
    out = rec.network.forward([f], spk_mean=moments[0], spk_std=moments[1])
    adapted = rec.predict_features([f], moments=moments, speaker_clips=5, trust=0.25)[0]
    np.testing.assert_allclose([adapted.arousal, adapted.valence],
                               0.75 * out["dimensions"][0] + 0.25 * out["dimensions_adapted"][0], atol=1e-6)
    t = np.arange(int(1.5 * SR)) / SR
    square = rec.predict_signal((0.5 * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32), SR)
    assert square.in_domain is False and square.answer == "not speech"
    assert square.arousal is None and square.valence is None and "arousal" not in square.to_dict()


def test_a_model_json_that_hides_the_networks_arousal_heads_is_refused(tiny_model_dir, tmp_path):
    """A graph with arousal/valence outputs needs model.json's "dimensions" (and the reverse): one of the two
    files is from another model."""
    d = damaged_copy(tiny_model_dir, tmp_path / "m", lambda m: m.update(dimensions=None))
    with pytest.raises(ModelFormatError, match="outputs .*dimensions.* not .*probabilities_adapted'\\]"):
        Recognizer.load(d, backend="onnx")
