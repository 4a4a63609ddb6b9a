"""Live counters (the one source for the report and for Prometheus) and the metrics endpoint.

``LiveMetrics`` is plain Python, so live runs need no extra package; ``MetricsServer``
exposes it in the Prometheus text format with prometheus-client (``streamanon[live]``),
imported only when ``--metrics-port`` is given.
"""

from __future__ import annotations

import bisect
import logging
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)

# name -> help text; every counter is exported as streamanon_live_<name>_total.
COUNTERS: dict[str, str] = {
    "frames_in": "Frames decoded from the input",
    "frames_out": "Processed (anonymised or fully masked) frames written to the output",
    "frames_filler": "Frames written while the input was down (repeat of the last anonymised frame, or black)",
    "frames_dropped": "Frames dropped because processing fell behind (latest frame wins)",
    "frames_failed": "Frames that failed detection/anonymisation and were fully masked",
    "faces": "Face regions anonymised",
    "reconnects": "Successful reconnections to the input",
    "source_errors": "Input failures: open errors, timeouts (stalls), disconnects",
    "output_errors": "Output failures (the output is reopened for network targets)",
    "segments": "Output segment files completed",
}


class LiveMetrics:
    """Thread-safe counters, gauges and a latency histogram of one live run.

    Args:
        fps_window: seconds over which ``fps()`` averages written frames.
    """

    def __init__(self, fps_window: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self.source_up = 0
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._lat_sum = 0.0
        self._recent: deque[float] = deque(maxlen=10_000)
        self._window = fps_window
        self._out_times: deque[float] = deque()

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (one of ``COUNTERS``)."""
        with self._lock:
            self._counts[name] += n

    def count(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def frame_written(self, latency: float, now: float | None = None) -> None:
        """Record one processed frame written ``latency`` seconds after it was decoded."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._counts["frames_out"] += 1
            self._buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
            self._lat_sum += latency
            self._recent.append(latency)
            self._out_times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._out_times and self._out_times[0] < now - self._window:
            self._out_times.popleft()

    def fps(self, now: float | None = None) -> float:
        """Processed frames written per second over the last ``fps_window`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            return len(self._out_times) / self._window

    def latency_histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` buckets (Prometheus style) and the sum of latencies."""
        with self._lock:
            out, total = [], 0
            for le, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], self._buckets, strict=True):
                total += n
                out.append((le, total))
            return out, self._lat_sum

    def latency_summary(self) -> dict[str, float | None]:
        """Median, 95th percentile and maximum of the last 10 000 latencies, in seconds."""
        with self._lock:
            vals = sorted(self._recent)
        if not vals:
            return {"p50": None, "p95": None, "max": None}

        def q(p: float) -> float:
            return round(vals[min(len(vals) - 1, int(p * len(vals)))], 4)

        return {"p50": q(0.5), "p95": q(0.95), "max": round(vals[-1], 4)}

    def snapshot(self) -> dict[str, Any]:
        """Every counter, plus source state, fps and latency summary (for the report)."""
        counts = {name: self.count(name) for name in COUNTERS}
        return {**counts, "source_up": self.source_up, "fps": round(self.fps(), 2), "latency_s": self.latency_summary()}


class _Collector:
    """prometheus-client collector reading a ``LiveMetrics`` at scrape time."""

    def __init__(self, metrics: LiveMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        m = self.metrics
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"streamanon_live_{name}", doc, value=m.count(name))
        yield GaugeMetricFamily(
            "streamanon_live_fps", "Processed frames written per second (recent window)", value=m.fps()
        )
        yield GaugeMetricFamily("streamanon_live_source_up", "1 while the input is connected", value=m.source_up)
        buckets, total = m.latency_histogram()
        yield HistogramMetricFamily(
            "streamanon_live_latency_seconds",
            "Time from decoding a frame to writing its anonymised version",
            buckets=buckets,
            sum_value=total,
        )


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line."""


class MetricsServer:
    """Serve ``metrics`` at ``http://ADDR:PORT/metrics`` in a background thread.

    Raises:
        MissingDependencyError: prometheus-client is not installed.
        ConfigError: the address/port cannot be bound.
    """

    def __init__(self, metrics: LiveMetrics | Any, port: int, addr: str = "127.0.0.1") -> None:
        """``metrics``: a ``LiveMetrics``, or a prometheus-client collector of its own
        (``streams.py`` serves every feed's and their total this way)."""
        try:
            from prometheus_client import CollectorRegistry, make_wsgi_app
        except ImportError as exc:
            raise MissingDependencyError.for_extra("prometheus_client", "live") from exc
        registry = CollectorRegistry()
        registry.register(_Collector(metrics) if isinstance(metrics, LiveMetrics) else metrics)
        try:
            self._server = make_server(addr, port, make_wsgi_app(registry), _ThreadingWSGIServer, _QuietHandler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}") from exc
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="streamanon-metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", addr, self.port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
