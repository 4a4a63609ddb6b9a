"""Give memory the pipeline's threads freed back to the system while a command runs.

Decoded frames, detector inputs and encoder pictures of megabytes each are allocated in
one thread and freed in another. glibc keeps freed memory in the arena of the thread that
allocated it for reuse, so free space piles up in several arenas at once and counts in
the process's resident size (its peak is what a user sees). ``malloc_trim(0)`` hands the
free pages of every arena back (what Dask's workers do for the same reason); the
``streamanon`` command calls it a few times a second while it runs (``MemoryTrimmer``).

Measured (docs/benchmarks-perf.md): peak RSS of 100 frames at 1280x720 432-438 ->
408-410 MiB, 640x360 262 -> 245-253 MiB, for ~0.15 s more system time a 100 frames.
Not done: fixing glibc's mmap threshold instead (``mallopt``: every frame-sized buffer
then comes fresh from the kernel): 35-40 MiB less at 720p, but ~1 s more system time per
100 frames (page faults), a speed cost.

Off glibc (musl, macOS, Windows) there is nothing to call and the trimmer does nothing.
``STREAMANON_TRIM_INTERVAL`` (seconds; ``0``: off) sets the interval, for measurements.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

INTERVAL_S = 0.2
ENV = "STREAMANON_TRIM_INTERVAL"


def _glibc_trim() -> Callable[[], object] | None:
    """``malloc_trim(0)`` of the C library the process runs on, or None where there is none
    (not glibc). Looked up in the process's own symbols (``CDLL(None)``, as the batch worker's
    ``prctl``), not by ``find_library``, which may run ``ldconfig`` or a compiler to find it."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # TypeError: Windows takes no None
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


def interval_from_env(default: float = INTERVAL_S) -> float:
    """``STREAMANON_TRIM_INTERVAL`` in seconds (0: off); ``default`` when unset or unreadable."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %s", ENV, raw, default)
        return default
    return max(0.0, value)


class MemoryTrimmer:
    """While in use (``with``), call ``trim`` every ``interval`` seconds on a thread of its own.

    Args:
        interval: seconds between calls; 0 (or no ``trim``): do nothing.
        trim: the call (default: glibc's ``malloc_trim(0)``; None off glibc).
    """

    def __init__(self, interval: float | None = None, trim: Callable[[], object] | None = None) -> None:
        self.interval = interval_from_env() if interval is None else interval
        self._trim = trim if trim is not None else _glibc_trim()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.calls = 0

    @property
    def active(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        assert self._trim is not None
        while not self._stop.wait(self.interval):
            self._trim()
            self.calls += 1

    def start(self) -> MemoryTrimmer:
        """Start calling (a daemon thread: a process that never stops it just exits)."""
        if self.interval > 0 and self._trim is not None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="streamanon-trim", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> MemoryTrimmer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
