"""The frame pipeline: read → detect (+track) → anonymise → write, each on its own thread.

Stages are small swappable objects (``Stages``); this module only wires them together
with bounded queues (``_workers``: stop flag, error carried to the caller, threads joined),
so memory is bounded by the queue sizes whatever the input length. The detect stage is
``DetectScheduler``: the two sections below are its rules.

Privacy fails closed: a frame whose detection, tracking or anonymisation raised is
written fully masked (``on_error="mask-frame"``) or the run stops (``"abort"``); a raw
frame is never written.

Detector workers: with every frame detected, ``Stages.detect_workers`` calls run at once
on consecutive batches (ONNX Runtime runs concurrent calls of one session in parallel;
OpenVINO runs one network call at a time, while the workers overlap the rest of the
call); their results are tracked strictly in frame order, so the output is the same as with one.

Detect-every-N: the detector runs on every N-th frame and on scene cuts; the tracker
predicts in between. Coverage is made symmetric in time: the frames between two
detector runs are held back until the later run, whose detections, grown with the
distance, are added to them ("look-back"). A face that appears between two runs is so
masked from the frame it appeared on, not only from the next detector run on.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._workers import END, Channel, Stopped, Workers, each_or_alone
from .anonymize import AnonymizerFactory, AnonymizerSession, FixedFactory, FrameInfo, mask_whole_frame
from .anonymize.selective import KeepFaces, SelectiveAnonymizer
from .audit import RunStats
from .backends.select import BackendChoice
from .config import DetectConfig, PipelineConfig
from .detect import Detector, create_detector
from .detect.centerface import resolve_backend
from .detect.tiles import TiledDetector
from .errors import AnonymizationError
from .track import SceneCutDetector, create_tracker
from .types import SOURCE_DETECTOR, SOURCE_TRACK, Detections, Frame

log = logging.getLogger(__name__)

# ORT intra-op threads are capped here: beyond this the network does not get faster on
# the frame sizes streamanon uses, and decode/encode need the cores.
MAX_AUTO_THREADS = 8
# How often the detect stage looks for new frames while a detector call is running.
POLL_BUSY_S = 0.002


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
    seconds: float = 0.0  # time spent anonymising it


def _stage_clock() -> dict[str, float]:
    return {"read": 0.0, "detect": 0.0, "track": 0.0, "anonymize": 0.0, "write": 0.0}


@dataclass
class PipelineStats(RunStats):
    """``RunStats`` of one pipeline run (the frames that reached the sink, the frames
    dropped by a live run's reader), plus the detector runs and ``stage_seconds``, the
    busy time per stage (stages overlap)."""

    detector_runs: int = 0
    stage_seconds: dict[str, float] = field(default_factory=_stage_clock)


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def auto_threads(cores: int | None = None) -> int:
    """Detector threads when ``DetectConfig.threads`` is 0: all cores but one.

    Decoding and encoding run on other threads at the same time; measured on 2 cores
    (benchmarks/bench_fps.py), one ORT thread is ~2.5x faster end to end than ORT's
    default of one spinning thread per core, which starves the decoder and encoder.
    """
    n = available_cores() if cores is None else cores
    return max(1, min(MAX_AUTO_THREADS, n - 1))


class Stages:
    """The per-run stage objects; built from a config unless given (tests, GPU backends).

    Args:
        config: the run's settings.
        detector: ``images -> list[Detections]`` (default: ``create_detector``).
        anonymizer: object with ``apply(image, dets)``, used as it is for every run
            (default: a fresh one per run from ``anonymizer_factory``).
        anonymizer_factory: builds each run's anonymiser (default: from ``config.anonymize``).
        tracker_factory: builds a fresh tracker (``update(dets | None, index)``).
        scene_factory: builds a fresh scene-cut detector (``image -> bool``).
    """

    def __init__(
        self,
        config: PipelineConfig,
        detector: Detector | None = None,
        anonymizer: Any = None,
        anonymizer_factory: AnonymizerFactory | None = None,
        tracker_factory: Callable[[], Any] | None = None,
        scene_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.config = config
        # A detector given by the caller may not be thread-safe: one call at a time unless asked.
        self.detect_workers = config.detect.workers or 1
        self.inference: dict[str, Any] = {"backend": "given by the caller"}
        built = detector is None
        if detector is None:
            choice = resolve_backend(config.detect, config.detect.model)
            log.log(logging.INFO if config.detect.backend == "auto" else logging.DEBUG, "inference: %s", choice)
            self.detect_workers = config.detect.workers or self.auto_workers(choice)
            detect = self.detect_config(choice.config, self.detect_workers)
            low = config.track.low_threshold if config.track.enabled else config.detect.threshold
            detector = create_detector(
                detect, low_threshold=low, callers=self.detect_workers, choice=replace(choice, config=detect)
            )
            self.inference = choice.describe() | {"threads_per_call": detect.threads}
        # A reduced-precision detector scores faces lower than fp32 (CenterFaceDetector):
        # the tracker's thresholds follow its margin.
        margin = float(getattr(detector, "score_margin", 1.0))
        self.inference |= {"workers": self.detect_workers, "score_margin": margin}
        if built and (config.detect.small_faces != "off" or config.detect.max_face_size is not None):
            d = config.detect
            detector = TiledDetector(
                detector,
                d.small_faces,
                d.tile_scale,
                d.tile_every,
                d.max_face_size,
                d.threshold,
                lag=d.batch * max(2, self.detect_workers),
                detect_every=config.track.detect_every,
            )
        self.detector = detector
        # People to keep visible (--keep-face): the recogniser and references load once.
        self.keep_faces: Any = None
        if config.anonymize.keep_faces:
            self.keep_faces = KeepFaces(config.anonymize.keep_faces)
        self.anonymizer_factory: AnonymizerFactory | FixedFactory = (
            FixedFactory(anonymizer)
            if anonymizer is not None
            else anonymizer_factory
            if anonymizer_factory is not None
            else AnonymizerFactory(config.anonymize, engine=config.engine)
        )
        # A k-same face bank is read once, with the product's own detector.
        self.anonymizer_factory.load_bank(lambda image: self.detector([image])[0])
        high = config.detect.threshold * margin
        track = replace(config.track, low_threshold=config.track.low_threshold * margin)
        self._tracker_factory = tracker_factory or (lambda: create_tracker(track, high))
        self._scene_factory = scene_factory or (lambda: SceneCutDetector(config.track.scene_cut))

    @staticmethod
    def auto_workers(choice: BackendChoice, cores: int | None = None) -> int:
        """Concurrent detector calls when ``DetectConfig.workers`` is 0.

        On CPU backends two workers on consecutive frames use the core that decoding and
        encoding leave idle (benchmarks/bench_fps.py): ONNX Runtime runs the two one-thread
        calls in parallel; OpenVINO runs one network call at a time on both workers'
        threads while the other worker resizes its input or decodes its outputs. GPU
        backends keep one call at a time (one execution context).
        """
        n = available_cores() if cores is None else cores
        return 2 if choice.on_cpu and n >= 2 else 1

    @staticmethod
    def detect_config(config: DetectConfig, workers: int = 1) -> DetectConfig:
        """``config`` with ``threads=0`` resolved to ``auto_threads()`` shared by ``workers``."""
        if config.threads:
            return config
        return replace(config, threads=max(1, auto_threads() // max(1, workers)))

    def new_anonymizer(self, still: bool = False, **kwargs: Any) -> Any:
        """A fresh anonymiser for one run (per-track state starts empty); wrapped by the
        selection (regions, kept faces) when the config asks for one. ``still``: the run
        is one image (a kept face then needs one match, not a repeated one)."""
        anonymizer = self.anonymizer_factory(**kwargs)
        a = self.config.anonymize
        if a.only_regions or a.ignore_regions or self.keep_faces is not None:
            anonymizer = SelectiveAnonymizer(anonymizer, a.only_regions, a.ignore_regions, self.keep_faces, still=still)
        return anonymizer

    def new_tracker(self) -> Any:
        """A tracker with no tracks."""
        return self._tracker_factory()

    def new_scene_detector(self) -> Any:
        """A scene-cut detector with no history."""
        return self._scene_factory()


def _look_back(cover: Detections, distance: int, growth: float, width: int, height: int) -> Detections:
    """The detector rows of ``cover`` as boxes for a frame ``distance`` frames earlier.

    Grown like a coasting track (uncertainty grows with time); landmarks dropped so the
    mask is the plain ellipse/box of the grown box.
    """
    rows = cover[cover.source == SOURCE_DETECTOR]
    if not len(rows):
        return rows
    grown = rows.dilated(1.0 + growth * distance).clipped(width, height)
    n = len(grown)
    no_landmarks = np.full((n, 5, 2), np.nan, np.float32)
    return Detections(grown.xyxy, grown.score, no_landmarks, grown.track_id, np.full(n, SOURCE_TRACK, np.uint8))


class _Schedule:
    """Which frames the detector runs on: every frame, or every ``every``-th frame, each
    scene cut and the first frame after a failure (``force``)."""

    def __init__(self, every: int, scene: Any) -> None:
        self.every = every
        self.scene = scene
        self.last: int | None = None
        self.force = True  # the first frame, and the next one after a failure

    def due(self, frames: list[Frame]) -> list[Frame]:
        """The frames of ``frames`` to detect (in order); frames are seen once each."""
        due: list[Frame] = []
        for f in frames:
            cut = self.scene(f.image) if self.scene is not None else False
            if self.force or cut or self.every == 1 or self.last is None or f.index - self.last >= self.every:
                due.append(f)
                self.last, self.force = f.index, False
        return due


class _Tracking:
    """The run's tracker. After a failure it starts over with a fresh tracker whose ids are
    shifted past every id used so far (a new tracker numbers from 1 again), so track ids
    stay unique within the run."""

    def __init__(self, new_tracker: Callable[[], Any]) -> None:
        self._new = new_tracker
        self.tracker = new_tracker()
        self.id_base = self.id_max = 0

    def update(self, dets: Detections | None, frame: Frame) -> Detections:
        """The regions to mask in ``frame``; re-raises a tracker failure after starting over."""
        try:
            cover: Detections = self.tracker.update(dets, frame.index, frame.time)
        except Exception:
            self.tracker = self._new()
            self.id_base = self.id_max
            raise
        if len(cover) and self.id_base:
            shifted = np.where(cover.track_id >= 0, cover.track_id + self.id_base, cover.track_id)
            cover = replace(cover, track_id=shifted)
        if len(cover):
            self.id_max = max(self.id_max, int(cover.track_id.max()))
        return cover


class DetectScheduler:
    """The detect (+track) stage: which frames the detector runs on, how many calls are in
    flight, and the look-back over the frames in between.

    - Detect every N (``track.detect_every``): the detector runs on every N-th frame, on
      scene cuts and after a failure; the tracker predicts in between. The frames between
      two detector runs are held back until the later run, whose detections, grown with the
      distance, are added to them (look-back).
    - Workers: with every frame detected, up to ``Stages.detect_workers`` batches are in
      the detector at once; their results are tracked strictly in frame order. With
      detect-every-N the schedule depends on the tracker's outcome: one call at a time.
    - Failures: a failed frame is fully masked downstream (``Result.failed``); the next
      frame is detected and the tracker starts over when it was the one failing.
    """

    def __init__(self, config: PipelineConfig, stages: Stages, stats: PipelineStats) -> None:
        self.config = config
        self.stages = stages
        self.stats = stats
        every = config.track.detect_every
        self.schedule = _Schedule(every, stages.new_scene_detector() if every > 1 else None)
        self.tracking = _Tracking(stages.new_tracker)
        self.depth = stages.detect_workers if every == 1 else 1
        self.inflight: deque[tuple[list[Frame], Any]] = deque()  # (frames, result or its Future)
        self.input_done = False
        self.pending: list[Result] = []  # frames since the last detector run (look-back)
        self._clock = threading.Lock()

    def stage(self, q_in: Channel, q_out: Channel) -> Callable[[], None]:
        """The stage's thread body: frames from ``q_in``, ``Result``s in order to ``q_out``."""
        return lambda: self.run(q_in, q_out)

    def run(self, q_in: Channel, q_out: Channel) -> None:
        pool = ThreadPoolExecutor(self.depth, thread_name_prefix="streamanon-detect") if self.depth > 1 else None
        try:
            while True:
                self._fill(q_in, pool)
                frames, job = self.inflight.popleft()
                done = self.input_done and not self.inflight  # the batch that met the end of the input
                found = job.result() if pool is not None else job
                t0 = time.perf_counter()
                for f in frames:
                    for res in self._track(f, found.get(f.index)):
                        q_out.put(res)
                self.stats.stage_seconds["track"] += time.perf_counter() - t0
                if done:
                    self._release(q_out)
                    q_out.close()
                    return
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self, q_in: Channel, pool: ThreadPoolExecutor | None) -> None:
        """Submit batches until ``depth`` are in flight, the input ended, or the oldest
        call finished (a finished result is never held back to keep workers busy)."""
        while not self.input_done and len(self.inflight) < self.depth:
            if self.inflight:
                got = self._batch_or_result(q_in, self.inflight[0][1])
                if got is None:
                    return
                frames, self.input_done = got
            else:
                frames, self.input_done = self._next_batch(q_in)
            due = self.schedule.due(frames)
            self.stats.detector_runs += len(due)
            job = pool.submit(self._detect, due) if pool is not None else self._detect(due)
            self.inflight.append((frames, job))

    def _next_batch(self, q_in: Channel, first: Any = None) -> tuple[list[Frame], bool]:
        """Up to ``batch`` frames already waiting (at least one unless the input ended),
        starting with ``first`` when the caller already took it from the queue."""
        batch = [q_in.get() if first is None else first]
        while batch[-1] is not END and len(batch) < self.config.detect.batch:
            try:
                batch.append(q_in.get_nowait())
            except queue.Empty:
                break
        done = batch[-1] is END
        return [f for f in batch if f is not END], done

    def _batch_or_result(self, q_in: Channel, job: Future[Any]) -> tuple[list[Frame], bool] | None:
        """The next batch if frames arrive before ``job`` is done, else None (``job`` is ready)."""
        while not job.done():
            try:
                first = q_in.get(timeout=POLL_BUSY_S)
            except queue.Empty:
                continue
            return self._next_batch(q_in, first)
        return None

    def _detect(self, frames: list[Frame]) -> dict[int, Detections | str]:
        """Detections, or why the detector failed, per frame index (a failing batch is
        retried frame by frame: only the frames that really fail are masked)."""
        t = time.perf_counter()
        try:
            # A scheduling detector (tiles) is told which frames these are.
            by_index = getattr(self.stages.detector, "detect_frames", None)

            def call(batch: Sequence[Frame]) -> list[Detections]:
                images = [f.image for f in batch]
                if by_index is not None:
                    return list(by_index(images, [f.index for f in batch]))
                return list(self.stages.detector(images))

            results: list[Detections | Exception] = each_or_alone(call, frames)
            out: dict[int, Detections | str] = {}
            for f, got in zip(frames, results, strict=True):
                if isinstance(got, Exception):
                    log.debug("detector failed on frame %d: %r", f.index, got)
                out[f.index] = repr(got) if isinstance(got, Exception) else got
            return out
        finally:
            with self._clock:  # busy time summed over the workers
                self.stats.stage_seconds["detect"] += time.perf_counter() - t

    def _track(self, f: Frame, found: Detections | str | None) -> list[Result]:
        """The results ready once ``f`` is tracked (``found``: its detections, why its
        detection failed, or None when it was not detected): none while ``f`` waits for the
        next detector run, else the frames held back and ``f``."""
        err = found if isinstance(found, str) else None
        dets = None if isinstance(found, str) else found
        if err is None:
            try:
                cover = self.tracking.update(dets, f)
            except Exception as exc:  # fail closed, start over with a fresh tracker
                log.debug("tracker failed on frame %d: %r", f.index, exc)
                err = f"tracking: {exc!r}"
        if err is not None:
            self.schedule.force = True
            return [*self._take_pending(), Result(f, f.image, Detections.empty(), failed=err, detected=False)]
        res = Result(f, f.image, cover, detected=dets is not None)
        if dets is None:
            self.pending.append(res)
            return []
        growth = self.config.track.coast_growth
        for r in self.pending:
            back = _look_back(cover, f.index - r.frame.index, growth, f.width, f.height)
            r.dets = Detections.concat([r.dets, back])
        return [*self._take_pending(), res]

    def _take_pending(self) -> list[Result]:
        held, self.pending = self.pending, []
        return held

    def _release(self, q_out: Channel) -> None:
        for r in self._take_pending():
            q_out.put(r)


