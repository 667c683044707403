"""EmotionRecognizer: scaler -> VAE mean joined with handcrafted statistics -> linear heads, averaged with a
sequence CNN on the frames and a 2-D CNN on the log-mel bands they hold (emovae.cnn); save / load.

Follows scikit-learn's estimator contract: ``__init__`` only stores parameters, ``fit`` returns self,
learned state ends in ``_``, probability columns follow ``classes_``. X is a sequence of
``features.Features`` (one per clip); ``groups`` (the speaker of each clip) drive the inner
actor-disjoint validation split used for early stopping and for choosing C.

The fitted state is one small torch module, EmotionNet, mapping (pooled frames, statistics) to
(probabilities, latent mean, reconstruction errors, KL, novelty): the graph that is exported to ONNX.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig, from_dict, to_dict
from .data import EMOTIONS
from .errors import DataError, ModelFormatError, ParameterError, require
from .features import Features, model_inputs, speaker_moments, speaker_prior
from .runtime import CONFIG_FILE, MODEL_FORMAT, MODEL_FORMAT_VERSION, ONNX_FILE, read_model_json, speaker_inputs

WEIGHTS_FILE = "weights.pt"
VOICE_FILE = "voice.onnx"  # the voice student's graph, beside model.onnx (FeatureConfig.voice)
OUTPUTS = ("probabilities", "mu", "recon_mse", "kl", "stats_mse", "novelty", "probabilities_adapted")

try:  # scikit-learn is part of the `train` extra; the estimator base gives get_params / clone
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # pragma: no cover
    BaseEstimator, ClassifierMixin = object, object


def _as_names(y) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        if y.size and (y.min() < 0 or y.max() >= len(EMOTIONS)):
            raise ParameterError(f"label indices must be in 0..{len(EMOTIONS) - 1}")
        return np.array(EMOTIONS)[y]
    bad = sorted(set(y.tolist()) - set(EMOTIONS))
    if bad:
        raise ParameterError(f"unknown emotion label(s) {bad}; expected names from {EMOTIONS}")
    return y.astype(str)


def inner_split(groups: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Actor-disjoint (train_idx, val_idx) inside a training set; val empty when fewer than 2 groups."""
    actors = np.unique(groups)
    if len(actors) < 2:
        return np.arange(len(groups)), np.arange(0)
    n_val = min(n_val, max(1, len(actors) // 4))
    val_actors = np.random.default_rng(seed).permutation(actors)[:n_val]
    is_val = np.isin(groups, val_actors)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _scaler(x: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=axis)
    std = x.std(axis=axis)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def n_head_stats(n_stats: int, clf_cfg: ClassifierConfig, voice: bool) -> int:
    """How many of the (last) statistics the heads read: all, or the voice student's 512 (``head_stats`` "voice",
    or "auto" when the model has a student: ``voice``)."""
    from .voice import VOICE_DIM

    heads_voice = clf_cfg.head_stats == "voice" or (clf_cfg.head_stats == "auto" and voice)
    return VOICE_DIM if heads_voice else n_stats


def build_net(n_frame_features: int, n_stats: int, n_classes: int, vae_cfg: VAEConfig, clf_cfg: ClassifierConfig,
              feat_cfg: FeatureConfig | None = None):
    """An untrained EmotionNet of the right shapes (weights are loaded or set by fit); ``feat_cfg`` gives the
    MFCC and mel-band counts of the log-mel CNN's input."""
    import torch
    from torch import nn

    from .cnn import MelCNN, MelInput, SequenceCNN
    from .vae import SequenceVAE

    def mlp(d: int, hidden: int):
        return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)) if hidden else None

    class EmotionNet(nn.Module):
        """(seq (B, T, F), stats (B, S), spk_mean (B, S), spk_std (B, S)) raw -> probabilities (B, C) of the
        single-clip head, mu (B, L), recon_mse (B,) of the frames,
        kl (B,), stats_mse (B,) of the statistics (0 when the VAE does not see them), and novelty (B,): how
        unlike the training speech a clip is. Novelty is the VAE's reconstruction error of the statistics
        (stats_mse), which separates non-speech from speech best in benchmarks/ood.py; the frame error alone
        fails on noise (flat frames are easy to rebuild). Without statistics in the VAE it is recon_mse.
        Last, probabilities_adapted (B, C): the adapted head on the statistics z-scored with the speaker's
        mean and std (spk_mean, spk_std: estimated from that speaker's clips, see session.py). With a sequence
        CNN (ClassifierConfig.cnn_channels) and/or a log-mel CNN (mel_cnn) both heads' probabilities are averaged
        with theirs (cnn_weight). With an MLP (stats_mlp, adapted_mlp), a head's probabilities are first averaged
        with the MLP's on the same inputs."""

        def __init__(self):
            super().__init__()
            self.vae = SequenceVAE(n_frame_features, vae_cfg, n_stats if vae_cfg.with_stats else 0)
            self.n_head = n_head_stats(n_stats, clf_cfg, bool(feat_cfg and feat_cfg.voice))  # the heads read the last n_head statistics
            d = (self.n_head if clf_cfg.use_stats else 0) + (vae_cfg.latent_dim if clf_cfg.use_latent else 0)
            self.classifier = nn.Linear(d, n_classes)
            self.classifier_adapted = nn.Linear(d, n_classes)
            self.classifier_mlp = mlp(d, clf_cfg.stats_mlp)
            self.classifier_adapted_mlp = mlp(d, clf_cfg.adapted_mlp if clf_cfg.adapted_head else 0)
            self.cnn = (SequenceCNN(n_frame_features, n_classes, clf_cfg.cnn_channels, batch_norm=False)
                        if clf_cfg.cnn_channels else None)  # trained with BatchNorm, shipped fused
            fc = feat_cfg or FeatureConfig()
            self.mel_input = MelInput(fc.n_mfcc, fc.n_mels) if clf_cfg.mel_cnn else None
            self.mel_cnn = MelCNN(n_classes, batch_norm=False) if clf_cfg.mel_cnn else None
            n_cnn = int(self.cnn is not None) + int(self.mel_cnn is not None)
            share = n_cnn / (n_cnn + 1) if clf_cfg.cnn_weight is None else clf_cfg.cnn_weight  # None: equal shares
            self.cnn_weight = share if n_cnn else 0.0
            for name, size in (("seq_mean", n_frame_features), ("seq_std", n_frame_features),
                               ("stats_mean", n_stats), ("stats_std", n_stats),
                               ("z_mean", vae_cfg.latent_dim), ("z_std", vae_cfg.latent_dim)):
                self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

        def scaled_seq(self, seq):
            return ((seq - self.seq_mean) / self.seq_std).transpose(1, 2)

        def forward(self, seq, stats, spk_mean, spk_std):
            x = self.scaled_seq(seq)
            s = (stats - self.stats_mean) / self.stats_std
            with_stats = self.vae.n_stats > 0
            mu, logvar = self.vae.encode(x, s if with_stats else None)
            decoded = self.vae.decode(mu)
            x_hat = decoded[0] if with_stats else decoded
            recon_mse = ((x_hat - x) ** 2).mean(dim=(1, 2))
            stats_mse = ((decoded[1] - s) ** 2).mean(dim=1) if with_stats else torch.zeros_like(recon_mse)
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(dim=1)
            novelty = stats_mse if with_stats else recon_mse
            z = (mu - self.z_mean) / self.z_std
            parts = ([s[:, -self.n_head:]] if clf_cfg.use_stats else []) + ([z] if clf_cfg.use_latent else [])
            s_a = ((stats - spk_mean) / spk_std)[:, -self.n_head:]  # speaker-normalised, for the adapted head
            parts_a = ([s_a] if clf_cfg.use_stats else []) + ([z] if clf_cfg.use_latent else [])
            h = torch.cat(parts, dim=1)
            probs = torch.softmax(self.classifier(h), dim=1)
            if self.classifier_mlp is not None:  # the single-clip statistics member: linear head and MLP, averaged
                probs = 0.5 * (probs + torch.softmax(self.classifier_mlp(h), dim=1))
            h_a = torch.cat(parts_a, dim=1)
            probs_a = torch.softmax(self.classifier_adapted(h_a), dim=1)
            if self.classifier_adapted_mlp is not None:  # the same for the adapted head
                probs_a = 0.5 * (probs_a + torch.softmax(self.classifier_adapted_mlp(h_a), dim=1))
            p_cnn = ([torch.softmax(self.cnn(x), dim=1)] if self.cnn is not None else []) + (
                [torch.softmax(self.mel_cnn(self.mel_input(seq)), dim=1)] if self.mel_cnn is not None else [])
            if p_cnn:  # average with the CNNs' probabilities
                w, p_cnn = self.cnn_weight, sum(p_cnn) / len(p_cnn)
                probs, probs_a = (1 - w) * probs + w * p_cnn, (1 - w) * probs_a + w * p_cnn
            return probs, mu, recon_mse, kl, stats_mse, novelty, probs_a

    return EmotionNet()


