"""coverage(), box_inside_fraction() and leaked_runs() on hand-made and random cases."""

from __future__ import annotations

import numpy as np
import pytest

from streamanon.track import box_inside_fraction, coverage, covered_mask, leaked_runs
from streamanon.types import Detections

REF = [0.0, 0.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("covers", "expected"),
    [
        ([], 0.0),
        ([[0, 0, 10, 10]], 1.0),
        ([[-5, -5, 20, 20]], 1.0),
        ([[0, 0, 5, 10]], 0.5),
        ([[20, 20, 30, 30]], 0.0),
        ([[10, 0, 20, 10]], 0.0),  # touching edge only
        # Two overlapping covers that together cover the face: union, not a sum.
        ([[0, 0, 6, 10], [4, 0, 10, 10]], 1.0),
        # The same cover twice is not double-counted.
        ([[0, 0, 6, 10], [0, 0, 6, 10]], 0.6),
        # Overlapping L-shape: 60 + 50 - 30 (overlap) = 80 of 100.
        ([[0, 0, 6, 10], [4, 0, 10, 5]], 0.8),
        # Four quadrants with overlaps in the middle.
        ([[0, 0, 6, 6], [4, 0, 10, 6], [0, 4, 6, 10], [4, 4, 10, 10]], 1.0),
        # Inverted / empty covers mask nothing.
        ([[10, 10, 0, 0], [3, 3, 3, 8]], 0.0),
    ],
)
def test_box_inside_fraction_hand_made(covers: list[list[float]], expected: float) -> None:
    assert box_inside_fraction(REF, covers).tolist() == pytest.approx([expected])


def test_box_inside_fraction_many_refs_and_degenerate_ref() -> None:
    refs = [[0, 0, 10, 10], [100, 100, 110, 110], [5, 5, 5, 5], [50, 50, 50, 50]]
    out = box_inside_fraction(refs, [[0, 0, 10, 10]])
    assert out.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert box_inside_fraction(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0,)


def _raster_fraction(ref: np.ndarray, covers: np.ndarray, size: int) -> float:
    mask = np.zeros((size, size), bool)
    for x0, y0, x1, y1 in covers.astype(int):
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    x0, y0, x1, y1 = ref.astype(int)
    return float(mask[y0:y1, x0:x1].mean())


def test_box_inside_fraction_matches_a_pixel_raster_on_random_integer_boxes() -> None:
    rng = np.random.default_rng(7)
    size = 40
    for _ in range(300):
        p = rng.integers(0, size, (1, 4))
        ref = np.concatenate([np.minimum(p[:, :2], p[:, 2:]), np.maximum(p[:, :2], p[:, 2:]) + 1], axis=1)[0]
        q = rng.integers(-5, size + 5, (int(rng.integers(0, 6)), 4))
        covers = np.concatenate([np.minimum(q[:, :2], q[:, 2:]), np.maximum(q[:, :2], q[:, 2:])], axis=1)
        got = box_inside_fraction(ref, covers)[0]
        assert got == pytest.approx(_raster_fraction(ref, covers, size + 10)), (ref, covers)


def test_coverage_face_covered_by_two_overlapping_boxes() -> None:
    ref = [Detections([[0, 0, 10, 10]])]
    # Neither box alone covers 90%; their union covers all of it.
    anon = [Detections([[0, 0, 7, 10], [3, 0, 10, 10]])]
    assert box_inside_fraction(ref[0].xyxy, anon[0].xyxy[:1])[0] < 0.9
    assert coverage(ref, anon) == 1.0


def test_coverage_counts_faces_over_frames_and_uses_min_inside() -> None:
    ref = [
        Detections([[0, 0, 10, 10], [20, 20, 30, 30]]),
        Detections([[0, 0, 10, 10]]),
        Detections.empty(),
    ]
    anon = [
        Detections([[0, 0, 9, 10]]),  # first face exactly 90 % inside, second not at all
        Detections([[0, 0, 10, 10]]),
        Detections([[0, 0, 5, 5]]),
    ]
    assert coverage(ref, anon) == pytest.approx(2 / 3)
    assert coverage(ref, anon, min_inside=0.95) == pytest.approx(1 / 3)
    assert [m.tolist() for m in covered_mask(ref, anon)] == [[True, False], [True], []]


def test_coverage_without_faces_is_perfect_and_lengths_must_match() -> None:
    assert coverage([Detections.empty()], [Detections.empty()]) == 1.0
    assert coverage([], []) == 1.0
    with pytest.raises(ValueError, match="1 frames"):
        coverage([Detections.empty()], [])


def test_leaked_runs_per_identity_and_unidentified() -> None:
    face = [0, 0, 10, 10]
    other = [50, 50, 60, 60]
    cover = Detections([face])
    nothing = Detections.empty()

    def ref(*ids: int) -> Detections:
        boxes = [face if i == 1 else other for i in ids]
        return Detections(np.asarray(boxes, np.float32), track_id=np.asarray(ids))

    reference = [ref(1, 2), ref(1, 2), ref(1, 2), ref(1, 2), ref(1), ref(-1)]
    anonymised = [nothing, nothing, cover, nothing, cover, nothing]
    # id 1 leaks in frames 0-1 and 3; id 2 (never covered) leaks in 0-3; the
    # unidentified face leaks in frame 5.
    assert leaked_runs(reference, anonymised) == [1, 2, 1, 4]
    assert leaked_runs([ref(1)], [cover]) == []
