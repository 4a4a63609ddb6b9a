"""Box IoU and one-to-one assignment of detections to tracks (Hungarian, IoU-gated)."""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

__all__ = ["associate", "box_iou"]

# Cost of a pair that fails the IoU gate: larger than any real cost (1 - IoU <= 1), so
# the solver only picks such a pair when nothing else is possible; it is then dropped.
_GATED_COST = 1e6


def box_iou(a_xyxy: ArrayLike, b_xyxy: ArrayLike) -> NDArray[np.float64]:
    """Pairwise intersection over union of two sets of boxes.

    Args:
        a_xyxy: ``(M, 4)`` boxes ``(x0, y0, x1, y1)``.
        b_xyxy: ``(N, 4)`` boxes.

    Returns:
        ``(M, N)`` IoU in ``[0, 1]``; 0 where both boxes are empty.

    Example:
        >>> float(box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]])[0, 0])
        0.3333333333333333
    """
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def associate(det_xyxy: ArrayLike, track_xyxy: ArrayLike, min_iou: float) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Matches detections to tracks one-to-one, maximising total IoU.

    The cost is ``1 - IoU`` solved with the Hungarian algorithm; pairs with
    ``IoU < min_iou`` are never returned.

    Args:
        det_xyxy: ``(M, 4)`` detection boxes.
        track_xyxy: ``(N, 4)`` predicted track boxes.
        min_iou: the IoU gate.

    Returns:
        ``(det_idx, track_idx)``: equal-length index arrays of the matched pairs.
    """
    iou = box_iou(det_xyxy, track_xyxy)
    if iou.size == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty.copy()
    from scipy.optimize import linear_sum_assignment  # heavy (0.5 s); only once a track exists

    cost = np.where(iou >= min_iou, 1.0 - iou, _GATED_COST)
    rows, cols = linear_sum_assignment(cost)
    ok = iou[rows, cols] >= min_iou
    return rows[ok].astype(np.intp), cols[ok].astype(np.intp)
