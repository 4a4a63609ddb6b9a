"""``streamanon demo``: the README's first command, on a machine without the shared data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from streamanon.config import DetectConfig
from streamanon.demo import CHECK_SCORE, FPS, SIZE, demo_frames, write_demo_clip
from streamanon.detect.centerface import CenterFaceDetector
from streamanon.errors import ConfigError


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_demo_runs_without_shared_data_and_leaves_no_face(tmp_path: Path) -> None:
    env = os.environ | {"STREAMANON_DATA": str(tmp_path / "no-such-folder")}
    proc = subprocess.run(
        [sys.executable, "-m", "streamanon", "demo", "-q", "--seconds", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    src = Path(re.search(r"^input:\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    dst = Path(re.search(r"^result:\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    report = Path(re.search(r"^report:\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    assert src.parent == dst.parent == tmp_path / "streamanon-demo" and report.is_file()
    assert re.search(r"check: .* 0 on 0/50 frames of the result", out), out

    # checked independently of the product's backend: ONNX Runtime fp32
    detector = CenterFaceDetector(DetectConfig(backend="onnxruntime", threads=1))
    before, after = _frames(src), _frames(dst)
    assert len(before) == len(after) == 2 * FPS
    assert before[0].shape == (SIZE[1], SIZE[0], 3)
    changed = 0
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        faces = detector([a])[0]
        faces = faces[faces.score >= CHECK_SCORE]
        assert len(faces), f"input frame {i} has no face"
        left = detector([b])[0]
        assert not (left.score >= CHECK_SCORE).any(), f"a face is left on output frame {i}: {left.score}"
        for x1, y1, x2, y2 in faces.xyxy.astype(int):
            diff = np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2].astype(int)).mean()
            changed += diff > 40  # masked, not merely re-encoded
    assert changed >= len(before)  # every frame's face(s), the two of the wide shot included


def test_demo_clip_moves_and_refuses_silly_lengths(tmp_path: Path) -> None:
    frames = list(demo_frames(1.0))
    assert len(frames) == FPS and all(f.shape == (SIZE[1], SIZE[0], 3) and f.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 20  # a pan and zoom, not a still
    assert write_demo_clip(tmp_path / "c.mp4", 1.0) == FPS == len(_frames(tmp_path / "c.mp4"))
    with pytest.raises(ConfigError, match="invalid demo length"):
        write_demo_clip(tmp_path / "d.mp4", 0.1)


def test_demo_reports_an_unwritable_folder_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "streamanon", "demo", "-q", "-o", str(blocker / "sub")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "cannot create the demo folder" in proc.stderr
