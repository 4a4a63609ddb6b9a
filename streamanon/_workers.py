"""Threads joined by bounded queues, with the failure handling plain reader/worker/writer
code lacks: a shared stop flag, timed put/get, the first error carried to the caller and
re-raised there, and threads always joined.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

POLL_S = 0.05

# glibc's mallopt(M_MMAP_THRESHOLD): allocations from this size up get pages of their own,
# returned to the system when freed. By default glibc raises the threshold to the size of
# any mmapped block that is freed (up to 32 MiB), after which frames, detector inputs and
# encoder buffers (0.7-25 MiB) come from the per-thread heaps, which keep the pages of
# freed blocks: peak RSS 558 -> 519 MiB on a 720p clip (benchmarks/bench_memory.py,
# docs/benchmarks-perf.md), speed unchanged within the noise.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
_heap_bounded: bool | None = None


def bound_heap() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` once per process (idempotent).

    Skipped where the C library is not glibc and where the user set a threshold of their
    own (``MALLOC_MMAP_THRESHOLD_``). Returns whether the threshold is now fixed.
    """
    global _heap_bounded
    if _heap_bounded is None:
        _heap_bounded = False
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ and platform.libc_ver()[0] == "glibc":
            try:
                _heap_bounded = bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
            except (OSError, AttributeError):  # no mallopt in this C library
                pass
        log.debug("mmap threshold fixed at %d bytes: %s", MMAP_THRESHOLD, _heap_bounded)
    return _heap_bounded


class END:
    """Marker closing a queue (the class itself is used, never instances)."""


class Stopped(Exception):
    """Raised inside a stage when another stage failed or the run was interrupted."""


class Workers:
    """Owns the stop flag, the stage threads and the first error.

    Stages call ``put``/``get``/``put_latest``, which give up with ``Stopped`` as soon as
    the stop flag is set, so no stage can block forever on a queue whose peer died.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.dropped = 0

    # -- queue helpers ---------------------------------------------------------------
    def put(self, q: queue.Queue[Any], item: Any) -> None:
        """Block until ``item`` is queued; ``Stopped`` once the run is stopping."""
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def put_latest(self, q: queue.Queue[Any], item: Any) -> None:
        """Live policy: never block; when the queue is full drop the *oldest* item."""
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = q.get_nowait()
                except queue.Empty:
                    continue
                if old is END:  # never drop the end marker
                    q.put_nowait(old)
                    return
                with self._lock:
                    self.dropped += 1

    def get(self, q: queue.Queue[Any]) -> Any:
        """Block until an item arrives; ``Stopped`` once the run is stopping."""
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue

    # -- threads -----------------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` unless an earlier error was recorded, and stop every stage."""
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def spawn(self, name: str, fn: Callable[[], None]) -> None:
        """Start ``fn`` on thread ``streamanon-<name>``; its exception stops the run."""
        def run() -> None:
            try:
                fn()
            except Stopped:
                pass
            except BaseException as exc:  # carried to the caller, re-raised there
                log.debug("stage %s failed: %r", name, exc)
                self.fail(exc)

        t = threading.Thread(target=run, name=f"streamanon-{name}", daemon=False)
        self._threads.append(t)
        t.start()

    def join(self) -> None:
        """Stop and join every thread (idempotent)."""
        self.stop.set()
        for t in self._threads:
            t.join()
        self._threads.clear()

    def alive(self) -> list[str]:
        """Names of the stage threads still running."""
        return [t.name for t in self._threads if t.is_alive()]
