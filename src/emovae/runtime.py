"""Inference on clips: the Recognizer API over an ONNX (torch-free) or torch network backend.

Both backends receive features computed by the same ``features`` code; only the network differs.
``load_pretrained()`` gives the model shipped inside the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from . import audio
from .config import FeatureConfig, from_dict
from .errors import AudioError, ModelFormatError, ParameterError, require
from .features import Features, extract, model_inputs
from .guard import SpeechGuard, cues, has_cues
from .modelfile import (CONFIG_FILE, INPUTS, METADATA_KEY, ONNX_FILE, PRETRAINED_DIR, WEIGHTS_FILE, output_names,
                        check_graph, check_meta, inside, onnx_session, parse_json, read_model_json)
from .speaker import SessionConfig, batch_moments, mix, model_prior, network_moments

SILENCE_DB = -60.0  # clips whose peak is below this (dBFS) are refused as silent
UNKNOWN = "unknown"  # the emotion reported for out-of-domain clips when abstaining
NOT_SPEECH, UNCERTAIN = "not speech", "uncertain"  # answers instead of an emotion (``Prediction.answer``)


def check_session(session, meta: dict, where: str) -> None:
    """ModelFormatError naming ``where`` unless an onnxruntime session runs the network ``meta`` describes
    (``modelfile.check_graph``): a swapped or foreign graph is refused at load, not at the first clip."""
    check_graph([(i.name, i.shape) for i in session.get_inputs()], [(o.name, o.shape) for o in session.get_outputs()],
                meta, where)


def check_feature_names(meta: dict, cfg: FeatureConfig, where: str) -> None:
    """ModelFormatError naming ``where`` unless model.json's frame and statistic names (when it has them) are the
    ones its feature_config gives (``features.frame_names``, ``features.stat_names``, then the voice student's):
    a feature_config edited after training would feed the network columns it was not trained on."""
    from .features import frame_names, stat_names

    want = {"frame_names": list(frame_names(cfg)), "stat_names": list(stat_names(cfg))}
    if cfg.voice:
        from .voice import voice_names

        want["stat_names"] += list(voice_names())
    for key, names in want.items():
        got = meta.get(key)
        if got is not None and list(got) != names:
            first = next((i for i, (a, b) in enumerate(zip(got, names)) if a != b), min(len(got), len(names)))
            raise ModelFormatError(f"{where}: model.json's {key} ({len(got)}) are not the {len(names)} its "
                                   f"feature_config gives (they differ from column {first}); the configs and the "
                                   "network are from different models: retrain or reinstall the model")


def speech_guard(meta: dict, source: str) -> SpeechGuard | None:
    """The model's speech guard (None without one); ModelFormatError naming the model ``source`` when model.json's
    ``guard`` is malformed or holds numbers that are not finite (or a zero spread)."""
    if not meta.get("guard"):
        return None
    try:
        guard = SpeechGuard(meta["guard"])
    except ModelFormatError as exc:
        raise ModelFormatError(f"{source}: {exc}") from None
    arrays = (guard.mean, guard.std, guard.w1, guard.b1, guard.w2, np.array([guard.b2, guard.threshold]))
    if not all(np.all(np.isfinite(a)) for a in arrays) or np.any(guard.std <= 0):
        raise ModelFormatError(f"{source}: model.json's guard holds numbers that are not finite, or a spread that is "
                               "not positive; retrain or reinstall the model")
    return guard


def answer_of(emotion: str, confidence: float, in_domain: bool | None, uncertain_below: float | None) -> str:
    """What to tell a user about one clip: "not speech" when the speech guard says so, "uncertain" when the
    calibrated confidence is below the model's threshold (chosen on clips of corpora its heads never saw), else
    the emotion."""
    if in_domain is False:
        return NOT_SPEECH
    if uncertain_below is not None and confidence < uncertain_below:
        return UNCERTAIN
    return emotion


def mix_heads(out: dict, trust) -> dict:
    """Network outputs with ``probabilities`` (and ``dimensions``, when the model has them) mixed with the adapted
    heads' by ``trust`` (a number or (N,); ``speaker.mix``)."""
    out["probabilities"] = mix(out["probabilities"], out["probabilities_adapted"], trust)
    if "dimensions" in out:
        out["dimensions"] = mix(out["dimensions"], out["dimensions_adapted"], trust)
    return out


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


def average_with_copies(proba: np.ndarray, copy_proba: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Test-time augmentation: each clip's probabilities (N, C) averaged with those of its copies
    (copy_proba (M, C); owner (M,): the clip each copy belongs to; a clip may have none). Float32, (N, C)."""
    total, count = np.asarray(proba, dtype=np.float64).copy(), np.ones(len(proba))
    np.add.at(total, owner, copy_proba)
    np.add.at(count, owner, 1)
    return (total / count[:, None]).astype(np.float32)


def voice_file(model: str | os.PathLike, meta: dict) -> Path | None:
    """The voice student's graph file of the model at ``model`` (its folder, or a bare .onnx file beside the
    graph), as its description ``meta`` names it; None for a model without one."""
    if not meta.get("voice"):
        return None
    path = Path(model)
    directory = path.parent if path.suffix == ".onnx" and path.is_file() else path
    return inside(directory, (meta["voice"] or {}).get("file") if isinstance(meta["voice"], dict) else None,
                  "voice student")


@dataclass(frozen=True)
class FeatureJob:
    """How a model turns a clip into its network's input, as a small picklable value: the feature config, the
    test-time speeds (its copies), the voice student's graph file (None without one) and the bound on decoded
    bytes. ``Recognizer`` computes its features through it, and batch scoring sends it to worker processes
    (``batch.predictions`` with ``jobs``), each of which opens the voice graph once (``voice.voice_session`` keeps
    one session, of one thread, per file and process)."""

    config: FeatureConfig
    speeds: tuple[float, ...] = ()
    voice: str | None = None
    max_decoded_bytes: int | None = audio.MAX_DECODED_BYTES

    def signal(self, signal, sr: int, name: str = "<signal>", copies: bool = True) -> list[Features]:
        """[features of the clip] + (with ``copies``) those of the clip at each of ``speeds``, with the voice
        statistics appended when the model has a student and the clip's speech-guard cues (``Features.cues``);
        a mono or (samples, channels) signal at ``sr`` Hz. AudioError for a silent clip (peak below
        ``SILENCE_DB``)."""
        cfg = self.config
        y = audio.prepare(signal, sr, cfg.sample_rate, cfg.min_duration, name, self.max_decoded_bytes)
        if audio.is_silent(y, SILENCE_DB):
            raise AudioError(f"{name}: the clip is silent (peak below {SILENCE_DB:.0f} dBFS); nothing to recognise")
        X = [extract(y if f == 1 else audio.speed_perturb(y, cfg.sample_rate, f), cfg.sample_rate, cfg)
             for f in (1.0, *(self.speeds if copies else ()))]
        if has_cues(X[0].frame_names):
            X[0] = replace(X[0], cues=cues(X[0].frames, X[0].frame_names, 1.0 / (cfg.hop_length / cfg.sample_rate)))
        if self.voice is None:
            return X
        from .voice import voice_session, with_voice

        return with_voice(X, voice_session(self.voice))

    def file(self, path: str | os.PathLike) -> list[Features]:
        """``signal`` of the decoded file (``audio.load``: mono, the config's rate)."""
        cfg = self.config
        y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration, max_decoded_bytes=self.max_decoded_bytes)
        return self.signal(y, cfg.sample_rate, str(path))


class Network:
    """The network behind a model, whichever backend runs it: ``forward(list of Features)`` -> dict of outputs
    (``modelfile.output_names``: with "dimensions" when the model has arousal and valence heads). ``run`` maps the
    input arrays (``modelfile.INPUTS``) to the outputs (an onnxruntime session's, or ``network.runner`` for torch);
    ``voice`` runs the model's voice student, when it has one."""

    def __init__(self, run, meta: dict, voice=None, backend: str = "onnx"):
        self.run, self.meta, self.voice, self.backend = run, meta, voice, backend
        self.seq_len = int(meta["vae_config"]["seq_len"])
        prior = meta.get("speaker_prior")  # as float32 arrays once, not from model.json's lists per clip
        self.prior = {k: np.asarray(prior[k], dtype=np.float32) for k in ("mean", "std")} if prior else None

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "onnx", meta: dict | None = None,
             threads: int = 1) -> "Network":
        """The network of a model folder (``backend`` "onnx" or "torch"), or of a bare exported .onnx file
        (its model description read from the file's metadata)."""
        path = Path(path)
        if path.suffix == ".onnx" and path.is_file():
            session = onnx_session(path, threads)
            if meta is None:
                raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
                if raw is None:
                    raise ModelFormatError(f"{path}: ONNX file without emovae metadata; export it with 'emovae export'")
                meta = check_meta(parse_json(raw, f"{path} (its emovae metadata)"), f"{path} (its emovae metadata)")
            check_session(session, meta, str(path))
            return cls(lambda feeds: session.run(list(output_names(meta)), feeds), meta,
                       cls._voice(path.parent, meta, path))
        meta = read_model_json(path) if meta is None else meta
        if backend == "onnx":
            if not (path / ONNX_FILE).is_file():
                raise ModelFormatError(f"{path}: no {ONNX_FILE}; create it with 'emovae export --model {path}'")
            session = onnx_session(path / ONNX_FILE, threads)
            check_session(session, meta, str(path / ONNX_FILE))
            return cls(lambda feeds: session.run(list(output_names(meta)), feeds), meta, cls._voice(path, meta, path))
        if not (path / ONNX_FILE).is_file() and not (path / WEIGHTS_FILE).is_file():
            raise ModelFormatError(f"{path}: no {ONNX_FILE} (the network and its weights) in this model folder; "
                                   "copy the whole folder written by 'emovae train', or retrain the model")
        require("torch", "train")
        from .network import load_net, runner

        return cls(runner(load_net(path, meta)), meta, cls._voice(path, meta, path), "torch")

    @staticmethod
    def _voice(directory: Path, meta: dict, where: Path):
        """The voice student's session of a model (None without one), from the file model.json names."""
        if not meta.get("voice"):
            return None
        from .voice import VOICE_DIM, voice_session

        voice_path = voice_file(directory, meta)
        if not voice_path.is_file():
            raise ModelFormatError(f"{where}: this model needs its voice student {voice_path.name} beside it")
        session = voice_session(voice_path)
        names = [i.name for i in session.get_inputs()]
        out = session.get_outputs()[0].shape if session.get_outputs() else []
        if names != ["mel"] or (len(out) > 1 and isinstance(out[1], int) and out[1] != VOICE_DIM):
            swapped = f" (it looks like the network: are {ONNX_FILE} and {voice_path.name} swapped?)" if names == list(
                INPUTS) else ""
            raise ModelFormatError(f"{voice_path}: not a voice student: inputs {names}, not ['mel'], or not "
                                   f"{VOICE_DIM} voice statistics{swapped}; retrain or reinstall the model")
        return session

    def prepare(self, X: list[Features]) -> list[Features]:
        """X with the voice student's statistics appended, when the model has one and X lacks them."""
        if self.voice is None or not X or X[0].stat_names[-1].startswith("voice_"):
            return list(X)
        from .voice import with_voice

        return with_voice(list(X), self.voice)

    def forward(self, X: list[Features], spk_mean=None, spk_std=None) -> dict[str, np.ndarray]:
        """Network outputs for clips X; the adapted head reads the statistics z-scored with the given speaker
        moments ((S,) or (N, S)), else with the model's prior (only ``probabilities_adapted`` depends on them)."""
        seq, stats = model_inputs(self.prepare(X), self.seq_len)
        return self.forward_arrays(seq, stats, spk_mean, spk_std)

    def forward_arrays(self, seq: np.ndarray, stats: np.ndarray, spk_mean=None, spk_std=None) -> dict[str, np.ndarray]:
        """``forward`` on the network's input arrays: seq (N, T, F) and stats (N, S) with the voice statistics."""
        spk_mean, spk_std = network_moments(stats, spk_mean, spk_std, self.prior)
        feeds = {"seq": seq, "stats": stats, "spk_mean": spk_mean, "spk_std": spk_std}
        return dict(zip(output_names(self.meta), self.run(feeds)))

    def forward_by_speaker(self, X: list[Features], speakers, cfg: SessionConfig | None = None) -> dict:
        """Outputs with ``probabilities`` adapted to each clip's speaker: the moments of all of that speaker's
        clips pooled with the prior, and the heads mixed by the trust those clips earn (``speaker.py``). What
        ``predict --speaker-from`` answers and what the evaluation's adapted mode scores; ``speaker_clips``
        (N,) and ``adapted`` (N,) are added."""
        cfg = cfg or SessionConfig()
        X = self.prepare(X)
        seq, stats = model_inputs(X, self.seq_len)
        mean, std, count = batch_moments(stats, speakers, model_prior(self.meta), cfg)
        out = mix_heads(self.forward_arrays(seq, stats, mean, std), cfg.trust(count))
        out["speaker_clips"], out["adapted"] = count, count >= cfg.min_clips
        return out


