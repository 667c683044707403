"""``FeaturePool``: uploads decoded and their features extracted in worker processes, so that one service
process uses every core. Features are most of a prediction's time and much of it holds the interpreter lock, so
threads in one process never filled two cores (docs/results.md, load); the network, the sessions and HTTP stay
in the serving process, so sessions need no shared store. Each worker computes with one BLAS thread and opens
the voice student's graph once."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from ..errors import AudioError, EmovaeError, ParameterError
from .config import ServeConfig
from .errors import RequestError

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import FeatureJob


MAX_DEFAULT_PROCESSES = 8  # each holds ~130 MB (numpy, soundfile, soxr, onnxruntime): more only when asked for


def default_processes() -> int:
    """Feature processes ``emovae serve`` starts by default: one per core this process may run on, at most
    MAX_DEFAULT_PROCESSES."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_PROCESSES))


def _features(task) -> tuple:
    """One upload in a worker: ("ok", [Features of the clip and its copies]) or (the error's kind, its fields):
    errors travel as values, rebuilt by ``FeaturePool.features`` (a RequestError does not pickle by its args)."""
    from .predict import upload_features

    job, cfg, data, name = task
    try:
        return "ok", upload_features(job, data, name, cfg)
    except RequestError as exc:
        return "request", (exc.status, exc.message, exc.headers)
    except AudioError as exc:
        return "audio", str(exc)
    except EmovaeError as exc:
        return "emovae", str(exc)


def _worker_init() -> None:
    """A worker's process-wide settings: one BLAS thread, and glibc handing large buffers (an upload, its decoded
    samples) back to the OS when freed, as the service process does (``limits``)."""
    from ..batch import one_blas_thread
    from .limits import limit_malloc_arenas, release_large_buffers_at_once

    one_blas_thread()
    release_large_buffers_at_once()
    limit_malloc_arenas()


def _warm(job: "FeatureJob") -> int:
    """Load what a worker needs before its first upload (numpy, soundfile, the voice student's graph)."""
    import numpy as np

    cfg = job.config
    t = np.arange(cfg.sample_rate) / cfg.sample_rate
    job.signal((0.1 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), cfg.sample_rate, "<warm-up>", copies=False)
    time.sleep(0.5)  # held a moment, so that the other warm-up tasks go to the other workers
    return os.getpid()


class FeaturePool:
    """``processes`` worker processes (spawned: the serving process runs threads) computing
    ``predict.upload_features`` of uploads for ``job`` under the limits of ``cfg``."""

    def __init__(self, job: "FeatureJob", cfg: ServeConfig, processes: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if processes < 1:
            raise ParameterError(f"feature processes must be >= 1, got {processes}")
        self.job, self.cfg, self.processes = job, cfg, processes
        self._lock = threading.Lock()
        self._new = lambda: ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_worker_init)
        self._pool = self._new()

    def warm(self) -> set[int]:
        """Start every worker and load its model files now, not on the first uploads; their process ids."""
        return set(self._pool.map(_warm, [self.job] * (2 * self.processes)))

    def features(self, data: bytes, name: str) -> list:
        """[Features of the clip, then of its test-time copies] of an upload, computed by a worker. Raises what
        ``upload_features`` raises (RequestError, AudioError, EmovaeError), and EmovaeError when a worker died."""
        from concurrent.futures.process import BrokenProcessPool

        pool = self._pool
        try:
            kind, value = pool.submit(_features, (self.job, self.cfg, data, name)).result()
        except BrokenProcessPool:
            with self._lock:  # the first to see it starts new workers; the uploads in flight with it fail
                if self._pool is pool:
                    self._pool = self._new()
            raise EmovaeError(f"{name}: the worker process computing its features died (out of memory, or a crash "
                              "in a decoder); the service has started new workers: retry, or try another "
                              "file") from None
        if kind == "ok":
            return value
        if kind == "request":
            raise RequestError(*value)
        raise (AudioError if kind == "audio" else EmovaeError)(value)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
