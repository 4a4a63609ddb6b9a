"""How much of the reference faces the anonymised regions cover.

A reference face counts as covered when at least ``min_inside`` of its box area lies in
the UNION of the anonymised boxes of the same frame. The union is computed exactly by
coordinate compression: the edges of all boxes cut the reference box into a small grid
of cells, and each cell is either wholly inside some cover or wholly outside all of
them. Overlapping covers are therefore never double-counted, and a face covered half by
one box and half by another counts as fully covered.

Covers are boxes. Anonymisers that draw ellipses cover less than their box; pass boxes
that describe what is really masked (e.g. ``dets.dilated(mask_scale)`` for box masks).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..types import Detections

logger = logging.getLogger(__name__)

__all__ = ["box_inside_fraction", "coverage", "covered_mask", "leaked_runs"]


def _inside_one(ref: NDArray[np.float64], covers: NDArray[np.float64]) -> float:
    """Exact share of ``ref``'s area inside the union of ``covers`` (both xyxy)."""
    x0, y0, x1, y1 = ref
    # Only covers touching the reference box matter; this keeps the grid small.
    covers = covers[(covers[:, 0] <= x1) & (covers[:, 2] >= x0) & (covers[:, 1] <= y1) & (covers[:, 3] >= y0)]
    if not len(covers):
        return 0.0
    if x1 <= x0 or y1 <= y0:
        # A degenerate reference box has no area: covered when its centre is.
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        hit = (covers[:, 0] <= cx) & (cx <= covers[:, 2]) & (covers[:, 1] <= cy) & (cy <= covers[:, 3])
        return 1.0 if hit.any() else 0.0
    xs = np.unique(np.clip(np.concatenate([[x0, x1], covers[:, 0], covers[:, 2]]), x0, x1))
    ys = np.unique(np.clip(np.concatenate([[y0, y1], covers[:, 1], covers[:, 3]]), y0, y1))
    cx = (xs[:-1] + xs[1:]) / 2.0
    cy = (ys[:-1] + ys[1:]) / 2.0
    # (covers, cells_x) and (covers, cells_y) inclusion, combined per cover: (C, X, Y).
    in_x = (covers[:, 0:1] <= cx[None, :]) & (cx[None, :] <= covers[:, 2:3])
    in_y = (covers[:, 1:2] <= cy[None, :]) & (cy[None, :] <= covers[:, 3:4])
    cell_covered = (in_x[:, :, None] & in_y[:, None, :]).any(axis=0)
    cell_area = np.diff(xs)[:, None] * np.diff(ys)[None, :]
    return float((cell_area * cell_covered).sum() / ((x1 - x0) * (y1 - y0)))


def box_inside_fraction(ref_xyxy: ArrayLike, cover_xyxy: ArrayLike) -> NDArray[np.float64]:
    """Share of each reference box's area inside the union of the cover boxes.

    Args:
        ref_xyxy: one box ``(4,)`` or ``(N, 4)`` boxes ``(x0, y0, x1, y1)``.
        cover_xyxy: ``(M, 4)`` cover boxes (may overlap; ``M`` may be 0).

    Returns:
        ``(N,)`` fractions in ``[0, 1]`` (``(1,)`` for a single box).

    Example:
        >>> box_inside_fraction([0, 0, 10, 10], [[0, 0, 6, 10], [4, 0, 10, 5]]).tolist()
        [0.8]
    """
    refs = np.asarray(ref_xyxy, np.float64).reshape(-1, 4)
    covers = np.asarray(cover_xyxy, np.float64).reshape(-1, 4)
    # Empty or inverted covers mask nothing.
    covers = covers[(covers[:, 2] > covers[:, 0]) & (covers[:, 3] > covers[:, 1])]
    return np.array([_inside_one(r, covers) for r in refs], np.float64)


def _check_lengths(reference: Sequence[Detections], anonymised: Sequence[Detections]) -> None:
    if len(reference) != len(anonymised):
        raise ValueError(f"reference has {len(reference)} frames but anonymised has {len(anonymised)}")


def covered_mask(
    reference: Sequence[Detections], anonymised: Sequence[Detections], min_inside: float = 0.9
) -> list[NDArray[np.bool_]]:
    """Per frame, which reference faces are covered.

    Args:
        reference: ground-truth (or unanonymised) faces, one ``Detections`` per frame.
        anonymised: the regions that were anonymised, aligned frame by frame.
        min_inside: share of a face's box that must be covered.

    Returns:
        One ``(N_i,)`` boolean array per frame.

    Raises:
        ValueError: when the two sequences differ in length.
    """
    _check_lengths(reference, anonymised)
    return [
        box_inside_fraction(ref.xyxy, anon.xyxy) >= min_inside for ref, anon in zip(reference, anonymised, strict=True)
    ]


def coverage(reference: Sequence[Detections], anonymised: Sequence[Detections], min_inside: float = 0.9) -> float:
    """Share of reference faces (over all frames) at least ``min_inside`` covered.

    Args:
        reference: ground-truth faces, one ``Detections`` per frame.
        anonymised: anonymised regions, one ``Detections`` per frame.
        min_inside: share of a face's box area that must lie inside the covers.

    Returns:
        Covered faces / all faces; 1.0 when there are no reference faces.

    Raises:
        ValueError: when the two sequences differ in length.

    Example:
        >>> ref = [Detections([[0, 0, 10, 10]]), Detections([[0, 0, 10, 10]])]
        >>> coverage(ref, [Detections([[0, 0, 10, 10]]), Detections.empty()])
        0.5
    """
    masks = covered_mask(reference, anonymised, min_inside)
    total = sum(len(m) for m in masks)
    if total == 0:
        return 1.0
    return float(sum(int(m.sum()) for m in masks) / total)


def leaked_runs(
    reference: Sequence[Detections], anonymised: Sequence[Detections], min_inside: float = 0.9
) -> list[int]:
    """Lengths of runs of consecutive frames in which a face leaked.

    Reference rows with ``track_id >= 0`` are followed per identity (a run is one
    identity leaking in consecutive frames); rows without an id are pooled into one
    "some unidentified face leaked" sequence.

    Args:
        reference: ground-truth faces, one ``Detections`` per frame.
        anonymised: anonymised regions, one ``Detections`` per frame.
        min_inside: as in :func:`coverage`.

    Returns:
        Run lengths in frames (ordered by identity, then by start), empty if none.

    Raises:
        ValueError: when the two sequences differ in length.
    """
    masks = covered_mask(reference, anonymised, min_inside)
    leaked_frames: dict[int, list[int]] = {}
    for frame, (ref, ok) in enumerate(zip(reference, masks, strict=True)):
        for ident in {int(i) for i in ref.track_id[~ok]}:
            key = max(ident, -1)
            leaked_frames.setdefault(key, []).append(frame)
    runs: list[int] = []
    for key in sorted(leaked_frames):
        frames = leaked_frames[key]
        length = 1
        for prev, cur in itertools.pairwise(frames):
            if cur == prev + 1:
                length += 1
            else:
                runs.append(length)
                length = 1
        runs.append(length)
    return runs
