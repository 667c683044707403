"""Speaker adaptation arithmetic: moments, the prior, running moments, batch moments, trust and the mixture."""

import numpy as np
import pytest

from emovae.errors import ModelFormatError, ParameterError
from emovae.speaker import (MIN_CLIPS, MIN_STD, PRIOR_WEIGHT, RunningMoments, SessionConfig, batch_moments, mix,
                            model_prior, network_moments, speaker_moments, speaker_normalize, speaker_prior)


def test_defaults_are_the_documented_ones():
    assert SessionConfig() == SessionConfig(prior_weight=PRIOR_WEIGHT, min_clips=MIN_CLIPS)
    assert (PRIOR_WEIGHT, MIN_CLIPS) == (8.0, 2)


def test_trust_is_zero_below_min_clips_then_n_over_n_plus_prior_weight():
    cfg = SessionConfig()
    assert cfg.trust(0) == 0.0 and cfg.trust(1) == 0.0
    assert cfg.trust(2) == pytest.approx(2 / 10) and cfg.trust(8) == pytest.approx(0.5)
    np.testing.assert_allclose(cfg.trust(np.array([1, 2, 24])), [0.0, 0.2, 0.75])
    assert SessionConfig(prior_weight=0).trust(2) == 1.0  # the speaker's own moments alone, fully trusted
    assert SessionConfig(prior_weight=2, min_clips=1).trust(1) == pytest.approx(1 / 3)
    assert SessionConfig(min_clips=5).trust(4) == 0.0


@pytest.mark.parametrize("kwargs", [{"prior_weight": -1}, {"prior_weight": float("nan")}, {"min_clips": 0}])
def test_session_config_refuses_bad_values(kwargs):
    with pytest.raises(ParameterError):
        SessionConfig(**kwargs)


