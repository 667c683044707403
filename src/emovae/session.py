"""Sessions: recognition that improves as a speaker keeps talking, clip by clip (``Session``), for a batch of
clips grouped by speaker (``predict_by_speaker``), and sessions by id for a service: in this process
(``SessionStore``, the default) or in Redis/Valkey shared by several processes (``RedisSessionStore``), both
behind one small interface (``Store``: ``get``, ``peek``, ``delete``, ``len``, and the atomic ``observe`` and
``predict``).

A session counts each clip once: ``observe_once`` and ``Store.predict`` take a digest of the clip (``clip_digest``
of its bytes, or of a client's request id) and a clip among the session's last ``RECENT_CLIPS`` is answered
again without moving the speaker's statistics, so a client that retries does not shift them. Session ids are
checked by ``check_session_id`` (letters, digits, '-', '_', '.'; no id of dots alone).

An external store can go away: while Redis is unreachable every call raises ``StoreUnavailable`` (an
``EmovaeError`` with ``retry_after_s``) at once, without waiting on the network again, until a probe every
``OUTAGE_RETRY_S`` finds it back; the outage is logged in one line when it starts and one when it ends.

The arithmetic (running moments from the model's prior, the trust n / (n + prior_weight) in the adapted head)
is ``speaker.py``'s. A session's first clip scores exactly as a lone clip. Only the moments are kept, never
audio. torch-free: works with either backend of ``runtime.Recognizer``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict

import numpy as np

from .errors import EmovaeError, ParameterError
from .features import Features
from .speaker import RunningMoments, SessionConfig, model_prior

__all__ = ["Session", "SessionConfig", "Store", "SessionStore", "RedisSessionStore", "open_store",
           "predict_by_speaker", "check_session_id", "clip_digest", "StoreUnavailable", "Outage"]

SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DIGEST_BYTES = 16  # a clip's digest: 128 bits of BLAKE2b
RECENT_CLIPS = 128  # digests a session keeps to recognise a clip sent again (2 kB a session)
OUTAGE_RETRY_S = 2.0  # while a store is unreachable, it is tried again this often (the others fail at once)
log = logging.getLogger("emovae.session")


def check_session_id(sid: str) -> str:
    """``sid`` when it is a valid session id: 1-128 letters, digits, '-', '_' or '.', starting with a letter or
    digit (so never ``.``, ``..`` or a hidden name, whatever a store makes of it); ParameterError otherwise."""
    if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid):
        raise ParameterError(f"invalid session id {str(sid)[:40]!r}: use 1-128 letters, digits, '-', '_' or '.', "
                             "starting with a letter or digit (e.g. speaker-42)")
    return sid


def clip_digest(data: bytes, kind: str = "clip") -> bytes:
    """A clip's identity within a session: the digest of its bytes (``kind="clip"``) or of a client's request id
    (``kind="key"``, e.g. an Idempotency-Key header)."""
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES, person=kind.encode()[:16]).digest()


def seen_before(recent: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is among ``recent`` (digests of DIGEST_BYTES, end to end)."""
    return any(recent[i:i + DIGEST_BYTES] == digest for i in range(0, len(recent), DIGEST_BYTES))


def remember(recent: bytes, digest: bytes, keep: int = RECENT_CLIPS) -> bytes:
    """``recent`` with ``digest`` added, the oldest dropped beyond ``keep`` digests."""
    return (recent + digest)[-keep * DIGEST_BYTES:]


def adapted_prediction(recognizer, cfg: SessionConfig, f: Features, name, moments, n: int):
    """The prediction of clip ``f`` through a session whose moments (None below ``min_clips``) hold ``n`` clips."""
    return recognizer.predict_features([f], [name], moments=moments, speaker_clips=n, trust=cfg.trust(n))[0]


