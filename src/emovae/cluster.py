"""The distributed engine: batch scoring and feature extraction on Dask (``emovae predict --out ... --workers N``
or ``--scheduler tcp://HOST:8786``; ``emovae features`` with the same flags).

An :class:`Engine` is a ``distributed.Client`` connected to an existing scheduler (``--scheduler``, or Dask's own
``DASK_SCHEDULER_ADDRESS``) or to a ``LocalCluster`` of N single-threaded worker processes that it starts and
stops. Work goes out in partitions (``PARTITION`` files each, one task per partition) and comes back in input
order, so the client writes the very table a single process would (``batch.run_to_table`` with its
``TableWriter``: resume, ordering and formats are the same code). A worker loads the model once
(``worker_recognizer``, a cache keyed by ``ModelSpec`` in the worker process) and reads the files itself: on a
real cluster the files and the model folder must be at the same paths on every worker (a shared file system),
and every worker needs emovae installed. A task whose worker dies is rescheduled by Dask on another worker
(``ALLOWED_FAILURES`` deaths per task on a cluster started here; a task that raises is retried ``RETRIES``
times), so a killed worker costs its partition's time, not the run.

Needs dask and distributed (``pip install 'emovae[scale]'``), imported only when an engine is opened: the
default one-process path never imports them.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from .errors import EmovaeError, ParameterError, require

__all__ = ["ENV_SCHEDULER", "PARTITION", "Engine", "ModelSpec", "loaded_models", "open_engine", "partitions", "score_partition",
           "worker_recognizer", "wanted"]

ENV_SCHEDULER = "DASK_SCHEDULER_ADDRESS"  # Dask's own variable: a scheduler to use when --scheduler is not given
PARTITION = 64  # files per task: seconds of work, so the per-task overhead (ms) stays below 1 %; a multiple of
# batch.CHUNK, so the network sees the same batches as in one process and the numbers are identical
RETRIES = 2  # a task that raises (not a bad file: those are rows) is run again this many times
ALLOWED_FAILURES = 5  # worker deaths a task survives on a cluster started here (Dask's default is 3)
CONNECT_TIMEOUT_S = 10.0
ADDRESS = re.compile(r"((tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[^\s:/\[\]]+):\d{1,5}/?")
IN_FLIGHT_PER_THREAD = 4  # partitions submitted ahead per worker thread: bounded memory, workers never idle


def wanted(scheduler: str | None = None, workers: int | None = None) -> bool:
    """True when the user asked for the distributed engine (a flag, or ``DASK_SCHEDULER_ADDRESS`` set)."""
    return bool(scheduler or workers or os.environ.get(ENV_SCHEDULER))


def partitions(items: list, size: int = PARTITION) -> list[list]:
    """``items`` cut into consecutive lists of ``size`` (the last one shorter)."""
    if size < 1:
        raise ParameterError(f"partition size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


class Engine:
    """A Dask client: on ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``), or on a ``LocalCluster`` of
    ``workers`` single-threaded worker processes started here (and closed with the engine). Use it as a context
    manager. Raises EmovaeError naming the address and the fix when the scheduler cannot be reached."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None, *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, allowed_failures: int = ALLOWED_FAILURES,
                 retries: int = RETRIES):
        if scheduler and workers:
            raise ParameterError("--scheduler uses the workers of an existing cluster; --workers N starts a local "
                                 "one: give one or the other")
        if workers is not None and workers < 1:
            raise ParameterError(f"--workers must be >= 1, got {workers}")
        require("dask", "scale")
        distributed = require("distributed", "scale")
        import dask

        self.retries, self.cluster = retries, None
        if scheduler is None and not workers:
            scheduler = os.environ.get(ENV_SCHEDULER) or None
            if scheduler is None:
                raise ParameterError(f"no cluster named: give --scheduler ADDRESS, --workers N or {ENV_SCHEDULER}")
        if scheduler:
            if not ADDRESS.fullmatch(scheduler):
                raise ParameterError(f"Dask scheduler {scheduler!r}: not an address; write it as tcp://HOST:PORT "
                                     "(the scheduler's default port is 8786)")
            self.address = scheduler
            try:
                self.client = distributed.Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
            except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a malformed address
                raise EmovaeError(f"Dask scheduler {scheduler!r}: cannot reach it ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}); start one ('dask scheduler', then 'dask worker ADDRESS' on "
                                  f"each machine) or fix --scheduler / {ENV_SCHEDULER}") from None
            self.label = f"Dask scheduler {scheduler}"
        else:
            with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures,
                                  # Dask sets it to 64 KiB by default, which turns off glibc's adaptive mmap
                                  # threshold: every array of a clip is then mmap'd and unmapped, and feature
                                  # extraction runs 2x slower (benchmarks/results-batch.md)
                                  "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                                  # the statistical profiler samples each task's stack every 10 ms: CPU taken from
                                  # the work, for a dashboard nobody watches here
                                  "distributed.worker.profile.enabled": False}):
                self.cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                        dashboard_address=":0", silence_logs=40)
            self.client = distributed.Client(self.cluster, set_as_default=False)
            self.address = self.cluster.scheduler_address
            self.label = f"Dask LocalCluster of {workers} single-threaded worker process(es)"

    @property
    def threads(self) -> int:
        """Worker threads of the cluster now (at least 1: a scheduler without workers queues the tasks)."""
        return max(1, sum(self.client.nthreads().values()))

    def map(self, fn: Callable, parts: Iterable, *args) -> Iterator:
        """``fn(part, *args)`` for each part, computed on the workers, yielded in the order of ``parts``. At most
        ``IN_FLIGHT_PER_THREAD`` partitions per worker thread are out at once. Raises EmovaeError when a task
        fails after its retries (the results yielded before it stand, so a resumed run goes on from there)."""
        window = max(2, IN_FLIGHT_PER_THREAD * self.threads)
        pending: deque = deque()
        parts = iter(parts)
        n = 0

        def submit() -> bool:
            nonlocal n
            part = next(parts, None)
            if part is None:
                return False
            pending.append(self.client.submit(fn, part, *args, retries=self.retries, pure=False,
                                              key=f"emovae-{getattr(fn, '__name__', 'task')}-{n}-{os.urandom(4).hex()}"))
            n += 1
            return True

        while len(pending) < window and submit():
            pass
        while pending:
            fut = pending.popleft()
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, a worker-side error after retries
                for f in pending:
                    f.cancel()
                raise EmovaeError(f"{self.label}: a partition failed after {self.retries} retries "
                                  f"({type(exc).__name__}: {str(exc)[:300]}); the rows before it are kept: run the "
                                  "same command again to resume") from None
            del fut
            submit()
            yield result

    def scorer(self, spec: "ModelSpec", classes: tuple[str, ...] | None = None,
               partition: int = PARTITION) -> Callable[[list[str]], Iterator[dict]]:
        """paths -> their ``batch.score`` rows in order, computed on the workers (``batch.run_to_table``'s
        ``scorer``)."""
        def run(paths: list[str]) -> Iterator[dict]:
            for rows in self.map(score_partition, partitions(list(paths), partition), spec, classes):
                yield from rows

        return run

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_engine(scheduler: str | None = None, workers: int | None = None, **kw) -> Engine | None:
    """The engine the user asked for (``wanted``), else None: the caller stays in one process."""
    return Engine(scheduler, workers, **kw) if wanted(scheduler, workers) else None


