import io

import numpy as np
import pytest

from emovae.stream import SILENCE, EmotionStream, StreamConfig, file_chunks, pcm_chunks, run

from .conftest import SR, voice_like

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def rec(tiny_model_dir):
    from emovae.runtime import Recognizer

    return Recognizer.load(tiny_model_dir, backend="onnx")


def speech_then_silence():
    return np.concatenate([voice_like(180, 3.0, seed=1), np.zeros(3 * SR, np.float32)])


def test_windows_timestamps_and_silence(rec):
    y = speech_then_silence()
    events = list(run(rec, np.array_split(y, 37), SR, StreamConfig(window_s=2.0, hop_s=0.5)))
    starts = [e.start_s for e in events]
    assert starts[:3] == [0.0, 0.5, 1.0] and all(e.end_s - e.start_s == pytest.approx(2.0) for e in events)
    assert events[-1].end_s == pytest.approx(6.0)
    first = rec.predict_signal(y[: 2 * SR], SR)  # the first window, offline
    assert events[0].emotion == first.emotion and events[0].probabilities == pytest.approx(first.probabilities, abs=1e-6)
    assert events[-1].emotion == SILENCE and events[-1].probabilities is None
    assert str(events[-1]).endswith(SILENCE)


def test_chunking_does_not_change_results(rec):
    y = speech_then_silence()
    a = list(run(rec, [y], SR))
    b = list(run(rec, np.array_split(y, 200), SR))
    assert [(e.start_s, e.emotion) for e in a] == [(e.start_s, e.emotion) for e in b]
    for x, z in zip(a, b):
        if x.probabilities:
            assert x.probabilities == pytest.approx(z.probabilities, abs=1e-6)


def test_matches_offline_prediction_of_the_window(rec):
    y = voice_like(220, 2.0, seed=4)
    ev = EmotionStream(rec, SR).push(y)
    assert len(ev) == 1
    assert ev[0].probabilities == pytest.approx(rec.predict_signal(y, SR).probabilities, abs=1e-6)


def test_resampled_input_and_short_stream(rec):
    import soxr

    y48 = soxr.resample(voice_like(200, 1.0, seed=5), SR, 48000)
    events = list(run(rec, np.array_split(y48, 7), 48000))
    assert len(events) == 1 and events[0].end_s == pytest.approx(1.0, abs=0.01)  # one partial window at the end


def test_file_and_pcm_sources(rec, tmp_path):
    import soundfile as sf

    y = speech_then_silence()
    sf.write(tmp_path / "s.wav", y, SR)
    chunks, sr = file_chunks(tmp_path / "s.wav")
    from_file = [e.emotion for e in run(rec, chunks, sr)]
    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()
    from_pcm = [e.emotion for e in run(rec, pcm_chunks(io.BytesIO(pcm), block_s=0.033), SR)]
    assert from_file == from_pcm and SILENCE in from_file


def test_bad_config():
    from emovae.errors import ParameterError

    with pytest.raises(ParameterError):
        StreamConfig(window_s=1.0, hop_s=2.0)


def test_events_carry_the_arousal_and_valence_of_their_window(rec):
    """Each speech window's event has its window's arousal and valence (the tiny model has the heads), in the
    dataclass, its dict and its text line; silent windows, and windows the guard calls not speech, have none."""
    y = speech_then_silence()
    events = list(run(rec, [y], SR, StreamConfig(window_s=2.0, hop_s=0.5)))
    with_affect = [e for e in events if e.arousal is not None]
    assert with_affect and events[-1].emotion == SILENCE
    for e in events:
        if e.probabilities is not None:
            p = rec.predict_signal(y[int(e.start_s * SR) : int(e.end_s * SR)], SR)
            assert e.answer == p.answer and (p.arousal is None) == (e.arousal is None) == (e.valence is None)
        if e.arousal is None:
            assert not {"arousal", "valence"} & set(e.to_dict()) and "arousal" not in str(e)
            continue
        assert (e.arousal, e.valence) == pytest.approx((p.arousal, p.valence), abs=1e-6)
        assert e.to_dict()["arousal"] == round(e.arousal, 4) and e.to_dict()["valence"] == round(e.valence, 4)
        assert str(e).endswith(f"arousal {e.arousal:+.2f} valence {e.valence:+.2f}")
