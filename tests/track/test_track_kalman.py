"""Vectorised constant-velocity Kalman filter."""

from __future__ import annotations

import numpy as np
import pytest

from streamanon.track.kalman import KalmanBoxFilter, cxcywh_to_xyxy, xyxy_to_cxcywh


def test_box_conversions_round_trip() -> None:
    xyxy = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 2.0]])
    assert np.allclose(xyxy_to_cxcywh(xyxy), [[30, 60, 40, 80], [0.5, 1, 1, 2]])
    assert np.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)


def test_learns_constant_velocity() -> None:
    kf = KalmanBoxFilter()
    box = np.array([[100.0, 100.0, 150.0, 160.0]])
    v = np.array([4.0, -2.0, 4.0, -2.0])
    kf.initiate(box)
    for t in range(1, 30):
        kf.predict()
        kf.update(np.array([0]), box + t * v)
    kf.predict()
    assert np.allclose(kf.boxes_xyxy(), box + 30 * v, atol=0.5)
    assert np.allclose(kf.mean[0, 4:6], [4.0, -2.0], atol=0.1)


def test_batched_rows_are_independent() -> None:
    together = KalmanBoxFilter()
    together.initiate([[0, 0, 10, 10], [100, 100, 140, 150]])
    alone = KalmanBoxFilter()
    alone.initiate([[100, 100, 140, 150]])
    for t in range(1, 6):
        together.predict()
        alone.predict()
        together.update(np.array([1]), [[100 + 3 * t, 100, 140 + 3 * t, 150]])
        alone.update(np.array([0]), [[100 + 3 * t, 100, 140 + 3 * t, 150]])
    assert np.allclose(together.mean[1], alone.mean[0])
    assert np.allclose(together.covariance[1], alone.covariance[0])
    # Row 0 was never measured: it only predicted, its uncertainty grew.
    assert together.covariance[0, 0, 0] > together.covariance[1, 0, 0]


def test_update_shrinks_uncertainty_and_keeps_covariance_symmetric() -> None:
    kf = KalmanBoxFilter()
    kf.initiate([[0, 0, 40, 40]])
    kf.predict()
    before = np.trace(kf.covariance[0])
    kf.update(np.array([0]), [[1, 1, 41, 41]])
    assert np.trace(kf.covariance[0]) < before
    assert np.allclose(kf.covariance[0], kf.covariance[0].T)
    assert np.all(np.linalg.eigvalsh(kf.covariance[0]) > 0)


def test_predict_with_gap_equals_repeated_steps_for_the_mean() -> None:
    a, b = KalmanBoxFilter(), KalmanBoxFilter()
    for kf in (a, b):
        kf.initiate([[0, 0, 20, 20]])
        kf.mean[0, 4] = 2.0
    a.predict(5)
    for _ in range(5):
        b.predict()
    assert np.allclose(a.mean, b.mean)


def test_shrinking_box_never_inverts() -> None:
    kf = KalmanBoxFilter()
    kf.initiate([[0, 0, 10, 10]])
    kf.mean[0, 6:8] = -5.0
    kf.predict(10)
    box = kf.boxes_xyxy()[0]
    assert box[2] > box[0] and box[3] > box[1]
    assert np.all(kf.mean[0, 6:8] == 0.0)


def test_keep_and_empty_operations() -> None:
    kf = KalmanBoxFilter()
    kf.predict()
    kf.update(np.zeros(0, np.intp), np.zeros((0, 4)))
    kf.initiate(np.zeros((0, 4)))
    assert len(kf) == 0
    kf.initiate([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]])
    kf.keep(np.array([True, False, True]))
    assert len(kf) == 2 and kf.covariance.shape == (2, 8, 8)
    assert np.allclose(kf.boxes_xyxy()[1], [9, 9, 10, 10])


def test_update_rejects_mismatched_lengths() -> None:
    kf = KalmanBoxFilter()
    kf.initiate([[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="1 track indices but 2 boxes"):
        kf.update(np.array([0]), [[0, 0, 1, 1], [0, 0, 1, 1]])
