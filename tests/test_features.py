from dataclasses import replace

import numpy as np
import pytest

from emovae import dsp
from emovae import features as F
from emovae.config import FeatureConfig
from emovae.errors import AudioError, ParameterError

from .conftest import SR, tone, voice_like

CFG = FeatureConfig()


def stats_of(y, cfg=CFG):
    f = F.extract(y, SR, cfg)
    return dict(zip(f.stat_names, f.stats)), f


def test_tone_220_gives_f0_and_centroid_near_220():
    s, f = stats_of(tone(220.0))
    assert s["f0_hz__p50"] == pytest.approx(220, rel=0.01)
    assert s["f0_hz__mean"] == pytest.approx(220, rel=0.01)
    assert s["voiced__mean"] > 0.9
    assert s["centroid_hz__p50"] == pytest.approx(220, rel=0.1)


@pytest.mark.parametrize("f0", [80.0, 155.0, 310.0])
def test_yin_tracks_harmonic_voice(f0):
    s, _ = stats_of(voice_like(f0, 1.0))
    assert s["f0_hz__p50"] == pytest.approx(f0, rel=0.04)


def test_max_pitch_option_returns_harmonic_above_f0():
    y = tone(155.0, harmonics=4)  # partials at 155, 310, 465, 620
    s_yin, _ = stats_of(y)
    s_max, _ = stats_of(y, FeatureConfig(pitch_method="max"))
    assert s_yin["f0_hz__p50"] == pytest.approx(155, rel=0.02)
    assert s_max["f0_hz__p50"] == pytest.approx(465, rel=0.03)  # highest partial below f0_max = 600 Hz


def test_unvoiced_noise_is_marked():
    y = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    f = F.extract(y, SR, CFG)
    col = f.frame_names.index("f0_hz")
    assert np.isnan(f.frames[:, col]).mean() > 0.8
    assert np.all(f.frames[:, f.frame_names.index("voiced")][np.isnan(f.frames[:, col])] == 0)


def test_band_energy_ratio_lowpassed_noise_higher_than_white():
    rng = np.random.default_rng(1)
    white = rng.standard_normal(SR)
    spec = np.fft.rfft(white)
    spec[np.fft.rfftfreq(SR, 1 / SR) > 1500] = 0
    low = np.fft.irfft(spec, n=SR)
    s_white, _ = stats_of((0.1 * white).astype(np.float32))
    s_low, _ = stats_of((0.1 * low / low.std()).astype(np.float32))
    assert s_low["ber_db__mean"] > s_white["ber_db__mean"] + 20
    assert s_white["ber_db__mean"] == pytest.approx(10 * np.log10(2000 / 6000), abs=1.0)  # flat spectrum


def test_silence_gives_finite_values():
    f = F.extract(np.zeros(SR, np.float32), SR, CFG)
    assert np.all(np.isfinite(f.stats))
    finite_cols = [i for i, n in enumerate(f.frame_names) if n not in ("f0_hz", "hnr_db", "jitter", "shimmer_db")]
    assert np.all(np.isfinite(f.frames[:, finite_cols]))


def test_voice_quality_orders_clean_noisy_wobbly_and_loud_voices():
    rng = np.random.default_rng(3)
    steady = tone(150.0, harmonics=6)
    noisy = (steady + 0.15 * rng.standard_normal(len(steady))).astype(np.float32)
    t = np.arange(len(steady)) / SR
    wobbly = (0.5 * np.sin(2 * np.pi * np.cumsum(150 * (1 + 0.05 * np.sin(2 * np.pi * 40 * t))) / SR)).astype(np.float32)
    tremolo = (steady * (1 + 0.5 * np.sin(2 * np.pi * 30 * t))).astype(np.float32)
    s_steady, f = stats_of(steady)
    s_noisy, _ = stats_of(noisy)
    s_wobbly, _ = stats_of(wobbly)
    s_tremolo, _ = stats_of(tremolo)
    s_quiet, _ = stats_of((0.1 * steady).astype(np.float32))
    assert f.frame_names[-4:] == F.VOICE_QUALITY_COLUMNS
    assert s_steady["hnr_db__p50"] > 20 and s_noisy["hnr_db__p50"] < s_steady["hnr_db__p50"] - 10
    assert s_wobbly["jitter__mean"] > 5 * s_steady["jitter__mean"]
    assert s_tremolo["shimmer_db__mean"] > 2 * s_steady["shimmer_db__mean"]
    assert s_quiet["loudness__mean"] == pytest.approx(0.1 ** 0.6 * s_steady["loudness__mean"], rel=1e-3)  # power^0.3
    off = FeatureConfig(voice_quality=False)
    assert not set(F.VOICE_QUALITY_COLUMNS) & set(F.frame_names(off))
    assert F.extract(steady, SR, off).stats.shape == (len(F.stat_names(CFG)) - 4 * 10,)


