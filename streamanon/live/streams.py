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
import math
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._workers import Stopped, Workers, each_or_alone
from ..anonymize import check_method
from ..audit import RunStats
from ..cliutil import ArgParser, setup_logging
from ..config import PipelineConfig
from ..errors import ConfigError, SourceError, StreamanonError
from ..io import redact
from ..io.hwaccel import choose_decode
from ..options import (
    BY_DEST,
    LIVE,
    OPTIONS,
    STREAMS,
    check_applies,
    config_from_values,
    options_for,
    unknown_keys,
    values_from_table,
    verify_every,
)
from ..options import defaults as option_defaults
from ..pipeline import Interrupted, Stages
from ..runner import write_report
from ..types import Detections
from ..verify import LiveVerifier, Verifier, VerifyingFactory, verify_line
from .cli import _redacted_logging, _summary
from .detsize import DetSizeChoice, fit_det_size
from .endpoints import InputSpec, OutputSpec, input_spec, output_spec
from .metrics import COUNTERS, LiveMetrics, MetricsServer
from .options import LiveOptions
from .runner import DEFAULT_FPS, LiveReport, LiveRunner, _signals_deferred

log = logging.getLogger(__name__)

# The file's top level: the options declared ``shared`` in streamanon.options (the one shared
# detector, the metrics server, the reports folder).
SHARED = tuple(o.key for o in OPTIONS if o.shared and STREAMS in o.modes)
PER_STREAM_ONLY = ("name", "input", "output", "report")
# Options of live feeds that a streams file refuses: small-face tiles keep a schedule per video
# (detect/tiles.py), which one detector shared by several feeds cannot; live mode's ``auto``
# runs the full frame only, as here.
UNSUPPORTED = tuple(o.key for o in OPTIONS if LIVE in o.modes and STREAMS not in o.modes)
# The options of a feed: in [defaults] or a [[stream]].
FEED = frozenset(o.dest for o in options_for([STREAMS]) if not o.shared)
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
STOP_S = 15.0  # per feed, to finalise its output after a stop request
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"streams config not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read streams config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


# -- the config file ------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamSpec:
    """One ``[[stream]]`` entry, read through the option schema (``streamanon.options``)."""

    name: str
    config: PipelineConfig
    opts: LiveOptions
    input: InputSpec
    output: OutputSpec
    report: Path | None
    raw: tuple[tuple[str, str], ...]  # the entry as given (defaults merged): SIGHUP compares these
    verify_every: int = 0  # verify = true / verify_every = N: check the frames sent (streamanon/verify.py)


@dataclass(frozen=True)
class StreamsConfig:
    """The whole file: shared detector settings, metrics, and the feeds."""

    detector: PipelineConfig  # the shared detector's settings (detect part)
    batch: int | None  # None: not set, CPU_BATCH or DEFAULT_BATCH by the backend (``default_batch``)
    max_wait_s: float
    metrics_port: int | None
    metrics_addr: str
    streams: tuple[StreamSpec, ...]


def _tables(path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """``[defaults]``, the ``[[stream]]`` entries and their names; refused keys raise ConfigError."""
    streams = data.pop("stream", None)
    defaults = data.pop("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: [defaults] must be a table")
    if not isinstance(streams, list) or not streams or not all(isinstance(s, dict) for s in streams):
        raise ConfigError(f"{path}: no [[stream]] entries (each needs input = ... and output = ...)")
    names = [str(s.get("name", f"stream-{i + 1}")) for i, s in enumerate(streams)]
    tables = [(data, "top level"), (defaults, "[defaults]")] + [
        (s, f"stream {n!r}") for s, n in zip(streams, names, strict=True)
    ]
    for table, where in tables:
        no = sorted(set(table) & set(UNSUPPORTED))
        if no:
            raise ConfigError(
                f"{path}: {where}: {', '.join(no)}: not available with streamanon streams "
                "(small-face tiles are scheduled per feed; the shared detector runs the full frame)"
            )
    unknown = [k for k in data if k not in SHARED]
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level setting{'s' * (len(unknown) > 1)} {unknown_keys(unknown, SHARED)}; "
            "per-stream options go in [defaults] or [[stream]]"
        )
    for table, where in tables[1:]:
        bad = sorted(set(table) & set(SHARED))
        if bad:
            raise ConfigError(
                f"{path}: {where}: {', '.join(bad)}: shared by all streams (one detector), set at the top level"
            )
    own = sorted(set(defaults) & set(PER_STREAM_ONLY))
    if own:
        raise ConfigError(f"{path}: [defaults]: {', '.join(own)}: set in each [[stream]]")
    return defaults, streams, names


