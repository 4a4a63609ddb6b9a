"""FaceTracker: association, coasting, lifetimes, ids and bounded state."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streamanon.config import TrackConfig
from streamanon.errors import ConfigError
from streamanon.track import FaceTracker, Tracker, box_inside_fraction, create_tracker
from streamanon.track import tracker as tracker_module
from streamanon.types import SOURCE_DETECTOR, SOURCE_TRACK, Detections

MakeDets = Callable[..., Detections]

THRESHOLD = 0.5


def _contains(outer: np.ndarray, inner: np.ndarray) -> bool:
    return bool(outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3])


def _rows(out: Detections, track_id: int) -> Detections:
    return out[out.track_id == track_id]


def test_protocol_and_factory() -> None:
    tracker = create_tracker(TrackConfig(), THRESHOLD)
    assert isinstance(tracker, FaceTracker)
    assert isinstance(tracker, Tracker)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_rejects_bad_threshold(threshold: float) -> None:
    with pytest.raises(ConfigError, match="threshold"):
        FaceTracker(TrackConfig(), threshold)


@pytest.mark.parametrize("smoothing", [0.0, 0.5, 0.9])
def test_face_present_at_frame_0_is_covered_at_frame_0(make_dets: MakeDets, smoothing: float) -> None:
    tracker = FaceTracker(TrackConfig(smoothing=smoothing), THRESHOLD)
    raw = make_dets([[10, 20, 60, 80]], [0.8])
    out = tracker.update(raw, 0)
    assert len(out) == 1
    assert np.array_equal(out.xyxy[0], raw.xyxy[0])
    assert out.track_id.tolist() == [1]
    assert out.source.tolist() == [SOURCE_DETECTOR]
    assert out.score.tolist() == pytest.approx([0.8])


def test_landmarks_of_detections_are_kept(make_dets: MakeDets) -> None:
    lms = np.arange(10, dtype=np.float32).reshape(1, 5, 2) + 20
    raw = Detections(np.array([[10, 10, 50, 50]], np.float32), np.array([0.9], np.float32), lms)
    out = FaceTracker(TrackConfig(), THRESHOLD).update(raw, 0)
    assert np.array_equal(out.landmarks, lms)


@pytest.mark.parametrize("velocity", [(0.0, 0.0), (3.0, 0.0), (-4.0, 2.5), (6.0, -6.0)])
@pytest.mark.parametrize("smoothing", [0.0, 0.5])
def test_missed_detection_of_constant_velocity_face_is_covered(
    make_dets: MakeDets, velocity: tuple[float, float], smoothing: float
) -> None:
    max_coast = 6
    tracker = FaceTracker(TrackConfig(max_coast=max_coast, smoothing=smoothing), THRESHOLD)
    start = np.array([200.0, 150.0, 260.0, 220.0])
    step = np.array([*velocity, *velocity])
    seen = 10
    for t in range(seen + max_coast):
        true_box = start + t * step
        detected = t < seen
        out = tracker.update(make_dets([true_box] if detected else []), t)
        assert len(out) == 1, t
        if not detected:
            assert out.source.tolist() == [SOURCE_TRACK]
            assert out.track_id.tolist() == [1]
            assert np.isnan(out.landmarks).all()
            assert out.score.tolist() == pytest.approx([0.9])
        assert _contains(out.xyxy[0], true_box), (t, out.xyxy[0], true_box)


def test_coasting_box_grows_with_frames_since_seen(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(coast_growth=0.1, max_coast=5), THRESHOLD)
    tracker.update(make_dets([[0, 0, 100, 100]]), 0)
    widths = []
    for t in range(1, 4):
        box = tracker.update(make_dets(), t).xyxy[0]
        widths.append(box[2] - box[0])
    assert widths == pytest.approx([110.0, 120.0, 130.0], abs=1e-3)


@pytest.mark.parametrize("max_coast", [0, 1, 3])
def test_track_dies_after_max_coast_detector_runs(make_dets: MakeDets, max_coast: int) -> None:
    tracker = FaceTracker(TrackConfig(max_coast=max_coast), THRESHOLD)
    tracker.update(make_dets([[0, 0, 40, 40]]), 0)
    for t in range(1, max_coast + 1):
        assert len(tracker.update(make_dets(), t)) == 1, t
    assert len(tracker.update(make_dets(), max_coast + 1)) == 0
    assert len(tracker) == 0


def test_low_score_detection_keeps_track_alive(make_dets: MakeDets) -> None:
    cfg = TrackConfig(max_coast=2, low_threshold=0.1)
    tracker = FaceTracker(cfg, THRESHOLD)
    tracker.update(make_dets([[100, 100, 150, 150]], [0.9]), 0)
    for t in range(1, 20):
        box = [100 + t, 100, 150 + t, 150]
        out = tracker.update(make_dets([box], [0.2]), t)
        assert out.track_id.tolist() == [1]
        assert out.source.tolist() == [SOURCE_DETECTOR]
        assert out.score.tolist() == pytest.approx([0.2])
        assert _contains(out.xyxy[0], np.array(box))
    assert tracker.track_ids.tolist() == [1]


def test_low_score_detections_do_not_start_tracks(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(low_threshold=0.1), THRESHOLD)
    out = tracker.update(make_dets([[0, 0, 30, 30], [100, 100, 140, 140]], [0.3, 0.05]), 0)
    assert len(out) == 0 and len(tracker) == 0
    # A low-score detection far from the one live track neither matches nor spawns.
    tracker.update(make_dets([[0, 0, 30, 30]], [0.9]), 1)
    out = tracker.update(make_dets([[300, 300, 330, 330]], [0.3]), 2)
    assert out.source.tolist() == [SOURCE_TRACK]
    assert tracker.track_ids.tolist() == [1]


def test_detections_below_low_threshold_are_ignored(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(low_threshold=0.2, max_coast=1), THRESHOLD)
    tracker.update(make_dets([[0, 0, 30, 30]]), 0)
    assert tracker.update(make_dets([[0, 0, 30, 30]], [0.1]), 1).source.tolist() == [SOURCE_TRACK]
    assert len(tracker.update(make_dets([[0, 0, 30, 30]], [0.1]), 2)) == 0


def test_high_score_pass_has_priority_over_low(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(), THRESHOLD)
    tracker.update(make_dets([[0, 0, 40, 40]]), 0)
    # Both overlap the track; the high-score one must take it, the low one is dropped.
    out = tracker.update(make_dets([[2, 0, 42, 40], [0, 1, 40, 41]], [0.3, 0.95]), 1)
    assert out.track_id.tolist() == [1]
    assert out.score.tolist() == pytest.approx([0.95])


def test_none_frames_coast_without_killing_tracks(make_dets: MakeDets) -> None:
    every = 5
    tracker = FaceTracker(TrackConfig(max_coast=2, detect_every=every), THRESHOLD)
    tracker.update(make_dets([[50, 50, 90, 90]]), 0)
    for t in range(1, 15 + 1):
        ran = t % every == 0
        out = tracker.update(make_dets() if ran else None, t)
        expected_alive = t < 15  # detector runs at 5, 10, 15 miss it; max_coast=2
        assert len(out) == int(expected_alive), t
        if expected_alive:
            assert out.source.tolist() == [SOURCE_TRACK]
            assert out.track_id.tolist() == [1]


def test_detect_every_n_moving_face_keeps_id_and_coverage(make_dets: MakeDets) -> None:
    every = 3
    tracker = FaceTracker(TrackConfig(detect_every=every, coast_growth=0.05), THRESHOLD)
    start = np.array([100.0, 100.0, 160.0, 170.0])
    step = np.array([2.0, 1.0, 2.0, 1.0])
    for t in range(60):
        true_box = start + t * step
        out = tracker.update(make_dets([true_box]) if t % every == 0 else None, t)
        assert out.track_id.tolist() == [1], t
        if t >= 10:  # once the velocity is learnt, predictions cover the face
            assert _contains(out.xyxy[0], true_box), (t, out.xyxy[0], true_box)


def test_none_update_on_empty_and_disabled_tracker() -> None:
    assert len(FaceTracker(TrackConfig(), THRESHOLD).update(None, 0)) == 0
    assert len(FaceTracker(TrackConfig(enabled=False), THRESHOLD).update(None, 0)) == 0


def test_disabled_returns_raw_detections_above_threshold(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(enabled=False), THRESHOLD)
    raw = make_dets([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0.9, 0.2, 0.5])
    out = tracker.update(raw, 0)
    assert np.array_equal(out.xyxy, raw.xyxy[[0, 2]])
    assert out.track_id.tolist() == [-1, -1]
    assert len(tracker.update(make_dets(), 1)) == 0
    assert len(tracker) == 0


def test_ids_stable_for_two_crossing_faces(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(), THRESHOLD)
    rng = np.random.default_rng(0)
    a0, va = np.array([50.0, 100.0, 110.0, 170.0]), np.array([5.0, 0.5, 5.0, 0.5])
    b0, vb = np.array([350.0, 110.0, 410.0, 180.0]), np.array([-5.0, -0.5, -5.0, -0.5])
    for t in range(70):  # they overlap around t = 30 and then move apart
        a, b = a0 + t * va, b0 + t * vb
        order = rng.permutation(2)
        boxes = np.stack([a, b])[order]
        out = tracker.update(make_dets(boxes), t)
        det = out[out.source == SOURCE_DETECTOR]
        ids = dict(zip(order.tolist(), det.track_id.tolist(), strict=True))
        assert ids == {0: 1, 1: 2}, t
    assert tracker.track_ids.tolist() == [1, 2]


def test_ids_start_at_1_and_increase(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(max_coast=0), THRESHOLD)
    out = tracker.update(make_dets([[0, 0, 10, 10], [50, 50, 60, 60]]), 0)
    assert out.track_id.tolist() == [1, 2]
    out = tracker.update(make_dets([[200, 200, 210, 210]]), 1)  # old ones die, new born
    assert out.track_id.tolist() == [3]
    tracker.reset()
    assert len(tracker) == 0
    assert tracker.update(make_dets([[200, 200, 210, 210]]), 2).track_id.tolist() == [4]


def test_memory_bounded_on_endless_random_births(make_dets: MakeDets) -> None:
    max_coast, per_frame = 15, 6
    tracker = FaceTracker(TrackConfig(max_coast=max_coast), THRESHOLD)
    rng = np.random.default_rng(1)
    for t in range(1000):
        n = int(rng.integers(0, per_frame + 1))
        xy = rng.uniform(0, 1900, (n, 2))
        wh = rng.uniform(10, 80, (n, 2))
        tracker.update(make_dets(np.concatenate([xy, xy + wh], axis=1)), t)
        assert len(tracker) <= (max_coast + 1) * per_frame
    assert tracker.track_ids.max() > 1000  # many were born, and most have died


def test_hard_cap_on_live_tracks(make_dets: MakeDets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracker_module, "MAX_TRACKS", 5)
    tracker = FaceTracker(TrackConfig(max_coast=100), THRESHOLD)
    for t in range(4):
        boxes = [[1000 * t + 100 * i, 0, 1000 * t + 100 * i + 20, 20] for i in range(3)]
        out = tracker.update(make_dets(boxes), t)
        assert np.array_equal(out[out.source == SOURCE_DETECTOR].xyxy, np.asarray(boxes, np.float32))
        assert len(tracker) <= 5
    assert tracker.track_ids.tolist()[-3:] == [10, 11, 12]


def test_frame_gap_advances_the_motion_model(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(smoothing=0.0), THRESHOLD)
    for t in range(10):
        tracker.update(make_dets([[10 * t, 0, 10 * t + 50, 50]]), t)
    out = tracker.update(None, 14)  # frames 10..13 were dropped upstream
    cx = (out.xyxy[0, 0] + out.xyxy[0, 2]) / 2
    assert cx == pytest.approx(25 + 140, abs=5)


def test_non_increasing_frame_index_is_tolerated(make_dets: MakeDets, caplog: pytest.LogCaptureFixture) -> None:
    tracker = FaceTracker(TrackConfig(), THRESHOLD)
    tracker.update(make_dets([[0, 0, 10, 10]]), 5)
    out = tracker.update(make_dets([[0, 0, 10, 10]]), 5)
    assert out.track_id.tolist() == [1]
    assert "does not follow" in caplog.text


def test_non_finite_boxes_raise(make_dets: MakeDets) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        FaceTracker(TrackConfig(), THRESHOLD).update(make_dets([[0, 0, np.nan, 10]]), 0)


def test_smoothed_box_is_a_union_with_the_raw_box(make_dets: MakeDets) -> None:
    tracker = FaceTracker(TrackConfig(smoothing=0.8), THRESHOLD)
    rng = np.random.default_rng(3)
    for t in range(50):
        jitter = rng.normal(0, 4, 4)
        raw = np.array([100, 100, 160, 170]) + jitter
        out = tracker.update(make_dets([raw]), t)
        assert len(out) == 1
        assert box_inside_fraction(raw, out.xyxy)[0] == pytest.approx(1.0)
