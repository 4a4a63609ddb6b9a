"""Where a generator chip lies around a face, and which of its pixels the product replaces.

The generator works on a wider chip than ``anonymize.align``'s (``TEMPLATE5`` fills the
chip with the face): the region the product replaces is the detector box's ellipse grown
1.3x plus 2 px (``anonymize.mask.face_regions``), and on the shared data that ellipse spans
x 0.02..0.99 and y -0.01..1.25 of the template chip (medians; 95th percentiles up to 1.06
and 1.31), i.e. it leaves the template chip. The generator chip is the template chip
zoomed out by ``CHIP_ZOOM`` about ``CHIP_CENTRE`` (template units): the 95th-percentile
ellipse fits inside it with a ring of real context around it, which is what an
inpainting model needs to match skin, hair and light. Nothing here needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
from numpy.typing import NDArray

from ..types import Detections
from .align import Alignment, align_faces
from .mask import face_regions

#: Template chip side divided by generator chip side (the face is 0.625x as large).
CHIP_ZOOM = 0.625
#: Point of the template chip (unit coordinates) that lands at the generator chip's centre:
#: the middle of the product's mask ellipse, which sits below the eyes.
CHIP_CENTRE = (0.5, 0.62)
#: Chip sides the generator is built for.
SIZES = (64, 128)

# 68-point index groups (iBUG 300-W order) rasterised into one heatmap channel each.
LANDMARK_GROUPS: tuple[tuple[int, int], ...] = (
    (0, 17),  # jaw line
    (17, 22),  # right brow (image left)
    (22, 27),  # left brow
    (27, 36),  # nose bridge and nostrils
    (36, 42),  # right eye
    (42, 48),  # left eye
    (48, 60),  # outer lips
    (60, 68),  # inner lips
)

#: dlib's 5-point order (``shape_predictor_5_face_landmarks``) from the 68 points: image-right
#: eye outer/inner corner, image-left eye outer/inner corner, nose base.
DLIB5_FROM_68 = (45, 42, 36, 39, 33)

#: Mirror permutation of the 68 points (horizontal flip): point i becomes FLIP68[i].
FLIP68 = np.array(
    [
        *range(16, -1, -1),  # jaw
        *range(26, 16, -1),  # brows
        *(27, 28, 29, 30, 35, 34, 33, 32, 31),  # nose
        *(45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40),  # eyes
        *(54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65),  # lips
    ],
    np.int64,
)


def zoom_matrix(size: int) -> NDArray[np.float64]:
    """``(3, 3)`` map from template-chip pixels to generator-chip pixels (same ``size``)."""
    cx, cy = CHIP_CENTRE
    z = CHIP_ZOOM
    return np.array([[z, 0.0, size * (0.5 - z * cx)], [0.0, z, size * (0.5 - z * cy)], [0.0, 0.0, 1.0]], np.float64)


def _apply(m: NDArray[np.float64], pts: NDArray[np.float32]) -> NDArray[np.float32]:
    p = np.asarray(pts, np.float64)
    return (p @ m[:2, :2].T + m[:2, 2]).astype(np.float32)


def widen(alignment: Alignment) -> Alignment:
    """The generator chip of a face from ``anonymize.align``'s alignment of it."""
    z = zoom_matrix(alignment.size)
    m = (z @ np.vstack([alignment.matrix, [0.0, 0.0, 1.0]]))[:2]
    lm68 = None if alignment.landmarks68 is None else _apply(z, alignment.landmarks68)
    return replace(alignment, matrix=m, landmarks5=_apply(z, alignment.landmarks5), landmarks68=lm68)


def generator_alignments(
    dets: Detections, size: int, landmarks68: NDArray[np.float32] | None = None
) -> list[Alignment]:
    """One generator-chip alignment per row of ``dets`` (``align_faces``, then ``widen``)."""
    return [widen(a) for a in align_faces(dets, size, landmarks68)]


def chip_masks(
    dets: Detections,
    alignments: Sequence[Alignment],
    width: int,
    height: int,
    scale: float = 1.3,
    margin: float = 2.0,
) -> NDArray[np.uint8]:
    """``(N, S, S)`` uint8 masks, 1 where the product replaces pixels, in chip coordinates.

    Each is the product's own ellipse (``face_regions`` of the row, in the frame) warped
    into the chip, so the generator fills exactly what the pipeline will paste. The
    ellipse is not clipped to the frame first: a face at the frame edge still gets the
    full ellipse in its chip (the chip's outside is replicated edge pixels anyway).
    """
    if not alignments:
        return np.zeros((0, 1, 1), np.uint8)
    s = alignments[0].size
    out = np.zeros((len(alignments), s, s), np.uint8)
    big = 1 << 20  # no clipping: regions are computed on an unbounded frame
    for i, al in enumerate(alignments):
        regs = face_regions(dets[i], big, big, "ellipse", scale, margin)
        if not regs:
            continue
        reg = regs[0]
        x0, y0 = reg.roi[0], reg.roi[1]
        m = al.matrix.copy()
        m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
        warped = cv2.warpAffine(reg.mask, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=0)
        out[i] = warped >= 128
    del width, height  # the frame size does not clip the mask (see above)
    return out


def template_mask(size: int) -> NDArray[np.uint8]:
    """``(S, S)`` uint8: the median product ellipse in a generator chip (faces without a
    detector row, tests)."""
    z, (cx, cy) = CHIP_ZOOM, CHIP_CENTRE
    # median extent of the product's ellipse in template units (module doc)
    ex0, ex1, ey0, ey1 = 0.02, 0.99, -0.01, 1.25
    mx, my = (ex0 + ex1) / 2, (ey0 + ey1) / 2
    centre = (size * (0.5 + z * (mx - cx)), size * (0.5 + z * (my - cy)))
    axes = (size * z * (ex1 - ex0) / 2, size * z * (ey1 - ey0) / 2)
    mask = np.zeros((size, size), np.uint8)
    sh = 4
    cv2.ellipse(
        mask,
        (round(centre[0] * 16), round(centre[1] * 16)),
        (math.ceil(axes[0] * 16), math.ceil(axes[1] * 16)),
        0,
        0,
        360,
        1,
        thickness=-1,
        shift=sh,
    )
    return mask


def flip_landmarks(landmarks: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """68 points of the horizontally flipped chip (mirrored and re-indexed)."""
    p = np.asarray(landmarks, np.float32).copy()
    p[..., 0] = size - 1 - p[..., 0]
    return np.ascontiguousarray(p[..., FLIP68, :])
