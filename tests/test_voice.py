import numpy as np
import pytest

from emovae import voice

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _lstm_reference(x: np.ndarray, layers: list[dict]) -> np.ndarray:
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


def _random_layers(rng, sizes=((40, 8), (8, 8))) -> list[dict]:
    # weights on a float16 grid: the graph stores biases at half precision
    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float16).astype(np.float32)

    return [{"weight_ih": w(4 * h, i), "weight_hh": w(4 * h, h), "bias_ih": w(4 * h), "bias_hh": w(4 * h)}
            for i, h in sizes]


def _run(model, mel):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"mel": mel})[0]


def test_float_graph_matches_a_numpy_lstm_and_summarises_by_mean_and_std():
    rng = np.random.default_rng(0)
    layers = _random_layers(rng)
    mel = rng.random((2, 30, 40)).astype(np.float32)
    out = _run(voice.build_voice_onnx(layers, bits=None), mel)
    assert out.shape == (2, 16)
    for b in range(2):
        h = _lstm_reference(mel[b].astype(np.float64), layers)
        np.testing.assert_allclose(out[b], np.concatenate([h.mean(0), h.std(0)]), atol=1e-5)


def test_quantised_graphs_stay_close_and_eight_bits_closer_than_four():
    rng = np.random.default_rng(1)
    layers = _random_layers(rng, ((40, 64), (64, 64)))
    mel = rng.random((1, 40, 40)).astype(np.float32)
    ref = _run(voice.build_voice_onnx(layers, bits=None), mel)
    err8 = np.abs(_run(voice.build_voice_onnx(layers, bits=8), mel) - ref).max()
    err4 = np.abs(_run(voice.build_voice_onnx(layers, bits=4), mel) - ref).max()
    assert 0 < err8 < err4 < 0.5
    assert err8 < min(0.05, err4 / 4)


def test_quantize_blocks_bounds_the_error_by_half_a_step():
    w = np.random.default_rng(2).standard_normal((6, 150))
    q, scale = voice.quantize_blocks(w, bits=4, block=64)
    assert q.min() >= -8 and q.max() <= 7 and scale.shape == (6, 3)
    steps = np.repeat(scale.astype(np.float64), 64, axis=1)[:, :150]
    assert np.all(np.abs(q * steps - w) <= steps / 2 + 1e-3 * np.abs(w).max())


def test_level_raises_quiet_clips_to_minus_30_dbfs_and_leaves_loud_ones():
    t = np.arange(16000) / 16000
    quiet = (0.001 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    loud = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    assert 10 * np.log10(np.mean(voice.level(quiet).astype(np.float64) ** 2)) == pytest.approx(-30, abs=0.01)
    assert np.array_equal(voice.level(loud), loud)
    assert np.array_equal(voice.level(np.zeros(100, np.float32)), np.zeros(100, np.float32))


def test_encoder_mel_puts_a_tone_in_its_band_every_10_ms():
    from emovae.features import _hz_to_mel, _mel_to_hz

    y = np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000).astype(np.float32)
    mel = voice.encoder_mel(y)
    assert mel.shape == (1 + 8000 // 160, 40)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(8000.0), 42))
    band = int(np.argmax(mel[25]))
    assert edges[band] < 1000 < edges[band + 2]


def test_voice_names_match_the_encoder_output():
    names = voice.voice_names()
    assert len(names) == 512 and names[0] == "voice_mean_0" and names[-1] == "voice_std_255"


def test_a_student_learns_a_teacher_and_its_graph_computes_the_same_statistics():
    pytest.importorskip("torch")
    import torch

    rng = np.random.default_rng(3)
    teacher = _random_layers(rng, ((40, 6),))
    mels = [(rng.random((int(rng.integers(20, 40)), 40)) * 10 ** rng.uniform(-1, 0.5, 40)).astype(np.float32)
            for _ in range(24)]
    targets = voice.teacher_frames(mels, teacher)
    assert [t.shape for t in targets] == [(len(m), 6) for m in mels]
    ref = _lstm_reference(mels[0].astype(np.float64), teacher)
    np.testing.assert_allclose(targets[0], ref, atol=2e-3)  # float16 frames of the teacher
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only wait on each other (badly on a busy machine)
    try:
        student = voice.train_student(mels, targets, hidden=16, epochs=60, batch=8, lr=1e-2)
    finally:
        torch.set_num_threads(threads)
    assert student["loss"][-1] < 0.4 * student["loss"][0]  # it learns (z-scored targets: 1.0 = the mean)
    # the exported graph = log, standardise, the student's LSTM, its linear map, mean and std over frames
    out = _run(voice.build_voice_onnx(student["layers"], bits=None, log_scaler=student["log_scaler"],
                                      projection=student["projection"]), mels[1][None])
    lstm = voice._torch_lstm(student["layers"])
    m, s = student["log_scaler"]
    x = torch.from_numpy(((10 * np.log10(mels[1] + 1e-10) - m) / s).astype(np.float32))[None]
    with torch.no_grad():
        h = lstm(x)[0][0].numpy() @ student["projection"][0].T + student["projection"][1]
    np.testing.assert_allclose(out[0], np.concatenate([h.mean(0), h.std(0)]), atol=1e-4)
    half = _run(voice.build_voice_onnx(student["layers"], bits=16, log_scaler=student["log_scaler"],
                                       projection=student["projection"]), mels[1][None])
    assert np.abs(half - out).max() < 0.05


def test_teacher_weights_load_as_two_layers_of_256():
    if not voice.TEACHER_FILE.is_file():
        pytest.skip("teacher weights not built")
    layers = voice.load_teacher()
    assert len(layers) == 2 and layers[0]["weight_ih"].shape == (1024, 40) and layers[1]["weight_hh"].shape == (1024, 256)
