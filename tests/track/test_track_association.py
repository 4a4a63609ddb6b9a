"""The tracker's assignment (``lap``) reaches scipy's optimum on every IoU matrix."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from streamanon.track.association import associate, box_iou

boxes = st.lists(
    st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(4, 120), st.integers(4, 120)),
    min_size=0,
    max_size=12,
).map(lambda xs: np.array([[x, y, x + w, y + h] for x, y, w, h in xs], np.float64).reshape(-1, 4))


@settings(max_examples=300, deadline=None)
@given(dets=boxes, tracks=boxes, min_iou=st.sampled_from([0.0, 0.1, 0.3, 0.5]))
def test_same_total_iou_as_scipy(dets: np.ndarray, tracks: np.ndarray, min_iou: float) -> None:
    rows, cols = associate(dets, tracks, min_iou)
    iou = box_iou(dets, tracks)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)  # one-to-one
    assert np.all(iou[rows, cols] >= min_iou)
    if iou.size == 0:
        assert len(rows) == 0
        return
    cost = np.where(iou >= min_iou, 1.0 - iou, float(min(iou.shape) + 1))
    r, c = linear_sum_assignment(cost)
    keep = iou[r, c] >= min_iou
    assert len(rows) == int(keep.sum())  # as many pairs as the optimum keeps
    assert abs(iou[rows, cols].sum() - iou[r[keep], c[keep]].sum()) < 1e-9  # and the same total IoU


def test_gated_pairs_are_never_returned() -> None:
    dets = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float64)
    tracks = np.array([[1, 1, 11, 11], [300, 300, 310, 310], [0, 0, 10, 10]], np.float64)
    rows, cols = associate(dets, tracks, 0.3)
    assert rows.tolist() == [0] and cols.tolist() == [2]  # the exact match wins; the far box stays unmatched
