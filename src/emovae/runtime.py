"""Inference on clips: the Recognizer API over an ONNX (torch-free) or torch network backend.

Both backends receive features computed by the same ``features`` code; only the network differs.
``load_pretrained()`` gives the model shipped inside the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio
from .config import FeatureConfig, from_dict
from .errors import AudioError, ModelFormatError, ParameterError, require
from .features import Features, extract, model_inputs, speaker_moments

MODEL_FORMAT = "emovae-model"
MODEL_FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
ONNX_FILE = "model.onnx"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
OUTPUTS = ("probabilities", "mu", "recon_mse", "kl", "stats_mse", "novelty", "probabilities_adapted")
SILENCE_DB = -60.0  # clips whose peak is below this (dBFS) are refused as silent
UNKNOWN = "unknown"  # the emotion reported for out-of-domain clips when abstaining


def read_model_json(directory: str | os.PathLike) -> dict:
    """The parsed model.json of a model folder; ModelFormatError naming the problem otherwise."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelFormatError(f"{d}: no such model folder (pass the folder written by 'emovae train')")
    try:
        meta = json.loads((d / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{d}: no {CONFIG_FILE} here; is this a folder written by 'emovae train'?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{d / CONFIG_FILE}: not valid JSON ({exc})") from None
    return _check_meta(meta, str(d / CONFIG_FILE))


def _check_meta(meta, where: str) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFormatError(f"{where}: not an emovae model description")
    if meta.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ModelFormatError(f"{where}: model format {meta['format_version']} is newer than this emovae "
                               f"understands ({MODEL_FORMAT_VERSION}); upgrade emovae")
    if isinstance(meta.get("feature_config"), dict):  # written before these statistics existed: without them
        meta["feature_config"].setdefault("shape_stats", False)
        meta["feature_config"].setdefault("voice_quality", False)
        meta["feature_config"].setdefault("voice", 0)  # written before the voice student: without it
    if isinstance(meta.get("classifier_config"), dict):  # written before the sequence CNN: without it
        meta["classifier_config"].setdefault("cnn_channels", 0)
        meta["classifier_config"].setdefault("mel_cnn", False)  # written before the log-mel CNN: without it
        meta["classifier_config"].setdefault("stats_mlp", 0)  # written before the statistics MLP: without it
        meta["classifier_config"].setdefault("adapted_mlp", 0)  # before the adapted head's MLP: without it
        meta["classifier_config"].setdefault("head_stats", "all")  # before the voice student: all statistics
    return meta


def onnx_session(path: str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session on ``threads`` threads (1 = predictable latency, no oversubscription)."""
    ort = require("onnxruntime", "runtime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise ModelFormatError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None


def fit_latent_map(mu: np.ndarray, labels: list[str]) -> dict:
    """A 2-D PCA map of latent means (N, L) that ships with a model: centre, 2 components, and the training
    clips' map positions and emotions (for the latent-map figure and the web page)."""
    mu = np.asarray(mu, dtype=np.float64)  # float32 values would be written with float64 digits
    mean = mu.mean(axis=0)
    _, _, vt = np.linalg.svd(mu - mean, full_matrices=False)
    comps = vt[:2]
    comps = comps * np.sign(comps[:, :1] + 1e-12)  # a fixed sign convention
    pts = (mu - mean) @ comps.T
    return {"method": "pca", "mean": mean.round(6).tolist(), "components": comps.round(6).tolist(),
            "points": pts.round(3).tolist(), "labels": list(labels)}


def project_to_map(mu: np.ndarray, latent_map: dict) -> np.ndarray:
    """Map positions (N, 2) of latent means (N, L) on a model's shipped 2-D map."""
    return (np.atleast_2d(mu) - np.asarray(latent_map["mean"])) @ np.asarray(latent_map["components"]).T


class OnnxNetwork:
    """The network through onnxruntime: forward(list of Features) -> dict of outputs, like the torch model."""

    def __init__(self, path: str | os.PathLike, meta: dict | None = None, threads: int = 1):
        self.session = onnx_session(path, threads)
        if meta is None:
            raw = self.session.get_modelmeta().custom_metadata_map.get("emovae_model_json")
            if raw is None:
                raise ModelFormatError(f"{path}: ONNX file without emovae metadata; export it with 'emovae export'")
            meta = _check_meta(json.loads(raw), str(path))
        self.meta = meta
        self.classes_ = np.array(meta["classes"])
        self.seq_len = int(meta["vae_config"]["seq_len"])
        self.voice = None
        if meta.get("voice"):  # the model's voice student, a second graph beside this one
            from .voice import voice_session

            voice_path = Path(path).parent / meta["voice"]["file"]
            if not voice_path.is_file():
                raise ModelFormatError(f"{path}: this model needs its voice student {voice_path.name} beside it")
            self.voice = voice_session(voice_path)

    def prepare(self, X: list[Features]) -> list[Features]:
        """X with the voice student's statistics appended, when the model has one and X lacks them."""
        if self.voice is None or not X or X[0].stat_names[-1].startswith("voice_"):
            return X
        from .voice import with_voice

        return with_voice(list(X), self.voice)

    def forward(self, X: list[Features], groups=None, spk_mean=None, spk_std=None) -> dict[str, np.ndarray]:
        """Network outputs for clips X (as ``EmotionRecognizer.forward``). The adapted head uses the given
        speaker moments (N, S), or the moments of each speaker's clips in X when ``groups`` is given, else the
        prior (only ``probabilities_adapted`` depends on them)."""
        X = self.prepare(X)
        seq, stats = model_inputs(X, self.seq_len)
        spk_mean, spk_std = speaker_inputs(stats, groups, spk_mean, spk_std, self.meta.get("speaker_prior"))
        feeds = {"seq": seq, "stats": stats, "spk_mean": spk_mean, "spk_std": spk_std}
        return dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), feeds)))


