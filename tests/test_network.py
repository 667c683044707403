"""The torch network: the sequence VAE, the two heads and what each output reads, building and loading it from a
model folder, and the shipped model's weights read back from its ONNX file."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emovae.config import ClassifierConfig, VAEConfig  # noqa: E402
from emovae.errors import ModelFormatError, ParameterError  # noqa: E402
from emovae.modelfile import CONFIG_FILE, INPUTS, ONNX_FILE, OUTPUTS, PRETRAINED_DIR, read_model_json  # noqa: E402
from emovae.network import EmotionNet, SequenceVAE, build_net, load_net, n_head_stats, runner  # noqa: E402

F, S, C = 5, 12, 3
VCFG = VAEConfig(seq_len=8, channels=4, latent_dim=3)


def make_net(vcfg=VCFG, n_head=S, **ccfg) -> EmotionNet:
    torch.manual_seed(0)
    net = EmotionNet(F, S, C, vcfg, ClassifierConfig(**ccfg), n_head).eval()
    with torch.no_grad():  # scalers away from 0 / 1, so that mixing them up shows
        net.stats_mean.copy_(torch.linspace(-1, 1, S))
        net.stats_std.copy_(torch.linspace(0.5, 2, S))
    return net


def inputs(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    stats = torch.randn(n, S, generator=g)
    return torch.randn(n, VCFG.seq_len, F, generator=g), stats, stats.mean(0).expand(n, S) + 0.3, torch.full((n, S), 0.7)


def test_vae_shapes_and_deterministic_inference():
    m = SequenceVAE(6, VAEConfig(seq_len=16, channels=8, latent_dim=4)).eval()
    x = torch.randn(3, 6, 16)
    recon, mu, logvar = m(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (3, 4)
    torch.testing.assert_close(m(x)[0], recon)  # eval uses mu, no sampling
    m.train()
    assert not torch.allclose(m(x)[0], recon)  # training samples z


def test_vae_with_statistics_reconstructs_them_too():
    m = SequenceVAE(6, VAEConfig(seq_len=16, channels=8, latent_dim=4), n_stats=7).eval()
    (frames, stats), mu, _ = m(torch.randn(2, 6, 16), torch.randn(2, 7))
    assert frames.shape == (2, 6, 16) and stats.shape == (2, 7) and mu.shape == (2, 4)


def test_outputs_follow_the_format_and_single_clip_head_ignores_the_speaker():
    net = make_net()
    seq, stats, spk_mean, spk_std = inputs()
    with torch.no_grad():
        out = net(seq, stats, spk_mean, spk_std)
        other = net(seq, stats, spk_mean + 1, spk_std * 2)
    assert len(out) == len(OUTPUTS)
    named = dict(zip(OUTPUTS, out))
    assert named["probabilities"].shape == named["probabilities_adapted"].shape == (4, C)
    assert named["mu"].shape == (4, VCFG.latent_dim)
    torch.testing.assert_close(named["probabilities"].sum(1), torch.ones(4))
    for name in OUTPUTS:  # only the adapted head reads the speaker's moments
        same = torch.allclose(named[name], dict(zip(OUTPUTS, other))[name])
        assert same == (name != "probabilities_adapted"), name
    torch.testing.assert_close(named["novelty"], named["stats_mse"])  # the VAE sees the statistics


def test_adapted_head_with_the_scalers_as_moments_is_the_single_clip_head():
    net = make_net()
    net.classifier_adapted.load_state_dict(net.classifier.state_dict())
    seq, stats, _, _ = inputs()
    n = len(stats)
    with torch.no_grad():
        out = dict(zip(OUTPUTS, net(seq, stats, net.stats_mean.expand(n, S), net.stats_std.expand(n, S))))
    torch.testing.assert_close(out["probabilities_adapted"], out["probabilities"])


def test_heads_read_only_the_last_n_head_statistics():
    net = make_net(VAEConfig(seq_len=8, channels=4, latent_dim=3, with_stats=False), n_head=4, use_latent=False)
    seq, stats, spk_mean, spk_std = inputs()
    changed = stats.clone()
    changed[:, :-4] += 5
    with torch.no_grad():
        a, b = net(seq, stats, spk_mean, spk_std), net(seq, changed, spk_mean, spk_std)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[6], b[6])
    torch.testing.assert_close(a[5], a[2])  # without the statistics, novelty is the frames' reconstruction error
    changed[:, -1] += 5
    with torch.no_grad():
        assert not torch.allclose(net(seq, changed, spk_mean, spk_std)[0], a[0])


def test_heads_read_the_voice_statistics_when_asked_or_when_auto_finds_a_student():
    assert n_head_stats(1000, ClassifierConfig(head_stats="all"), True) == 1000
    assert n_head_stats(1000, ClassifierConfig(head_stats="voice"), True) == 512
    assert n_head_stats(1000, ClassifierConfig(head_stats="auto"), True) == 512
    assert n_head_stats(1000, ClassifierConfig(head_stats="auto"), False) == 1000
    with pytest.raises(ParameterError, match="head_stats"):
        ClassifierConfig(head_stats="some")


@pytest.mark.skipif(not (PRETRAINED_DIR / CONFIG_FILE).exists(), reason="no shipped model in this checkout")
def test_shipped_weights_read_from_model_onnx_compute_what_onnxruntime_computes():
    pytest.importorskip("onnx")
    from emovae.modelfile import onnx_session

    meta = read_model_json(PRETRAINED_DIR)
    net = load_net(PRETRAINED_DIR, meta)
    assert net.classifier.in_features == 512 + meta["vae_config"]["latent_dim"]  # the voice statistics + latent
    n_stats, n_frames = len(meta["stat_names"]), len(meta["frame_names"])
    rng = np.random.default_rng(0)
    mean, std = (np.array(meta["scalers"][k], np.float32) for k in ("stats_mean", "stats_std"))
    seq_mean, seq_std = (np.array(meta["scalers"][k], np.float32) for k in ("seq_mean", "seq_std"))
    stats = (mean + std * rng.standard_normal((3, n_stats))).astype(np.float32)
    feeds = {"seq": (seq_mean + seq_std * rng.standard_normal((3, meta["vae_config"]["seq_len"], n_frames)))
             .astype(np.float32), "stats": stats,
             "spk_mean": np.tile(np.array(meta["speaker_prior"]["mean"], np.float32), (3, 1)),
             "spk_std": np.tile(np.array(meta["speaker_prior"]["std"], np.float32), (3, 1))}
    ours = runner(net)(feeds)
    ref = onnx_session(PRETRAINED_DIR / ONNX_FILE).run(list(OUTPUTS), {k: feeds[k] for k in INPUTS})
    for name, a, b in zip(OUTPUTS, ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


def test_build_net_gives_the_shapes_model_json_describes(tiny_model_dir):
    meta = read_model_json(tiny_model_dir)
    net = build_net(meta)
    assert net.seq_mean.numel() == len(meta["frame_names"]) and net.stats_mean.numel() == len(meta["stat_names"])
    assert net.classifier.out_features == len(meta["classes"])
    assert net.classifier.in_features == len(meta["stat_names"]) + meta["vae_config"]["latent_dim"]  # no student


def test_load_net_refuses_damaged_or_incomplete_folders(tiny_model_dir, tmp_path):
    pytest.importorskip("onnx")
    meta = read_model_json(tiny_model_dir)
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    (d / ONNX_FILE).write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelFormatError, match="damaged|incomplete"):
        load_net(d, meta)
    (d / ONNX_FILE).unlink()
    with pytest.raises(ModelFormatError, match=r"m: no model.onnx \(the network"):  # not "no weights.pt"
        load_net(d, meta)
    other = json.loads(json.dumps(meta))
    other["classes"] = other["classes"][:2]  # another head shape than the stored weights
    shutil.copy(tiny_model_dir / ONNX_FILE, d / ONNX_FILE)
    with pytest.raises(ModelFormatError, match=r"model.onnx: its classifier.weight has shape \(4, .*\(2, .*classes"):
        load_net(d, other)
