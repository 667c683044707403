"""The service's side of adaptation sessions (``?session=ID``): which ids are valid (400 otherwise), a session
created only by a clip that decoded and scored, within a rate per client address and in all (429 with
Retry-After beyond), and each clip counted once: a retry (the same request id, or else the same bytes) is
answered without moving the speaker's statistics. While the store is unreachable (Redis down), requests that
need it get 503 with Retry-After (``store_down``) and the others go on. The sessions themselves (moments
only, never audio) are ``emovae.session``'s stores."""

from __future__ import annotations

import math

from ..errors import ParameterError
from ..session import StoreUnavailable, check_session_id, clip_digest
from .config import ServeConfig
from .errors import RequestError
from .limits import RateLimit
from .predict import prediction_dict

#: request headers whose value names one clip, so that its retries count once (else the clip's bytes do)
REQUEST_ID_HEADERS = ("idempotency-key", "x-request-id")


def request_clip_key(headers) -> bytes | None:
    """The digest of the client's request id (Idempotency-Key, else X-Request-Id), None without one."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return clip_digest(value.strip().encode("utf-8", "surrogateescape"), kind="key")
    return None


def store_down(exc: StoreUnavailable) -> RequestError:
    """503 with Retry-After for a request that needs the session store while it is unreachable."""
    return RequestError(503, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})


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
        try:
            return check_session_id(sid)
        except ParameterError as exc:
            raise RequestError(400, str(exc)) from None

    def new_session_wait(self, client: str) -> float:
        """Seconds before ``client`` may create a session (0: now)."""
        return max(self.client_rate.wait_s(client), self.total_rate.wait_s("*"))

    def too_many(self, wait: float) -> RequestError:
        """429 for a client over the session creation rate, with Retry-After."""
        return RequestError(429, f"too many new sessions (at most {self.cfg.new_sessions_per_min:g} a minute per "
                                 f"client, {self.cfg.new_sessions_per_min_total:g} in all); retry in {wait:.0f} s or "
                                 "reuse your session id", {"Retry-After": str(max(1, math.ceil(wait)))})

    def admit(self, sid: str, client: str) -> None:
        """Let a clip that decoded and scored into session ``sid``: an existing one, or a new one within the
        creation limits (RequestError 429 beyond them)."""
        if self.store.peek(sid) is None:
            wait = self.new_session_wait(client)
            if wait > 0 or self.client_rate.take(client) or self.total_rate.take("*"):
                raise self.too_many(max(wait, 1.0))

    def describe(self, sid: str) -> dict:
        """``GET /v1/sessions/ID``: the clips session ``sid`` holds; RequestError 404 when there is none."""
        sess = self.require_store().peek(self.check_id(sid))
        n = 0 if sess is None else sess.n_clips
        if sess is None or n == 0:  # n == 0: expired between the two calls
            raise RequestError(404, f"no live session {sid!r} (never used, reset, or expired after "
                                    f"{self.cfg.session_ttl_s:g} s idle)")
        return {"session": sid, "clips": n, "adapted": n >= sess.cfg.min_clips}

    def forget(self, sid: str) -> dict:
        """``DELETE /v1/sessions/ID``: forget the speaker's statistics."""
        return {"session": sid, "deleted": self.require_store().delete(self.check_id(sid))}

    def store_status(self) -> str:
        """For /health, without touching the network: ``none`` (the model cannot adapt), ``in process``,
        ``reachable`` or ``unreachable`` (an external store in an outage)."""
        if self.store is None:
            return "none"
        outage = getattr(self.store, "outage", None)
        if outage is None:
            return "in process"
        return "unreachable" if outage.down else "reachable"

    def predict(self, sid: str, client: str, f, name: str, clip: bytes) -> dict:
        """The answer for clip ``f`` (features) of digest ``clip`` in session ``sid``: the adapted prediction,
        ``session_clips`` (the distinct clips the session holds) and ``repeated`` (True when the session had
        already counted this clip: answered again, statistics unchanged)."""
        self.admit(sid, client)
        pred, counted = self.store.predict(sid, f, name, clip)
        out = prediction_dict(pred)
        out["session"], out["session_clips"], out["repeated"] = sid, pred.speaker_clips, not counted
        return out
