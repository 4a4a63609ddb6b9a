"""Every common container in and out: frame count and timestamps survive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mediautil import audio_packets, decode

from streamanon.config import PipelineConfig
from streamanon.runner import process_file

# AVI files in the wild are MJPEG/MPEG-4 without reordering (AVI cannot store pts).
CODEC = {".webm": "libvpx-vp9", ".avi": "mjpeg"}


@pytest.mark.parametrize("ext", [".mkv", ".mov", ".ts", ".webm", ".avi", ".m4v"])
def test_container_roundtrip(tmp_path: Path, clip_factory, ext: str) -> None:
    src = clip_factory(f"in{ext}", frames=20, audio=ext not in (".webm", ".avi"), codec=CODEC.get(ext, "libx264"))
    out = tmp_path / f"out{ext}"
    process_file(src, out, PipelineConfig())
    a, ta, _ = decode(src)
    b, tb, _ = decode(out)
    assert len(a) == len(b) == 20
    d = np.asarray(tb) - np.asarray(ta)
    assert np.ptp(d) < 1e-3, "frame intervals must match exactly"
    if ext not in (".avi",):
        assert abs(d[0]) < 1e-3
    assert audio_packets(out) == audio_packets(src)


def test_cli_stderr_is_quiet(tmp_path: Path, clip_factory) -> None:
    """No ONNX Runtime or FFmpeg warnings reach the user's terminal."""
    src = clip_factory("in.mp4", frames=8)
    proc = subprocess.run(
        [sys.executable, "-m", "streamanon", str(src), "-o", str(tmp_path / "o.mp4"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
