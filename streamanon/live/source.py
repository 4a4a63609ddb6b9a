"""A live input that survives its source: open/read timeouts, reconnection with exponential
backoff, and a latest-frame-wins hand-off to the pipeline.

A background thread owns the FFmpeg input (opening, decoding, closing, reopening) and puts
decoded frames in a small queue (``_workers.Channel``: latest frame wins, drops counted
once, in the metrics); ``frames()`` is the iterator the pipeline reads, which ends
promptly when the source is stopped even while the input hangs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .._workers import Stopped, Workers
from ..errors import ConfigError, SourceError, SourceOpenError, SourceTimeoutError, StreamanonError
from ..io import SourceInfo, VideoSource, redact
from ..types import Frame
from .endpoints import InputSpec
from .metrics import LiveMetrics

log = logging.getLogger(__name__)

MAX_EVENTS = 500


class LowLatencySource(VideoSource):
    """``VideoSource`` tuned for live feeds: each frame is yielded as soon as it decodes
    (no look-ahead frame, since no audio is carried) and the decoder uses slice threads
    only (frame threads add one frame of delay per thread)."""

    def __init__(self, uri: str, **kw: Any) -> None:
        super().__init__(uri, audio=False, **kw)
        self._video.thread_type = "SLICE"

    def __iter__(self) -> Iterator[Frame]:
        step = self._default_step()
        index, last_pts = 0, None
        for kind, vf in self._decoded():
            if kind != "frame":
                continue
            if index == 0:
                self.info.rotation = int(getattr(vf, "rotation", 0) or 0)
            frame = self._to_frame(vf, index, [], step, last_pts)
            last_pts = frame.pts
            index += 1
            yield frame


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial * 2**(attempt-1)``, capped at ``maximum`` seconds."""

    initial: float = 0.5
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(0, attempt - 1)))


@dataclass
class SourceEvent:
    """Something that happened to the input (for the report; URLs already redacted)."""

    time: float  # time.time()
    kind: str  # connected | reconnected | stalled | ended | error | gave_up
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"time": round(self.time, 3), "kind": self.kind, "message": self.message}


class FrameSource(Protocol):
    """What ``LiveSource`` reads: a ``VideoSource`` or a test fake."""

    info: SourceInfo

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


Opener = Callable[[InputSpec], FrameSource]


def open_input(spec: InputSpec) -> FrameSource:
    """Open ``spec`` with PyAV (the default ``Opener``).

    Raises:
        SourceTimeoutError: no answer within the open timeout (FFmpeg's RTSP demuxer
            reports its interrupted handshake as "invalid data", hence the clock check).
        SourceOpenError: anything else that prevents opening.
    """
    t0 = time.monotonic()
    try:
        return LowLatencySource(
            spec.uri,
            options=spec.options,
            timeout=spec.timeout,
            fmt=spec.fmt,
            live=spec.kind != "file",
            hwaccel=spec.hwaccel,
        )
    except SourceOpenError as exc:
        if spec.open_timeout is not None and time.monotonic() - t0 >= spec.open_timeout:
            raise SourceTimeoutError(
                f"timed out opening {spec.redacted} ({spec.open_timeout:g} s)", source=spec.redacted
            ) from exc
        raise


