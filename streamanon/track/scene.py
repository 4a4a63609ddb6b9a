"""Scene-cut detection from tiny grayscale thumbnails.

Used with detect-every-N: a cut makes every track's prediction meaningless, so the
pipeline runs the detector on a frame that looks unlike the previous one.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["THUMB_SIZE", "SceneCutDetector"]

# (width, height) of the thumbnail; 16:9 because most video is.
THUMB_SIZE = (32, 18)


class SceneCutDetector:
    """Flags frames that differ strongly from the previous frame.

    Args:
        threshold: mean absolute thumbnail difference, as a fraction of 255, above
            which a frame is a cut (``TrackConfig.scene_cut``).

    Raises:
        ConfigError: when ``threshold`` is not in ``(0, 1]``.

    Example:
        >>> cut = SceneCutDetector(0.3)
        >>> black = np.zeros((36, 64, 3), np.uint8)
        >>> cut(black), cut(black), cut(black + 255)
        (True, False, True)
    """

    def __init__(self, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"invalid scene_cut threshold={threshold!r}: expected a number in (0, 1]")
        self.threshold = float(threshold)
        self._previous: NDArray[np.float32] | None = None

    def reset(self) -> None:
        """Forgets the previous frame; the next call reports a cut."""
        self._previous = None

    def __call__(self, image_rgb_uint8: NDArray[np.uint8]) -> bool:
        """Compares ``image`` with the previous call's image.

        Args:
            image_rgb_uint8: ``(H, W, 3)`` RGB or ``(H, W)`` gray uint8 pixels.

        Returns:
            True on the first frame and when the frame differs by more than the
            threshold from the previous one.

        Raises:
            ValueError: when the image is not a non-empty uint8 ``(H, W)`` or
                ``(H, W, 3)`` array.
        """
        img = np.asarray(image_rgb_uint8)
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or not img.size:
            raise ValueError(f"expected a (H, W, 3) or (H, W) uint8 image, got {img.dtype} {img.shape}")
        thumb = cv2.resize(img, THUMB_SIZE, interpolation=cv2.INTER_AREA)
        if thumb.ndim == 3:
            thumb = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY)
        current = thumb.astype(np.float32)
        previous, self._previous = self._previous, current
        if previous is None:
            return True
        diff = float(np.abs(current - previous).mean()) / 255.0
        is_cut = diff > self.threshold
        if is_cut:
            logger.debug("scene cut: thumbnail difference %.3f > %.3f", diff, self.threshold)
        return is_cut
