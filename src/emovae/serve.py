"""HTTP service and its web page: ``POST /v1/predict`` turns an uploaded clip into an emotion.

``create_app(recognizer, cfg)`` builds a FastAPI app around a :class:`~emovae.runtime.Recognizer` that the
caller loaded once; ``run()`` loads the model and serves it with uvicorn on 127.0.0.1. Nothing lives at
module level: every app carries its own recognizer, limits and thread limiter.

Endpoints: ``POST /v1/predict`` (multipart field ``file``, or the raw file as the body), ``GET /v1/model``
(classes, the shipped 2-D latent map, metrics), ``GET /health``, ``GET /`` (the page), ``GET /docs``.
Every error is JSON ``{"error": "..."}`` with a 4xx status that says what was wrong and how to fix it.
fastapi, uvicorn and python-multipart come with the ``serve`` extra and are imported only when used.
"""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations (Request, imported
# inside create_app) at runtime.
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AudioError, EmovaeError, ParameterError, require
from .speaker import PRIOR_WEIGHT

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from .runtime import Recognizer

WEB_DIR = Path(__file__).resolve().parent / "web"
MULTIPART_OVERHEAD = 64 * 1024  # room for boundaries and part headers around an upload of max_bytes
CHUNK = 64 * 1024
MULTIPART = "multipart/form-data"
SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True)
class ServeConfig:
    """Limits of the service. ``workers``: predictions that may run at once in the thread pool."""

    max_bytes: int = 10 * 1024 * 1024
    max_seconds: float = 60.0
    workers: int = 2
    session_ttl_s: float = 1800.0  # an adaptation session idle this long is forgotten
    max_sessions: int = 10000  # sessions kept at most (least recently used dropped first)
    prior_weight: float = PRIOR_WEIGHT  # see speaker.SessionConfig

    def __post_init__(self):
        if self.max_bytes < 1:
            raise ParameterError("ServeConfig: max_bytes must be >= 1")
        if not self.max_seconds > 0:
            raise ParameterError("ServeConfig: max_seconds must be > 0")
        if self.workers < 1:
            raise ParameterError("ServeConfig: workers must be >= 1")
        if not self.session_ttl_s > 0 or self.max_sessions < 1 or self.prior_weight < 0:
            raise ParameterError("ServeConfig: need session_ttl_s > 0, max_sessions >= 1, prior_weight >= 0")


class RequestError(Exception):
    """A bad request: its status and a message naming the problem and the fix (sent as JSON)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def audio_error_status(exc: AudioError) -> int:
    """HTTP status for an AudioError: 400 empty, 415 not audio / corrupt, 422 unusable (silent, short...)."""
    msg = str(exc)
    if "empty" in msg or "no data" in msg:
        return 400
    if "not a readable audio file" in msg:
        return 415
    return 422


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def probe_seconds(data: bytes) -> float | None:
    """Duration in seconds from the file header (no decoding), or None when the header cannot tell.

    Lets the service refuse a long clip before decoding it: a few MB of FLAC silence can hold hours.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate > 0 and 0 < f.frames < 2**62:
                return f.frames / f.samplerate
    except Exception:  # unreadable: audio.load_bytes gives the clear error
        return None
    return None


def decode_and_predict(recognizer: "Recognizer", data: bytes, name: str, cfg: ServeConfig, session=None) -> dict:
    """Bytes of an audio file -> the prediction as a JSON-ready dict; through ``session`` (session.Session)
    when given, which it also adapts. Raises RequestError or AudioError."""
    from . import audio

    if not data:
        raise RequestError(400, "empty body: send an audio file (WAV, FLAC or OGG) as multipart field "
                                "'file' or as the raw request body")
    secs = probe_seconds(data)
    if secs is not None and secs > cfg.max_seconds:
        raise RequestError(413, f"{name}: clip is {secs:.1f} s long; this service accepts at most "
                                f"{cfg.max_seconds:g} s: cut it into shorter clips")
    sr = recognizer.feature_config.sample_rate
    y = audio.load_bytes(data, sr, name=name)
    if y.size / sr > cfg.max_seconds:  # headers that lied or gave no length
        raise RequestError(413, f"{name}: clip is {y.size / sr:.1f} s long; this service accepts at most "
                                f"{cfg.max_seconds:g} s: cut it into shorter clips")
    pred = (session or recognizer).predict_signal(y, sr, name)
    out = pred.to_dict()
    out.pop("file", None)
    return out


