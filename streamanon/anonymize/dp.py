"""``dp-pixelate``: pixelation with differential privacy (Fan, "Image pixelization with
differential privacy", DBSec 2018).

The face region (the mask's bounding box) is cut into ``dp_cells`` x ``dp_cells`` cells;
each cell becomes its mean plus Laplace noise and is clipped to [0, 255]. If two images
differ in at most ``m`` pixels, the vector of cell means (one channel) changes by at most
``255 * m / b2`` in L1, ``b2`` being the pixel count of the smallest cell, so Laplace noise
of scale ``255 * m / (b2 * epsilon)`` makes the released cells epsilon-DP (Laplace
mechanism) for that neighbourhood: per channel (the three channels together: 3 epsilon).

Over a video. The cells are laid on the face (the grid follows the track's box), and the
noise of each cell is drawn once per track, as a standard-Laplace sample scaled to the
frame's own cell size: the frames of a track are one draw, not T independent releases,
so epsilon does not compose to T * epsilon. What that covers: a difference between two
faces that is the same in every frame of the track. What it does not: changes from frame
to frame (movement, expression, lighting) are released in the differences between
frames without noise, and epsilon says nothing about the person beyond the m-pixel
neighbourhood (a face differs from another face in far more than m pixels: this is not
a guarantee that a person cannot be recognised; ``streamanon eval`` measures that).
Rows without a track (``--no-track``) draw fresh noise every frame (T frames: T epsilon).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..types import Detections
from .base import FaceAnonymizer, FrameInfo, TrackStates
from .mask import composite, indexed_regions

#: Default epsilon (per channel, per track) when ``--epsilon`` is not given: chosen from
#: ``streamanon eval identity|attack`` on the shared identities (README, "Privacy").
DEFAULT_EPSILON = 1.0


def laplace_scale(cell_pixels: int, m: int, epsilon: float) -> float:
    """Fan's noise scale: the L1 sensitivity ``255 m / b2`` over epsilon."""
    return 255.0 * m / (max(1, cell_pixels) * epsilon)


def cell_edges(length: int, cells: int) -> NDArray[np.intp]:
    """Integer cell boundaries splitting ``length`` pixels into ``cells`` near-equal cells."""
    n = max(1, min(cells, length))
    return np.round(np.linspace(0, length, n + 1)).astype(np.intp)


def cell_means(roi: NDArray[np.uint8], ys: NDArray[np.intp], xs: NDArray[np.intp]) -> NDArray[np.float64]:
    """Exact per-cell channel means ``(len(ys)-1, len(xs)-1, C)``."""
    sums = np.add.reduceat(np.add.reduceat(roi.astype(np.float64), ys[:-1], axis=0), xs[:-1], axis=1)
    counts = np.diff(ys)[:, None, None] * np.diff(xs)[None, :, None]
    out: NDArray[np.float64] = sums / counts
    return out


def dp_pixelate(
    roi: NDArray[np.uint8], cells: int, m: int, epsilon: float, unit_noise: NDArray[np.float64]
) -> tuple[NDArray[np.uint8], float]:
    """One region pixelated with DP noise; returns the pixels and the Laplace scale used.

    ``unit_noise`` is a standard-Laplace array of shape ``(cells, cells, 3)`` (the track's
    draw); only its top-left part is used when the region has fewer pixels than cells.
    """
    h, w = roi.shape[:2]
    ys, xs = cell_edges(h, cells), cell_edges(w, cells)
    means = cell_means(roi, ys, xs)
    b2 = int(np.diff(ys).min() * np.diff(xs).min())
    scale = laplace_scale(b2, m, epsilon)
    noisy = np.clip(means + scale * unit_noise[: len(ys) - 1, : len(xs) - 1, : roi.shape[2]], 0, 255)
    out = np.repeat(np.repeat(np.round(noisy).astype(np.uint8), np.diff(ys), axis=0), np.diff(xs), axis=1)
    return np.ascontiguousarray(out), scale


@dataclass
class _TrackNoise:
    noise: NDArray[np.float64]
    first: int
    frames: int = 0
    scales: list[float] = field(default_factory=list)


class DPPixelateAnonymizer(FaceAnonymizer):
    """Fan's DP pixelation with one noise draw per track and cell (module doc)."""

    name = "dp-pixelate"

    def __init__(self, config: AnonymizeConfig) -> None:
        self.config = config
        self.epsilon = float(config.epsilon if config.epsilon is not None else DEFAULT_EPSILON)
        self.cells, self.m = config.dp_cells, config.dp_m
        # The noise must be unpredictable: a per-run secret from the OS unless --seed is given.
        self._rng = np.random.default_rng(config.seed)
        self._tracks: TrackStates[_TrackNoise] = TrackStates(self._record)
        self._untracked = 0

    def _draw(self) -> NDArray[np.float64]:
        return self._rng.laplace(0.0, 1.0, size=(self.cells, self.cells, 3))

    def _record(self, t: _TrackNoise) -> dict[str, Any]:
        return {
            "first_frame": t.first,
            "frames": t.frames,
            "epsilon_per_channel": self.epsilon,
            "laplace_scale_min": round(min(t.scales), 3) if t.scales else None,
            "laplace_scale_max": round(max(t.scales), 3) if t.scales else None,
        }

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.start(track_id, _TrackNoise(self._draw(), info.index))

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.end(track_id)

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = image.copy()
        h, w = image.shape[:2]
        c = self.config
        for i, region in indexed_regions(dets, w, h, c.shape, c.mask_scale, c.mask_margin):
            tid = int(dets.track_id[i])
            track = self._tracks.get(tid)
            if track is None:  # untracked row: a fresh draw, its own release
                self._untracked += 1
                noise = self._draw()
            else:
                noise = track.noise
            x0, y0, x1, y1 = region.roi
            pixels, scale = dp_pixelate(out[y0:y1, x0:x1], self.cells, self.m, self.epsilon, noise)
            if track is not None:
                track.frames += 1
                track.scales.append(scale)
            composite(out, region, pixels, c.feather)
        return out

    def report(self) -> dict[str, Any]:
        return {
            "guarantee": (
                f"epsilon={self.epsilon:g} per channel and track for images differing in at most m={self.m} pixels "
                "of a face region (Fan 2018); frame-to-frame changes are released without noise; not a guarantee "
                "about the person"
            ),
            "epsilon": self.epsilon,
            "dp_cells": self.cells,
            "dp_m": self.m,
            "untracked_releases": self._untracked,
            "per_track": self._tracks.records(),
        }
