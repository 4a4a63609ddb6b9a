"""``streamanon streams``: four feeds in one process against the real RTSP server on 127.0.0.1.

Feeds cam1..cam4 read the coded real clip over RTSP (cam1 from a server of its own, which
is killed and restarted mid-run), share one detector, and write an RTSP relay (cam2,
played and checked by a separate PyAV client) or MP4 files (checked frame by frame after
SIGTERM). Every frame received or written must have its face masked (FaceChecker).
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from live_helpers import CodedClip, FaceChecker, GstServer, Streamanon, free_port, receive

from streamanon.errors import ConfigError
from streamanon.live.shared_detector import BatchingDetector
from streamanon.live.streams_config import parse_streams_config

pytestmark = pytest.mark.live

SAMPLE = re.compile(r'^(streamanon_\w+?)(?:\{stream="([^"]+)"\})? ([0-9.e+-]+)$')


def _metrics(port: int) -> dict[tuple[str, str], float]:
    """(metric, stream or "") -> value, from the one /metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def _wait(cond: Callable[[], bool], timeout: float, what: str, sa: Streamanon) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:  # metrics endpoint not up yet
            pass
        if sa.proc.poll() is not None:
            break
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s; stderr:\n{sa.stderr[-3000:]}")


def test_four_feeds_one_process_one_restarted_none_leaks(
    tmp_path: Path, coded_clip: CodedClip, rtsp_server: Callable[..., GstServer], streamanon: Callable[..., Streamanon]
) -> None:
    own = rtsp_server(file=coded_clip.path)  # cam1's server, killed and restarted
    shared = rtsp_server(file=coded_clip.path)  # cam3 and cam4 each get their own session
    relay = rtsp_server(file=coded_clip.path, relay=True)  # cam2 reads /file, publishes to /pub
    mport = free_port()
    files = {name: tmp_path / f"{name}.mp4" for name in ("cam1", "cam3", "cam4")}
    cfg = tmp_path / "streams.toml"
    cfg.write_text(
        f"""
metrics_port = {mport}
report_dir = "{tmp_path / "reports"}"
batch = 4
[defaults]
read_timeout = 2
open_timeout = 3
reconnect_delay_max = 1
on_stall = "black"
[[stream]]
name = "cam1"
input = "{own.url("file")}"
output = "{files["cam1"]}"
[[stream]]
name = "cam2"
input = "{relay.url("file")}"
output = "{relay.url("pub")}"
encoder_opt = ["g=10"]  # a keyframe every 10 frames: the player joins at one, whatever the rate
[[stream]]
name = "cam3"
input = "{shared.url("file")}"
output = "{files["cam3"]}"
[[stream]]
name = "cam4"
input = "{shared.url("file")}"
output = "{files["cam4"]}"
method = "solid"
color = "#202020"
"""
    )
    sa = streamanon(["streams", str(cfg)])
    names = ("cam1", "cam2", "cam3", "cam4")

    def up_and_writing() -> bool:
        m = _metrics(mport)
        return all(m.get(("streamanon_live_source_up", n)) == 1 for n in names) and all(
            m.get(("streamanon_live_frames_out_total", n), 0) >= 3 for n in names
        )

    _wait(up_and_writing, 60, "four feeds up and writing", sa)
    checker = FaceChecker(coded_clip)
    received = receive(relay.url("play"), checker, seconds=8, max_frames=100, min_frames=12)

    # cam1's server dies: cam1 goes down, the three others keep writing (each >= 5 frames
    # while cam1 is still down; how long that takes depends on the machine's load)
    own.kill()
    _wait(lambda: _metrics(mport)[("streamanon_live_source_up", "cam1")] == 0, 10, "cam1 seen down", sa)
    before = _metrics(mport)
    others = ("cam2", "cam3", "cam4")

    def others_writing() -> bool:
        m, key = _metrics(mport), "streamanon_live_frames_out_total"
        return all(m[(key, n)] - before[(key, n)] >= 5 for n in others)

    _wait(others_writing, 30, "the other three feeds writing while cam1 is down", sa)
    assert _metrics(mport)[("streamanon_live_source_up", "cam1")] == 0
    own.start()
    _wait(lambda: _metrics(mport)[("streamanon_live_reconnects_total", "cam1")] >= 1, 30, "cam1 reconnected", sa)
    t_back = _metrics(mport)[("streamanon_live_frames_out_total", "cam1")]
    received += receive(relay.url("play"), checker, seconds=6, max_frames=60, min_frames=10)
    _wait(
        lambda: _metrics(mport)[("streamanon_live_frames_out_total", "cam1")] >= t_back + 5,
        20,
        "cam1 writing again",
        sa,
    )
    final = _metrics(mport)
    rc = sa.stop(signal.SIGTERM)
    assert rc == 130, sa.stderr[-3000:]

    # every frame the relay client received, and every frame of the files
    for path in files.values():
        checker.check_file(path)
    v = checker.verdicts
    assert not v.leaks, v.leaks[:5]
    assert v.uncoded <= 0.05 * v.total, (v.uncoded, v.total)  # masks over the code: rare, and checked
    assert received >= 20, (received, sa.stderr[-2000:])
    assert len(set(v.codes)) >= 20
    assert final[("streamanon_streams_frames_out_total", "")] == sum(
        final[("streamanon_live_frames_out_total", n)] for n in names
    )
    # every written frame went through the one shared detector (some detected frames are dropped later)
    detected = final[("streamanon_streams_detector_frames_total", "")]
    assert detected >= final[("streamanon_streams_frames_out_total", "")] > 0
    for name in names:
        report = json.loads((tmp_path / "reports" / f"{name}.json").read_text())["summary"]
        assert report["stopped_by"] == "interrupted", (name, report["stopped_by"], report["error"])
        assert report["live_options"]["stream"] == name and report["live_options"]["inference"]["shared_detector"]
        assert report["metrics"]["frames_out"] >= final[("streamanon_live_frames_out_total", name)]
        assert report["metrics"]["frames_failed"] == 0
    # the others also reconnect each time their 16 s clip ends; cam1 also when its server died
    events = json.loads((tmp_path / "reports" / "cam1.json").read_text())["summary"]["events"]
    assert any(e["kind"] in ("disconnected", "error", "stalled") for e in events), events
    assert "cam1: " in sa.stderr and "shared detector:" in sa.stderr