def speaker_inputs(stats: np.ndarray, groups=None, spk_mean=None, spk_std=None, prior: dict | None = None):
    """The network's speaker-moment inputs (each (N, S) float32, broadcast from (S,) when needed): given, from
    ``groups`` (the moments of each speaker's clips in the batch), or the model's prior (``prior`` from
    model.json; without one, mean 0 and std 1, which only feed the unused adapted output)."""
    if groups is not None:
        spk_mean, spk_std = speaker_moments(stats, groups)
    elif spk_mean is None:
        if prior:
            spk_mean, spk_std = (np.asarray(prior[k], dtype=np.float32) for k in ("mean", "std"))
        else:
            spk_mean, spk_std = np.zeros(stats.shape[1], np.float32), np.ones(stats.shape[1], np.float32)
    return tuple(np.array(np.broadcast_to(np.asarray(a, dtype=np.float32), stats.shape)) for a in (spk_mean, spk_std))


def average_with_copies(proba: np.ndarray, copy_proba: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Test-time augmentation: each clip's probabilities (N, C) averaged with those of its copies
    (copy_proba (M, C); owner (M,): the clip each copy belongs to; a clip may have none). Float32, (N, C)."""
    total, count = np.asarray(proba, dtype=np.float64).copy(), np.ones(len(proba))
    np.add.at(total, owner, copy_proba)
    np.add.at(count, owner, 1)
    return (total / count[:, None]).astype(np.float32)


@dataclass
class Prediction:
    """One clip's result. ``probabilities`` are keyed by emotion name, in the model's label order."""

    emotion: str
    probabilities: dict[str, float]
    duration_s: float
    latent: list[float] = field(default_factory=list)
    file: str | None = None
    map_xy: tuple[float, float] | None = None  # position on the model's shipped 2-D latent map
    novelty: float | None = None  # the VAE's negative ELBO: how unlike the training speech the clip is
    in_domain: bool | None = None  # novelty within the model's calibrated threshold
    adapted: bool = False  # from the adapted head (statistics normalised with the speaker's moments)
    speaker_clips: int | None = None  # clips of the speaker behind those moments (sessions and batches)

    @property
    def confidence(self) -> float:
        """Probability of the most probable emotion (also when ``emotion`` is "unknown" after abstaining)."""
        return max(self.probabilities.values())

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self) -> dict:
        d = {"file": self.file, "emotion": self.emotion, "confidence": round(self.confidence, 6),
             "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
             "duration_s": round(self.duration_s, 3)}
        if self.map_xy is not None:
            d["latent_map"] = [round(v, 4) for v in self.map_xy]
        if self.novelty is not None:
            d["novelty"] = round(self.novelty, 3)
            d["in_domain"] = self.in_domain
        if self.speaker_clips is not None:
            d["adapted"], d["speaker_clips"] = self.adapted, self.speaker_clips
        return d if self.file is not None else {k: v for k, v in d.items() if k != "file"}


class Recognizer:
    """Clips in, emotions out: ``predict_file(path)``, ``predict_proba(signal, sr)``, ``predict_signal``."""

    def __init__(self, network, meta: dict, source: str, abstain: bool = False, tta: bool = False):
        self.network = network
        self.abstain = abstain  # name out-of-domain clips "unknown" instead of guessing an emotion
        # test-time augmentation: also score each clip played at the speeds the model was trained with, and
        # average the probabilities (+0.7 to +2.5 UA measured, 5x the extraction time; experiments.md section 8)
        self.test_time_speeds = tuple((meta.get("train_config") or {}).get("speed_perturb", ())) if tta else ()
        self.novelty_threshold = (meta.get("novelty") or {}).get("threshold")
        self.meta = meta
        self.source = source
        self.classes = tuple(meta["classes"])
        self.feature_config = from_dict(FeatureConfig, meta["feature_config"])
        self.backend = "onnx" if isinstance(network, OnnxNetwork) else "torch"

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, backend: str = "auto", threads: int = 1,
             abstain: bool = False, tta: bool = False) -> "Recognizer":
        """Load a model folder (or a bare exported .onnx file); default: the shipped pretrained model.

        backend: "onnx" (onnxruntime, no torch), "torch", or "auto" (onnx when the folder has model.onnx
        and onnxruntime is installed, else torch). abstain: report "unknown" for out-of-domain clips.
        tta: test-time augmentation of single clips (``predict_signal``, ``predict_file``, ``predict_proba``):
        average over the clip and its copies at the model's training speeds; slower, a little more accurate.
        """
        if backend not in ("auto", "onnx", "torch"):
            raise ParameterError(f"backend must be auto, onnx or torch, not {backend!r}")
        path = Path(model) if model is not None else PRETRAINED_DIR
        if path.is_file() and path.suffix == ".onnx":
            if backend == "torch":
                raise ParameterError(f"{path}: a bare ONNX file runs only with the onnx backend")
            net = OnnxNetwork(path, threads=threads)
            return cls(net, net.meta, str(path), abstain, tta)
        meta = read_model_json(path)
        if backend == "auto":
            try:
                import onnxruntime  # noqa: F401

                backend = "onnx" if (path / ONNX_FILE).exists() else "torch"
            except ImportError:
                backend = "torch"
        if backend == "onnx":
            if not (path / ONNX_FILE).exists():
                raise ModelFormatError(f"{path}: no {ONNX_FILE}; create it with 'emovae export --model {path}'")
            return cls(OnnxNetwork(path / ONNX_FILE, meta, threads), meta, str(path), abstain, tta)
        from .model import EmotionRecognizer

        return cls(EmotionRecognizer.load(path), meta, str(path), abstain, tta)

    # ------------------------------------------------------------------------------------------ features
    def features(self, signal: np.ndarray, sr: int, name: str = "<signal>") -> Features:
        """Features of a mono or (samples, channels) signal at ``sr`` Hz with the model's config."""
        return self._features_and_copies(signal, sr, name)[0]

    def _features_and_copies(self, signal: np.ndarray, sr: int, name: str, copies: bool = False) -> list[Features]:
        """[features of the clip] + (with ``copies``) those of the clip at each of ``test_time_speeds``."""
        y = np.asarray(signal, dtype=np.float32)
        if y.ndim not in (1, 2):
            raise AudioError(f"{name}: expected audio of shape (samples,) or (samples, channels), got {y.shape}")
        cfg = self.feature_config
        y = audio.check_duration(audio._to_mono_rate(y, sr, cfg.sample_rate, name), cfg.sample_rate,
                                 cfg.min_duration, name)
        if audio.is_silent(y, SILENCE_DB):
            raise AudioError(f"{name}: the clip is silent (peak below {SILENCE_DB:.0f} dBFS); nothing to recognise")
        speeds = self.test_time_speeds if copies else ()
        return self.network.prepare([extract(y if f == 1 else audio.speed_perturb(y, cfg.sample_rate, f),
                                             cfg.sample_rate, cfg) for f in (1.0, *speeds)])

    # ---------------------------------------------------------------------------------------- predictions
    def predict_features(self, X: list[Features], names: list[str | None] | None = None, moments=None,
                         speaker_clips: int | None = None, trust: float = 1.0,
                         copies: list[list[Features]] | None = None) -> list[Prediction]:
        """Predictions for clips X: single-clip, or, with ``moments`` = (mean, std) of the speaker's statistics
        ((S,) or (N, S); see session.py), the mixture (1 - trust) x single-clip head + trust x adapted head.
        ``speaker_clips``: how many clips the moments hold (reported with each prediction). ``copies``: per
        clip, perturbed copies of it whose single-clip probabilities are averaged with the clip's
        (test-time augmentation; the latent, novelty and map position stay the clip's own)."""
        if copies is not None and moments is not None:
            raise ParameterError("test-time copies are for single clips; sessions adapt to the speaker instead")
        if moments is None:
            out = self.network.forward(X)
            if copies and any(copies):
                owner = np.repeat(np.arange(len(copies)), [len(cs) for cs in copies])
                p_copies = self.network.forward([c for cs in copies for c in cs])["probabilities"]
                out["probabilities"] = average_with_copies(out["probabilities"], p_copies, owner)
        else:
            out = self.network.forward(X, spk_mean=moments[0], spk_std=moments[1])
            out["probabilities"] = (1.0 - trust) * out["probabilities"] + trust * out["probabilities_adapted"]
        names = names or [None] * len(X)
        hop_s = self.feature_config.hop_length / self.feature_config.sample_rate
        lmap = self.meta.get("latent_map")
        xy = project_to_map(out["mu"], lmap) if lmap else [None] * len(X)
        preds = []
        for i, f in enumerate(X):
            p = out["probabilities"][i]
            probs = {c: float(v) for c, v in zip(self.classes, p)}
            novelty = float(out["novelty"][i])
            in_domain = None if self.novelty_threshold is None else bool(novelty <= self.novelty_threshold)
            emotion = UNKNOWN if self.abstain and in_domain is False else self.classes[int(np.argmax(p))]
            preds.append(Prediction(emotion, probs, f.frames.shape[0] * hop_s, [float(v) for v in out["mu"][i]],
                                    names[i], None if xy[i] is None else (float(xy[i][0]), float(xy[i][1])),
                                    novelty, in_domain, moments is not None, speaker_clips))
        return preds

    def session(self, prior_weight: float = 8.0, min_clips: int = 2):
        """A new ``session.Session`` for one speaker: each clip predicted through it adapts to that speaker."""
        from .session import Session, SessionConfig

        return Session(self, SessionConfig(prior_weight=prior_weight, min_clips=min_clips))

    def predict_proba(self, signal: np.ndarray, sr: int) -> np.ndarray:
        """Probabilities (len(classes),) of one clip, in ``classes`` order (averaged over the test-time copies
        when the recognizer was loaded with ``tta``)."""
        return self.network.forward(self._features_and_copies(signal, sr, "<signal>", True))["probabilities"].mean(0)

    def predict_signal(self, signal: np.ndarray, sr: int, name: str | None = None) -> Prediction:
        clip, *copies = self._features_and_copies(signal, sr, name or "<signal>", True)
        return self.predict_features([clip], [name], copies=[copies] if copies else None)[0]

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Decode, extract and classify one audio file."""
        cfg = self.feature_config
        y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
        return self.predict_signal(y, cfg.sample_rate, str(path))


def load_pretrained(backend: str = "auto", threads: int = 1, tta: bool = False) -> Recognizer:
    """The model shipped with emovae (trained on the 20 development actors of RAVDESS); ``tta``: see
    ``Recognizer.load``."""
    if not (PRETRAINED_DIR / CONFIG_FILE).exists():
        raise ModelFormatError(f"{PRETRAINED_DIR}: the pretrained model is missing from this installation")
    return Recognizer.load(PRETRAINED_DIR, backend=backend, threads=threads, tta=tta)
