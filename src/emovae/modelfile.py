"""The model folder, the one place for its format: file names, model.json (read and checked), the network's
input and output names, and the ONNX session that reads its graphs. Training writes what this module reads.

A model folder holds ``model.json`` (configs, classes, names, scalers, prior, metrics), ``model.onnx`` (the
network and its weights) and, with a voice student, ``voice.onnx``; ``weights.pt`` only while training.

A model folder is input like any other: every field of model.json that loading or scoring reads is type- and
range-checked here (``FIELDS``, ``check_fields``) before anything is allocated from it, and the network's graph is
checked against it (``check_graph``), so that a damaged or hostile folder ends in a ModelFormatError naming the
folder and the field, never in a crash or a request for gigabytes.
"""

from __future__ import annotations

import json
import math
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
#: the arousal and valence heads' outputs (B, 2) each, after OUTPUTS, in models whose model.json has "dimensions"
#: (trained from 2026-12-06 on); older graphs end at OUTPUTS
DIMENSION_OUTPUTS = ("dimensions", "dimensions_adapted")


def output_names(meta: dict) -> tuple[str, ...]:
    """The network outputs a model described by ``meta`` (model.json) has, in graph order."""
    return OUTPUTS + (DIMENSION_OUTPUTS if meta.get("dimensions") else ())
REQUIRED_KEYS = ("classes", "feature_config", "vae_config", "classifier_config", "train_config")
#: ClassifierConfig fields of the retired CNN/MLP recipe (docs/research.md): accepted when off, refused when on
RETIRED = {"cnn_channels": 0, "cnn_epochs": None, "mel_cnn": False, "cnn_weight": None, "stats_mlp": 0,
           "adapted_mlp": 0}
MAX_JSON_BYTES = 16 * 1024 * 1024  # a larger model.json is not one (the shipped one: 127 KB)
MAX_GRAPH_BYTES = 512 * 1024 * 1024  # a larger model.onnx or voice.onnx is not one (the shipped ones: < 400 KB)
MAX_CLASSES = 1000
MAX_NAMES = 100_000  # frame and statistic names
MAX_PARAMETERS = 50_000_000  # the torch network model.json describes (the shipped one: 0.15 M)
#: the spectral values one second of audio costs: sample_rate / hop_length frames of max(n_fft, yin_frame_length)
#: // 2 + 1 bins. The defaults cost 51 300 (100 frames of 513); five times that is allowed, so that a ten-minute
#: clip stays within about a gigabyte of spectra.
MAX_SPECTRUM_PER_SECOND = 262_144
DAMAGED = "the folder is damaged or was not written by 'emovae train': retrain or reinstall the model"

#: every config field of model.json: (kind, lowest, highest); kinds "int", "float" (an int will do), "bool", "str",
#: "str?" (a string or null), "floats" (a list of at most ``highest`` numbers, each within the range of the entry
#: named in the fourth place). The configs' own checks (config.py) run after these.
FIELDS: dict[str, dict[str, tuple]] = {
    "feature_config": {
        "sample_rate": ("int", 8000, 192_000), "n_fft": ("int", 16, 16384), "win_length": ("int", 1, 16384),
        "hop_length": ("int", 1, 16384), "n_mels": ("int", 1, 512), "n_mfcc": ("int", 1, 512), "deltas": ("bool",),
        "pitch_method": ("str",), "pitch_decimation": ("int", 1, 64), "f0_min": ("float", 1.0, 96_000.0),
        "f0_max": ("float", 1.0, 96_000.0),
        "yin_frame_length": ("int", 16, 16384), "yin_threshold": ("float", 0.0, 1.0),
        "ber_split_hz": ("float", 1.0, 96_000.0), "trim_db": ("float", 0.0, 300.0),
        "silence_db": ("float", -400.0, 0.0), "percentiles": ("floats", 0, 32, (0.0, 100.0)),
        "shape_stats": ("bool",), "voice_quality": ("bool",), "min_duration": ("float", 0.0, 60.0),
        "voice": ("int", 0, 4096),
    },
    "vae_config": {
        "seq_len": ("int", 8, 4096), "channels": ("int", 1, 4096), "latent_dim": ("int", 1, 4096),
        "beta": ("float", 0.0, 1e6), "warmup_epochs": ("int", 0, 10**6), "epochs": ("int", 1, 10**6),
        "batch_size": ("int", 1, 10**6), "lr": ("float", 0.0, 1e3), "patience": ("int", 0, 10**6),
        "with_stats": ("bool",),
    },
    "classifier_config": {
        "use_stats": ("bool",), "use_latent": ("bool",), "c_grid": ("floats", 1, 64, (1e-12, 1e12)),
        "class_weight": ("str?",), "answer_accuracy": ("float", 0.0, 1.0), "adapted_head": ("bool",),
        "voice_epochs": ("int", 1, 10**6), "voice_copies_per_epoch": ("int", 0, 10**6), "head_stats": ("str",),
        "dimension_alphas": ("floats", 1, 64, (1e-12, 1e12)),
    },
    "train_config": {
        "seed": ("int", 0, 2**63 - 1), "val_actors": ("int", 1, 10**6), "threads": ("int", 1, 1024),
        "speed_perturb": ("floats", 0, 16, (0.5, 2.0)), "degraded_copies": ("int", 0, 8),
    },
}


