"""The network, in torch: a sequence VAE over the pooled frames and utterance statistics, and two linear heads
(single-clip and speaker-adapted). Training builds and fits it (``emovae.train``); ``model.onnx`` is its export,
and the torch backend of ``runtime`` runs it from a model folder. torch is imported here, so import this module
only where torch is wanted.

Inputs (raw, float32): seq (B, T, F) frames pooled to T steps, stats (B, S) utterance statistics, spk_mean and
spk_std (B, S) the speaker's moments. Outputs, in ``modelfile.OUTPUTS`` order: see ``EmotionNet.forward``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import ClassifierConfig, FeatureConfig, VAEConfig, from_dict
from .errors import ModelFormatError, require
from .modelfile import INPUTS, ONNX_FILE, WEIGHTS_FILE, output_names
from .voice import VOICE_DIM


class SequenceVAE(nn.Module):
    """1-D convolutional VAE over (features, time); time is downsampled 4x by two strided convolutions. With
    ``n_stats``, the statistics (B, n_stats) join the encoder's output and a linear head reconstructs them, so the
    ELBO covers every feature the heads read (a noise clip has flat, easily rebuilt frames but far-off statistics).
    At inference the latent is mu (deterministic)."""

    def __init__(self, n_features: int, cfg: VAEConfig, n_stats: int = 0):
        super().__init__()
        c, t4 = cfg.channels, cfg.seq_len // 4
        self.n_features, self.seq_len, self.latent_dim, self.n_stats = n_features, cfg.seq_len, cfg.latent_dim, n_stats
        self.encoder = nn.Sequential(
            nn.Conv1d(n_features, c, 5, padding=2), nn.GELU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2), nn.GELU(),
            nn.Flatten(),
        )
        self.to_latent = nn.Linear(c * t4 + n_stats, 2 * cfg.latent_dim)
        self.from_latent = nn.Linear(cfg.latent_dim, c * t4)
        self.decoder = nn.Sequential(
            nn.GELU(), nn.Unflatten(1, (c, t4)),
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv1d(c, n_features, 5, padding=2),
        )
        self.stats_head = nn.Linear(cfg.latent_dim, n_stats) if n_stats else None

    def encode(self, x: torch.Tensor, s: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F, T) [and (B, n_stats)] -> mu, logvar, each (B, latent_dim)."""
        h = self.encoder(x)
        if self.n_stats:
            h = torch.cat([h, s], dim=1)
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): a differentiable sample of q(z | x)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor):
        """(B, latent_dim) -> reconstructed frames (B, F, T), or (frames, statistics (B, n_stats))."""
        x_hat = self.decoder(self.from_latent(z))
        return (x_hat, self.stats_head(z)) if self.n_stats else x_hat

    def forward(self, x: torch.Tensor, s: torch.Tensor | None = None):
        mu, logvar = self.encode(x, s)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar


def n_head_stats(n_stats: int, clf_cfg: ClassifierConfig, voice: bool) -> int:
    """How many of the (last) statistics the heads read: all, or the voice student's 512 (``head_stats`` "voice",
    or "auto" when the model has a student: ``voice``)."""
    heads_voice = clf_cfg.head_stats == "voice" or (clf_cfg.head_stats == "auto" and voice)
    return VOICE_DIM if heads_voice else n_stats