def model_info(recognizer: "Recognizer") -> dict:
    """What the page and /health show about the loaded model."""
    from . import __version__

    meta = recognizer.meta
    return {"emovae": __version__, "model": Path(recognizer.source).name or str(recognizer.source),
            "backend": recognizer.backend, "trained_with": meta.get("emovae_version")}


def _metrics_summary(metrics) -> dict:
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


def _openapi_body(cfg: ServeConfig) -> dict:
    return {"requestBody": {"required": True, "description": (
        f"An audio file (WAV, FLAC or OGG; at most {_mb(cfg.max_bytes)} and {cfg.max_seconds:g} s): "
        "multipart field 'file', or the file itself as the body with its audio/* content type."),
        "content": {
            MULTIPART: {"schema": {"type": "object", "required": ["file"],
                                   "properties": {"file": {"type": "string", "format": "binary"}}}},
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/flac": {"schema": {"type": "string", "format": "binary"}},
            "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}}


def create_app(recognizer: "Recognizer", cfg: "ServeConfig | None" = None) -> "FastAPI":
    """A FastAPI app serving ``recognizer`` (loaded once by the caller) under the limits of ``cfg``."""
    fastapi = require("fastapi", "serve")
    require("multipart", "serve")  # python-multipart, for form uploads
    import anyio
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from . import __version__
    from .plots import EMOTION_COLORS

    cfg = cfg or ServeConfig()
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    info = model_info(recognizer)
    lmap = recognizer.meta.get("latent_map") or {}
    model_doc = {
        **info,
        "classes": list(recognizer.classes),
        "sample_rate": recognizer.feature_config.sample_rate,
        "colors": {c: EMOTION_COLORS.get(c, "#bcbd22") for c in recognizer.classes},
        "latent_map": {"points": lmap.get("points", []), "labels": lmap.get("labels", [])},
        "metrics": _metrics_summary(recognizer.meta.get("metrics")),
        "limits": {"max_bytes": cfg.max_bytes, "max_seconds": cfg.max_seconds},
    }
    state: dict = {}  # this app's thread limiter, made on first use inside the event loop
    sessions = None
    if recognizer.meta.get("speaker_prior"):
        from .session import SessionConfig, SessionStore

        sessions = SessionStore(recognizer, SessionConfig(prior_weight=cfg.prior_weight), cfg.session_ttl_s,
                                cfg.max_sessions)

    app = fastapi.FastAPI(title="emovae", version=__version__,
                          description="Speech emotion recognition: upload a clip, get its emotion.")
    app.state.sessions = sessions  # the adaptation sessions (session.SessionStore), None without an adapted head

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error(404, f"no such endpoint {request.url.path}; see /docs for the API")
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error(422, f"invalid request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # a bug, not the client's fault
        return error(500, f"internal error ({type(exc).__name__}); please report it with the file that caused it")

    async def read_limited(request: Request, limit: int) -> bytes:
        """The request body, read in chunks; RequestError 413 as soon as it passes ``limit`` bytes."""
        too_big = RequestError(413, f"upload larger than the {_mb(cfg.max_bytes)} limit; send a shorter clip "
                                    f"(at most {cfg.max_seconds:g} s) or a compressed format such as FLAC")
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    raise too_big
            except ValueError:
                raise RequestError(400, f"invalid Content-Length header {length!r}") from None
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise too_big
        return bytes(buf)

    async def upload_from_form(request: Request, body: bytes) -> tuple[bytes, str]:
        from starlette.datastructures import UploadFile
        from starlette.requests import Request as StarletteRequest

        sent = False

        async def replay():  # the buffered body, once, for starlette's form parser
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await StarletteRequest(request.scope, replay).form(max_files=1, max_fields=8)
        except Exception as exc:  # MultiPartException, malformed boundaries...
            raise RequestError(400, f"malformed multipart upload ({exc}); send the audio as field 'file'") from None
        try:
            up = form.get("file")
            if not isinstance(up, UploadFile):
                raise RequestError(400, "multipart upload without a file in field 'file'; send e.g. "
                                        "curl -F file=@clip.wav http://HOST/v1/predict")
            data = await up.read()
            name = os.path.basename(up.filename or "") or "upload"
        finally:
            await form.close()
        if len(data) > cfg.max_bytes:
            raise RequestError(413, f"{name}: file larger than the {_mb(cfg.max_bytes)} limit")
        return data, name

    def session_store():
        if sessions is None:
            raise RequestError(422, "this model has no adapted head (trained by an older emovae): sessions are "
                                    "unavailable; retrain it with 'emovae train'")
        return sessions

    def session_id(sid: str) -> str:
        if not SESSION_ID.fullmatch(sid):
            raise RequestError(400, f"invalid session id {sid[:40]!r}: use 1-128 letters, digits, '-', '_' or '.'")
        return sid

    @app.post("/v1/predict", summary="Emotion of one audio clip", openapi_extra=_openapi_body(cfg))
    async def predict(request: Request, session: str | None = None):
        """Returns ``emotion``, ``confidence``, ``probabilities`` by emotion, ``latent_map`` ([x, y] on the
        model's 2-D map of its training clips), ``duration_s`` and ``model_version``. With ``?session=ID``
        (or header X-Session-Id), the clip is one of a speaker's session: results adapt to the speaker as
        clips arrive (``adapted``, ``speaker_clips``); only running statistics are kept, never audio."""
        sid = session or request.headers.get("x-session-id")
        sess = session_store().get(session_id(sid)) if sid else None
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == MULTIPART:
            body = await read_limited(request, cfg.max_bytes + MULTIPART_OVERHEAD)
            data, name = await upload_from_form(request, body)
        else:  # the body is the file, whatever it is labelled (curl --data-binary says form-urlencoded)
            data, name = await read_limited(request, cfg.max_bytes), "upload"
        if "limiter" not in state:
            state["limiter"] = anyio.CapacityLimiter(cfg.workers)
        try:
            out = await anyio.to_thread.run_sync(decode_and_predict, recognizer, data, name, cfg, sess,
                                                 limiter=state["limiter"])
        except AudioError as exc:
            raise RequestError(audio_error_status(exc), str(exc)) from None
        except EmovaeError as exc:
            raise RequestError(422, str(exc)) from None
        out["model_version"] = info
        if sid:
            out["session"] = sid
        return out

    @app.get("/v1/sessions/{sid}", summary="How many clips an adaptation session holds")
    async def get_session(sid: str):
        sess = session_store().peek(session_id(sid))
        if sess is None:
            raise RequestError(404, f"no live session {sid!r} (never used, reset, or expired after "
                                    f"{cfg.session_ttl_s:g} s idle)")
        return {"session": sid, "clips": sess.n_clips, "adapted": sess.n_clips >= sess.cfg.min_clips}

    @app.delete("/v1/sessions/{sid}", summary="Reset a session: forget the speaker's statistics")
    async def delete_session(sid: str):
        return {"session": sid, "deleted": session_store().delete(session_id(sid))}

    @app.get("/v1/model", summary="Classes, 2-D latent map of the training clips, metrics")
    async def model():
        return model_doc

    @app.get("/health", summary="Liveness and the loaded model")
    async def health():
        return {"status": "ok", **info, "classes": list(recognizer.classes)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    return app


def run(host: str = "127.0.0.1", port: int = 8000, model: str | os.PathLike | None = None,
        backend: str = "auto", cfg: ServeConfig | None = None, log_level: str = "info", abstain: bool = False) -> None:
    """Load ``model`` (default: the shipped one) once and serve it with uvicorn until interrupted.
    ``abstain``: answer "unknown" for clips the VAE flags as unlike the training speech."""
    uvicorn = require("uvicorn", "serve")
    from .runtime import Recognizer

    recognizer = Recognizer.load(model, backend=backend, abstain=abstain)
    app = create_app(recognizer, cfg or ServeConfig())
    uvicorn.run(app, host=host, port=port, log_level=log_level)
