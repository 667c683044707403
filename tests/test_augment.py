"""Degraded training copies (emovae.augment): each condition does what it says, seeded per clip and copy."""

import numpy as np

from emovae import augment

SR = 16000


def _speech_like(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_add_noise_reaches_the_asked_snr():
    y = _speech_like()
    noise = np.random.default_rng(1).standard_normal(len(y)).astype(np.float32)
    for snr in (20, 10, 5):
        out = augment.add_noise(y, noise, snr)
        measured = 20 * np.log10(augment.rms(y) / augment.rms(out - y))
        assert abs(measured - snr) < 0.01 and out.dtype == np.float32 and len(out) == len(y)


def test_reverberation_keeps_length_and_level_and_spreads_energy():
    y = np.zeros(SR, np.float32)
    y[100] = 1.0  # a click: the room's tail follows it
    out = augment.reverberate(y, 0.8, np.random.default_rng(0), SR)
    assert len(out) == len(y) and abs(augment.rms(out) - augment.rms(y)) < 1e-6
    assert np.sum(out[2000:] ** 2) > 0.1 * np.sum(out**2)  # energy well after the click


def test_telephone_removes_the_band_above_4_khz():
    t = np.arange(SR) / SR
    y = (0.2 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    spec = np.abs(np.fft.rfft(augment.telephone(y, SR)))
    assert spec[6000] < 0.01 * spec[1000]


def test_degraded_copy_is_seeded_and_crops_within_the_speech():
    y = _speech_like(4.0)
    kinds = set()
    for seed in range(40):
        a = augment.degraded_copy(y, np.random.default_rng(seed), SR, span=(SR, 3 * SR))
        b = augment.degraded_copy(y, np.random.default_rng(seed), SR, span=(SR, 3 * SR))
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and np.isfinite(a).all()
        if len(a) < len(y):  # the window: 1.5-3 s from the start of the speech, within it when it is long enough
            assert 1.5 * SR <= len(a) <= 3 * SR
            start = int(np.flatnonzero(np.isclose(y, a[0]) & np.isclose(np.roll(y, -1), a[1]))[0])
            assert SR <= start and (start + len(a) <= 3 * SR or start == SR)
            kinds.add("window")
        else:
            kinds.add("same length")
    assert kinds == {"window", "same length"}


def test_clip_rng_depends_on_file_name_and_copy_only():
    a = augment.clip_rng("/corpus/a/03-01-05-01-01-01-01.wav", "degraded1").random(4)
    moved = augment.clip_rng("/elsewhere/03-01-05-01-01-01-01.wav", "degraded1").random(4)
    other_copy = augment.clip_rng("/corpus/a/03-01-05-01-01-01-01.wav", "degraded2").random(4)
    other_clip = augment.clip_rng("/corpus/a/03-01-05-01-01-01-02.wav", "degraded1").random(4)
    np.testing.assert_array_equal(a, moved)
    assert not np.allclose(a, other_copy) and not np.allclose(a, other_clip)
    assert augment.degraded_names(2) == ("degraded1", "degraded2") and augment.degraded_names(0) == ()
