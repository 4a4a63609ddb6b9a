"""Face masks shared by every anonymiser: an ellipse (from the box and the landmarks) or a
box, grown by ``mask_scale``, and compositing of a replaced region through that mask."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from ..types import Detections


@dataclass(frozen=True)
class FaceRegion:
    """Where one face's mask lies: ``roi`` = (x0, y0, x1, y1) and the mask inside it."""

    roi: tuple[int, int, int, int]
    mask: NDArray[np.uint8]  # (y1-y0, x1-x0), 255 inside


def _ellipse_params(
    box: NDArray[np.float32], landmarks: NDArray[np.float32], scale: float, margin: float = 0.0
) -> tuple[float, float, float, float, float]:
    """Centre, semi-axes and angle (degrees) of the face ellipse.

    The ellipse is the box's inscribed ellipse grown by ``scale`` and then by ``margin``
    pixels; when landmarks are present it is rotated to the eye line (head roll) and
    re-centred on the landmarks' centroid between box centre and landmarks, so tilted
    heads stay covered.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ax, ay = (x2 - x1) / 2 * scale + margin, (y2 - y1) / 2 * scale + margin
    angle = 0.0
    if not np.isnan(landmarks).any():
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        roll = math.degrees(math.atan2(float(ry - ly), float(rx - lx)))
        if abs(roll) < 60:
            angle = roll
        mx, my = landmarks.mean(axis=0)
        cx, cy = (cx + float(mx)) / 2, (cy + float(my)) / 2
    if angle:
        # A rotated ellipse must still contain the axis-aligned box: use the larger axis.
        a = max(ax, ay)
        ax, ay = (a, a) if abs(angle) > 20 else (ax, ay)
    return cx, cy, ax, ay, angle


def face_region(
    box: NDArray[np.float32],
    landmarks: NDArray[np.float32],
    width: int,
    height: int,
    shape: str,
    scale: float,
    margin: float = 0.0,
) -> FaceRegion | None:
    """One face's ``FaceRegion`` clipped to the frame, or None when nothing of it is inside.

    Masks are the box grown by ``scale`` plus ``margin`` pixels on every side: the margin
    matters for small faces, whose boxes are off by a pixel or two from frame to frame and
    from one backend precision to another, more than any fraction of their size.
    """
    if shape == "box":
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        hw, hh = (x2 - x1) / 2 * scale + margin, (y2 - y1) / 2 * scale + margin
        x0, y0 = max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh))
        xe, ye = min(width, math.ceil(cx + hw)), min(height, math.ceil(cy + hh))
        if xe <= x0 or ye <= y0:
            return None
        return FaceRegion((x0, y0, xe, ye), np.full((ye - y0, xe - x0), 255, np.uint8))
    cx, cy, ax, ay, angle = _ellipse_params(box, landmarks, scale, margin)
    r = math.hypot(ax, ay) if angle else 0.0
    ex, ey = (r, r) if angle else (ax, ay)
    x0, y0 = max(0, math.floor(cx - ex)), max(0, math.floor(cy - ey))
    xe, ye = min(width, math.ceil(cx + ex) + 1), min(height, math.ceil(cy + ey) + 1)
    if xe <= x0 or ye <= y0 or ax < 0.5 + margin or ay < 0.5 + margin:
        return None
    mask = np.zeros((ye - y0, xe - x0), np.uint8)
    # cv2.ellipse takes integer geometry; a 4-bit sub-pixel shift keeps precision.
    sh = 4
    centre = (round((cx - x0) * 16), round((cy - y0) * 16))
    axes = (math.ceil(ax * 16), math.ceil(ay * 16))
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 255, thickness=-1, lineType=cv2.LINE_8, shift=sh)
    return FaceRegion((x0, y0, xe, ye), mask)


def indexed_regions(
    dets: Detections, width: int, height: int, shape: str, scale: float, margin: float = 0.0
) -> list[tuple[int, FaceRegion]]:
    """``(row, region)`` for every detection row with a region inside the frame."""
    out: list[tuple[int, FaceRegion]] = []
    for i in range(len(dets)):
        reg = face_region(dets.xyxy[i], dets.landmarks[i], width, height, shape, scale, margin)
        if reg is not None:
            out.append((i, reg))
    return out


def face_regions(
    dets: Detections, width: int, height: int, shape: str, scale: float, margin: float = 0.0
) -> list[FaceRegion]:
    """One ``FaceRegion`` per detection, clipped to the frame (empty ones skipped)."""
    return [reg for _, reg in indexed_regions(dets, width, height, shape, scale, margin)]


def composite(dst: NDArray[np.uint8], region: FaceRegion, replacement: NDArray[np.uint8], feather: float = 0.0) -> None:
    """Write ``replacement`` (ROI-sized) into ``dst`` where the region's mask is set."""
    x0, y0, x1, y1 = region.roi
    roi = dst[y0:y1, x0:x1]
    if feather > 0:
        k = max(3, int(max(roi.shape[:2]) * feather) | 1)
        # Feather outward only: the hard mask stays fully replaced, the edge blends.
        grown = cv2.dilate(region.mask, np.ones((k, k), np.uint8))
        alpha = cv2.GaussianBlur(grown, (k, k), 0).astype(np.float32) / 255.0
        alpha = np.maximum(alpha, region.mask.astype(np.float32) / 255.0)[:, :, None]
        roi[:] = (replacement * alpha + roi * (1 - alpha)).astype(np.uint8)
    else:
        np.copyto(roi, replacement, where=(region.mask > 0)[:, :, None])


def union_mask(
    dets: Detections, width: int, height: int, shape: str, scale: float, margin: float = 0.0
) -> NDArray[np.bool_]:
    """Boolean (H, W) mask of every face region (tests, eval)."""
    out = np.zeros((height, width), np.bool_)
    for reg in face_regions(dets, width, height, shape, scale, margin):
        x0, y0, x1, y1 = reg.roi
        out[y0:y1, x0:x1] |= reg.mask > 0
    return out
