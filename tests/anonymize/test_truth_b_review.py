"""``--review``: boxes, scores and track ids drawn instead of anonymising; opt-in, loudly
marked as not anonymised, never for live outputs (issue 22)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamanon.anonymize.review import NOT_ANONYMISED, ReviewDrawer, review_from_args, review_output
from streamanon.cli import run_parser
from streamanon.errors import ConfigError
from streamanon.io.image import read_image
from streamanon.types import SOURCE_DETECTOR, SOURCE_TRACK, Detections

REPO = Path(__file__).resolve().parents[2]


def _dets() -> Detections:
    return Detections(
        np.array([[100, 100, 200, 220], [300, 120, 380, 220]], np.float32),
        np.array([0.93, 0.41], np.float32),
        track_id=np.array([3, 7], np.int64),
        source=np.array([SOURCE_DETECTOR, SOURCE_TRACK], np.uint8),
    )


def test_drawer_draws_boxes_and_leaves_the_faces_in_the_clear() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (400, 600, 3), np.uint8)
    before = image.copy()
    drawer = ReviewDrawer()
    out = drawer.apply(image, _dets())
    assert np.array_equal(image, before) and not np.shares_memory(out, image)  # the input is never modified
    # the box outline is drawn in its colour (detector green, tracker orange) ...
    assert tuple(out[160, 100]) == (0, 220, 0) and tuple(out[170, 300]) == (255, 140, 0)
    # ... and the face inside is untouched: NOT anonymised
    assert np.array_equal(out[130:215, 105:195], image[130:215, 105:195])
    assert np.array_equal(out[150:215, 305:375], image[150:215, 305:375])
    assert (out[:10, :100] != image[:10, :100]).any()  # the banner
    rep = drawer.report()
    assert rep["anonymised"] is False and rep["warning"] == NOT_ANONYMISED and rep["boxes_drawn"] == 2


def _ns(*argv: str) -> argparse.Namespace:
    return run_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "argv",
    [["rtsp://127.0.0.1:8554/cam", "-o", "x.mp4", "--review"], ["in.mp4", "-o", "-", "--review"],
     ["in.mp4", "-o", "rtmp://relay/live", "--review"]],
)  # fmt: skip
def test_review_refuses_live_inputs_and_outputs(argv: list[str]) -> None:
    with pytest.raises(ConfigError, match="--review is for files"):
        review_from_args(_ns(*argv))


def test_review_is_opt_in_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert review_from_args(_ns(str(tmp_path / "a.mp4"))) is None
    ns = _ns(str(tmp_path / "a.mp4"), "--review")
    with caplog.at_level(logging.WARNING):
        assert isinstance(review_from_args(ns), ReviewDrawer)
    assert ns.output == str(tmp_path / "a_review.mp4")
    assert "NOT anonymised" in caplog.text
    assert review_output(tmp_path) == tmp_path.with_name(tmp_path.name + "_review")


def test_cli_review_run_writes_a_review_file_and_says_so(tmp_path: Path) -> None:
    src = tmp_path / "astronaut.jpg"
    shutil.copy(REPO / "streamanon" / "assets" / "astronaut.jpg", src)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run(
        [sys.executable, "-m", "streamanon", str(src), "--review", "--backend", "onnxruntime"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "the output is NOT anonymised" in p.stderr
    out = tmp_path / "astronaut_review.jpg"
    assert out.is_file() and not (tmp_path / "astronaut_anonymized.jpg").exists()
    original, review = read_image(src).image, read_image(out).image
    assert original.shape == review.shape and (original != review).any()
