"""``create_app``: the FastAPI app around one loaded ``Recognizer``, its routes and how each failure is
answered (JSON ``{"error": ...}`` with a 4xx that names the fix; 500 only for a bug, without a traceback in
the answer). Every app carries its own recognizer, limits, body budget and thread limiter: nothing lives at
module level."""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations (Request, imported
# inside create_app) at runtime.
import asyncio
import contextlib
import gc
import logging
import time
from typing import TYPE_CHECKING

from ..errors import AudioError, EmovaeError, require
from ..session import SessionConfig, StoreUnavailable, clip_digest, open_store
from .config import MULTIPART_OVERHEAD, ServeConfig
from .docs import MULTIPART, docs_page, openapi_body
from .errors import ClientGone, RequestError, size_text
from .limits import ByteBudget, DecodeBudget, malloc_trim
from .page import ASSETS, DOCS_CSP, PAGE_CSP, SecurityHeaders, read_page
from .policy import HostPolicy, OriginPolicy
from .predict import DECODE_COPIES, audio_error_status, decode_and_predict, model_document, model_info
from .sessions import SessionGate, request_clip_key, store_down
from .upload import body_receiver, declared_length, read_body, refuse_unread, upload_from_form

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from ..runtime import Recognizer
    from .pool import FeaturePool

RETRY_AFTER_BUSY_S = 5  # Retry-After sent when the upload budget stays full for queue_timeout_s
TRIM_AFTER_IDLE_S = 0.5  # memory handed back to the OS this long after the last upload finished
log = logging.getLogger("emovae.serve")


def error_answer(status: int, message: str, headers: dict | None = None):
    """The JSON answer ``{"error": message}`` every failure gets."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def add_error_handlers(app) -> None:
    """How ``app`` answers each failure: a RequestError with its status; an aborted upload with one log line;
    the session store down with 503 (the store logs the outage once); an unknown path with 404 naming /docs;
    anything else, a bug, with 500 and no traceback in the answer."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error_answer(exc.status, exc.message, exc.headers)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: Exception):
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        got = f" after {exc.received} bytes" if isinstance(exc, ClientGone) else ""
        log.warning("%s aborted its upload to %s%s; nothing was kept", client, request.scope["path"], got)
        return error_answer(400, "upload aborted by the client", {"Connection": "close"})  # read by nobody

    @app.exception_handler(StoreUnavailable)
    async def session_store_down(request: Request, exc: StoreUnavailable):  # logged once per outage by the store
        down = store_down(exc)
        return error_answer(down.status, down.message, down.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return error_answer(404, f"no such endpoint {request.scope['path'][:200]}; see /docs for the API")
        return error_answer(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_answer(422, f"invalid request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug, not the client's fault
        return error_answer(500, f"internal error ({type(exc).__name__}); please report it with the file that "
                                 "caused it")


def create_app(recognizer: "Recognizer", cfg: "ServeConfig | None" = None, pool: "FeaturePool | None" = None
               ) -> "FastAPI":
    """A FastAPI app serving ``recognizer`` (loaded once by the caller) under the limits of ``cfg``; ``pool``:
    worker processes that decode uploads and extract their features (``serve.pool``; None: the prediction
    threads of this process do it), closed when the app shuts down."""
    fastapi = require("fastapi", "serve")
    require("multipart", "serve")  # python-multipart, for form uploads
    import anyio
    from fastapi import Request
    from fastapi.responses import HTMLResponse, Response

    from .. import __version__

    cfg = cfg or ServeConfig()
    page = read_page()
    info = model_info(recognizer)
    model_doc = model_document(recognizer, cfg)
    # this app's thread limiter and body budget, made on first use inside the event loop; uploads in flight
    state: dict = {"inflight": 0, "budget": ByteBudget(cfg.pending_bytes)}
    decoding = DecodeBudget(DECODE_COPIES * cfg.max_decoded_bytes)  # one clip of the largest size at a time
    sessions = None
    if recognizer.meta.get("speaker_prior"):
        sessions = open_store(recognizer, cfg.session_store, SessionConfig(prior_weight=cfg.prior_weight),
                              cfg.session_ttl_s, cfg.max_sessions)
    gate = SessionGate(sessions, cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if pool is not None:  # uvicorn then ends the process by the signal it caught: no code after it runs
            await anyio.to_thread.run_sync(pool.close)

    app = fastapi.FastAPI(title="emovae", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                          description="Speech emotion recognition: upload a clip, get its emotion.")
    # the last added runs first: the security headers on every answer (refusals too), then the Host check (a
    # DNS-rebinding page would otherwise pass as same-origin), then the CORS policy
    app.add_middleware(OriginPolicy, allow_origins=cfg.allow_origins)
    app.add_middleware(HostPolicy, allow_hosts=cfg.allow_hosts)
    app.add_middleware(SecurityHeaders)
    app.state.sessions = sessions  # the adaptation sessions (a session.Store), None without an adapted head
    app.state.budget = state["budget"]
    app.state.decoding = decoding

    add_error_handlers(app)

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

    def predict_clip(data: bytes, name: str, sid: str | None, client: str, key: bytes | None):
        """In a worker thread: (the answer, None), or (None, the RequestError to send) for one upload, through
        session ``sid`` when given, where the clip counts once (its identity: the client's request id ``key``,
        else the digest of its bytes). A failure comes back as a value made after its exception is gone: the
        exception's traceback holds the frames that hold the upload and its decoded samples, and through the
        thread pool's future and the event loop's task it forms cycles that only a full garbage collection
        frees, so that each failed upload stayed in memory, beyond the body budget, until the service idled."""
        try:
            if not sid:
                return decode_and_predict(recognizer, data, name, cfg, budget=decoding, pool=pool), None
            clip = key or clip_digest(data)
            return decode_and_predict(recognizer, data, name, cfg, lambda f: gate.predict(sid, client, f, name, clip),
                                      decoding, pool), None
        except AudioError as exc:
            failure = (audio_error_status(exc), str(exc), None)
        except RequestError as exc:
            failure = (exc.status, exc.message, exc.headers)
        except StoreUnavailable as exc:
            down = store_down(exc)
            failure = (down.status, down.message, down.headers)
        except EmovaeError as exc:
            failure = (422, str(exc), None)
        return None, RequestError(*failure)

    @app.post("/v1/predict", summary="Emotion of one audio clip", openapi_extra=openapi_body(cfg))
    async def predict(request: Request, session: str | None = None):
        """Returns ``emotion``, ``confidence``, ``probabilities`` by emotion, ``arousal`` (-1 calm .. 1 activated)
        and ``valence`` (-1 unpleasant .. 1 pleasant; both absent for a model without those heads and for a clip
        that is not speech), ``latent_map`` ([x, y] on the model's 2-D map of its training clips), ``duration_s``
        and ``model_version``. With ``?session=ID``
        (or header X-Session-Id), the clip is one of a speaker's session: results adapt to the speaker as
        clips arrive (``adapted``, ``speaker_clips``); only running statistics are kept, never audio. A
        session counts each clip once (``session_clips``: the distinct clips it holds; ``repeated``: this clip
        had been counted already): a retry with the same Idempotency-Key or X-Request-Id header, or without
        one the same bytes, does not move the speaker's statistics. A session is created only by a clip that
        succeeded, within a per-client rate (429 beyond). 429 with Retry-After also when the service holds as
        many uploads as it may; 503 with Retry-After when the session store (Redis) is unreachable."""
        began = time.monotonic()
        sid = session or request.headers.get("x-session-id")
        client = request.client.host if request.client else "unknown"
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limit = cfg.max_bytes + (MULTIPART_OVERHEAD if ctype == MULTIPART else 0)
        if sid:
            gate.require_store()
            gate.check_id(sid)
            try:  # in a thread: an external store is a network call
                known = await anyio.to_thread.run_sync(sessions.peek, sid) is not None
            except StoreUnavailable as exc:
                raise await refuse_unread(request, limit, cfg, store_down(exc), began) from None
            if not known and (wait := gate.new_session_wait(client)) > 0:
                raise await refuse_unread(request, limit, cfg, gate.too_many(wait), began)
        declared = declared_length(request, limit, cfg)
        reserve = limit if declared is None else declared
        budget = state["budget"]
        if not await budget.acquire(reserve, cfg.queue_timeout_s):
            raise await refuse_unread(request, limit, cfg, RequestError(
                429, f"busy: the service holds as many uploads as it may ({size_text(cfg.pending_bytes)}); "
                     "retry in a few seconds", {"Retry-After": str(RETRY_AFTER_BUSY_S)}), began)
        state["inflight"] += 1
        data = None
        try:
            receive = body_receiver(request, limit, cfg)
            if ctype == MULTIPART:
                data, name = await upload_from_form(request, receive, cfg)
            else:  # the body is the file, whatever it is labelled (curl --data-binary says form-urlencoded)
                data, name = await read_body(receive), "upload"
            if "limiter" not in state:  # with a pool, enough threads to keep its processes fed
                state["limiter"] = anyio.CapacityLimiter(max(cfg.workers, 2 * pool.processes if pool else 0))
            out, failure = await anyio.to_thread.run_sync(predict_clip, data, name, sid, client,
                                                          request_clip_key(request.headers), limiter=state["limiter"])
            if failure is not None:
                raise failure
        finally:
            data = None
            budget.release(reserve)
            state["inflight"] -= 1
            if state["inflight"] == 0:
                trim_when_idle()
        out["model_version"] = info
        return out

    @app.get("/v1/sessions/{sid}", summary="How many clips an adaptation session holds")
    async def get_session(sid: str):
        return await anyio.to_thread.run_sync(gate.describe, sid)

    @app.delete("/v1/sessions/{sid}", summary="Reset a session: forget the speaker's statistics")
    async def delete_session(sid: str):
        return await anyio.to_thread.run_sync(gate.forget, sid)

    @app.get("/v1/model", summary="Classes, 2-D latent map of the training clips, metrics")
    async def model():
        return model_doc

    @app.get("/health", summary="Liveness, the loaded model and the session store")
    async def health():
        """``status`` is ``ok`` while the service answers, even with its session store down (``session_store``:
        ``unreachable``): predictions without a session still work, so a load balancer should keep it."""
        return {"status": "ok", **info, "classes": list(recognizer.classes), "session_store": gate.store_status()}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page["index.html"], headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/app.js", include_in_schema=False)
    @app.get("/app.css", include_in_schema=False)
    async def asset(request: Request):
        name = request.scope["path"].rsplit("/", 1)[-1]
        return Response(page[name], media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        html = state.get("docs") or state.setdefault("docs", docs_page(app.openapi()))
        return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP})

    return app
