"""Memory is bounded by the queue sizes: a 10-minute input peaks like a 10-second one.

Each run happens in its own interpreter, which reports its own peak RSS (``VmHWM``: the
``ru_maxrss`` a parent gets from ``wait4`` keeps the pre-exec high-water mark, i.e. pytest's).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pipeutil import make_clip

RATE = 25
SHORT_S, LONG_S = 10, 600
TOLERANCE = 1.10

# A child that runs process_file with a fake detector finding three moving faces on
# every frame (tracks, look-back and per-frame detections all carry data), no report.
FAKE_FACES = textwrap.dedent(
    """
    import sys
    import numpy as np
    from streamanon.config import PipelineConfig, TrackConfig
    from streamanon.pipeline import Stages
    from streamanon.runner import process_file
    from streamanon.types import Detections

    class Faces:
        def __init__(self):
            self.n = 0

        def __call__(self, images):
            out = []
            for _ in images:
                self.n += 1
                x = float(self.n % 100)
                y = x % 30
                boxes = np.array([[x, 10, x + 20, 34], [40, 50 + y, 60, 74 + y], [120, 80, 150, 115]], np.float32)
                lms = np.repeat(boxes[:, None, :2] + 5, 5, axis=1)
                out.append(Detections(boxes, np.array([0.9, 0.8, 0.35], np.float32), lms))
            return out

    cfg = PipelineConfig(track=TrackConfig(detect_every=int(sys.argv[3])))
    process_file(sys.argv[1], sys.argv[2], cfg, stages=Stages(cfg, detector=Faces()), report_frames=False)
    """
)


# Appended to every child: print VmHWM (peak RSS of this process image) in KiB.
REPORT_PEAK = textwrap.dedent(
    """
    import re as _re
    print(_re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
    """
)
# The CLI entry point, exactly as the console script runs it.
CLI = "import sys\nfrom streamanon.cli import main\nrc = main(sys.argv[1:])\nassert rc == 0, rc\n"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mem")
    return {
        name: make_clip(d / f"{name}.mp4", width=160, height=120, frames=seconds * RATE, rate=RATE)
        for name, seconds in (("short", SHORT_S), ("long", LONG_S))
    }


def peak_rss_kib(code: str, *args: str) -> int:
    """Run ``python -c code args``; the child's peak resident set in KiB (it must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-c", code + REPORT_PEAK, *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_peak_memory_does_not_grow_with_duration(clips: dict[str, Path], tmp_path: Path) -> None:
    """The real CLI (real detector, default settings) on 10 s vs 10 min of video."""
    rss = {
        name: peak_rss_kib(CLI, str(clip), "-o", str(tmp_path / f"{name}.mp4"), "-q") for name, clip in clips.items()
    }
    assert rss["long"] <= rss["short"] * TOLERANCE, rss


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pipeline_peak_memory_with_faces_does_not_grow(clips: dict[str, Path], tmp_path: Path) -> None:
    """Three tracked faces on every frame, detect-every 3 (look-back buffers in use)."""
    rss = {
        name: peak_rss_kib(FAKE_FACES, str(clip), str(tmp_path / f"f{name}.mp4"), "3") for name, clip in clips.items()
    }
    assert rss["long"] <= rss["short"] * TOLERANCE, rss
