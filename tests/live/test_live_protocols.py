"""The other live inputs and outputs, each over a real loopback protocol: a silent TCP server
(open timeout), MJPEG and HLS over HTTP in, MPEG-TS on stdin/stdout, RTMP out (to a PyAV listener)."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import av
import cv2
import pytest
from live_helpers import CodedClip, FaceChecker, Streamanon, decode_all, free_port, to_mpegts

pytestmark = pytest.mark.live


@pytest.fixture
def silent_tcp_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(5)
    for c in held:
        c.close()
    srv.close()


def test_open_timeout_on_a_server_that_never_answers(
    tmp_path: Path, silent_tcp_server: int, streamanon: Callable[..., Streamanon]
) -> None:
    url = f"rtsp://viewer:hunter2@127.0.0.1:{silent_tcp_server}/cam"
    report = tmp_path / "r.json"
    sa = streamanon(
        [
            url,
            "-o",
            str(tmp_path / "out.mp4"),
            "--open-timeout",
            "1",
            "--max-retries",
            "1",
            "--reconnect-delay-max",
            "0.5",
            "--report",
            str(report),
        ]
    )
    t0 = time.monotonic()
    rc = sa.wait(timeout=60)
    assert rc == 6, sa.stderr  # SourceTimeoutError
    assert "timed out opening" in sa.stderr and "reconnecting in 0.5 s" in sa.stderr
    assert time.monotonic() - t0 < 45
    assert "hunter2" not in sa.stderr
    assert not (tmp_path / "out.mp4").exists()


class _MJPEG(http.server.BaseHTTPRequestHandler):
    frames: ClassVar[list[bytes]] = []
    fps = 25.0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        t0 = time.monotonic()
        try:
            for i in range(10**6):
                jpg = self.frames[i % len(self.frames)]
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n"
                )
                time.sleep(max(0.0, t0 + (i + 1) / self.fps - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def _http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A loopback HTTP server on a free port (yielded), shut down afterwards."""
    srv = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def test_mjpeg_over_http_to_file(tmp_path: Path, coded_clip: CodedClip, streamanon: Callable[..., Streamanon]) -> None:
    images = decode_all(coded_clip.path)[: coded_clip.period]
    _MJPEG.frames = [
        cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
        for img in images
    ]
    with _http_server(_MJPEG) as port:
        out, report = tmp_path / "cam.mp4", tmp_path / "r.json"
        sa = streamanon(
            [
                f"http://127.0.0.1:{port}/cam.mjpg",
                "-o",
                str(out),
                "--duration",
                "8",
                "--report",
                str(report),
            ]
        )
        assert sa.wait(timeout=90) == 0, sa.stderr
    v = FaceChecker(coded_clip).check_file(out)
    assert not v.leaks, v.leaks[:5]
    assert len(set(v.codes)) >= 10
    summary = json.loads(report.read_text())["summary"]
    assert summary["stopped_by"] == "duration" and summary["metrics"]["frames_out"] >= 10


def _hls_playlist(clip: CodedClip, folder: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``clip`` remuxed as an HLS playlist of 1-second MPEG-TS segments."""
    folder.mkdir()
    playlist = folder / "index.m3u8"
    with (
        av.open(str(clip.path)) as src,
        av.open(
            str(playlist),
            "w",
            format="hls",
            options={"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"},
        ) as out,
    ):
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for pkt in src.demux(vin):
            if pkt.dts is None:
                continue
            if pkt.pts is not None and vin.time_base is not None and float(pkt.pts * vin.time_base) >= seconds:
                break
            pkt.stream = vout
            out.mux(pkt)
    assert len(list(folder.glob("*.ts"))) >= 3
    return playlist


def test_hls_over_http_to_file(tmp_path: Path, coded_clip: CodedClip, streamanon: Callable[..., Streamanon]) -> None:
    playlist = _hls_playlist(coded_clip, tmp_path / "hls", seconds=6)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, directory=str(playlist.parent), **kw)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    with _http_server(Handler) as port:
        out, report = tmp_path / "hls.mp4", tmp_path / "r.json"
        url = f"http://127.0.0.1:{port}/index.m3u8"
        sa = streamanon([url, "-o", str(out), "--no-reconnect", "--no-drop", "--report", str(report)])
        assert sa.wait(timeout=120) == 0, sa.stderr
    v = FaceChecker(coded_clip).check_file(out)
    assert not v.leaks, v.leaks[:5]
    # the whole playlist arrives (--no-drop), every frame anonymised
    assert len(set(v.codes)) >= 6 * coded_clip.fps - 2, len(set(v.codes))
    summary = json.loads(report.read_text())["summary"]
    assert summary["stopped_by"] == "end"


def test_stdin_mpegts_to_stdout_mpegts(
    tmp_path: Path, coded_clip: CodedClip, streamanon: Callable[..., Streamanon]
) -> None:
    n_in = 100
    ts = to_mpegts(coded_clip.path, tmp_path / "in.ts", n_in)
    out = tmp_path / "out.ts"
    with ts.open("rb") as fin, out.open("wb") as fout:
        sa = streamanon(["-", "-o", "-", "--no-drop"], stdin=fin, stdout=fout)
        assert sa.wait(timeout=120) == 0, sa.stderr
    v = FaceChecker(coded_clip).check_file(out)
    assert not v.leaks, v.leaks[:5]
    assert set(v.codes) == set(range(n_in))  # --no-drop: every frame, none lost


RECEIVER = """
import sys, av
url, dst = sys.argv[1], sys.argv[2]
src = av.open(url, format="flv", options={"listen": "1"}, timeout=(60, 10))
out = av.open(dst, "w")
o = out.add_stream_from_template(src.streams.video[0])
try:
    for pkt in src.demux(video=0):
        if pkt.dts is not None:
            pkt.stream = o
            out.mux(pkt)
except av.error.FFmpegError:
    pass  # the publisher hung up
out.close()
"""


def test_file_streamed_to_rtmp(tmp_path: Path, coded_clip: CodedClip, streamanon: Callable[..., Streamanon]) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/anon"
    got = tmp_path / "received.mkv"
    rx = subprocess.Popen([sys.executable, "-c", RECEIVER, url, str(got)], stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # the listener binds
        sa = streamanon([str(coded_clip.path), "-o", url, "--duration", "6"])
        assert sa.wait(timeout=90) == 0, sa.stderr
        rx.wait(timeout=30)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    v = FaceChecker(coded_clip).check_file(got)
    assert not v.leaks, v.leaks[:5]
    assert len(set(v.codes)) >= 10
