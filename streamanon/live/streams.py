"""``streamanon streams CONFIG.toml``: many live feeds in one process, one shared detector.

Why one process: a site's cameras share one detector model in memory, and frames of
several feeds that wait at the same moment are detected in one batched call, instead of
one process, model and set of inference threads per camera competing for the cores.
Everything that is per camera stays per camera: each feed is a ``LiveRunner`` (its own
reconnecting ``LiveSource``, ``Pipeline`` with its own tracker and a fresh anonymiser
from its stages' ``AnonymizerFactory``, and ``LiveOutput``) on a thread of its own, with
its own ``LiveMetrics`` and report. Its pipeline's detector is a client of the shared
``BatchingDetector``: a detector call that fails or times out raises in that feed's
pipeline, which masks the frame (fail closed), as with a detector of its own.

A feed that fails (its input gave up, its file output cannot be written) ends alone and
is reported; the others go on. SIGHUP re-reads the file: feeds added there start, feeds
removed stop (their outputs finalised), changed ones restart. SIGINT/SIGTERM stop every
feed, finalise every output and write every report (exit status 130). Without a
``det_size``, live mode's detection-size fit (``detsize.py``) runs once, on the first
frame, for the frame rate of all the feeds together: they share the detector's time.

The file::

    backend = "auto"        # shared: one detector (backend, precision, providers, threads,
    batch = 4               #   detect_workers, engine_dir, det_size, threshold), the most
    max_wait_ms = 0         #   frames per call (default 1 on the CPU, 4 on a GPU, at most a
                            #   TensorRT engine's max batch) and how long a call may wait,
    metrics_port = 9100     #   metrics_port/metrics_addr, report_dir
    [defaults]              # any option of the single-stream CLI, for every feed
    method = "solid"
    [[stream]]
    name = "door"           # default stream-N; reports and metric labels use it
    input = "rtsp://cam1/stream"
    output = "rtsp://relay:8554/door"
    read_timeout = 3        # any single-stream option by its long name (- or _)
    report = "door.json"    # default REPORT_DIR/NAME.json when report_dir is set
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..audit import RunStats
from ..cliutil import ArgParser, setup_logging
from ..errors import ConfigError, SourceError, StreamanonError
from ..io import redact
from ..pipeline import Interrupted, Stages
from ..runner import write_report
from ..verify import LiveVerifier, Verifier, VerifyingFactory, verify_line
from .cli import _redacted_logging, _summary
from .detsize import DetSizeChoice, fit_det_size
from .metrics import COUNTERS, LiveMetrics, MetricsServer
from .runner import DEFAULT_FPS, LiveReport, LiveRunner, _signals_deferred
from .shared_detector import BatchingDetector, default_batch, shared_batch
from .streams_config import StreamsConfig, StreamSpec, parse_streams_config

log = logging.getLogger(__name__)

STOP_S = 15.0  # per feed, to finalise its output after a stop request


# -- one feed ----------------------------------------------------------------------------------------
class _FeedRunner(LiveRunner):
    """``LiveRunner`` that another thread can stop (the main thread's KeyboardInterrupt
    reaches only the main thread): stopping its source ends the pipeline, and the runner
    then writes what was processed and finalises the output as at the end of an input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self._live_source: Any = None

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.stop_requested.set()
        if self._live_source is not None:
            self._live_source.stop()

    def _wait_connected(self, source: Any, t_start: float) -> Any:
        self._live_source = source
        if self.stop_requested.is_set():
            source.stop()
        return super()._wait_connected(source, t_start)


