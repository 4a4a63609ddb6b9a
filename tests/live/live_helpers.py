"""Shared by the live tests and benchmarks/bench_live.py: a frame counter burned into video
frames, coded test clips with reference face boxes, a "no raw face" checker, and a
loopback GStreamer RTSP server process.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent
GST_SERVER = HERE / "gst_rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"

# -- frame counter code -------------------------------------------------------------------
# A row of CELL x CELL squares in the top-left corner: white, black (reference levels),
# 16 data bits, then parity and inverted parity. Survives two H.264 generations easily.
CELL = 16
BITS = 16


def rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """A decoded frame as an RGB array."""
    return np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)


def code_width(cell: int = CELL) -> int:
    return (BITS + 4) * cell


def burn_code(image: NDArray[np.uint8], n: int, cell: int = CELL) -> NDArray[np.uint8]:
    """Write counter ``n`` (mod 2**16) into a copy of ``image``."""
    out = image.copy()
    bits = [(n >> i) & 1 for i in range(BITS)]
    parity = sum(bits) & 1
    for k, v in enumerate([1, 0, *bits, parity, 1 - parity]):
        out[0:cell, k * cell : (k + 1) * cell] = 255 if v else 0
    return out


def code_cells(image: NDArray[np.uint8], cell: int = CELL) -> list[NDArray[np.float32]]:
    """Luminance of each code cell's inner half (reference cells first); the image must fit the code."""
    lum = image[:cell, : code_width(cell)].astype(np.float32).mean(axis=2)
    q = cell // 4
    return [lum[q:-q, k * cell + q : (k + 1) * cell - q] for k in range(BITS + 4)]


def read_code(image: NDArray[np.uint8], cell: int = CELL) -> int | None:
    """The counter burned by ``burn_code``, or None if the corner holds no valid code."""
    if image.shape[1] < code_width(cell) or image.shape[0] < cell:
        return None
    levels = [float(c.mean()) for c in code_cells(image, cell)]
    white, black = levels[0], levels[1]
    if white - black < 100:
        return None
    thr = (white + black) / 2
    vals = [1 if v > thr else 0 for v in levels[2:]]
    if any(abs(v - thr) < 0.25 * (white - black) for v in levels[2:]):
        return None  # a cell that is neither black nor white: not a code
    bits, parity, inv = vals[:BITS], vals[BITS], vals[BITS + 1]
    if parity != (sum(bits) & 1) or inv != 1 - parity:
        return None
    return sum(b << i for i, b in enumerate(bits))


# -- coded clips with reference faces ---------------------------------------------------------
@dataclass
class CodedClip:
    """An H.264 MP4 whose frame i carries code i, plus each frame's face region for checks."""

    path: Path
    frames: int  # frames in the file
    period: int  # content repeats every `period` frames (loops of the source clip)
    fps: int
    boxes: list[tuple[int, int, int, int]]  # inner face box per source frame (x0, y0, x1, y1)
    crops: list[NDArray[np.uint8]]  # original pixels of that box per source frame
    size: tuple[int, int] = (0, 0)  # width, height

    def face(self, code: int) -> tuple[tuple[int, int, int, int], NDArray[np.uint8]]:
        i = code % self.period
        return self.boxes[i], self.crops[i]


def make_coded_clip(src: Path, dst: Path, *, loops: int = 2, fps: int = 25, max_frames: int | None = None) -> CodedClip:
    """Re-encode ``src`` ``loops`` times with a frame counter; find its faces with CenterFace."""
    from streamanon.config import DetectConfig
    from streamanon.detect import create_detector

    with av.open(str(src)) as c:
        images = [rgb(f) for f in c.decode(video=0)]
    if max_frames:
        images = images[:max_frames]
    h, w = images[0].shape[:2]
    det = create_detector(DetectConfig(threshold=0.5))
    boxes, crops = [], []
    for img in images:
        d = det([img])[0]
        if len(d) != 1:
            raise RuntimeError(f"expected one face per frame in {src}, found {len(d)}")
        x0, y0, x1, y1 = d.xyxy[0]
        # the inner 60% of the detected box: always inside the (1.3x, elliptic) mask
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.3, (y1 - y0) * 0.3
        box = (int(cx - bw), int(cy - bh), int(cx + bw), int(cy + bh))
        boxes.append(box)
        crops.append(img[box[1] : box[3], box[0] : box[2]].copy())
    with av.open(str(dst), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "20", "g": str(fps), "bf": "0"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        n = 0
        for _ in range(loops):
            for img in images:
                vf = av.VideoFrame.from_ndarray(burn_code(img, n), format="rgb24")
                vf.pts = n
                vf.time_base = Fraction(1, fps)
                for p in s.encode(vf):
                    out.mux(p)
                n += 1
        for p in s.encode(None):
            out.mux(p)
    return CodedClip(dst, n, len(images), fps, boxes, crops, (w, h))


# -- the privacy check ---------------------------------------------------------------------------
@dataclass
class FrameVerdicts:
    """What a stream of received frames held."""

    codes: list[int] = field(default_factory=list)  # one per coded (real or repeated) frame
    blank: int = 0  # one flat colour: black filler, or a mask over the whole frame
    uncoded: int = 0  # masked frames whose code the mask itself covers (checked against every frame)
    leaks: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.codes) + self.blank + self.uncoded + len(self.leaks)


