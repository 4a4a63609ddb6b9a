"""Command-line options of live mode (added to the main parser) and their validated form."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..io import hwaccel as hw
from ..io.source import drops_frames

OnStall = Literal["repeat", "black"]


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def add_live_options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Add the live-mode flags (used when the input or the output is a live URL, device or ``-``).

    Returns the flags' actions, for ``live_flags_given``.
    """
    d = LiveOptions()
    g = p.add_argument_group(
        "live feeds",
        "used when the input or output is rtsp://, rtmp://, http(s)://, udp://, srt://, /dev/video*, "
        "or - (stdin/stdout)",
    )
    actions: list[argparse.Action] = []

    def add(*names: str, **kwargs: Any) -> None:
        actions.append(g.add_argument(*names, **kwargs))

    add(
        "--rtsp-transport",
        choices=["tcp", "udp"],
        default=d.rtsp_transport,
        help="RTSP transport for input and output (default tcp)",
    )
    add(
        "--input-format",
        default=None,
        metavar="FMT",
        help="force the demuxer (v4l2, mpegts, mpjpeg, hls...); stdin defaults to mpegts",
    )
    add(
        "--input-option",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FFmpeg demuxer/protocol option, e.g. video_size=1280x720 (repeatable)",
    )
    add(
        "--output-format",
        default=None,
        metavar="FMT",
        help="force the muxer (default: rtsp, flv for rtmp://, mpegts for udp/srt/stdout)",
    )
    add(
        "--open-timeout",
        type=float,
        default=d.open_timeout,
        metavar="S",
        help=f"give up opening a live input after S seconds (default {d.open_timeout:g})",
    )
    add(
        "--read-timeout",
        type=float,
        default=d.read_timeout,
        metavar="S",
        help=f"a live input that sends nothing for S seconds is stalled: reconnect (default {d.read_timeout:g})",
    )
    add(
        "--reconnect",
        dest="reconnect",
        action="store_true",
        default=d.reconnect,
        help="reconnect with exponential backoff when the input drops or stalls (default)",
    )
    add("--no-reconnect", dest="reconnect", action="store_false", help="stop when the input drops or stalls")
    add(
        "--max-retries",
        type=int,
        default=d.max_retries,
        metavar="N",
        help="give up after N failed reconnection attempts in a row (default 0: never)",
    )
    add(
        "--reconnect-delay-max",
        type=float,
        default=d.backoff_max,
        metavar="S",
        help=f"longest wait between reconnection attempts (default {d.backoff_max:g})",
    )
    add(
        "--on-stall",
        choices=["repeat", "black"],
        default=d.on_stall,
        help="while the input is down, repeat the last anonymised frame or send black (default repeat)",
    )
    add(
        "--stall-after",
        type=float,
        default=d.stall_after,
        metavar="S",
        help=f"start filling the output after S seconds without a processed frame (default {d.stall_after:g})",
    )
    add(
        "--segment",
        type=float,
        default=None,
        metavar="S",
        help="write the output as S-second files; -o is a strftime pattern, e.g. 'out/%%Y%%m%%d-%%H%%M%%S.mp4'",
    )
    add("--fps", type=float, default=None, help="nominal output frame rate (default: the input's, else 25)")
    add("--duration", type=float, default=None, metavar="S", help="stop after S seconds and finalise the output")
    add("--loop", action="store_true", help="loop a file input that is streamed to a live output")
    add(
        "--no-drop",
        action="store_true",
        help="block instead of dropping frames when processing falls behind (stdin never drops unless --live)",
    )
    add(
        "--live",
        action="store_true",
        help="stdin is a real-time feed (e.g. ffmpeg reading a camera): drop frames to keep up, as for cameras",
    )
    add(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on PORT (needs streamanon[live])",
    )
    add(
        "--metrics-addr",
        default=d.metrics_addr,
        metavar="ADDR",
        help=f"address for --metrics-port (default {d.metrics_addr})",
    )
    return actions


