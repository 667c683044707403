"""Training the sequence VAE: the loss terms, learning, seeding and early stopping."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emovae.config import VAEConfig  # noqa: E402
from emovae.train.vae import evaluate_vae, train_vae, vae_loss  # noqa: E402


def test_loss_terms():
    x = torch.randn(2, 3, 8)
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    total, rec, kl = vae_loss(x, x, mu, logvar, beta=1.0)
    assert rec.item() == 0 and kl.item() == pytest.approx(0, abs=1e-7)
    total, rec, kl = vae_loss(x + 1, x, torch.ones(2, 4), logvar, beta=0.5)
    assert rec.item() == pytest.approx(3 * 8) and kl.item() == pytest.approx(2.0)
    assert total.item() == pytest.approx(24 + 0.5 * 2.0)
    s = torch.randn(2, 5)  # frames and statistics reconstructed together: their squared errors add up
    total, rec, _ = vae_loss((x + 1, s + 2), (x, s), mu, logvar)
    assert rec.item() == pytest.approx(24 + 5 * 4)


def test_tiny_vae_overfits_a_handful_of_examples():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 16)
    x = np.stack([np.stack([np.sin(2 * np.pi * (k + 1) * t + p) for p in range(4)])
                  for k in range(6)]).astype(np.float32)  # 6 clips, 4 features, 16 steps
    x += 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    cfg = VAEConfig(seq_len=16, channels=8, latent_dim=4, beta=0.01, warmup_epochs=0, epochs=80, batch_size=6,
                    lr=1e-2)
    model, hist = train_vae(x, None, cfg, seed=0)
    assert hist["train_recon"][-1] < hist["train_recon"][0] / 10
    assert not model.training and set(hist) == {"train_recon", "train_kl"}
    rec, kl = evaluate_vae(model, torch.from_numpy(x))
    assert rec / x[0].size == pytest.approx(hist["train_recon"][-1], rel=0.5)  # the same error, measured on mu


def test_training_is_seeded():
    x = np.random.default_rng(1).standard_normal((10, 3, 8)).astype(np.float32)
    cfg = VAEConfig(seq_len=8, channels=4, latent_dim=2, epochs=3, warmup_epochs=0)
    a, ha = train_vae(x, x[:4], cfg, seed=3)
    b, hb = train_vae(x, x[:4], cfg, seed=3)
    c, hc = train_vae(x, x[:4], cfg, seed=4)
    assert ha == hb and ha != hc
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 3, 8)).astype(np.float32)
    val = 5 * rng.standard_normal((6, 3, 8)).astype(np.float32)  # unlike training: val loss soon rises
    cfg = VAEConfig(seq_len=8, channels=8, latent_dim=2, epochs=200, patience=5, warmup_epochs=0, lr=1e-2)
    model, hist = train_vae(x, val, cfg, seed=0)
    n = len(hist["val_recon"])
    assert n < 200  # stopped early
    per_clip = 3 * 8
    losses = [r * per_clip + kl for r, kl in zip(hist["val_recon"], hist["val_kl"])]
    best = int(np.argmin(losses))
    assert n - 1 - best >= cfg.patience - 1  # it waited ``patience`` epochs without a better one
    rec, kl = evaluate_vae(model, torch.from_numpy(val))
    assert rec + kl == pytest.approx(losses[best], rel=1e-4)  # and returned the best epoch's weights, not the last
