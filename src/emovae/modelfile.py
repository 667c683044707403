"""The model folder, the one place for its format: file names, model.json (read and checked), the network's
input and output names, and the ONNX session that reads its graphs. Training writes what this module reads.

A model folder holds ``model.json`` (configs, classes, names, scalers, prior, metrics), ``model.onnx`` (the
network and its weights) and, with a voice student, ``voice.onnx``; ``weights.pt`` only while training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import EmovaeError, ModelFormatError, require

MODEL_FORMAT = "emovae-model"
MODEL_FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
ONNX_FILE = "model.onnx"
VOICE_FILE = "voice.onnx"  # the voice student's graph, beside model.onnx (FeatureConfig.voice)
WEIGHTS_FILE = "weights.pt"  # torch state dict, kept only until the ONNX export holds the weights
METADATA_KEY = "emovae_model_json"  # model.json inside a bare ONNX file's metadata
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
INPUTS = ("seq", "stats", "spk_mean", "spk_std")
OUTPUTS = ("probabilities", "mu", "recon_mse", "kl", "stats_mse", "novelty", "probabilities_adapted")
REQUIRED_KEYS = ("classes", "feature_config", "vae_config", "classifier_config", "train_config")
#: ClassifierConfig fields of the retired CNN/MLP recipe (docs/research.md): accepted when off, refused when on
RETIRED = {"cnn_channels": 0, "cnn_epochs": None, "mel_cnn": False, "cnn_weight": None, "stats_mlp": 0,
           "adapted_mlp": 0}


def read_model_json(directory: str | os.PathLike) -> dict:
    """The parsed, checked model.json of a model folder; ModelFormatError naming the problem otherwise."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelFormatError(f"{d}: no such model folder (pass the folder written by 'emovae train')")
    try:
        meta = json.loads((d / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{d}: no {CONFIG_FILE} here; is this a folder written by 'emovae train'?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{d / CONFIG_FILE}: not valid JSON ({exc})") from None
    return check_meta(meta, str(d / CONFIG_FILE))


def check_meta(meta, where: str) -> dict:
    """``meta`` (a model description) checked and brought to this version's keys; ModelFormatError otherwise."""
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFormatError(f"{where}: not an emovae model description")
    meta = {k: dict(v) if isinstance(v, dict) else v for k, v in meta.items()}  # the caller's dict stays as it was
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ModelFormatError(f"{where}: model format {version!r} is newer than this emovae understands "
                               f"({MODEL_FORMAT_VERSION}); upgrade emovae")
    missing = [k for k in REQUIRED_KEYS if not isinstance(meta.get(k), dict if k.endswith("config") else list)]
    if missing:
        raise ModelFormatError(f"{where}: missing or malformed key(s) {missing}; the folder is damaged: retrain or "
                               "reinstall the model")
    fc, cc = meta["feature_config"], meta["classifier_config"]
    fc.setdefault("shape_stats", False)  # written before these statistics existed: without them
    fc.setdefault("voice_quality", False)
    fc.setdefault("voice", 0)  # written before the voice student: without it
    cc.setdefault("head_stats", "all")  # written before the voice student: the heads read all statistics
    retired = {k: cc.pop(k) for k in RETIRED if k in cc}
    on = [k for k, v in retired.items() if RETIRED[k] is not None and v not in (RETIRED[k], None)]
    if on:
        raise ModelFormatError(f"{where}: trained with the retired CNN/MLP recipe ({', '.join(on)}), which this "
                               "emovae no longer runs; retrain the model with 'emovae train'")
    from .config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig, from_dict

    for cls, key in ((FeatureConfig, "feature_config"), (VAEConfig, "vae_config"),
                     (ClassifierConfig, "classifier_config"), (TrainConfig, "train_config")):
        try:
            from_dict(cls, meta[key])
        except (EmovaeError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: its {key} is not valid ({str(exc)[:200]})") from None
    if not meta["classes"] or not all(isinstance(c, str) for c in meta["classes"]):
        raise ModelFormatError(f"{where}: 'classes' must be a non-empty list of names")
    return meta


def inside(directory: str | os.PathLike, name, what: str = "file") -> Path:
    """``directory / name`` for a file name that model.json gives, refused unless it lies inside the folder."""
    d = Path(directory).resolve()
    if not isinstance(name, str) or not name:
        raise ModelFormatError(f"{directory}: model.json names its {what} as {name!r}, not a file name")
    p = (d / name).resolve()
    if p.parent != d:
        raise ModelFormatError(f"{directory}: model.json names {what} {name!r} outside the model folder; refused")
    return p


def onnx_session(source, threads: int = 1):
    """An onnxruntime CPU session of a graph (a path, or serialised bytes) on ``threads`` threads (1 = predictable
    latency, no oversubscription); ModelFormatError when it is not a loadable ONNX model."""
    ort = require("onnxruntime", "runtime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_quant_qdq", "1")  # quantised weights folded once, at load
    where = "ONNX graph" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        return ort.InferenceSession(source if isinstance(source, (bytes, bytearray)) else str(source), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / NoSuchFile types
        raise ModelFormatError(f"{where}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
