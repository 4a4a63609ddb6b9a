"""The frame pipeline: read → detect (+track) → anonymise → write, each on its own thread.

Stages are small swappable objects; this module only wires them together. Privacy fails
closed: a frame whose detection or anonymisation raised is written fully masked
(``on_error="mask-frame"``) or the run stops (``"abort"``); a raw frame is never written.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._workers import END, Stopped, Workers
from .anonymize import Anonymizer, create_anonymizer, mask_whole_frame
from .config import PipelineConfig
from .detect import Detector, create_detector
from .errors import AnonymizationError
from .types import Detections, Frame

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """The run was stopped by SIGINT/SIGTERM; what was processed was kept."""

    exit_code = 130


@dataclass
class Result:
    """One processed frame as it reaches the sink."""

    frame: Frame
    image: NDArray[np.uint8]
    dets: Detections
    failed: str | None = None  # why the frame was fully masked
    detected: bool = True  # whether the detector ran on this frame


@dataclass
class PipelineStats:
    frames: int = 0
    faces: int = 0
    failed_frames: int = 0
    dropped_frames: int = 0
    detector_runs: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "detect": 0.0, "track": 0.0, "anonymize": 0.0, "write": 0.0})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Stages:
    """The per-run stage objects; built from a config unless given (tests, GPU backends)."""

    def __init__(
        self,
        config: PipelineConfig,
        detector: Detector | None = None,
        anonymizer: Anonymizer | None = None,
        tracker_factory: Callable[[], Any] | None = None,
    ) -> None:
        from .track import SceneCutDetector, create_tracker

        self.config = config
        low = config.track.low_threshold if config.track.enabled else config.detect.threshold
        self.detector = detector if detector is not None else create_detector(config.detect, low_threshold=low)
        self.anonymizer = anonymizer if anonymizer is not None else create_anonymizer(config.anonymize)
        self._tracker_factory = tracker_factory or (lambda: create_tracker(config.track, config.detect.threshold))
        self._scene_factory = lambda: SceneCutDetector(config.track.scene_cut)

    def new_tracker(self) -> Any:
        return self._tracker_factory()

    def new_scene_detector(self) -> Any:
        return self._scene_factory()


class Pipeline:
    """Run frames through the stages on threads joined by bounded queues.

    Args:
        config: the run's settings.
        stages: prebuilt stages (default: built from ``config``).
        live: drop the oldest queued frame instead of blocking when processing falls
            behind (live sources); files block, which is lossless.
    """

    def __init__(self, config: PipelineConfig, stages: Stages | None = None, live: bool = False) -> None:
        self.config = config
        self.stages = stages or Stages(config)
        self.live = live
        self.stats = PipelineStats()
        self.workers: Workers | None = None

    def run(self, frames: Iterable[Frame]) -> Iterator[Result]:
        """Yield ``Result``s in frame order. Errors of any stage are re-raised here."""
        cfg = self.config
        w = self.workers = Workers()
        qsize = cfg.io.queue_size
        q_read: queue.Queue[Any] = queue.Queue(qsize)
        q_det: queue.Queue[Any] = queue.Queue(qsize)
        q_anon: queue.Queue[Any] = queue.Queue(qsize)
        st = self.stats.stage_seconds
        put_frame = w.put_latest if self.live else w.put

        def read() -> None:
            it = iter(frames)
            while True:
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                finally:
                    st["read"] += time.perf_counter() - t0
                put_frame(q_read, frame)
                if w.stop.is_set():
                    raise Stopped
            w.put(q_read, END)

        def detect() -> None:
            tracker = self.stages.new_tracker()
            scene = self.stages.new_scene_detector()
            every = cfg.track.detect_every
            last_detect = -(10**9)
            while True:
                batch = [w.get(q_read)]
                while batch[-1] is not END and len(batch) < cfg.detect.batch:
                    try:
                        batch.append(q_read.get_nowait())
                    except queue.Empty:
                        break
                done = batch[-1] is END
                frames_ = [f for f in batch if f is not END]
                t0 = time.perf_counter()
                due = []
                for f in frames_:
                    cut = scene(f.image) if every > 1 else False
                    if every == 1 or cut or f.index - last_detect >= every:
                        due.append(f)
                        last_detect = f.index
                raw, errors = self._detect(due)
                st["detect"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for f in frames_:
                    err = errors.get(f.index)
                    if err is not None:
                        out = Result(f, f.image, Detections.empty(), failed=f"detection: {err}")
                    else:
                        dets = raw.get(f.index)
                        cover = tracker.update(dets, f.index)
                        out = Result(f, f.image, cover, detected=dets is not None)
                    w.put(q_det, out)
                st["track"] += time.perf_counter() - t0
                self.stats.detector_runs += len(due)
                if done:
                    w.put(q_det, END)
                    return

        def anonymize() -> None:
            while True:
                item = w.get(q_det)
                if item is END:
                    w.put(q_anon, END)
                    return
                t0 = time.perf_counter()
                if item.failed is None:
                    try:
                        item.image = self.stages.anonymizer.apply(item.frame.image, item.dets)
                    except Exception as exc:  # fail closed: mask the frame, never pass it raw
                        log.debug("anonymiser failed on frame %d: %r", item.frame.index, exc)
                        item.failed = f"anonymisation: {exc!r}"
                if item.failed is not None:
                    if cfg.io.on_error == "abort":
                        raise AnonymizationError(f"frame {item.frame.index}: {item.failed} (--on-error abort)")
                    item.image = mask_whole_frame(item.frame.image)
                st["anonymize"] += time.perf_counter() - t0
                w.put(q_anon, item)

        start = time.perf_counter()
        w.spawn("read", read)
        w.spawn("detect", detect)
        w.spawn("anonymize", anonymize)
        try:
            while True:
                try:
                    item = w.get(q_anon)
                except Stopped:
                    break
                if item is END:
                    break
                self.stats.frames += 1
                self.stats.faces += len(item.dets)
                if item.failed is not None:
                    self.stats.failed_frames += 1
                yield item
        except KeyboardInterrupt:
            w.fail(Interrupted("interrupted"))
        except GeneratorExit:
            w.stop.set()
            raise
        finally:
            w.join()
            self.stats.seconds = time.perf_counter() - start
            self.stats.dropped_frames = w.dropped
        if w.error is not None:
            raise w.error

    def _detect(self, frames: list[Frame]) -> tuple[dict[int, Detections], dict[int, str]]:
        """Detections per frame index; a failing batch is retried frame by frame so that
        only the frames that really fail are masked."""
        if not frames:
            return {}, {}
        try:
            dets = self.stages.detector([f.image for f in frames])
            return {f.index: d for f, d in zip(frames, dets, strict=True)}, {}
        except Exception as exc:
            if len(frames) == 1:
                log.debug("detector failed on frame %d: %r", frames[0].index, exc)
                return {}, {frames[0].index: repr(exc)}
        out: dict[int, Detections] = {}
        errors: dict[int, str] = {}
        for f in frames:
            d, e = self._detect([f])
            out.update(d)
            errors.update(e)
        return out, errors
