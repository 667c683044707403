"""Sequence-model experiment (issue 7): a supervised 1-D CNN on the frame matrix, with speed copies, SpecAugment
and mixup, alone and averaged with the logistic regression on the statistics. Actor-grouped 5-fold CV per fold
seed, strict single-clip mode.

The CNN sees the same input as the package's VAE: the 89 frame columns (MFCC, deltas, pitch, voicing, band energy
ratio, centroid, RMS, voice quality) average-pooled to 64 steps, z-scored per column with the training fold.
Architecture (fixed a priori): Conv1d(89->C, 5) -> BN -> GELU -> Conv1d(C->C, 5, stride 2) -> BN -> GELU ->
Conv1d(C->C, 3, stride 2) -> BN -> GELU -> [mean, max] over time -> dropout 0.3 -> Linear(2C -> 8). AdamW (lr 2e-3,
weight decay 1e-2), cosine schedule over 40 epochs, class-balanced cross-entropy with label smoothing 0.1.
The epoch is chosen on the inner actor-disjoint validation split (`emovae.model.inner_split`, 3 actors), then the
CNN is retrained on the whole training fold for that many epochs (same schedule). Augmentation: each epoch draws
every training clip at one of its speeds (1, 0.8, 0.9, 1.1, 1.2x: the package's speed copies); SpecAugment masks
2 time spans of up to 8 steps and 2 bands of up to 8 columns; mixup mixes pairs with lambda ~ Beta(0.4, 0.4).

Two steps, so that the training can run on a lent GPU machine and the report here:

    python benchmarks/sequence.py data --out .seqdata/seq64.npz            # pooled frames + stats of 5 speeds
    python benchmarks/sequence.py train --data .seqdata/seq64.npz --seeds 0 1 2 --out /tmp/seq.json
    python benchmarks/sequence.py report --data .seqdata/seq64.npz --runs /tmp/seq.json   # + LR, ensembles

The log-mel configurations (`MEL_CONFIGS`) also need `python benchmarks/sequence.py data-mel` (written beside the
frames file as .seqdata/mel64.npz and loaded with it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech"
SPEEDS = (0.8, 0.9, 1.1, 1.2)
# name -> (speed copies, specaugment, mixup, channels, statistics joined to the pooled CNN output, epochs, seed offset)
CONFIGS = {
    "cnn": (False, False, False, 64, False, 40, 0),
    "cnn+speed": (True, False, False, 64, False, 40, 0),
    "cnn+speed+specaug": (True, True, False, 64, False, 40, 0),
    "cnn+speed+specaug+mixup": (True, True, True, 64, False, 40, 0),
    "cnn32+speed+specaug+mixup": (True, True, True, 32, False, 40, 0),
    "cnn+stats+speed+specaug+mixup": (True, True, True, 64, True, 40, 0),
    # second round (after the first six were seen on seeds 0-2): width, length, other initialisations
    "cnn48+speed+specaug+mixup": (True, True, True, 48, False, 40, 0),
    "cnn96+speed+specaug+mixup": (True, True, True, 96, False, 40, 0),
    "cnn+speed+specaug+mixup 80 epochs": (True, True, True, 64, False, 80, 0),
    "cnn+speed+specaug+mixup init 1": (True, True, True, 64, False, 40, 1000),
    "cnn+speed+specaug+mixup init 2": (True, True, True, 64, False, 40, 2000),
}
# third round (input representation, fixed before any result): the speech span's 64 log-mel bands pooled to 64
# steps (`data-mel`), each clip's mean level subtracted (gain), one global scale; the shipped recipe otherwise.
# name -> (input: "mel" or "both" (the 89 frame columns and the 64 bands), architecture: "1d" (the CNN above) or
# "2d": Conv2d 1->8->16->32->64 (3x3, BN, GELU, 2x2 max-pool after the first three) over (band, step), mean over
# bands, [mean, max] over steps, dropout 0.3, Linear(128 -> 8), about 25 k parameters)
MEL_CONFIGS = {
    "mel1d+speed+specaug+mixup": ("mel", "1d"),
    "both1d+speed+specaug+mixup": ("both", "1d"),
    "mel2d+speed+specaug+mixup": ("mel", "2d"),
    # fourth round (after the third on seeds 0-2): the same 2-D CNN on the smooth log-mel that the 40 pooled MFCCs
    # hold (inverse DCT, 40 -> 64 bands), so a shipped graph can compute it from its frame input
    "mfccmel2d+speed+specaug+mixup": ("mfccmel", "2d"),
}
# sixth round, fixed 2026-11-25 23:12 before its results: the main recipe (cnn+speed+specaug+mixup) on 128 pooled
# steps instead of 64 (`data --seq-len 128 --out .seqdata/seq128.npz`, `train --data .seqdata/seq128.npz`), fold
# seeds 0-5, paired by fold against the 64-step runs, alone and averaged with the LR. Rule: worth a retrain if the
# LR + CNN average improves on both fold draws and on at least 60 % of the 30 folds.
for _name in MEL_CONFIGS:
    CONFIGS[_name] = (True, True, True, 64, False, 40, 0)
# seventh round, fixed 2026-11-25 23:30 before its results: consistency across speeds. Each training step also
# draws every clip at a second, different speed, trains on both views (same SpecAugment recipe, same mixup pairs)
# and adds weight x the symmetric KL divergence between the two views' predictions, so that the CNN learns to
# answer what test-time speed copies would average. Fold seeds 0-5, paired by fold against the main recipe
# (`compare`); worth a retrain if the LR + CNN average improves on both draws and on at least 60 % of the folds.
CONSISTENCY = {"cnn+speed+specaug+mixup+consistency": 1.0}
# eighth round, fixed 2026-11-25 23:41 before its results: a recurrent fourth member for diversity. Linear(89 -> 64)
# per step, a one-layer bidirectional GRU (64 per direction), [mean, max] over steps, dropout 0.3, Linear(256 -> 8),
# about 58 k parameters; the main recipe otherwise (speed copies, SpecAugment, mixup, epoch chosen inside). Fold
# seeds 0-5. Rule: worth building into the package if the equal four-way average (LR, frame CNN, log-mel CNN, GRU)
# beats the shipped thirds on both draws and on at least 60 % of the 30 folds.
MEL_CONFIGS["gru+speed+specaug+mixup"] = ("frames", "gru")
for _name in [*CONSISTENCY, "gru+speed+specaug+mixup"]:
    CONFIGS[_name] = (True, True, True, 64, False, 40, 0)
# tenth round, fixed 2026-11-26 00:44 before its results: two auxiliary heads on the frame CNN's pooled output
# ([mean, max], 128), the main recipe otherwise. "adv": a speaker head (Linear(128 -> training actors)) behind a
# gradient-reversal layer, so that the CNN unlearns who is speaking (domain-adversarial training, Ganin & Lempitsky
# 2015): its weight rises as lambda_max * (2 / (1 + exp(-10 p)) - 1) over training progress p, lambda_max 0.3 or 1;
# a speed copy keeps its actor's label. "intensity": a head for RAVDESS's normal / strong intensity (from the file
# names of the training clips), weight 0.3, as a second task. Both heads are dropped at test time (no size or latency
# cost). Fold seeds 0-5, paired by fold against the main recipe (`compare`). Rule, as before: worth building into
# the package if the LR + CNN average improves on both fold draws and on at least 60 % of the 30 folds.
# (section 23, fixed 2026-11-26 03:49 before its results: `mlp-sizes`. Section 20's MLP (128 hidden units) gained
# +0.4 strict and +1.3 adapted, but only the single-clip head got it: a second one of 128 would push the model past
# 1 MB. Two MLPs of 64 units cost what one of 128 does. Measured per fold, fold seeds 0-8, with the stored CNN runs:
# the thirds whose statistics member is (LR + MLP h) / 2 for h = 128 and 64, in both modes. Rule: ship an MLP of 64
# in both heads if (a) adapted, MLP 64 beats the LR alone in each fold draw and on at least 60 % of the 45 folds,
# and (b) strict, MLP 64 is no worse than MLP 128 by more than 0.2 points over the 45 folds.)
AUXILIARY = {"cnn+speed+specaug+mixup+adv0.3": ("speaker", 0.3), "cnn+speed+specaug+mixup+adv1": ("speaker", 1.0),
             "cnn+speed+specaug+mixup+intensity": ("intensity", 0.3)}
for _name in AUXILIARY:
    CONFIGS[_name] = (True, True, True, 64, False, 40, 0)
# twelfth round, fixed 2026-11-26 03:22 before its results: the final retrain's learning-rate schedule. The recipe
# retrains on the whole training fold for the number of epochs chosen on the inner actors, but under the 40-epoch
# one-cycle schedule, so it stops with the learning rate still well above zero (the shipped model stops its two
# CNNs at epochs 26 and 31 of 40). "+anneal": the final retrain's one-cycle schedule spans exactly the chosen
# epochs, so its weights end annealed; the inner run that chooses the epoch is unchanged (same seed, same
# schedule). Both CNNs, fold seeds 0-8; the shipped thirds rebuilt from the new runs against those from the stored
# runs (`compare-stack --members-b`, the same data on both sides). Rule: worth building into the package if the
# strict thirds improve in each of the three fold draws and on at least 60 % of the 45 folds.
# thirteenth round, fixed 2026-11-26 06:13 before its results (section 24b of experiments.md): distil the GE2E
# teacher's hidden-state statistics (section 21: mean and std of its last LSTM layer over the clip, 512, from
# `teacher.py embed`, per speed copy) into both CNNs. A linear head on each CNN's pooled output (128) regresses
# them, z-scored with the training fold, mean squared error x 1.0 added to the loss (targets mixed as the inputs
# are when mixup mixes); the head is dropped at test time (no size or latency cost). The teacher file sits beside
# the data file as ge2e.npz.
AUXILIARY.update({"cnn+speed+specaug+mixup+ge2e": ("ge2e", 1.0), "mfccmel2d+speed+specaug+mixup+ge2e": ("ge2e", 1.0)})
MEL_CONFIGS["mfccmel2d+speed+specaug+mixup+ge2e"] = ("mfccmel", "2d")
for _name in AUXILIARY:
    CONFIGS[_name] = (True, True, True, 64, False, 40, 0)
ANNEAL = {"cnn+speed+specaug+mixup+anneal", "mfccmel2d+speed+specaug+mixup+anneal"}
MEL_CONFIGS["mfccmel2d+speed+specaug+mixup+anneal"] = ("mfccmel", "2d")
for _name in ANNEAL:
    CONFIGS[_name] = (True, True, True, 64, False, 40, 0)


class _Reverse:
    """Gradient reversal: identity forward, -weight x the gradient backward (built lazily: torch is imported
    inside the training job)."""

    fn = None

    @classmethod
    def apply(cls, x, weight: float):
        if cls.fn is None:
            import torch

            class Fn(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x_, w):
                    ctx.w = w
                    return x_.view_as(x_)

                @staticmethod
                def backward(ctx, g):
                    return -ctx.w * g, None

            cls.fn = Fn
        return cls.fn.apply(x, weight)


def intensities(actors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1 for RAVDESS's strong intensity, 0 for normal, per clip in the package's extraction order (the order of the
    data file, checked against its actors and labels)."""
    from emovae.data import scan

    utterances, _ = scan(DATA)
    if [u.actor for u in utterances] != list(actors) or [u.label for u in utterances] != list(labels):
        raise SystemExit("the data file's clip order differs from scan(DATA): rebuild it with `data`")
    return np.array([u.intensity == "strong" for u in utterances], dtype=np.int64)


