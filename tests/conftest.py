"""Shared fixtures: the real data folder and small synthetic clips made with PyAV."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from mediautil import DATA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$STREAMANON_DATA`` (default ../shared/data); tests needing it skip if absent."""
    if not (DATA / "MANIFEST.md").is_file():
        pytest.skip(f"shared test data not found at {DATA} (set STREAMANON_DATA)")
    return DATA


def make_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 240,
    frames: int = 24,
    rate: int = 24,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: bool = False,
    rotation: int = 0,
    codec: str = "libx264",
    pattern: Callable[[int], np.ndarray] | None = None,
) -> Path:
    """Write a synthetic clip: moving gradient, optional VFR pts, audio tone, rotation."""
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=rate)
        v.width, v.height = width, height
        v.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        if codec == "mjpeg":
            v.pix_fmt = "yuvj420p"
        tb = time_base or Fraction(1, rate)
        v.time_base = tb
        v.codec_context.time_base = tb
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000)
            a.layout = "mono"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            if pattern is not None:
                img = pattern(i)
            else:
                planes = [(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (9 * i) % 256)]
                img = np.stack(planes, -1).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = pts[i] if pts is not None else i
            f.time_base = tb
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        if a is not None:
            n = int(48000 * frames / rate)
            t = np.arange(n) / 48000
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            for start in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], format="fltp", layout="mono")
                af.sample_rate = 48000
                af.pts = start
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    return path


@pytest.fixture
def clip_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10**6))

    def factory(name: str | None = None, **kw: object) -> Path:
        return make_clip(tmp_path / (name or f"clip{next(counter)}.mp4"), **kw)  # type: ignore[arg-type]

    return factory
