"""EmotionRecognizer, the trainable pipeline as a scikit-learn estimator: a voice student (``train.student``),
a sequence VAE over the frames and statistics (``train.vae``), then two logistic-regression heads copied into
the network's linear layers (``network.EmotionNet``); save writes the model folder (``modelfile``).

scikit-learn's contract: ``__init__`` only stores parameters, ``fit`` returns self, learned state ends in ``_``,
probability columns follow ``classes_``. X is a sequence of ``features.Features`` (one per clip); ``groups``
(the speaker of each clip) drive the inner speaker-disjoint validation split used for early stopping and for
choosing C, and the speaker moments the adapted head is trained with.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig, from_dict, to_dict
from ..corpus import class_order
from ..data import EMOTIONS
from ..extraction import variant_label
from ..errors import DataError, ModelFormatError, ParameterError, require
from ..features import Features, model_inputs
from ..modelfile import CONFIG_FILE, MODEL_FORMAT, MODEL_FORMAT_VERSION, VOICE_FILE, WEIGHTS_FILE, inside, read_model_json
from ..runtime import Network
from ..speaker import SessionConfig, speaker_moments, speaker_prior

try:  # scikit-learn is part of the `train` extra; the estimator base gives get_params / clone
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # pragma: no cover - without the extra, fit/load say which one to install
    class BaseEstimator:  # noqa: D101 - a stand-in so the class can still be defined
        pass

    class ClassifierMixin:  # noqa: D101
        pass


def as_names(y) -> np.ndarray:
    """Labels as names (N,): any strings (a model's classes come from its data), or integers as indices into
    EMOTIONS; ParameterError for an index out of range or an empty label."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        if y.size and (y.min() < 0 or y.max() >= len(EMOTIONS)):
            raise ParameterError(f"label indices must be in 0..{len(EMOTIONS) - 1}")
        return np.array(EMOTIONS)[y]
    names = y.astype(str)
    if names.size and (np.char.strip(names) == "").any():
        raise ParameterError("empty label(s): every clip needs a label")
    return names


def logits_of(lr, rows: np.ndarray) -> np.ndarray:
    """A fitted LogisticRegression's logits (N, C) in its ``classes_`` order (binary: [0, w.x + b])."""
    z = lr.decision_function(rows)
    return np.column_stack([np.zeros_like(z), z]) if z.ndim == 1 else z


def fit_temperature(logits: np.ndarray, y_idx: np.ndarray) -> float:
    """The temperature T in [0.25, 20] minimising the log-loss of softmax(logits / T) on labels ``y_idx``; 1 when
    every clip is right (then the loss only falls as T -> 0, which would push every probability to 0 or 1)."""
    from scipy.optimize import minimize_scalar

    if np.array_equal(logits.argmax(axis=1), y_idx):
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), y_idx]))

    return round(float(np.exp(minimize_scalar(nll, bounds=(np.log(0.25), np.log(20)), method="bounded").x)), 4)


def inner_split(groups: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Speaker-disjoint (train_idx, val_idx) inside a training set; val empty when fewer than 2 groups."""
    actors = np.unique(groups)
    if len(actors) < 2:
        return np.arange(len(groups)), np.arange(0)
    n_val = min(n_val, max(1, len(actors) // 4))
    val_actors = np.random.default_rng(seed).permutation(actors)[:n_val]
    is_val = np.isin(groups, val_actors)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def scaler(x: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 along ``axis``; a std below 1e-6 becomes 1 (constant columns pass unscaled)."""
    mean = x.mean(axis=axis)
    std = x.std(axis=axis)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _checked(X, y, groups, corpora) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``fit``'s arguments checked: labels as names, groups and corpora as arrays (defaults: one of each), and
    the classes present in ``class_order``; ParameterError / DataError naming what is wrong."""
    y = as_names(y)
    if len(y) != len(X):
        raise ParameterError(f"got {len(X)} clips but {len(y)} labels")
    present = list(class_order(y.tolist()))
    if len(present) < 2:
        raise DataError(f"training needs clips of at least 2 classes; got only {present}")
    groups = np.zeros(len(y), dtype=int) if groups is None else np.asarray(groups)
    corpora = np.full(len(y), "", dtype=object) if corpora is None else np.asarray(corpora, dtype=object)
    if len(corpora) != len(y):
        raise ParameterError(f"got {len(X)} clips but {len(corpora)} corpus names")
    return y, groups, corpora, present


def balanced_weights(y: np.ndarray, corpora: np.ndarray) -> np.ndarray:
    """Row weights (N,), mean 1, under which every corpus weighs alike and, within a corpus, every class alike:
    1 / (corpora x classes of its corpus x rows of its (corpus, class) cell). With one corpus this is
    scikit-learn's class_weight="balanced"."""
    cells = np.array([f"{c}\x00{v}" for c, v in zip(corpora, y)])
    _, cell_idx, cell_n = np.unique(cells, return_inverse=True, return_counts=True)
    corpus_names, corpus_idx = np.unique(np.asarray(corpora, dtype=str), return_inverse=True)
    classes_in = np.array([len(set(y[corpus_idx == k].tolist())) for k in range(len(corpus_names))])
    w = 1.0 / (len(corpus_names) * classes_in[corpus_idx] * cell_n[cell_idx])
    return w * len(w) / w.sum()


def _targets(dimensions, y: np.ndarray) -> np.ndarray | None:
    """Arousal/valence targets (N, 2) float64: ``dimensions`` as given (NaN rows: unknown), else the labels'
    coordinates (``affect.dimension_targets``); None when no row has a target."""
    from ..affect import dimension_targets

    t = dimension_targets(y) if dimensions is None else np.asarray(dimensions, dtype=np.float64)
    if t.shape != (len(y), 2):
        raise ParameterError(f"dimensions: shape {t.shape}, expected ({len(y)}, 2) (arousal, valence per clip)")
    known = np.isfinite(t).all(axis=1)
    if np.any(np.abs(t[known]) > 1):
        raise ParameterError("dimensions: arousal and valence targets must lie in [-1, 1]")
    return t if known.any() else None


def concordance(a: np.ndarray, b: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two (N,) series: agreement in correlation, mean and scale
    (1 identical, 0 none); the usual score of arousal/valence regression."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cov = np.mean((a - a.mean()) * (b - b.mean()))
    return float(2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2 + 1e-12))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, C); -inf columns get probability 0."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _finite(logits: np.ndarray) -> np.ndarray:
    """Logits with -inf (a class the scoring head did not know) set far below the row's others."""
    lo = np.where(np.isfinite(logits), logits, np.inf).min(axis=1, keepdims=True)
    return np.where(np.isfinite(logits), logits, lo - 30.0)