class Feed:
    """One ``[[stream]]`` running on its own thread; ``error`` is why it failed, if it did."""

    def __init__(
        self, spec: StreamSpec, detector: BatchingDetector, inference: Mapping[str, Any], verifier: Any = None
    ) -> None:
        self.spec = spec
        self.metrics = LiveMetrics()
        stages = Stages(spec.config, detector=detector)  # its own tracker and anonymiser factory
        self.live_verifier: Any = None
        if spec.verify_every and verifier is not None:  # the frames sent are checked (verify.py)
            self.live_verifier = LiveVerifier(verifier, spec.verify_every)
            wrapped: Any = VerifyingFactory(stages.anonymizer_factory, self.live_verifier)
            stages.anonymizer_factory = wrapped
        self._inference = inference  # the shared detector's, completed by its size fit at the first frame
        stages.inference = dict(inference)
        self.runner = _FeedRunner(spec.config, spec.opts, spec.input, spec.output, stages=stages, metrics=self.metrics)
        self.report: LiveReport | None = None
        self.error: BaseException | None = None
        # whether the feed had been asked to stop when it failed (its source then ends by
        # design); a feed that failed on its own stays failed when every feed is stopped
        self._stopped_first = False
        self.verify: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name=f"streamanon-feed-{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        self.thread.start()

    def stop(self, reason: str) -> None:
        """Ask the feed to end (``reason`` goes into its report's ``stopped_by``)."""
        self.runner.request_stop(reason)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        try:
            self.report = self.runner.run()
        except BaseException as exc:  # a feed failing never stops the others
            self._stopped_first = self.runner.stop_requested.is_set()
            self.error = exc
            self.report = getattr(exc, "report", None) or self.runner.report
            if not self._stopped_first:
                log.error("stream %s failed: %s", self.name, redact(str(exc)) or type(exc).__name__)
        finally:
            self._close_verifier()
            if self.report is not None and self.runner.stop_requested.is_set() and self.exit_code() == 0:
                self.report.stopped_by = self.runner.stop_reason
            self._write_report()

    def _close_verifier(self) -> None:
        if self.live_verifier is None:
            return
        verdict = self.live_verifier.close()
        self.verify = verdict.to_dict()
        if self.report is not None:
            self.report.anonymizer["verify"] = self.verify
        if not verdict.passed and self.error is None:
            self.error = verdict.error(self.spec.output.redacted)
            log.error("stream %s: %s", self.name, self.error)

    def _write_report(self) -> None:
        if self.report is not None:
            self.report.live_options["stream"] = self.name
            self.report.live_options["inference"] = dict(self._inference)
            self.report.live_options["final_state"] = self.state
            self.report.live_options["exit_code"] = self.exit_code()
        try:
            if self.spec.report is not None:
                self.spec.report.parent.mkdir(parents=True, exist_ok=True)
            write_report(self.spec.report, self.report, self.spec.config)
        except OSError as exc:
            log.error("stream %s: cannot write report %s: %s", self.name, self.spec.report, exc.strerror)
        except StreamanonError as exc:
            log.error("stream %s: %s", self.name, exc)

    def exit_code(self) -> int:
        """0, or the exit code of this feed's error.

        A source that ended because the feed was asked to stop (before it connected) is
        not a failure; frames masked for a failure are, as in a single-stream run.
        """
        err = self.error
        if err is None:
            return 0
        if self._stopped_first and isinstance(err, (SourceError, Interrupted)):
            return 0
        return int(getattr(err, "exit_code", 1))

    @property
    def state(self) -> str:
        """``running``, ``failed``, ``ended`` (its input ended) or ``stopped`` (asked to)."""
        if self.alive() and self.report is None:
            return "running"
        if self.exit_code():
            return "failed"
        if self.report is not None:
            return "ended" if self.report.stopped_by == "end" else "stopped"
        return "stopped" if self.runner.stop_requested.is_set() else "ended"


