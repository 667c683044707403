"""HTTP service and its web page: ``POST /v1/predict`` turns an uploaded clip into an emotion.

``create_app(recognizer, cfg)`` builds a FastAPI app around a :class:`~emovae.runtime.Recognizer` that the
caller loaded once; ``run()`` loads the model and serves it with uvicorn on 127.0.0.1. fastapi, uvicorn and
python-multipart come with the ``serve`` extra and are imported only when used.

Endpoints: ``POST /v1/predict`` (multipart field ``file``, or the raw file as the body), ``GET /v1/model``
(classes, the shipped 2-D latent map, metrics), ``GET``/``DELETE /v1/sessions/ID``, ``GET /health``, ``GET /``
(the page), ``GET /docs`` (a self-contained API reference) and ``GET /openapi.json``. Every error is JSON
``{"error": "..."}`` with a 4xx status that says what was wrong and how to fix it.

Bounds (all in :class:`ServeConfig`): one upload at most ``max_bytes`` (413); the bodies held in memory at
once at most ``max_pending_bytes``: an upload that finds no room waits up to ``queue_timeout_s`` without its
body being read, then gets 429 with Retry-After; a body must arrive within ``body_timeout_s`` (408) and
request headers within ``header_timeout_s`` (the connection is closed); an adaptation session is created
only by a request that succeeded, at most ``new_sessions_per_min`` per client address and
``new_sessions_per_min_total`` in all (429 with Retry-After beyond); cross-origin requests are refused
(403) unless their origin is in ``allow_origins``; an upload the client aborts is logged in one line.

The parts, each readable alone: ``config`` (ServeConfig), ``policy`` (Origin/Host headers, CORS), ``limits``
(body budget, rate limits, memory), ``upload`` (reading a body within the limits), ``predict`` (bytes -> answer),
``sessions`` (session ids and their creation rate), ``docs`` (the API reference), ``app`` (``create_app``: the
routes) and ``server`` (uvicorn: ``run``).
"""

from .app import create_app
from .config import MULTIPART_OVERHEAD, ServeConfig
from .errors import ClientGone, RequestError
from .limits import ByteBudget, DecodeBudget, RateLimit, limit_malloc_arenas, malloc_trim, release_large_buffers_at_once
from .policy import OriginPolicy, normalize_origin, same_origin
from .predict import audio_error_status, decode, decode_and_predict, probe, probe_seconds
from .server import ENV_SETTINGS, app_from_env, header_timeout_protocol, run, shared_store

__all__ = ["ServeConfig", "create_app", "run", "app_from_env", "header_timeout_protocol", "shared_store",
           "ENV_SETTINGS", "MULTIPART_OVERHEAD", "ByteBudget", "DecodeBudget", "RateLimit", "malloc_trim",
           "release_large_buffers_at_once", "limit_malloc_arenas", "OriginPolicy", "normalize_origin", "same_origin",
           "RequestError", "ClientGone", "audio_error_status", "decode", "decode_and_predict", "probe", "probe_seconds"]
