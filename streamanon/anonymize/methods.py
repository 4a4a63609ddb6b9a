"""Classical anonymisers: each one small class with one verb, ``apply(image, dets)``."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..types import Detections
from .base import FaceAnonymizer, FrameInfo
from .mask import FaceRegion, composite, face_regions


class RegionAnonymizer(FaceAnonymizer):
    """Base: compute each face's region, replace its pixels, composite through the mask.

    Subclasses implement ``replace(roi, region) -> new roi pixels``. ``apply`` never
    modifies its input image.
    """

    name = "base"

    def __init__(self, config: AnonymizeConfig) -> None:
        self.config = config

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = image.copy()
        if not len(dets):
            return out
        h, w = image.shape[:2]
        for region in face_regions(dets, w, h, self.config.shape, self.config.mask_scale, self.config.mask_margin):
            x0, y0, x1, y1 = region.roi
            composite(out, region, self.replace(out[y0:y1, x0:x1], region), self.config.feather)
        return out

    def replace(self, roi: NDArray[np.uint8], region: FaceRegion) -> NDArray[np.uint8]:
        raise NotImplementedError


class SolidAnonymizer(RegionAnonymizer):
    """Fill the mask with one colour (``--color``): nothing of the face is left."""

    name = "solid"

    def replace(self, roi: NDArray[np.uint8], region: FaceRegion) -> NDArray[np.uint8]:
        return np.broadcast_to(np.array(self.config.color, np.uint8), roi.shape)


class BlurAnonymizer(RegionAnonymizer):
    """Blur whose radius scales with the face (a fixed kernel leaves big faces sharp).

    The radius is half the region's larger side times ``blur_strength``; faces are
    shrunk first so the cost stays flat for large faces.
    """

    name = "blur"

    def replace(self, roi: NDArray[np.uint8], region: FaceRegion) -> NDArray[np.uint8]:
        h, w = roi.shape[:2]
        radius = max(2.0, max(h, w) * 0.5 * self.config.blur_strength)
        # Work at a size where the radius is ~8 px: same look, bounded cost.
        f = min(1.0, 8.0 / radius)
        small = (
            cv2.resize(roi, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            if f < 1
            else roi
        )
        k = max(3, int(radius * f) * 2 + 1)
        blurred = cv2.GaussianBlur(small, (k, k), 0, borderType=cv2.BORDER_REFLECT)
        blurred = cv2.GaussianBlur(blurred, (k, k), 0, borderType=cv2.BORDER_REFLECT)
        if f < 1:
            blurred = cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.asarray(blurred, np.uint8)  # already uint8 (no copy); OpenCV's stubs drop the dtype


class PixelateAnonymizer(RegionAnonymizer):
    """Mosaic with ``pixel_blocks`` blocks across the face, whatever its size."""

    name = "pixelate"

    def replace(self, roi: NDArray[np.uint8], region: FaceRegion) -> NDArray[np.uint8]:
        h, w = roi.shape[:2]
        n = self.config.pixel_blocks
        bw = max(1, round(n * w / max(h, w)))
        bh = max(1, round(n * h / max(h, w)))
        small = cv2.resize(roi, (bw, bh), interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), np.uint8)


class IdentityAnonymizer(RegionAnonymizer):
    """Changes nothing: the control in ``streamanon eval`` (not offered by the CLI)."""

    name = "none"

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        return image.copy()


def mask_whole_frame(image: NDArray[np.uint8], color: tuple[int, int, int] = (0, 0, 0)) -> NDArray[np.uint8]:
    """The fail-closed output for a frame whose detection or anonymisation failed."""
    return np.broadcast_to(np.array(color, np.uint8), image.shape).copy()
