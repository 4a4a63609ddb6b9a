"""Issue 22: a region outside the frame is refused in live mode too (exit 2, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLIP = "videos/intel_asl_gestures/hungry.mkv"


@pytest.mark.parametrize("region", ["5000,5000,6000,6000", "0.5,0,1,1.5"])
def test_live_feed_refuses_a_region_outside_the_frame(tmp_path: Path, data_dir: Path, region: str) -> None:
    src = data_dir / CLIP
    if not src.is_file():
        pytest.skip(f"shared clip missing: {src}")
    out = tmp_path / "out.mp4"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with src.open("rb") as stdin:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamanon",
                "-",
                "-o",
                str(out),
                "--input-format",
                "matroska",
                "--only-region",
                region,
            ],
            stdin=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert p.returncode == 2, p.stderr
    assert "--only-region" in p.stderr and "Traceback" not in p.stderr
    assert not out.exists()