def read_model_json(directory: str | os.PathLike) -> dict:
    """The parsed, checked model.json of a model folder; ModelFormatError naming the problem otherwise."""
    d = Path(directory)
    if not d.is_dir():
        raise ModelFormatError(f"{d}: no such model folder (pass the folder written by 'emovae train')")
    f = d / CONFIG_FILE
    try:
        size = f.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ModelFormatError(f"{f}: {size} bytes, more than any model.json ({MAX_JSON_BYTES} at most); {DAMAGED}")
        text = f.read_bytes()
    except FileNotFoundError:
        raise ModelFormatError(f"{d}: no {CONFIG_FILE} here; is this a folder written by 'emovae train'?") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{f}: a folder, not a file; {DAMAGED}") from None
    except OSError as exc:
        raise ModelFormatError(f"{f}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    return check_meta(parse_json(text, str(f)), str(f))


def parse_json(text: str | bytes, where: str):
    """``text`` (model.json, or the copy inside a bare .onnx file) parsed; ModelFormatError naming ``where`` for
    what is not JSON, including nesting too deep to parse and integers of thousands of digits."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ModelFormatError(f"{where}: JSON nested too deeply to be a model description; {DAMAGED}") from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise ModelFormatError(f"{where}: holds a number of thousands of digits, which no model description has; "
                               f"{DAMAGED}") from None


def check_meta(meta, where: str) -> dict:
    """``meta`` (a model description) checked and brought to this version's keys; ModelFormatError otherwise."""
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFormatError(f"{where}: not an emovae model description")
    meta = {k: dict(v) if isinstance(v, dict) else v for k, v in meta.items()}  # the caller's dict stays as it was
    version = meta.get("format_version", 0)
    if not is_number(version, 0, MODEL_FORMAT_VERSION, integer=True):
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
    fc.setdefault("pitch_decimation", 1)  # written before it: "yin-acf" then ran at the full rate ("yin" ignores it)
    cc.setdefault("head_stats", "all")  # written before the voice student: the heads read all statistics
    retired = {k: cc.pop(k) for k in RETIRED if k in cc}
    on = [k for k, v in retired.items() if RETIRED[k] is not None and v not in (RETIRED[k], None)]
    if on:
        raise ModelFormatError(f"{where}: trained with the retired CNN/MLP recipe ({', '.join(on)}), which this "
                               "emovae no longer runs; retrain the model with 'emovae train'")
    from .config import ClassifierConfig, FeatureConfig, TrainConfig, VAEConfig, from_dict

    check_fields(meta, where)
    for cls, key in ((FeatureConfig, "feature_config"), (VAEConfig, "vae_config"),
                     (ClassifierConfig, "classifier_config"), (TrainConfig, "train_config")):
        try:
            from_dict(cls, meta[key])
        except (EmovaeError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{where}: its {key} is not valid ({str(exc)[:200]})") from None
    check_sizes(meta, where)
    return meta


def field_error(where: str, field: str, value, want: str) -> ModelFormatError:
    """The error for model.json's ``field`` (dotted: ``vae_config.seq_len``) holding ``value`` where ``want``
    was expected."""
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:40] + f"... ({type(value).__name__} of {len(shown)} characters)"
    return ModelFormatError(f"{where}: {field} is {shown}; it must be {want}; {DAMAGED}")


def is_number(value, lo: float, hi: float, integer: bool = False) -> bool:
    """``value`` is an int (a float too, unless ``integer``), not a bool, finite, within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return lo <= value <= hi  # exact for integers of any size


def numbers_within(values: list, lo: float, hi: float) -> bool:
    """Every entry of ``values`` an int or a float (not a bool), within [lo, hi] (so neither NaN nor infinite when
    the bounds are finite): ``is_number`` for a whole list, at a fraction of its cost (model.json holds thousands)."""
    return all(type(v) is float or type(v) is int for v in values) and all(lo <= v <= hi for v in values)


def check_value(where: str, field: str, value, spec: tuple) -> None:
    """ModelFormatError unless ``value`` fits ``spec`` (a ``FIELDS`` entry)."""
    kind = spec[0]
    if kind == "bool":
        ok, want = isinstance(value, bool), "true or false"
    elif kind in ("str", "str?"):
        ok = (isinstance(value, str) and 0 < len(value) <= 100) or (kind == "str?" and value is None)
        want = "a short string" + (" or null" if kind == "str?" else "")
    elif kind == "floats":
        lo, hi = spec[3]
        ok = (isinstance(value, list) and spec[1] <= len(value) <= spec[2]
              and numbers_within(value, lo, hi))
        want = f"a list of {spec[1]} to {spec[2]} numbers in [{lo:g}, {hi:g}]"
    else:
        ok = is_number(value, spec[1], spec[2], kind == "int")
        want = f"{'an integer' if kind == 'int' else 'a number'} in [{spec[1]:g}, {spec[2]:g}]"
    if not ok:
        raise field_error(where, field, value, want)


def check_fields(meta: dict, where: str) -> None:
    """Every config field of model.json type- and range-checked (``FIELDS``), then the fields that size what
    loading and scoring allocate: classes, frame and statistic names, the STFT's cost per second of audio."""
    for section, fields in FIELDS.items():
        for key, value in meta[section].items():
            if key in fields:  # unknown keys are the configs' own error
                check_value(where, f"{section}.{key}", value, fields[key])
    classes = meta["classes"]
    if not (0 < len(classes) <= MAX_CLASSES and all(isinstance(c, str) and 0 < len(c) <= 100 for c in classes)
            and len(set(classes)) == len(classes)):
        raise field_error(where, "classes", classes, f"a list of 1 to {MAX_CLASSES} different, non-empty names")
    for key in ("frame_names", "stat_names"):
        names = meta.get(key)
        if names is not None and not (isinstance(names, list) and 0 < len(names) <= MAX_NAMES
                                      and all(isinstance(n, str) for n in names)):
            raise field_error(where, key, names, f"a list of 1 to {MAX_NAMES} names")
    fc = meta["feature_config"]
    rate, hop = fc.get("sample_rate", 16000), fc.get("hop_length", 160)
    bins = max(fc.get("n_fft", 512), fc.get("yin_frame_length", 1024)) // 2 + 1
    if rate / hop * bins > MAX_SPECTRUM_PER_SECOND:
        raise field_error(where, "feature_config.hop_length", hop,
                          f"large enough that sample_rate / hop_length frames of {bins} bins stay within "
                          f"{MAX_SPECTRUM_PER_SECOND} values per second of audio")


def check_sizes(meta: dict, where: str) -> None:
    """The optional parts scoring reads (speaker prior, novelty and 'uncertain' thresholds, latent map, voice
    student), checked against the sizes the configs give, and the torch network's size bounded
    (``MAX_PARAMETERS``): what a damaged model.json would otherwise turn into a crash or a huge allocation."""
    n_stats = len(meta["stat_names"]) if isinstance(meta.get("stat_names"), list) else None
    latent = meta["vae_config"].get("latent_dim", 16)
    n = network_parameters(meta)
    if n > MAX_PARAMETERS:
        raise ModelFormatError(f"{where}: vae_config (seq_len {meta['vae_config'].get('seq_len')}, channels "
                               f"{meta['vae_config'].get('channels')}, latent_dim {latent}) with "
                               f"{len(meta.get('frame_names') or [])} frame features and {n_stats or 0} statistics "
                               f"describe a network of {n:,} parameters, more than {MAX_PARAMETERS:,}; {DAMAGED}")
    prior = meta.get("speaker_prior")
    if prior is not None:
        if not isinstance(prior, dict):
            raise field_error(where, "speaker_prior", prior, "an object with lists 'mean' and 'std'")
        for key, lo in (("mean", -1e30), ("std", 1e-30)):  # within float32, which the network reads them as
            v = prior.get(key)
            if not (isinstance(v, list) and 0 < len(v) <= MAX_NAMES and (n_stats is None or len(v) == n_stats)
                    and numbers_within(v, lo, 1e30)):
                count = "" if n_stats is None else f"{n_stats} "
                raise field_error(where, f"speaker_prior.{key}", v, f"a list of {count}"
                                  f"{'positive ' if key == 'std' else ''}finite numbers, one per statistic")
    scalers = meta.get("scalers")  # the network's own copy lives in model.onnx; this one must agree in shape
    if scalers is not None:
        if not isinstance(scalers, dict):
            raise field_error(where, "scalers", scalers, "an object of lists")
        n_frames = len(meta["frame_names"]) if isinstance(meta.get("frame_names"), list) else None
        for key, count in (("seq_mean", n_frames), ("seq_std", n_frames), ("stats_mean", n_stats),
                           ("stats_std", n_stats), ("z_mean", latent), ("z_std", latent)):
            v = scalers.get(key)
            if v is not None and not (isinstance(v, list) and (count is None or len(v) == count)
                                      and numbers_within(v, -1e30, 1e30)):
                raise field_error(where, f"scalers.{key}", v, f"a list of {count or 'the'} finite numbers")
    for section, key, lo, hi in (("novelty", "threshold", -1e30, 1e30),
                                 ("calibration", "uncertain_below", 0.0, 1.0),
                                 ("calibration", "temperature", 1e-6, 1e6),
                                 ("calibration", "temperature_adapted", 1e-6, 1e6)):
        part = meta.get(section)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise field_error(where, section, part, "an object")
        if part.get(key) is not None and not is_number(part[key], lo, hi):
            raise field_error(where, f"{section}.{key}", part[key], f"null or a number in [{lo:g}, {hi:g}]")
    lmap = meta.get("latent_map")
    if lmap is not None:
        mean, comps = (lmap.get("mean"), lmap.get("components")) if isinstance(lmap, dict) else (None, None)
        if not (isinstance(mean, list) and len(mean) == latent and numbers_within(mean, -1e30, 1e30)):
            raise field_error(where, "latent_map.mean", mean, f"a list of vae_config.latent_dim ({latent}) numbers")
        if not (isinstance(comps, list) and len(comps) == 2 and all(
                isinstance(c, list) and len(c) == latent and numbers_within(c, -1e30, 1e30) for c in comps)):
            raise field_error(where, "latent_map.components", comps, f"2 lists of {latent} numbers")
        points, labels = lmap.get("points"), lmap.get("labels")
        if points is not None or labels is not None:  # the page and the report draw them
            if not (isinstance(points, list) and len(points) <= MAX_NAMES and all(
                    isinstance(q, list) and len(q) == 2 and numbers_within(q, -1e30, 1e30) for q in points)):
                raise field_error(where, "latent_map.points", points, f"a list of at most {MAX_NAMES} [x, y] pairs")
            if not (isinstance(labels, list) and len(labels) == len(points)
                    and all(isinstance(x, str) for x in labels)):
                raise field_error(where, "latent_map.labels", labels, "a list of names, one per point")
    check_shown(meta, where)
    voice = meta.get("voice")
    if voice and not (isinstance(voice, dict) and isinstance(voice.get("file"), str)):
        raise field_error(where, "voice", voice, "null or an object naming its graph file ('file': 'voice.onnx')")
    speeds = meta["train_config"].get("speed_perturb")
    if speeds is not None and len(speeds) > 16:  # test-time augmentation scores one copy per speed
        raise field_error(where, "train_config.speed_perturb", speeds, "at most 16 speeds")


def check_shown(meta: dict, where: str) -> None:
    """The parts of model.json that are only shown (the version that trained it, the metrics it shipped with, the
    labels it merged), checked as far as the demo, the report and the service read them."""
    version = meta.get("emovae_version")
    if version is not None and not (isinstance(version, str) and len(version) <= 100):
        raise field_error(where, "emovae_version", version, "a short string")
    metrics = meta.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            raise field_error(where, "metrics", metrics, "an object")
        for part, name in ((metrics, "metrics"), (metrics.get("adapted"), "metrics.adapted")):
            if not part or not isinstance(part, dict) or not part.get("mean"):
                if part is not None and not isinstance(part, dict):
                    raise field_error(where, name, part, "an object")
                continue
            for key in ("mean", "std"):  # the demo prints mean +- std of the balanced accuracy
                value = part.get(key)
                if not (isinstance(value, dict) and is_number(value.get("balanced_accuracy"), 0.0, 1.0)):
                    raise field_error(where, f"{name}.{key}", value, "an object whose balanced_accuracy is in [0, 1]")
    data = meta.get("training_data")
    if data is not None:
        label_map = data.get("label_map") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not (label_map is None or (isinstance(label_map, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in label_map.items()))):
            raise field_error(where, "training_data", data, "an object whose label_map maps names to names")


def network_parameters(meta: dict) -> int:
    """The number of weights and buffers of the network model.json describes (``network.EmotionNet``), from the
    configs and the name lists alone, counting the heads as if they read every statistic (an upper bound: what
    building it in torch would allocate, at most)."""
    vc = meta["vae_config"]
    c, t4, lat = vc.get("channels", 32), vc.get("seq_len", 64) // 4, vc.get("latent_dim", 16)
    f, s = len(meta.get("frame_names") or []), len(meta.get("stat_names") or [])
    k = len(meta["classes"])
    s_vae = s if vc.get("with_stats", True) else 0
    vae = (f * c * 5 + 2 * c * c * 5 + (c * t4 + s_vae) * 2 * lat + lat * c * t4 + 2 * c * c * 4 + c * f * 5
           + lat * s_vae + 2 * lat + c * t4 + 4 * c + f + s_vae)
    return vae + 2 * ((s + lat) * k + k) + 2 * (f + s + lat)


def check_graph(inputs: list, outputs: list, meta: dict, where: str) -> None:
    """ModelFormatError naming ``where`` unless a network graph with ``inputs`` and ``outputs`` ([(name, shape)],
    a shape's unknown dimensions as strings or None) is the network model.json describes: the format's input and
    output names, seq_len steps of the frame features, one statistic per name, one probability per class."""
    names_in, names_out = [n for n, _ in inputs], [n for n, _ in outputs]
    want_out = list(output_names(meta))
    if names_in != list(INPUTS) or names_out != want_out:
        hint = (f" (it looks like the voice student: are {ONNX_FILE} and {VOICE_FILE} swapped?)"
                if names_in == ["mel"] else "")
        raise ModelFormatError(f"{where}: not an emovae network: inputs {names_in} and outputs {names_out}, not "
                               f"{list(INPUTS)} and {want_out}{hint}; {DAMAGED}")
    shape = dict(inputs) | dict(outputs)
    n_frames, n_stats = (len(meta[k]) if isinstance(meta.get(k), list) else None for k in ("frame_names", "stat_names"))
    expected = (("seq", 1, meta["vae_config"].get("seq_len", 64), "vae_config.seq_len"),
                ("seq", 2, n_frames, "frame_names"), ("stats", 1, n_stats, "stat_names"),
                ("probabilities", 1, len(meta["classes"]), "classes"),
                ("mu", 1, meta["vae_config"].get("latent_dim", 16), "vae_config.latent_dim"))
    for tensor, axis, want, field in expected:
        dims = shape.get(tensor) or []
        got = dims[axis] if len(dims) > axis else None
        if want is not None and isinstance(got, int) and got != want:
            raise ModelFormatError(f"{where}: the network's {tensor} has {got} on axis {axis}, but model.json's "
                                   f"{field} gives {want}; the graph and model.json are from different models: "
                                   "retrain or reinstall the model")


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
    size = len(source) if isinstance(source, (bytes, bytearray)) else (
        os.stat(source).st_size if os.path.isfile(source) else 0)
    if size > MAX_GRAPH_BYTES:
        raise ModelFormatError(f"{where}: {size} bytes, more than any emovae graph ({MAX_GRAPH_BYTES} at most); "
                               f"{DAMAGED}")
    try:
        return ort.InferenceSession(source if isinstance(source, (bytes, bytearray)) else str(source), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / NoSuchFile types
        raise ModelFormatError(f"{where}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
