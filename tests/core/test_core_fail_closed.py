"""Privacy fails closed: a frame whose detection or anonymisation raised is never written raw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from mediautil import decode

from streamanon.anonymize import create_anonymizer
from streamanon.config import AnonymizeConfig, PipelineConfig
from streamanon.errors import AnonymizationError
from streamanon.pipeline import Stages
from streamanon.runner import process_file
from streamanon.types import Detections

BOX = (100, 60, 180, 160)


class FlakyDetector:
    """Finds one fixed 'face' and raises on the frames listed in ``fail_on``."""

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.index = 0

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for im in images:
            # The synthetic frames carry their index in the top-left pixel's red value.
            idx = int(im[4:12, 4:12, 0].mean() / 20 + 0.5)
            if idx in self.fail_on:
                raise RuntimeError(f"detector exploded on frame {idx}")
            out.append(Detections(np.array([BOX], np.float32), np.array([0.9], np.float32)))
        return out


class FlakyAnonymizer:
    name = "flaky"

    def __init__(self, fail_on: int) -> None:
        self.inner = create_anonymizer(AnonymizeConfig(method="solid", shape="box", mask_scale=1.0, mask_margin=0))
        self.fail_on = fail_on

    def apply(self, image: np.ndarray, dets: Detections) -> np.ndarray:
        if int(image[4:12, 4:12, 0].mean() / 20 + 0.5) == self.fail_on:
            raise ValueError("anonymiser exploded")
        return self.inner.apply(image, dets)


def pattern(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    img = rng.integers(60, 200, (240, 320, 3), dtype=np.uint8)
    img[0:16, 0:16] = (20 * i, 0, 0)
    return img


@pytest.mark.parametrize("batch", [1, 4])
def test_detector_failure_masks_that_frame(tmp_path: Path, clip_factory, batch: int) -> None:
    src = clip_factory("in.mp4", frames=12, pattern=pattern)
    out = tmp_path / "out.mp4"
    cfg = PipelineConfig.from_dict(
        {"anonymize": {"shape": "box", "mask_scale": 1.0, "mask_margin": 0}, "detect": {"batch": batch}}
    )
    stages = Stages(cfg, detector=FlakyDetector({5}))
    with pytest.raises(AnonymizationError, match="1 of 12 frames"):
        process_file(src, out, cfg, stages=stages)
    frames, _, _ = decode(out)
    assert len(frames) == 12
    assert frames[5].max() < 20, "failed frame must be fully masked"
    x1, y1, x2, y2 = BOX
    for i, f in enumerate(frames):
        if i != 5:
            assert f[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4].max() < 20, f"face region of frame {i} not masked"
            assert f[:, x2 + 10 :].mean() > 50, "rest of the picture must survive"


def test_anonymizer_failure_masks_that_frame(tmp_path: Path, clip_factory) -> None:
    src = clip_factory("in.mp4", frames=10, pattern=pattern)
    out = tmp_path / "out.mp4"
    cfg = PipelineConfig()
    stages = Stages(cfg, detector=FlakyDetector(set()), anonymizer=FlakyAnonymizer(fail_on=3))
    with pytest.raises(AnonymizationError):
        process_file(src, out, cfg, stages=stages)
    frames, _, _ = decode(out)
    assert frames[3].max() < 20
    assert frames[4][:, 200:].mean() > 50


def test_on_error_abort_leaves_no_output(tmp_path: Path, clip_factory) -> None:
    src = clip_factory("in.mp4", frames=10, pattern=pattern)
    out = tmp_path / "out.mp4"
    cfg = PipelineConfig.from_dict({"io": {"on_error": "abort"}})
    with pytest.raises(AnonymizationError, match="abort"):
        process_file(src, out, cfg, stages=Stages(cfg, detector=FlakyDetector({2})))
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))