def uncertain_threshold(confidence: np.ndarray, hit: np.ndarray, target: float) -> dict:
    """The "uncertain" rule read off clips the heads were not fitted on: the lowest confidence threshold (on a
    0.01 grid) at which the clips answered (confidence at or above it) are right at least ``target`` of the
    time, keeping at least 5 % of them; the highest grid point that keeps 5 % when none reaches ``target``. Also
    the risk-coverage curve of those clips (share answered, accuracy of the answered) at each threshold."""
    confidence, hit = np.asarray(confidence, float), np.asarray(hit, bool)
    grid = np.round(np.arange(0.0, 1.0, 0.01), 2)
    curve = [(float(t), float((confidence >= t).mean()), float(hit[confidence >= t].mean()))
             for t in grid if (confidence >= t).mean() >= 0.05]
    ok = [t for t, _, acc in curve if acc >= target]
    chosen = ok[0] if ok else curve[-1][0]
    return {"uncertain_below": chosen, "answer_accuracy": target,
            "risk_coverage": [[t, round(cov, 4), round(acc, 4)] for t, cov, acc in curve[::5]]}


@contextlib.contextmanager
def torch_threads(n: int):
    """torch on ``n`` threads inside the block (more threads than cores slow training many times over)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _copy_order(item) -> tuple:
    """Sort key of an ``augmented`` item: speed factors in increasing order, then the degraded copies."""
    key = item[0]
    return (True, 0.0, key) if isinstance(key, str) else (False, float(key), "")


class EmotionRecognizer(ClassifierMixin, BaseEstimator):
    """Speech emotion classifier: utterance statistics (by default the voice student's 512) joined with a
    sequence-VAE latent mean -> two linear heads (single-clip and speaker-adapted). See the module docstring."""

    def __init__(self, feature_config: FeatureConfig | None = None, vae_config: VAEConfig | None = None,
                 classifier_config: ClassifierConfig | None = None, train_config: TrainConfig | None = None,
                 progress: bool = False):
        self.feature_config = feature_config
        self.vae_config = vae_config
        self.classifier_config = classifier_config
        self.train_config = train_config
        self.progress = progress

    def __getstate__(self) -> dict:
        """Copy (deepcopy, pickle) without the runtime network (rebuilt from net_ and voice_onnx_ on use)."""
        state = self.__dict__.copy()
        state.pop("_network", None)
        return state

    def configs(self) -> tuple[FeatureConfig, VAEConfig, ClassifierConfig, TrainConfig]:
        """The four configs, defaults filled in."""
        return (self.feature_config or FeatureConfig(), self.vae_config or VAEConfig(),
                self.classifier_config or ClassifierConfig(), self.train_config or TrainConfig())

    # --------------------------------------------------------------------------------------------- fit
    def fit(self, X: Sequence[Features], y, groups=None, augmented: dict | None = None,
            corpora=None, dimensions=None) -> "EmotionRecognizer":
        """Fit on clips X with labels y (names, any set of two or more; or EMOTIONS indices) and speakers
        ``groups``; ``classes_`` follows ``corpus.class_order``.

        ``augmented``: {speed factor or "degradedK": [Features of that copy of clip i, or None]} (see
        ``FeatureTable.augment``); the copies join the heads' training rows as extra speakers, never the
        VAE's, the scalers', the validation or the novelty calibration. ``corpora``: the corpus of each clip
        (N,); with two or more, the heads weigh every corpus alike (and every class within it), and C, the
        temperatures and the "uncertain" threshold are chosen on corpora left out in turn (``_held_out``).
        ``dimensions``: arousal and valence targets (N, 2) in [-1, 1], NaN where unknown (default: the labels'
        coordinates, ``affect.dimension_targets``); the arousal/valence heads are fitted on them (``_fit_dimensions``)
        unless no label has coordinates."""
        require("torch", "train")
        require("sklearn", "train")
        import torch

        from ..network import EmotionNet, n_head_stats
        from .export import round_to_half
        from .vae import train_vae

        fcfg, vcfg, ccfg, tcfg = self.configs()
        y, groups, corpora, present = _checked(X, y, groups, corpora)
        targets = _targets(dimensions, y)
        self.classes_ = np.array(present)
        self.voice_onnx_, self._network = None, None  # a refit never keeps an earlier fit's student
        if ccfg.head_stats == "voice" and not fcfg.voice:
            raise ParameterError("ClassifierConfig.head_stats='voice' needs a voice student (FeatureConfig.voice)")
        augmented = augmented or {}
        if fcfg.voice:  # a student of the GE2E teacher, trained on these clips: its statistics join theirs
            X, augmented = self._fit_voice(list(X), augmented, fcfg, ccfg, tcfg)
        seq, stats = model_inputs(X, vcfg.seq_len)
        self.frame_names_, self.stat_names_ = tuple(X[0].frame_names), tuple(X[0].stat_names)
        seq_mean, seq_std = scaler(seq.reshape(-1, seq.shape[-1]), axis=0)
        stats_mean, stats_std = scaler(stats, axis=0)
        xs = ((seq - seq_mean) / seq_std).transpose(0, 2, 1)
        ss = (stats - stats_mean) / stats_std
        tr, va = inner_split(groups, tcfg.val_actors, tcfg.seed)
        with torch_threads(tcfg.threads):
            vae, self.history_ = train_vae(xs[tr], xs[va] if len(va) else None, vcfg, seed=tcfg.seed,
                                           progress=self.progress, s_train=ss[tr] if vcfg.with_stats else None,
                                           s_val=ss[va] if vcfg.with_stats and len(va) else None)
        net = EmotionNet(seq.shape[-1], stats.shape[-1], len(self.classes_), vcfg, ccfg,
                         n_head_stats(stats.shape[1], ccfg, bool(fcfg.voice)), targets is not None).eval()
        net.vae.load_state_dict(vae.state_dict())
        with torch.no_grad():
            for name, arr in (("seq_mean", seq_mean), ("seq_std", seq_std), ("stats_mean", stats_mean),
                              ("stats_std", stats_std)):
                getattr(net, name).copy_(torch.from_numpy(arr))
            z_mean, z_std = scaler(self._latent(net, seq, stats), axis=0)
            net.z_mean.copy_(torch.from_numpy(z_mean))
            net.z_std.copy_(torch.from_numpy(z_std))

        self._fit_heads(net, X, y, groups, augmented, corpora, seq, stats, tr, va, targets)
        round_to_half(net)  # weights at float16 precision: the exported file stores them at half size
        self.net_ = net.eval()
        idx = va if len(va) else tr
        self.novelty_ = self._calibrate_novelty(seq[idx], stats[idx], "inner validation actors" if len(va)
                                                else "training clips")
        return self

    def fit_heads(self, X: Sequence[Features], y, groups=None, augmented: dict | None = None,
                  corpora=None, dimensions=None) -> "EmotionRecognizer":
        """Fit the heads again (C, temperatures, "uncertain" threshold, speaker prior) on this fitted model's own
        representation (voice student, VAE and scalers as they are): the last stage of ``fit``, with the same
        arguments, for labels or calibration that change while the student and the VAE stay. The rows come from
        the saved half-precision representation, so they can differ from ``fit``'s in the fourth digit."""
        require("sklearn", "train")
        from .export import round_to_half

        self.network()  # raises when not fitted
        net = self.net_
        vcfg, tcfg = self.configs()[1], self.configs()[3]
        y, groups, corpora, present = _checked(X, y, groups, corpora)
        if list(present) != self.classes_.tolist():
            raise ParameterError(f"fit_heads keeps the model's classes {self.classes_.tolist()}; these labels have "
                                 f"{list(present)}")
        targets = _targets(dimensions, y)
        X, prepared = self._prepared(X, augmented)
        seq, stats = model_inputs(X, vcfg.seq_len)
        tr, va = inner_split(groups, tcfg.val_actors, tcfg.seed)
        self._fit_heads(net, X, y, groups, prepared, corpora, seq, stats, tr, va, targets)
        round_to_half(net)
        self.net_, self._network = net.eval(), None
        return self

    def fit_dimensions(self, X: Sequence[Features], y, groups=None, augmented: dict | None = None,
                       corpora=None, dimensions=None) -> "EmotionRecognizer":
        """Fit only the arousal and valence heads (added when the model has none) on this fitted model's own
        representation, the emotion heads and their calibration untouched: ``fit_heads``'s arguments."""
        require("sklearn", "train")
        from .export import round_to_half

        self.network()  # raises when not fitted
        net, vcfg = self.net_, self.configs()[1]
        y, groups, corpora, _ = _checked(X, y, groups, corpora)
        targets = _targets(dimensions, y)
        if targets is None:
            raise ParameterError("no label of these clips has arousal/valence coordinates (affect.COORDINATES), "
                                 "and no dimensions were given")
        X, prepared = self._prepared(X, augmented)
        seq, stats = model_inputs(X, vcfg.seq_len)
        rows, rows_a, src = self._all_rows(net, X, groups, prepared, seq, stats)
        if not net.has_dimensions:
            net.add_dimension_heads()
        self._fit_dimensions(net, rows, rows_a, targets[src], y[src], groups[src], corpora[src], corpora)
        round_to_half(net.dimensions)
        round_to_half(net.dimensions_adapted)
        self.net_, self._network = net.eval(), None
        return self

    def _prepared(self, X, augmented) -> tuple[list, dict]:
        """Clips X and their copies with this model's voice statistics appended."""
        X = self.prepare(list(X))
        prepared = {}
        for f, copies in (augmented or {}).items():
            keep = [i for i, c in enumerate(copies) if c is not None]
            done = iter(self.prepare([copies[i] for i in keep]))
            prepared[f] = [next(done) if c is not None else None for c in copies]
        return X, prepared

    def _all_rows(self, net, X, groups, augmented: dict, seq, stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The heads' training rows (single-clip, adapted; (R, D) each): the clips, then their copies, speed
        factors first (pseudo-speakers: speaker @ copy); and ``src`` (R,), the clip each row comes from."""
        vcfg = self.configs()[1]
        speakers = np.array([str(g) for g in groups], dtype=object)
        rows, rows_a = self._head_rows(net, seq, stats, speakers)
        src = [np.arange(len(X))]
        for f, copies in sorted(augmented.items(), key=_copy_order):
            if len(copies) != len(X):
                raise ParameterError(f"augmented copies {f if isinstance(f, str) else f'at speed {f:g}'}: "
                                     f"{len(copies)} for {len(X)} clips")
            keep = [i for i, c in enumerate(copies) if c is not None]
            if not keep:
                continue
            seq_f, stats_f = model_inputs([copies[i] for i in keep], vcfg.seq_len)
            pseudo = np.array([f"{speakers[i]}@{variant_label(f)}" for i in keep], dtype=object)
            single, adapted = self._head_rows(net, seq_f, stats_f, pseudo)
            rows, rows_a = np.vstack([rows, single]), np.vstack([rows_a, adapted])
            src.append(np.array(keep))
        return rows, rows_a, np.concatenate(src)

    def _fit_heads(self, net, X, y, groups, augmented: dict, corpora, seq, stats, tr, va, targets=None) -> None:
        """The heads of ``net`` (single-clip and adapted), their C, temperatures and "uncertain" threshold, the
        speaker prior, and with ``targets`` (N, 2) the arousal/valence heads, from clips X (with their voice
        statistics) and their copies; the representation (student, VAE, scalers) stays as it is."""
        ccfg = self.configs()[2]
        rows, rows_a, src = self._all_rows(net, X, groups, augmented, seq, stats)
        row_y, row_group, row_corpus = y[src], groups[src], corpora[src]
        self.n_augmented_ = len(row_y) - len(y)
        if len(set(corpora.tolist())) >= 2:
            self.calibration_ = self._held_out(rows, rows_a, row_y, row_corpus, y, corpora, ccfg)
        else:
            self._choose_c(rows, row_y, row_group, row_corpus, y, groups, tr, va, ccfg)
            self.calibration_ = self._fit_temperatures(rows, rows_a, row_y, row_group, row_corpus, y, groups, tr,
                                                       va, ccfg)
        self._set_head(net.classifier, self._head(self.c_, ccfg, rows, row_y, row_corpus),
                       self.calibration_["temperature"])
        # the adapted head: statistics z-scored with each training speaker's own moments (same C, same latent)
        self.speaker_prior_ = speaker_prior(stats, groups)
        if ccfg.adapted_head:
            self._set_head(net.classifier_adapted, self._head(self.c_, ccfg, rows_a, row_y, row_corpus),
                           self.calibration_["temperature_adapted"])
        else:  # no adapted head: it repeats the single-clip head
            net.classifier_adapted.load_state_dict(net.classifier.state_dict())
        if targets is not None:
            if not net.has_dimensions:
                net.add_dimension_heads()
            self._fit_dimensions(net, rows, rows_a, targets[src], row_y, row_group, row_corpus, corpora)

    def _fit_dimensions(self, net, rows, rows_a, row_t, row_y, row_group, row_corpus, corpora) -> None:
        """The arousal/valence heads: ridge regressions on the heads' rows (single-clip, adapted) to the targets
        ``row_t`` (R, 2; NaN rows skipped), every corpus and every class within it weighing alike. Each dimension's
        penalty is its best mean concordance over the training corpora left out in turn (two or more corpora), else
        over every fifth speaker held out; the left-out scores are kept in ``dimensions_``."""
        import torch
        from sklearn.linear_model import Ridge

        ccfg = self.configs()[2]
        ok = np.isfinite(row_t).all(axis=1)
        rows, rows_a, row_t, row_y, row_corpus = rows[ok], rows_a[ok], row_t[ok], row_y[ok], row_corpus[ok]
        row_group = np.asarray(row_group, dtype=object)[ok]
        w = balanced_weights(row_y, row_corpus)
        names = [c for c in dict.fromkeys(corpora.tolist()) if (row_corpus == c).any()]
        if len(names) >= 2:
            splits = [(row_corpus != c, row_corpus == c) for c in names]
            how = f"left-out corpora ({', '.join(names)})"
        else:  # one corpus: every fifth speaker's rows held out (every fifth row when there is one speaker)
            speakers = sorted(set(str(g) for g in row_group))
            held = (np.isin(row_group.astype(str), speakers[::5]) if len(speakers) >= 2
                    else np.arange(len(row_t)) % 5 == 0)
            splits, how = [(~held, held)], ("every fifth training speaker" if len(speakers) >= 2
                                            else "every fifth training row (one speaker)")
        scores = {}
        for alpha in ccfg.dimension_alphas:
            per = []
            for fit, test in splits:
                pred = np.clip(Ridge(alpha=alpha).fit(rows[fit], row_t[fit], sample_weight=w[fit]).predict(rows[test]),
                               -1, 1)
                per.append([concordance(row_t[test, j], pred[:, j]) for j in range(2)])
            scores[alpha] = np.mean(per, axis=0)
        # each dimension its own penalty (arousal carries across corpora, valence less: they need different ones)
        alpha = [max(scores, key=lambda a: (scores[a][j], a)) for j in range(2)]
        for layer, r in ((net.dimensions, rows), (net.dimensions_adapted, rows_a)):
            ridge = Ridge(alpha=np.array(alpha, dtype=float)).fit(r, row_t, sample_weight=w)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(ridge.coef_).float())
                layer.bias.copy_(torch.from_numpy(np.asarray(ridge.intercept_)).float())
        self.dimensions_ = {"names": ["arousal", "valence"], "alpha": [float(a) for a in alpha],
                            "selection_scores": {str(a): [round(float(v), 4) for v in sc] for a, sc in scores.items()},
                            "concordance_held_out": [round(float(scores[a][j]), 4) for j, a in enumerate(alpha)],
                            "fitted_on": f"{len(row_t)} rows with coordinates (affect.COORDINATES); penalty chosen on "
                                         f"{how}"}

    @staticmethod
    def _latent(net, seq: np.ndarray, stats: np.ndarray, batch: int = 1024) -> np.ndarray:
        """The VAE's latent mean (N, L) of raw network inputs, ``batch`` clips at a time (the encoder's
        activations of a whole corpus and its copies at once were the peak of a fit's memory)."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(seq), batch):
                x, s = net.scaled(torch.from_numpy(seq[i:i + batch]), torch.from_numpy(stats[i:i + batch]))
                out.append(net.vae.encode(x.contiguous(), s if net.vae.n_stats else None)[0].numpy())
        return np.concatenate(out) if out else np.zeros((0, net.vae.to_latent.out_features // 2), np.float32)

    def _head_rows(self, net, seq: np.ndarray, stats: np.ndarray, speakers: np.ndarray):
        """The heads' training rows (single-clip, adapted), each (N, D) float64, of clips of ``speakers``: the
        network's own head inputs, with each speaker's moments over these clips."""
        import torch

        spk_mean, spk_std = speaker_moments(stats, speakers)
        with torch.no_grad():
            mu = torch.from_numpy(self._latent(net, seq, stats))
            s = net.scaled(torch.from_numpy(seq), torch.from_numpy(stats))[1]
            h, h_a = net.head_inputs(mu, s, torch.from_numpy(stats), torch.from_numpy(spk_mean),
                                     torch.from_numpy(spk_std))
        return h.numpy().astype(np.float64), h_a.numpy().astype(np.float64)

    @staticmethod
    def _head(c: float, ccfg: ClassifierConfig, rows: np.ndarray, row_y: np.ndarray, row_corpus: np.ndarray):
        """A LogisticRegression of inverse regularisation ``c`` fitted on ``rows``; with class_weight "balanced"
        every corpus weighs alike and every class alike within it (``balanced_weights``)."""
        from sklearn.linear_model import LogisticRegression

        weights = balanced_weights(row_y, row_corpus) if ccfg.class_weight == "balanced" else None
        return LogisticRegression(C=c, max_iter=3000).fit(rows, row_y, sample_weight=weights)

    def _choose_c(self, rows, row_y, row_group, row_corpus, y, groups, tr, va, ccfg: ClassifierConfig) -> None:
        """C of the heads: the best balanced accuracy on the inner validation speakers (fit on the inner-training
        speakers' clips and copies), ties to the smaller C; the middle of the grid without a usable split."""
        from sklearn.metrics import balanced_accuracy_score

        if len(va) and len(set(y[tr].tolist())) == len(self.classes_):
            fit = np.flatnonzero(np.isin(row_group, groups[tr]))
            scores = {c: balanced_accuracy_score(y[va], self._head(c, ccfg, rows[fit], row_y[fit], row_corpus[fit])
                                                 .predict(rows[va])) for c in ccfg.c_grid}
            self.c_ = max(scores, key=lambda c: (scores[c], -c))
            self.selection_scores_ = {str(c): float(v) for c, v in scores.items()}
        else:
            self.c_ = sorted(ccfg.c_grid)[len(ccfg.c_grid) // 2]
            self.selection_scores_ = {}

    def _fit_temperatures(self, rows, rows_a, row_y, row_group, row_corpus, y, groups, tr, va,
                          ccfg: ClassifierConfig) -> dict:
        """Temperatures of the two heads (logits divided by T), each fitted by log-loss on the inner validation
        speakers' clips, scored by a head of the chosen C fitted on the inner-training speakers only: so the
        shipped probabilities are calibrated for speakers the heads never saw; and the "uncertain" threshold
        read off the same clips. T = 1 and no threshold without a usable split."""
        if not (len(va) and len(set(y[tr].tolist())) == len(self.classes_)):
            return {"temperature": 1.0, "temperature_adapted": 1.0, "uncertain_below": None,
                    "fitted_on": "none (no inner validation split)"}
        fit = np.flatnonzero(np.isin(row_group, groups[tr]))
        out, logits = {}, {}
        for key, r in (("temperature", rows), ("temperature_adapted", rows_a)):
            lr = self._head(self.c_, ccfg, r[fit], row_y[fit], row_corpus[fit])  # lr.classes_: sorted, both heads
            logits[key] = logits_of(lr, r[va])
            out[key] = fit_temperature(logits[key], np.searchsorted(lr.classes_, y[va]))
        hit = lr.classes_[logits["temperature"].argmax(axis=1)] == y[va]
        return {**out, **uncertain_threshold(softmax(logits["temperature"] / out["temperature"]).max(axis=1), hit,
                                             ccfg.answer_accuracy),
                "fitted_on": f"inner validation speakers ({len(va)} clips)"}

    def _held_out(self, rows, rows_a, row_y, row_corpus, y, corpora, ccfg: ClassifierConfig) -> dict:
        """Leave-one-corpus-out inside the training data: for each corpus, heads fitted on the others' clips and
        copies score its clips. C = the best mean balanced accuracy over the left-out corpora (ties to the
        smaller C); the temperatures are fitted on the pooled left-out logits of that C, and the "uncertain"
        threshold read off them: probabilities calibrated for a corpus the heads never saw (the student and the
        VAE, which learn without labels, did hear every corpus)."""
        from sklearn.metrics import balanced_accuracy_score

        names = list(dict.fromkeys(corpora.tolist()))
        n = len(y)
        column = {c: j for j, c in enumerate(self.classes_)}  # classes_ follows class_order, not sorted

        def left_out(c: float, r: np.ndarray) -> np.ndarray:
            logits = np.zeros((n, len(self.classes_)))
            for name in names:
                fit, test = np.flatnonzero(row_corpus != name), np.flatnonzero(corpora == name)
                lr = self._head(c, ccfg, r[fit], row_y[fit], row_corpus[fit])
                cols = [column[c] for c in lr.classes_]  # a class only the left-out corpus has: -inf
                logits[test] = -np.inf
                logits[np.ix_(test, cols)] = logits_of(lr, r[test])
            return logits

        scores, held = {}, {}
        for c in ccfg.c_grid:
            held[c] = left_out(c, rows)
            pred = self.classes_[held[c].argmax(axis=1)]
            scores[c] = float(np.mean([balanced_accuracy_score(y[corpora == k], pred[corpora == k]) for k in names]))
        self.c_ = max(scores, key=lambda c: (scores[c], -c))
        self.selection_scores_ = {str(c): v for c, v in scores.items()}
        y_idx = np.array([column[c] for c in y])
        t = fit_temperature(_finite(held[self.c_]), y_idx)
        t_a = fit_temperature(_finite(left_out(self.c_, rows_a)), y_idx) if ccfg.adapted_head else t
        conf = softmax(held[self.c_] / t).max(axis=1)
        return {"temperature": t, "temperature_adapted": t_a,
                **uncertain_threshold(conf, self.classes_[held[self.c_].argmax(axis=1)] == y, ccfg.answer_accuracy),
                "fitted_on": f"left-out corpora ({', '.join(names)}: each scored by heads fitted on the others)"}

    def _fit_voice(self, X: list, augmented: dict, fcfg: FeatureConfig, ccfg: ClassifierConfig,
                   tcfg: TrainConfig) -> tuple[list, dict]:
        """Train the voice student on the mel bands of the clips and their copies (the teacher's second layer
        as targets), keep its graph (``voice_onnx_``, float16 weights), and return X and the copies with its
        512 statistics appended to theirs."""
        import tempfile

        from ..ragged import RaggedStore
        from ..voice import voice_session, with_voice
        from .student import build_voice_onnx, iter_teacher_frames, load_teacher, train_student

        rows = X + [c for copies in augmented.values() for c in copies if c is not None]
        source = np.r_[np.full(len(X), -1), [i for copies in augmented.values() for i, c in enumerate(copies)
                                              if c is not None]].astype(int)  # each copy's clip
        if any(f.mel is None for f in rows):
            raise ParameterError("FeatureConfig.voice is set but these features carry no mel bands: extract "
                                 "them with that config")
        # the mel bands and the teacher's target frames of every clip and copy go to files on disk, read back
        # one batch at a time: in memory they grew by about 1 GB per 1000 clips with speed copies
        with tempfile.TemporaryDirectory(prefix="emovae-train-") as tmp, \
                RaggedStore.write((f.mel for f in rows), tmp, prefix="mels-") as mels, torch_threads(tcfg.threads):
            with RaggedStore.write(iter_teacher_frames(mels, load_teacher()), tmp, prefix="targets-") as targets:
                student = train_student(mels, targets, hidden=fcfg.voice, epochs=ccfg.voice_epochs, seed=tcfg.seed,
                                        progress=self.progress, source=source,
                                        copies_per_epoch=ccfg.voice_copies_per_epoch)
        self.voice_loss_ = [round(v, 5) for v in student["loss"]]
        self.voice_onnx_ = build_voice_onnx(student["layers"], bits=16, log_scaler=student["log_scaler"],
                                            projection=student["projection"]).SerializeToString()
        session = voice_session(self.voice_onnx_)
        return with_voice(X, session), {f: with_voice(c, session) for f, c in augmented.items()}

    def _set_head(self, layer, lr, temperature: float = 1.0) -> None:
        """Copy a fitted LogisticRegression into a Linear layer, rows in classes_ order, its logits divided by
        ``temperature``."""
        import torch

        order = [list(lr.classes_).index(c) for c in self.classes_]
        coef, intercept = lr.coef_ / temperature, lr.intercept_ / temperature
        if coef.shape[0] == 1:  # binary: sigmoid(w.x + b) == softmax([0, w.x + b])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(coef[order]).float())
            layer.bias.copy_(torch.from_numpy(intercept[order]).float())

    def _calibrate_novelty(self, seq, stats, where: str, percentile: float = 99.0) -> dict:
        """Novelty threshold: the ``percentile`` of the scores of clips the VAE was not trained on (the inner
        validation actors), so that about 1 % of new in-domain speech is flagged."""
        scores = self.network().forward_arrays(seq, stats)["novelty"]
        score = ("VAE reconstruction error of the utterance statistics (mean squared, standardised units)"
                 if self.net_.vae.n_stats else "VAE reconstruction error of the frames (mean squared)")
        return {"score": score, "threshold": float(np.percentile(scores, percentile)), "percentile": percentile,
                "calibrated_on": f"{where} ({len(seq)} clips)"}

    # --------------------------------------------------------------------------------------- inference
    def network(self) -> Network:
        """The fitted network as the runtime runs it (torch backend, voice student through onnxruntime)."""
        if not hasattr(self, "net_"):
            raise ModelFormatError("this EmotionRecognizer is not fitted yet: call fit() or load a model")
        if getattr(self, "_network", None) is None:
            from ..network import runner
            from ..voice import voice_session

            meta = {"vae_config": to_dict(self.configs()[1]), "dimensions": self.net_.has_dimensions,
                    "speaker_prior": {"mean": self.speaker_prior_[0], "std": self.speaker_prior_[1]}}
            voice = voice_session(self.voice_onnx_) if getattr(self, "voice_onnx_", None) is not None else None
            self._network = Network(runner(self.net_), meta, voice, "torch")
        return self._network

    def prepare(self, X: Sequence[Features]) -> list[Features]:
        """X with the voice statistics appended when the model has a student and X does not carry them yet."""
        return self.network().prepare(list(X))

    def forward(self, X: Sequence[Features], spk_mean=None, spk_std=None) -> dict[str, np.ndarray]:
        """All network outputs for clips X (``network.EmotionNet``): probabilities (N, C), mu (N, L), recon_mse,
        kl, stats_mse, novelty (N,), probabilities_adapted (N, C), the adapted head reading the given speaker
        moments ((S,) or (N, S)), else the prior."""
        X = self.prepare(X)
        if X and tuple(X[0].stat_names) != self.stat_names_:
            raise ParameterError("these features were computed with another feature config than the model's")
        return self.network().forward(X, spk_mean, spk_std)

    def predict_proba(self, X: Sequence[Features], groups=None) -> np.ndarray:
        """Emotion probabilities (N, len(classes_)), columns in classes_ order: single-clip, or adapted to each
        speaker when ``groups`` gives the speaker of each clip (``Network.forward_by_speaker``, the users' path)."""
        if groups is None:
            return self.forward(X)["probabilities"]
        return self.network().forward_by_speaker(self.prepare(X), groups, SessionConfig())["probabilities"]

    def predict(self, X: Sequence[Features], groups=None) -> np.ndarray:
        """Most probable emotion name per clip, (N,)."""
        return self.classes_[np.argmax(self.predict_proba(X, groups), axis=1)]

    def transform(self, X: Sequence[Features]) -> np.ndarray:
        """VAE latent means (N, latent_dim)."""
        return self.forward(X)["mu"]

    # ------------------------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike, metrics: dict | None = None) -> Path:
        """Write ``weights.pt`` (state dict), ``model.json`` (configs, labels, names, scalers, metrics) and,
        with a student, ``voice.onnx``."""
        import torch

        from .. import __version__

        self.network()  # raises when not fitted
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fcfg, vcfg, ccfg, tcfg = self.configs()
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
            "calibration": getattr(self, "calibration_", None),
            "dimensions": getattr(self, "dimensions_", None) if self.net_.has_dimensions else None,
            "speaker_prior": {"mean": [float(f"{v:.7g}") for v in self.speaker_prior_[0].tolist()],
                              "std": [float(f"{v:.7g}") for v in self.speaker_prior_[1].tolist()]},
            "n_parameters": int(sum(p.numel() for p in self.net_.parameters())),
            "history": self.history_,
            "metrics": metrics if metrics is not None else getattr(self, "metrics_", {}),
        }
        if getattr(self, "voice_onnx_", None) is not None:
            (d / VOICE_FILE).write_bytes(self.voice_onnx_)
            meta["voice"] = {"file": VOICE_FILE, "units": fcfg.voice, "loss": getattr(self, "voice_loss_", [])}
        meta.update(getattr(self, "extra_", None) or {})
        (d / CONFIG_FILE).write_text(json.dumps(meta, separators=(",", ":")))  # compact: the shipped model <= 1 MB
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "EmotionRecognizer":
        """Rebuild a saved model (``network.load_net``: weights.pt, or model.onnx's initializers; no unpickling)."""
        require("torch", "train")
        from ..network import load_net

        meta = read_model_json(directory)
        try:
            obj = cls(*(from_dict(c, meta[k]) for c, k in (
                (FeatureConfig, "feature_config"), (VAEConfig, "vae_config"),
                (ClassifierConfig, "classifier_config"), (TrainConfig, "train_config"))))
            obj.classes_ = np.array(meta["classes"])
            obj.frame_names_, obj.stat_names_ = tuple(meta["frame_names"]), tuple(meta["stat_names"])
            obj.c_, obj.selection_scores_ = meta["chosen_c"], meta.get("selection_scores", {})
            obj.novelty_, obj.calibration_ = meta.get("novelty", {}), meta.get("calibration")
            obj.dimensions_ = meta.get("dimensions")
            obj.speaker_prior_ = tuple(np.array(meta["speaker_prior"][k], dtype=np.float32) for k in ("mean", "std"))
            obj.history_, obj.metrics_ = meta.get("history", {}), meta.get("metrics", {})
            obj.voice_onnx_ = (inside(directory, meta["voice"].get("file"), "voice student").read_bytes()
                               if meta.get("voice") else None)
        except (KeyError, TypeError, OSError, ValueError, AttributeError) as exc:
            raise ModelFormatError(f"{directory}: model files are incomplete or incompatible ({exc})") from None
        obj.net_ = load_net(directory, meta)
        return obj
