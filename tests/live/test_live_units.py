"""Live mode pieces without a server: options, endpoints, backoff, metrics, redaction."""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.request
from pathlib import Path

import pytest

from streamanon.errors import ConfigError, MissingDependencyError, SourceOpenError
from streamanon.live import Backoff, LiveMetrics, LiveOptions, MetricsServer, add_live_options, input_spec, output_spec
from streamanon.live.cli import RedactFilter
from streamanon.live.metrics import LATENCY_BUCKETS


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_live_options(p)
    return p.parse_args(list(argv))


def test_options_defaults_round_trip_through_the_parser() -> None:
    assert LiveOptions.from_namespace(_parse()) == LiveOptions()


def test_options_from_flags() -> None:
    o = LiveOptions.from_namespace(
        _parse(
            "--rtsp-transport", "udp", "--open-timeout", "3", "--read-timeout", "1.5", "--no-reconnect",
            "--max-retries", "4", "--on-stall", "black", "--segment", "60", "--fps", "15", "--no-drop",
            "--input-option", "video_size=640x480", "--metrics-port", "0",
        )
    )  # fmt: skip
    assert (o.rtsp_transport, o.open_timeout, o.read_timeout, o.reconnect, o.max_retries) == ("udp", 3, 1.5, False, 4)
    assert (o.on_stall, o.segment, o.fps, o.drop, o.metrics_port) == ("black", 60, 15, False, 0)
    assert o.input_options == (("video_size", "640x480"),)


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"read_timeout": 0}, "--read-timeout"),
        ({"open_timeout": -1}, "--open-timeout"),
        ({"max_retries": -1}, "--max-retries"),
        ({"segment": 0.1}, "--segment"),
        ({"fps": 0}, "--fps"),
        ({"backoff_max": 0.1}, "--reconnect-delay-max"),
        ({"metrics_port": 70000}, "--metrics-port"),
    ],
)
def test_options_reject_bad_values_naming_the_flag(kw: dict[str, float], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        LiveOptions(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "kind", "fmt", "opened"),
    [
        ("rtsp://cam.local/stream", "network", None, "rtsp://cam.local/stream"),
        ("http://cam.local/video.mjpg", "network", None, "http://cam.local/video.mjpg"),
        ("https://example.org/live/index.m3u8", "network", None, "https://example.org/live/index.m3u8"),
        ("/dev/video0", "device", "v4l2", "/dev/video0"),
        ("-", "stdin", "mpegts", "pipe:0"),
    ],
)
def test_input_spec_classifies_live_inputs(uri: str, kind: str, fmt: str | None, opened: str) -> None:
    spec = input_spec(uri, LiveOptions(open_timeout=4, read_timeout=3))
    assert (spec.kind, spec.fmt, spec.uri) == (kind, fmt, opened)
    if kind in ("network", "device"):
        assert spec.reconnectable
        assert spec.timeout == (4, 1.5)  # FFmpeg is interrupted every read_timeout / 2
    else:
        assert spec.timeout is None and not spec.reconnectable


def test_input_spec_rtsp_transport_and_user_options() -> None:
    spec = input_spec("rtsp://h/x", LiveOptions(rtsp_transport="udp", input_options=(("max_delay", "0"),)))
    assert spec.options == {"rtsp_transport": "udp", "max_delay": "0"}
    assert "rtsp_transport" not in input_spec("http://h/x.mjpg", LiveOptions()).options


def test_input_spec_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match="not found"):
        input_spec(str(tmp_path / "missing.mp4"), LiveOptions())


@pytest.mark.parametrize(
    ("target", "kind", "fmt"),
    [
        ("rtsp://srv:8554/anon", "stream", "rtsp"),
        ("rtmp://srv/live/key", "stream", "flv"),
        ("udp://239.0.0.1:1234", "stream", "mpegts"),
        ("srt://srv:9000", "stream", "mpegts"),
        ("-", "stdout", "mpegts"),
        ("out.mp4", "file", None),
    ],
)
def test_output_spec_formats(target: str, kind: str, fmt: str | None) -> None:
    spec = output_spec(target, LiveOptions())
    assert (spec.kind, spec.fmt) == (kind, fmt)


def test_output_spec_network_outputs_have_io_timeouts() -> None:
    assert output_spec("rtsp://h/x", LiveOptions(open_timeout=2)).options["timeout"] == "2000000"
    assert output_spec("rtmp://h/x", LiveOptions(open_timeout=2)).options["rw_timeout"] == "2000000"


def test_output_spec_segments_and_errors() -> None:
    assert output_spec("out/%Y%m%d-%H%M%S.mp4", LiveOptions(segment=10)).kind == "segments"
    with pytest.raises(ConfigError, match="needs -o"):
        output_spec(None, LiveOptions())
    with pytest.raises(ConfigError, match="--segment needs a file"):
        output_spec("rtsp://h/x", LiveOptions(segment=10))
    with pytest.raises(ConfigError, match="not supported as a live output"):
        output_spec("http://user:pw@h/x", LiveOptions())
    with pytest.raises(ConfigError, match="video extension"):
        output_spec("out.txt", LiveOptions())