def test_names_match_columns_and_are_unique():
    for cfg in (CFG, FeatureConfig(n_mfcc=13, deltas=False, percentiles=(25, 75))):
        f = F.extract(tone(300.0), SR, cfg)
        assert f.frames.shape[1] == len(f.frame_names) == len(set(f.frame_names))
        assert f.stats.shape == (len(f.stat_names),) and len(set(f.stat_names)) == len(f.stat_names)
        assert f.frame_names[: cfg.n_mfcc] == tuple(f"mfcc_{i}" for i in range(cfg.n_mfcc))
        assert ("duration_s" in f.stat_names) and f.stat_names.index("duration_s") == len(f.frame_names) * (
            2 + len(cfg.percentiles))
    plain = FeatureConfig(shape_stats=False)
    assert F.stat_names(plain)[-1] == "duration_s" and F.stat_names(CFG)[: len(F.stat_names(plain))] == F.stat_names(plain)


def _shape(f, name):
    return float(f.stats[f.stat_names.index(name)])


def test_shape_stats_known_answers():
    """A rising glide has a positive F0 slope and a wide semitone range; a steady tone has neither; a tone that
    gets louder has a positive level slope."""
    sr, n = SR, 2 * SR
    glide = (0.5 * np.sin(2 * np.pi * np.cumsum(np.linspace(150, 300, n)) / sr)).astype(np.float32)
    steady = F.extract(tone(200.0, 2.0), SR, CFG)
    rising = F.extract(glide, SR, CFG)
    assert _shape(rising, "f0_hz__slope") > 50 and abs(_shape(steady, "f0_hz__slope")) < 2
    assert 10 < _shape(rising, "f0_st__range90") < 13  # 150 -> 300 Hz is 12 semitones
    assert _shape(steady, "f0_st__range90") < 0.5 and _shape(steady, "voiced__ratio") > 0.9
    louder = F.extract((tone(200.0, 2.0) * np.linspace(0.05, 1.0, n)).astype(np.float32), SR, CFG)
    assert _shape(louder, "rms_db__slope") > 5 and _shape(louder, "rms_db__iqr") > _shape(steady, "rms_db__iqr")


def test_shape_stats_moments_slope_and_ranges():
    """Skewness and excess kurtosis of an exponential column (2 and 6), the slope of a ramp over the clip (per
    half-clip: time runs over [-1, 1]), zeros for a constant column, and the ranges passed through by name."""
    cfg = FeatureConfig(n_mfcc=13)
    names = F.stat_names(cfg)
    shape_names = names[names.index("duration_s") + 1:]
    cols = F.frame_names(cfg)
    rng = np.random.default_rng(0)
    n = 20000
    x = rng.standard_normal((n, len(cols)))
    x[:, 0] = rng.exponential(size=n)
    x[:, 1] = np.linspace(0, 4, n)
    x[:, 2] = 1.0
    ranges = rng.random((len(cols), 2))
    s = dict(zip(shape_names, F.shape_stats(x, cfg, ranges)))
    assert len(s) == len(shape_names) == len(F.shape_stats(x, cfg, ranges))
    assert s["mfcc_0__skew"] == pytest.approx(2, abs=0.2) and s["mfcc_0__kurt"] == pytest.approx(6, abs=1.5)
    assert abs(s["mfcc_0__slope"]) < 0.05 and s["mfcc_1__slope"] == pytest.approx(2.0)
    assert s["mfcc_2__skew"] == s["mfcc_2__kurt"] == s["mfcc_2__slope"] == 0.0
    assert s["mfcc_3__iqr"] == ranges[3, 0] and s["rms_db__range80"] == ranges[cols.index("rms_db"), 1]


def test_deterministic():
    y = voice_like(200, 1.2, seed=3)
    a, b = F.extract(y, SR, CFG), F.extract(y.copy(), SR, CFG)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.stats, b.stats)