def test_config_errors_name_the_file_stream_and_option(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    cfg = tmp_path / "s.toml"
    one = "[[stream]]\nname = 'x'\ninput = 'rtsp://h/a'\noutput = 'a.mp4'\n"
    cases = {
        "[[stream]]\ninput = 'rtsp://h/a'\n": "needs output",
        "backend = 'openvino'\nwat = 1\n[[stream]]\ninput = 'rtsp://h/a'\noutput = 'a.mp4'\n": "unknown top-level",
        "[[stream]]\ninput = 'rtsp://h/a'\noutput = 'a.mp4'\nbackend = 'onnxruntime'\n": "shared by all streams",
        one + "blurr = 1\n": "stream 'x': unknown option 'blurr'",
        one + "method = 'nope'\n": "stream 'x': unknown method 'nope'",
        one + "[[stream]]\ninput = 'rtsp://h/b'\noutput = 'a.mp4'\n": "same output",
        one + "[[stream]]\nname = 'x'\ninput = 'rtsp://h/b'\noutput = 'b.mp4'\n": "two streams have this name",
        "batch = 0\n[[stream]]\ninput = 'rtsp://h/a'\noutput = 'a.mp4'\n": "invalid batch=0",
        "[[stream]\n": "invalid TOML",
        one + "small_faces = 'on'\n": "small_faces: not available with streamanon streams",
    }
    for text, message in cases.items():
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_streams_config(cfg)
    cfg.write_text(
        "threshold = 0.3\nbatch = 2\n[defaults]\nmethod = 'blur'\nreconnect = false\n"
        "[[stream]]\nname = 'a'\ninput = 'rtsp://h/a'\noutput = 'a.mp4'\ninput_option = {probesize = '32'}\n"
        "[[stream]]\ninput = 'rtsp://h/b'\noutput = 'b.mp4'\nmethod = 'pixelate'\n"
    )
    parsed = parse_streams_config(cfg)
    a, b = parsed.streams
    assert (a.name, b.name) == ("a", "stream-2") and parsed.batch == 2
    assert a.config.anonymize.method == "blur" and b.config.anonymize.method == "pixelate"
    assert a.config.detect.threshold == b.config.detect.threshold == parsed.detector.detect.threshold == 0.3
    assert not a.opts.reconnect and a.input.options["probesize"] == "32"
    assert a.config.detect.workers == 1  # the shared detector has the workers


def test_batching_detector_batches_what_waits_and_fails_closed() -> None:
    import threading

    import numpy as np

    from streamanon.types import Detections

    calls: list[int] = []
    entered, gate = threading.Event(), threading.Event()

    def detector(images: Sequence[np.ndarray]) -> list[Detections]:
        entered.set()
        gate.wait(5)
        calls.append(len(images))
        if any(im[0, 0, 0] == 255 for im in images):
            raise RuntimeError("bad frame")
        return [Detections.empty() for _ in images]

    shared = BatchingDetector(detector, batch=4, workers=1)
    out: dict[int, list[Detections] | Exception] = {}

    def feed(i: int) -> None:
        try:
            out[i] = shared([np.full((8, 8, 3), 255 if i == 3 else 0, np.uint8)])
        except RuntimeError as exc:
            out[i] = exc

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(6)]
    threads[0].start()
    assert entered.wait(5)  # frame 0 is in the detector alone
    for k, t in enumerate(threads[1:], 1):  # queued in order 1..5
        t.start()
        deadline = time.monotonic() + 5
        while shared._q.qsize() < k and time.monotonic() < deadline:
            time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join(10)
    # what queued meanwhile went in one call (up to batch); the call with the bad frame 3
    # failed and was retried frame by frame, so only frame 3 fails (its pipeline masks it)
    assert calls == [1, 4, 1, 1, 1, 1, 1], calls
    assert isinstance(out[3], RuntimeError)
    assert all(isinstance(v := out[i], list) and len(v) == 1 for i in (0, 1, 2, 4, 5)), out
    assert shared.stats()["frames"] == 5 and shared.stats()["batch_sizes"] == {"1": 5}
    shared.close()
    with pytest.raises(RuntimeError, match="closed"):
        shared([np.zeros((8, 8, 3), np.uint8)])