class EmotionNet(nn.Module):
    """Raw (seq, stats, spk_mean, spk_std) -> (probabilities (B, C) of the single-clip head, mu (B, L),
    recon_mse (B,) of the frames, kl (B,), stats_mse (B,) of the statistics (0 when the VAE does not see them),
    novelty (B,), probabilities_adapted (B, C)[, dimensions (B, 2), dimensions_adapted (B, 2)]).

    With ``dimensions``, two more linear heads on the same inputs give arousal and valence, each clipped to
    [-1, 1] (``affect``): single-clip and speaker-adapted.

    The scalers are buffers: inputs are standardised inside. Both heads are linear on the last ``n_head``
    statistics (standardised; for the adapted head, z-scored with the speaker's moments instead) joined with the
    standardised latent. Novelty is the VAE's reconstruction error of the statistics (of the frames when the VAE
    does not see them): how unlike the training speech a clip is."""

    def __init__(self, n_frame_features: int, n_stats: int, n_classes: int, vae_cfg: VAEConfig,
                 clf_cfg: ClassifierConfig, n_head: int, dimensions: bool = False):
        super().__init__()
        self.vae = SequenceVAE(n_frame_features, vae_cfg, n_stats if vae_cfg.with_stats else 0)
        self.n_head, self.use_stats, self.use_latent = n_head, clf_cfg.use_stats, clf_cfg.use_latent
        d = (n_head if clf_cfg.use_stats else 0) + (vae_cfg.latent_dim if clf_cfg.use_latent else 0)
        self.classifier = nn.Linear(d, n_classes)
        self.classifier_adapted = nn.Linear(d, n_classes)
        self.has_dimensions = False
        if dimensions:
            self.add_dimension_heads()
        for name, size in (("seq_mean", n_frame_features), ("seq_std", n_frame_features),
                           ("stats_mean", n_stats), ("stats_std", n_stats),
                           ("z_mean", vae_cfg.latent_dim), ("z_std", vae_cfg.latent_dim)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def add_dimension_heads(self) -> None:
        """Give the network its arousal and valence heads (zero until fitted), e.g. to a model trained before them."""
        d = self.classifier.in_features
        self.dimensions, self.dimensions_adapted = nn.Linear(d, 2), nn.Linear(d, 2)
        for layer in (self.dimensions, self.dimensions_adapted):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.has_dimensions = True

    def scaled(self, seq: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised frames (B, F, T) and statistics (B, S)."""
        return ((seq - self.seq_mean) / self.seq_std).transpose(1, 2), (stats - self.stats_mean) / self.stats_std

    def head_inputs(self, mu, s, stats, spk_mean, spk_std) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-clip and adapted heads' inputs, each (B, D), from the latent mean, the standardised
        statistics ``s``, and the raw statistics with the speaker's moments."""
        z = [(mu - self.z_mean) / self.z_std] if self.use_latent else []
        s_a = ((stats - spk_mean) / spk_std)[:, -self.n_head:]  # speaker-normalised, for the adapted head
        single = ([s[:, -self.n_head:]] if self.use_stats else []) + z
        adapted = ([s_a] if self.use_stats else []) + z
        return torch.cat(single, dim=1), torch.cat(adapted, dim=1)

    def forward(self, seq, stats, spk_mean, spk_std):
        x, s = self.scaled(seq, stats)
        with_stats = self.vae.n_stats > 0
        mu, logvar = self.vae.encode(x, s if with_stats else None)
        decoded = self.vae.decode(mu)
        x_hat = decoded[0] if with_stats else decoded
        recon_mse = ((x_hat - x) ** 2).mean(dim=(1, 2))
        stats_mse = ((decoded[1] - s) ** 2).mean(dim=1) if with_stats else torch.zeros_like(recon_mse)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=1)
        novelty = stats_mse if with_stats else recon_mse
        h, h_a = self.head_inputs(mu, s, stats, spk_mean, spk_std)
        probs = torch.softmax(self.classifier(h), dim=1)
        probs_a = torch.softmax(self.classifier_adapted(h_a), dim=1)
        if not self.has_dimensions:
            return probs, mu, recon_mse, kl, stats_mse, novelty, probs_a
        dims, dims_a = self.dimensions(h).clamp(-1.0, 1.0), self.dimensions_adapted(h_a).clamp(-1.0, 1.0)
        return probs, mu, recon_mse, kl, stats_mse, novelty, probs_a, dims, dims_a

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of ``forward``'s outputs, in order (``modelfile.OUTPUTS`` [+ ``DIMENSION_OUTPUTS``])."""
        return output_names({"dimensions": self.has_dimensions})


def build_net(meta: dict) -> EmotionNet:
    """An EmotionNet of the shapes a model description (model.json content) gives, weights not loaded."""
    fcfg = from_dict(FeatureConfig, meta["feature_config"])
    vcfg = from_dict(VAEConfig, meta["vae_config"])
    ccfg = from_dict(ClassifierConfig, meta["classifier_config"])
    n_stats = len(meta["stat_names"])
    return EmotionNet(len(meta["frame_names"]), n_stats, len(meta["classes"]), vcfg, ccfg,
                      n_head_stats(n_stats, ccfg, bool(fcfg.voice)), bool(meta.get("dimensions")))


def load_net(directory: str | Path, meta: dict) -> EmotionNet:
    """The fitted EmotionNet of a model folder, from ``weights.pt`` (torch's weights-only loader, no unpickling)
    or, without it, from the initializers of ``model.onnx`` (the exporter names each after its state-dict key).
    ModelFormatError naming the folder, and the model.json field a weight's shape disagrees with, otherwise."""
    d = Path(directory)
    if not (d / WEIGHTS_FILE).is_file() and not (d / ONNX_FILE).is_file():
        raise ModelFormatError(f"{d}: no {ONNX_FILE} (the network and its weights) in this model folder; copy the "
                               "whole folder written by 'emovae train', or retrain the model")
    source = d / (WEIGHTS_FILE if (d / WEIGHTS_FILE).is_file() else ONNX_FILE)
    try:
        net = build_net(meta)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        if source.name == WEIGHTS_FILE:
            state = torch.load(source, weights_only=True, map_location="cpu")
        else:
            onnx = require("onnx", "train")
            from onnx import numpy_helper

            proto = onnx.load(str(source))
            state = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float32))
                     for t in proto.graph.initializer if t.name in shapes}  # float16 initializers back to float32
        if not isinstance(state, dict) or not state:
            raise ModelFormatError(f"{source}: holds none of the network's weights (is it another model's file, or "
                                   f"the voice student's? swapped {ONNX_FILE} and voice.onnx?); retrain or reinstall "
                                   "the model")
        for key, value in state.items():
            if key in shapes and tuple(getattr(value, "shape", ())) != shapes[key]:
                raise ModelFormatError(f"{source}: its {key} has shape {tuple(value.shape)}, but model.json describes "
                                       f"{shapes[key]} ({SHAPE_FIELDS.get(key.split('.')[0], 'its configs')}); the "
                                       "weights and model.json are from different models: retrain or reinstall")
        net.load_state_dict(state)
    except ModelFormatError:
        raise
    except (KeyError, TypeError, RuntimeError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{d}: model files are incomplete or incompatible ({str(exc)[:300]})") from None
    except Exception as exc:  # onnx's DecodeError and the like from a damaged model.onnx
        raise ModelFormatError(f"{d}: model files are damaged ({type(exc).__name__})") from None
    return net.eval()


#: the model.json fields that size each top-level part of the network (for the error of a weight that does not fit)
SHAPE_FIELDS = {"classifier": "classes, stat_names and vae_config.latent_dim",
                "classifier_adapted": "classes, stat_names and vae_config.latent_dim",
                "vae": "frame_names, stat_names and vae_config", "seq_mean": "frame_names", "seq_std": "frame_names",
                "stats_mean": "stat_names", "stats_std": "stat_names", "z_mean": "vae_config.latent_dim",
                "z_std": "vae_config.latent_dim", "dimensions": "stat_names and vae_config.latent_dim",
                "dimensions_adapted": "stat_names and vae_config.latent_dim"}


def runner(net: EmotionNet):
    """``net`` as a function of the input arrays (``modelfile.INPUTS`` -> arrays) to its outputs, like an
    onnxruntime session's run."""

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[k], dtype=np.float32)) for k in INPUTS]
        with torch.no_grad():
            return [o.numpy() for o in net(*args)]

    return run