@dataclass
class Prediction:
    """One clip's result. ``probabilities`` are keyed by emotion name, in the model's label order."""

    emotion: str
    probabilities: dict[str, float]
    duration_s: float
    latent: list[float] = field(default_factory=list)
    file: str | None = None
    map_xy: tuple[float, float] | None = None  # position on the model's shipped 2-D latent map
    novelty: float | None = None  # the VAE's reconstruction error: how unlike the *training* speech the clip is
    in_domain: bool | None = None  # the clip is speech: the speech guard's score reaches its threshold (models
    # without a guard: novelty within the model's calibrated threshold)
    adapted: bool = False  # from the adapted head (statistics normalised with the speaker's moments)
    speaker_clips: int | None = None  # clips of the speaker behind those moments (sessions and batches)
    speech: float | None = None  # the speech guard's score, 0..1 (``guard.SpeechGuard``)
    answer: str = ""  # what to tell the user: the emotion, "uncertain" or "not speech" (``answer_of``)
    arousal: float | None = None  # -1 (calm, sleepy) .. 1 (activated), from the arousal head (``affect``); None
    # when the model has no such head or the clip is not speech
    valence: float | None = None  # -1 (unpleasant) .. 1 (pleasant), likewise

    def __post_init__(self):
        self.answer = self.answer or self.emotion

    @property
    def confidence(self) -> float:
        """Probability of the most probable emotion (also when ``emotion`` is "unknown" after abstaining)."""
        return max(self.probabilities.values())

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self) -> dict:
        d = {"file": self.file, "answer": self.answer, "emotion": self.emotion,
             "confidence": round(self.confidence, 6),
             "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
             "duration_s": round(self.duration_s, 3)}
        if self.map_xy is not None:
            d["latent_map"] = [round(v, 4) for v in self.map_xy]
        if self.novelty is not None:
            d["novelty"] = round(self.novelty, 3)
            d["in_domain"] = self.in_domain
        if self.speech is not None:
            d["speech"] = round(self.speech, 4)
        if self.arousal is not None:
            d["arousal"], d["valence"] = round(self.arousal, 4), round(self.valence, 4)
        if self.speaker_clips is not None:
            d["adapted"], d["speaker_clips"] = self.adapted, self.speaker_clips
        return d if self.file is not None else {k: v for k, v in d.items() if k != "file"}