def test_reload_adds_removes_and_restarts_feeds_and_stop_finalises_all(tmp_path: Path) -> None:
    from streamanon.demo import write_demo_clip
    from streamanon.live.streams import Streams
    from streamanon.pipeline import Stages
    from streamanon.types import Detections

    clip = tmp_path / "in.mp4"
    write_demo_clip(clip, 1.0)
    cfg = tmp_path / "s.toml"

    def write(streams: dict[str, str]) -> None:
        body = f'report_dir = "{tmp_path / "reports"}"\n[defaults]\nloop = true\n'
        for name, extra in streams.items():
            body += f'[[stream]]\nname = "{name}"\ninput = "{clip}"\noutput = "{tmp_path / name}.mp4"\n{extra}\n'
        cfg.write_text(body)

    def boxes(images: object) -> list[Detections]:
        return [Detections.empty() for _ in images]  # type: ignore[attr-defined]

    write({"a": "", "b": ""})
    config = parse_streams_config(cfg)
    streams = Streams(config, Stages(config.detector, detector=boxes))
    streams.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(f.metrics.count("frames_out") for f in streams.feeds_snapshot()):
            time.sleep(0.1)
        old_b = streams.feeds["b"]
        write({"b": 'method = "blur"', "c": ""})  # a removed, b changed, c added
        streams.reload(parse_streams_config(cfg))
        assert sorted(streams.feeds) == ["b", "c"] and streams.feeds["b"] is not old_b
        assert not old_b.alive() and old_b.report is not None and old_b.report.stopped_by == "removed"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(f.metrics.count("frames_out") for f in streams.feeds_snapshot()):
            time.sleep(0.1)
        assert streams.feeds["c"].metrics.count("frames_out") > 0
    finally:
        streams.stop("interrupted")
    done = {f.name + ("-old" if f in streams.finished else ""): f for f in streams.all_feeds()}
    assert sorted(done) == ["a-old", "b", "b-old", "c"]
    assert all(not f.alive() and f.exit_code() == 0 for f in done.values())
    for name in ("a", "b", "c"):
        summary = json.loads((tmp_path / "reports" / f"{name}.json").read_text())["summary"]
        assert summary["stopped_by"] == ("removed" if name == "a" else "interrupted")
        assert (tmp_path / f"{name}.mp4").is_file()  # finalised, renamed into place
    assert json.loads((tmp_path / "reports" / "b.json").read_text())["summary"]["method"] == "blur"
