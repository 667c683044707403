"""The service's side of adaptation sessions (``?session=ID``): which ids are valid, and a session created only
by a clip that decoded and scored, within a rate per client address and in all (429 with Retry-After
beyond). The sessions themselves (moments only, never audio) are ``emovae.session``'s stores."""

from __future__ import annotations

import math
import re

from .config import ServeConfig
from .errors import RequestError
from .limits import RateLimit

SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class SessionGate:
    """The door to ``store`` (a ``session.Store``, None for a model without an adapted head) for the
    requests of one app."""

    def __init__(self, store, cfg: ServeConfig):
        self.store, self.cfg = store, cfg
        self.client_rate = RateLimit(cfg.new_sessions_per_min)
        self.total_rate = RateLimit(cfg.new_sessions_per_min_total)

    def require_store(self):
        """The store; RequestError 422 when the model cannot adapt."""
        if self.store is None:
            raise RequestError(422, "this model has no adapted head (trained by an older emovae): sessions are "
                                    "unavailable; retrain it with 'emovae train'")
        return self.store

    @staticmethod
    def check_id(sid: str) -> str:
        """``sid`` when it is a valid session id; RequestError 400 naming the rule otherwise."""
        if not SESSION_ID.fullmatch(sid):
            raise RequestError(400, f"invalid session id {sid[:40]!r}: use 1-128 letters, digits, '-', '_' or '.'")
        return sid

    def new_session_wait(self, client: str) -> float:
        """Seconds before ``client`` may create a session (0: now)."""
        return max(self.client_rate.wait_s(client), self.total_rate.wait_s("*"))

    def too_many(self, wait: float) -> RequestError:
        """429 for a client over the session creation rate, with Retry-After."""
        return RequestError(429, f"too many new sessions (at most {self.cfg.new_sessions_per_min:g} a minute per "
                                 f"client, {self.cfg.new_sessions_per_min_total:g} in all); retry in {wait:.0f} s or "
                                 "reuse your session id", {"Retry-After": str(max(1, math.ceil(wait)))})

    def open(self, sid: str, client: str):
        """The session ``sid`` for a clip that decoded and scored: an existing one, or a new one within the
        creation limits (RequestError 429 beyond them)."""
        if self.store.peek(sid) is None:
            wait = self.new_session_wait(client)
            if wait > 0 or self.client_rate.take(client) or self.total_rate.take("*"):
                raise self.too_many(max(wait, 1.0))
        return self.store.get(sid)