def live_flags_given(ns: argparse.Namespace, actions: list[argparse.Action]) -> list[str]:
    """The live-only flags the user set (to refuse them on a file-to-file run).

    A flag counts when its value differs from the default; of a ``--x``/``--no-x`` pair
    sharing one value, only the one that stores that value.
    """
    given = set()
    for a in actions:
        value = getattr(ns, a.dest)
        if value != a.default and (a.const is None or value == a.const):
            given.add(a.option_strings[0])
    return sorted(given)


@dataclass(frozen=True)
class LiveOptions:
    """Validated live-mode settings (see ``add_live_options`` for their meaning)."""

    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    input_format: str | None = None
    input_options: tuple[tuple[str, str], ...] = ()
    output_format: str | None = None
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect: bool = True
    max_retries: int = 0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    on_stall: OnStall = "repeat"
    stall_after: float = 0.5
    segment: float | None = None
    fps: float | None = None
    duration: float | None = None
    loop: bool = False
    drop: bool = True
    #: The input produces frames in real time (a camera, a network feed, stdin with --live).
    #: Stdin read at our pace (a file piped in) is not: a slow frame there is no stall, so
    #: no filler is written for it.
    realtime: bool = True
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    hwaccel: str = hw.DEFAULT_HWACCEL  # --hwaccel / --encoder: flags of the main parser (io.hwaccel)
    encoder: str = hw.DEFAULT_ENCODER

    def __post_init__(self) -> None:
        hw.check_hwaccel(self.hwaccel)
        hw.check_encoder(self.encoder)
        checks = [
            (self.rtsp_transport in ("tcp", "udp"), "--rtsp-transport", self.rtsp_transport, "tcp or udp"),
            (self.open_timeout > 0, "--open-timeout", self.open_timeout, "a number > 0"),
            (self.read_timeout > 0, "--read-timeout", self.read_timeout, "a number > 0"),
            (self.max_retries >= 0, "--max-retries", self.max_retries, "an integer >= 0"),
            (
                0 < self.backoff_initial <= self.backoff_max,
                "--reconnect-delay-max",
                self.backoff_max,
                f"a number >= {self.backoff_initial}",
            ),
            (self.on_stall in ("repeat", "black"), "--on-stall", self.on_stall, "repeat or black"),
            (self.stall_after > 0, "--stall-after", self.stall_after, "a number > 0"),
            (self.segment is None or self.segment >= 0.5, "--segment", self.segment, "a number of seconds >= 0.5"),
            (self.fps is None or 0 < self.fps <= 240, "--fps", self.fps, "a number in (0, 240]"),
            (self.duration is None or self.duration > 0, "--duration", self.duration, "a number > 0"),
            (
                self.metrics_port is None or 0 <= self.metrics_port <= 65535,
                "--metrics-port",
                self.metrics_port,
                "a port number",
            ),
        ]
        for ok, name, value, allowed in checks:
            if not ok:
                raise ConfigError(f"invalid {name} {value!r}: expected {allowed}")

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> LiveOptions:
        """Build from the main parser's namespace (flags added by ``add_live_options``)."""
        realtime = drops_frames(getattr(ns, "input", None), getattr(ns, "live", False))
        return cls(
            rtsp_transport=ns.rtsp_transport,
            input_format=ns.input_format,
            input_options=tuple(ns.input_option),
            output_format=ns.output_format,
            open_timeout=ns.open_timeout,
            read_timeout=ns.read_timeout,
            reconnect=ns.reconnect,
            max_retries=ns.max_retries,
            backoff_max=ns.reconnect_delay_max,
            on_stall=ns.on_stall,
            stall_after=ns.stall_after,
            segment=ns.segment,
            fps=ns.fps,
            duration=ns.duration,
            loop=ns.loop,
            drop=not ns.no_drop and realtime,
            realtime=realtime,
            metrics_port=ns.metrics_port,
            metrics_addr=ns.metrics_addr,
            hwaccel=getattr(ns, "hwaccel", hw.DEFAULT_HWACCEL),
            encoder=getattr(ns, "encoder", hw.DEFAULT_ENCODER),
        )
