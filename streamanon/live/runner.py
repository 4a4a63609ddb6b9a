"""The live loop: input → pipeline (latest frame wins) → output that never stops.

Threads: the ``LiveSource`` reader, the pipeline's stage threads (driven by a consumer
thread), and the main thread, which owns the output. The main thread writes each
processed frame as it arrives and, when none has arrived for ``stall_after`` seconds
(input down, reconnecting), keeps the output alive at the nominal rate with the last
anonymised frame or black. Nothing else ever reaches the output: no raw frame.

SIGINT/SIGTERM (``KeyboardInterrupt`` in the main thread) stop the input, write what the
pipeline already processed, finalise the output (segments renamed into place) and raise
``Interrupted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import queue
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._workers import END, Stopped, Workers
from ..audit import RunStats
from ..config import PipelineConfig
from ..errors import AnonymizationError, SourceError, StreamanonError
from ..io import SourceInfo, redact
from ..io import hwaccel as hw
from ..pipeline import Interrupted, Pipeline, Result, Stages
from ..runner import check_regions, package_versions
from .detsize import fit_det_size
from .endpoints import InputSpec, OutputSpec
from .metrics import LiveMetrics
from .options import LiveOptions
from .output import Geometry, LiveOutput, live_io_config
from .source import Backoff, LiveSource, Opener, open_input

log = logging.getLogger(__name__)

LIVE_QUEUE_SIZE = 1  # frames between pipeline stages: at most one frame waits for the detector
DRAIN_S = 5.0  # at most this long to write already-processed frames when stopping
DEFAULT_FPS = 25.0


@dataclass
class LiveReport:
    """Summary of a live run (``--report``); URLs are redacted, never pixels or boxes."""

    input: str
    output: str
    started: str = ""
    seconds: float = 0.0
    stopped_by: str = ""  # end | duration | interrupted | error
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    live_options: dict[str, Any] = field(default_factory=dict)
    anonymizer: dict[str, Any] = field(default_factory=dict)  # method, guarantee, per-track records
    small_faces: dict[str, Any] = field(default_factory=dict)  # tiling decision, grid, tile-only faces
    # --hwaccel/--encoder: what decodes and encodes the video, and why (io.hwaccel)
    video: dict[str, Any] = field(default_factory=dict)
    # the counters in the layout every report shares (file, folder totals, streams)
    stats: RunStats = field(default_factory=RunStats)

    def summary(self, config: PipelineConfig) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stats"] = self.stats.to_dict()
        d.update(kind="live", method=config.anonymize.method, settings=config.to_dict(), versions=package_versions())
        return d

    def to_json(self, config: PipelineConfig) -> str:
        return json.dumps({"summary": self.summary(config)}, indent=1)


def live_config(config: PipelineConfig) -> PipelineConfig:
    """``config`` for live feeds: one frame per detector call and short queues (latency)."""
    return dataclasses.replace(
        config,
        detect=dataclasses.replace(config.detect, batch=1),
        io=dataclasses.replace(config.io, queue_size=LIVE_QUEUE_SIZE, audio=False),
    )


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """While finalising outputs, a second Ctrl-C/SIGTERM must not cut a file in half."""
    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda s, f: log.warning("finalising the output; please wait"))
    except ValueError:  # not the main thread: nothing to defer
        pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class LiveRunner:
    """Run one live input to one output until it ends, fails, times out or is interrupted.

    Args:
        config: pipeline settings (adapted by ``live_config``).
        opts: live settings.
        in_spec: the input.
        out_spec: the output.
        stages: prebuilt stages (tests); default built from the config.
        metrics: counters to update (shared with a metrics server).
        opener: opens the input (tests pass fakes).
    """

    def __init__(
        self,
        config: PipelineConfig,
        opts: LiveOptions,
        in_spec: InputSpec,
        out_spec: OutputSpec,
        *,
        stages: Stages | None = None,
        metrics: LiveMetrics | None = None,
        opener: Opener = open_input,
    ) -> None:
        self.config = live_config(config)
        self.opts = opts
        self.in_spec = in_spec
        self.out_spec = out_spec
        self.stages = stages
        self.metrics = metrics or LiveMetrics()
        self.opener = opener
        options = dataclasses.asdict(opts)
        options["input_options"] = sorted({k for k, _ in opts.input_options})  # values may hold secrets
        self.report = LiveReport(input=in_spec.redacted, output=out_spec.redacted, live_options=options)
        # the consumer thread (pipeline -> results), its stop flag and its error, carried here
        self._workers = Workers()
        self._results = self._workers.channel(2, drain=True)

    # -- public ----------------------------------------------------------------------------
    def run(self) -> LiveReport:
        """Process until the input ends (``stopped_by="end"``) or ``--duration`` elapses.

        Raises:
            Interrupted: SIGINT/SIGTERM; the output was finalised. ``.report`` is attached.
            SourceError: the input failed and reconnection was off or gave up.
            SinkError: a file output could not be written.
            AnonymizationError: some frames were fully masked (output complete).
        """
        self.report.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t_start = time.monotonic()
        hw.choose_decode(self.in_spec.hwaccel)  # --hwaccel DEVICE that cannot open: exit 2 before anything
        stages = self.stages or Stages(self.config)  # load models before connecting
        self.report.live_options["inference"] = dict(stages.inference)
        backoff = Backoff(self.opts.backoff_initial, self.opts.backoff_max)
        source = self._new_source(backoff)
        on_drop = functools.partial(self.metrics.inc, "frames_dropped")  # counted once, where it happens
        pipe = self._pipe = Pipeline(self.config, stages, live=self.opts.drop, on_drop=on_drop)
        output: LiveOutput | None = None
        failure: BaseException | None = None
        try:
            source.start()
            info = self._wait_connected(source, t_start)
            if info is None:
                self.report.stopped_by = "duration"
            else:
                geometry = self._geometry(info)
                self._check_and_fit(stages, geometry)
                output = LiveOutput(
                    self.out_spec,
                    live_io_config(self.config.io, geometry.fps),
                    self.metrics,
                    segment=self.opts.segment,
                    reconnect=self.opts.reconnect,
                    backoff=backoff,
                )
                self._workers.spawn("live-pipeline", lambda: self._consume(pipe, source))
                self.report.stopped_by = self._pump(output, geometry, t_start)
        except KeyboardInterrupt:
            self.report.stopped_by = "interrupted"
        except BaseException as exc:
            failure = exc
            self.report.stopped_by = "error"
        finally:
            with _signals_deferred():
                self._shutdown(source, output, failure is None)
            self._fill_report(source, output, time.monotonic() - t_start)
        return self._outcome(source, failure)

    # -- steps -------------------------------------------------------------------------------
    def _new_source(self, backoff: Backoff) -> LiveSource:
        return LiveSource(
            self.in_spec,
            self.metrics,
            reconnect=self.opts.reconnect,
            max_retries=self.opts.max_retries,
            backoff=backoff,
            drop=self.opts.drop,
            loop=self.opts.loop,
            opener=self.opener,
        )

    def _check_and_fit(self, stages: Stages, geometry: Geometry) -> None:
        """Refuse a region outside the (upright) frame (exit 2 before any frame is written);
        fit the detection size to the frame rate when the user chose none (keep up)."""
        w, h = geometry.width, geometry.height
        check_regions(self.config, *((h, w) if geometry.rotation % 180 == 90 else (w, h)))
        if self.config.detect.det_size is None and self.opts.drop:
            choice = fit_det_size(stages.detector, geometry.width, geometry.height, geometry.fps)
            self.report.live_options["detection"] = choice.to_dict()

    def _wait_connected(self, source: LiveSource, t_start: float) -> SourceInfo | None:
        """The first connection's stream info; None if ``--duration`` ran out first."""
        while not source.wait_ready(0.1):
            if self.opts.duration and time.monotonic() - t_start >= self.opts.duration:
                return None
        if source.info is None:  # gave up before the first connection
            raise source.error or SourceError(f"cannot open {self.in_spec.redacted}", source=self.in_spec.redacted)
        return source.info

    def _geometry(self, info: SourceInfo) -> Geometry:
        fps = self.opts.fps
        if fps is None:
            rate = float(info.average_rate) if info.average_rate else 0.0
            fps = rate if 1.0 <= rate <= 120.0 else DEFAULT_FPS
        return Geometry(info.width, info.height, fps, info.rotation)

    def _consume(self, pipe: Pipeline, source: LiveSource) -> None:
        """Pipeline thread body: results into the bounded results queue. Its error is
        carried to the main thread (``Workers``); once the writer has gone (``Stopped``) the
        pipeline is closed and its frames are dropped, never written raw."""
        results = pipe.run(source.frames())
        try:
            for res in results:
                self._results.put(res)
        except Stopped:
            raise
        except BaseException:
            source.stop()
            raise
        finally:
            results.close()
        self._results.close()

    def _pump(self, output: LiveOutput, geometry: Geometry, t_start: float) -> str:
        """Write results as they come and filler while none come; returns why it stopped."""
        interval = 1.0 / geometry.fps
        last_image: NDArray[np.uint8] | None = None
        last_real = last_write = time.monotonic()
        lag = 0.0  # decode-to-write latency of the last real frame, shifts filler timestamps
        while True:
            now = time.monotonic()
            if self.opts.duration and now - t_start >= self.opts.duration:
                return "duration"
            try:
                item = self._results.get(timeout=min(interval, 0.05))
            except queue.Empty:
                item = None
            except Stopped:  # the pipeline failed: its error is raised by _outcome
                return "end"
            if item is END:
                return "end"
            now = time.monotonic()
            if item is not None:
                self._write_result(output, geometry, item)
                last_image = item.image
                last_real = last_write = time.monotonic()
                lag = max(0.0, last_write - item.frame.wallclock) if item.frame.wallclock else 0.0
            elif (
                self.opts.realtime  # stdin read at our pace: a slow frame is no stall
                and last_image is not None
                and now - last_real >= self.opts.stall_after
                and now - last_write >= interval
            ):
                filler = last_image if self.opts.on_stall == "repeat" else np.zeros_like(last_image)
                if output.write(filler, now - lag, geometry):
                    self.metrics.inc("frames_filler")
                last_write = now

    def _write_result(self, output: LiveOutput, geometry: Geometry, res: Result) -> None:
        t = res.frame.wallclock or time.monotonic()
        if output.write(res.image, t, geometry):
            self.metrics.frame_written(time.monotonic() - t)
        self.metrics.inc("faces", len(res.dets))
        if res.failed is not None:
            self.metrics.inc("frames_failed")

    def _shutdown(self, source: LiveSource, output: LiveOutput | None, ok: bool) -> None:
        """Stop the input, write what was already processed, finalise the output."""
        source.stop()
        deadline = time.monotonic() + DRAIN_S
        if output is not None and output.geometry is not None and ok:
            while time.monotonic() < deadline:
                try:
                    item = self._results.get(timeout=0.05)
                except queue.Empty:
                    if not self._workers.alive():  # the pipeline has ended (or never started)
                        break
                    continue
                except Stopped:
                    break
                if item is END:
                    break
                self._write_result(output, output.geometry, item)
        self._workers.join(timeout=max(1.0, deadline - time.monotonic()))
        self.metrics.source_up = 0
        if output is not None:
            try:
                output.close(commit=True)
            except StreamanonError as exc:
                if ok:
                    raise
                log.warning("could not finalise %s: %s", self.out_spec.redacted, redact(str(exc)))
        source.join(timeout=(self.in_spec.read_timeout or 1.0) + 1.0)

    def _fill_report(self, source: LiveSource, output: LiveOutput | None, seconds: float) -> None:
        self.report.seconds = round(seconds, 3)
        self.report.metrics = self.metrics.snapshot()
        self.report.events = [e.to_dict() for e in source.events]
        self.report.segments = list(output.segments) if output is not None else []
        pipe: Pipeline | None = getattr(self, "_pipe", None)
        stats = self.report.stats = RunStats.total([pipe.stats] if pipe is not None else [], seconds)
        m = self.report.metrics
        stats.frames_in, stats.frames_written = m["frames_in"], m["frames_out"]
        stats.frames_dropped = m["frames_dropped"]  # the input's queue and the pipeline's
        self.report.anonymizer = dict(pipe.anonymizer_report) if pipe is not None else {}
        self.report.small_faces = dict(pipe.detector_report) if pipe is not None else {}
        decode = source.info.decode if source.info is not None else None
        encode = output.encode if output is not None else None
        self.report.video = hw.HWChoice.report(decode, encode)

    def _outcome(self, source: LiveSource, failure: BaseException | None) -> LiveReport:
        report = self.report
        error: BaseException | None = failure or self._workers.error
        if error is None and report.stopped_by == "interrupted":
            error = Interrupted("interrupted")
        if error is None and source.error is not None:
            error = source.error
            report.stopped_by = "error"
        if error is None and report.metrics.get("frames_failed"):
            n, total = report.metrics["frames_failed"], report.metrics["frames_out"]
            error = AnonymizationError(f"{n} of {total} frames failed detection/anonymisation and were fully masked")
        if error is None:
            return report
        if isinstance(error, KeyboardInterrupt):
            error = Interrupted("interrupted")
        report.error = redact(str(error)) or type(error).__name__
        if isinstance(error, (StreamanonError, Interrupted)):
            setattr(error, "report", report)  # noqa: B010 - the convention of streamanon.runner
        raise error
