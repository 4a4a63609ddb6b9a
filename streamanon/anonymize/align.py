"""Face alignment: landmarks -> a similarity transform onto a canonical chip, and back.

Every method that works on a normalised face (k-Same, SVD, the generator, adversarial
perturbation) sees the same thing: a square RGB chip of ``size`` pixels in which the eyes,
nose and mouth corners sit at fixed places (``TEMPLATE5``), plus the 2x3 affine ``matrix``
that maps frame pixels to chip pixels. Its result goes back into the frame through the
inverse warp and the same ellipse/box mask every other method uses (``paste_chip``), so
nothing outside the mask changes and nothing inside it is left raw.

Landmarks come from the detector (CenterFace's five points) or, for methods that need the
face's shape, from dlib's 68-point shape predictor (``models.landmarks.Landmarker68``, the
optional ``align`` extra). Rows without landmarks (a coasting track, a look-back row) get a box-only
alignment: the box's square crop, flagged ``box_only`` so methods can tell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..geometry import similarity
from ..types import Detections
from .mask import FaceRegion

log = logging.getLogger(__name__)

#: Canonical five points (left eye, right eye, nose tip, left and right mouth corner: the
#: order of CenterFace's landmarks) in a unit square; the widely used 112x112 ArcFace
#: layout divided by 112. The face (brows to chin) fills about the central 70%.
TEMPLATE5 = np.array(
    [[0.3419, 0.4616], [0.6565, 0.4598], [0.5002, 0.6405], [0.3710, 0.8247], [0.6315, 0.8232]], np.float32
)
#: How much wider than the template's face a box-only chip is cut (box side x this).
BOX_CHIP_SCALE = 1.25

# 68-point index groups (iBUG 300-W order, dlib's shape_predictor_68_face_landmarks)
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54


def five_from_68(points: NDArray[np.float32]) -> NDArray[np.float32]:
    """CenterFace-order five points from 68: eye centres, nose tip, mouth corners."""
    p = np.asarray(points, np.float32)
    return np.stack(
        [p[_LEFT_EYE].mean(0), p[_RIGHT_EYE].mean(0), p[_NOSE_TIP], p[_MOUTH_LEFT], p[_MOUTH_RIGHT]]
    ).astype(np.float32)


@dataclass(frozen=True)
class Alignment:
    """Where one face's chip comes from.

    Attributes:
        matrix: ``(2, 3)`` affine, frame pixels -> chip pixels.
        size: chip side in pixels.
        box_only: True when no landmarks were available (the box's square crop).
        landmarks5: ``(5, 2)`` in chip pixels (the template's for box-only chips).
        landmarks68: ``(68, 2)`` in chip pixels, when a 68-point model ran.
    """

    matrix: NDArray[np.float64]
    size: int
    box_only: bool
    landmarks5: NDArray[np.float32]
    landmarks68: NDArray[np.float32] | None = None

    @property
    def inverse(self) -> NDArray[np.float64]:
        """``(2, 3)`` affine, chip pixels -> frame pixels."""
        return cv2.invertAffineTransform(self.matrix).astype(np.float64)

    @property
    def scale(self) -> float:
        """Chip pixels per frame pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


def _apply(matrix: NDArray[np.float64], pts: NDArray[np.float32]) -> NDArray[np.float32]:
    p = np.asarray(pts, np.float64)
    return (p @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def align_landmarks(
    landmarks5: NDArray[np.float32], size: int, landmarks68: NDArray[np.float32] | None = None
) -> Alignment:
    """Alignment from five points in frame pixels (and optional 68 for the record)."""
    m = similarity(np.asarray(landmarks5, np.float32), TEMPLATE5 * size)
    lm68 = None if landmarks68 is None else _apply(m, landmarks68)
    return Alignment(m, size, False, _apply(m, landmarks5), lm68)


def align_box(box: NDArray[np.float32], size: int, scale: float = BOX_CHIP_SCALE) -> Alignment:
    """Box-only alignment: a square around the box centre, ``scale`` x its larger side,
    with the template's points as the (assumed) landmarks."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # The template's face centre sits a little below the chip centre (eyes at 0.46).
    tcx, tcy = TEMPLATE5[:, 0].mean(), TEMPLATE5[:, 1].mean()
    k = size / side
    m = np.array([[k, 0.0, size * tcx - k * cx], [0.0, k, size * tcy - k * cy]], np.float64)
    return Alignment(m, size, True, (TEMPLATE5 * size).astype(np.float32))


def align_faces(dets: Detections, size: int, landmarks68: NDArray[np.float32] | None = None) -> list[Alignment]:
    """One alignment per row: from its landmarks (68 when given, else the detector's five),
    box-only where a row has none."""
    out: list[Alignment] = []
    for i in range(len(dets)):
        lm68 = None if landmarks68 is None or np.isnan(landmarks68[i]).any() else landmarks68[i]
        if lm68 is not None:
            out.append(align_landmarks(five_from_68(lm68), size, lm68))
        elif dets.has_landmarks[i]:
            out.append(align_landmarks(dets.landmarks[i], size))
        else:
            out.append(align_box(dets.xyxy[i], size))
    return out


def warp_chip(image: NDArray[np.uint8], alignment: Alignment) -> NDArray[np.uint8]:
    """The aligned ``(size, size, 3)`` chip (edges replicated where the face leaves the frame)."""
    s = alignment.size
    chip = cv2.warpAffine(image, alignment.matrix, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(chip)


def chip_to_roi(chip: NDArray[Any], alignment: Alignment, region: FaceRegion) -> NDArray[np.uint8]:
    """The chip warped back into ``region``'s ROI (ROI-sized, uint8).

    Pixels of the ROI outside the chip's footprint take the chip's nearest edge pixel
    (BORDER_REPLICATE): every output pixel comes from the processed chip, never from the
    frame, so a mask larger than the chip still leaves nothing raw.
    """
    x0, y0, x1, y1 = region.roi
    inv = alignment.inverse.copy()
    inv[:, 2] -= (x0, y0)
    c = np.clip(chip, 0, 255).astype(np.uint8) if chip.dtype != np.uint8 else chip
    roi = cv2.warpAffine(c, inv, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(roi)