class _StopOnSignal:
    """While a run is active, SIGINT/SIGTERM request a clean stop instead of raising.

    A signal raising ``KeyboardInterrupt`` inside the caller's loop body (e.g. while
    the sink encodes) would bypass the pipeline and lose the output; instead the
    handler sets the stop flag and the caller gets ``Interrupted`` from the pipeline at
    its next frame. Only handlers that already turn the signal into an interrupt are
    replaced (Python's default SIGINT handler, a Python SIGTERM handler such as the
    CLI's); a second signal while stopping raises at once. Main thread only.
    """

    def __init__(self, workers: Workers) -> None:
        self._workers = workers
        self._old: dict[int, Any] = {}
        self._hits = 0
        self._done = False

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            old = signal.getsignal(sig)
            if callable(old):
                try:
                    signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - embedded interpreters
                    continue
                self._old[sig] = old
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._done:  # left installed (see __exit__): the handler it replaced takes the signal
            before = self._old.get(signum)
            if callable(before):
                before(signum, frame)
                return
            raise KeyboardInterrupt
        self._hits += 1
        if self._hits > 1:
            raise KeyboardInterrupt
        log.info("signal %d: stopping, keeping the frames processed so far", signum)
        self._workers.fail(Interrupted(f"interrupted by {signal.Signals(signum).name}"))

    def __exit__(self, *exc: object) -> None:
        self._done = True
        kept = {}
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except ValueError:  # generator finalised off the main thread (by the garbage collector)
                # this handler stays installed; it hands the signal on to ``old`` from now on,
                # so a later Ctrl-C is not swallowed by a pipeline that has ended
                kept[sig] = old
        self._old = kept


