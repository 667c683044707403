"""HTTP service and its web page: ``POST /v1/predict`` turns an uploaded clip into an emotion.

``create_app(recognizer, cfg)`` builds a FastAPI app around a :class:`~emovae.runtime.Recognizer` that the
caller loaded once; ``run()`` loads the model and serves it with uvicorn on 127.0.0.1. Nothing lives at
module level: every app carries its own recognizer, limits and thread limiter.

Endpoints: ``POST /v1/predict`` (multipart field ``file``, or the raw file as the body), ``GET /v1/model``
(classes, the shipped 2-D latent map, metrics), ``GET /health``, ``GET /`` (the page), ``GET /docs`` (a
self-contained API reference, no scripts fetched from elsewhere) and ``GET /openapi.json``.
Every error is JSON ``{"error": "..."}`` with a 4xx status that says what was wrong and how to fix it.
fastapi, uvicorn and python-multipart come with the ``serve`` extra and are imported only when used.

Bounds (all in :class:`ServeConfig`): one upload at most ``max_bytes`` (413); the bodies held in memory at
once at most ``max_pending_bytes``: an upload that finds no room waits up to ``queue_timeout_s`` without its
body being read, then gets 429 with Retry-After; a body must arrive within ``body_timeout_s`` (408) and
request headers within ``header_timeout_s`` (the connection is closed); an adaptation session is created
only by a request that succeeded, at most ``new_sessions_per_min`` per client address and
``new_sessions_per_min_total`` in all (429 with Retry-After beyond); cross-origin requests are refused
(403) unless their origin is in ``allow_origins``; an upload the client aborts is logged in one line.
"""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations (Request, imported
# inside create_app) at runtime.
import asyncio
import collections
import ctypes
import dataclasses
import gc
import html
import io
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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
RETRY_AFTER_BUSY_S = 5  # Retry-After sent when the upload budget stays full for queue_timeout_s
PENDING_UPLOADS = 6  # default body budget: this many uploads of max_bytes held at once
TRIM_AFTER_IDLE_S = 0.5  # memory handed back to the OS this long after the last upload finished
log = logging.getLogger("emovae.serve")


@dataclass(frozen=True)
class ServeConfig:
    """Limits of the service. ``workers``: predictions that may run at once in the thread pool.

    ``max_pending_bytes``: request bodies held in memory at once, all uploads together (each upload reserves
    its Content-Length, or its largest size when it has none, before its body is read); ``queue_timeout_s``:
    how long an upload waits for room before a 429. ``body_timeout_s``: the whole body must arrive within
    this many seconds of the handler starting to read it (408). ``header_timeout_s``: a connection that has
    not sent a request's headers within this many seconds is closed (``run`` only); ``keep_alive_s``: idle
    keep-alive connections are closed after this. ``new_sessions_per_min`` (per client address) and
    ``new_sessions_per_min_total``: adaptation sessions created at most, per minute (429 beyond).
    ``allow_origins``: origins (``https://host:port``, or ``*``) whose web pages may call the service; same
    origin is always allowed. ``max_decoded_bytes``: refuse a clip whose decoded samples (float32, every
    channel, as the header declares them) would take more memory than this.
    """

    max_bytes: int = 10 * 1024 * 1024
    max_seconds: float = 60.0
    workers: int = 2
    session_ttl_s: float = 1800.0  # an adaptation session idle this long is forgotten
    max_sessions: int = 10000  # sessions kept at most (least recently used dropped first)
    prior_weight: float = PRIOR_WEIGHT  # see speaker.SessionConfig
    max_pending_bytes: int | None = None  # None: room for PENDING_UPLOADS uploads of max_bytes
    queue_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    new_sessions_per_min: float = 30.0
    new_sessions_per_min_total: float = 600.0
    allow_origins: tuple[str, ...] = ()
    max_decoded_bytes: int = 128 * 1024 * 1024
    session_store: str | None = None  # None: sessions in this process; redis://HOST:6379/0: shared (session.py)

    def __post_init__(self):
        if self.max_bytes < 1:
            raise ParameterError("ServeConfig: max_bytes must be >= 1")
        if not self.max_seconds > 0:
            raise ParameterError("ServeConfig: max_seconds must be > 0")
        if self.workers < 1:
            raise ParameterError("ServeConfig: workers must be >= 1")
        if not self.session_ttl_s > 0 or self.max_sessions < 1 or self.prior_weight < 0:
            raise ParameterError("ServeConfig: need session_ttl_s > 0, max_sessions >= 1, prior_weight >= 0")
        if self.max_pending_bytes is not None and self.max_pending_bytes < self.max_bytes + MULTIPART_OVERHEAD:
            raise ParameterError(f"ServeConfig: max_pending_bytes ({self.max_pending_bytes}) must hold at least one "
                                 f"upload of max_bytes plus {MULTIPART_OVERHEAD} bytes of multipart framing")
        for name in ("queue_timeout_s", "body_timeout_s", "header_timeout_s", "keep_alive_s",
                     "new_sessions_per_min", "new_sessions_per_min_total"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ParameterError(f"ServeConfig: {name} must be a finite number > 0, got {v!r}")
        if self.max_decoded_bytes < 1:
            raise ParameterError("ServeConfig: max_decoded_bytes must be >= 1")
        if isinstance(self.allow_origins, str):
            object.__setattr__(self, "allow_origins", (self.allow_origins,))
        object.__setattr__(self, "allow_origins", tuple(normalize_origin(o) for o in self.allow_origins))

    @property
    def pending_bytes(self) -> int:
        """The budget of request bodies held at once, in bytes."""
        if self.max_pending_bytes is not None:
            return self.max_pending_bytes
        return PENDING_UPLOADS * (self.max_bytes + MULTIPART_OVERHEAD)


def normalize_origin(origin: str) -> str:
    """``https://Example.com:443/`` -> ``https://example.com`` (the form browsers send); ``*`` kept.
    ParameterError for anything that is not scheme://host[:port]."""
    origin = origin.strip()
    if origin == "*":
        return origin
    u = urlsplit(origin)
    if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/") or u.query or u.username:
        raise ParameterError(f"allowed origin {origin!r}: write it as scheme://host[:port], e.g. "
                             "https://app.example.com or http://localhost:3000 (or * for any)")
    port = u.port
    default = {"http": 80, "https": 443}[u.scheme]
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{u.scheme}://{host}" + (f":{port}" if port and port != default else "")


class RequestError(Exception):
    """A bad request: its status and a message naming the problem and the fix (sent as JSON)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class ClientGone(Exception):
    """The client closed the connection before its body was in."""

    def __init__(self, received: int):
        super().__init__(f"client disconnected after {received} bytes")
        self.received = received


class ByteBudget:
    """Bytes of request bodies the app may hold at once. ``acquire`` waits (first come, first served) for
    room; all calls come from the event loop, so no lock is needed."""

    def __init__(self, total: int):
        self.total, self.used = total, 0
        self._waiters: collections.deque = collections.deque()

    async def acquire(self, n: int, timeout: float) -> bool:
        if not self._waiters and self.used + n <= self.total:
            self.used += n
            return True
        fut = asyncio.get_running_loop().create_future()
        item = (n, fut)
        self._waiters.append(item)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        except BaseException:  # cancelled: give back room granted in the meantime
            if fut.done() and not fut.cancelled():
                self.used -= n
            raise
        finally:
            if item in self._waiters:
                self._waiters.remove(item)
            self._wake()  # a large upload that gave up may have held back smaller ones

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.total:
            n, fut = self._waiters.popleft()
            if not fut.done():
                self.used += n
                fut.set_result(True)


class RateLimit:
    """Token buckets by key: ``per_min`` events per minute, bursts of up to ``per_min``; thread-safe. Keeps
    at most ``max_keys`` keys (full buckets are forgotten first: they are as good as new)."""

    def __init__(self, per_min: float, max_keys: int = 100_000, clock=time.monotonic):
        self.capacity, self.rate = max(1.0, per_min), per_min / 60.0
        self.max_keys, self._clock = max_keys, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may have one event (0: now)."""
        with self._lock:
            level = self._level(key, self._clock())
            return 0.0 if level >= 1 else (1 - level) / self.rate

    def take(self, key: str) -> float:
        """Spend one event for ``key``: 0 when allowed, else the seconds to wait (nothing spent)."""
        with self._lock:
            now = self._clock()
            level = self._level(key, now)
            if level < 1:
                return (1 - level) / self.rate
            self._buckets[key] = (level - 1, now)
            if len(self._buckets) > self.max_keys:
                for k in [k for k in self._buckets if self._level(k, now) >= self.capacity]:
                    del self._buckets[k]
                while len(self._buckets) > self.max_keys:  # still full: drop the oldest entries
                    del self._buckets[next(iter(self._buckets))]
            return 0.0


def malloc_trim() -> bool:
    """Hand free heap memory back to the OS (glibc's malloc_trim); False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


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


def decode(recognizer: "Recognizer", data: bytes, name: str, cfg: ServeConfig):
    """Bytes of an audio file -> mono samples at the model's rate, within the limits of ``cfg``. Raises
    RequestError or AudioError."""
    from . import audio

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
                                    f"would take {_mb(4 * samples)} decoded, over this service's "
                                    f"{_mb(cfg.max_decoded_bytes)}: send mono audio at 16-48 kHz")
    sr = recognizer.feature_config.sample_rate
    y = audio.load_bytes(data, sr, name=name)
    if y.size / sr > cfg.max_seconds:  # headers that lied or gave no length
        raise RequestError(413, f"{name}: clip is {y.size / sr:.1f} s long; this service accepts at most "
                                f"{cfg.max_seconds:g} s: cut it into shorter clips")
    return y


def _to_dict(pred) -> dict:
    out = pred.to_dict()
    out.pop("file", None)
    return out


def decode_and_predict(recognizer: "Recognizer", data: bytes, name: str, cfg: ServeConfig, session=None,
                       open_session=None) -> dict:
    """Bytes of an audio file -> the prediction as a JSON-ready dict; through ``session`` (session.Session)
    when given, which it also adapts. ``open_session``: called with no argument once the clip has decoded
    and its features are extracted, it returns the session to predict through (so that a clip that fails
    creates no session). Raises RequestError or AudioError."""
    y = decode(recognizer, data, name, cfg)
    del data
    sr = recognizer.feature_config.sample_rate
    if session is None and open_session is None:
        return _to_dict(recognizer.predict_signal(y, sr, name))
    f = recognizer.features(y, sr, name)
    del y
    session = session if session is not None else open_session()
    return _to_dict(session.predict_features(f, name))


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


def _host_port(netloc: str, default_port: int | None) -> tuple[str, int | None]:
    u = urlsplit("//" + netloc)
    try:
        port = u.port
    except ValueError:
        port = None
    return (u.hostname or "").lower(), port or default_port


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``origin`` (a browser's Origin header) names the host the request was sent to (its Host
    header). The scheme is not compared, so that a TLS proxy in front keeps working; ports are (a Host
    header without one means the default port of the Origin's scheme)."""
    if not host_header:
        return False
    u = urlsplit(origin)
    if u.scheme not in ("http", "https") or not u.netloc:
        return False  # "null" (sandboxed pages, file://) and nonsense are foreign
    default = {"http": 80, "https": 443}[u.scheme]
    return _host_port(u.netloc, default) == _host_port(host_header, default)


class OriginPolicy:
    """ASGI middleware: the CORS policy. Requests without an Origin header (curl, scripts) and same-origin
    ones pass. From an allowed origin: CORS headers added, preflights answered. From any other origin: a
    preflight or a request that is not GET/HEAD is refused with 403 before its body is read; GET/HEAD are
    answered without CORS headers, so the browser keeps the answer from the foreign page."""

    METHODS = "GET, POST, DELETE"
    HEADERS = "Content-Type, X-Session-Id"

    def __init__(self, app, allow_origins: tuple[str, ...] = ()):
        self.app = app
        self.any = "*" in allow_origins
        self.allowed = frozenset(o for o in allow_origins if o != "*")

    def allows(self, origin: str) -> bool:
        if self.any:
            return True
        try:
            return normalize_origin(origin) in self.allowed
        except ParameterError:
            return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        origin = headers.get(b"origin")
        if origin is None:
            return await self.app(scope, receive, send)
        origin = origin.decode("latin-1")
        if same_origin(origin, (headers.get(b"host") or b"").decode("latin-1")):
            return await self.app(scope, receive, send)
        allowed = self.allows(origin)
        method = scope["method"]
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if method == "OPTIONS" and b"access-control-request-method" in headers:  # a preflight
            if allowed:
                return await self._respond(send, 204, b"", cors + [
                    (b"access-control-allow-methods", self.METHODS.encode()),
                    (b"access-control-allow-headers", self.HEADERS.encode()),
                    (b"access-control-max-age", b"600")])
            return await self._refuse(send, origin, method)
        if not allowed:
            if method in ("GET", "HEAD"):
                return await self.app(scope, receive, send)
            return await self._refuse(send, origin, method)

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors,
                                                  (b"access-control-expose-headers", b"Retry-After")]}
            await send(message)

        return await self.app(scope, receive, send_with_cors)

    async def _refuse(self, send, origin: str, method: str):
        import json

        msg = (f"cross-origin {method} from {origin[:100]!r} refused: this service takes requests from its own "
               f"page, from scripts and from the origins it was started with; to let that site call it, start "
               f"it with --allow-origin {origin[:100]}")
        await self._respond(send, 403, json.dumps({"error": msg}).encode(),
                            [(b"content-type", b"application/json"), (b"connection", b"close")])

    @staticmethod
    async def _respond(send, status: int, body: bytes, headers: list):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})