class LiveSource:
    """Decode a live input on a background thread, reconnecting when it drops or stalls.

    Args:
        spec: what to open.
        metrics: counters to update (frames in, drops, reconnects, errors, source up).
        reconnect: reopen after a drop/stall (network and device inputs).
        max_retries: give up after this many failed attempts in a row (0: never).
        backoff: delays between attempts.
        drop: latest frame wins when the consumer is slow (else the reader blocks).
        loop: reopen a file input at its end (paced in real time either way).
        opener: opens a ``VideoSource`` (tests pass fakes).
        queue_size: frames buffered between the reader and the pipeline.
    """

    def __init__(
        self,
        spec: InputSpec,
        metrics: LiveMetrics,
        *,
        reconnect: bool = True,
        max_retries: int = 0,
        backoff: Backoff | None = None,
        drop: bool = True,
        loop: bool = False,
        opener: Opener = open_input,
        queue_size: int = 1,
    ) -> None:
        self.spec = spec
        self.metrics = metrics
        self.reconnect = reconnect
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.drop = drop
        self.loop = loop
        self._opener = opener
        # the reader thread, its stop flag and why it gave up, if it did (ConfigError:
        # --hwaccel DEVICE cannot decode it; SourceError: the input failed or gave up)
        self._workers = Workers()
        self._stop = self._workers.stop
        on_drop = (lambda: metrics.inc("frames_dropped")) if drop else None
        self._q = self._workers.channel(queue_size, drop_oldest=drop, drain=True, on_drop=on_drop)
        self._ready = threading.Event()
        self._started = False
        self.info: SourceInfo | None = None  # of the first successful connection
        self.events: deque[SourceEvent] = deque(maxlen=MAX_EVENTS)
        self._index = 0

    # -- consumer side ------------------------------------------------------------------
    @property
    def error(self) -> StreamanonError | None:
        """Why the source gave up, if it did."""
        err = self._workers.error
        return err if isinstance(err, StreamanonError) else None

    def start(self) -> None:
        # a daemon: a hung network read must not keep the process alive past ``join``'s timeout
        self._workers.spawn("live-source", self._run, daemon=True)
        self._started = True

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the first connection succeeded or the source gave up."""
        return self._ready.wait(timeout)

    def frames(self) -> Iterator[Frame]:
        """Frames in arrival order, indexed continuously across reconnections; ends at
        the end of the input, or once stopped and the queued frames were taken."""
        yield from self._q

    def stop(self) -> None:
        """Ask the reader to finish; ``frames()`` ends within ``_workers.POLL_S``."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread (bounded by the read timeout); True if it ended."""
        if not self._started:
            return True
        return self._workers.join(timeout)

    # -- reader thread --------------------------------------------------------------------
    def _event(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        message = redact(message)
        self.events.append(SourceEvent(time.time(), kind, message))
        log.log(level, "%s", message)

    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False if the source was stopped meanwhile."""
        return not self._stop.wait(seconds)

    def _run(self) -> None:
        try:
            self._loop()
        except Stopped:
            pass
        except ConfigError as exc:  # a setting that no retry can fix
            self._workers.fail(exc)
            self._event("error", f"cannot open {self.spec.redacted}: {exc}")
        except Exception as exc:  # never leave the consumer waiting on a dead thread
            self._workers.fail(
                SourceError(f"live input {self.spec.redacted} failed: {redact(repr(exc))}", source=self.spec.redacted)
            )
            log.debug("live source thread failed", exc_info=True)
        finally:
            self.metrics.source_up = 0
            self._ready.set()
            try:  # the end marker gets through (the consumer may be slow) unless stopped
                self._q.close()
            except Stopped:
                pass

    def _loop(self) -> None:
        failures = 0
        connected_before = False
        name = self.spec.redacted
        while not self._stop.is_set():
            try:
                src = self._opener(self.spec)
            except SourceError as exc:
                failures += 1
                self.metrics.inc("source_errors")
                # the opener's message names the input already ("cannot open NAME as media: ...")
                message = str(exc) if name in str(exc) else f"cannot open {name}: {exc}"
                if not self._retry(exc, failures, message, "error"):
                    return
                continue
            if self.info is None:
                self.info = src.info
                self._ready.set()
            self.metrics.source_up = 1
            kind = "reconnected" if connected_before else "connected"
            if connected_before:
                self.metrics.inc("reconnects")
            self._event(
                kind,
                f"{kind} to {name} ({src.info.width}x{src.info.height})",
                logging.INFO if not connected_before else logging.WARNING,
            )
            connected_before = True
            got, error = self._pump(src)
            self.metrics.source_up = 0
            if self._stop.is_set():
                return
            if got:
                failures = 0
            if error is None:
                if self.spec.kind == "file" and self.loop and got:
                    continue
                if not self.spec.reconnectable or not self.reconnect:
                    self._event("ended", f"{name} ended", logging.INFO)
                    return
                error = SourceError(f"{name} ended (disconnected)", source=name)
                kind, message = "disconnected", f"{name} ended or disconnected"
            elif isinstance(error, SourceTimeoutError):
                kind, message = "stalled", f"{name} stalled: no data for {self.spec.read_timeout or 0:g} s"
            else:
                kind, message = "error", f"{name} failed: {error}"
            self.metrics.inc("source_errors")
            failures += 1
            if not self._retry(error, failures, message, kind):
                return

    def _retry(self, exc: SourceError, failures: int, message: str, kind: str) -> bool:
        """Record the failure and wait before the next attempt; False (``self.error`` set) to give up.

        ``failures`` counts the drop and the failed attempts since frames last arrived;
        ``max_retries`` attempts are made before giving up.
        """
        if not self.reconnect or not self.spec.reconnectable:
            self._workers.fail(exc)
            self._event(kind, f"{message}; not reconnecting" + (" (--no-reconnect)" if self.spec.reconnectable else ""))
            return False
        if self.max_retries and failures > self.max_retries:
            self._workers.fail(exc)
            self._event(kind, message)
            self._event("gave_up", f"giving up on {self.spec.redacted} after {self.max_retries} retries")
            return False
        delay = self.backoff.delay(failures)
        self._event(kind, f"{message}; reconnecting in {delay:.1f} s (attempt {failures})")
        return self._sleep(delay)

    def _pump(self, src: FrameSource) -> tuple[int, SourceError | None]:
        """Read frames until end/error/stop; returns (frames read, error or None at EOF)."""
        got = 0
        pace_t0: float | None = None
        pace_first: float | None = None
        try:
            for frame in src:
                if self._stop.is_set():
                    break
                if self.spec.kind == "file" and frame.time is not None:  # stream a file in real time
                    if pace_t0 is None:
                        pace_t0, pace_first = time.monotonic(), frame.time
                    wait = pace_t0 + (frame.time - (pace_first or 0.0)) - time.monotonic()
                    if wait > 0 and not self._sleep(wait):
                        break
                    frame = dataclasses.replace(frame, wallclock=time.monotonic())
                got += 1
                self.metrics.inc("frames_in")
                self._q.put(dataclasses.replace(frame, index=self._index))
                self._index += 1
        except SourceError as exc:
            return got, exc
        finally:
            src.close()
        return got, None
