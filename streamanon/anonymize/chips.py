"""Base of the methods that work on aligned face chips (k-Same, SVD, the generator).

``apply`` aligns every face of the frame (``align.align_faces``), hands the chips to
``process`` as one batch, and warps each result back through the inverse alignment into
the face's mask: the same ellipse/box every method replaces, so nothing outside it changes
and nothing inside it is left raw (``align.chip_to_roi``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..models.landmarks import Landmarker68
from ..types import SOURCE_DETECTOR, Detections
from .align import Alignment, align_faces, chip_to_roi, warp_chip
from .base import FaceAnonymizer, FrameInfo
from .mask import FaceRegion, composite, indexed_regions

#: Chip side for the classical chip methods: 64 px holds what a recogniser-free average or
#: a low-rank reconstruction keeps of a face, and costs ~0.1 ms a face to warp.
CHIP_SIZE = 64


def masked_rows(
    image: NDArray[np.uint8], dets: Detections, config: AnonymizeConfig
) -> tuple[list[tuple[int, FaceRegion]], Detections]:
    """The frame's face regions (``(row, region)``, those inside the frame) and their rows of
    ``dets`` in the same order: what a chip method aligns, replaces and pastes back."""
    h, w = image.shape[:2]
    regions = indexed_regions(dets, w, h, config.shape, config.mask_scale, config.mask_margin)
    return regions, dets[np.array([i for i, _ in regions], np.intp)]


class ChipAnonymizer(FaceAnonymizer):
    """Align, process the frame's chips as a batch, paste back through the mask."""

    name = "chip-base"
    chip_size = CHIP_SIZE

    def __init__(self, config: AnonymizeConfig, landmarker: Landmarker68 | None = None) -> None:
        self.config = config
        self.landmarker = landmarker

    def landmarks68(self, image: NDArray[np.uint8], dets: Detections) -> NDArray[np.float32] | None:
        """68-point landmarks of the detector rows (NaN for the others), or None when the
        method aligns on the detector's five points. Coasting and look-back rows have no
        face evidence in this frame to fit a shape to: they keep the box-only path."""
        if self.landmarker is None or not len(dets):
            return None
        out = np.full((len(dets), 68, 2), np.nan, np.float32)
        rows = np.flatnonzero(dets.source == SOURCE_DETECTOR)
        if len(rows):
            out[rows] = self.landmarker(image, dets.xyxy[rows])
        return out

    def process(
        self, chips: NDArray[np.uint8], alignments: Sequence[Alignment], dets: Detections, info: FrameInfo | None
    ) -> NDArray[np.uint8]:
        """``(N, S, S, 3)`` new chips for ``chips`` (rows of ``dets``, same order)."""
        raise NotImplementedError

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = image.copy()
        regions, rows = masked_rows(image, dets, self.config)
        if not regions:
            return out
        lm68 = self.landmarks68(image, rows)
        aligns = align_faces(rows, self.chip_size, lm68)
        chips = np.stack([warp_chip(image, a) for a in aligns])
        new = self.process(chips, aligns, rows, info)
        for (_, region), a, chip in zip(regions, aligns, new, strict=True):
            composite(out, region, chip_to_roi(chip, a, region), self.config.feather)
        return out
