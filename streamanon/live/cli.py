"""``run_live``: the CLI entry of live mode (called by ``streamanon.cli`` for live inputs/outputs)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from ..config import PipelineConfig
from ..io import redact
from ..runner import write_report
from .endpoints import input_spec, output_spec
from .metrics import LiveMetrics, MetricsServer
from .options import LiveOptions
from .runner import LiveReport, LiveRunner

log = logging.getLogger(__name__)


class RedactFilter(logging.Filter):
    """Rewrite ``scheme://user:pass@`` in any log record (FFmpeg's included) to ``***@``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


@contextlib.contextmanager
def _redacted_logging() -> Iterator[None]:
    handlers = list(logging.getLogger().handlers)
    filt = RedactFilter()
    for h in handlers:
        h.addFilter(filt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(filt)


def _summary(report: LiveReport) -> str:
    m = report.metrics
    lat = m.get("latency_s", {}).get("p50")
    lat_s = f", latency p50 {lat * 1000:.0f} ms" if lat is not None else ""
    segs = f", {len(report.segments)} segments" if report.segments else ""
    return (
        f"{report.input} -> {report.output}: {m.get('frames_out', 0)} frames, "
        f"{m.get('frames_filler', 0)} filler, {m.get('frames_dropped', 0)} dropped, {m.get('faces', 0)} faces, "
        f"{m.get('reconnects', 0)} reconnects{segs}{lat_s}"
    )


def run_live(ns: argparse.Namespace, config: PipelineConfig) -> int:
    """Anonymise a live input (or stream a file to a live output) until it ends or is stopped.

    Args:
        ns: the main parser's namespace (``input``, ``output``, ``report``, ``quiet`` and
            the flags of ``add_live_options``).
        config: the pipeline settings built from the common flags.

    Returns:
        0 when the input ended or ``--duration`` elapsed.

    Raises:
        StreamanonError subclasses (the CLI maps them to exit codes) and ``Interrupted``
        on SIGINT/SIGTERM, after the output was finalised and the report written.
    """
    opts = LiveOptions.from_namespace(ns)
    in_spec = input_spec(ns.input, opts, config.io.hwaccel)
    out_spec = output_spec(ns.output, opts, config.io.encoder)
    metrics = LiveMetrics()
    with _redacted_logging():
        server = MetricsServer(metrics, opts.metrics_port, opts.metrics_addr) if opts.metrics_port is not None else None
        try:
            runner = LiveRunner(config, opts, in_spec, out_spec, metrics=metrics)
            try:
                report = runner.run()
            except Exception as exc:  # Interrupted included: report what was done, then re-raise
                write_report(ns.report, getattr(exc, "report", None), config)
                if not ns.quiet and getattr(exc, "report", None) is not None:
                    print(f"streamanon: {_summary(exc.report)}", file=sys.stderr)  # type: ignore[attr-defined]
                raise
        finally:
            if server is not None:
                server.close()
    write_report(ns.report, report, config)
    if not ns.quiet:
        print(f"streamanon: {_summary(report)}", file=sys.stderr)
    return 0
