"""The service's settings: one frozen :class:`ServeConfig`, checked when it is made, so that a bad limit fails at
start-up with its name rather than on the first request."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..audio import MAX_DECODED_BYTES
from ..errors import ParameterError
from ..speaker import PRIOR_WEIGHT
from .policy import normalize_host_pattern, normalize_origin

MULTIPART_OVERHEAD = 64 * 1024  # room for boundaries and part headers around an upload of max_bytes
PENDING_UPLOADS = 6  # default body budget: this many uploads of max_bytes held at once


@dataclass(frozen=True)
class ServeConfig:
    """Limits of the service. ``workers``: predictions that may run at once in the thread pool (with a
    ``pool.FeaturePool``, at least two per feature process).

    ``max_pending_bytes``: request bodies held in memory at once, all uploads together (each upload reserves
    its Content-Length, or its largest size when it has none, before its body is read); ``queue_timeout_s``:
    how long an upload waits for room before a 429. ``body_timeout_s``: the whole body must arrive within
    this many seconds of the handler starting to read it (408). ``header_timeout_s``: a connection that has
    not sent a request's headers within this many seconds is closed (``run`` only); ``keep_alive_s``: idle
    keep-alive connections are closed after this. ``new_sessions_per_min`` (per client address) and
    ``new_sessions_per_min_total``: adaptation sessions created at most, per minute (429 beyond).
    ``allow_origins``: origins (``https://host:port``, or ``*``) whose web pages may call the service; same
    origin is always allowed. ``allow_hosts``: host names (``svc.example``, ``*.example.com``, ``*``) the service
    answers to, a guard against DNS rebinding (400 for other names; IP addresses always pass); None checks
    only that the Host header is well formed (``create_app`` in tests and when embedded; ``run`` adds the
    localhost names and the bound name). ``max_decoded_bytes``: refuse a clip whose decoded samples (float32,
    every channel, as the header declares them) would take more memory than this.
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
    max_decoded_bytes: int = MAX_DECODED_BYTES  # 128 MiB, the bound of the CLI and the API too (audio.py)
    session_store: str | None = None  # None: sessions in this process; redis://HOST:6379/0: shared (session.py)
    allow_hosts: tuple[str, ...] | None = None

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
        if self.allow_hosts is not None:
            hosts = (self.allow_hosts,) if isinstance(self.allow_hosts, str) else self.allow_hosts
            object.__setattr__(self, "allow_hosts", tuple(dict.fromkeys(normalize_host_pattern(h) for h in hosts)))

    @property
    def pending_bytes(self) -> int:
        """The budget of request bodies held at once, in bytes."""
        if self.max_pending_bytes is not None:
            return self.max_pending_bytes
        return PENDING_UPLOADS * (self.max_bytes + MULTIPART_OVERHEAD)
