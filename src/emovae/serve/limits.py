"""Bounds on what the service holds at once: the budget of request bodies in memory (``ByteBudget``), the memory
that decoding may take across the prediction threads (``DecodeBudget``), token buckets for creating sessions
(``RateLimit``), and glibc's heap kept small and handed back to the OS (``malloc_trim``,
``release_large_buffers_at_once``, ``limit_malloc_arenas``) so that a burst of uploads does not leave the process
large."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import threading
import time


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


class DecodeBudget:
    """Bytes that decoding may take at once, all prediction threads together (thread-safe). ``hold(n)`` waits
    until ``n`` bytes (at most the whole budget) are free and holds them for the ``with`` block: two clips whose
    decoded samples are large (60 s of 8 channels at 48 kHz: 92 MB as float32, ~180 MB while decoding) decode
    one after the other instead of together, while ordinary clips still decode side by side."""

    def __init__(self, total: int):
        self.total, self.used = max(1, int(total)), 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int):
        n = min(self.total, max(0, int(n)))
        with self._cond:
            self._cond.wait_for(lambda: self.used + n <= self.total)  # holders end: each decodes one clip
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


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


def limit_malloc_arenas(n: int = 2) -> bool:
    """At most ``n`` glibc malloc arenas for the threads started from now on (as MALLOC_ARENA_MAX=n does): each
    prediction thread, the thread pool's and onnxruntime's, would otherwise get an arena of its own (up to 8 per
    core), whose freed small blocks stay mapped after a burst. Process-wide; False where there is no glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, int(n)))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False
