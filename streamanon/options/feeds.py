"""The commands' own options (``--start``, ``--review``), verification, live feeds and the
streams file's top level. Part of ``streamanon.options`` (its ``OPTIONS``)."""

from __future__ import annotations

from ..errors import VerificationError
from .option import _L, _T, _V, BATCH, FEEDS, FILE, FOLDER, LIVE, STREAMS, Option, _l, _o

#: The run command's own (group ``""``).
RUN_OPTIONS: tuple[Option, ...] = (
    # -- the command's own ------------------------------------------------------------------------
    _o(
        "--start",
        "process from this time on (seconds, MM:SS or HH:MM:SS.ms; videos only): the output holds only "
        "the span, audio included, and starts at 0",
        "",
        kind="time",
        default=0.0,
        metavar="TIME",
        modes=frozenset({FILE, FOLDER}),
    ),
    _o(
        "--review",
        "output NOT anonymised: draw boxes, scores and track ids to check a run (files only; NAME_review.EXT)",
        "",
        kind="bool",
        modes=frozenset({FILE, FOLDER}),
    ),
)

FEED_OPTIONS: tuple[Option, ...] = (
    # -- verification -----------------------------------------------------------------------------
    _o(
        "--verify",
        "after writing, scan the output with another detector (dlib HOG + CNN) and compare each face "
        "found with the input's face there (dlib's recogniser); a match exits with code "
        f"{VerificationError.exit_code} (pip install 'streamanon[eval]')",
        _V,
        kind="bool",
        modes=frozenset({FILE, FOLDER, BATCH, STREAMS}),
    ),
    _o(
        "--verify-every",
        "--verify every N-th frame only (implies --verify; default: every frame; 0: no verification)",
        _V,
        kind="int",
        default=None,
        metavar="N",
        modes=frozenset({FILE, FOLDER, BATCH, STREAMS}),
    ),
    # -- live feeds -------------------------------------------------------------------------------
    _o(
        "--rtsp-transport",
        "RTSP transport for input and output (default tcp)",
        _L,
        "live.rtsp_transport",
        choices=("tcp", "udp"),
        modes=FEEDS,
    ),
    _o(
        "--input-format",
        "force the demuxer (v4l2, mpegts, mpjpeg, hls...); stdin defaults to mpegts",
        _L,
        "live.input_format",
        metavar="FMT",
        modes=FEEDS,
    ),
    _o(
        "--input-option",
        "FFmpeg demuxer/protocol option, e.g. video_size=1280x720 (repeatable)",
        _L,
        "live.input_options",
        kind="kv",
        repeat=True,
        metavar="KEY=VALUE",
        modes=FEEDS,
    ),
    _o(
        "--output-format",
        "force the muxer (default: rtsp, flv for rtmp://, mpegts for udp/srt/stdout)",
        _L,
        "live.output_format",
        metavar="FMT",
        modes=FEEDS,
    ),
    _o(
        "--open-timeout",
        f"give up opening a live input after S seconds (default {_l.open_timeout:g})",
        _L,
        "live.open_timeout",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--read-timeout",
        f"a live input that sends nothing for S seconds is stalled: reconnect (default {_l.read_timeout:g})",
        _L,
        "live.read_timeout",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--reconnect",
        "reconnect with exponential backoff when the input drops or stalls (default)",
        _L,
        "live.reconnect",
        kind="bool",
        negation=("--no-reconnect", "stop when the input drops or stalls"),
        modes=FEEDS,
    ),
    _o(
        "--max-retries",
        "give up after N failed reconnection attempts in a row (default 0: never)",
        _L,
        "live.max_retries",
        kind="int",
        metavar="N",
        modes=FEEDS,
    ),
    _o(
        "--reconnect-delay-max",
        f"longest wait between reconnection attempts (default {_l.backoff_max:g})",
        _L,
        "live.backoff_max",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--on-stall",
        "while the input is down, repeat the last anonymised frame or send black (default repeat)",
        _L,
        "live.on_stall",
        choices=("repeat", "black"),
        modes=FEEDS,
    ),
    _o(
        "--stall-after",
        f"start filling the output after S seconds without a processed frame (default {_l.stall_after:g})",
        _L,
        "live.stall_after",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--segment",
        "write the output as S-second files; -o is a strftime pattern, e.g. 'out/%%Y%%m%%d-%%H%%M%%S.mp4'",
        _L,
        "live.segment",
        kind="float",
        metavar="S",
        modes=FEEDS,
    ),
    _o(
        "--fps",
        "nominal output frame rate (default: the input's, else 25)",
        _L,
        "live.fps",
        kind="float",
        modes=FEEDS,
    ),
    _o(
        "--duration",
        "files: process this long from --start (the output holds only the span); live feeds: stop after "
        "this long and finalise the output (seconds, MM:SS or HH:MM:SS.ms)",
        _L,
        "live.duration",
        kind="time",
        metavar="TIME",
        modes=frozenset({FILE, FOLDER, LIVE, STREAMS}),
    ),
    _o("--loop", "loop a file input that is streamed to a live output", _L, "live.loop", kind="bool", modes=FEEDS),
    _o(
        "--no-drop",
        "block instead of dropping frames when processing falls behind (stdin never drops unless --live)",
        _L,
        kind="bool",
        modes=FEEDS,
    ),
    _o(
        "--live",
        "stdin is a real-time feed (e.g. ffmpeg reading a camera): drop frames to keep up, as for cameras",
        _L,
        kind="bool",
        modes=FEEDS,
    ),
    _o(
        "--metrics-port",
        "serve Prometheus metrics on PORT (needs streamanon[live])",
        _L,
        "live.metrics_port",
        kind="int",
        metavar="PORT",
        modes=FEEDS,
        shared=True,
    ),
    _o(
        "--metrics-addr",
        f"address for --metrics-port (default {_l.metrics_addr})",
        _L,
        "live.metrics_addr",
        metavar="ADDR",
        modes=FEEDS,
        shared=True,
    ),
    # -- streams file only (top level) -------------------------------------------------------------
    _o(
        "--max-wait-ms",
        "how long a shared detector call waits for a batch to fill (0 to 1000; default 0: never waits)",
        _T,
        kind="float",
        default=0.0,
        modes=frozenset({STREAMS}),
        shared=True,
    ),
    _o(
        "--report-dir",
        "each feed's JSON report as REPORT_DIR/NAME.json (unless its [[stream]] sets report)",
        _T,
        default=None,
        modes=frozenset({STREAMS}),
        shared=True,
    ),
)