class Pipeline:
    """Run frames through the stages on threads joined by bounded queues.

    Args:
        config: the run's settings.
        stages: prebuilt stages (default: built from ``config``).
        live: drop the oldest queued frame instead of blocking when processing falls
            behind (live sources); files block, which is lossless.
        on_drop: called once per frame dropped (``live``): the live metrics count there.
    """

    def __init__(
        self,
        config: PipelineConfig,
        stages: Stages | None = None,
        live: bool = False,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.stages = stages or Stages(config)
        self.live = live
        self.on_drop = on_drop
        self.stats = PipelineStats()
        self.workers: Workers | None = None
        # The anonymiser's report of the last run (method, parameters, per-track records).
        self.anonymizer_report: dict[str, Any] = {}
        # The tiled detector's decision and cost in the last run (--small-faces), or {}.
        self.detector_report: dict[str, Any] = {}

    def close(self) -> None:
        """Stop and join the stage threads of the current run (idempotent)."""
        if self.workers is not None:
            self.workers.join()

    def run(
        self, frames: Iterable[Frame], anonymizer: Any = None, still: bool = False
    ) -> Generator[Result, None, None]:
        """Yield ``Result``s in frame order.

        Every run gets a fresh anonymiser from the stages' factory (or ``anonymizer``, e.g.
        a k-same one built with the run's pool), so no per-track state crosses runs.

        Errors of any stage are re-raised here; SIGINT/SIGTERM (and ``KeyboardInterrupt``)
        end the run with ``Interrupted`` after every thread was joined. Closing the
        generator early stops and joins the threads too.
        """
        w = self.workers = Workers()
        start_run = getattr(self.stages.detector, "start_run", None)
        if callable(start_run):
            start_run(live=self.live)  # a scheduling detector (tiles) starts its schedule over
        qsize = self.config.io.queue_size
        q_read = w.channel(qsize, drop_oldest=self.live, on_drop=self.on_drop)
        q_det, q_anon = w.channel(qsize), w.channel(qsize)
        start = time.perf_counter()
        with _StopOnSignal(w):
            w.spawn("read", lambda: self._read(frames, q_read))
            w.spawn("detect", DetectScheduler(self.config, self.stages, self.stats).stage(q_read, q_det))
            session = AnonymizerSession(
                anonymizer if anonymizer is not None else self.stages.new_anonymizer(still=still)
            )
            w.spawn("anonymize", lambda: self._anonymize(q_det, q_anon, session))
            try:
                for item in q_anon:
                    self.stats.add(item.dets, item.failed)
                    yield item
            except KeyboardInterrupt:
                w.fail(Interrupted("interrupted"))
            except GeneratorExit:
                w.stop.set()
                raise
            finally:
                w.join()
                self.stats.seconds = time.perf_counter() - start
                self.stats.frames_dropped = w.dropped
                self.stats.frames_in = self.stats.frames + w.dropped
                report = getattr(self.stages.detector, "report", None)
                self.detector_report = report() if callable(report) else {}
        w.raise_error()

    # -- stages ------------------------------------------------------------------------
    def _read(self, frames: Iterable[Frame], q_out: Channel) -> None:
        st = self.stats.stage_seconds
        it = iter(frames)
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            finally:
                st["read"] += time.perf_counter() - t0
            q_out.put(frame)
            if q_out.stop.is_set():
                raise Stopped
        q_out.close()

    def _anonymize(self, q_in: Channel, q_out: Channel, session: AnonymizerSession) -> None:
        st = self.stats.stage_seconds
        on_error = self.config.io.on_error
        try:
            while True:
                item = q_in.get()
                if item is END:
                    self.anonymizer_report = session.close()
                    q_out.close()
                    return
                self._anonymize_one(item, session, on_error)
                st["anonymize"] += item.seconds
                q_out.put(item)
        finally:
            if not self.anonymizer_report:
                self.anonymizer_report = session.close() | {"incomplete": True}

    def _anonymize_one(self, item: Result, session: AnonymizerSession, on_error: str) -> None:
        t0 = time.perf_counter()
        info = FrameInfo(item.frame.index, item.frame.time)
        if item.failed is None:
            try:
                item.image = session(item.frame.image, item.dets, info)
            except Exception as exc:  # fail closed: mask the frame, never pass it raw
                log.debug("anonymiser failed on frame %d: %r", item.frame.index, exc)
                item.failed = f"anonymisation: {exc!r}"
        if item.failed is not None:
            session.skip(info)  # the tracker starts over too: per-track state ends here
            if on_error == "abort":
                raise AnonymizationError(f"frame {item.frame.index}: {item.failed} (--on-error abort)")
            item.image = mask_whole_frame(item.frame.image)
        item.seconds = time.perf_counter() - t0
