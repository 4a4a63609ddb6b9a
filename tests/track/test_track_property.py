"""Property: tracking only ADDS coverage, for any detection sequence and config."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamanon.config import TrackConfig
from streamanon.track import FaceTracker, box_inside_fraction, coverage
from streamanon.types import SOURCE_DETECTOR, Detections

# A detection is either a jittered view of one of a few moving objects (so tracks form,
# match, coast and die) or clutter anywhere (births and false matches).
_coord = st.floats(-50, 600, allow_nan=False, width=32)
_size = st.floats(0.0, 150, allow_nan=False, width=32)
_det = st.tuples(
    st.integers(-1, 2),  # object index, -1 = clutter
    st.one_of(st.sampled_from([0.05, 0.2, 0.45, 0.9]), st.floats(0.0, 1.0, width=32)),  # score
    st.tuples(st.floats(-3, 3, width=32), st.floats(-3, 3, width=32)),  # jitter
    st.tuples(_coord, _coord, _size, _size),  # clutter box x, y, w, h
)
_frame = st.one_of(st.none(), st.lists(_det, min_size=1, max_size=6), st.lists(_det, max_size=6))
_object = st.tuples(_coord, _coord, st.floats(20, 150), st.floats(20, 150), st.floats(-8, 8), st.floats(-8, 8))
_config = st.builds(
    TrackConfig,
    enabled=st.sampled_from([True, True, True, False]),
    max_coast=st.integers(0, 6),
    iou_match=st.floats(0.01, 0.9),
    iou_match_low=st.floats(0.01, 0.9),
    low_threshold=st.sampled_from([0.1, 0.3]) | st.floats(0.01, 0.99),
    coast_growth=st.floats(0.0, 1.0),
    smoothing=st.floats(0.0, 0.95),
)


def _build(frame: list[tuple], objects: list[tuple], t: int) -> Detections:
    boxes, scores = [], []
    for obj, score, (jx, jy), (cx0, cy0, cw, ch) in frame:
        if obj >= 0 and objects:
            x, y, w, h, vx, vy = objects[obj % len(objects)]
            boxes.append([x + vx * t + jx, y + vy * t + jy, x + vx * t + w + jx, y + vy * t + h + jy])
        else:
            boxes.append([cx0, cy0, cx0 + cw, cy0 + ch])
        scores.append(score)
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    config=_config,
    threshold=st.sampled_from([0.3, 0.5]) | st.floats(0.05, 1.0),
    objects=st.lists(_object, min_size=1, max_size=3),
    frames=st.lists(st.tuples(st.integers(1, 3), _frame), min_size=5, max_size=30),
)
def test_every_high_score_detection_is_covered(
    config: TrackConfig, threshold: float, objects: list[tuple], frames: list[tuple]
) -> None:
    tracker = FaceTracker(config, threshold)
    t = 0
    for step, frame in frames:
        t += step
        raw = None if frame is None else _build(frame, objects, t)
        before = len(tracker)
        out = tracker.update(raw, t)
        # Only high-score detections start tracks.
        n_high = 0 if raw is None else int((raw.score >= threshold).sum())
        assert len(tracker) <= before + n_high
        if config.enabled:
            assert np.all(out.track_id >= 1)
        if raw is None:
            continue
        must = raw[raw.score >= threshold]
        # Each such detection is contained in one detector row of the output...
        det_rows = out[out.source == SOURCE_DETECTOR].xyxy
        for box in must.xyxy:
            inside = (det_rows[:, :2] <= box[:2]).all(axis=1) & (det_rows[:, 2:] >= box[2:]).all(axis=1)
            assert inside.any(), (box, det_rows)
        # ...so the union of the output covers all of it, as coverage() measures
        # (for boxes with an area; a zero-area box has nothing to cover).
        solid = must[(must.xyxy[:, 2] > must.xyxy[:, 0]) & (must.xyxy[:, 3] > must.xyxy[:, 1])]
        assert np.all(box_inside_fraction(solid.xyxy, out.xyxy) >= 1.0 - 1e-6)
        assert coverage([solid], [out], min_inside=1.0 - 1e-6) == 1.0
        # Nothing below the low threshold (or unmatched below threshold) is reported
        # as a detector row unless it continued a track.
        low_rows = out[(out.source == SOURCE_DETECTOR) & (out.score < threshold)]
        assert np.all(low_rows.track_id >= 1)
