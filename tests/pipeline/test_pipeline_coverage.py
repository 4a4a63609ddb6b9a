"""Coverage with the default settings on real clips, against an exhaustive reference.

Reference: the detector on every frame at full resolution, threshold 0.2 (cached in
pytest's cache folder). A reference face counts as covered when >= 90 % of its box lies
in the pixels the default anonymiser really masks on that frame (union of the face
regions of ``Result.dets`` with the configured shape and mask scale).

Subset (budget ~2 min on 2 cores): the Hamilton clip (scene cuts, 1-3 medium faces),
the HDTF talking head (one large face), one ASL clip (hands in front of the face) and
the two Intel GIFs with faces walking in and extreme head poses. The tiny-face clips
(MOT20 crowd, Paris street, face-api 5-frame clip) and long negatives are measured in
benchmarks/bench_fps.py instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeutil import load_bench_common

from streamanon.config import PipelineConfig
from streamanon.io import VideoSource
from streamanon.pipeline import Pipeline, Stages

CLIPS = [
    "videos/face_recognition__short_hamilton_clip.mp4",
    "videos/sadtalker__WDA_AlexandriaOcasioCortez_000.mp4",
    "videos/intel_asl_gestures/want.mkv",
    "videos/intel__preview_face-demographics-walking-and-pause.gif",
    "videos/intel__preview_head-pose-face-detection-female-and-male.gif",
]
MIN_COVERAGE = 0.99


@pytest.fixture(scope="module")
def stages() -> Stages:
    return Stages(PipelineConfig())


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("rel", CLIPS, ids=[Path(c).stem[:30] for c in CLIPS])
def test_default_coverage_on_real_clips(data_dir: Path, rel: str, stages: Stages, pytestconfig: pytest.Config) -> None:
    common = load_bench_common()
    clip = data_dir / rel
    cache = pytestconfig.cache.mkdir("streamanon-coverage-reference") if getattr(pytestconfig, "cache", None) else None
    reference = common.reference(clip, cache=cache)
    assert sum(len(d) for d in reference) > 0, "the reference must contain faces for this test to mean anything"
    cfg = stages.config
    with VideoSource(clip, audio=False) as source:
        w, h = source.info.width, source.info.height
        pipe = Pipeline(cfg, stages)
        regions = [None if r.failed else r.dets for r in pipe.run(source)]
    assert pipe.stats.frames_failed == 0
    cov = common.region_coverage(reference, regions, (w, h), cfg.anonymize)
    assert cov.ratio >= MIN_COVERAGE, (
        f"{clip.name}: coverage {cov.ratio:.4f} ({cov.covered}/{cov.total}); leaked on frames {cov.leaked_frames[:20]}"
    )


def test_coverage_metric_counts_only_masked_pixels() -> None:
    """The metric itself: a face is covered only when >= 90 % of its box is masked."""
    import numpy as np

    from streamanon.config import AnonymizeConfig
    from streamanon.types import Detections

    common = load_bench_common()
    ref = [Detections(np.array([[10, 10, 50, 50]], np.float32))]
    box = AnonymizeConfig(shape="box", mask_scale=1.0, mask_margin=0)
    same = common.region_coverage(ref, [ref[0]], (100, 100), box)
    shifted = common.region_coverage(ref, [Detections(np.array([[16, 10, 56, 50]], np.float32))], (100, 100), box)
    failed = common.region_coverage(ref, [None], (100, 100), box)  # fully masked frame
    missing = common.region_coverage(ref, [Detections.empty()], (100, 100), box)
    assert (same.ratio, shifted.ratio, failed.ratio, missing.ratio) == (1.0, 0.0, 1.0, 0.0)  # 85 % inside < 90 %
    # An ellipse at mask scale 1.3 (the default) around the same box covers it.
    assert common.region_coverage(ref, [ref[0]], (100, 100), AnonymizeConfig()).ratio == 1.0
    with pytest.raises(ValueError, match="frames"):
        common.region_coverage(ref * 2, [ref[0]], (100, 100), box)


@pytest.mark.timeout(300)
def test_detector_workers_give_the_same_regions_as_one(data_dir: Path) -> None:
    """Concurrent detector calls change the speed, never what is masked."""
    from dataclasses import replace
    from itertools import islice

    import numpy as np

    from streamanon.config import DetectConfig

    clip = data_dir / CLIPS[0]
    regions = {}
    for workers in (1, 2):
        cfg = replace(PipelineConfig(), detect=DetectConfig(workers=workers))
        with VideoSource(clip, audio=False) as source:
            regions[workers] = [r.dets.xyxy.copy() for r in Pipeline(cfg).run(islice(source, 40))]
    assert len(regions[1]) == len(regions[2]) == 40
    assert sum(len(r) for r in regions[1]) > 0
    for a, b in zip(regions[1], regions[2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
