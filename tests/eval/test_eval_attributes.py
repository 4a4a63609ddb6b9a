"""Attribute drift (head pose, mouth) and inter-track identity of ``eval temporal``."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from streamanon.eval.attributes import (
    MODEL_3D,
    MOUTH_OPEN_AT,
    POSE_POINTS,
    camera_matrix,
    euler_from_matrix,
    head_pose,
    matrix_from_euler,
    mouth_open,
    mouth_ratio,
    pose_difference,
)

W, H = 640, 480


def _face68(yaw: float, pitch: float, roll: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """68 image points of the generic head rotated by the given angles, about 200 px wide;
    points outside the six of the model are scattered (the solver must ignore them)."""
    rng = np.random.default_rng(seed)
    rvec, _ = cv2.Rodrigues(matrix_from_euler(yaw, pitch, roll))
    pts, _ = cv2.projectPoints(MODEL_3D, rvec, np.array([15.0, -20.0, 1400.0]), camera_matrix(W, H), np.zeros(4))
    lm = rng.uniform(200, 400, (68, 2))
    lm[list(POSE_POINTS)] = pts[:, 0] + rng.normal(0, noise, (6, 2))
    return lm.astype(np.float32)


def test_euler_round_trip() -> None:
    for ang in [(0, 0, 0), (30, -10, 5), (-60, 25, -40)]:
        np.testing.assert_allclose(euler_from_matrix(matrix_from_euler(*ang)), ang, atol=1e-9)


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (-25, 15, 10), (10, -20, -15), (45, 10, 5), (0, 0, 30)])
def test_a_known_rotation_is_recovered(angles: tuple[float, float, float]) -> None:
    exact = head_pose(_face68(*angles), W, H)
    assert exact is not None
    np.testing.assert_allclose(exact, angles, atol=0.01)
    # a pixel of landmark noise on a ~200 px face: within a few degrees
    noisy = head_pose(_face68(*angles, noise=1.0, seed=3), W, H)
    assert noisy is not None
    assert max(pose_difference(noisy, angles)) < 4.0, noisy


def test_pose_is_unknown_for_missing_points_and_differences_wrap() -> None:
    lm = _face68(0, 0, 0)
    lm[30] = np.nan
    assert head_pose(lm, W, H) is None
    assert head_pose(np.zeros((5, 2)), W, H) is None
    assert pose_difference((179.0, 0.0, -10.0), (-179.0, 5.0, 10.0)) == pytest.approx((2.0, 5.0, 20.0))


def _mouth(gap: float, width: float = 40.0) -> np.ndarray:
    lm = np.zeros((68, 2), np.float32)
    lm[:, 0] = np.linspace(0, 100, 68)  # anything: only the inner lips count
    lm[60], lm[64] = (100, 200), (100 + width, 200)
    for k, (top, bottom) in enumerate(((61, 67), (62, 66), (63, 65))):
        x = 100 + width * (k + 1) / 4
        lm[top], lm[bottom] = (x, 200 - gap / 2), (x, 200 + gap / 2)
    return lm


def test_mouth_ratio_and_open_closed() -> None:
    assert mouth_ratio(_mouth(0.0)) == pytest.approx(0.0)
    assert mouth_ratio(_mouth(10.0)) == pytest.approx(0.25)
    assert mouth_open(_mouth(0.0)) is False
    assert mouth_open(_mouth(2.0)) is False  # lips barely apart (ratio 0.05)
    assert mouth_open(_mouth(20.0)) is True
    assert mouth_open(_mouth(MOUTH_OPEN_AT * 40 * 0.9)) is False
    assert mouth_ratio(_mouth(5.0, width=0.0)) is None
    nan = _mouth(5.0)
    nan[62] = np.nan
    assert mouth_open(nan) is None


class _Face:
    def __init__(self) -> None:
        self.box = np.array([200, 150, 420, 380], np.float32)


def test_attribute_drift_compares_original_with_output() -> None:
    from streamanon.eval.temporal import AttributeDrift

    original = np.zeros((H, W, 3), np.uint8)
    output = np.ones((H, W, 3), np.uint8)

    def landmarker(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        # the "output" turned the head by 20 degrees and closed the mouth
        if image[0, 0, 0] == 0:
            lm = _face68(0, 0, 0)
            lm[[60, 61, 62, 63, 64, 65, 66, 67]] = _mouth(20.0)[[60, 61, 62, 63, 64, 65, 66, 67]]
        else:
            lm = _face68(20, 0, 0)
            lm[[60, 61, 62, 63, 64, 65, 66, 67]] = _mouth(0.0)[[60, 61, 62, 63, 64, 65, 66, 67]]
        return np.repeat(lm[None], len(boxes), 0)

    drift = AttributeDrift(landmarker)
    drift.add(original, output, [_Face(), _Face()])
    s = drift.scores()
    assert s["attribute_faces"] == 2
    assert s["pose_drift_yaw"] == pytest.approx(20.0, abs=0.1)
    assert s["pose_drift_pitch"] == pytest.approx(0.0, abs=0.1)
    assert s["mouth_agreement"] == 0.0 and s["mouth_open_original"] == 1.0
    assert s["age_drift"] is None and s["gender_agreement"] is None  # no FaceRes given
    same = AttributeDrift(landmarker)
    same.add(original, original, [_Face()])
    assert same.scores()["mouth_agreement"] == 1.0 and same.scores()["pose_drift_yaw"] == pytest.approx(0.0)


def test_inter_track_scores_count_collisions() -> None:
    from streamanon.eval.temporal import track_pair_scores

    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(0, 1, 128).astype(np.float32), rng.normal(0, 1, 128).astype(np.float32)
    one: list[Any] = [e1, e1 + 0.01]
    tracks = {
        1: (one, one),
        2: ([e1 + 0.02, e1], [e2, e2]),  # output: the same synthetic person as track 1; originals differ
        3: ([e2, e2 + 0.01], [e2, e2]),
    }
    s = track_pair_scores(tracks, 0.6)
    assert s["inter_track_pairs"] == 3
    assert s["inter_track_same"] == pytest.approx(1 / 3)  # tracks 1 and 2 collide
    assert s["inter_track_same_original"] == pytest.approx(1 / 3)  # originals: 2 and 3 are one person
    assert s["inter_track_distance"] > 0.6
    assert track_pair_scores({1: (one, one)}, 0.6)["inter_track_same"] is None