# -- metrics -------------------------------------------------------------------------------------------
class _StreamsCollector:
    """Per-feed ``streamanon_live_*{stream=...}`` and totals ``streamanon_streams_*``."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        feeds = self.streams.feeds_snapshot()
        every = self.streams.all_feeds()  # totals count feeds stopped by a reload too: they never decrease
        for name, doc in COUNTERS.items():
            per = CounterMetricFamily(f"streamanon_live_{name}", doc, labels=["stream"])
            for f in feeds:
                per.add_metric([f.name], f.metrics.count(name))
            yield per
            yield CounterMetricFamily(
                f"streamanon_streams_{name}", f"{doc}, all streams", value=sum(f.metrics.count(name) for f in every)
            )
        fps = GaugeMetricFamily("streamanon_live_fps", "Processed frames written per second", labels=["stream"])
        up = GaugeMetricFamily("streamanon_live_source_up", "1 while the input is connected", labels=["stream"])
        lat = HistogramMetricFamily(
            "streamanon_live_latency_seconds", "Time from decoding a frame to writing it", labels=["stream"]
        )
        for f in feeds:
            fps.add_metric([f.name], f.metrics.fps())
            up.add_metric([f.name], f.metrics.source_up)
            buckets, total = f.metrics.latency_histogram()
            lat.add_metric([f.name], buckets, total)
        yield fps
        yield up
        yield lat
        yield GaugeMetricFamily(
            "streamanon_streams_fps",
            "Processed frames written per second, all streams",
            value=sum(f.metrics.fps() for f in feeds),
        )
        yield GaugeMetricFamily("streamanon_streams_running", "Streams running", value=sum(f.alive() for f in feeds))
        stats = self.streams.detector.stats() if self.streams.detector is not None else {"calls": 0, "frames": 0}
        yield CounterMetricFamily(
            "streamanon_streams_detector_calls", "Calls of the shared detector", value=stats["calls"]
        )
        yield CounterMetricFamily(
            "streamanon_streams_detector_frames", "Frames the shared detector ran on", value=stats["frames"]
        )


# -- the process ---------------------------------------------------------------------------------------
class Streams:
    """Every feed of a ``StreamsConfig`` over one ``BatchingDetector``.

    Args:
        config: the parsed file.
        stages: the shared detector's stages (tests); default built from ``config.detector``.
    """

    def __init__(self, config: StreamsConfig, stages: Stages | None = None) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.feeds: dict[str, Feed] = {}
        self.finished: list[Feed] = []  # stopped or replaced feeds, for the summary
        self.detsize: DetSizeChoice | None = None
        self.verifier: Any = None  # verify.Verifier, loaded for the first feed with verify = true
        shared = stages or Stages(config.detector)  # the one model load
        self.inference: dict[str, Any] = dict(shared.inference)
        det = shared.detector
        if len(config.streams) >= 2:
            # several feeds: the shared detector's workers call at once where the backend can
            # (OpenVINO's async API; measured faster here, backends/openvino.py CONCURRENT_CALLS)
            switch = getattr(getattr(det, "backend", None), "use_concurrent_calls", None)
            if callable(switch):
                self.inference["concurrent_calls"] = bool(switch(True))
        batch = shared_batch(det, config.batch if config.batch is not None else default_batch(det))
        self.inference |= {"shared_detector": True, "batch": batch, "max_wait_ms": config.max_wait_s * 1000}
        fit = None
        if config.detector.detect.det_size is None and all(s.opts.drop for s in config.streams):
            fit = self._fit_for(det)
        self.detector: BatchingDetector | None = BatchingDetector(
            det, batch, config.max_wait_s, shared.detect_workers, fit
        )

    def _fit_for(self, det: Any) -> Callable[[int, int], None]:
        """Live mode's detection-size fit, for the frames of every feed together."""

        def fit(width: int, height: int) -> None:
            total_fps = sum(s.opts.fps or DEFAULT_FPS for s in self.config.streams)
            self.detsize = fit_det_size(det, width, height, total_fps)
            self.inference["detection"] = self.detsize.to_dict() | {"fps_all_streams": total_fps}

        return fit

    def feeds_snapshot(self) -> list[Feed]:
        with self._lock:
            return list(self.feeds.values())

    def start(self) -> None:
        for spec in self.config.streams:
            self._start(spec)

    def _start(self, spec: StreamSpec) -> None:
        assert self.detector is not None
        if spec.verify_every and self.verifier is None:
            self.verifier = Verifier()  # one set of dlib models for every feed (it checks one frame at a time)
        feed = Feed(spec, self.detector, self.inference, self.verifier)
        with self._lock:
            self.feeds[spec.name] = feed
        feed.start()
        log.info("stream %s: %s -> %s", spec.name, spec.input.redacted, spec.output.redacted)

    def running(self) -> bool:
        return any(f.alive() for f in self.feeds_snapshot())

    def reload(self, config: StreamsConfig) -> None:
        """Apply a re-read file: start new feeds, stop removed ones, restart changed ones.

        The shared settings (detector, metrics) stay as they were at start.
        """
        if config.detector != self.config.detector or config.batch != self.config.batch:
            log.warning("reload: shared detector settings changed; they apply at the next start")
        new = {s.name: s for s in config.streams}
        old = {name: f.spec for name, f in self.feeds.items()}
        gone = [n for n in old if n not in new or new[n].raw != old[n].raw]
        for name in gone:
            self._retire(name)
        added = [s for n, s in new.items() if n not in old or n in gone]
        for spec in added:
            try:
                self._start(spec)
            except StreamanonError as exc:  # e.g. its method's face bank cannot be read
                log.error("reload: stream %s not started: %s", spec.name, exc)
        self.config = dataclasses.replace(self.config, streams=config.streams)
        log.warning("reload: %d stream(s) started, %d stopped", len(added), len(gone))

    def _retire(self, name: str) -> None:
        with self._lock:
            feed = self.feeds.pop(name)
            self.finished.append(feed)
        feed.stop("removed")
        feed.thread.join(timeout=STOP_S)

    def stop(self, reason: str) -> None:
        """Stop every feed (outputs finalised, reports written), then the shared detector."""
        feeds = self.feeds_snapshot()
        for f in feeds:
            f.stop(reason)
        deadline = time.monotonic() + STOP_S
        for f in feeds:
            f.thread.join(timeout=max(0.1, deadline - time.monotonic()))
            if f.alive():
                log.error("stream %s did not stop within %.0f s", f.name, STOP_S)
        if self.detector is not None:
            self.detector.close()

    def all_feeds(self) -> list[Feed]:
        """Running feeds and those a reload stopped."""
        with self._lock:
            return self.finished + list(self.feeds.values())