class EmotionRecognizer(ClassifierMixin, BaseEstimator):
    """Speech emotion classifier: utterance statistics (by default the voice student's 512) joined with a
    sequence-VAE latent mean -> logistic regression; optionally averaged with MLPs and CNNs (the previous recipe).
    See the module docstring for the data contract."""

    def __init__(self, feature_config: FeatureConfig | None = None, vae_config: VAEConfig | None = None,
                 classifier_config: ClassifierConfig | None = None, train_config: TrainConfig | None = None,
                 progress: bool = False):
        self.feature_config = feature_config
        self.vae_config = vae_config
        self.classifier_config = classifier_config
        self.train_config = train_config
        self.progress = progress

    def __getstate__(self) -> dict:
        """Copy (deepcopy, pickle) without the voice student's onnxruntime session (rebuilt from voice_onnx_ on use)."""
        state = self.__dict__.copy()
        state.pop("_voice_session", None)
        return state

    # ----------------------------------------------------------------------------------------- configs
    def _cfgs(self) -> tuple[FeatureConfig, VAEConfig, ClassifierConfig, TrainConfig]:
        return (self.feature_config or FeatureConfig(), self.vae_config or VAEConfig(),
                self.classifier_config or ClassifierConfig(), self.train_config or TrainConfig())

    # --------------------------------------------------------------------------------------------- fit
    def fit(self, X: Sequence[Features], y, groups=None, augmented: dict | None = None) -> "EmotionRecognizer":
        """Fit on clips X with emotion labels y (names or EMOTIONS indices) and speakers ``groups``.

        ``augmented``: {speed factor: [Features of clip i played at that speed, or None]} (see
        ``FeatureTable.augment``); the copies join the classifier's training rows as extra speakers, never the
        VAE's, the scalers', the validation or the novelty calibration."""
        require("torch", "train")
        require("sklearn", "train")
        import torch
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score

        from .export import round_to_half
        from .vae import train_vae

        fcfg, vcfg, ccfg, tcfg = self._cfgs()
        y = _as_names(y)
        if len(y) != len(X):
            raise ParameterError(f"got {len(X)} clips but {len(y)} labels")
        present = [e for e in EMOTIONS if e in set(y.tolist())]
        if len(present) < 2:
            raise DataError(f"training needs clips of at least 2 emotions; got only {present}")
        groups = np.zeros(len(y), dtype=int) if groups is None else np.asarray(groups)
        self.classes_ = np.array(present)
        self.voice_onnx_, self._voice_session = None, None  # a refit never keeps an earlier fit's student
        if ccfg.head_stats == "voice" and not fcfg.voice:
            raise ParameterError("ClassifierConfig.head_stats='voice' needs a voice student (FeatureConfig.voice)")
        if fcfg.voice:  # a student of the GE2E teacher, trained on these clips: its statistics join theirs
            X, augmented = self._fit_voice(list(X), augmented or {}, fcfg, ccfg, tcfg)
        seq, stats = model_inputs(X, vcfg.seq_len)
        self.frame_names_, self.stat_names_ = tuple(X[0].frame_names), tuple(X[0].stat_names)
        seq_mean, seq_std = _scaler(seq.reshape(-1, seq.shape[-1]), axis=0)
        stats_mean, stats_std = _scaler(stats, axis=0)
        xs = ((seq - seq_mean) / seq_std).transpose(0, 2, 1)
        ss = (stats - stats_mean) / stats_std
        tr, va = inner_split(groups, tcfg.val_actors, tcfg.seed)

        threads = torch.get_num_threads()
        torch.set_num_threads(tcfg.threads)
        try:
            vae, self.history_ = train_vae(xs[tr], xs[va] if len(va) else None, vcfg, seed=tcfg.seed,
                                           progress=self.progress, s_train=ss[tr] if vcfg.with_stats else None,
                                           s_val=ss[va] if vcfg.with_stats and len(va) else None)
        finally:
            torch.set_num_threads(threads)
        with torch.no_grad():
            mu = vae.encode(torch.from_numpy(np.ascontiguousarray(xs)),
                            torch.from_numpy(ss) if vcfg.with_stats else None)[0].numpy()
        z_mean, z_std = _scaler(mu, axis=0)

        def encode(seq_, stats_):
            """The VAE's latent mean (n, L) of raw inputs, scaled with the training clips' scalers."""
            xs_ = np.ascontiguousarray(((seq_ - seq_mean) / seq_std).transpose(0, 2, 1))
            with torch.no_grad():
                return vae.encode(torch.from_numpy(xs_), torch.from_numpy((stats_ - stats_mean) / stats_std)
                                  if vcfg.with_stats else None)[0].numpy()

        n_head = n_head_stats(stats.shape[1], ccfg, bool(fcfg.voice))

        def head_inputs(mu_, stats_, speakers_):
            """(single-clip head inputs, adapted head inputs), each (n, D) float64, of clips of ``speakers_``."""
            ss_ = ((stats_ - stats_mean) / stats_std)[:, -n_head:]
            z_ = [(mu_ - z_mean) / z_std] if ccfg.use_latent else []
            spk_mean, spk_std = speaker_moments(stats_, speakers_)
            single = np.concatenate(([ss_] if ccfg.use_stats else []) + z_, axis=1).astype(np.float64)
            adapted = np.concatenate(([((stats_ - spk_mean) / spk_std)[:, -n_head:]] if ccfg.use_stats else [])
                                     + z_, axis=1)
            return single, adapted.astype(np.float64)

        # rows of the heads: the clips, then their speed-perturbed copies (pseudo-speakers: actor @ speed)
        speakers = np.array([str(g) for g in groups], dtype=object)
        feats, feats_a = head_inputs(mu, stats, speakers)
        row_y, row_actor, n_orig = y, groups, len(y)
        cnn_x = [xs]  # the CNN's training frames: the clips, then each speed's copies (NaN where one failed)
        raw_x = [seq]  # the same, raw (the log-mel CNN's input is computed from them)
        for f, copies in sorted((augmented or {}).items()):
            keep = [i for i, c in enumerate(copies) if c is not None]
            if len(copies) != len(X):
                raise ParameterError(f"augmented copies at speed {f}: {len(copies)} for {len(X)} clips")
            if not keep:
                continue
            seq_f, stats_f = model_inputs([copies[i] for i in keep], vcfg.seq_len)
            cnn_x.append(np.full_like(xs, np.nan))
            cnn_x[-1][keep] = ((seq_f - seq_mean) / seq_std).transpose(0, 2, 1)
            raw_x.append(np.full_like(seq, np.nan))
            raw_x[-1][keep] = seq_f
            single, adapted = head_inputs(encode(seq_f, stats_f), stats_f,
                                          np.array([f"{speakers[i]}@x{f:g}" for i in keep], dtype=object))
            feats, feats_a = np.vstack([feats, single]), np.vstack([feats_a, adapted])
            row_y, row_actor = np.concatenate([row_y, y[keep]]), np.concatenate([row_actor, groups[keep]])
        self.n_augmented_ = len(row_y) - n_orig

        def make(c):
            return LogisticRegression(C=c, class_weight=ccfg.class_weight, max_iter=3000)

        if len(va) and len(set(y[tr].tolist())) == len(present):
            rows = np.flatnonzero(np.isin(row_actor, groups[tr]))  # inner-training actors' clips and copies
            scores = {c: balanced_accuracy_score(y[va], make(c).fit(feats[rows], row_y[rows]).predict(feats[va]))
                      for c in ccfg.c_grid}
            self.c_ = max(scores, key=lambda c: (scores[c], -c))
            self.selection_scores_ = {str(c): float(s) for c, s in scores.items()}
        else:
            self.c_ = sorted(ccfg.c_grid)[len(ccfg.c_grid) // 2]
            self.selection_scores_ = {}
        net = build_net(seq.shape[-1], stats.shape[-1], len(self.classes_), vcfg, ccfg, fcfg)
        net.vae.load_state_dict(vae.state_dict())
        self.cnn_selection_ = {}
        if ccfg.cnn_channels:
            frame_cnn = self._fit_cnn(np.stack(cnn_x), y, tr, va, ccfg, tcfg, "frames")
            net.cnn.load_state_dict(frame_cnn.fused().state_dict())
        if ccfg.mel_cnn:
            with torch.no_grad():
                mel_x = np.stack([net.mel_input(torch.from_numpy(r)).numpy() for r in raw_x])  # (copies, N, M, T)
                net.mel_input.scale.fill_(float(np.std(mel_x[0])))
            mel_x /= net.mel_input.scale.item()
            net.mel_cnn.load_state_dict(self._fit_cnn(mel_x, y, tr, va, ccfg, tcfg, "mel").fused().state_dict())
        self._set_head(net.classifier, make(self.c_).fit(feats, row_y))
        if ccfg.stats_mlp:
            self._set_mlp(net.classifier_mlp, self._fit_mlp(feats, row_y, ccfg.stats_mlp, tcfg.seed))
        # adapted head: statistics z-scored with each training speaker's own moments (same C, same latent)
        self.speaker_prior_ = speaker_prior(stats, groups)
        if ccfg.adapted_head:
            self._set_head(net.classifier_adapted, make(self.c_).fit(feats_a, row_y))
            if ccfg.adapted_mlp:
                self._set_mlp(net.classifier_adapted_mlp, self._fit_mlp(feats_a, row_y, ccfg.adapted_mlp, tcfg.seed))
        else:  # no adapted head: it repeats the single-clip head
            net.classifier_adapted.load_state_dict(net.classifier.state_dict())
        with torch.no_grad():
            for name, arr in (("seq_mean", seq_mean), ("seq_std", seq_std), ("stats_mean", stats_mean),
                              ("stats_std", stats_std), ("z_mean", z_mean), ("z_std", z_std)):
                getattr(net, name).copy_(torch.from_numpy(arr))
        round_to_half(net)  # weights at float16 precision: the exported file stores them at half size
        self.net_ = net.eval()
        self.novelty_ = self._calibrate_novelty(seq, stats, va if len(va) else tr, "inner validation actors"
                                                if len(va) else "training clips")
        return self

    def _fit_voice(self, X: list, augmented: dict, fcfg: FeatureConfig, ccfg: ClassifierConfig,
                   tcfg: TrainConfig) -> tuple[list, dict]:
        """Train the voice student on the mel bands of the clips and their copies (the teacher's second layer
        as targets, emovae.voice), keep its graph (``voice_onnx_``, float16 weights), and return X and the
        copies with its 512 statistics appended to theirs."""
        import torch

        from .voice import build_voice_onnx, load_teacher, teacher_frames, train_student, voice_session, with_voice

        rows = X + [c for copies in augmented.values() for c in copies if c is not None]
        if any(f.mel is None for f in rows):
            raise ParameterError("FeatureConfig.voice is set but these features carry no mel bands: extract "
                                 "them with that config")
        mels = [f.mel.astype(np.float32) for f in rows]
        threads = torch.get_num_threads()
        torch.set_num_threads(tcfg.threads)
        try:
            student = train_student(mels, teacher_frames(mels, load_teacher()), hidden=fcfg.voice,
                                    epochs=ccfg.voice_epochs, seed=tcfg.seed, progress=self.progress)
        finally:
            torch.set_num_threads(threads)
        self.voice_loss_ = [round(v, 5) for v in student["loss"]]
        self.voice_onnx_ = build_voice_onnx(student["layers"], bits=16, log_scaler=student["log_scaler"],
                                            projection=student["projection"]).SerializeToString()
        session = self._voice_session = voice_session(self.voice_onnx_)
        return with_voice(X, session), {f: with_voice(c, session) for f, c in augmented.items()}

    def prepare(self, X: Sequence[Features]) -> list:
        """X with the voice statistics appended when the model has a student and X does not carry them yet."""
        if getattr(self, "voice_onnx_", None) is None or not X or X[0].stat_names[-1].startswith("voice_"):
            return list(X)
        from .voice import voice_session, with_voice

        if getattr(self, "_voice_session", None) is None:
            self._voice_session = voice_session(self.voice_onnx_)
        return with_voice(list(X), self._voice_session)

    def _fit_cnn(self, x: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, ccfg: ClassifierConfig,
                 tcfg: TrainConfig, arch: str):
        """A sequence CNN (``arch``: "frames" on standardised frames x (copies, N, F, T), or "mel" on log-mel
        bands (copies, N, M, T)): the epoch is chosen on the inner validation actors (trained on the other
        actors), then it is retrained on all clips up to that epoch."""
        import torch

        from .cnn import train_cnn

        idx = np.array([list(self.classes_).index(v) for v in y])
        kw = dict(n_classes=len(self.classes_), epochs=ccfg.cnn_epochs, channels=ccfg.cnn_channels, seed=tcfg.seed,
                  arch=arch)
        threads = torch.get_num_threads()
        torch.set_num_threads(tcfg.threads)
        try:
            stop = None
            if len(va):
                _, val_ua = train_cnn(x[:, tr], idx[tr], val=(x[0, va], idx[va]), **kw)
                stop = int(np.argmax(val_ua)) + 1
                self.cnn_selection_[arch] = {"epoch": stop, "val_balanced_accuracy": round(float(max(val_ua)), 4)}
            model, _ = train_cnn(x, idx, stop_after=stop, **kw)
        finally:
            torch.set_num_threads(threads)
        return model

    def _set_head(self, layer, lr) -> None:
        """Copy a fitted LogisticRegression into a Linear layer, rows in classes_ order."""
        import torch

        order = [list(lr.classes_).index(c) for c in self.classes_]
        coef, intercept = lr.coef_, lr.intercept_
        if coef.shape[0] == 1:  # binary: sigmoid(w.x + b) == softmax([0, w.x + b])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(coef[order]).float())
            layer.bias.copy_(torch.from_numpy(intercept[order]).float())

    @staticmethod
    def _fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int, seed: int):
        """scikit-learn's MLP on the head's rows, with the recipe measured in experiments.md section 20 (one ReLU
        layer, alpha 1.0, 200 Adam iterations; it may stop short of convergence, as measured)."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1.0, max_iter=200, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return mlp.fit(x, y)

    def _set_mlp(self, seq, mlp) -> None:
        """Copy a fitted one-hidden-layer MLPClassifier into Sequential(Linear, ReLU, Linear), outputs in
        classes_ order (softmax of them gives its predict_proba)."""
        import torch

        order = [list(mlp.classes_).index(c) for c in self.classes_]
        w, b = mlp.coefs_[1].T, mlp.intercepts_[1]
        if w.shape[0] == 1:  # binary: logistic output, sigmoid(z) == softmax([0, z])
            w, b = np.vstack([np.zeros_like(w), w]), np.array([0.0, b[0]])
        with torch.no_grad():
            seq[0].weight.copy_(torch.from_numpy(mlp.coefs_[0].T).float())
            seq[0].bias.copy_(torch.from_numpy(mlp.intercepts_[0]).float())
            seq[2].weight.copy_(torch.from_numpy(w[order]).float())
            seq[2].bias.copy_(torch.from_numpy(b[order]).float())

    def _calibrate_novelty(self, seq, stats, idx, where: str, percentile: float = 99.0) -> dict:
        """Novelty threshold: the ``percentile`` of the scores of clips the VAE was not trained on (the inner
        validation actors), so that about 1 % of new in-domain speech is flagged."""
        scores = self._run(seq[idx], stats[idx])["novelty"]
        score = ("VAE reconstruction error of the utterance statistics (mean squared, standardised units)"
                 if self.net_.vae.n_stats else "VAE reconstruction error of the frames (mean squared)")
        return {"score": score,
                "threshold": float(np.percentile(scores, percentile)), "percentile": percentile,
                "calibrated_on": f"{where} ({len(idx)} clips)"}

    # --------------------------------------------------------------------------------------- inference
    def _check_fitted(self):
        if not hasattr(self, "net_"):
            raise ModelFormatError("this EmotionRecognizer is not fitted yet: call fit() or load a model")

    def _run(self, seq, stats, spk_mean=None, spk_std=None, groups=None) -> dict[str, np.ndarray]:
        import torch

        prior = {"mean": self.speaker_prior_[0], "std": self.speaker_prior_[1]}
        spk = speaker_inputs(stats, groups, spk_mean, spk_std, prior)
        args = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (seq, stats, *spk)]
        with torch.no_grad():
            out = self.net_(*args)
        return dict(zip(OUTPUTS, (o.numpy() for o in out)))

    def forward(self, X: Sequence[Features], groups=None, spk_mean=None, spk_std=None) -> dict[str, np.ndarray]:
        """All network outputs for clips X (see EmotionNet): probabilities (N, C), mu (N, L), recon_mse,
        kl, stats_mse, novelty (N,), probabilities_adapted (N, C). The adapted head normalises each clip with
        ``spk_mean``/``spk_std`` (N, S) when given, else with all clips of its speaker in X when ``groups``
        (the speaker of each clip) is given (batch adaptation), else with the prior."""
        self._check_fitted()
        X = self.prepare(X)
        if X and tuple(X[0].stat_names) != self.stat_names_:
            raise ParameterError("these features were computed with another feature config than the model's")
        seq, stats = model_inputs(X, self.net_.vae.seq_len)
        return self._run(seq, stats, spk_mean, spk_std, groups)

    def predict_proba(self, X: Sequence[Features], groups=None) -> np.ndarray:
        """Emotion probabilities (N, len(classes_)), columns in classes_ order: single-clip, or adapted to
        each speaker when ``groups`` gives the speaker of each clip (several clips per speaker)."""
        out = self.forward(X, groups)
        return out["probabilities"] if groups is None else out["probabilities_adapted"]

    def predict(self, X: Sequence[Features], groups=None) -> np.ndarray:
        """Most probable emotion name per clip, (N,)."""
        return self.classes_[np.argmax(self.predict_proba(X, groups), axis=1)]

    def transform(self, X: Sequence[Features]) -> np.ndarray:
        """VAE latent means (N, latent_dim)."""
        return self.forward(X)["mu"]

    def reconstruction_loss(self, X: Sequence[Features]) -> float:
        """Mean squared reconstruction error per standardised element over clips X (from mu)."""
        return float(np.mean(self.forward(X)["recon_mse"]))

    def features_of(self, y: np.ndarray, sr: int) -> Features:
        """Features of one mono signal with this model's feature config (resampled if needed)."""
        from .audio import _to_mono_rate
        from .features import extract

        fcfg = self._cfgs()[0]
        return extract(_to_mono_rate(np.asarray(y), sr, fcfg.sample_rate, "<signal>"), fcfg.sample_rate, fcfg)

    # ------------------------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike, metrics: dict | None = None) -> Path:
        """Write ``weights.pt`` (state dict) and ``model.json`` (configs, labels, names, scalers, metrics)."""
        import torch

        from . import __version__

        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fcfg, vcfg, ccfg, tcfg = self._cfgs()
        state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
        torch.save(state, d / WEIGHTS_FILE)
        meta = {
            "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "emovae_version": __version__,
            "classes": self.classes_.tolist(),
            "feature_config": to_dict(fcfg), "vae_config": to_dict(vcfg),
            "classifier_config": to_dict(ccfg), "train_config": to_dict(tcfg),
            "frame_names": list(self.frame_names_), "stat_names": list(self.stat_names_),
            "scalers": {k: [float(f"{v:.7g}") for v in state[k].tolist()] for k in  # float32: 7 digits suffice
                        ("seq_mean", "seq_std", "stats_mean", "stats_std", "z_mean", "z_std")},
            "chosen_c": self.c_, "selection_scores": self.selection_scores_, "novelty": self.novelty_,
            "cnn_selection": getattr(self, "cnn_selection_", {}),
            "speaker_prior": {"mean": [float(f"{v:.7g}") for v in self.speaker_prior_[0].tolist()],
                              "std": [float(f"{v:.7g}") for v in self.speaker_prior_[1].tolist()]},
            "n_parameters": int(sum(p.numel() for p in self.net_.parameters())),
            "history": self.history_,
            "metrics": metrics if metrics is not None else getattr(self, "metrics_", {}),
        }
        if getattr(self, "voice_onnx_", None) is not None:
            (d / VOICE_FILE).write_bytes(self.voice_onnx_)
            meta["voice"] = {"file": VOICE_FILE, "units": fcfg.voice, "loss": getattr(self, "voice_loss_", [])}
        extra = getattr(self, "extra_", None)
        if extra:
            meta.update(extra)
        (d / CONFIG_FILE).write_text(json.dumps(meta, separators=(",", ":")))  # compact: the shipped model <= 1 MB
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "EmotionRecognizer":
        """Rebuild a saved model from ``weights.pt`` (torch's weights-only loader, no unpickling) or, when the
        folder has none, from the initializers of its ``model.onnx`` (protobuf, no code)."""
        require("torch", "train")
        import torch

        meta = read_model_json(directory)
        try:
            fcfg = from_dict(FeatureConfig, meta["feature_config"])
            vcfg = from_dict(VAEConfig, meta["vae_config"])
            ccfg = from_dict(ClassifierConfig, meta["classifier_config"])
            tcfg = from_dict(TrainConfig, meta["train_config"])
            obj = cls(fcfg, vcfg, ccfg, tcfg)
            obj.classes_ = np.array(meta["classes"])
            obj.frame_names_, obj.stat_names_ = tuple(meta["frame_names"]), tuple(meta["stat_names"])
            obj.c_, obj.selection_scores_ = meta["chosen_c"], meta.get("selection_scores", {})
            obj.novelty_ = meta.get("novelty", {})
            obj.speaker_prior_ = tuple(np.array(meta["speaker_prior"][k], dtype=np.float32) for k in ("mean", "std"))
            obj.history_, obj.metrics_ = meta.get("history", {}), meta.get("metrics", {})
            net = build_net(len(obj.frame_names_), len(obj.stat_names_), len(obj.classes_), vcfg, ccfg, fcfg)
            net.load_state_dict(_load_state(Path(directory), torch, set(net.state_dict())))
            obj.voice_onnx_ = (Path(directory) / meta["voice"]["file"]).read_bytes() if meta.get("voice") else None
        except (KeyError, TypeError, RuntimeError, OSError, ValueError) as exc:
            raise ModelFormatError(f"{directory}: model files are incomplete or incompatible ({exc})") from None
        obj.net_ = net.eval()
        return obj


def _load_state(directory: Path, torch, keys: set[str]) -> dict:
    """The network's state dict from ``weights.pt``, else from ``model.onnx`` (the exporter names each
    initializer after its state-dict key, so a shipped model needs one copy of its weights, not two)."""
    if (directory / WEIGHTS_FILE).exists() or not (directory / ONNX_FILE).exists():
        return torch.load(directory / WEIGHTS_FILE, weights_only=True, map_location="cpu")
    onnx = require("onnx", "train")
    from onnx import numpy_helper

    proto = onnx.load(str(directory / ONNX_FILE))
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float32)) for t in proto.graph.initializer
            if t.name in keys}  # float16 initializers (export.half_initializers) back to float32