class Session:
    """One speaker's session over a ``runtime.Recognizer``: every clip predicted through it also updates the
    speaker's moments. Thread-safe; holds only the moments."""

    def __init__(self, recognizer, cfg: SessionConfig | None = None):
        self.recognizer = recognizer
        self.cfg = cfg or SessionConfig()
        self.moments = RunningMoments(*model_prior(recognizer.meta, recognizer.source), self.cfg.prior_weight)
        self.recent = b""  # digests of the clips counted last (see observe_once)
        self._lock = threading.Lock()

    @property
    def n_clips(self) -> int:
        return self.moments.n

    def reset(self) -> None:
        """Forget the speaker: back to the prior."""
        with self._lock:
            self.moments.reset()
            self.recent = b""

    def observe(self, f: Features) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
        """Add a clip's statistics; returns the moments to normalise it with (None while fewer than
        ``min_clips`` clips are in) and the number of clips they hold."""
        return self.observe_stats(f.stats)

    def observe_stats(self, stats: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
        """``observe`` on a clip's statistic vector (S,)."""
        return self.observe_once(stats)[:2]

    def observe_once(self, stats: np.ndarray, clip: bytes | None = None):
        """``observe_stats``, but a clip whose digest ``clip`` is among the session's last ``RECENT_CLIPS`` is not
        counted again: returns (moments, clips held, whether this clip was counted now)."""
        stats = np.asarray(stats, dtype=np.float64)
        with self._lock:
            counted = clip is None or not seen_before(self.recent, clip)
            if counted:
                self.moments.update(stats)
                if clip is not None:
                    self.recent = remember(self.recent, clip)
            n = self.moments.n
            return (self.moments.estimate() if n >= self.cfg.min_clips else None), n, counted

    def predict_features(self, f: Features, name: str | None = None):
        moments, n = self.observe(f)
        return adapted_prediction(self.recognizer, self.cfg, f, name, moments, n)

    def predict_signal(self, signal: np.ndarray, sr: int, name: str | None = None):
        """Prediction of one clip of this speaker (mono or (samples, channels) at ``sr`` Hz)."""
        return self.predict_features(self.recognizer.features(signal, sr, name or "<signal>"), name)

    def predict_file(self, path: str | os.PathLike):
        from . import audio

        cfg = self.recognizer.feature_config
        y = audio.load(path, cfg.sample_rate, min_duration=cfg.min_duration)
        return self.predict_signal(y, cfg.sample_rate, str(path))

    def predict_proba(self, signal: np.ndarray, sr: int) -> np.ndarray:
        """Probabilities (len(classes),) of one clip, in ``recognizer.classes`` order."""
        p = self.predict_signal(signal, sr)
        return np.array([p.probabilities[c] for c in self.recognizer.classes])


def predict_by_speaker(recognizer, X: list[Features], speakers, names=None, cfg: SessionConfig | None = None):
    """Batch adaptation: each clip is normalised with the moments of all clips of its speaker (pooled with the
    prior), so the order of clips does not matter (``Recognizer.predict_by_speaker``)."""
    return recognizer.predict_by_speaker(X, speakers, names, cfg)


class Store:
    """Sessions by id for a service. ``get(sid)``: the session (created if new or expired; an external store
    creates it with its first clip); ``peek(sid)``: the live session or None, creating nothing; ``delete(sid)``:
    False when there was none; ``len(store)``: live sessions; ``observe(sid, stats)``: atomically add one clip's
    statistics to session ``sid`` (created if new) and return (moments to normalise the clip with, or None
    below ``min_clips``; clips the session holds now); ``observe_once(sid, stats, clip)``: the same, counting a
    clip of digest ``clip`` once (returns a third item: whether it was counted now); ``predict(sid, f, name,
    clip)``: the clip's prediction through the session, and whether it was counted. Every method checks ``sid``
    (ParameterError). Sessions hold moments only, never audio."""

    recognizer = None
    cfg: SessionConfig

    def get(self, sid: str):
        raise NotImplementedError

    def peek(self, sid: str):
        raise NotImplementedError

    def delete(self, sid: str) -> bool:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def observe_once(self, sid: str, stats: np.ndarray, clip: bytes | None = None):
        raise NotImplementedError

    def observe(self, sid: str, stats: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
        return self.observe_once(sid, stats)[:2]

    def predict(self, sid: str, f: Features, name: str | None = None, clip: bytes | None = None):
        """(prediction of clip ``f`` through session ``sid``, whether the clip was counted now: False for a clip
        of digest ``clip`` the session had already counted, which is answered without moving its statistics)."""
        moments, n, counted = self.observe_once(sid, f.stats, clip)
        return adapted_prediction(self.recognizer, self.cfg, f, name, moments, n), counted


class SessionStore(Store):
    """Sessions by id for a service, in this process: created on first use, dropped after ``ttl_s`` idle seconds,
    at most ``max_sessions`` (the least recently used goes first). Memory: one pair of (S,) vectors and the
    digests of the last RECENT_CLIPS clips (2 kB) per session."""

    def __init__(self, recognizer, cfg: SessionConfig | None = None, ttl_s: float = 1800.0,
                 max_sessions: int = 10000, clock=time.monotonic):
        if ttl_s <= 0 or max_sessions < 1:
            raise ParameterError("SessionStore: ttl_s must be > 0 and max_sessions >= 1")
        model_prior(recognizer.meta, recognizer.source)  # a model without an adapted head fails now, not later
        self.recognizer, self.cfg = recognizer, cfg or SessionConfig()
        self.ttl_s, self.max_sessions = ttl_s, max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[Session, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._sessions:
            sid, (_, last) = next(iter(self._sessions.items()))
            if now - last <= self.ttl_s and len(self._sessions) <= self.max_sessions:
                break
            del self._sessions[sid]

    def get(self, sid: str) -> Session:
        """The session ``sid``, created if new or expired; marks it used now."""
        check_session_id(sid)
        with self._lock:
            now = self._clock()
            self._expire(now)
            s = self._sessions.pop(sid, (None, 0.0))[0] or Session(self.recognizer, self.cfg)
            self._sessions[sid] = (s, now)
            self._expire(now)
            return s

    def peek(self, sid: str) -> Session | None:
        """The live session ``sid`` without creating or touching it."""
        check_session_id(sid)
        with self._lock:
            self._expire(self._clock())
            item = self._sessions.get(sid)
            return item[0] if item else None

    def delete(self, sid: str) -> bool:
        """Forget session ``sid``; False when there was none."""
        check_session_id(sid)
        with self._lock:
            return self._sessions.pop(sid, None) is not None

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._sessions)

    def observe_once(self, sid: str, stats: np.ndarray, clip: bytes | None = None):
        return self.get(sid).observe_once(stats, clip)


class StoredSession(Session):
    """A session whose moments live in an external store (``RedisSessionStore``): each clip is one atomic
    update there, so several processes may serve one speaker."""

    def __init__(self, store: "RedisSessionStore", sid: str):
        self.recognizer, self.cfg, self.store, self.sid = store.recognizer, store.cfg, store, sid

    @property
    def n_clips(self) -> int:
        return self.store.clips(self.sid)

    @property
    def moments(self) -> RunningMoments:
        """A copy of the stored moments (changing it changes nothing in the store)."""
        return self.store.moments(self.sid)

    def reset(self) -> None:
        self.store.delete(self.sid)

    def observe_once(self, stats: np.ndarray, clip: bytes | None = None):
        return self.store.observe_once(self.sid, stats, clip)


class StoreUnavailable(EmovaeError):
    """The session store cannot be reached just now; ``retry_after_s``: when it will be tried again."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def redacted(url: str) -> str:
    """``url`` without a password, for logs and messages: ``redis://:secret@host`` -> ``redis://***@host``."""
    return re.sub(r"(?<=://)[^/@]*@", "***@", url)


class Outage:
    """A circuit breaker for calls to a store named ``name``: the first call that fails with one of ``errors``
    logs one warning and opens it; while open, calls raise ``StoreUnavailable`` at once, except one probe every
    ``retry_s`` seconds that goes through; the first call begun since then that succeeds closes it and logs one
    line. So an outage costs one log line each way, no traceback, and requests do not queue behind network
    timeouts. Thread-safe."""

    def __init__(self, name: str, errors: tuple[type[BaseException], ...], retry_s: float = OUTAGE_RETRY_S,
                 clock=time.monotonic):
        self.name, self.errors, self.retry_s, self._clock = name, errors, retry_s, clock
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.refused = 0  # calls refused in the current outage
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def unavailable(self, now: float) -> StoreUnavailable:
        self.refused += 1
        wait = max(1.0, self.retry_at - now)
        return StoreUnavailable(f"the session store is unreachable just now; retry in {math.ceil(wait)} s, or send "
                                "the clip without a session id for an answer not adapted to the speaker", wait)

    def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, or StoreUnavailable when the store is (found) down."""
        with self._lock:
            now = self._clock()
            if self.down:
                if now < self.retry_at:
                    raise self.unavailable(now)
                self.retry_at = now + self.retry_s  # this call probes; the others keep failing fast meanwhile
        started = self._clock()
        try:
            result = fn(*args, **kwargs)
        except self.errors as exc:
            with self._lock:
                now = self._clock()
                if not self.down:
                    self.down_since, self.refused = now, 0
                    log.warning("session store %s is unreachable (%s: %s); requests with a session get 503 until "
                                "it is back (tried every %g s)", self.name, type(exc).__name__,
                                str(exc)[:200], self.retry_s)
                self.retry_at = now + self.retry_s
                raise self.unavailable(now) from None
        if self.down:
            with self._lock:  # a call begun before the outage may end well after it began: it proves nothing
                if self.down and started >= self.down_since:
                    log.warning("session store %s is back after %.1f s (%d requests with a session got 503 "
                                "meanwhile)", self.name, self._clock() - self.down_since, self.refused)
                    self.down_since = None
        return result


class RedisSessionStore(Store):
    """Sessions in Redis (or Valkey), shared by every process that points at the same server: each session is
    one hash (``n``; ``mean`` and ``m2`` as float64 bytes; ``recent``: the digests of the last clips counted;
    moments and digests only, never audio) whose TTL the server keeps
    (``ttl_s`` idle seconds, renewed by each clip). A clip's update is atomic (WATCH/MULTI, retried on a
    conflict), so two processes updating one speaker at once lose no clip. Keys are ``prefix`` + a fingerprint
    of the model's prior + the session id, so models never share moments. ``max_sessions`` is not enforced
    here: the server's ``maxmemory`` (with ``volatile-lru``) bounds it. The server must be reachable when the
    store is made (EmovaeError otherwise); later, while it is not, every call raises ``StoreUnavailable`` (see
    ``Outage``) and the store recovers by itself when the server returns. Needs redis-py (``emovae[scale]``)."""

    def __init__(self, recognizer, url_or_client, cfg: SessionConfig | None = None, ttl_s: float = 1800.0,
                 prefix: str = "emovae:session:"):
        import hashlib

        from .errors import EmovaeError, require

        if ttl_s <= 0:
            raise ParameterError("RedisSessionStore: ttl_s must be > 0")
        self.prior = model_prior(recognizer.meta, recognizer.source)
        self.recognizer, self.cfg, self.ttl_ms = recognizer, cfg or SessionConfig(), max(1, int(ttl_s * 1000))
        self.ttl_s = ttl_s
        fingerprint = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in self.prior)).hexdigest()[:12]
        self.prefix = f"{prefix}{fingerprint}:"
        if isinstance(url_or_client, str):
            redis = require("redis", "scale")
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self.url = redacted(url_or_client)
            try:  # one immediate retry, on a fresh connection (those in the pool die when the server restarts);
                # redis-py's default, 10 retries with backoff, would hold each request for seconds in an outage.
                # A session's commands take a millisecond: 2 s without an answer is a server that hangs
                self.client = redis.Redis.from_url(url_or_client, socket_timeout=2, socket_connect_timeout=2,
                                                   retry=Retry(NoBackoff(), 1))
            except ValueError as exc:
                raise ParameterError(f"session store {self.url!r}: {exc}") from None
        else:
            self.client, self.url = url_or_client, repr(url_or_client)
        try:
            self.client.ping()
        except Exception as exc:  # noqa: BLE001 - redis's ConnectionError and friends
            raise EmovaeError(f"session store {self.url}: cannot reach it ({exc}); start redis-server or fix "
                              "--session-store") from None
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.outage = Outage(self.url, (RedisConnectionError, RedisTimeoutError, OSError))

    def _key(self, sid: str) -> str:
        return self.prefix + check_session_id(sid)

    def _load(self, fields: dict) -> RunningMoments:
        m = RunningMoments(*self.prior, self.cfg.prior_weight)
        if fields:
            mean = np.frombuffer(fields[b"mean"], dtype=np.float64)
            if mean.shape == m.mean.shape:  # else: written by another model; start again
                m.n, m.mean = int(fields[b"n"]), mean.copy()
                m.m2 = np.frombuffer(fields[b"m2"], dtype=np.float64).copy()
        return m

    def observe_once(self, sid: str, stats: np.ndarray, clip: bytes | None = None):
        key = self._key(sid)
        return self.outage.call(self._observe_once, key, np.asarray(stats, dtype=np.float64), clip)

    def _observe_once(self, key: str, stats: np.ndarray, clip: bytes | None):
        from redis.exceptions import WatchError

        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    fields = pipe.hgetall(key)
                    m, recent = self._load(fields), fields.get(b"recent", b"")
                    counted = clip is None or not seen_before(recent, clip)
                    pipe.multi()
                    if counted:
                        m.update(stats)
                        update = {"n": m.n, "mean": m.mean.tobytes(), "m2": m.m2.tobytes()}
                        if clip is not None:
                            update["recent"] = remember(recent, clip)
                        pipe.hset(key, mapping=update)
                    pipe.pexpire(key, self.ttl_ms)
                    pipe.execute()
                    break
                except WatchError:  # another process updated this session meanwhile: read it again
                    continue
        return (m.estimate() if m.n >= self.cfg.min_clips else None), m.n, counted

    def moments(self, sid: str) -> RunningMoments:
        return self._load(self.outage.call(self.client.hgetall, self._key(sid)))

    def clips(self, sid: str) -> int:
        n = self.outage.call(self.client.hget, self._key(sid), "n")
        return int(n) if n is not None else 0

    def get(self, sid: str) -> StoredSession:
        self.outage.call(self.client.pexpire, self._key(sid), self.ttl_ms)  # marks a live session used; creates none
        return StoredSession(self, sid)

    def peek(self, sid: str) -> StoredSession | None:
        return StoredSession(self, sid) if self.outage.call(self.client.exists, self._key(sid)) else None

    def delete(self, sid: str) -> bool:
        return bool(self.outage.call(self.client.delete, self._key(sid)))

    def __len__(self) -> int:
        return self.outage.call(lambda: sum(1 for _ in self.client.scan_iter(match=self.prefix + "*", count=1000)))


def open_store(recognizer, url: str | None = None, cfg: SessionConfig | None = None, ttl_s: float = 1800.0,
               max_sessions: int = 10000) -> Store:
    """The session store ``url`` names: None or ``memory`` for this process's ``SessionStore``;
    ``redis://``, ``rediss://`` or ``unix://`` for a ``RedisSessionStore``."""
    if url in (None, "", "memory"):
        return SessionStore(recognizer, cfg, ttl_s, max_sessions)
    if url.split("://", 1)[0] in ("redis", "rediss", "unix", "valkey", "valkeys"):
        return RedisSessionStore(recognizer, url.replace("valkey", "redis", 1), cfg, ttl_s)
    raise ParameterError(f"session store {url!r}: use memory or redis://HOST:6379/0")
