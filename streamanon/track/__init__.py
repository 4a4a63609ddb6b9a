"""Face tracking for coverage: tracks only ever ADD boxes to what the detector found.

Public API:

- :class:`FaceTracker` (``update(dets | None, frame_index) -> Detections``), built by
  :func:`create_tracker`;
- :class:`SceneCutDetector` to force a detector run after a cut (detect-every-N);
- :func:`coverage`, :func:`box_inside_fraction`, :func:`leaked_runs`: how much of the
  reference faces the anonymised regions cover (tests, eval, benchmarks).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..config import TrackConfig
from ..types import Detections
from .association import associate, box_iou
from .coverage import box_inside_fraction, coverage, covered_mask, leaked_runs
from .kalman import KalmanBoxFilter
from .scene import SceneCutDetector
from .tracker import FaceTracker

__all__ = [
    "FaceTracker",
    "KalmanBoxFilter",
    "SceneCutDetector",
    "Tracker",
    "associate",
    "box_inside_fraction",
    "box_iou",
    "coverage",
    "covered_mask",
    "create_tracker",
    "leaked_runs",
]


@runtime_checkable
class Tracker(Protocol):
    """What the pipeline needs from a tracker stage."""

    def update(self, dets: Detections | None, frame_index: int, time: float | None = None) -> Detections:
        """Feeds one frame (``None``: detector skipped; ``time``: its timestamp in seconds)
        and returns its coverage."""
        ...

    def reset(self) -> None:
        """Forgets all tracks."""
        ...


def create_tracker(config: TrackConfig, threshold: float) -> FaceTracker:
    """Builds the tracker for ``config``.

    A disabled config still gets a :class:`FaceTracker`: it then passes detections with
    ``score >= threshold`` through unchanged, so the pipeline has one code path.

    Args:
        config: tracking settings.
        threshold: the detector's high threshold (``DetectConfig.threshold``).

    Returns:
        A new tracker with no tracks.

    Raises:
        ConfigError: when ``threshold`` is not in ``(0, 1]``.
    """
    return FaceTracker(config, threshold)