def docs_page(openapi: dict) -> str:
    """A self-contained HTML reference of the API (no scripts, styles or fonts fetched from elsewhere, so it
    works offline), made from the OpenAPI schema; the schema itself is at /openapi.json."""
    e = html.escape
    info = openapi.get("info", {})
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(info.get('title', 'API'))} "
             "API</title><style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "code{background:#f3f3f3;padding:0 .2em}h2 code{font-size:1em}.m{font-weight:bold;color:#264}</style>"
             f"</head><body><h1>{e(info.get('title', 'API'))} {e(str(info.get('version', '')))}</h1>"
             f"<p>{e(info.get('description', ''))}</p><p>Machine-readable schema: "
             "<a href='openapi.json'>openapi.json</a>. Errors are JSON <code>{\"error\": \"...\"}</code>.</p>"]
    for path, ops in openapi.get("paths", {}).items():
        for method, op in ops.items():
            parts.append(f"<h2><span class='m'>{e(method.upper())}</span> <code>{e(path)}</code></h2>"
                         f"<p><b>{e(op.get('summary', ''))}</b></p><p>{e(op.get('description', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<ul>" + "".join(
                    f"<li><code>{e(p.get('name', ''))}</code> ({e(p.get('in', ''))}"
                    f"{', required' if p.get('required') else ''})</li>" for p in params) + "</ul>")
            body = op.get("requestBody")
            if body:
                types = ", ".join(f"<code>{e(t)}</code>" for t in body.get("content", {}))
                parts.append(f"<p>Body: {e(body.get('description', ''))} Types: {types}.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def create_app(recognizer: "Recognizer", cfg: "ServeConfig | None" = None) -> "FastAPI":
    """A FastAPI app serving ``recognizer`` (loaded once by the caller) under the limits of ``cfg``."""
    fastapi = require("fastapi", "serve")
    require("multipart", "serve")  # python-multipart, for form uploads
    import anyio
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect

    from . import __version__
    from .plots import class_colors

    cfg = cfg or ServeConfig()
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    info = model_info(recognizer)
    lmap = recognizer.meta.get("latent_map") or {}
    model_doc = {
        **info,
        "classes": list(recognizer.classes),
        "sample_rate": recognizer.feature_config.sample_rate,
        "colors": class_colors(recognizer.classes),
        "latent_map": {"points": lmap.get("points", []), "labels": lmap.get("labels", [])},
        "metrics": _metrics_summary(recognizer.meta.get("metrics")),
        "limits": {"max_bytes": cfg.max_bytes, "max_seconds": cfg.max_seconds},
    }
    # this app's thread limiter and body budget, made on first use inside the event loop; uploads in flight
    state: dict = {"inflight": 0, "budget": ByteBudget(cfg.pending_bytes)}
    sessions = None
    if recognizer.meta.get("speaker_prior"):
        from .session import SessionConfig, open_store

        sessions = open_store(recognizer, cfg.session_store, SessionConfig(prior_weight=cfg.prior_weight),
                              cfg.session_ttl_s, cfg.max_sessions)
    client_rate, total_rate = RateLimit(cfg.new_sessions_per_min), RateLimit(cfg.new_sessions_per_min_total)

    app = fastapi.FastAPI(title="emovae", version=__version__, docs_url=None, redoc_url=None,
                          description="Speech emotion recognition: upload a clip, get its emotion.")
    app.add_middleware(OriginPolicy, allow_origins=cfg.allow_origins)
    app.state.sessions = sessions  # the adaptation sessions (a session.Store), None without an adapted head
    app.state.budget = state["budget"]

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: Exception):
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        got = f" after {exc.received} bytes" if isinstance(exc, ClientGone) else ""
        log.warning("%s aborted its upload to %s%s; nothing was kept", client, request.url.path, got)
        return error(400, "upload aborted by the client", {"Connection": "close"})  # read by nobody

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

    close = {"Connection": "close"}  # for answers given before the body was read: drop the connection

    def too_big() -> RequestError:
        return RequestError(413, f"upload larger than the {_mb(cfg.max_bytes)} limit; send a shorter clip "
                                 f"(at most {cfg.max_seconds:g} s) or a compressed format such as FLAC", close)

    def declared_length(request: Request, limit: int) -> int | None:
        """The Content-Length, None without one; RequestError 413 when over ``limit``."""
        length = request.headers.get("content-length")
        if length is None:
            return None
        try:
            n = int(length)
        except ValueError:
            raise RequestError(400, f"invalid Content-Length header {length[:40]!r}", close) from None
        if n < 0:
            raise RequestError(400, f"invalid Content-Length header {length[:40]!r}", close)
        if n > limit:
            raise too_big()
        return n

    def body_receiver(request: Request, limit: int):
        """``request``'s receive, bounded: RequestError 413 past ``limit`` bytes, 408 when the body is not in
        within cfg.body_timeout_s, ClientGone when the client disconnects before its end."""
        receive = request.receive
        deadline = time.monotonic() + cfg.body_timeout_s
        got = [0]

        async def bounded():
            try:
                with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise RequestError(408, f"the upload did not arrive within {cfg.body_timeout_s:g} s "
                                        f"({got[0]} bytes received); send it again on a faster link or "
                                        "as a shorter or compressed clip", close) from None
            if message["type"] == "http.disconnect":
                raise ClientGone(got[0])
            got[0] += len(message.get("body", b""))
            if got[0] > limit:
                raise too_big()
            return message

        return bounded

    async def drain(request: Request, limit: int) -> bool:
        """Read and drop the body of a request refused before its body was read, so that the client, still
        sending, gets the answer rather than a connection reset. False when it could not (a client waiting
        for 100-continue, a body over ``limit``, too slow or gone): then the connection is to be closed."""
        if "100-continue" in request.headers.get("expect", "").lower():
            return False
        receive = body_receiver(request, limit)
        try:
            while (await receive()).get("more_body", False):
                pass
        except (RequestError, ClientGone):
            return False
        return True

    async def refuse_unread(request: Request, limit: int, exc: RequestError) -> RequestError:
        """``exc`` for a request whose body was not read: drained, or with Connection: close."""
        if not await drain(request, limit):
            exc.headers = {**(exc.headers or {}), **close}
        return exc

    async def read_body(receive) -> bytes:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        chunks.clear()
        return data

    async def upload_from_form(request: Request, receive) -> tuple[bytes, str]:
        """The file of a multipart upload, parsed as it streams in (parts over 1 MB spool to disk)."""
        from starlette.datastructures import UploadFile
        from starlette.requests import Request as StarletteRequest

        try:
            form = await StarletteRequest(request.scope, receive).form(max_files=1, max_fields=8)
        except (RequestError, ClientGone):
            raise
        except Exception as exc:  # MultiPartException, malformed boundaries...
            raise RequestError(400, f"malformed multipart upload ({exc}); send the audio as field 'file'") from None
        try:
            up = form.get("file")
            if not isinstance(up, UploadFile):
                raise RequestError(400, "multipart upload without a file in field 'file'; send e.g. "
                                        "curl -F file=@clip.wav http://HOST/v1/predict")
            name = os.path.basename(up.filename or "") or "upload"
            if (up.size or 0) > cfg.max_bytes:
                raise RequestError(413, f"{name}: file larger than the {_mb(cfg.max_bytes)} limit")
            data = await up.read()
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

    def new_session_wait(client: str) -> float:
        return max(client_rate.wait_s(client), total_rate.wait_s("*"))

    def too_many_sessions(wait: float) -> RequestError:
        return RequestError(429, f"too many new sessions (at most {cfg.new_sessions_per_min:g} a minute per "
                                 f"client, {cfg.new_sessions_per_min_total:g} in all); retry in {wait:.0f} s or "
                                 "reuse your session id", {"Retry-After": str(max(1, math.ceil(wait)))})

    def open_session(sid: str, client: str):
        """The session ``sid`` for a clip that decoded and scored: an existing one, or a new one within the
        creation limits (RequestError 429 beyond them)."""
        if sessions.peek(sid) is None:
            wait = new_session_wait(client)
            if wait > 0 or client_rate.take(client) or total_rate.take("*"):
                raise too_many_sessions(max(wait, 1.0))
        return sessions.get(sid)

    def trim_when_idle() -> None:
        """Once no upload has been in flight for TRIM_AFTER_IDLE_S, hand freed heap memory back to the OS."""
        handle = state.pop("trim", None)
        if handle is not None:
            handle.cancel()

        def trim():
            state.pop("trim", None)
            if state["inflight"] == 0:
                gc.collect()  # failed requests leave cycles (exception, traceback, frames) holding their uploads
                malloc_trim()

        state["trim"] = asyncio.get_running_loop().call_later(TRIM_AFTER_IDLE_S, trim)

    @app.post("/v1/predict", summary="Emotion of one audio clip", openapi_extra=_openapi_body(cfg))
    async def predict(request: Request, session: str | None = None):
        """Returns ``emotion``, ``confidence``, ``probabilities`` by emotion, ``latent_map`` ([x, y] on the
        model's 2-D map of its training clips), ``duration_s`` and ``model_version``. With ``?session=ID``
        (or header X-Session-Id), the clip is one of a speaker's session: results adapt to the speaker as
        clips arrive (``adapted``, ``speaker_clips``); only running statistics are kept, never audio. A
        session is created only by a clip that succeeded, within a per-client rate (429 beyond). 429 with
        Retry-After also when the service holds as many uploads as it may."""
        sid = session or request.headers.get("x-session-id")
        client = request.client.host if request.client else "unknown"
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limit = cfg.max_bytes + (MULTIPART_OVERHEAD if ctype == MULTIPART else 0)
        if sid:
            session_store()
            session_id(sid)
            if sessions.peek(sid) is None and (wait := new_session_wait(client)) > 0:
                raise await refuse_unread(request, limit, too_many_sessions(wait))
        declared = declared_length(request, limit)
        reserve = limit if declared is None else declared
        budget = state["budget"]
        if not await budget.acquire(reserve, cfg.queue_timeout_s):
            raise await refuse_unread(request, limit, RequestError(
                429, f"busy: the service holds as many uploads as it may ({_mb(cfg.pending_bytes)}); "
                     "retry in a few seconds", {"Retry-After": str(RETRY_AFTER_BUSY_S)}))
        state["inflight"] += 1
        data = None
        try:
            receive = body_receiver(request, limit)
            if ctype == MULTIPART:
                data, name = await upload_from_form(request, receive)
            else:  # the body is the file, whatever it is labelled (curl --data-binary says form-urlencoded)
                data, name = await read_body(receive), "upload"
            if "limiter" not in state:
                state["limiter"] = anyio.CapacityLimiter(cfg.workers)
            opener = (lambda: open_session(sid, client)) if sid else None
            try:
                out = await anyio.to_thread.run_sync(decode_and_predict, recognizer, data, name, cfg, None, opener,
                                                     limiter=state["limiter"])
            except AudioError as exc:
                raise RequestError(audio_error_status(exc), str(exc)) from None
            except EmovaeError as exc:
                raise RequestError(422, str(exc)) from None
        finally:
            data = None
            budget.release(reserve)
            state["inflight"] -= 1
            if state["inflight"] == 0:
                trim_when_idle()
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

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        return HTMLResponse(state.get("docs") or state.setdefault("docs", docs_page(app.openapi())))

    return app