def _own(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``[[stream]]``'s own option values."""
    return values_from_table({k: v for k, v in entry.items() if k not in PER_STREAM_ONLY}, where, FEED)


def _feed(
    entry: Mapping[str, Any], where: str, given: dict[str, Any], detect: dict[str, Any]
) -> tuple[PipelineConfig, LiveOptions, InputSpec, OutputSpec, int]:
    """One feed's settings from the options it is given (``[defaults]`` and its own) and the
    shared detector's; errors name ``where``."""
    values = {**option_defaults([STREAMS]), **given, **detect}
    try:
        check_method(values["method"])  # here, not when the feed starts
        check_applies(given, STREAMS, values["method"], toml=True)
        config = config_from_values(values)
        # the feed's own pipeline makes one detector call at a time; the shared detector has the workers
        config = dataclasses.replace(config, detect=dataclasses.replace(config.detect, workers=1))
        opts = LiveOptions.from_values(values, entry["input"])
        in_spec, out_spec = input_spec(entry["input"], opts), output_spec(entry["output"], opts)
        choose_decode(in_spec.hwaccel)  # hwaccel = "cuda" that cannot open: exit 2 at start, not per feed
        every = verify_every(values["verify"], values["verify_every"])
    except StreamanonError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    return config, opts, in_spec, out_spec, every


def parse_streams_config(path: Path, data: Mapping[str, Any] | None = None) -> StreamsConfig:
    """Read and validate ``path`` (or ``data`` already read from it) through ``streamanon.options``.

    Raises:
        ConfigError: a one-line message naming the file, the table (``[defaults]``, ``stream
            'NAME'``) and the option; every unknown key of a table at once.
    """
    data = dict(_load_toml(path) if data is None else data)
    defaults, streams, names = _tables(path, data)
    shared = values_from_table(data, f"{path}: top level", SHARED)
    try:
        detector = config_from_values({**shared, "small_faces": "off"})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    batch: int | None = shared.get("batch")
    max_wait = float(shared.get("max_wait_ms", 0.0)) / 1000
    if not 0 <= max_wait <= 1:
        raise ConfigError(f"{path}: invalid max_wait_ms {max_wait * 1000:g}: expected 0 to 1000")
    detector = dataclasses.replace(detector, detect=dataclasses.replace(detector.detect, batch=batch or DEFAULT_BATCH))
    report_dir = Path(str(shared["report_dir"])) if shared.get("report_dir") is not None else None
    # the one detector's settings reach every feed's config (the report says what ran)
    detect = {d: v for d, v in shared.items() if BY_DEST[d].field.startswith("detect.")}
    common = values_from_table(defaults, f"{path}: [defaults]", FEED)
    specs: list[StreamSpec] = []
    for entry, name in zip(streams, names, strict=True):
        where = f"{path}: stream {name!r}"
        if not NAME_RE.match(name):
            raise ConfigError(f"{where}: a name is 1-64 letters, digits, '.', '_' or '-'")
        if name in {s.name for s in specs}:
            raise ConfigError(f"{where}: two streams have this name")
        for key in ("input", "output"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f'{where}: needs {key} = "..."')
        config, opts, in_spec, out_spec, every = _feed(entry, where, {**common, **_own(entry, where)}, detect)
        report = (
            Path(str(entry["report"])) if "report" in entry else (report_dir / f"{name}.json" if report_dir else None)
        )
        raw = tuple(sorted((k, repr(v)) for k, v in {**defaults, **entry}.items()))
        specs.append(StreamSpec(name, config, opts, in_spec, out_spec, report, raw, every))
    outputs = [s.output.target for s in specs if s.output.kind != "stdout"]
    dup = sorted({t for t in outputs if outputs.count(t) > 1})
    if dup or sum(s.output.kind == "stdout" for s in specs) > 1:
        raise ConfigError(f"{path}: two streams write to the same output {redact(dup[0]) if dup else '-'}")
    addr = str(shared.get("metrics_addr", LiveOptions().metrics_addr))
    return StreamsConfig(detector, batch, max_wait, shared.get("metrics_port"), addr, tuple(specs))


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
