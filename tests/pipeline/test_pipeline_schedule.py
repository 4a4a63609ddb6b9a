"""Order, batching, detect-every-N scheduling, scene cuts, look-back, live drops, stages."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from pipeutil import BOX, FakeDetector, Indexer

from streamanon.config import DetectConfig, IOConfig, PipelineConfig, TrackConfig
from streamanon.pipeline import Pipeline, Stages, auto_threads
from streamanon.track import create_tracker
from streamanon.types import SOURCE_DETECTOR, SOURCE_TRACK, Detections, Frame

GREY = np.full((120, 160, 3), 128, np.uint8)


def frames(n: int, cut_at: Sequence[int] = ()) -> list[Frame]:
    """``n`` identical grey frames (no scene cut), white at ``cut_at``; own image objects."""
    return [Frame((GREY * 0 + 255) if i in cut_at else GREY.copy(), i) for i in range(n)]


def cfg(every: int = 1, batch: int = 1, queue_size: int = 8) -> PipelineConfig:
    return PipelineConfig(
        detect=DetectConfig(batch=batch), track=TrackConfig(detect_every=every), io=IOConfig(queue_size=queue_size)
    )


class AppearingFace:
    """A detector whose face exists from frame ``start`` on (box BOX scaled to 160x120)."""

    box = np.array([[40, 30, 70, 70]], np.float32)

    def __init__(self, indexer: Indexer, start: int) -> None:
        self.indexer, self.start = indexer, start
        self.seen: list[int] = []

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for im in images:
            i = self.indexer.of(im)
            self.seen.append(i)
            out.append(Detections(self.box, np.array([0.9], np.float32)) if i >= self.start else Detections.empty())
        return out


@pytest.mark.timeout(60)
def test_frames_stay_in_order_with_batches_and_a_jittery_detector() -> None:
    rng = np.random.default_rng(0)

    class Jittery:
        def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
            time.sleep(float(rng.uniform(0, 0.004)))
            return [Detections(np.array([BOX], np.float32), np.array([0.9], np.float32)) for _ in images]

    c = cfg(batch=3, queue_size=2)
    pipe = Pipeline(c, Stages(c, detector=Jittery()))
    out = [r.frame.index for r in pipe.run(frames(200))]
    assert out == list(range(200))
    assert pipe.stats.frames == 200 and pipe.stats.detector_runs == 200


@pytest.mark.timeout(60)
@pytest.mark.parametrize("every", [1, 2, 5])
def test_detector_runs_every_n_frames(every: int) -> None:
    fs = frames(23)
    ix = Indexer(fs)
    det = FakeDetector(ix)
    c = cfg(every=every, batch=4)
    pipe = Pipeline(c, Stages(c, detector=det))
    results = list(pipe.run(ix))
    assert det.seen == list(range(0, 23, every))
    assert [r.detected for r in results] == [i % every == 0 for i in range(23)]
    assert pipe.stats.detector_runs == len(det.seen)
    assert all(len(r.dets) for r in results)  # tracked in between


@pytest.mark.timeout(60)
def test_scene_cut_forces_detection() -> None:
    fs = frames(16, cut_at=[5])
    ix = Indexer(fs)
    det = FakeDetector(ix)
    c = cfg(every=8)
    list(Pipeline(c, Stages(c, detector=det)).run(ix))
    assert det.seen == [0, 5, 6, 14]  # white (5) and back (6) are cuts; N counts from the last run


@pytest.mark.timeout(60)
def test_look_back_covers_a_face_appearing_between_detector_runs() -> None:
    fs = frames(13)
    ix = Indexer(fs)
    det = AppearingFace(ix, start=6)
    c = cfg(every=4)
    results = list(Pipeline(c, Stages(c, detector=det)).run(ix))
    assert det.seen == [0, 4, 8, 12]
    for r in results[:5]:  # before the last run without the face: nothing to mask
        assert len(r.dets) == 0, r.frame.index
    for r in results[5:8]:  # frames 5-7: masked by the look-back from frame 8, grown with distance
        d = r.dets
        assert len(d) == 1 and d.source[0] == SOURCE_TRACK, r.frame.index
        grow = 1 + c.track.coast_growth * (8 - r.frame.index)
        x0, y0, x1, y1 = AppearingFace.box[0]
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * grow, (y1 - y0) / 2 * grow
        np.testing.assert_allclose(d.xyxy[0], [cx - hw, cy - hh, cx + hw, cy + hh], rtol=1e-5)
        assert np.isnan(d.landmarks).all()
    assert results[8].dets.source.tolist() == [SOURCE_DETECTOR]
    assert all(len(r.dets) >= 1 for r in results[8:])


@pytest.mark.timeout(60)
def test_look_back_is_not_used_without_detect_every() -> None:
    fs = frames(10)
    ix = Indexer(fs)
    c = cfg(every=1)
    results = list(Pipeline(c, Stages(c, detector=AppearingFace(ix, start=6))).run(ix))
    assert [len(r.dets) for r in results] == [0] * 6 + [1] * 4


@pytest.mark.timeout(60)
def test_live_mode_drops_oldest_frames_and_keeps_the_end() -> None:
    c = cfg(queue_size=2)

    class Slow:
        def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
            time.sleep(0.01)
            return [Detections.empty() for _ in images]

    pipe = Pipeline(c, Stages(c, detector=Slow()), live=True)
    out = [r.frame.index for r in pipe.run(frames(300))]
    assert out == sorted(out) and len(set(out)) == len(out)
    assert out[-1] == 299  # the newest frame is never the one dropped
    assert pipe.stats.frames_dropped == 300 - len(out) > 0


@pytest.mark.timeout(60)
def test_every_stage_is_swappable() -> None:
    calls: dict[str, int] = {"tracker": 0, "scene": 0, "anon": 0}
    c = cfg(every=3)

    class Tracker:
        def __init__(self) -> None:
            self.inner = create_tracker(c.track, c.detect.threshold)

        def update(self, dets: Detections | None, index: int, time: float | None = None) -> Detections:
            calls["tracker"] += 1
            return self.inner.update(dets, index)

    class NeverCut:
        def __call__(self, image: np.ndarray) -> bool:
            calls["scene"] += 1
            return False

    class Inverter:
        name = "invert"

        def apply(self, image: np.ndarray, dets: Detections) -> np.ndarray:
            calls["anon"] += 1
            return 255 - image

    fs = frames(9, cut_at=[4])
    ix = Indexer(fs)
    det = FakeDetector(ix)
    stages = Stages(c, detector=det, anonymizer=Inverter(), tracker_factory=Tracker, scene_factory=NeverCut)
    results = list(Pipeline(c, stages).run(ix))
    assert det.seen == [0, 3, 6]  # the white frame 4 is no cut for this scene detector
    assert calls == {"tracker": 9, "scene": 9, "anon": 9}
    assert int(results[0].image[0, 0, 0]) == 127


def test_auto_threads_leave_a_core_for_decode_and_encode() -> None:
    assert [auto_threads(n) for n in (1, 2, 3, 4, 16, 64)] == [1, 1, 2, 3, 8, 8]
    assert Stages.detect_config(DetectConfig(threads=3)).threads == 3
    assert Stages.detect_config(DetectConfig()).threads == auto_threads()
    assert replace(Stages.detect_config(DetectConfig()), threads=0) == DetectConfig()


def test_workers_share_the_threads() -> None:
    # (auto workers per device: tests/backends/test_backends_select.py)
    # threads are shared by the workers, never below one per call
    assert Stages.detect_config(DetectConfig(), workers=2).threads == max(1, auto_threads() // 2)
    assert Stages.detect_config(DetectConfig(threads=3), workers=2).threads == 3
    # a detector handed in by the caller runs one call at a time unless workers is set
    assert Stages(cfg(), detector=FakeDetector()).detect_workers == 1
    assert Stages(replace(cfg(), detect=DetectConfig(workers=3)), detector=FakeDetector()).detect_workers == 3


class ConcurrencyProbe(FakeDetector):
    """A slow fake detector that records how many calls overlap."""

    def __init__(self, indexer: Indexer, delay: float, fail_on: Sequence[int] = ()) -> None:
        super().__init__(indexer, fail_on=fail_on, delay=delay)
        import threading

        self._lock = threading.Lock()
        self.running = self.peak = 0

    def __call__(self, images):  # type: ignore[no-untyped-def]
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return super().__call__(images)
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.parametrize(("every", "workers", "peak"), [(1, 3, 3), (1, 1, 1), (3, 3, 1)])
def test_detector_workers_overlap_calls_and_keep_order(every: int, workers: int, peak: int) -> None:
    c = replace(cfg(every), detect=DetectConfig(workers=workers))
    ix = Indexer(frames(30))
    det = ConcurrencyProbe(ix, delay=0.03, fail_on=[7])
    results = list(Pipeline(c, Stages(c, detector=det)).run(ix))
    assert [r.frame.index for r in results] == list(range(30))
    assert det.peak == peak  # detect-every-N schedules from the tracker's outcome: one call at a time
    assert [r.frame.index for r in results if r.failed] == ([7] if every == 1 else [])
    assert all(len(r.dets) for r in results if not r.failed)  # every other frame is covered
