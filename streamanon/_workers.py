"""Threads joined by bounded queues, with the failure handling plain reader/worker/writer
code lacks: a shared stop flag, timed put/get, the first error carried to the caller and
re-raised there, and threads always joined.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

POLL_S = 0.05


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
