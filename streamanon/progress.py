"""Progress of long runs: a tqdm bar on a terminal, log lines elsewhere.

Off a terminal (stderr redirected to a file, a pipe, a CI log, a service journal) a bar
would write nothing useful, and silence looks like a hang: :class:`Progress` then logs one
line every :data:`PROGRESS_EVERY_S` seconds with the frames done, the wall-clock fps and
the time left, and :func:`heartbeat` logs that a long command (``eval identity``) is still
running. The lines go to the ``streamanon.progress`` logger at INFO, which is let through
even when the CLI logs only warnings; ``-q`` turns them off with the bar.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

log = logging.getLogger(__name__)

__all__ = ["HEARTBEAT_EVERY_S", "PROGRESS_EVERY_S", "Progress", "heartbeat"]

#: Seconds between two progress lines of a file run off a terminal.
PROGRESS_EVERY_S = 5.0
#: Seconds between two "still running" lines of a long command.
HEARTBEAT_EVERY_S = 10.0


def _let_through() -> None:
    """Progress lines are INFO; the CLI's root level is WARNING unless -v."""
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Counts frames: a tqdm bar on a terminal, a log line every ``every`` seconds elsewhere.

    Args:
        total: frames expected (None or 0: unknown, no percentage or ETA).
        desc: what is processed (the file name).
        enabled: False shows nothing (``-q``).
        every: seconds between log lines (default :data:`PROGRESS_EVERY_S`).
        stream: where the bar would go (default ``sys.stderr``); a terminal gets the bar.
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        enabled: bool,
        *,
        every: float | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total or None
        self.desc = desc
        self.done = 0
        self._bar: Any = None
        self._log = False
        self._every = PROGRESS_EVERY_S if every is None else every
        self._clock = clock
        self._start = self._last = clock()
        stream = stream if stream is not None else sys.stderr
        if not enabled:
            return
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit="frame", dynamic_ncols=True, leave=False, file=stream)
        else:
            self._log = True
            _let_through()

    def line(self) -> str:
        """The progress line for now: frames, wall-clock fps since the start, time left."""
        elapsed = self._clock() - self._start
        fps = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = f", eta {_duration((self.total - self.done) / fps)}" if fps > 0 and self.done < self.total else ""
            return f"{self.desc}: {self.done}/{self.total} frames ({pct:.0f}%), {fps:.1f} fps{eta}"
        return f"{self.desc}: {self.done} frames, {fps:.1f} fps, {_duration(elapsed)}"

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._log:
            now = self._clock()
            if now - self._last >= self._every:
                self._last = now
                log.info("%s", self.line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def heartbeat(what: str, every: float | None = None) -> Iterator[None]:
    """Logs ``WHAT: still running (ELAPSED)`` every ``every`` seconds (default
    :data:`HEARTBEAT_EVERY_S`) until the block ends."""
    every = HEARTBEAT_EVERY_S if every is None else every
    _let_through()
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            log.info("%s: still running (%s)", what, _duration(time.monotonic() - start))

    t = threading.Thread(target=beat, name="streamanon-heartbeat", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