def test_trims_leading_and_trailing_silence():
    y = np.concatenate([np.zeros(SR // 2), tone(220.0, 1.0), np.zeros(SR // 2)]).astype(np.float32)
    s, _ = stats_of(y)
    assert s["duration_s"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.slow  # librosa's STFT compiles numba code: about a minute on a fresh install
def test_mfcc_matches_librosa():
    librosa = pytest.importorskip("librosa")
    y = voice_like(180, 1.0, seed=5)
    ours = F.mfcc(F.stft_power(y, CFG), CFG)
    ref = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=CFG.n_mfcc, n_fft=CFG.n_fft, hop_length=CFG.hop_length,
                               win_length=CFG.win_length, n_mels=CFG.n_mels).T
    np.testing.assert_allclose(ours, ref, atol=1e-2)


@pytest.mark.slow  # librosa's STFT compiles numba code: about a minute on a fresh install
def test_centroid_matches_librosa_on_sound():
    librosa = pytest.importorskip("librosa")
    y = voice_like(180, 1.0, seed=6)
    ours = F.spectral_centroid(F.stft_power(y, CFG), CFG)
    ref = librosa.feature.spectral_centroid(y=y, sr=SR, n_fft=CFG.n_fft, hop_length=CFG.hop_length,
                                            win_length=CFG.win_length)[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-3)


def test_features_stft_and_frame_energy_equal_their_definitions():
    y = voice_like(150, 2.5, seed=7)
    np.testing.assert_array_equal(F.stft_power(y, CFG), dsp.stft_power(y, CFG.n_fft, CFG.win_length, CFG.hop_length))
    w = dsp.frame_signal(y, CFG.win_length, CFG.hop_length)
    np.testing.assert_allclose(F.frame_energy_db(y, CFG), 10 * np.log10(np.mean(w**2, axis=1) + 1e-10), atol=1e-9)


def _parabolic(seg: np.ndarray, i: int) -> float:
    """Sub-sample offset of the dip at seg[i] from the parabola through it and its neighbours, in [-1, 1]."""
    if not 1 <= i <= len(seg) - 2:
        return 0.0
    left, mid, right = seg[i - 1], seg[i], seg[i + 1]
    denom = left - 2 * mid + right
    return float(np.clip(0.5 * (left - right) / denom, -1, 1)) if abs(denom) > 1e-10 else 0.0


def _yin_direct(frame: np.ndarray, cfg: FeatureConfig) -> tuple[float, float]:
    """YIN of one frame straight from its definition (difference function by explicit sums), no FFT."""
    w = cfg.yin_frame_length // 2
    tau_min, tau_max = int(cfg.sample_rate // cfg.f0_max), int(np.ceil(cfg.sample_rate / cfg.f0_min))
    x = frame.astype(np.float64)
    d = np.array([np.sum((x[:w] - x[tau : tau + w]) ** 2) for tau in range(tau_max + 1)])
    cmnd = np.ones_like(d)
    cmnd[1:] = d[1:] * np.arange(1, tau_max + 1) / np.cumsum(d[1:])
    seg = cmnd[tau_min:]
    dips = [i for i in range(1, len(seg) - 1) if seg[i] <= seg[i - 1] and seg[i] < seg[i + 1]
            and seg[i] < cfg.yin_threshold]
    i = dips[0] if dips else int(np.argmin(seg))
    return cfg.sample_rate / (tau_min + i + _parabolic(seg, i)), seg[i]


def test_yin_equals_its_definition_frame_by_frame():
    y = voice_like(130, 1.6, seed=8) * np.linspace(0.2, 1.0, int(1.6 * SR)).astype(np.float32)
    mask = np.zeros(1 + len(y) // CFG.hop_length, bool)
    mask[5::2] = True  # skipped frames must stay NaN; selected ones span several blocks
    f0, ap = F.yin(y, CFG, frames_mask=mask)
    assert np.all(np.isnan(f0[~mask])) and np.all(ap[~mask] == 1)
    frames = dsp.frame_signal(y, CFG.yin_frame_length, CFG.hop_length)
    for t in np.flatnonzero(mask)[::7]:
        ref_f0, ref_ap = _yin_direct(frames[t], CFG)
        assert f0[t] == pytest.approx(ref_f0, rel=1e-6) and ap[t] == pytest.approx(ref_ap, abs=1e-6)


def test_bad_input_errors():
    with pytest.raises(AudioError, match="too short"):
        F.extract(np.zeros(100, np.float32), SR, CFG)
    with pytest.raises(AudioError, match="expects 16000 Hz"):
        F.extract(tone(220.0), 8000, CFG)
    with pytest.raises(AudioError, match="mono"):
        F.extract(np.zeros((SR, 2), np.float32), SR, CFG)
    with pytest.raises(ParameterError, match="pitch_method"):
        FeatureConfig(pitch_method="crepe")


@pytest.mark.realdata
def test_real_clip_pitch_is_plausible_f0(real_data):
    from emovae import audio

    male = audio.load(real_data / "Actor_01" / "03-01-01-01-01-01-01.flac")
    s, f = stats_of(male)
    assert 80 < s["f0_hz__p50"] < 200  # a male speaking voice, not a harmonic
    s_max, _ = stats_of(male, FeatureConfig(pitch_method="max"))
    assert s_max["f0_hz__p50"] > 1.5 * s["f0_hz__p50"]
    assert 1.0 < s["duration_s"] < 3.5 and np.all(np.isfinite(f.stats))


def test_dc_offset_does_not_change_the_features():
    # SAVEE's files carry a DC offset of about +0.04; with it the energy floor, the silence gate and the speech
    # span all moved (robustness benchmark: UA 0.662 -> 0.220 at DC 0.04). Extraction removes it.
    y = np.concatenate([np.zeros(SR // 2, np.float32), voice_like(155.0, 1.0), np.zeros(SR // 2, np.float32)])
    y += np.float32(1e-3) * np.random.default_rng(0).standard_normal(len(y)).astype(np.float32)  # a noise floor
    a, b = F.extract(y, SR, CFG), F.extract(y + np.float32(0.04), SR, CFG)
    np.testing.assert_allclose(b.stats, a.stats, rtol=1e-3, atol=1e-3)
    assert b.frames.shape == a.frames.shape


@pytest.mark.parametrize("decimation", [1, 2])
@pytest.mark.parametrize("f0", [80.0, 155.0, 310.0, 480.0])
def test_yin_from_the_stft_frames_autocorrelation_tracks_a_voice_as_yin_does(f0, decimation):
    cfg = replace(CFG, pitch_decimation=decimation)
    y = voice_like(f0, 1.0, seed=int(f0))
    ref, _ = F.yin(y, cfg)
    acf, ap = F.yin_acf(y, cfg)
    assert acf.shape == ref.shape == (1 + len(y) // cfg.hop_length,)
    core = slice(10, -10)  # away from the fade in and out
    assert np.nanmedian(acf[core]) == pytest.approx(f0, rel=0.04)
    assert np.nanmedian(np.abs(1200 * np.log2(acf[core] / ref[core]))) < 20  # cents
    assert np.median(ap[core]) < 0.1


@pytest.mark.parametrize("n", [15999, 16000, 16001, 16161])
def test_decimated_pitch_stays_on_the_stft_grid_and_hears_the_frame_centre(n):
    # a glide: the F0 at each frame's centre (sample t * hop) is known; the 8 kHz track must have one value per
    # STFT frame whatever the length, and hear the centre, not a window before it
    sr, (lo, hi) = CFG.sample_rate, (100.0, 300.0)
    t = np.arange(n) / sr
    f = lo + (hi - lo) * t / t[-1]
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = (0.2 * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)
    f0, _ = F.yin_acf(y, CFG)
    assert f0.shape == (1 + n // CFG.hop_length,) == F.stft_power(y, CFG).shape[:1]
    true = lo + (hi - lo) * np.clip(np.arange(len(f0)) * CFG.hop_length / sr / t[-1], 0, 1)
    err = np.abs(1200 * np.log2(f0[5:-5] / true[5:-5]))  # cents
    assert np.nanmedian(err) < 5 and np.nanmax(err) < 50


def test_yin_acf_is_the_default_marks_noise_unvoiced_and_yin_stays_an_option():
    assert FeatureConfig().pitch_method == "yin-acf" and FeatureConfig().pitch_decimation == 2
    s, f = stats_of(voice_like(200, 1.0))
    assert s["f0_hz__p50"] == pytest.approx(200, rel=0.04)
    old = FeatureConfig(pitch_method="yin")
    s_old, f_old = stats_of(voice_like(200, 1.0), old)
    assert f_old.frame_names == f.frame_names and s_old["f0_hz__p50"] == pytest.approx(200, rel=0.04)
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    s, _ = stats_of(noise)
    assert s["voiced__mean"] < 0.2
    loud = np.zeros(101, bool)
    loud[40:60] = True
    f0, ap = F.yin_acf(voice_like(200, 1.0), CFG, frames_mask=loud)
    assert np.all(np.isnan(f0[~loud])) and np.all(ap[~loud] == 1) and np.all(np.isfinite(f0[loud]))
    with pytest.raises(ParameterError, match="yin-acf"):
        FeatureConfig(pitch_method="acf")
    with pytest.raises(ParameterError, match="pitch_decimation"):
        FeatureConfig(pitch_decimation=3)
    with pytest.raises(ParameterError, match="pitch_decimation"):
        FeatureConfig(pitch_decimation=16)  # 1 kHz: no room for F0 up to 600 Hz
