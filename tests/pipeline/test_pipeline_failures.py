"""An exception in any stage: no hang, no leaked thread, and never a raw frame written.

Each test runs a synthetic noise clip through the real pipeline and sink with a fake
detector that "finds" ``BOX`` on every frame and a solid-black box anonymiser, then
decodes what was written: every frame must have the box region black (anonymised) or
be black all over (failed and masked). Raw frames are grey noise, never near black.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mediautil import decode
from pipeutil import BOX, FakeDetector, FlakyAnonymizer, FlakyTracker, Indexer, noise_pattern

from streamanon.anonymize import create_anonymizer
from streamanon.config import AnonymizeConfig, DetectConfig, IOConfig, PipelineConfig, TrackConfig
from streamanon.errors import AnonymizationError, SinkError
from streamanon.io import VideoSink, VideoSource
from streamanon.pipeline import Pipeline, Result, Stages
from streamanon.runner import process_file
from streamanon.track import create_tracker

FRAMES = 24
FAIL_AT = 9
BLACK = 40  # h264 at crf 18 keeps a black region well below this; noise is >= 60


def config(every: int = 1, batch: int = 1, on_error: str = "mask-frame", workers: int = 1) -> PipelineConfig:
    return PipelineConfig(
        detect=DetectConfig(batch=batch, workers=workers),
        anonymize=AnonymizeConfig(method="solid", shape="box", mask_scale=1.0, mask_margin=0),
        track=TrackConfig(detect_every=every),
        io=IOConfig(on_error=on_error, queue_size=2),  # type: ignore[arg-type]
    )


@pytest.fixture
def clip(clip_factory: Callable[..., Path]) -> Path:
    return clip_factory("noise.mp4", width=320, height=240, frames=FRAMES, rate=24, pattern=noise_pattern())


def stages_for(cfg: PipelineConfig, indexer: Indexer, **kw: Any) -> Stages:
    detector = kw.pop("detector", None) or FakeDetector(indexer)
    return Stages(cfg, detector=detector, **kw)


def run_to_file(
    src: Path,
    dst: Path,
    cfg: PipelineConfig,
    make_stages: Callable[[Indexer], Stages],
    source_fail_at: int | None = None,
    sink_fail_at: int | None = None,
) -> list[Result]:
    """Pipeline → VideoSink, keeping (committing) whatever was written even on errors."""
    written: list[Result] = []
    with VideoSource(src, audio=False) as source:
        indexer = Indexer(source, fail_at=source_fail_at)
        stages = make_stages(indexer)
        sink = VideoSink(dst, source.info, cfg.io)
        try:
            for res in Pipeline(cfg, stages).run(indexer):
                if res.frame.index == sink_fail_at:
                    raise SinkError("disk full (injected)")
                sink.write(res.frame, res.image)
                written.append(res)
        finally:
            sink.close(commit=True)
    return written


def assert_never_raw(path: Path, expect_frames: int | None = None) -> tuple[int, int]:
    """Every decoded frame is anonymised at BOX or fully masked; returns (boxed, fully masked)."""
    frames, _, _ = decode(path)
    if expect_frames is not None:
        assert len(frames) == expect_frames
    x0, y0, x1, y1 = (int(v) for v in BOX)
    boxed = full = 0
    for i, img in enumerate(frames):
        region = img[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(np.int32)
        assert region.max() < BLACK, f"frame {i}: raw pixels in the face region (max {region.max()})"
        if img.astype(np.int32).max() < BLACK:
            full += 1
        else:
            boxed += 1
    return boxed, full


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("every", "workers"), [(1, 1), (3, 1), (1, 2)])
def test_detector_failure_masks_only_that_frame(clip: Path, tmp_path: Path, every: int, workers: int) -> None:
    cfg = config(every, batch=2, workers=workers)
    fail_on = [FAIL_AT] if every == 1 else [FAIL_AT - FAIL_AT % every]  # a frame the detector runs on
    written = run_to_file(
        clip, tmp_path / "o.mp4", cfg, lambda ix: stages_for(cfg, ix, detector=FakeDetector(ix, fail_on))
    )
    assert [r.frame.index for r in written] == list(range(FRAMES))
    assert [r.frame.index for r in written if r.failed] == fail_on
    boxed, full = assert_never_raw(tmp_path / "o.mp4", FRAMES)
    assert (boxed, full) == (FRAMES - 1, 1)


@pytest.mark.timeout(60)
def test_detector_always_failing_masks_every_frame(clip: Path, tmp_path: Path) -> None:
    cfg = config(every=2)
    written = run_to_file(
        clip, tmp_path / "o.mp4", cfg, lambda ix: stages_for(cfg, ix, detector=FakeDetector(ix, "all"))
    )
    assert all(r.failed for r in written) and len(written) == FRAMES
    assert assert_never_raw(tmp_path / "o.mp4", FRAMES) == (0, FRAMES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("every", [1, 4])
def test_tracker_failure_masks_frame_and_recovers(clip: Path, tmp_path: Path, every: int) -> None:
    cfg = config(every)
    made: list[FlakyTracker] = []

    def factory() -> FlakyTracker:
        t = FlakyTracker(create_tracker(cfg.track, cfg.detect.threshold), [FAIL_AT] if not made else [])
        made.append(t)
        return t

    written = run_to_file(clip, tmp_path / "o.mp4", cfg, lambda ix: stages_for(cfg, ix, tracker_factory=factory))
    assert [r.frame.index for r in written if r.failed] == [FAIL_AT]
    assert len(made) == 2  # a fresh tracker after the failure
    assert written[FAIL_AT + 1].detected  # and the detector runs at once to seed it
    assert assert_never_raw(tmp_path / "o.mp4", FRAMES) == (FRAMES - 1, 1)


@pytest.mark.timeout(60)
def test_anonymiser_failure_masks_the_frame(clip: Path, tmp_path: Path) -> None:
    cfg = config()
    inner = create_anonymizer(cfg.anonymize)
    written = run_to_file(
        clip, tmp_path / "o.mp4", cfg, lambda ix: stages_for(cfg, ix, anonymizer=FlakyAnonymizer(inner, ix, [FAIL_AT]))
    )
    assert [r.frame.index for r in written if r.failed] == [FAIL_AT]
    assert assert_never_raw(tmp_path / "o.mp4", FRAMES) == (FRAMES - 1, 1)


@pytest.mark.timeout(60)
def test_anonymiser_failure_with_abort_stops_the_run(clip: Path, tmp_path: Path) -> None:
    cfg = config(on_error="abort")
    inner = create_anonymizer(cfg.anonymize)
    with pytest.raises(AnonymizationError, match="abort"):
        run_to_file(
            clip,
            tmp_path / "o.mp4",
            cfg,
            lambda ix: stages_for(cfg, ix, anonymizer=FlakyAnonymizer(inner, ix, [FAIL_AT])),
        )
    boxed, full = assert_never_raw(tmp_path / "o.mp4")
    assert full == 0 and boxed <= FAIL_AT


@pytest.mark.timeout(60)
def test_source_failure_is_raised_in_the_caller(clip: Path, tmp_path: Path) -> None:
    cfg = config()
    with pytest.raises(RuntimeError, match="source exploded"):
        run_to_file(clip, tmp_path / "o.mp4", cfg, lambda ix: stages_for(cfg, ix), source_fail_at=FAIL_AT)
    boxed, full = assert_never_raw(tmp_path / "o.mp4")
    assert full == 0 and boxed <= FAIL_AT


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("every", "workers"), [(1, 1), (3, 1), (1, 2)])
def test_sink_failure_stops_every_stage(clip: Path, tmp_path: Path, every: int, workers: int) -> None:
    cfg = config(every, workers=workers)
    with pytest.raises(SinkError, match="injected"):
        run_to_file(clip, tmp_path / "o.mp4", cfg, lambda ix: stages_for(cfg, ix), sink_fail_at=FAIL_AT)
    boxed, full = assert_never_raw(tmp_path / "o.mp4")
    assert (boxed, full) == (FAIL_AT, 0)


@pytest.mark.timeout(60)
def test_slow_stage_and_early_close_do_not_hang(clip: Path) -> None:
    """The consumer stops after two frames while the detector is slow and queues are full."""
    cfg = config(workers=2)
    with VideoSource(clip, audio=False) as source:
        ix = Indexer(source)
        pipe = Pipeline(cfg, stages_for(cfg, ix, detector=FakeDetector(ix, delay=0.02)))
        gen = pipe.run(ix)
        assert [next(gen).frame.index for _ in range(2)] == [0, 1]
        gen.close()
    assert pipe.workers is not None and pipe.workers.alive() == []


@pytest.mark.timeout(120)
def test_runner_keeps_masked_output_and_reports_failures(clip: Path, tmp_path: Path) -> None:
    """End to end through process_file: the failed frame is counted and the file is safe."""
    cfg = config(every=2)
    out = tmp_path / "o.mp4"

    class IndexByCall:
        """Detector stage failing on its 3rd image (no frame indices through process_file)."""

        def __init__(self) -> None:
            self.n = 0

        def __call__(self, images: Iterable[np.ndarray]) -> list[Any]:
            res = []
            for _ in images:
                self.n += 1
                if self.n == 3:
                    raise RuntimeError("boom")
                res.append(FakeDetector()([np.zeros((1, 1, 3), np.uint8)])[0])
            return res

    with pytest.raises(AnonymizationError) as err:
        process_file(clip, out, cfg, stages=Stages(cfg, detector=IndexByCall()))
    report = err.value.report  # type: ignore[attr-defined]
    assert report.frames == FRAMES and report.frames_failed == 1
    assert assert_never_raw(out, FRAMES) == (FRAMES - 1, 1)