def test_specs_redact_credentials() -> None:
    spec = input_spec("rtsp://admin:hunter2@cam/x", LiveOptions())
    assert spec.uri == "rtsp://admin:hunter2@cam/x"  # FFmpeg needs them
    assert "hunter2" not in spec.redacted and "admin" not in spec.redacted
    assert "hunter2" not in output_spec("rtmp://u:hunter2@h/live", LiveOptions()).redacted


def test_backoff_doubles_up_to_the_cap() -> None:
    b = Backoff(0.5, 4.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_metrics_histogram_fps_and_drops() -> None:
    m = LiveMetrics(fps_window=2.0)
    for i, lat in enumerate([0.01, 0.06, 0.06, 0.4, 9.0]):
        m.frame_written(lat, now=100.0 + i * 0.1)
    m.inc("frames_dropped", 2)  # the source's queue
    m.inc("frames_dropped", 5)  # the pipeline's: one counter, each drop added once
    buckets, total = m.latency_histogram()
    cum = dict(buckets)
    assert cum[str(LATENCY_BUCKETS[0])] == 1 and cum["0.075"] == 3 and cum["0.5"] == 4 and cum["+Inf"] == 5
    assert total == pytest.approx(9.53)
    assert m.count("frames_out") == 5 and m.count("frames_dropped") == 7
    assert m.fps(now=100.5) == pytest.approx(2.5)  # 5 frames in the last 2 s
    assert m.fps(now=103.0) == 0.0
    assert m.latency_summary() == {"p50": 0.06, "p95": 9.0, "max": 9.0}


def test_metrics_server_serves_prometheus_text() -> None:
    m = LiveMetrics()
    m.inc("frames_in", 7)
    m.frame_written(0.12)
    m.source_up = 1
    server = MetricsServer(m, 0)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
    finally:
        server.close()
    assert "streamanon_live_frames_in_total 7.0" in text
    assert "streamanon_live_frames_out_total 1.0" in text
    assert 'streamanon_live_latency_seconds_bucket{le="0.15"} 1.0' in text
    assert "streamanon_live_source_up 1.0" in text


def test_metrics_server_port_in_use_is_a_config_error() -> None:
    first = MetricsServer(LiveMetrics(), 0)
    try:
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            MetricsServer(LiveMetrics(), first.port)
    finally:
        first.close()


def test_metrics_server_without_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"streamanon\[live\]"):
        MetricsServer(LiveMetrics(), 0)


def test_redact_filter_rewrites_credentials_in_any_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("libav.rtsp")
    caplog.handler.addFilter(RedactFilter())
    with caplog.at_level(logging.WARNING, logger="libav.rtsp"):
        logger.warning("method DESCRIBE failed for %s", "rtsp://admin:hunter2@10.0.0.2/x")
    assert "hunter2" not in caplog.text and "rtsp://***@10.0.0.2/x" in caplog.text


def test_face_checker_accepts_a_mask_over_the_code_but_not_a_hidden_raw_face() -> None:
    """The live tests' privacy check itself: a code hidden by a mask is checked against every frame."""
    import numpy as np
    from live_helpers import CELL, CodedClip, FaceChecker, burn_code

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (256, 384, 3), dtype=np.uint8) for _ in range(4)]
    boxes = [(150 + 4 * i, 60, 230 + 4 * i, 160) for i in range(4)]
    crops = [f[y0:y1, x0:x1].copy() for f, (x0, y0, x1, y1) in zip(frames, boxes, strict=True)]
    clip = CodedClip(Path("unused.mp4"), 4, 4, 25, boxes, crops, (384, 256))
    checker = FaceChecker(clip)

    def masked(i: int, top: int) -> np.ndarray:
        img = burn_code(frames[i], i + 1024)  # bit 10 set: a mask over its cell breaks the parity
        img[top:200, 120:280] = 0  # the solid mask; top=0 covers code cells 8..17
        return img

    checker.check(masked(1, 30), "code readable")
    checker.check(masked(2, 0), "mask over the code")
    raw = burn_code(frames[3], 3 + 1024)
    raw[:CELL, 8 * CELL : 18 * CELL] = 0  # code hidden, face raw
    checker.check(raw, "hidden code, raw face")
    checker.check(rng.integers(0, 256, (256, 384, 3), dtype=np.uint8), "no code at all")
    checker.check(np.zeros((256, 384, 3), np.uint8), "black filler")
    checker.check(np.full((256, 384, 3), 32, np.uint8), "a mask over the whole frame")
    v = checker.verdicts
    assert v.codes == [1 + 1024] and v.uncoded == 1 and v.blank == 2 and v.total == 6
    assert [leak.split(":")[0] for leak in v.leaks] == ["hidden code, raw face", "no code at all"], v.leaks
    assert "source frame 3's face region is not masked" in v.leaks[0]
