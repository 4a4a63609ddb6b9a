"""What a live input or output location is, and the FFmpeg format/options to open it with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, SourceOpenError
from ..io import is_video_path, redact
from ..io.hwaccel import DEFAULT_ENCODER, DEFAULT_HWACCEL
from .options import LiveOptions

InputKind = Literal["network", "device", "stdin", "file"]
OutputKind = Literal["stream", "stdout", "file", "segments"]

# Network schemes an output can push to, with the muxer each needs.
_OUTPUT_FORMATS = {
    "rtsp://": "rtsp",
    "rtsps://": "rtsp",
    "rtmp://": "flv",
    "rtmps://": "flv",
    "udp://": "mpegts",
    "srt://": "mpegts",
    "tcp://": "mpegts",
}
_NETWORK_INPUTS = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass(frozen=True)
class InputSpec:
    """How to open a live input.

    Attributes:
        uri: what FFmpeg opens (``pipe:0`` for stdin); may hold credentials: log ``redacted``.
        kind: ``network`` (reconnects), ``device`` (webcam), ``stdin`` or ``file`` (paced).
        fmt: forced demuxer or ``None`` to probe.
        options: demuxer/protocol options.
        open_timeout: seconds to wait for a network/device input to open, else ``None``.
        read_timeout: seconds without data after which the input is stalled, else ``None``.
        hwaccel: ``--hwaccel`` (``io.hwaccel``).
    """

    uri: str
    kind: InputKind
    fmt: str | None
    options: dict[str, str]
    open_timeout: float | None = None
    read_timeout: float | None = None
    hwaccel: str = DEFAULT_HWACCEL

    @property
    def timeout(self) -> tuple[float, float] | None:
        """``(open_s, read_s)`` for PyAV. FFmpeg's first interrupt of a read only flushes
        the frame its parser holds back (it waits for the next frame's start); the second
        fails. Interrupting every ``read_timeout / 2`` therefore detects a stall at most
        ``read_timeout`` after the last data (and never before half of that)."""
        if self.open_timeout is None or self.read_timeout is None:
            return None
        return self.open_timeout, self.read_timeout / 2

    @property
    def redacted(self) -> str:
        return redact(self.uri)

    @property
    def reconnectable(self) -> bool:
        """Whether an end of stream means "dropped" (reconnect) rather than "finished"."""
        return self.kind in ("network", "device")


@dataclass(frozen=True)
class OutputSpec:
    """Where anonymised frames go.

    Attributes:
        target: URL, ``pipe:1``, file path, or strftime pattern (``segments``).
        kind: ``stream`` (network push; reconnects), ``stdout``, ``file`` or ``segments``.
        fmt: muxer (``None`` for files: chosen by extension).
        options: muxer/protocol options.
        encoder: ``--encoder`` (``io.hwaccel``).
    """

    target: str
    kind: OutputKind
    fmt: str | None
    options: dict[str, str]
    encoder: str = DEFAULT_ENCODER

    @property
    def redacted(self) -> str:
        return redact(self.target)


def input_spec(uri: str, opts: LiveOptions, hwaccel: str = DEFAULT_HWACCEL) -> InputSpec:
    """Classify ``uri`` and pick demuxer options for low latency and bounded waits;
    ``hwaccel``: the decode device (``PipelineConfig.io.hwaccel``)."""
    lower = uri.lower()
    options: dict[str, str] = {}
    fmt = opts.input_format
    timeouts: tuple[float | None, float | None] = (None, None)
    if uri == "-":
        kind: InputKind = "stdin"
        uri, fmt = "pipe:0", fmt or "mpegts"
    elif lower.startswith(_NETWORK_INPUTS):
        kind = "network"
        timeouts = (opts.open_timeout, opts.read_timeout)
        if lower.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = opts.rtsp_transport
    elif uri.startswith("/dev/video"):
        kind = "device"
        fmt = fmt or "v4l2"
        timeouts = (opts.open_timeout, opts.read_timeout)
    else:
        kind = "file"
        if not Path(uri).is_file():
            raise SourceOpenError(f"input not found: {uri}", source=uri)
    options.update(dict(opts.input_options))
    return InputSpec(uri, kind, fmt, options, *timeouts, hwaccel=hwaccel)


def output_spec(target: str | None, opts: LiveOptions, encoder: str = DEFAULT_ENCODER) -> OutputSpec:
    """Classify the ``-o`` target of a live run; ``encoder``: ``PipelineConfig.io.encoder``."""
    if not target:
        raise ConfigError(
            "a live run needs -o OUTPUT: a file, a strftime pattern with --segment, "
            "rtsp://, rtmp://, udp://, srt://, or - for MPEG-TS on stdout"
        )
    lower = target.lower()
    timeout_us = str(int(opts.open_timeout * 1e6))
    if target == "-":
        spec = OutputSpec("pipe:1", "stdout", opts.output_format or "mpegts", {"flush_packets": "1"})
    elif lower.startswith(tuple(_OUTPUT_FORMATS)):
        fmt = next(f for s, f in _OUTPUT_FORMATS.items() if lower.startswith(s))
        options = {"flush_packets": "1"}
        if fmt == "rtsp":
            # the RTSP muxer's socket I/O timeout (microseconds): a dead server cannot hang us
            options.update(rtsp_transport=opts.rtsp_transport, timeout=timeout_us)
        else:
            options["rw_timeout"] = timeout_us
        spec = OutputSpec(target, "stream", opts.output_format or fmt, options)
    elif lower.startswith(("http://", "https://")) or target.startswith("/dev/"):
        raise ConfigError(
            f"{redact(target)} is not supported as a live output: use a file, rtsp://, rtmp://, udp://, srt:// or -"
        )
    else:
        if not is_video_path(target):
            raise ConfigError(f"output {target} needs a video extension (.mp4, .mkv, .ts...)")
        kind: OutputKind = "segments" if opts.segment else "file"
        spec = OutputSpec(target, kind, opts.output_format, {})
    if opts.segment and spec.kind != "segments":
        raise ConfigError("--segment needs a file output (-o 'out/%Y%m%d-%H%M%S.mp4')")
    return dataclasses.replace(spec, encoder=encoder)
