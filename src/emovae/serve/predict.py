"""From the bytes of an upload to the JSON answer: the clip's length read from its header before decoding
(``probe``), decoding within the limits (``decode``), the prediction (``decode_and_predict``), and what the
service says about its model (``model_info``, ``model_document``). The numbers are the library's: the same
``Recognizer`` calls as ``emovae predict``."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AudioError
from .config import ServeConfig
from .errors import RequestError, size_text

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import FeatureJob, Recognizer


def audio_error_status(exc: AudioError) -> int:
    """HTTP status for an AudioError: 400 empty, 415 not audio / corrupt, 422 unusable (silent, short...)."""
    msg = str(exc)
    if "empty" in msg or "no data" in msg:
        return 400
    if "not a readable audio file" in msg:
        return 415
    return 422


def probe(data: bytes) -> tuple[float, int] | None:
    """(duration in seconds, samples over all channels) from the file header (no decoding), or None when the
    header cannot tell.

    Lets the service refuse a long clip before decoding it: a few MB of FLAC silence can hold hours.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate > 0 and 0 < f.frames < 2**62:
                return f.frames / f.samplerate, f.frames * max(1, f.channels)
    except Exception:  # unreadable: audio.load_bytes gives the clear error
        return None
    return None


def probe_seconds(data: bytes) -> float | None:
    """Duration in seconds from the file header (no decoding), or None when the header cannot tell."""
    info = probe(data)
    return None if info is None else info[0]


#: memory a decode takes, in float32 copies of the decoded samples (all channels): soundfile's array and the
#: temporaries of checking and mixing it down (measured: 176 MB for 92 MB of samples)
DECODE_COPIES = 2


def decode_memory(data: bytes, cfg: ServeConfig, info: tuple[float, int] | None = None) -> int:
    """Bytes a decode of ``data`` may take: DECODE_COPIES times the decoded size its header declares (all of
    ``cfg.max_decoded_bytes`` when it does not say): what ``decode`` holds of a DecodeBudget. ``info``:
    ``probe(data)`` when already read."""
    info = probe(data) if info is None else info
    return DECODE_COPIES * (4 * info[1] if info is not None else cfg.max_decoded_bytes)


def decode(sr: int, data: bytes, name: str, cfg: ServeConfig, budget=None):
    """Bytes of an audio file -> mono samples at ``sr`` Hz (the model's rate), within the limits of ``cfg``;
    ``budget`` (a limits.DecodeBudget): held for ``decode_memory`` while decoding. Raises RequestError or
    AudioError."""
    from .. import audio

    if not data:
        raise RequestError(400, "empty body: send an audio file (WAV, FLAC or OGG) as multipart field "
                                "'file' or as the raw request body")
    info = probe(data)
    if info is not None:
        secs, samples = info
        if secs > cfg.max_seconds:
            raise RequestError(413, f"{name}: clip is {secs:.1f} s long; this service accepts at most "
                                    f"{cfg.max_seconds:g} s: cut it into shorter clips")
        if 4 * samples > cfg.max_decoded_bytes:
            raise RequestError(413, f"{name}: {secs:.1f} s of {samples / secs / 1000:.0f} k samples/s (all channels) "
                                    f"would take {size_text(4 * samples)} decoded, over this service's "
                                    f"{size_text(cfg.max_decoded_bytes)}: send mono audio at 16-48 kHz")
    with budget.hold(decode_memory(data, cfg, info)) if budget is not None else contextlib.nullcontext():
        y = audio.load_bytes(data, sr, name=name, max_decoded_bytes=cfg.max_decoded_bytes)  # this service's bound
    if y.size / sr > cfg.max_seconds:  # headers that lied or gave no length
        raise RequestError(413, f"{name}: clip is {y.size / sr:.1f} s long; this service accepts at most "
                                f"{cfg.max_seconds:g} s: cut it into shorter clips")
    return y


def upload_features(job: "FeatureJob", data: bytes, name: str, cfg: ServeConfig, budget=None) -> list:
    """Bytes of an audio file -> [features of the clip] + those of its test-time copies (``FeatureJob.signal``):
    what a prediction needs before the network, in this process or a worker's (``pool.FeaturePool``)."""
    sr = job.config.sample_rate
    return job.signal(decode(sr, data, name, cfg, budget), sr, name)


def prediction_dict(pred) -> dict:
    """A prediction as the service answers it (the upload's name is the client's, not repeated back)."""
    out = pred.to_dict()
    out.pop("file", None)
    return out


def decode_and_predict(recognizer: "Recognizer", data: bytes, name: str, cfg: ServeConfig, in_session=None,
                       budget=None, pool=None) -> dict:
    """Bytes of an audio file -> the prediction as a JSON-ready dict. ``in_session``: called with the clip's
    features once it has decoded and its features are extracted (so that a clip that fails touches no
    session), it returns the answer through a session instead. ``budget``: see ``decode``. ``pool``: a
    ``pool.FeaturePool`` that decodes and extracts in its worker processes (the network and the session stay
    here). Raises RequestError or AudioError."""
    if pool is None:
        clip, *copies = upload_features(recognizer.feature_job, data, name, cfg, budget)
    else:
        with budget.hold(decode_memory(data, cfg)) if budget is not None else contextlib.nullcontext():
            clip, *copies = pool.features(data, name)
    del data
    clip, *copies = recognizer.network.prepare([clip, *copies])
    if in_session is None:
        return prediction_dict(recognizer.predict_features([clip], [name], copies=[copies] if copies else None)[0])
    return in_session(clip)


def model_info(recognizer: "Recognizer") -> dict:
    """What the page and /health show about the loaded model."""
    from .. import __version__

    meta = recognizer.meta
    return {"emovae": __version__, "model": Path(recognizer.source).name or str(recognizer.source),
            "backend": recognizer.backend, "trained_with": meta.get("emovae_version")}


def metrics_summary(metrics) -> dict:
    """The scalar numbers of a model's stored metrics (nested one level at most), for display."""
    out = {}
    if not isinstance(metrics, dict):
        return out
    for k, v in metrics.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = v
        elif isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, (int, float)) and not isinstance(v2, bool) and math.isfinite(v2):
                    out[f"{k}.{k2}"] = v2
    return out


def model_document(recognizer: "Recognizer", cfg: ServeConfig) -> dict:
    """``GET /v1/model``: classes, colours, the shipped 2-D latent map, metrics and the upload limits."""
    from ..plots import class_colors

    lmap = recognizer.meta.get("latent_map") or {}
    return {
        **model_info(recognizer),
        "classes": list(recognizer.classes),
        "sample_rate": recognizer.feature_config.sample_rate,
        "colors": class_colors(recognizer.classes),
        "latent_map": {"points": lmap.get("points", []), "labels": lmap.get("labels", [])},
        "metrics": metrics_summary(recognizer.meta.get("metrics")),
        "limits": {"max_bytes": cfg.max_bytes, "max_seconds": cfg.max_seconds},
    }
