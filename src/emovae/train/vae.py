"""Training the sequence VAE (``network.SequenceVAE``): the loss (reconstruction + beta x KL, with KL warm-up)
and the loop with early stopping on an actor-disjoint validation split.

x: (batch, features, seq_len) standardised frames; s: (batch, n_stats) standardised statistics, when the VAE
sees them.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ..config import VAEConfig
from ..network import SequenceVAE


def vae_loss(recon, x, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, kl), each averaged over the batch. ``recon`` and ``x`` are tensors, or tuples
    of tensors (frames, statistics) reconstructed together.

    reconstruction = squared error summed over every element (a unit-variance Gaussian NLL up to a
    constant); kl = KL(q(z|x) || N(0, I)) summed over latent dimensions; total = reconstruction + beta * kl.
    """
    pairs = zip(recon, x) if isinstance(recon, tuple) else [(recon, x)]
    rec = sum(((r - t) ** 2).flatten(1).sum(dim=1) for r, t in pairs).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=1).mean()
    return rec + beta * kl, rec, kl


def train_vae(x_train: np.ndarray, x_val: np.ndarray | None, cfg: VAEConfig, *, seed: int = 0,
              progress: bool = False, s_train: np.ndarray | None = None, s_val: np.ndarray | None = None
              ) -> tuple[SequenceVAE, dict[str, list[float]]]:
    """Train a SequenceVAE on (N, F, T) float32 frames [and (N, S) statistics]; early-stop on the validation
    loss when given.

    Returns the best model (eval mode) and the history per epoch: train/val reconstruction as mean
    squared error per element, and KL per clip.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    def tensor(a):
        return None if a is None or len(a) == 0 else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    n_stats = 0 if s_train is None else s_train.shape[1]
    model = SequenceVAE(x_train.shape[1], cfg, n_stats)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xt, xv, st, sv = tensor(x_train), tensor(x_val), tensor(s_train), tensor(s_val)
    per_clip = xt.shape[1] * xt.shape[2] + n_stats
    history: dict[str, list[float]] = {"train_recon": [], "train_kl": []}
    if xv is not None:
        history.update(val_recon=[], val_kl=[])
    best, best_state, since_best = math.inf, None, 0
    bar = tqdm(range(cfg.epochs), desc="VAE", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        beta = cfg.beta * min(1.0, (epoch + 1) / cfg.warmup_epochs) if cfg.warmup_epochs else cfg.beta
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        rec_sum = kl_sum = 0.0
        for i in range(0, len(xt), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = (xt[idx], st[idx]) if n_stats else xt[idx]
            recon, mu, logvar = model(*xb) if n_stats else model(xb)
            loss, rec, kl = vae_loss(recon, xb, mu, logvar, beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec_sum += rec.item() * len(idx)
            kl_sum += kl.item() * len(idx)
        history["train_recon"].append(rec_sum / len(xt) / per_clip)
        history["train_kl"].append(kl_sum / len(xt))
        if xv is None:
            continue
        rec_v, kl_v = evaluate_vae(model, xv, sv)
        history["val_recon"].append(rec_v / per_clip)
        history["val_kl"].append(kl_v)
        val_loss = rec_v + cfg.beta * kl_v
        bar.set_postfix(val=f"{val_loss / per_clip:.3f}")
        if epoch + 1 < cfg.warmup_epochs:  # the objective still changes during KL warm-up
            continue
        if val_loss < best * (1 - 1e-4):  # best starts at inf, so the first checked epoch counts
            best, best_state, since_best = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


@torch.no_grad()
def evaluate_vae(model: SequenceVAE, x: torch.Tensor, s: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean reconstruction (summed squared error per clip, using mu) and mean KL per clip over x [and s]."""
    model.eval()
    mu, logvar = model.encode(x, s)
    _, rec, kl = vae_loss(model.decode(mu), (x, s) if model.n_stats else x, mu, logvar)
    return rec.item(), kl.item()