# ------------------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to load the same model as the client: the model folder or .onnx file (None: the
    shipped model of the worker's emovae), the backend, ``abstain`` and ``tta`` (see ``runtime.Recognizer.load``)."""

    model: str | None = None
    backend: str = "auto"
    abstain: bool = False
    tta: bool = False

    def load(self):
        from .runtime import Recognizer

        return Recognizer.load(self.model, backend=self.backend, threads=1, abstain=self.abstain, tta=self.tta)


_RECOGNIZERS: dict = {}  # ModelSpec -> Recognizer, per process: one model load per worker


def worker_recognizer(spec: ModelSpec):
    """The recognizer of ``spec`` in this process, loaded on first use."""
    rec = _RECOGNIZERS.get(spec)
    if rec is None:
        rec = _RECOGNIZERS[spec] = spec.load()
    return rec


def loaded_models() -> list[ModelSpec]:
    """The models loaded in this process by ``worker_recognizer`` (run on the workers to see one load each)."""
    return list(_RECOGNIZERS)


def score_partition(paths: list[str], spec: ModelSpec, classes: tuple[str, ...] | None = None) -> list[dict]:
    """``batch.score`` rows of ``paths`` with the worker's copy of the model. ``classes``: the client's model
    classes; a worker whose model differs raises (another version of the model at the same path)."""
    from . import batch

    rec = worker_recognizer(spec)
    if classes is not None and tuple(rec.classes) != tuple(classes):
        raise ParameterError(f"the worker's model {rec.source} has classes {rec.classes}, the client's {classes}: "
                             "install the same emovae and model on every worker")
    return list(batch.score(rec, paths))