def _summary_line(feed: Feed) -> str:
    state = feed.state if not feed.exit_code() else f"failed, exit {feed.exit_code()}"
    if feed.report is None:
        return f"{feed.name}: [{state}] no report"
    line = f"{feed.name}: [{state}] {_summary(feed.report)}"
    if feed.verify:
        line += f"; {verify_line(feed.verify)}"
    if feed.error is not None and feed.exit_code():
        line += f" ({redact(str(feed.error)) or type(feed.error).__name__})"
    return line


def _print_summary(streams: Streams, seconds: float) -> None:
    """A line per feed, the feeds' totals and the shared detector's calls, on stderr."""
    feeds = streams.all_feeds()
    for f in feeds:
        print(f"streamanon: {_summary_line(f)}", file=sys.stderr)
    total = RunStats.total((f.report.stats for f in feeds if f.report is not None), seconds)
    print(f"streamanon: all streams: {_totals_line(total)}", file=sys.stderr)
    stats = streams.detector.stats() if streams.detector is not None else {}
    print(
        f"streamanon: shared detector: {stats.get('frames', 0)} frames in {stats.get('calls', 0)} calls "
        f"(mean batch {stats.get('mean_batch', 0)})",
        file=sys.stderr,
    )


def _totals_line(t: RunStats) -> str:
    """The feeds' ``RunStats`` summed (the feeds stopped by a reload included)."""
    return (
        f"{t.frames_in} frames in, {t.frames_written} written, {t.frames_dropped} dropped, "
        f"{t.frames_failed} masked after a failure, {t.faces} faces in {t.seconds:.1f} s"
    )


@contextlib.contextmanager
def _sighup(flag: threading.Event) -> Iterator[None]:
    """SIGHUP sets ``flag`` (re-read the file) while the feeds run; main thread only."""
    old: Any = None
    try:
        old = signal.signal(signal.SIGHUP, lambda s, f: flag.set())
    except (ValueError, AttributeError, OSError):  # not the main thread, or no SIGHUP here
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGHUP, old)


def run_streams(path: Path, *, duration: float | None = None, quiet: bool = False, stages: Stages | None = None) -> int:
    """Run every stream of ``path`` until all have ended, ``duration`` elapsed, or SIGINT/SIGTERM.

    Returns the exit status: 130 when interrupted, else 0 if no feed failed, else the
    highest exit code of the failed feeds (3: an input failed or gave up after its
    retries, 5: an output, 8: frames were masked for a failure; ``streamanon.errors``),
    also when the failures came before the run was stopped (--duration, SIGINT).
    """
    config = parse_streams_config(path)
    streams = Streams(config, stages)
    try:
        server = (
            MetricsServer(_StreamsCollector(streams), config.metrics_port, config.metrics_addr)
            if config.metrics_port is not None
            else None
        )
    except BaseException:  # the port is taken: the shared detector's threads end too
        streams.stop("error")
        raise
    hup = threading.Event()
    interrupted = False
    reason = "end"
    t0 = time.monotonic()
    try:
        with _sighup(hup):
            streams.start()
            while streams.running():
                if duration is not None and time.monotonic() - t0 >= duration:
                    reason = "duration"
                    break
                if hup.wait(0.2):
                    hup.clear()
                    try:
                        streams.reload(parse_streams_config(path))
                    except StreamanonError as exc:
                        log.error("reload refused, streams unchanged: %s", exc)
    except KeyboardInterrupt:
        interrupted, reason = True, "interrupted"
        log.warning("stopping every stream and finalising the outputs")
    finally:
        with _signals_deferred():
            streams.stop(reason)
            if server is not None:
                server.close()
    feeds = streams.all_feeds()
    if not quiet:
        _print_summary(streams, time.monotonic() - t0)
    codes = [f.exit_code() for f in feeds]
    if feeds and all(codes):
        log.error("every stream failed (%d of %d)", len(codes), len(codes))
    if interrupted:
        return Interrupted.exit_code
    return max(codes or [0])


def main(argv: list[str]) -> int:
    """Entry point of ``streamanon streams``; returns the exit code."""
    p = ArgParser(
        prog="streamanon streams",
        description="Anonymise many live feeds in one process with one shared, batched detector "
        "(CONFIG.toml format, with a commented example: docs/live.md).",
    )
    p.add_argument("config", type=Path, help="TOML file: shared settings and one [[stream]] per feed")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop every stream after S seconds")
    p.add_argument("--check", action="store_true", help="validate the file and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary lines")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    ns = p.parse_args(argv)
    setup_logging(ns.verbose)
    if ns.duration is not None and ns.duration <= 0:
        raise ConfigError(f"invalid --duration {ns.duration!r}: expected a number > 0")
    if ns.check:
        cfg = parse_streams_config(ns.config)
        print(f"{ns.config}: {len(cfg.streams)} stream(s): {', '.join(s.name for s in cfg.streams)}")
        return 0
    with _redacted_logging():
        return run_streams(ns.config, duration=ns.duration, quiet=ns.quiet)
