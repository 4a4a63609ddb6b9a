"""``eval video``: leaks are found, timed and only saved when asked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from streamanon.cli import main
from streamanon.errors import ConfigError


def test_unanonymised_copy_leaks_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_dir: Path, need_dlib: None
) -> None:
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"
    out = tmp_path / "video.json"
    leaks = tmp_path / "leaks"
    code = main(["eval", "video", str(clip), str(clip), "--every", "25", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    res = json.loads(out.read_text())
    assert res["frames_original"] == res["frames_anonymised"] == 77
    assert res["frames_compared"] == 4  # frames 0, 25, 50, 75
    assert res["faces_checked"] >= 3
    assert res["leaked_faces"] == res["faces_checked"] and res["distance_min"] == 0.0
    assert res["longest_run"]["samples"] == res["leaked_frames"]
    assert 0.0 <= res["leak_times"][0] < 0.1  # the first frame (its pts may not be 0)
    assert "leaked:" in printed and "longest run" in printed
    assert res["saved_crops"] is None and not leaks.exists() and not list(tmp_path.rglob("*.png"))

    code = main(["eval", "video", str(clip), str(clip), "--every", "25", "--save-leaks", str(leaks)])
    assert code == 0
    crops = sorted(p.name for p in leaks.iterdir())
    assert len(crops) == res["leaked_faces"] and crops[0].startswith("frame000000_face0")


def test_frame_size_mismatch(tmp_path: Path, clip_factory: Callable[..., Path], recogniser: object) -> None:
    from streamanon.eval.video import evaluate_video

    a = clip_factory("a.mp4", width=64, height=48, frames=3)
    b = clip_factory("b.mp4", width=96, height=48, frames=3)
    with pytest.raises(ConfigError, match="differ in frame size"):
        evaluate_video(a, b, recogniser)  # type: ignore[arg-type]
