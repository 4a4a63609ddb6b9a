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
