"""Ragged arrays on disk: many (rows_i, width) arrays of one dtype written end to end into one flat file, with an
offsets index, and read back one array at a time. Training keeps a corpus' per-clip matrices (the voice student's
mel bands and its teacher's target frames) here instead of in memory, so its peak memory does not grow with them.

Arrays are read with ``os.preadv`` into fresh arrays, not memory-mapped: mapped pages a process has touched count
in its resident memory until the kernel needs them back, while a read leaves them in the page cache only. numpy
only (no torch): ``RaggedStore`` is a ``Sequence`` of arrays, usable wherever a list of arrays is.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterable, Sequence

import numpy as np


def _remove(fd: int, path: str) -> None:
    os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class RaggedStore(Sequence):
    """Arrays (rows_i, width) of one dtype in one temporary file (removed by ``close``, on leaving a ``with``
    block, or when the store is garbage-collected). ``store[i]`` reads array i (a new, writable array)."""

    def __init__(self, path: str, offsets: np.ndarray, width: int, dtype):
        self.path, self.offsets, self.width, self.dtype = path, offsets, int(width), np.dtype(dtype)
        self._fd = os.open(path, os.O_RDONLY)
        self._finalizer = weakref.finalize(self, _remove, self._fd, path)

    @classmethod
    def write(cls, arrays: Iterable[np.ndarray], folder: str | os.PathLike | None = None, *, dtype=None,
              prefix: str = "ragged-") -> "RaggedStore":
        """Write ``arrays`` (any iterable, e.g. a generator of batches' results: only one array is held at a time)
        into a new file in ``folder`` (default: the temporary folder); ``dtype``: convert to it (default: the
        first array's)."""
        fd, path = tempfile.mkstemp(suffix=".bin", prefix=prefix, dir=folder)
        lengths, width = [], None
        try:
            with os.fdopen(fd, "wb") as fh:
                for a in arrays:
                    a = np.asarray(a)
                    if dtype is None:
                        dtype = a.dtype
                    if a.ndim != 2 or (width is not None and a.shape[1] != width):
                        raise ValueError(f"RaggedStore: arrays must be 2-D of one width; got {a.shape} after "
                                         f"width {width}")
                    width = a.shape[1]
                    fh.write(np.ascontiguousarray(a, dtype=dtype).data)
                    lengths.append(a.shape[0])
        except BaseException:
            os.unlink(path)
            raise
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
        return cls(path, offsets, width or 0, dtype if dtype is not None else np.float32)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Rows of each array, (len,) int64."""
        return np.diff(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"RaggedStore index {i} out of range ({len(self)} arrays)")
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        out = np.empty((stop - start, self.width), self.dtype)
        row = self.width * self.dtype.itemsize
        if out.nbytes:
            got = os.preadv(self._fd, [out], start * row)
            assert got == out.nbytes, f"short read from {self.path}"
        return out

    def close(self) -> None:
        """Close and delete the file (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "RaggedStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