def make_data(out: Path, seq_len: int) -> None:
    """Write pooled frames (speeds, N, seq_len, F) as uint8 per column (0.1-99.9 percentile range) and the
    statistics (speeds, N, S) as float16: small enough to travel to a GPU machine."""
    from emovae.config import FeatureConfig
    from emovae.extraction import default_cache_dir, extract_dataset
    from emovae.features import pool_frames

    table, _ = extract_dataset(DATA, FeatureConfig(), cache_dir=default_cache_dir(), progress=False)
    table.augment(SPEEDS, cache_dir=default_cache_dir(), progress=False)
    frames = [table.frames] + [[a.frames for a in table.augmented[f]] for f in SPEEDS]
    seq = np.stack([np.stack([pool_frames(f, seq_len) for f in fs]) for fs in frames])
    flat = seq.reshape(-1, seq.shape[-1])
    lo, hi = np.percentile(flat, 0.1, axis=0), np.percentile(flat, 99.9, axis=0)
    hi = np.where(hi - lo > 1e-6, hi, lo + 1)
    q = np.clip(np.round((seq - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    stats = np.stack([table.stats] + [np.stack([a.stats for a in table.augmented[f]]) for f in SPEEDS])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, q=q, lo=lo.astype(np.float32), hi=hi.astype(np.float32), stats=stats.astype(np.float16),
                        labels=table.labels, actors=table.actors, speeds=np.array((1.0,) + SPEEDS),
                        frame_names=np.array(table.frame_names))


def _copy_frames(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(pooled frames (seq_len, F), statistics (S,)) of one clip perturbed as `augment.perturb` names it."""
    i, path, name, seq_len = job
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from augment import perturb

    from emovae import audio, features
    from emovae.config import FeatureConfig

    cfg = FeatureConfig()
    y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
    f = features.extract(perturb(y, cfg.sample_rate, name, np.random.default_rng(i)), cfg.sample_rate, cfg)
    return features.pool_frames(f.frames, seq_len), f.stats


def add_copy(data: Path, name: str, out: Path) -> None:
    """``data`` with one more copy of every clip appended after its speeds (say reverb0.4), quantised with the
    data file's own ranges, so that the existing copies stay bit-identical and runs on both files pair by fold."""
    from concurrent.futures import ProcessPoolExecutor

    from emovae.data import scan

    with np.load(data) as z:
        d = {k: z[k] for k in z.files}
    utterances, _ = scan(DATA)
    if [u.actor for u in utterances] != list(d["actors"]) or [u.label for u in utterances] != list(d["labels"]):
        raise SystemExit("the data file's clip order differs from scan(DATA): rebuild it with `data`")
    seq_len = d["q"].shape[2]
    with ProcessPoolExecutor() as pool:
        pairs = list(pool.map(_copy_frames, [(i, u.path, name, seq_len) for i, u in enumerate(utterances)],
                              chunksize=16))
    seq = np.stack([p[0] for p in pairs])
    q = np.clip(np.round((seq - d["lo"]) / (d["hi"] - d["lo"]) * 255), 0, 255).astype(np.uint8)
    d["q"] = np.concatenate([d["q"], q[None]])
    d["stats"] = np.concatenate([d["stats"], np.stack([p[1] for p in pairs]).astype(np.float16)[None]])
    d["copies"] = np.array([f"speed{f:g}" for f in d["speeds"]] + [name])
    np.savez_compressed(out, **d)


def make_mel(out: Path, seq_len: int) -> None:
    """Write the speech span's log-mel bands (dB) pooled to seq_len steps, (speeds, N, seq_len, n_mels) uint8
    over one global range, in the clip order of `make_data` (the package's extraction order)."""
    from concurrent.futures import ProcessPoolExecutor

    from emovae.config import FeatureConfig
    from emovae.extraction import default_cache_dir, extract_dataset

    table, _ = extract_dataset(DATA, FeatureConfig(), cache_dir=default_cache_dir(), progress=False)
    with ProcessPoolExecutor() as pool:
        mel = np.stack(list(pool.map(_mel_copies, table.paths, [seq_len] * len(table.paths), chunksize=16)), 1)
    lo, hi = np.percentile(mel, 0.1), np.percentile(mel, 99.9)
    q = np.clip(np.round((mel - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    np.savez_compressed(out, q=q, lo=np.float32(lo), hi=np.float32(hi), labels=table.labels, actors=table.actors)


def _mel_copies(path: str, seq_len: int) -> np.ndarray:
    """(speeds, seq_len, n_mels) pooled log-mel of one clip as recorded and at each of SPEEDS."""
    from emovae import audio
    from emovae.config import FeatureConfig
    from emovae.features import frame_energy_db, log_mel, pool_frames, speech_span, stft_power

    cfg = FeatureConfig()
    y = audio.load(path, cfg.sample_rate)
    out = []
    for f in (1.0,) + SPEEDS:
        z = audio.speed_perturb(y, cfg.sample_rate, f)
        lm = log_mel(stft_power(z, cfg), cfg)[speech_span(frame_energy_db(z, cfg), cfg)]
        out.append(pool_frames(lm, seq_len))
    return np.stack(out)


def load(path: Path) -> dict:
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["seq"] = (d["q"].astype(np.float32) / 255 * (d["hi"] - d["lo"]) + d["lo"]).astype(np.float32)
    d["stats"] = d["stats"].astype(np.float32)
    mel_path = path.with_name(path.name.replace("seq", "mel"))
    if mel_path.exists():
        with np.load(mel_path) as z:
            mel = z["q"].astype(np.float32) / 255 * (z["hi"] - z["lo"]) + z["lo"]
        d["mel"] = (mel - mel.mean(axis=(2, 3), keepdims=True)).astype(np.float32)  # each clip's mean level
    return d


def train_fold(job: tuple) -> dict:
    """Train one configuration on one fold; returns the test probabilities and the inner choice of epochs."""
    import torch
    from sklearn.metrics import balanced_accuracy_score as bas
    from torch import nn

    from emovae.model import inner_split

    name, seed, fold, tr, te, data_path, device = job
    speed, specaug, mixup, channels, with_stats, epochs, offset = CONFIGS[name]
    cons = CONSISTENCY.get(name, 0.0)
    aux_kind, aux_weight = AUXILIARY.get(name, (None, 0.0))
    torch.set_num_threads(1)
    d = load(Path(data_path))
    seq, stats, y, actors = d["seq"], d["stats"], d["labels"], d["actors"]
    kind, arch = MEL_CONFIGS.get(name, ("frames", "1d"))
    if kind == "mel":
        seq = d["mel"]
    elif kind == "mfccmel":
        from emovae.features import _dct_matrix

        mel = seq[..., :40] @ _dct_matrix(64, 40).T  # (speeds, N, T, 64) smooth log-mel in dB
        seq = (mel - mel.mean(axis=(2, 3), keepdims=True)).astype(np.float32)
    elif kind == "both":
        seq = np.concatenate([seq, d["mel"]], axis=-1)
    n_copies = seq.shape[0] if speed else 1
    dev = torch.device(device)
    if aux_kind == "ge2e":
        with np.load(Path(data_path).with_name("ge2e.npz")) as z:
            if list(z["labels"]) != list(y) or list(z["actors"]) != list(actors):
                raise SystemExit("ge2e.npz lists the clips in another order than the data file")
            teacher = z["hidden"].astype(np.float32)  # (copies, N, 512), copies in the data file's order

    def fit(rows, val_rows, n_epochs, seed_, sched_epochs=epochs):
        torch.manual_seed(seed_)
        rng = np.random.default_rng(seed_)
        m = seq[:n_copies, rows].reshape(-1, seq.shape[-1]).mean(0)
        s = seq[:n_copies, rows].reshape(-1, seq.shape[-1]).std(0) + 1e-6
        if arch == "2d":  # one scale for all bands: keeps the band axis shift-equivariant
            m, s = np.zeros_like(m), np.full_like(s, seq[:n_copies, rows].std())
        sm, ss = stats[:n_copies, rows].reshape(-1, stats.shape[-1]).mean(0), \
            stats[:n_copies, rows].reshape(-1, stats.shape[-1]).std(0) + 1e-6
        X = torch.from_numpy(((seq - m) / s).transpose(0, 1, 3, 2).copy()).to(dev)  # (copies, N, F, T)
        S = torch.from_numpy(np.clip((stats - sm) / ss, -8, 8).astype(np.float32)).to(dev)
        Y = torch.from_numpy(y).to(dev)
        F_, C = X.shape[2], channels
        if arch == "2d":
            def block(i, o, pool=True):
                layers = [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.GELU()]
                return layers + ([nn.MaxPool2d(2)] if pool else [])
            C = 64
            body = nn.Sequential(*block(1, 8), *block(8, 16), *block(16, 32), *block(32, C, pool=False))

            class Net2d(nn.Module):  # (B, bands, steps) -> (B, C, steps / 8), mean over bands
                def __init__(self):
                    super().__init__()
                    self.body = body

                def forward(self, x):
                    return self.body(x[:, None]).mean(2)

            net = Net2d().to(dev)
        elif arch == "gru":
            C = 128

            class NetGRU(nn.Module):  # (B, F, steps) -> (B, 128, steps)
                def __init__(self):
                    super().__init__()
                    self.proj = nn.Linear(F_, 64)
                    self.gru = nn.GRU(64, 64, batch_first=True, bidirectional=True)

                def forward(self, x):
                    return self.gru(torch.nn.functional.gelu(self.proj(x.transpose(1, 2))))[0].transpose(1, 2)

            net = NetGRU().to(dev)
        else:
            net = nn.Sequential(
                nn.Conv1d(F_, C, 5, padding=2), nn.BatchNorm1d(C), nn.GELU(),
                nn.Conv1d(C, C, 5, stride=2, padding=2), nn.BatchNorm1d(C), nn.GELU(),
                nn.Conv1d(C, C, 3, stride=2, padding=1), nn.BatchNorm1d(C), nn.GELU()).to(dev)
        head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * C + (S.shape[-1] if with_stats else 0), 8)).to(dev)
        params = list(net.parameters()) + list(head.parameters())
        if aux_kind == "speaker":
            ids = {a: i for i, a in enumerate(np.unique(actors[rows]))}
            aux_target = torch.from_numpy(np.array([ids.get(a, 0) for a in actors])).to(dev)
        elif aux_kind == "intensity":
            aux_target = torch.from_numpy(intensities(actors, y)).to(dev)
        elif aux_kind == "ge2e":
            tm = teacher[:n_copies, rows].reshape(-1, teacher.shape[-1]).mean(0)
            ts = teacher[:n_copies, rows].reshape(-1, teacher.shape[-1]).std(0) + 1e-6
            aux_target = torch.from_numpy(((teacher - tm) / ts).astype(np.float32)).to(dev)  # (copies, N, 512)
        if aux_kind:
            aux_head = nn.Linear(2 * C, {"speaker": len(ids) if aux_kind == "speaker" else 0, "intensity": 2,
                                         "ge2e": teacher.shape[-1] if aux_kind == "ge2e" else 0}[aux_kind]).to(dev)
            params += list(aux_head.parameters())
        opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-2)
        steps_per_epoch = int(np.ceil(len(rows) / 64))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=sched_epochs * steps_per_epoch,
                                                    pct_start=0.1,
                                                    anneal_strategy="cos")
        counts = np.bincount(y[rows], minlength=8).astype(np.float32)
        weight = torch.from_numpy(counts.sum() / (8 * np.maximum(counts, 1))).to(dev)
        loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)

        pooled = []

        def logits(xb, sb):
            h = net(xb)
            h = torch.cat([h.mean(-1), h.amax(-1)] + ([sb] if with_stats else []), dim=1)
            pooled.append(h)
            return head(h)

        def predict(idx, copy=0):
            net.eval(), head.eval()
            with torch.no_grad():
                p = torch.softmax(logits(X[copy, idx], S[copy, idx]), 1).cpu().numpy()
            pooled.clear()
            return p

        def spec_augment(xb):  # 2 time spans and 2 bands of up to 8 masked, per clip
            B, Fn, T = xb.shape
            for _ in range(2):
                w = torch.randint(0, 9, (B, 1), device=dev)
                t0 = (torch.rand(B, 1, device=dev) * (T - w)).long()
                t = torch.arange(T, device=dev)[None]
                xb = xb.masked_fill(((t >= t0) & (t < t0 + w))[:, None, :], 0.0)
                w = torch.randint(0, 9, (B, 1), device=dev)
                f0 = (torch.rand(B, 1, device=dev) * (Fn - w)).long()
                f = torch.arange(Fn, device=dev)[None]
                xb = xb.masked_fill(((f >= f0) & (f < f0 + w))[:, :, None], 0.0)
            return xb

        val_ua = []
        rows_t = torch.from_numpy(rows).to(dev)
        total_steps = max(1, n_epochs * steps_per_epoch)
        step = 0
        for _ in range(n_epochs):
            net.train(), head.train()
            order = rows_t[torch.randperm(len(rows), device=dev)]
            copy = torch.from_numpy(rng.integers(0, n_copies, len(rows))).to(dev)
            for i in range(0, len(rows), 64):
                idx, cp = order[i:i + 64], copy[i:i + 64]
                views = [(X[cp, idx].clone(), S[cp, idx])]
                if cons:  # a second view of each clip at another speed
                    cp2 = (cp + torch.from_numpy(rng.integers(1, n_copies, len(idx))).to(dev)) % n_copies
                    views.append((X[cp2, idx].clone(), S[cp2, idx]))
                yb = Y[idx]
                if specaug:
                    views = [(spec_augment(xb), sb) for xb, sb in views]
                if mixup:
                    lam = float(rng.beta(0.4, 0.4))
                    perm = torch.randperm(len(idx), device=dev)
                    outs = [logits(lam * xb + (1 - lam) * xb[perm], lam * sb + (1 - lam) * sb[perm]) for xb, sb in views]
                    loss = sum(lam * loss_fn(o, yb) + (1 - lam) * loss_fn(o, yb[perm]) for o in outs) / len(outs)
                else:
                    outs = [logits(xb, sb) for xb, sb in views]
                    loss = sum(loss_fn(o, yb) for o in outs) / len(outs)
                if cons:
                    la, lb = torch.log_softmax(outs[0], 1), torch.log_softmax(outs[1], 1)
                    kl = 0.5 * ((la.exp() * (la - lb)).sum(1) + (lb.exp() * (lb - la)).sum(1)).mean()
                    loss = loss + cons * kl
                if aux_kind:  # on the pooled output of the (first) view; mixed targets when mixup mixed the inputs
                    h = pooled[-len(outs)]
                    if aux_kind == "speaker":
                        ramp = 2 / (1 + np.exp(-10 * step / total_steps)) - 1
                        h, w_aux = _Reverse.apply(h, aux_weight * ramp), 1.0
                    else:
                        w_aux = aux_weight
                    if aux_kind == "ge2e":
                        o, t = aux_head(h), aux_target[cp, idx]
                        aux = ((o - (lam * t + (1 - lam) * t[perm] if mixup else t)) ** 2).mean()
                    else:
                        o, t = aux_head(h), aux_target[idx]
                        ce = nn.functional.cross_entropy
                        aux = lam * ce(o, t) + (1 - lam) * ce(o, t[perm]) if mixup else ce(o, t)
                    loss = loss + w_aux * aux
                pooled.clear()
                step += 1
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if len(val_rows):
                val_probs.append(predict(torch.from_numpy(val_rows).to(dev)))
                val_ua.append(bas(y[val_rows], val_probs[-1].argmax(1)))
        return predict, val_ua

    t0 = time.time()
    itr, iva = inner_split(actors[tr], 3, seed)
    val_probs: list[np.ndarray] = []
    _, val_ua = fit(tr[itr], tr[iva], epochs, seed + offset)
    best = int(np.argmax(val_ua)) + 1
    predict, _ = fit(tr, np.arange(0), best, seed + offset, best if name in ANNEAL else epochs)
    te_t = torch.from_numpy(te).to(dev)
    probs = np.stack([predict(te_t, c) for c in range(seq.shape[0])])  # (speeds, n_test, 8): 0 = as recorded
    return {"config": name, "seed": seed, "fold": fold, "probs": probs.astype(np.float16),
            "val_probs": val_probs[best - 1].astype(np.float16),  # inner validation clips at the chosen epoch
            "val_ua": [round(v, 4) for v in val_ua], "best_epoch": best,
            "ua": float(bas(y[te], probs[0].argmax(1))), "seconds": time.time() - t0}


def save_runs(path: Path, results: list[dict], machine: str) -> None:
    """Per-fold CNN outputs as one .npz: probabilities of every test clip at every speed, and the metadata."""
    meta = [{k: v for k, v in r.items() if k not in ("probs", "val_probs")} for r in results]
    np.savez_compressed(path, meta=json.dumps({"machine": machine, "results": meta}),
                        **{f"p{i}": r["probs"] for i, r in enumerate(results)},
                        **{f"v{i}": r["val_probs"] for i, r in enumerate(results) if "val_probs" in r})


def load_runs(paths: list[str]) -> tuple[dict, dict, list[str]]:
    """{(config, seed, fold): probabilities (speeds, n_test, 8)} from one or more saved runs, the same for the
    inner validation clips at the chosen epoch (runs that saved them), and the runs' machines."""
    by, val, machines = {}, {}, []
    for path in paths:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            machines.append(meta["machine"])
            for i, r in enumerate(meta["results"]):
                by[(r["config"], r["seed"], r["fold"])] = z[f"p{i}"].astype(np.float64)
                if f"v{i}" in z.files:
                    val[(r["config"], r["seed"], r["fold"])] = z[f"v{i}"].astype(np.float64)
    return by, val, machines


def cmd_train(args) -> int:
    from concurrent.futures import ProcessPoolExecutor

    import multiprocessing as mp

    from emovae.evaluate import actor_folds

    d = load(Path(args.data))
    jobs = [(name, seed, k, tr, te, args.data, args.device)
            for name in args.configs for seed in args.seeds
            for k, (tr, te) in enumerate(actor_folds(d["actors"], 5, seed))]
    t0, results = time.time(), []
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        for r in pool.map(train_fold, jobs):
            results.append(r)
            print(f"{r['config']:32s} seed {r['seed']} fold {r['fold']}: UA {r['ua']:.3f} (epochs {r['best_epoch']}, "
                  f"{r['seconds']:.0f} s)", flush=True)
            if len(results) % 16 == 0:
                save_runs(Path(args.out), results, f"{platform.platform()}, {args.device}")
    save_runs(Path(args.out), results, f"{platform.platform()}, {args.device}")
    print(f"whole run {time.time() - t0:.0f} s", flush=True)
    return 0


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def geometric_mean(probs: list, weights=None) -> np.ndarray:
    """Weighted geometric mean of probability matrices (N, C), renormalised per row (equal weights by default)."""
    weights = np.full(len(probs), 1 / len(probs)) if weights is None else weights
    return _softmax(sum(w * np.log(p + 1e-9) for w, p in zip(weights, probs)))


def soften(p: np.ndarray, t: float) -> np.ndarray:
    """Probabilities (N, C) with their logits divided by temperature t, renormalised per row."""
    return _softmax(np.log(p + 1e-9) / t)


def fit_temperature(p: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in 0.25-4 (41 steps, log-spaced) that minimises the negative log-likelihood of labels."""
    grid = np.geomspace(0.25, 4.0, 41)
    nll = [-np.log(soften(p, t)[np.arange(len(labels)), labels] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def cmd_report(args) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as bas
    from sklearn.metrics import f1_score

    from emovae.evaluate import actor_folds
    from emovae.features import speaker_normalize

    d = load(Path(args.data))
    stats, y, actors = d["stats"].astype(np.float64), d["labels"], d["actors"]
    by, val, machines = load_runs(args.runs)
    configs = list(dict.fromkeys(k[0] for k in by))
    seeds = sorted({k[1] for k in by})
    tta = [0, 2, 3]  # speeds 1, 0.9, 1.1 (the order of the data file: 1, 0.8, 0.9, 1.1, 1.2)
    lr, lr_a = {}, {}
    for seed in seeds:  # the package's statistics head: LR C = 0.01 on the fold's clips and their speed copies
        for k, (tr, te) in enumerate(actor_folds(actors, 5, seed)):
            Xtr = stats[:, tr].reshape(-1, stats.shape[-1])
            m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
            h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
            h.fit((Xtr - m) / s, np.tile(y[tr], stats.shape[0]))
            lr[(seed, k)] = np.stack([h.predict_proba((stats[c, te] - m) / s) for c in range(stats.shape[0])])
            # adapted: each (pseudo-)speaker's statistics z-scored with its own clips (test speakers: all clips)
            norm = np.stack([speaker_normalize(stats[c], actors) for c in range(stats.shape[0])]).astype(np.float64)
            h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
            h.fit(norm[:, tr].reshape(-1, stats.shape[-1]), np.tile(y[tr], stats.shape[0]))
            lr_a[(seed, k)] = h.predict_proba(norm[0, te])
    rows = {"LR on statistics (reference)": {k: p[0] for k, p in lr.items()},
            "LR, test-time speeds 0.9/1/1.1x": {k: p[tta].mean(0) for k, p in lr.items()},
            "LR, test-time speeds 0.8-1.2x": {k: p.mean(0) for k, p in lr.items()},
            "adapted: LR on speaker-normalised statistics (all clips of the speaker)": lr_a}
    for c in configs:
        cnn = {(s_, k): by[(c, s_, k)] for s_ in seeds for k in range(5) if (c, s_, k) in by}
        rows[c] = {key: p[0] for key, p in cnn.items()}
        rows[f"{c}, test-time speeds 0.9/1/1.1x"] = {key: p[tta].mean(0) for key, p in cnn.items()}
        rows[f"average of LR and {c}"] = {key: (lr[key][0] + p[0]) / 2 for key, p in cnn.items()}
        rows[f"average of LR and {c}, test-time speeds 0.9/1/1.1x"] = {
            key: (lr[key][tta].mean(0) + p[tta].mean(0)) / 2 for key, p in cnn.items()}
        rows[f"average of LR and {c}, test-time speeds 0.8-1.2x"] = {
            key: (lr[key].mean(0) + p.mean(0)) / 2 for key, p in cnn.items()}
        rows[f"adapted: average of adapted LR and {c}"] = {key: (lr_a[key] + p[0]) / 2 for key, p in cnn.items()}
    main = "cnn+speed+specaug+mixup"
    inner_cache: dict = {}

    def inner_lr(key):
        """The LR fitted on the fold's inner training actors: its probabilities on the inner validation clips (the
        clips a CNN run's saved val_probs are for) and their labels."""
        if key not in inner_cache:
            from emovae.model import inner_split

            tr = actor_folds(actors, 5, key[0])[key[1]][0]
            itr, iva = inner_split(actors[tr], 3, key[0])
            Xtr = stats[:, tr[itr]].reshape(-1, stats.shape[-1])
            m, s = Xtr.mean(0), Xtr.std(0) + 1e-9
            h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
            h.fit((Xtr - m) / s, np.tile(y[tr[itr]], stats.shape[0]))
            inner_cache[key] = h.predict_proba((stats[0, tr[iva]] - m) / s), y[tr[iva]]
        return inner_cache[key]

    chosen = [k for k in lr if (main, *k) in val]
    if chosen:  # the LR share and arithmetic/geometric mean chosen on the fold's inner validation actors
        picks, comb, comb_a = [], {}, {}
        grid = [(w, g) for g in (False, True) for w in (0.5, 0.4, 0.6, 0.3, 0.7)]

        def mix(p_lr, p_cnn, w, geo):
            return geometric_mean([p_lr, p_cnn], [w, 1 - w]) if geo else w * p_lr + (1 - w) * p_cnn

        for key in chosen:
            p_val, y_val = inner_lr(key)
            ua = [bas(y_val, mix(p_val, val[(main, *key)], w, g).argmax(1)) for w, g in grid]
            w, g = grid[int(np.argmax(ua))]
            picks.append(f"{w}{'g' if g else 'a'}")
            comb[key] = mix(lr[key][0], by[(main, *key)][0], w, g)
            comb_a[key] = mix(lr_a[key], by[(main, *key)][0], w, g)
        rows[f"LR and {main}, share and mean chosen on the inner actors"] = comb
        rows[f"adapted: LR and {main}, share and mean chosen on the inner actors"] = comb_a
        for w, g in grid:
            rows[f"LR and {main}, LR share {w}, {'geometric' if g else 'arithmetic'} mean"] = {
                k: mix(lr[k][0], by[(main, *k)][0], w, g) for k in chosen}
        print("inner choices (LR share, a = arithmetic, g = geometric):", " ".join(picks))
    for c in [c for c in configs if c in MEL_CONFIGS]:  # a third member: equal thirds, fixed a priori
        keys = [k for k in lr if (main, *k) in by and (c, *k) in by]
        name = f"average of LR, {main} and {c}"
        rows[name] = {k: (lr[k][0] + by[(main, *k)][0] + by[(c, *k)][0]) / 3 for k in keys}
        rows[f"adapted: {name}"] = {k: (lr_a[k] + by[(main, *k)][0] + by[(c, *k)][0]) / 3 for k in keys}
    # fifth round, fixed 2026-11-25 22:45 before any of its results: the three shipped members combined by their
    # geometric mean (equal weights, renormalised) instead of the arithmetic mean, on fold seeds 0-5 and on a new
    # fold draw, seeds 6-8. Rule: ship it if it beats the arithmetic thirds on average in both fold groups (0-5 and
    # 6-8) and on at least 60 % of all folds.
    mf = "mfccmel2d+speed+specaug+mixup"
    keys = [k for k in lr if (main, *k) in by and (mf, *k) in by]
    paired = []
    if keys:
        arith, geo = f"average of LR, {main} and {mf}", f"geometric mean of LR, {main} and {mf}"
        rows[geo] = {k: geometric_mean([lr[k][0], by[(main, *k)][0], by[(mf, *k)][0]]) for k in keys}
        rows[f"adapted: {geo}"] = {k: geometric_mean([lr_a[k], by[(main, *k)][0], by[(mf, *k)][0]]) for k in keys}
        paired = [(geo, arith), (f"adapted: {geo}", f"adapted: {arith}")]
        # ninth round, fixed 2026-11-25 23:55 before its results: each member's temperature fitted on the fold's
        # inner validation actors (NLL over a grid of 0.25-4), then the thirds of the calibrated probabilities.
        # Rule: ship it if it beats the plain thirds on average in every fold draw and on >= 60 % of the folds.
        keys_t = [k for k in keys if (main, *k) in val and (mf, *k) in val]
        if keys_t:
            cal = f"thirds of LR, {main} and {mf}, each with its temperature fitted on the inner actors"
            rows[cal] = {}
            for k in keys_t:
                p_val, y_val = inner_lr(k)
                members = [lr[k][0], by[(main, *k)][0], by[(mf, *k)][0]]
                temps = [fit_temperature(p, y_val) for p in (p_val, val[(main, *k)], val[(mf, *k)])]
                rows[cal][k] = np.mean([soften(p, t) for p, t in zip(members, temps)], axis=0)
            paired.append((cal, arith))
        gru = "gru+speed+specaug+mixup"
        keys4 = [k for k in keys if (gru, *k) in by]
        if keys4:
            four = f"average of LR, {main}, {mf} and {gru}"
            rows[four] = {k: (lr[k][0] + by[(main, *k)][0] + by[(mf, *k)][0] + by[(gru, *k)][0]) / 4 for k in keys4}
            paired.append((four, arith))
    inits = [c for c in configs if c.startswith("cnn+speed+specaug+mixup init")]
    if inits:  # an ensemble of the main recipe trained from several initialisations
        members = ["cnn+speed+specaug+mixup"] + inits
        keys = [k for k in lr if all((c, *k) in by for c in members)]
        ens = {k: np.mean([by[(c, *k)] for c in members], axis=0) for k in keys}
        name = f"{len(members)} CNNs (main recipe, {len(members)} initialisations)"
        rows[name] = {k: p[0] for k, p in ens.items()}
        rows[f"average of LR and {name}"] = {k: (lr[k][0] + p[0]) / 2 for k, p in ens.items()}
        rows[f"average of LR and {name}, test-time speeds 0.9/1/1.1x"] = {
            k: (lr[k][tta].mean(0) + p[tta].mean(0)) / 2 for k, p in ens.items()}
    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; training: {'; '.join(sorted(set(machines)))}; report: "
          f"{platform.platform()}; `python benchmarks/sequence.py report {' '.join(sys.argv[2:])}`\n")

    def fold_ua(probs, keys):
        return np.array([bas(y[actor_folds(actors, 5, k[0])[k[1]][1]], probs[k].argmax(1)) for k in keys])

    for new_name, ref_name in paired:  # paired by fold against the arithmetic thirds
        print(f"\n{new_name} against {ref_name}:")
        for group in ([s_ for s_ in seeds if s_ < 3], [s_ for s_ in seeds if 3 <= s_ < 6], [s_ for s_ in seeds if s_ >= 6]):
            keys = [k for k in rows[new_name] if k[0] in group]
            if keys:
                d_ = fold_ua(rows[new_name], keys) - fold_ua(rows[ref_name], keys)
                print(f"- fold seeds {min(group)}-{max(group)}: {d_.mean():+.4f} ± {d_.std():.4f}, better on "
                      f"{int((d_ > 0).sum())}/{len(d_)} folds, equal on {int((d_ == 0).sum())}")
    for group in ([s_ for s_ in seeds if s_ < 3], [s_ for s_ in seeds if 3 <= s_ < 6], [s_ for s_ in seeds if s_ >= 6]):
        if not group:
            continue
        print(f"\nFold seeds {', '.join(map(str, group))}:\n")
        print("| configuration | UA mean ± std | macro-F1 | paired ΔUA vs LR | folds better |")
        print("|---|---|---|---|---|")
        for name, probs in rows.items():
            keys = [key for key in lr if key in probs and key[0] in group]
            if not keys:
                continue
            folds = {key: actor_folds(actors, 5, key[0])[key[1]][1] for key in keys}
            ua = np.array([bas(y[folds[k]], probs[k].argmax(1)) for k in keys])
            f1 = np.array([f1_score(y[folds[k]], probs[k].argmax(1), average="macro") for k in keys])
            diff = ua - np.array([bas(y[folds[k]], lr[k][0].argmax(1)) for k in keys])
            print(f"| {name} | {ua.mean():.3f} ± {ua.std():.3f} | {f1.mean():.3f} | {diff.mean():+.3f} ± "
                  f"{diff.std():.3f} | {int((diff > 0).sum())}/{len(diff)} |")
    return 0


def cmd_compare(args) -> int:
    """One configuration from two sets of runs (say, two data files), paired by fold: alone and averaged with the
    statistics LR (fitted here on --data's statistics, as in the report)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as bas

    from emovae.evaluate import actor_folds

    d = load(Path(args.data))
    stats, y, actors = d["stats"].astype(np.float64), d["labels"], d["actors"]
    a, _, _ = load_runs(args.runs_a)
    b, _, _ = load_runs(args.runs_b)
    cb = args.config_b or args.config
    keys = sorted(k[1:] for k in a if k[0] == args.config and (cb, *k[1:]) in b)
    out = {"alone": [], "averaged with the LR": []}
    for seed, k in keys:
        tr, te = actor_folds(actors, 5, seed)[k]
        X = stats[:, tr].reshape(-1, stats.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
        p_lr = h.fit((X - m) / s, np.tile(y[tr], stats.shape[0])).predict_proba((stats[0, te] - m) / s)
        pa, pb = a[(args.config, seed, k)][0], b[(cb, seed, k)][0]
        out["alone"].append((seed, bas(y[te], pa.argmax(1)), bas(y[te], pb.argmax(1))))
        out["averaged with the LR"].append((seed, bas(y[te], (pa + p_lr).argmax(1)), bas(y[te], (pb + p_lr).argmax(1))))
    print(f"A: {args.config} in {' '.join(args.runs_a)}; B: {cb} in {' '.join(args.runs_b)}\n")
    print("| | fold seeds | UA, A | UA, B | paired B - A | folds B better |")
    print("|---|---|---|---|---|---|")
    for name, rows in out.items():
        r = np.array(rows)
        for group in ([s_ for s_ in set(r[:, 0]) if s_ < 3], [s_ for s_ in set(r[:, 0]) if s_ >= 3]):
            g = r[np.isin(r[:, 0], group)]
            if len(g):
                diff = g[:, 2] - g[:, 1]
                print(f"| {name} | {int(min(group))}-{int(max(group))} | {g[:, 1].mean():.3f} | {g[:, 2].mean():.3f} | "
                      f"{diff.mean():+.4f} ± {diff.std():.4f} | {int((diff > 0).sum())}/{len(diff)} |")
    return 0


def _stack_fold(job: tuple) -> tuple:
    """Strict and adapted UA of the equal-thirds stack on one fold, for each side's statistics and CNN outputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score as bas

    seed, tr, te, y, sides = job
    out = [seed]
    for stats, norm, cnn in sides:
        X = stats[:, tr].reshape(-1, stats.shape[-1])
        m, s = X.mean(0), X.std(0) + 1e-9
        h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
        p_lr = h.fit((X - m) / s, np.tile(y[tr], len(stats))).predict_proba((stats[0, te] - m) / s)
        h = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
        h.fit(norm[:, tr].reshape(-1, stats.shape[-1]), np.tile(y[tr], len(stats)))
        p_lr_a = h.predict_proba(norm[0, te])
        out += [bas(y[te], (p_lr + cnn).argmax(1)), bas(y[te], (p_lr_a + cnn).argmax(1))]
    return tuple(out)


def _statistics_lr(stats: np.ndarray, norm: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray):
    """Per mode (strict: z-scored with the training fold; adapted: speaker-normalised): (training rows, clips and
    copies; their labels; the test clips; the statistics LR's test probabilities, C = 0.01)."""
    from sklearn.linear_model import LogisticRegression

    for mode, X_all in (("strict", stats), ("adapted", norm)):
        X = X_all[:, tr].reshape(-1, X_all.shape[-1])
        m, s = (X.mean(0), X.std(0) + 1e-9) if mode == "strict" else (0.0, 1.0)
        yt = np.tile(y[tr], len(X_all))
        Xte = (X_all[0, te] - m) / s
        lr = LogisticRegression(C=0.01, class_weight="balanced", max_iter=3000)
        yield (X - m) / s, yt, Xte, lr.fit((X - m) / s, yt).predict_proba(Xte)


def _mlp_fold(job: tuple) -> tuple:
    """Strict and adapted UA on one fold of: the shipped thirds (LR, frame CNN, log-mel CNN); quarters with an MLP
    on the statistics as a fourth member; thirds whose statistics member is the average of LR and MLP."""
    from sklearn.metrics import balanced_accuracy_score as bas
    from sklearn.neural_network import MLPClassifier

    seed, tr, te, y, stats, norm, cnn = job
    out = [seed]
    for Xs, yt, Xte, p_lr in _statistics_lr(stats, norm, y, tr, te):
        mlp = MLPClassifier(hidden_layer_sizes=(128,), alpha=1.0, max_iter=200, early_stopping=False, random_state=seed)
        p_mlp = mlp.fit(Xs, yt).predict_proba(Xte)
        c1 = cnn / 2  # the two CNNs' mean
        out += [bas(y[te], (p_lr + 2 * c1).argmax(1)), bas(y[te], (p_lr + p_mlp + 2 * c1).argmax(1)),
                bas(y[te], ((p_lr + p_mlp) / 2 + 2 * c1).argmax(1)), bas(y[te], p_mlp.argmax(1)),
                bas(y[te], p_lr.argmax(1))]
    return tuple(out)


def stack_jobs(args) -> list[tuple]:
    """One job per fold of ``args.seeds``: (seed, train idx, test idx, labels, statistics (copies, N, S),
    speaker-normalised statistics, the sum of the shipped CNNs' test probabilities from ``args.runs``)."""
    from emovae.evaluate import actor_folds
    from emovae.features import speaker_normalize

    members = ("cnn+speed+specaug+mixup", "mfccmel2d+speed+specaug+mixup")
    with np.load(args.data) as z:
        stats, y, actors = z["stats"].astype(np.float64), z["labels"], z["actors"]
    by, _, _ = load_runs(args.runs)
    norm = np.stack([speaker_normalize(stats[c], actors) for c in range(len(stats))]).astype(np.float64)
    return [(seed, tr, te, y, stats, norm, sum(by[(c, seed, k)][0] for c in members))
            for seed in args.seeds for k, (tr, te) in enumerate(actor_folds(actors, 5, seed))]


def fold_draws(seeds: list[int]) -> list[list[int]]:
    """The fold seeds in draws of three, then all of them together (when there is more than one draw)."""
    draws = [list(seeds[i:i + 3]) for i in range(0, len(seeds), 3)]
    return draws + ([list(seeds)] if len(draws) > 1 else [])


def cmd_mlp_member(args) -> int:
    """Section 20 of experiments.md: an MLP on the statistics beside the shipped members, paired by fold."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = stack_jobs(args)
    with ProcessPoolExecutor(args.jobs) as pool:
        r = np.array(list(pool.map(_mlp_fold, jobs)))
    names = ["thirds (shipped)", "quarters: + MLP as a fourth member", "thirds, statistics member = (LR + MLP) / 2",
             "MLP alone", "LR alone"]
    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; runs {' '.join(args.runs)}\n")
    print("| mode | system | fold seeds | UA | paired vs thirds | folds better |")
    print("|---|---|---|---|---|---|")
    for mi, mode in enumerate(("strict", "adapted")):
        base = 1 + 5 * mi
        for j, name in enumerate(names):
            for group in fold_draws(args.seeds):
                g = r[np.isin(r[:, 0], group)]
                diff = g[:, base + j] - g[:, base]
                print(f"| {mode} | {name} | {','.join(map(str, group))} | {g[:, base + j].mean():.3f} | "
                      f"{diff.mean():+.4f} ± {diff.std():.4f} | {int((diff > 0).sum())}/{len(diff)} |", flush=True)
    return 0


def _mlp_sizes_fold(job: tuple) -> tuple:
    """Strict and adapted UA on one fold of the shipped thirds with the statistics member = LR alone, then = (LR +
    MLP of h hidden units) / 2 for each h in ``sizes`` (section 23)."""
    from sklearn.metrics import balanced_accuracy_score as bas
    from sklearn.neural_network import MLPClassifier

    seed, tr, te, y, stats, norm, cnn, sizes = job
    out = [seed]
    for Xs, yt, Xte, p_lr in _statistics_lr(stats, norm, y, tr, te):
        out.append(bas(y[te], (p_lr + cnn).argmax(1)))
        for h in sizes:
            mlp = MLPClassifier(hidden_layer_sizes=(h,), alpha=1.0, max_iter=200, random_state=seed)
            p_mlp = mlp.fit(Xs, yt).predict_proba(Xte)
            out.append(bas(y[te], ((p_lr + p_mlp) / 2 + cnn).argmax(1)))
    return tuple(out)


def cmd_mlp_sizes(args) -> int:
    """Section 23 of experiments.md: the statistics MLP's width, in the single-clip and the adapted head."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [job + (tuple(args.hidden),) for job in stack_jobs(args)]
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool:
        r = np.array(list(pool.map(_mlp_sizes_fold, jobs)))
    print(f"- {time.strftime('%Y-%m-%d %H:%M')}; {platform.platform()}; {time.time() - t0:.0f} s; "
          f"runs {' '.join(args.runs)}\n")
    print("| mode | statistics member of the thirds | fold seeds | UA | paired vs LR alone | folds better | "
          f"paired vs MLP {args.hidden[0]} | folds better |")
    print("|---|---|---|---|---|---|---|---|")
    width = 1 + len(args.hidden)
    for mi, mode in enumerate(("strict", "adapted")):
        base = 1 + width * mi
        names = ["LR alone"] + [f"(LR + MLP {h}) / 2" for h in args.hidden]
        for j, name in enumerate(names):
            for group in fold_draws(args.seeds):
                g = r[np.isin(r[:, 0], group)]
                d0, d1 = g[:, base + j] - g[:, base], g[:, base + j] - g[:, base + 1]
                print(f"| {mode} | {name} | {','.join(map(str, group))} | {g[:, base + j].mean():.3f} | "
                      f"{d0.mean():+.4f} ± {d0.std():.4f} | {int((d0 > 0).sum())}/{len(d0)} | "
                      f"{d1.mean():+.4f} ± {d1.std():.4f} | {int((d1 > 0).sum())}/{len(d1)} |", flush=True)
    return 0


def cmd_compare_stack(args) -> int:
    """The shipped stack (equal thirds of the statistics LR, the frame CNN and the log-mel CNN) built from data A
    and runs A against the same built from data B and runs B, paired by fold and printed per fold draw, strict and
    adapted (section 19 of experiments.md)."""
    from concurrent.futures import ProcessPoolExecutor

    from emovae.evaluate import actor_folds
    from emovae.features import speaker_normalize

    members = ("cnn+speed+specaug+mixup", "mfccmel2d+speed+specaug+mixup")
    sides = []
    for data, runs, names in ((args.data_a, args.runs_a, members),
                              (args.data_b, args.runs_b, args.members_b or members)):
        with np.load(data) as z:
            stats, y, actors = z["stats"].astype(np.float64), z["labels"], z["actors"]
        by, _, _ = load_runs(runs)
        norm = np.stack([speaker_normalize(stats[c], actors) for c in range(len(stats))]).astype(np.float64)
        sides.append((stats, norm, by, names))
    jobs = [(seed, tr, te, y, [(st, nm, sum(by[(c, seed, k)][0] for c in names)) for st, nm, by, names in sides])
            for seed in args.seeds for k, (tr, te) in enumerate(actor_folds(actors, 5, seed))]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(_stack_fold, jobs))
    r = np.array(rows)
    print(f"A: {args.data_a} with {' '.join(args.runs_a)}\nB: {args.data_b} with {' '.join(args.runs_b)}\n")
    print("| mode | fold seeds | UA, A | UA, B | paired B - A | folds B better |")
    print("|---|---|---|---|---|---|")
    for mode, (ia, ib) in (("strict", (1, 3)), ("adapted", (2, 4))):
        draws = [list(args.seeds[i:i + 3]) for i in range(0, len(args.seeds), 3)]
        for group in draws + ([list(args.seeds)] if len(draws) > 1 else []):
            g = r[np.isin(r[:, 0], group)]
            diff = g[:, ib] - g[:, ia]
            print(f"| {mode} | {','.join(map(str, group))} | {g[:, ia].mean():.3f} | {g[:, ib].mean():.3f} | "
                  f"{diff.mean():+.4f} ± {diff.std():.4f} | {int((diff > 0).sum())}/{len(diff)} |")
    print("\nper fold (seed, strict A, adapted A, strict B, adapted B): "
          + " ".join(f"({int(a)}, {b:.3f}, {c:.3f}, {d:.3f}, {e:.3f})" for a, b, c, d, e in rows))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data")
    p.add_argument("--out", default=".seqdata/seq64.npz")
    p.add_argument("--seq-len", type=int, default=64)
    p = sub.add_parser("data-mel")
    p.add_argument("--out", default=".seqdata/mel64.npz")
    p.add_argument("--seq-len", type=int, default=64)
    p = sub.add_parser("train")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="/tmp/emovae-sequence.npz")
    p = sub.add_parser("report")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--runs", nargs="+", default=["/tmp/emovae-sequence.npz"])
    p = sub.add_parser("compare")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--config", default="cnn+speed+specaug+mixup")
    p.add_argument("--config-b", default=None, help="the configuration in runs B (default: --config)")
    p.add_argument("--runs-a", nargs="+", required=True)
    p.add_argument("--runs-b", nargs="+", required=True)
    p = sub.add_parser("data-copy", help="the data file with one more perturbed copy of every clip appended")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--copy", required=True, help="a copy as benchmarks/augment.py names it, say reverb0.4")
    p.add_argument("--out", required=True)
    p = sub.add_parser("compare-stack")
    p.add_argument("--data-a", default=".seqdata/seq64.npz")
    p.add_argument("--data-b", required=True)
    p.add_argument("--runs-a", nargs="+", required=True)
    p.add_argument("--runs-b", nargs="+", required=True)
    p.add_argument("--members-b", nargs=2, default=None, help="the two CNN configurations of runs B (default: the "
                   "shipped ones)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("mlp-member", help="an MLP on the statistics beside the shipped members (section 20)")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p = sub.add_parser("mlp-sizes", help="the statistics MLP's width, single-clip and adapted (section 23)")
    p.add_argument("--data", default=".seqdata/seq64.npz")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 64])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    if args.cmd == "mlp-sizes":
        return cmd_mlp_sizes(args)
    if args.cmd == "mlp-member":
        return cmd_mlp_member(args)
    if args.cmd == "compare":
        return cmd_compare(args)
    if args.cmd == "compare-stack":
        return cmd_compare_stack(args)
    if args.cmd == "data-copy":
        add_copy(Path(args.data), args.copy, Path(args.out))
        return 0
    if args.cmd == "data":
        make_data(Path(args.out), args.seq_len)
        return 0
    if args.cmd == "data-mel":
        make_mel(Path(args.out), args.seq_len)
        return 0
    return cmd_train(args) if args.cmd == "train" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
