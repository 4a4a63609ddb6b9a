"""Helpers for tests: decode media, compare pictures, hash files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import av
import numpy as np

# The one setting through which tests and benchmarks find the shared real data.
DATA = Path(os.environ.get("STREAMANON_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def decode(path: Path | str, limit: int | None = None) -> tuple[list[np.ndarray], list[float], Any]:
    """Decoded RGB frames (display orientation as coded), their times in seconds, and stream info."""
    frames, times = [], []
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"width": v.codec_context.width, "height": v.codec_context.height, "rate": v.average_rate}
        for f in c.decode(v):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base) if f.pts is not None else float("nan"))
            info.setdefault("rotation", f.rotation)
            if limit and len(frames) >= limit:
                break
    return frames, times, info


def reencode(
    src: Path | str,
    dst: Path | str,
    frames: int,
    *,
    rate: int = 25,
    fmt: str | None = None,
    size: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """The first ``frames`` frames of ``src`` as H.264 in ``dst`` (``fmt``: container, e.g.
    mpegts); ``size`` (w, h) crops from the top left. Returns the RGB frames that were encoded."""
    kept: list[np.ndarray] = []
    with av.open(str(src)) as c, av.open(str(dst), "w", format=fmt) as out:
        s = out.add_stream("libx264", rate=rate)
        for f in c.decode(video=0):
            if len(kept) >= frames:
                break
            img = f.to_ndarray(format="rgb24")
            if size is not None:
                img = np.ascontiguousarray(img[: size[1], : size[0]])
            if not kept:
                s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            kept.append(img)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return kept


def audio_packets(path: Path | str) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over pixels where ``mask`` is True (all pixels if None)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean()) if d.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def iter_frames(path: Path | str):
    """Yield (rgb, time_s) one frame at a time (long clips do not fit in memory twice)."""
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            yield f.to_ndarray(format="rgb24"), (float(f.pts * f.time_base) if f.pts is not None else float("nan"))
