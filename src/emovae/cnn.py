"""The sequence classifiers (torch only): a small 1-D CNN on the frame matrix and a small 2-D CNN on the log-mel
bands the frames' MFCCs hold, trained with speed copies, SpecAugment and mixup, whose probabilities are averaged
with the logistic regression on the statistics.

SequenceCNN input x: (batch, features, seq_len), the same standardised pooled frames the VAE encodes. It reads
the contour of each frame column over time, which the utterance statistics summarise only coarsely; on its own it
scores about as well as the statistics head, and the average of the two is 3-4 points better than either
(benchmarks/experiments.md, section 8). MelCNN reads (batch, bands, seq_len) log-mel bands computed from the
same frames (MelInput); weaker alone, it adds 1.3-1.5 points as a third member of the average (section 9).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


class SequenceCNN(nn.Module):
    """(B, F, T) -> class logits (B, C): three convolutions (time /4), then mean and max over time."""

    def __init__(self, n_features: int, n_classes: int, channels: int = 64, dropout: float = 0.3,
                 batch_norm: bool = True):
        super().__init__()
        c = channels

        def norm():
            return nn.BatchNorm1d(c) if batch_norm else nn.Identity()

        self.body = nn.Sequential(
            nn.Conv1d(n_features, c, 5, padding=2), norm(), nn.GELU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2), norm(), nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1), norm(), nn.GELU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))

    def fused(self) -> "SequenceCNN":
        """The same function without BatchNorm layers: each one folded into the convolution before it (eval
        mode statistics), so the shipped graph holds only convolutions and the head."""
        conv0 = self.body[0]
        return _fold_batch_norm(self, SequenceCNN(conv0.in_channels, self.head[1].out_features, conv0.out_channels,
                                                  batch_norm=False))


class MelCNN(nn.Module):
    """(B, M, T) log-mel bands (see ``MelInput``) -> class logits (B, C): a small 2-D CNN over (band, step),
    Conv2d 1 -> 8 -> 16 -> 32 -> 64 (3x3, GELU, 2x2 max-pool after the first three), mean over bands, then mean
    and max over time. Sliding over the bands, it sees a formant pattern the same way wherever a voice puts
    it: weaker than the frame CNN alone, but it errs differently (benchmarks/experiments.md, section 9)."""

    def __init__(self, n_classes: int, widths: tuple[int, ...] = (8, 16, 32, 64), dropout: float = 0.3,
                 batch_norm: bool = True):
        super().__init__()
        layers, c_in = [], 1
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c) if batch_norm else nn.Identity(), nn.GELU()]
            layers += [nn.MaxPool2d(2)] if i < len(widths) - 1 else []
            c_in = c
        self.widths = tuple(widths)
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x[:, None]).mean(dim=2)
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))

    def fused(self) -> "MelCNN":
        """The same function with each BatchNorm folded into the convolution before it (see SequenceCNN)."""
        return _fold_batch_norm(self, MelCNN(self.head[1].out_features, self.widths, batch_norm=False))


class MelInput(nn.Module):
    """Raw pooled frames (B, T, F) whose first columns are the MFCCs -> (B, M, T) smooth log-mel bands in dB
    (the inverse of the MFCCs' DCT: the band energies the kept coefficients describe), each clip's mean level
    removed (gain) and divided by one fitted scale, so that every band keeps the same units."""

    def __init__(self, n_mfcc: int, n_mels: int):
        super().__init__()
        from .features import _dct_matrix

        self.register_buffer("idct", torch.from_numpy(_dct_matrix(n_mels, n_mfcc).T.astype(np.float32)))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        mel = seq[..., : self.idct.shape[0]] @ self.idct
        return ((mel - mel.mean(dim=(1, 2), keepdim=True)) / self.scale).transpose(1, 2)


def _fold_batch_norm(model: nn.Module, twin: nn.Module) -> nn.Module:
    """Load ``twin`` (the same layers with Identity for each BatchNorm) with ``model``'s weights, every BatchNorm
    folded into the convolution before it (eval statistics)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    state = {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
    for i, layer in enumerate(model.body):
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            norm = model.body[i + 1]
            conv = fuse_conv_bn_eval(layer.eval(), norm.eval()) if isinstance(norm, nn.modules.batchnorm._BatchNorm) \
                else layer
            state[f"body.{i}.weight"], state[f"body.{i}.bias"] = conv.weight.detach(), conv.bias.detach()
    twin.load_state_dict(state)
    return twin.eval()


def spec_augment(x: torch.Tensor, gen: torch.Generator, n_masks: int = 2, max_width: int = 8) -> torch.Tensor:
    """Zero ``n_masks`` random time spans and feature bands of up to ``max_width`` steps/columns per clip
    (SpecAugment on standardised frames, where 0 is the training mean). x: (B, F, T)."""
    B, F, T = x.shape
    t, f = torch.arange(T)[None], torch.arange(F)[None]
    for _ in range(n_masks):
        w = torch.randint(0, max_width + 1, (B, 1), generator=gen)
        t0 = (torch.rand(B, 1, generator=gen) * (T - w)).long()
        x = x.masked_fill(((t >= t0) & (t < t0 + w))[:, None, :], 0.0)
        w = torch.randint(0, max_width + 1, (B, 1), generator=gen)
        f0 = (torch.rand(B, 1, generator=gen) * (F - w)).long()
        x = x.masked_fill(((f >= f0) & (f < f0 + w))[:, :, None], 0.0)
    return x


def train_cnn(x: np.ndarray, y: np.ndarray, n_classes: int, *, val: tuple[np.ndarray, np.ndarray] | None = None,
              epochs: int = 40, stop_after: int | None = None, channels: int = 64, seed: int = 0,
              batch_size: int = 64, lr: float = 2e-3, mixup_alpha: float = 0.4,
              arch: str = "frames") -> tuple[nn.Module, list[float]]:
    """Train a SequenceCNN on x: (copies, N, F, T) float32 standardised frames of N clips, where copy 0 is the
    clip as recorded and the others are its speed copies (NaN rows: copy missing), with labels y (N,) in
    0..n_classes-1.

    Each epoch draws every clip at one of its available copies, masks it (``spec_augment``) and mixes pairs
    (mixup, lambda ~ Beta(alpha, alpha)); class-balanced cross-entropy with label smoothing 0.1, AdamW with a
    one-cycle cosine schedule over ``epochs``. With ``val`` = (x_val (N_val, F, T), y_val) the balanced
    accuracy on it is recorded per epoch and the best epoch's weights are returned; else the last epoch's.
    ``stop_after``: end after that many epochs of the ``epochs``-long schedule (to retrain on all clips up to
    the epoch chosen on validation). ``arch``: "frames" (a SequenceCNN of ``channels``) or "mel" (a MelCNN; x
    holds log-mel bands (copies, N, M, T) from ``MelInput``).
    Returns (model in eval mode, validation balanced accuracy per epoch).
    """
    from sklearn.metrics import balanced_accuracy_score

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    present = ~torch.isnan(X).flatten(2).any(dim=2)  # (copies, N): which copies exist
    X = torch.nan_to_num(X)
    Y = torch.from_numpy(np.asarray(y, dtype=np.int64))
    n = X.shape[1]
    model = SequenceCNN(X.shape[2], n_classes, channels) if arch == "frames" else MelCNN(n_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * int(np.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1, anneal_strategy="cos")
    counts = np.bincount(y, minlength=n_classes).astype(np.float32)
    weight = torch.from_numpy(counts.sum() / (n_classes * np.maximum(counts, 1)))
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    val_ua, best, best_state = [], -1.0, None
    for _ in range(epochs if stop_after is None else min(stop_after, epochs)):
        model.train()
        order = torch.randperm(n, generator=gen)
        # one available copy per clip: a random pick among the rows present for that clip
        pick = torch.multinomial(present.T.float(), 1, generator=gen).squeeze(1)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = spec_augment(X[pick[idx], idx], gen), Y[idx]
            lam = float(rng.beta(mixup_alpha, mixup_alpha))
            perm = torch.randperm(len(idx), generator=gen)
            out = model(lam * xb + (1 - lam) * xb[perm])
            loss = lam * loss_fn(out, yb) + (1 - lam) * loss_fn(out, yb[perm])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if val is not None:
            ua = float(balanced_accuracy_score(val[1], predict_proba(model, val[0]).argmax(1)))
            val_ua.append(ua)
            if ua > best:
                best, best_state = ua, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), val_ua


@torch.no_grad()
def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) of standardised frames x (N, F, T)."""
    model.eval()
    return torch.softmax(model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))), dim=1).numpy()