def test_speaker_moments_per_speaker_with_floors():
    stats = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [7.0, 2.0]])
    spk = np.array(["a", "a", "lone", "a"])
    mean, std = speaker_moments(stats, spk)
    a = stats[[0, 1, 3]]
    np.testing.assert_allclose(mean[[0, 1, 3]], np.tile(a.mean(axis=0), (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(std[[0, 1, 3]], np.tile(a.std(axis=0), (3, 1)), rtol=1e-6)
    np.testing.assert_array_equal(mean[2], stats[2])
    np.testing.assert_array_equal(std[2], [1.0, 1.0])  # one clip: the std is not estimated
    const = speaker_moments(np.array([[2.0, 1.0], [2.0 + MIN_STD / 10, 5.0]]), np.array([1, 1]))[1]
    np.testing.assert_array_equal(const, [[1.0, 2.0], [1.0, 2.0]])  # no spread (below MIN_STD): not scaled


def test_speaker_normalize_uses_each_speakers_own_statistics():
    rng = np.random.default_rng(0)
    stats = np.vstack([rng.normal(5, 2, (10, 3)), rng.normal(-3, 0.5, (10, 3))])
    spk = np.repeat([1, 2], 10)
    z = speaker_normalize(stats, spk)
    for s in (1, 2):
        np.testing.assert_allclose(z[spk == s].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(z[spk == s].std(axis=0), 1, atol=1e-4)


def test_speaker_prior_is_the_overall_mean_and_the_typical_within_speaker_std():
    a = np.array([[0.0], [2.0]])  # mean 1, variance 1
    b = np.array([[8.0], [12.0]])  # mean 10, variance 4
    mean, std = speaker_prior(np.vstack([a, b]), np.array([1, 1, 2, 2]))
    assert mean[0] == pytest.approx(5.5) and std[0] == pytest.approx(np.sqrt(2.5))


def test_model_prior_reads_model_json_and_names_a_model_without_one():
    mean, std = model_prior({"speaker_prior": {"mean": [1, 2], "std": [3, 4]}})
    np.testing.assert_array_equal(mean, [1, 2])
    np.testing.assert_array_equal(std, [3, 4])
    with pytest.raises(ModelFormatError, match="old: this model has no adapted head"):
        model_prior({}, "old")


def test_network_moments_broadcast_given_moments_else_the_prior():
    stats = np.zeros((3, 2), np.float32)
    m, s = network_moments(stats, np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert m.shape == s.shape == (3, 2) and m.dtype == np.float32
    np.testing.assert_array_equal(m, [[1, 2]] * 3)
    np.testing.assert_array_equal(s, [[3, 4]] * 3)
    m, s = network_moments(stats, prior={"mean": [5, 6], "std": [7, 8]})
    np.testing.assert_array_equal(m, [[5, 6]] * 3)
    np.testing.assert_array_equal(s, [[7, 8]] * 3)
    m, s = network_moments(stats)
    np.testing.assert_array_equal(m, np.zeros((3, 2)))
    np.testing.assert_array_equal(s, np.ones((3, 2)))
    m[0, 0] = 9  # a writable copy, not a broadcast view
    assert m[1, 0] == 0


def test_running_moments_match_batch_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)) * [1, 10, 100, 0.1, 3] + [0, 5, -50, 2, 1e3]
    m = RunningMoments(np.zeros(5), np.ones(5), prior_weight=0)
    for row in x:  # clip by clip
        m.update(row)
    mean, std = m.estimate()
    bm, bs = speaker_moments(x, np.zeros(len(x)))
    np.testing.assert_allclose(mean, bm[0], rtol=1e-6)
    np.testing.assert_allclose(std, bs[0], rtol=1e-5)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-5)


def test_prior_counts_as_pseudo_clips():
    """A prior of weight k with the mean and std of k clips estimates exactly what those k clips would."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3)) + 2, rng.standard_normal((7, 3)) * 3 - 1
    m = RunningMoments(a.mean(axis=0), a.std(axis=0), prior_weight=len(a))
    mean0, std0 = m.estimate()  # no clips yet: the prior itself
    np.testing.assert_allclose(mean0, a.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std0, a.std(axis=0), rtol=1e-6)
    m.update(b)
    mean, std = m.estimate()
    both = np.vstack([a, b])
    np.testing.assert_allclose(mean, both.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, both.std(axis=0), rtol=1e-5)
    m.reset()
    assert m.n == 0
    np.testing.assert_allclose(m.estimate()[0], a.mean(axis=0), rtol=1e-6)


def test_moments_shift_from_prior_toward_the_speaker():
    m = RunningMoments(np.zeros(2), np.ones(2), prior_weight=2)
    dist = []
    for _ in range(20):
        m.update(np.array([10.0, -10.0]))
        dist.append(np.abs(m.estimate()[0] - [10, -10]).max())
    assert all(d2 < d1 for d1, d2 in zip(dist, dist[1:]))
    assert dist[0] == pytest.approx(20 / 3, rel=1e-5) and dist[-1] < 1.0


def test_running_moments_reject_wrong_shape_and_empty():
    m = RunningMoments(np.zeros(3), np.ones(3), prior_weight=0)
    with pytest.raises(ParameterError, match="nothing to estimate"):
        m.estimate()
    with pytest.raises(ParameterError, match="shape"):
        m.update(np.zeros(4))


def test_batch_moments_pool_each_speakers_clips_with_the_prior_in_any_order():
    rng = np.random.default_rng(2)
    stats = rng.standard_normal((7, 4)) * 3 + 1
    spk = ["a", "b", "a", "a", "b", "lone", "a"]
    prior = (np.full(4, 0.5), np.full(4, 2.0))
    cfg = SessionConfig(prior_weight=3)
    mean, std, count = batch_moments(stats, spk, prior, cfg)
    assert count.tolist() == [4, 2, 4, 4, 2, 1, 4]
    for who in ("a", "b", "lone"):
        idx = [i for i, s in enumerate(spk) if s == who]
        ref = RunningMoments(*prior, prior_weight=3)
        ref.update(stats[idx])
        for i in idx:
            np.testing.assert_allclose(mean[i], ref.estimate()[0], rtol=1e-6)
            np.testing.assert_allclose(std[i], ref.estimate()[1], rtol=1e-6)
    order = rng.permutation(len(spk))  # shuffled clips: each clip keeps its moments
    m2, s2, c2 = batch_moments(stats[order], [spk[i] for i in order], prior, cfg)
    np.testing.assert_allclose(m2, mean[order], rtol=1e-6)
    np.testing.assert_allclose(s2, std[order], rtol=1e-6)
    assert c2.tolist() == count[order].tolist()
    alone = batch_moments(stats[[0, 2, 3, 6]], ["a"] * 4, prior, cfg)[0]  # other speakers change nothing
    np.testing.assert_allclose(alone, mean[[0, 2, 3, 6]], rtol=1e-6)
    with pytest.raises(ParameterError, match="speakers"):
        batch_moments(stats, spk[:3], prior, cfg)


def test_mix_weights_the_heads_by_trust_per_clip():
    p = np.array([[1.0, 0.0], [1.0, 0.0]])
    q = np.array([[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(mix(p, q, 0.25), [[0.75, 0.25]] * 2)
    np.testing.assert_allclose(mix(p, q, np.array([0.0, 1.0])), [[1, 0], [0, 1]])
    assert mix(p, q, 0.5).dtype == np.float32
