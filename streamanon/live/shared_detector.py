"""The one detector that ``streamanon streams`` shares among its feeds, batching their calls.

Split from ``streams`` (which runs the feeds): ``BatchingDetector`` queues each feed's
detector call and runs what waits at once as one call per frame size; ``default_batch``
and ``shared_batch`` pick the most frames a call takes. A call that fails or is not
answered within ``CALL_TIMEOUT_S`` raises in the feed that made it, whose pipeline masks
the frame (fail closed).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._workers import Stopped, Workers, each_or_alone
from ..types import Detections

log = logging.getLogger(__name__)

# Frames per shared detector call when the file sets no ``batch``: 4 for a GPU backend; 1 on
# the CPU, where a batch is no faster per frame and one worker's long batched call leaves the
# backend's other concurrent caller idle (4 feeds, one process, bench_results by hand on the
# 2-core machine under load 13-19: 720p25 25.2 fps total at batch 1 vs 23.4 at 4; 1080p25 11.4
# vs 4.1, 2.5 before a worker left idle workers their share of the waiting frames).
DEFAULT_BATCH = 4
CPU_BATCH = 1
# A feed's detector call that the shared detector has not answered after this long
# raises in that feed's pipeline (its frame is masked) rather than holding the feed.
CALL_TIMEOUT_S = 30.0


# -- the shared detector ---------------------------------------------------------------------------
@dataclass
class _Request:
    images: list[NDArray[np.uint8]]
    future: Future[list[Detections]] = field(default_factory=Future)
    queued: float = field(default_factory=time.monotonic)


class BatchingDetector:
    """One detector serving every feed: what several feeds ask for at once runs as one call.

    ``workers`` threads each take the oldest request, add those already waiting (and, for
    up to ``max_wait_s`` after the first, those that arrive) up to ``batch`` frames, and
    run the detector once per frame size among them. With ``max_wait_s`` 0 nothing waits
    for a batch to fill: batches are what queued while the workers were busy, so a lone
    feed pays no latency for batching.

    Args:
        detector: ``images -> list[Detections]`` (thread-safe for ``workers`` callers).
        batch: most frames per call.
        max_wait_s: latency bound for filling a batch.
        workers: calls run at once (the backend's concurrent callers).
        fit: called once with the first frame's (width, height) before its call (live
            mode's detection-size fit for the whole load).
    """

    def __init__(
        self,
        detector: Callable[[Sequence[NDArray[np.uint8]]], list[Detections]],
        batch: int = DEFAULT_BATCH,
        max_wait_s: float = 0.0,
        workers: int = 1,
        fit: Callable[[int, int], None] | None = None,
    ) -> None:
        self.detector = detector
        self.batch = max(1, batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self.score_margin = float(getattr(detector, "score_margin", 1.0))
        self._fit = fit
        self._fit_lock = threading.Lock()
        # the worker threads, joined by close(); their stop flag closes the request queue
        self._workers = Workers()
        self._q = self._workers.channel()
        self._lock = threading.Lock()
        self.calls = self.frames = 0
        self._idle = 0  # workers waiting for a request
        self.wait_s = 0.0  # summed over frames: queueing time before their call started
        self.batch_sizes: dict[int, int] = {}
        for i in range(max(1, workers)):  # daemons: a backend call that hangs past close() must not block exit
            self._workers.spawn(f"shared-detect-{i}", self._work, daemon=True)

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detections for ``images`` (one feed's batch); raises if the detector failed or is closed."""
        if not images:
            return []
        req = _Request(list(images))
        try:
            self._q.put(req)
        except Stopped:
            raise RuntimeError("the shared detector is closed") from self._workers.error
        try:
            return req.future.result(timeout=CALL_TIMEOUT_S)
        except FutureTimeout:
            raise TimeoutError(f"the shared detector did not answer in {CALL_TIMEOUT_S:.0f} s") from None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            mean = self.frames / self.calls if self.calls else 0.0
            return {
                "calls": self.calls,
                "frames": self.frames,
                "mean_batch": round(mean, 2),
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "mean_wait_ms": round(1000 * self.wait_s / self.frames, 2) if self.frames else None,
            }

    def close(self) -> None:
        """Stop and join the workers; requests still queued fail (their frames are masked)."""
        if not self._workers.join(timeout=CALL_TIMEOUT_S):
            log.error("shared detector: %s still running after %.0f s", self._workers.alive(), CALL_TIMEOUT_S)
        while True:
            try:
                req = self._q.get_nowait()
            except queue.Empty:
                break
            req.future.set_exception(RuntimeError("the shared detector is closed"))

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._run(batch)
            except BaseException as exc:  # never leave a feed waiting: its frames fail, then the error is carried
                for req in batch:
                    if not req.future.done():
                        req.future.set_exception(exc)
                raise

    def _next_batch(self) -> list[_Request]:
        """The oldest request and those queued after it, up to ``batch`` frames;
        ``Stopped`` once closed with none taken."""
        with self._lock:
            self._idle += 1
        try:
            first: _Request = self._q.get()
        finally:
            with self._lock:
                self._idle -= 1
                idle_others = self._idle
        # Leave a share of what waits to the workers that are idle: one worker taking
        # every waiting frame would run one long call while the others (the backend's
        # other concurrent callers) sit idle (4 feeds at 1080p25: 2.5 fps total, not 11).
        share = math.ceil((len(first.images) + self._q.qsize()) / (1 + idle_others))
        limit = min(self.batch, max(1, share))
        batch, n = [first], len(first.images)
        deadline = time.monotonic() + self.max_wait_s
        while n < limit:
            try:
                wait = deadline - time.monotonic()
                nxt: _Request = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
            except (queue.Empty, Stopped):  # closing: what was taken still runs
                break
            batch.append(nxt)
            n += len(nxt.images)
        return batch

    def _fit_once(self, batch: list[_Request]) -> None:
        if self._fit is not None:
            with self._fit_lock:  # the first call fits the size; the others wait for it
                if self._fit is not None:
                    h, w = batch[0].images[0].shape[:2]
                    try:
                        self._fit(w, h)
                    finally:
                        self._fit = None

    def _call(self, images: list[NDArray[np.uint8]]) -> list[Detections]:
        """One detector call, counted when it returns a result per image."""
        dets = self.detector(images)
        if len(dets) == len(images):
            with self._lock:
                self.calls += 1
                self.frames += len(images)
                self.batch_sizes[len(images)] = self.batch_sizes.get(len(images), 0) + 1
        return dets

    def _run(self, batch: list[_Request]) -> None:
        started = time.monotonic()
        self._fit_once(batch)
        # one call per frame size (feeds of different resolutions do not share a network input)
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for r, req in enumerate(batch):
            for k, im in enumerate(req.images):
                groups.setdefault(im.shape, []).append((r, k))
        results: list[list[Detections | None]] = [[None] * len(req.images) for req in batch]
        failed: dict[int, BaseException] = {}
        for members in reversed(groups.values()):

            def call(ms: Sequence[tuple[int, int]]) -> list[Detections]:
                return self._call([batch[r].images[k] for r, k in ms])

            # one frame at a time after a failure, so that only the frames that fail fail
            found: list[Detections | Exception] = each_or_alone(call, members)
            for (r, k), d in zip(members, found, strict=True):
                if isinstance(d, Exception):
                    failed.setdefault(r, d)  # that feed's pipeline masks the frame
                else:
                    results[r][k] = d
        with self._lock:
            self.wait_s += sum((started - req.queued) * len(req.images) for req in batch)
        for r, req in enumerate(batch):
            if r in failed:
                req.future.set_exception(failed[r])
            else:
                req.future.set_result([d for d in results[r] if d is not None])


def default_batch(detector: Any) -> int:
    """``CPU_BATCH`` for a detector whose backend runs on the CPU, else ``DEFAULT_BATCH``."""
    on_cpu = getattr(getattr(detector, "choice", None), "on_cpu", None)
    return CPU_BATCH if on_cpu else DEFAULT_BATCH


def shared_batch(detector: Any, batch: int) -> int:
    """``batch``, or less where the detector's backend takes fewer frames a call.

    A TensorRT engine's optimisation profile bounds the batch (``max_batch``): forming
    batches up to it, rather than larger ones the backend would split into chunks, keeps
    every call one execution of the engine.
    """
    limit = getattr(getattr(detector, "backend", None), "max_batch", None)
    if isinstance(limit, int) and 1 <= limit < batch:
        log.info("shared detector: batches of at most %d frames (the engine's profile), not %d", limit, batch)
        return limit
    return batch
