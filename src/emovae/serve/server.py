"""Serving an app with uvicorn: ``run`` (one process with a pool of feature processes, or ``processes``
uvicorn workers on one port sharing sessions through Redis), the app factory of those workers
(``app_from_env``), and an h11 protocol that closes connections which do not send their request headers in time
(uvicorn itself waits forever)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ParameterError, require
from .app import create_app
from .config import ServeConfig
from .limits import limit_malloc_arenas, release_large_buffers_at_once
from .policy import default_hosts
from .pool import FeaturePool, default_processes

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

log = logging.getLogger("emovae.serve")

#: the environment variable that carries ``run``'s settings to the processes of ``run(processes=N)`` (JSON)
ENV_SETTINGS = "EMOVAE_SERVE_SETTINGS"


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


def shared_store(url: str | None) -> bool:
    """True when ``url`` names a session store that several processes share (Redis/Valkey, not memory)."""
    return bool(url) and url != "memory"


def settings_from_env() -> dict:
    """``run``'s settings as it left them for its worker processes in ``$EMOVAE_SERVE_SETTINGS``."""
    try:
        return json.loads(os.environ[ENV_SETTINGS])
    except (KeyError, ValueError) as exc:  # pragma: no cover - only run() starts these processes
        raise ParameterError(f"{ENV_SETTINGS} is missing or not JSON ({exc}): start the service with "
                             "'emovae serve --processes N'") from None


def app_from_env() -> "FastAPI":
    """uvicorn's app factory in each process of ``run(processes=N)``: the model and ``ServeConfig`` named by
    ``$EMOVAE_SERVE_SETTINGS``, loaded once per process."""
    from ..runtime import Recognizer

    s = settings_from_env()
    release_large_buffers_at_once()
    limit_malloc_arenas()
    recognizer = Recognizer.load(s["model"], backend=s["backend"], abstain=s["abstain"])
    return create_app(recognizer, ServeConfig(**s["config"]))


def __getattr__(name: str):
    """``emovae.serve.server:HeaderTimeoutFromEnv``: ``header_timeout_protocol`` with the timeout of
    ``$EMOVAE_SERVE_SETTINGS``, for uvicorn's worker processes, which import their protocol by name."""
    if name == "HeaderTimeoutFromEnv":
        return header_timeout_protocol(float(settings_from_env()["config"]["header_timeout_s"]))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(host: str = "127.0.0.1", port: int = 8000, model: str | os.PathLike | None = None,
        backend: str = "auto", cfg: ServeConfig | None = None, log_level: str = "info", abstain: bool = False,
        processes: int = 1, feature_processes: int | None = None) -> None:
    """Load ``model`` (default: the shipped one) once and serve it with uvicorn until interrupted.
    ``abstain``: answer "unknown" for clips the VAE flags as unlike the training speech. ``processes`` > 1:
    that many uvicorn worker processes on one port, each with its own model and ``cfg.workers`` prediction
    threads; they share adaptation sessions only through a store all of them reach, so ``cfg.session_store``
    must name one (ParameterError otherwise; the store is checked here before any process starts). The Host
    names served are the localhost names, ``host`` when it is a name, and ``cfg.allow_hosts``.
    ``feature_processes`` (one service process only): worker processes that decode uploads and extract their
    features (``pool.FeaturePool``; None: one per core; 1: the prediction threads of the service process)."""
    uvicorn = require("uvicorn", "serve")
    from ..runtime import Recognizer

    cfg = cfg or ServeConfig()
    cfg = dataclasses.replace(cfg, allow_hosts=default_hosts(host) + tuple(cfg.allow_hosts or ()))
    if processes < 1:
        raise ParameterError(f"processes must be >= 1, got {processes}")
    if processes > 1 and not shared_store(cfg.session_store):
        raise ParameterError(f"--processes {processes}: each process would keep its own adaptation sessions, so a "
                             "speaker's clips would land in stores that never see each other; add --session-store "
                             "redis://HOST:6379/0 (a Redis or Valkey server all processes reach), or serve with "
                             "--processes 1")
    release_large_buffers_at_once()
    limit_malloc_arenas()
    recognizer = Recognizer.load(model, backend=backend, abstain=abstain)
    keep_alive = max(1, math.ceil(cfg.keep_alive_s))
    if processes == 1:
        n = default_processes() if feature_processes is None else feature_processes
        if n < 1:
            raise ParameterError(f"feature_processes must be >= 1, got {n}")
        pool = FeaturePool(recognizer.feature_job, cfg, n) if n > 1 else None  # its processes start in warm()
        try:
            app = create_app(recognizer, cfg, pool)  # checks the model and that the store is reachable
            if pool is not None:
                pool.warm()
            uvicorn.run(app, host=host, port=port, log_level=log_level,
                        http=header_timeout_protocol(cfg.header_timeout_s), timeout_keep_alive=keep_alive)
        finally:
            if pool is not None:
                pool.close()
        return
    app = create_app(recognizer, cfg)  # in the parent too: checks the model and that the store is reachable
    del app, recognizer
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    config["allow_origins"], config["allow_hosts"] = list(cfg.allow_origins), list(cfg.allow_hosts)
    os.environ[ENV_SETTINGS] = json.dumps({"model": None if model is None else str(Path(model).resolve()),
                                           "backend": backend, "abstain": abstain, "config": config})
    http = "emovae.serve.server:HeaderTimeoutFromEnv" if header_timeout_protocol(1.0) != "h11" else "h11"
    uvicorn.run("emovae.serve.server:app_from_env", factory=True, workers=processes, host=host, port=port,
                log_level=log_level, http=http, timeout_keep_alive=keep_alive)
