"""Post-processing shared by every multi-pass detector: fusion, tile edges, priors.

Why one module: the full-frame pass and the tiles (and any other scale or detector) see
the same face several times, at different scales and scores. Merging them the same way
everywhere keeps the product, ``eval detect`` and the benchmarks comparable.

* :func:`fuse` clusters overlapping boxes (IoU) and replaces each cluster by a
  score-weighted box (weighted box fusion) whose score is fused across the passes that
  saw it: a face seen at two scales is surer than one seen at one.
* :func:`cut_by_edge` / :func:`inside`: a box touching an inner tile edge is a partial
  face; it is dropped when a neighbouring tile (overlapping by more than a face) saw it
  whole.
* :func:`plausible`: size and aspect-ratio priors (CenterFace's boxes of real faces are
  about 1.2-1.3 times taller than wide), and ``max_face_size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..track.association import box_iou
from ..types import Detections

#: Boxes of one face seen by two passes overlap at least this much.
FUSE_IOU = 0.4
#: Height/width of plausible face boxes (CenterFace's real faces: median 1.27, 1st-99th
#: percentile 0.95-1.75 on the shared WIDER subset).
ASPECT_RANGE = (0.8, 2.2)
#: Boxes from this size (px, sqrt of the area) up keep their tile score (``size_prior``).
SIZE_PRIOR_PX = 32.0
#: A box closer than this to an inner tile edge (tile pixels) is cut by it.
EDGE_MARGIN = 2.0


def fuse(
    dets: Detections,
    passes: NDArray[np.int64],
    n_passes: int,
    iou: float = FUSE_IOU,
    weights: Sequence[float] | None = None,
) -> tuple[Detections, NDArray[np.int64]]:
    """Weighted box fusion of ``dets`` whose rows came from ``passes`` (0..n_passes-1).

    Greedy by score: each cluster is the best remaining box and every box overlapping it
    by ``iou``. The fused box is the score-weighted mean of the cluster's boxes; the
    landmarks are the best box's; the score is ``1 - prod(1 - s_p)`` over the best score
    ``s_p`` of each pass in the cluster, each pass's score first multiplied by its
    ``weight`` (default 1): so a face two passes agree on scores higher than either, and
    a box only one pass saw keeps (weight times) its score.

    Returns:
        The fused rows (best first) and, per row, a bit mask of the passes that saw it.
    """
    n = len(dets)
    if n == 0:
        return Detections.empty(), np.zeros(0, np.int64)
    w = np.ones(n_passes) if weights is None else np.asarray(weights, np.float64)
    order = np.argsort(-dets.score, kind="stable")
    ious = box_iou(dets.xyxy[order], dets.xyxy[order])
    taken = np.zeros(n, np.bool_)
    boxes, scores, lms, seen = [], [], [], []
    for k in range(n):
        if taken[k]:
            continue
        members = np.union1d([k], np.flatnonzero(~taken & (ious[k] >= iou)))
        taken[members] = True
        rows = order[members]
        s = dets.score[rows].astype(np.float64)
        boxes.append((dets.xyxy[rows] * s[:, None]).sum(0) / max(s.sum(), 1e-12))
        lms.append(dets.landmarks[order[k]])
        p = passes[rows]
        miss = 1.0
        mask = 0
        for q in np.unique(p):
            best = float(s[p == q].max()) * float(w[q])
            miss *= 1.0 - min(best, 1.0)
            mask |= 1 << int(q)
        scores.append(1.0 - miss)
        seen.append(mask)
    out = Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(lms, np.float32))
    return out, np.asarray(seen, np.int64)


def inside(xyxy: NDArray[np.float32], tile: NDArray[np.int64], margin: float = EDGE_MARGIN) -> NDArray[np.bool_]:
    """Boxes lying wholly inside ``tile`` (x0, y0, x1, y1), ``margin`` pixels from its edges."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in tile)
    ok: NDArray[np.bool_] = (
        (b[:, 0] >= x0 + margin) & (b[:, 1] >= y0 + margin) & (b[:, 2] <= x1 - margin) & (b[:, 3] <= y1 - margin)
    )
    return ok


def cut_by_edge(
    xyxy: NDArray[np.float32], tile: NDArray[np.int64], width: int, height: int, margin: float = EDGE_MARGIN
) -> NDArray[np.bool_]:
    """Boxes (frame pixels) within ``margin`` of an edge of ``tile`` that is not the frame's.

    Such a box may be the visible part of a face the edge cuts in two.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in tile)
    cut = np.zeros(len(b), np.bool_)
    if x0 > 0:
        cut |= b[:, 0] < x0 + margin
    if y0 > 0:
        cut |= b[:, 1] < y0 + margin
    if x1 < width:
        cut |= b[:, 2] > x1 - margin
    if y1 < height:
        cut |= b[:, 3] > y1 - margin
    return cut


def size_prior(dets: Detections, full_size: float = SIZE_PRIOR_PX) -> Detections:
    """Scores of small boxes scaled by ``min(1, size / full_size)``.

    Why: on the shared WIDER subset (2x tiles, fused) 83% of the boxes under 16 px
    scored >= 0.16 were false positives, against 16% from 32 px up; the score of a tiny
    box says less, so it must be higher to count (see the README, *Detection*).
    """
    if not len(dets):
        return dets
    size = np.sqrt(np.clip(dets.area, 0, None)).astype(np.float32)
    factor = np.clip(size / np.float32(full_size), 0.0, 1.0).astype(np.float32)
    return Detections(dets.xyxy, dets.score * factor, dets.landmarks, dets.track_id, dets.source)


def plausible(
    dets: Detections,
    min_size: float = 0.0,
    max_size: float | None = None,
    aspect: tuple[float, float] = ASPECT_RANGE,
) -> NDArray[np.bool_]:
    """Rows whose box has a face's shape (height/width in ``aspect``) and size
    (sqrt of the area in ``[min_size, max_size]``)."""
    wh = np.clip(dets.xyxy[:, 2:] - dets.xyxy[:, :2], 1e-6, None).astype(np.float64)
    ratio = wh[:, 1] / wh[:, 0]
    size = np.sqrt(wh[:, 0] * wh[:, 1])
    ok = (ratio >= aspect[0]) & (ratio <= aspect[1]) & (size >= min_size)
    if max_size is not None:
        ok &= size <= max_size
    return ok  # type: ignore[no-any-return]


__all__ = [
    "ASPECT_RANGE",
    "EDGE_MARGIN",
    "FUSE_IOU",
    "SIZE_PRIOR_PX",
    "cut_by_edge",
    "fuse",
    "inside",
    "plausible",
    "size_prior",
]
