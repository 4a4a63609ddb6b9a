"""A vectorised constant-velocity Kalman filter over many boxes at once.

The state of one track is ``(cx, cy, w, h, vcx, vcy, vw, vh)``: box centre, size and
their per-frame velocities. The measurement is ``(cx, cy, w, h)``. As in SORT,
ByteTrack and BoT-SORT, process and measurement noise scale with the box size, so a
40 px face and a 400 px face are equally "certain" relative to their size.

All tracks live in two arrays, ``mean (N, 8)`` and ``covariance (N, 8, 8)``; predict
and update are batched numpy operations, so the cost per frame does not grow with a
Python loop over tracks.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

__all__ = ["KalmanBoxFilter", "cxcywh_to_xyxy", "xyxy_to_cxcywh"]

# Noise as a fraction of the box size, per frame (BoT-SORT values; ByteTrack uses the
# same with the height only).
STD_WEIGHT_POSITION = 1.0 / 20.0
STD_WEIGHT_VELOCITY = 1.0 / 160.0
# Predicted sizes never shrink below this many pixels (a negative size velocity would
# otherwise turn a coasting box inside out).
MIN_SIZE = 1.0


def xyxy_to_cxcywh(xyxy: ArrayLike) -> NDArray[np.float64]:
    """Converts ``(N, 4)`` corner boxes to ``(N, 4)`` centre/size boxes.

    Args:
        xyxy: boxes as ``(x0, y0, x1, y1)``.

    Returns:
        ``(cx, cy, w, h)`` rows as float64.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    return np.concatenate([b[:, :2] + wh / 2.0, wh], axis=1)


def cxcywh_to_xyxy(cxcywh: ArrayLike) -> NDArray[np.float64]:
    """Converts ``(N, 4)`` centre/size boxes to ``(N, 4)`` corner boxes.

    Args:
        cxcywh: boxes as ``(cx, cy, w, h)``.

    Returns:
        ``(x0, y0, x1, y1)`` rows as float64.
    """
    b = np.asarray(cxcywh, dtype=np.float64).reshape(-1, 4)
    half = b[:, 2:] / 2.0
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def _size_scale(wh: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(N, 4)`` per-coordinate scale ``(w, h, w, h)`` from ``(N, 2)`` sizes."""
    wh = np.maximum(wh, MIN_SIZE)
    return np.concatenate([wh, wh], axis=1)


class KalmanBoxFilter:
    """Constant-velocity Kalman filters for a set of boxes, stored as arrays.

    Rows are tracks; the caller keeps its own per-track arrays aligned with the rows
    by applying the same :meth:`initiate` (append) and :meth:`keep` (filter) calls.

    Example:
        >>> kf = KalmanBoxFilter()
        >>> kf.initiate([[0, 0, 10, 10]])
        >>> kf.predict()
        >>> kf.update(np.array([0]), [[1, 0, 11, 10]])
        >>> len(kf)
        1
    """

    def __init__(self) -> None:
        self.mean: NDArray[np.float64] = np.zeros((0, 8), np.float64)
        self.covariance: NDArray[np.float64] = np.zeros((0, 8, 8), np.float64)

    def __len__(self) -> int:
        return len(self.mean)

    def initiate(self, xyxy: ArrayLike) -> None:
        """Appends one new track per box, with zero velocity and a wide prior on it.

        Args:
            xyxy: ``(M, 4)`` boxes of the first detection of each new track.
        """
        z = xyxy_to_cxcywh(xyxy)
        if not len(z):
            return
        s = _size_scale(z[:, 2:])
        std = np.concatenate([2.0 * STD_WEIGHT_POSITION * s, 10.0 * STD_WEIGHT_VELOCITY * s], axis=1)
        cov = np.zeros((len(z), 8, 8), np.float64)
        idx = np.arange(8)
        cov[:, idx, idx] = std**2
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        self.mean = np.concatenate([self.mean, mean])
        self.covariance = np.concatenate([self.covariance, cov])

    def keep(self, mask: NDArray[np.bool_]) -> None:
        """Keeps only the rows where ``mask`` is true (removes dead tracks).

        Args:
            mask: ``(N,)`` boolean, one entry per track.
        """
        self.mean = self.mean[mask]
        self.covariance = self.covariance[mask]

    def predict(self, dt: int | NDArray[np.int64] = 1) -> None:
        """Advances every track by ``dt`` frames.

        Args:
            dt: frames to advance, a scalar or one value per track (``>= 0``).
        """
        n = len(self.mean)
        if n == 0:
            return
        steps = np.broadcast_to(np.asarray(dt, np.float64), (n,))
        transition = np.broadcast_to(np.eye(8), (n, 8, 8)).copy()
        k = np.arange(4)
        transition[:, k, k + 4] = steps[:, None]
        s = _size_scale(self.mean[:, 2:4])
        std = np.concatenate([STD_WEIGHT_POSITION * s, STD_WEIGHT_VELOCITY * s], axis=1)
        q = np.zeros((n, 8, 8), np.float64)
        idx = np.arange(8)
        # Noise added once per frame advanced; a linear approximation is enough here.
        q[:, idx, idx] = std**2 * steps[:, None]
        self.mean = np.einsum("nij,nj->ni", transition, self.mean)
        self.covariance = transition @ self.covariance @ transition.transpose(0, 2, 1) + q
        # A shrinking box must not invert: clamp the size, stop the shrinking.
        small = self.mean[:, 2:4] < MIN_SIZE
        if small.any():
            self.mean[:, 2:4] = np.where(small, MIN_SIZE, self.mean[:, 2:4])
            self.mean[:, 6:8] = np.where(small, 0.0, self.mean[:, 6:8])

    def update(self, idx: NDArray[np.intp], xyxy: ArrayLike) -> None:
        """Corrects the tracks ``idx`` with measured boxes.

        Args:
            idx: ``(M,)`` row indices of the tracks that were measured (distinct).
            xyxy: ``(M, 4)`` measured boxes, in the same order as ``idx``.

        Raises:
            ValueError: when ``idx`` and ``xyxy`` have different lengths.
        """
        idx = np.asarray(idx, np.intp).reshape(-1)
        z = xyxy_to_cxcywh(xyxy)
        if len(idx) != len(z):
            raise ValueError(f"update got {len(idx)} track indices but {len(z)} boxes")
        if not len(idx):
            return
        mean = self.mean[idx]
        cov = self.covariance[idx]
        r_std = STD_WEIGHT_POSITION * _size_scale(mean[:, 2:4])
        innovation_cov = cov[:, :4, :4].copy()
        d = np.arange(4)
        innovation_cov[:, d, d] += r_std**2
        # K = P H^T S^-1; with H = [I 0], P H^T = P[:, :, :4]. S is symmetric, so
        # K^T = S^-1 (H P) is one batched solve instead of an inverse.
        gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)
        innovation = z - mean[:, :4]
        self.mean[idx] = mean + np.einsum("nij,nj->ni", gain, innovation)
        new_cov = cov - gain @ cov[:, :4, :]
        self.covariance[idx] = (new_cov + new_cov.transpose(0, 2, 1)) / 2.0

    def boxes_xyxy(self) -> NDArray[np.float64]:
        """Current box of every track as ``(N, 4)`` corners."""
        return cxcywh_to_xyxy(self.mean[:, :4])
