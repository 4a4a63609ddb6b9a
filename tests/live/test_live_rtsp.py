"""End to end against a real RTSP server (GStreamer) on 127.0.0.1.

A coded real clip (a counter burned into each frame, a large face) is served over RTSP;
streamanon anonymises it and pushes RTSP to a relay, from which a separate PyAV client
plays it. Every received frame is checked: its face region must be masked (and dlib, when
installed, must find no face there).
"""

from __future__ import annotations

import itertools
import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from live_helpers import CodedClip, FaceChecker, GstServer, Streamanon, decode_all, frame_times, free_port, receive

pytestmark = pytest.mark.live

SECRET = "s3cr3t-pw"


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("streamanon_live_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_rtsp_to_rtsp_no_raw_face_and_metrics(
    tmp_path: Path, coded_clip: CodedClip, rtsp_server: Callable[..., GstServer], streamanon: Callable[..., Streamanon]
) -> None:
    srv = rtsp_server(file=coded_clip.path, relay=True)
    mport = free_port()
    report = tmp_path / "report.json"
    sa = streamanon(
        [
            srv.url("file", f"cam:{SECRET}"),
            "-o", srv.url("pub"),
            "--metrics-port", str(mport),
            "--report", str(report),
            "--read-timeout", "3",
        ]
    )  # fmt: skip
    assert sa.wait_for("connected to", timeout=60), sa.stderr
    checker = FaceChecker(coded_clip)
    n = receive(srv.url("play"), checker, seconds=25, max_frames=60)
    metrics = _metrics(mport)
    rc = sa.stop(signal.SIGINT)

    v = checker.verdicts
    assert not v.leaks, v.leaks[:5]
    assert n >= 30 and len(v.codes) >= 30, (n, len(v.codes), sa.stderr)
    assert len(set(v.codes)) >= 10  # the stream moves: real, distinct frames came through
    assert rc == 130, sa.stderr
    assert metrics["streamanon_live_frames_in_total"] > 0
    assert metrics["streamanon_live_frames_out_total"] >= 30
    assert metrics["streamanon_live_faces_total"] >= 30
    assert metrics["streamanon_live_latency_seconds_count"] == metrics["streamanon_live_frames_out_total"]
    assert metrics["streamanon_live_source_up"] == 1
    summary = json.loads(report.read_text())["summary"]
    assert summary["stopped_by"] == "interrupted"
    assert summary["metrics"]["frames_out"] >= metrics["streamanon_live_frames_out_total"]
    for text in (sa.stderr, report.read_text()):
        assert SECRET not in text
    assert "cam:" not in report.read_text()


def test_server_restart_stall_and_sigterm_with_segments(
    tmp_path: Path, coded_clip: CodedClip, rtsp_server: Callable[..., GstServer], streamanon: Callable[..., Streamanon]
) -> None:
    srv = rtsp_server(file=coded_clip.path)
    out = tmp_path / "seg"
    report = tmp_path / "report.json"
    read_timeout = 2.0
    sa = streamanon(
        [
            srv.url("file"),
            "-o", str(out / "cam-%Y%m%d-%H%M%S.mp4"),
            "--segment", "2",
            "--read-timeout", str(read_timeout),
            "--open-timeout", "2",
            "--reconnect-delay-max", "1",
            "--report", str(report),
        ]
    )  # fmt: skip
    assert sa.wait_for("connected to", timeout=60), sa.stderr
    time.sleep(3)

    # 1. the server dies and comes back on the same port: streamanon reconnects
    srv.kill()
    t_kill = time.time()
    time.sleep(1.0)
    srv.start()
    assert sa.wait_for("reconnected to", timeout=20, after=t_kill), sa.stderr
    time.sleep(2)

    # 2. the server stops sending (SIGSTOP): detected as a stall within the read timeout
    t_stop = time.time()
    srv.signal(signal.SIGSTOP)
    t_stall = sa.wait_for("stalled", timeout=read_timeout + 10, after=t_stop)
    assert t_stall is not None, sa.stderr
    assert t_stall - t_stop <= read_timeout + 1.5, (t_stall - t_stop, sa.stderr)
    time.sleep(1.5)  # the output keeps running (filler) while the source is down
    srv.signal(signal.SIGCONT)
    assert sa.wait_for("reconnected to", timeout=20, after=t_stall), sa.stderr
    time.sleep(1.5)

    # 3. SIGTERM: every segment is a complete, renamed file
    rc = sa.stop(signal.SIGTERM)
    assert rc == 130, sa.stderr
    files = sorted(out.glob("*.mp4"))
    assert len(files) >= 4, (files, sa.stderr)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"
    checker = FaceChecker(coded_clip)
    gaps = []
    for f in files:
        for i, img in enumerate(decode_all(f)):
            checker.check(img, where=f"{f.name} frame {i}")
        times = frame_times(f)
        assert times and times[0] < 0.5, (f.name, times[:3])
        gaps.append(max((b - a for a, b in itertools.pairwise(times)), default=0.0))
    v = checker.verdicts
    assert not v.leaks, v.leaks[:5]
    assert len(v.codes) >= 40
    assert max(gaps) < 1.0, gaps  # no hole in any segment: filler covered the outages

    summary = json.loads(report.read_text())["summary"]
    m = summary["metrics"]
    assert m["reconnects"] >= 2, summary["events"]
    assert m["frames_filler"] > 0
    assert m["segments"] == len(files)
    kinds = [e["kind"] for e in summary["events"]]
    assert "stalled" in kinds and kinds.count("reconnected") >= 2
    assert sorted(summary["segments"]) == [str(f) for f in files]