class FaceChecker:
    """Fail on any frame that could show a raw face.

    Each received frame must either be blank (``--on-stall black``, or a mask that has
    grown over the whole frame: a coasting track's box under overload) or carry a readable
    code; the original face region of that code's frame must be solid (method ``solid``)
    and far from the raw pixels. If dlib is installed, its HOG detector must also find no
    face inside that region (an independent detector).

    A large mask (a face near the top, a track's box grown over a jump) can cover part of
    the code: such a frame is checked against the face region of *every* source frame
    (none may show its raw pixels) and counted as ``uncoded``; callers bound that count.
    """

    def __init__(self, clip: CodedClip) -> None:
        self.clip = clip
        self.verdicts = FrameVerdicts()
        lo, hi = np.min([b[:2] for b in clip.boxes], axis=0), np.max([b[2:] for b in clip.boxes], axis=0)
        self._face_span = (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))  # every source frame's face box
        try:
            import dlib

            self._hog: Any = dlib.get_frontal_face_detector()
        except ImportError:
            self._hog = None

    def hog_faces(self, image: NDArray[np.uint8]) -> list[tuple[float, float]]:
        """Centres of the faces dlib's HOG detector finds (empty without dlib)."""
        if self._hog is None:
            return []
        return [((r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2) for r in self._hog(image, 0)]

    def check(self, image: NDArray[np.uint8], where: str = "") -> None:
        v = self.verdicts
        code = read_code(image)
        if code is None:
            if float(image.std()) < 10:  # nothing in it: filler, or a mask grown over the frame
                v.blank += 1
                return
            if self._code_cells_covered(image):
                leak = self._uncoded_leak(image)
                if leak is None:
                    v.uncoded += 1
                else:
                    v.leaks.append(f"{where}: no readable code (mask over it): {leak}")
                return
            stats = f"mean {image.mean():.0f}, std {image.std():.1f}"
            v.leaks.append(f"{where}: frame without a readable code that is not blank ({stats})")
            return
        leak = self._face_leak(image, code)
        if leak is not None:
            v.leaks.append(f"{where}: code {code}: {leak}")
            return
        v.codes.append(code)

    def _face_leak(self, image: NDArray[np.uint8], i: int) -> str | None:
        """Why source frame ``i``'s face region in ``image`` is not masked, or None if it is."""
        std, diff = self._region_vs_raw(image, i)
        if std > 20 or diff < 40:
            return f"face region not masked (std {std:.1f}, diff from raw {diff:.1f})"
        return self._hog_face_in(image, self.clip.face(i)[0])

    def _region_vs_raw(self, image: NDArray[np.uint8], i: int) -> tuple[float, float]:
        """Std of source frame ``i``'s face region in ``image``, and its mean distance from the raw pixels."""
        (x0, y0, x1, y1), crop = self.clip.face(i)
        region = image[y0:y1, x0:x1].astype(np.float32)
        return float(region.std()), float(np.abs(region - crop.astype(np.float32)).mean())

    def _hog_face_in(self, image: NDArray[np.uint8], box: tuple[int, int, int, int]) -> str | None:
        """A face dlib's HOG detector finds centred within 20 px of ``box``, or None."""
        x0, y0, x1, y1 = box
        for cx, cy in self.hog_faces(image):
            if x0 - 20 <= cx <= x1 + 20 and y0 - 20 <= cy <= y1 + 20:
                return f"dlib finds a face at ({cx:.0f}, {cy:.0f})"
        return None

    @staticmethod
    def _code_cells_covered(image: NDArray[np.uint8]) -> bool:
        """Whether the code's reference cells (white, black) are there, so a mask covers the rest."""
        if image.shape[1] < code_width() or image.shape[0] < CELL:
            return False
        white, black = code_cells(image)[:2]
        return float(white.min()) > 180 and float(black.max()) < 60

    def _uncoded_leak(self, image: NDArray[np.uint8]) -> str | None:
        """A frame whose code is hidden: no source frame's face may be unmasked in it."""
        for i in range(self.clip.period):
            std, diff = self._region_vs_raw(image, i)
            if std > 20 and diff < 40:
                return f"source frame {i}'s face region is not masked"
        return self._hog_face_in(image, self._face_span)

    def check_file(self, path: Path) -> FrameVerdicts:
        """Check every frame of a file; returns the verdicts so far."""
        for i, img in enumerate(decode_all(path)):
            self.check(img, where=f"{path.name} frame {i}")
        return self.verdicts


def to_mpegts(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` video packets of ``src`` remuxed (not re-encoded) into MPEG-TS ``dst``."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for i, pkt in enumerate(inp.demux(video=0)):
            if pkt.dts is None or i >= n:
                continue
            pkt.stream = stream
            out.mux(pkt)
    return dst


def decode_all(path: Path) -> list[NDArray[np.uint8]]:
    """Every frame of a file (fails on a broken file)."""
    with av.open(str(path)) as c:
        return [rgb(f) for f in c.decode(video=0)]


def frame_times(path: Path) -> list[float]:
    """Presentation times of a file's frames, in seconds."""
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0) if f.time is not None]


# -- loopback servers ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gst_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None if it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "import sys; sys.exit(0 if all(Gst.ElementFactory.find(e) for e in "
        "('qtdemux','identity','h264parse','rtph264pay','rtph264depay','appsrc','appsink')) else 3)"
    )
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=60)
    if r.returncode != 0:
        return (
            "GStreamer RTSP server not installed (run .ci/install-live.sh: python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad})"
        )
    return None


class GstServer:
    """The loopback GStreamer RTSP server in a subprocess; restartable on the same port."""

    def __init__(self, port: int | None = None, *, file: Path | None = None, relay: bool = False) -> None:
        self.port = port or free_port()
        self.file = file
        self.relay = relay
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, mount: str, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/{mount}"

    def start(self, timeout: float = 20.0) -> GstServer:
        cmd = [SYSTEM_PYTHON, str(GST_SERVER), "--port", str(self.port)]
        if self.file:
            cmd += ["--file", str(self.file)]
        if self.relay:
            cmd += ["--relay"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYENV"))}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith(b"READY"):
            self.kill()
            raise RuntimeError(f"RTSP server did not start on port {self.port}")
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a crash, no teardown sent to clients) and reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None


class Streamanon:
    """``python -m streamanon ARGS`` in a subprocess; stderr lines collected with their time."""

    def __init__(self, args: list[str], *, stdin: Any = None, stdout: Any = None, cwd: Path | None = None) -> None:
        import sys
        import threading

        self.args = args
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamanon", *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append((time.time(), raw.decode(errors="replace").rstrip()))

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_for(self, text: str, timeout: float, after: float = 0.0) -> float | None:
        """Time (time.time()) of the first stderr line after ``after`` containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if t >= after and text in line:
                    return t
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return next((t for t, line in self.lines if t >= after and text in line), None)
            time.sleep(0.05)
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit code (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return rc

    def wait(self, timeout: float) -> int:
        """Wait for a normal exit (SIGKILL and fail after ``timeout``)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"streamanon did not exit within {timeout} s; stderr:\n{self.stderr}") from None
        self._reader.join(timeout=5)
        return rc


def receive(
    url: str,
    checker: FaceChecker,
    *,
    seconds: float,
    max_frames: int,
    min_frames: int = 0,
    open_timeout: float = 20.0,
) -> int:
    """Play ``url`` with PyAV (RTSP over TCP) and check every frame; returns frames received.

    Stops after ``max_frames`` or ``seconds``; past ``seconds`` it goes on (up to 4x as long)
    until ``min_frames`` have come, so a loaded machine's slower output is still sampled.
    """
    n = 0
    start = time.monotonic()
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(open_timeout, 10.0)) as c:
        for f in c.decode(video=0):
            checker.check(rgb(f), where=f"received frame {n}")
            n += 1
            elapsed = time.monotonic() - start
            if n >= max_frames or (elapsed > seconds and (n >= min_frames or elapsed > 4 * seconds)):
                break
    return n
