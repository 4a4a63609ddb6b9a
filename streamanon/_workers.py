"""The one thread toolkit of streamanon: bounded queues tied to a stop flag, the
drop-oldest queue of live feeds with its drop counter, the end marker, the first error
carried to the caller, threads that are joined on stop, and the frame-by-frame retry.

Plain reader/worker/writer code hangs when one stage dies (its peer waits forever on a
queue) and loses the exception on the thread. Here every wait polls the shared stop flag
(``Stopped`` once it is set), a stage's exception stops the others and is re-raised by
the caller (``Workers.raise_error``), and ``Workers.join`` ends every thread. The file
pipeline, the live source and runner, and the streams' shared detector all use it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)

POLL_S = 0.05

T = TypeVar("T")
R = TypeVar("R")


class END:
    """Marker closing a queue (the class itself is used, never instances)."""


class Stopped(Exception):
    """Raised inside a stage when another stage failed or the run was stopped."""


class Channel:
    """A queue between threads that gives up with ``Stopped`` once ``stop`` is set.

    Args:
        stop: the stop flag shared by the threads at both ends.
        size: most items queued (0: unbounded).
        drop_oldest: live policy: ``put`` never blocks; when full, the *oldest* item is
            dropped (counted in ``dropped`` and reported to ``on_drop``). The end marker
            is never dropped.
        drain: ``get`` still returns what is queued after ``stop`` is set (a consumer
            that writes what was already produced); without it ``Stopped`` comes at once.
        on_drop: called once per dropped item (the live metrics count drops there).
    """

    def __init__(
        self,
        stop: threading.Event,
        size: int = 0,
        *,
        drop_oldest: bool = False,
        drain: bool = False,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.stop = stop
        self.drop_oldest = drop_oldest
        self.drain = drain
        self.dropped = 0
        self._on_drop = on_drop
        self._q: queue.Queue[Any] = queue.Queue(size)

    def put(self, item: Any) -> None:
        """Queue ``item``: wait for room (or drop the oldest item); ``Stopped`` once stopping."""
        if self.drop_oldest and item is not END:
            self._put_latest(item)
            return
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                self._q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Queue the end marker (waits for room, never dropped); ``Stopped`` once stopping."""
        self.put(END)

    def _put_latest(self, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self._q.get_nowait()
                except queue.Empty:
                    continue
                if old is END:  # never drop the end marker: the item is the one lost
                    self._q.put_nowait(old)
                    old = item
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop()
                if old is item:
                    return

    def get(self, timeout: float | None = None) -> Any:
        """The next item; ``queue.Empty`` after ``timeout`` seconds (None: wait), ``Stopped``
        once stopping (with ``drain``: once stopping and empty)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.stop.is_set() and not self.drain:
                raise Stopped
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            try:
                return self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
            except queue.Empty:
                if self.stop.is_set():
                    raise Stopped from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue

    def get_nowait(self) -> Any:
        """The next item if one is queued, else ``queue.Empty`` (the stop flag is not checked)."""
        return self._q.get_nowait()

    def __iter__(self) -> Iterator[Any]:
        """Items until the end marker; ends quietly when stopped."""
        while True:
            try:
                item = self.get()
            except Stopped:
                return
            if item is END:
                return
            yield item

    def qsize(self) -> int:
        return self._q.qsize()


class Workers:
    """Owns the stop flag, the threads and the first error of one run.

    A thread started with ``spawn`` that raises stops every other one (their waits on a
    ``Channel`` of this run give up with ``Stopped``); the caller re-raises the error with
    ``raise_error`` after ``join``.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._channels: list[Channel] = []
        self._lock = threading.Lock()

    def channel(
        self,
        size: int = 0,
        *,
        drop_oldest: bool = False,
        drain: bool = False,
        on_drop: Callable[[], None] | None = None,
    ) -> Channel:
        """A ``Channel`` tied to this run's stop flag (its drops count in ``dropped``)."""
        ch = Channel(self.stop, size, drop_oldest=drop_oldest, drain=drain, on_drop=on_drop)
        self._channels.append(ch)
        return ch

    @property
    def dropped(self) -> int:
        """Items dropped by this run's drop-oldest channels."""
        return sum(ch.dropped for ch in self._channels)

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` unless an earlier error was recorded, and stop every thread."""
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def spawn(self, name: str, fn: Callable[[], None], *, daemon: bool = False) -> threading.Thread:
        """Start ``fn`` on thread ``streamanon-<name>``; its exception stops the run.

        ``daemon``: for a thread that may block in foreign code (a network read) past
        ``join``'s timeout; it must not keep the process alive then.
        """

        def run() -> None:
            try:
                fn()
            except Stopped:
                pass
            except BaseException as exc:  # carried to the caller, re-raised there
                log.debug("thread %s failed: %r", name, exc)
                self.fail(exc)

        t = threading.Thread(target=run, name=f"streamanon-{name}", daemon=daemon)
        with self._lock:
            self._threads.append(t)
        t.start()
        return t

    def join(self, timeout: float | None = None) -> bool:
        """Set the stop flag and join every thread (at most ``timeout`` seconds in all);
        True when all have ended. Idempotent."""
        self.stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t is threading.current_thread():
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return not self._threads

    def alive(self) -> list[str]:
        """Names of this run's threads still running."""
        with self._lock:
            return [t.name for t in self._threads if t.is_alive()]

    def raise_error(self) -> None:
        """Re-raise the first error of a thread, if one failed."""
        if self.error is not None:
            raise self.error


def each_or_alone(call: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R | Exception]:
    """``call(items)``, one result per item; when the call raises or returns a wrong
    number of results, each item is tried alone, so that only the items that really
    fail fail (their exception takes their place in the list).

    The one frame-by-frame retry: the pipeline's detector calls and the streams' shared
    detector both go through it.
    """
    if not items:
        return []
    try:
        out = call(items)
        if len(out) != len(items):
            raise ValueError(f"detector returned {len(out)} results for {len(items)} images")
        return list(out)
    except Exception as exc:
        if len(items) == 1:
            return [exc]
        log.debug("call over %d items failed (%r): trying each alone", len(items), exc)
    return [r for item in items for r in each_or_alone(call, [item])]