class Recognizer:
    """Clips in, emotions out: ``predict_file(path)``, ``predict_proba(signal, sr)``, ``predict_signal``."""

    def __init__(self, network: Network, meta: dict, source: str, abstain: bool = False, tta: bool = False,
                 max_decoded_bytes: int | None = audio.MAX_DECODED_BYTES):
        self.network = network
        # a clip's decoded samples (float32, all channels) at most this many bytes, checked from a file's header
        # before decoding (``audio.load``); None: no bound
        self.max_decoded_bytes = max_decoded_bytes
        self.abstain = abstain  # name out-of-domain clips "unknown" instead of guessing an emotion
        # test-time augmentation: also score each clip played at the speeds the model was trained with, and
        # average the probabilities (+0.7 to +2.5 UA measured, 5x the extraction time; docs/research.md section 8)
        self.test_time_speeds = tuple((meta.get("train_config") or {}).get("speed_perturb", ())) if tta else ()
        self.novelty_threshold = (meta.get("novelty") or {}).get("threshold")
        # below this calibrated confidence the answer is "uncertain" (models before 2026-12-06: never)
        self.uncertain_below = (meta.get("calibration") or {}).get("uncertain_below")
        self.guard = speech_guard(meta, source)  # in_domain: is it speech?
        self.meta = meta
        self.source = source
        self.classes = tuple(meta["classes"])
        self.feature_config = from_dict(FeatureConfig, meta["feature_config"])
        check_feature_names(meta, self.feature_config, source)
        self.backend = network.backend

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, backend: str = "auto", threads: int = 1,
             abstain: bool = False, tta: bool = False,
             max_decoded_bytes: int | None = audio.MAX_DECODED_BYTES) -> "Recognizer":
        """Load a model folder (or a bare exported .onnx file); default: the shipped pretrained model.

        backend: "onnx" (onnxruntime, no torch), "torch", or "auto" (onnx when the folder has model.onnx
        and onnxruntime is installed, else torch). abstain: report "unknown" for out-of-domain clips.
        tta: test-time augmentation of single clips (``predict_signal``, ``predict_file``, ``predict_proba``):
        average over the clip and its copies at the model's training speeds; slower, a little more accurate.
        max_decoded_bytes: refuse a clip whose decoded float32 samples (all channels) would take more (a file's
        from its header, before decoding; default ``audio.MAX_DECODED_BYTES``, 128 MiB; None: no bound).
        """
        if backend not in ("auto", "onnx", "torch"):
            raise ParameterError(f"backend must be auto, onnx or torch, not {backend!r}")
        path = Path(model) if model is not None else PRETRAINED_DIR
        if path.is_file() and path.suffix == ".onnx":
            if backend == "torch":
                raise ParameterError(f"{path}: a bare ONNX file runs only with the onnx backend")
            net = Network.load(path, threads=threads)
            return cls(net, net.meta, str(path), abstain, tta, max_decoded_bytes)
        meta = read_model_json(path)
        if backend == "auto":
            try:
                import onnxruntime  # noqa: F401

                backend = "onnx" if (path / ONNX_FILE).exists() else "torch"
            except ImportError:
                backend = "torch"
        return cls(Network.load(path, backend, meta, threads), meta, str(path), abstain, tta, max_decoded_bytes)

    # ------------------------------------------------------------------------------------------ features
    def features(self, signal: np.ndarray, sr: int, name: str = "<signal>") -> Features:
        """Features of a mono or (samples, channels) signal at ``sr`` Hz with the model's config."""
        return self._features_and_copies(signal, sr, name)[0]

    def _features_and_copies(self, signal: np.ndarray, sr: int, name: str, copies: bool = False) -> list[Features]:
        """[features of the clip] + (with ``copies``) those of the clip at each of ``test_time_speeds``."""
        return self.network.prepare(self.feature_job.signal(signal, sr, name, copies))

    @cached_property
    def _voice_file(self) -> str | None:
        path = voice_file(self.source, self.meta) if self.network.voice is not None else None
        return None if path is None else str(path)

    @property
    def feature_job(self) -> FeatureJob:
        """This model's ``FeatureJob``: what worker processes need to compute its features (``batch.predictions``).
        A network whose voice student is not a file (one built in memory) leaves the voice statistics to
        ``Network.prepare`` in this process."""
        return FeatureJob(self.feature_config, self.test_time_speeds, self._voice_file, self.max_decoded_bytes)

    # ---------------------------------------------------------------------------------------- predictions
    def predict_features(self, X: list[Features], names: list[str | None] | None = None, moments=None,
                         speaker_clips: int | None = None, trust: float | np.ndarray = 1.0,
                         copies: list[list[Features]] | None = None) -> list[Prediction]:
        """Predictions for clips X: single-clip, or, with ``moments`` = (mean, std) of the speaker's statistics
        ((S,) or (N, S); see speaker.py), the mixture (1 - trust) x single-clip head + trust x adapted head.
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
            out = mix_heads(self.network.forward(X, spk_mean=moments[0], spk_std=moments[1]), trust)
        n = len(X)
        return self._predictions(X, out, names, np.full(n, moments is not None), [speaker_clips] * n)

    def predict_by_speaker(self, X: list[Features], speakers, names: list[str | None] | None = None,
                           cfg: SessionConfig | None = None) -> list[Prediction]:
        """Batch adaptation (``Network.forward_by_speaker``): each clip adapted with all clips of its speaker,
        whatever their order. Speakers with fewer than ``cfg.min_clips`` clips get the single-clip head."""
        if len(speakers) != len(X):
            raise ParameterError(f"got {len(X)} clips but {len(speakers)} speakers")
        if not X:
            return []
        out = self.network.forward_by_speaker(X, speakers, cfg)
        return self._predictions(X, out, names, out["adapted"], [int(c) for c in out["speaker_clips"]])

    def _predictions(self, X: list[Features], out: dict, names, adapted, speaker_clips) -> list[Prediction]:
        names = names or [None] * len(X)
        hop_s = self.feature_config.hop_length / self.feature_config.sample_rate
        lmap = self.meta.get("latent_map")
        xy = project_to_map(out["mu"], lmap) if lmap else [None] * len(X)
        frame_rate = 1.0 / hop_s
        dims = out.get("dimensions")
        preds = []
        for i, f in enumerate(X):
            p = out["probabilities"][i]
            probs = {c: float(v) for c, v in zip(self.classes, p)}
            novelty, speech = float(out["novelty"][i]), None
            if self.guard is not None:
                c = cues(f.frames, f.frame_names, frame_rate) if f.cues is None else f.cues
                speech = float(self.guard.score(c)[0])
                in_domain = speech >= self.guard.threshold
            else:
                in_domain = None if self.novelty_threshold is None else bool(novelty <= self.novelty_threshold)
            emotion = UNKNOWN if self.abstain and in_domain is False else self.classes[int(np.argmax(p))]
            arousal, valence = (None, None) if dims is None or in_domain is False else (float(v) for v in dims[i])
            preds.append(Prediction(emotion, probs, f.frames.shape[0] * hop_s, [float(v) for v in out["mu"][i]],
                                    names[i], None if xy[i] is None else (float(xy[i][0]), float(xy[i][1])),
                                    novelty, in_domain, bool(adapted[i]), speaker_clips[i], speech,
                                    answer_of(emotion, float(p.max()), in_domain, self.uncertain_below),
                                    arousal, valence))
        return preds

    def session(self, cfg: SessionConfig | None = None):
        """A new ``session.Session`` for one speaker: each clip predicted through it adapts to that speaker."""
        from .session import Session

        return Session(self, cfg)

    def predict_proba(self, signal, sr: int | None = None, *, batch: bool | None = None) -> np.ndarray:
        """Probabilities in ``classes`` order (averaged over the test-time copies when the recognizer was loaded
        with ``tta``). One clip (mono, (samples, channels) or (channels, samples) at ``sr`` Hz) -> (n_classes,).
        A batch -> (n, n_classes), as scikit-learn's ``predict_proba``: a list of (signal, sr) pairs (or of
        signals, all at ``sr``), or a 2-D array of n equal-length clips (n, samples) at ``sr``. A 2-D array is
        read as one multichannel clip unless ``batch=True`` or it has more rows than ``audio.MAX_CHANNELS`` and
        fewer rows than columns. A bad clip raises its error, naming it by its index."""
        if batch is None:
            batch = (isinstance(signal, (list, tuple)) and len(signal) > 0 and not np.isscalar(signal[0])) or (
                isinstance(signal, np.ndarray) and signal.ndim == 2 and audio.MAX_CHANNELS < signal.shape[0] < signal.shape[1])
        if not batch:
            return self.network.forward(self._features_and_copies(signal, sr, "<signal>", True))["probabilities"].mean(0)
        clips = []
        for i, item in enumerate(signal):
            if isinstance(item, tuple) and len(item) == 2 and not isinstance(item[1], np.ndarray):
                y, rate = item
            else:
                y, rate = item, sr
            clips.append(self._features_and_copies(y, rate, f"<signal {i}>", True))
        if not clips:
            return np.zeros((0, len(self.classes)), np.float32)
        out = self.network.forward([c[0] for c in clips])["probabilities"]
        if any(len(c) > 1 for c in clips):
            owner = np.repeat(np.arange(len(clips)), [len(c) - 1 for c in clips])
            out = average_with_copies(out, self.network.forward([x for c in clips for x in c[1:]])["probabilities"], owner)
        return np.asarray(out)

    def predict_files(self, paths, jobs: int | None = None):
        """A pandas DataFrame indexed by file: emotion, confidence, one column per class, in_domain, novelty,
        duration_s and error (a file that cannot be scored gets its error, not an exception). Features are computed
        on ``jobs`` worker processes (default: all cores; 1: this process) and the network runs on batches of
        ``batch.CHUNK`` clips. Needs pandas (``pip install 'emovae[batch]'``); ``batch.expand_inputs`` turns
        folders, globs and manifests into files."""
        from .batch import predict_files

        return predict_files(self, paths, jobs=jobs)

    def predict_signal(self, signal: np.ndarray, sr: int, name: str | None = None) -> Prediction:
        clip, *copies = self._features_and_copies(signal, sr, name or "<signal>", True)
        return self.predict_features([clip], [name], copies=[copies] if copies else None)[0]

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Decode, extract and classify one audio file."""
        cfg = self.feature_config
        y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration, max_decoded_bytes=self.max_decoded_bytes)
        return self.predict_signal(y, cfg.sample_rate, str(path))


def load_pretrained(backend: str = "auto", threads: int = 1, tta: bool = False) -> Recognizer:
    """The model shipped with emovae (trained on RAVDESS actors 1-20, SAVEE, TESS and EMOVO; 7 classes); ``tta``:
    see ``Recognizer.load``."""
    if not (PRETRAINED_DIR / CONFIG_FILE).exists():
        raise ModelFormatError(f"{PRETRAINED_DIR}: the pretrained model is missing from this installation")
    return Recognizer.load(PRETRAINED_DIR, backend=backend, threads=threads, tta=tta)