def header_timeout_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol with one more limit: a connection that has not sent a request's headers
    within ``header_timeout_s`` of opening (or of its previous response) is closed. uvicorn itself waits
    for headers forever. Falls back to plain "h11" when uvicorn's internals are not as expected."""
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError:  # pragma: no cover
        return "h11"

    class HeaderTimeoutH11(H11Protocol):
        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            cycle = getattr(self, "cycle", None)
            idle = cycle is None or getattr(cycle, "response_complete", True)
            if idle and not self.transport.is_closing():
                log.info("closed a connection from %s that sent no complete request headers within %g s",
                         "%s:%d" % self.client if self.client else "a client", header_timeout_s)
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

    return HeaderTimeoutH11


def release_large_buffers_at_once(threshold: int = 1 << 20) -> bool:
    """Make glibc serve every allocation of ``threshold`` bytes or more (an upload, decoded audio) by its own
    mmap, returned to the OS when freed, instead of letting its adaptive threshold keep them in the heap:
    after a burst of 64 x 10 MB uploads the server stayed ~150 MB above idle without this (and without the
    gc.collect() when idle), ~30 MB with both (benchmarks/results-load.md). Process-wide; False where there is
    no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


#: the environment variable that carries ``run``'s settings to the processes of ``run(processes=N)`` (JSON)
ENV_SETTINGS = "EMOVAE_SERVE_SETTINGS"


def shared_store(url: str | None) -> bool:
    """True when ``url`` names a session store that several processes share (Redis/Valkey, not memory)."""
    return bool(url) and url != "memory"


def _settings() -> dict:
    try:
        return json.loads(os.environ[ENV_SETTINGS])
    except (KeyError, ValueError) as exc:  # pragma: no cover - only run() starts these processes
        raise ParameterError(f"{ENV_SETTINGS} is missing or not JSON ({exc}): start the service with "
                             "'emovae serve --processes N'") from None


def app_from_env() -> "FastAPI":
    """uvicorn's app factory in each process of ``run(processes=N)``: the model and ``ServeConfig`` named by
    ``$EMOVAE_SERVE_SETTINGS``, loaded once per process."""
    from .runtime import Recognizer

    s = _settings()
    release_large_buffers_at_once()
    recognizer = Recognizer.load(s["model"], backend=s["backend"], abstain=s["abstain"])
    return create_app(recognizer, ServeConfig(**s["config"]))


def __getattr__(name: str):
    """``emovae.serve:HeaderTimeoutFromEnv``: ``header_timeout_protocol`` with the timeout of
    ``$EMOVAE_SERVE_SETTINGS``, for uvicorn's worker processes, which import their protocol by name."""
    if name == "HeaderTimeoutFromEnv":
        return header_timeout_protocol(float(_settings()["config"]["header_timeout_s"]))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(host: str = "127.0.0.1", port: int = 8000, model: str | os.PathLike | None = None,
        backend: str = "auto", cfg: ServeConfig | None = None, log_level: str = "info", abstain: bool = False,
        processes: int = 1) -> None:
    """Load ``model`` (default: the shipped one) once and serve it with uvicorn until interrupted.
    ``abstain``: answer "unknown" for clips the VAE flags as unlike the training speech. ``processes`` > 1:
    that many uvicorn worker processes on one port, each with its own model and ``cfg.workers`` prediction
    threads; they share adaptation sessions only through a store all of them reach, so ``cfg.session_store``
    must name one (ParameterError otherwise; the store is checked here before any process starts)."""
    uvicorn = require("uvicorn", "serve")
    from .runtime import Recognizer

    cfg = cfg or ServeConfig()
    if processes < 1:
        raise ParameterError(f"processes must be >= 1, got {processes}")
    if processes > 1 and not shared_store(cfg.session_store):
        raise ParameterError(f"--processes {processes}: each process would keep its own adaptation sessions, so a "
                             "speaker's clips would land in stores that never see each other; add --session-store "
                             "redis://HOST:6379/0 (a Redis or Valkey server all processes reach), or serve with "
                             "--processes 1")
    release_large_buffers_at_once()
    recognizer = Recognizer.load(model, backend=backend, abstain=abstain)
    app = create_app(recognizer, cfg)  # in the parent too: checks the model and that the store is reachable
    keep_alive = max(1, math.ceil(cfg.keep_alive_s))
    if processes == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level,
                    http=header_timeout_protocol(cfg.header_timeout_s), timeout_keep_alive=keep_alive)
        return
    del app, recognizer
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    config["allow_origins"] = list(cfg.allow_origins)
    os.environ[ENV_SETTINGS] = json.dumps({"model": None if model is None else str(Path(model).resolve()),
                                           "backend": backend, "abstain": abstain, "config": config})
    http = "emovae.serve:HeaderTimeoutFromEnv" if header_timeout_protocol(1.0) != "h11" else "h11"
    uvicorn.run("emovae.serve:app_from_env", factory=True, workers=processes, host=host, port=port,
                log_level=log_level, http=http, timeout_keep_alive=keep_alive)
