"""Reusable per-thread scratch buffers for frame-sized temporaries (see :func:`scratch`)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_scratch = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A reusable per-thread array of ``shape`` (contents undefined) for a temporary that dies
    before the caller returns.

    Frame-sized NumPy temporaries above glibc's mmap/trim thresholds are handed back to the
    kernel when freed and fault their pages in again on the next frame (docs/performance.md,
    "Page faults"); one buffer per (thread, name) that only grows avoids that. Per thread because
    sessions encode large updates in a thread pool. The caller must not keep the array (or a
    view of it) past its own return, nor use the same ``name`` twice at once.
    """
    dt = np.dtype(dtype)
    nbytes = dt.itemsize
    for n in shape:
        nbytes *= n
    buf: np.ndarray | None = getattr(_scratch, name, None)
    if buf is None or buf.size < nbytes:
        buf = np.empty(max(nbytes, 4096), dtype=np.uint8)
        setattr(_scratch, name, buf)
    return buf[:nbytes].view(dt).reshape(shape)
