"""Live feeds: RTSP/HTTP/webcam/stdin in; RTSP/RTMP/UDP/SRT, rolling files or stdout out.

``run_live`` is what the CLI calls when the input or the output is live. The pieces are
usable on their own: ``LiveSource`` (reconnecting input), ``LiveOutput`` (low-latency,
atomic segments), ``LiveRunner`` (the loop that never writes a raw frame) and
``LiveMetrics``/``MetricsServer`` (Prometheus).
"""

from __future__ import annotations

from .cli import run_live
from .endpoints import InputSpec, OutputSpec, input_spec, output_spec
from .metrics import LiveMetrics, MetricsServer
from .options import LiveOptions, add_live_options
from .output import LiveOutput
from .runner import LiveReport, LiveRunner
from .source import Backoff, LiveSource

__all__ = [
    "Backoff",
    "InputSpec",
    "LiveMetrics",
    "LiveOptions",
    "LiveOutput",
    "LiveReport",
    "LiveRunner",
    "LiveSource",
    "MetricsServer",
    "OutputSpec",
    "add_live_options",
    "input_spec",
    "output_spec",
    "run_live",
]
