"""Same frames, same file: what holds and what it takes (docs/methods.md, *Reproducible runs*).

x264's macroblock tree (on at every preset the product uses, with B-frames) reads memory the
encoder never wrote: the same frames encode to files a few levels apart depending on what the
process's heap held before. ``MALLOC_PERTURB_`` (glibc) fills fresh allocations with a chosen
byte, so two child processes that differ only in it show the dependence without waiting for a
race. ``--encoder-opt x264-params=mbtree=0`` is the documented way to byte-identical files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeutil import make_clip

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MALLOC_PERTURB_ is glibc's")

WRITE = """
import sys
from streamanon.config import IOConfig
from streamanon.io import VideoSink, VideoSource
src, dst, opts = sys.argv[1], sys.argv[2], sys.argv[3:]
with VideoSource(src, audio=False) as source:
    sink = VideoSink(dst, source.info, IOConfig(encoder_options=tuple(o.split("=", 1) for o in opts)))
    for frame in source:
        sink.write(frame, frame.image)
    sink.close()
"""


@functools.cache
def _noise() -> np.ndarray:
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    base = cv2.GaussianBlur(noise, (0, 0), 3).astype(np.float32)
    return np.clip((base - base.mean()) * 4 + 128, 0, 255).astype(np.uint8)


def texture(i: int) -> np.ndarray:
    """A drifting blurred-noise texture: enough detail for the lookahead to weigh (a flat
    gradient encodes the same whatever the heap holds)."""
    return np.ascontiguousarray(np.roll(_noise(), (2 * i, 3 * i), (0, 1))[:240, :320])


def write(src: Path, dst: Path, perturb: int, *opts: str) -> str:
    env = {**os.environ, "MALLOC_PERTURB_": str(perturb)}
    subprocess.run([sys.executable, "-c", WRITE, str(src), str(dst), *opts], check=True, env=env, timeout=120)
    return hashlib.sha256(dst.read_bytes()).hexdigest()


def test_without_the_macroblock_tree_the_same_frames_give_the_same_file(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=24, pattern=texture)
    default = {write(src, tmp_path / f"d{p}.mp4", p) for p in (1, 170)}
    if len(default) == 1:
        pytest.skip(
            "this x264 encodes these frames the same whatever the heap holds: the note in docs/methods.md is stale"
        )
    fixed = {write(src, tmp_path / f"m{p}.mp4", p, "x264-params=mbtree=0") for p in (1, 170)}
    assert len(fixed) == 1, "mbtree=0 no longer makes the file independent of uninitialised memory"
