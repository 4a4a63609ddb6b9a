"""ByteTrack-style face tracker whose output is the *coverage* of a frame.

Privacy rule: tracking only ever ADDS boxes. Every raw detection with
``score >= threshold`` is returned on every frame, unshrunk, including a face's first
frame; tracks contribute extra boxes for faces the detector missed (or did not run on).

Coasting is counted in **detector runs missed**, not frames: a track is dropped once the
detector has run ``max_coast + 1`` times in a row without matching it. Frames on which
the detector did not run (``update(None, ...)``, detect-every-N) only predict, so running
the detector less often never makes a track die sooner.

The coasting box grows with the *time* since the face was last seen, because uncertainty
grows with time: ``coast_growth`` per 1/30 s (:data:`NOMINAL_FPS`), measured on the
frames' timestamps when the caller passes them (``update(..., time=seconds)``) and on
frame indices at :data:`NOMINAL_FPS` otherwise. So a 60 fps stream grows no faster per
second than a 30 fps one, and frames dropped under overload do not count twice. Growth
is capped: a coasting box's side is never more than :data:`COAST_MAX_GROWTH` times the
side of the track's last *detected* box, whatever the motion model's size velocity or
the length of the coast (a long coast over dropped frames once grew a box to the whole
frame, and a false positive let in by the bf16 score margin to 490x657 px).
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from ..config import TrackConfig
from ..errors import ConfigError
from ..types import SOURCE_DETECTOR, SOURCE_TRACK, Detections
from .association import associate
from .kalman import KalmanBoxFilter, cxcywh_to_xyxy, xyxy_to_cxcywh

logger = logging.getLogger(__name__)

__all__ = ["COAST_MAX_GROWTH", "MAX_TRACKS", "NOMINAL_FPS", "FaceTracker"]

# Hard ceiling on live tracks, so a detector that floods false positives cannot grow the
# state without bound. When exceeded, the tracks unseen for longest go first (their
# coverage only; raw detections are always returned).
MAX_TRACKS = 4096
# ``TrackConfig.coast_growth`` is the growth per 1/NOMINAL_FPS seconds of coasting (per
# frame at 30 fps, as the value was tuned); frame indices count at this rate when the
# caller gives no timestamps.
NOMINAL_FPS = 30.0
# A coasting box's width and height are at most this multiple of the last detected
# box's. A coast lasts max_coast (15) detector runs, 0.5 s at 30 fps with every frame
# detected: a face 1.5x larger is one whose distance to the camera fell by a third in
# that time (2 m to 1.33 m at walking speed, 1.3 m/s), the fastest approach a coast
# has to follow. The default growth (0.05 per 1/30 s) reaches the cap after 1/3 s.
COAST_MAX_GROWTH = 1.5


class FaceTracker:
    """Tracks faces across frames and returns the boxes to anonymise per frame.

    Args:
        config: tracking settings.
        threshold: the detector's high threshold; detections at or above it are always
            anonymised and may start tracks, those in ``[config.low_threshold,
            threshold)`` only extend existing tracks (ByteTrack's second pass).

    Raises:
        ConfigError: when ``threshold`` is not in ``(0, 1]``.

    Example:
        >>> tracker = FaceTracker(TrackConfig(), threshold=0.5)
        >>> out = tracker.update(Detections([[10, 10, 50, 50]], [0.9]), frame_index=0)
        >>> out.track_id.tolist(), out.source.tolist()
        ([1], [0])
        >>> tracker.update(None, frame_index=1).source.tolist()  # predicted, coasting
        [1]
    """

    def __init__(self, config: TrackConfig, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"invalid threshold={threshold!r}: expected a number in (0, 1]")
        self.config = config
        self.threshold = float(threshold)
        self._next_id = 1
        self._last_index: int | None = None
        self._last_time: float | None = None
        self._kf = KalmanBoxFilter()
        self._ids: NDArray[np.int64] = np.zeros(0, np.int64)
        self._score: NDArray[np.float32] = np.zeros(0, np.float32)
        self._misses: NDArray[np.int64] = np.zeros(0, np.int64)  # detector runs missed
        self._since_seen: NDArray[np.float64] = np.zeros(0, np.float64)  # seconds since matched
        self._last_wh: NDArray[np.float64] = np.zeros((0, 2), np.float64)  # last detected w, h
        self._smooth: NDArray[np.float64] = np.zeros((0, 4), np.float64)  # cx, cy, w, h

    def __len__(self) -> int:
        """Number of live tracks."""
        return len(self._ids)

    @property
    def track_ids(self) -> NDArray[np.int64]:
        """Ids of the live tracks (a copy)."""
        return self._ids.copy()

    def reset(self) -> None:
        """Forgets every track (e.g. after a scene cut). Ids are never reused."""
        logger.debug("tracker reset, dropping %d tracks", len(self._ids))
        self._keep(np.zeros(len(self._ids), bool))

    def update(self, dets: Detections | None, frame_index: int, time: float | None = None) -> Detections:
        """Feeds one frame and returns its coverage.

        Args:
            dets: raw detections of this frame, or ``None`` when the detector did not
                run on it (detect-every-N): tracks then predict and coast.
            frame_index: index of the frame in the stream, increasing. Gaps (dropped
                frames) advance the motion model by the gap.
            time: the frame's presentation time in seconds (``Frame.time``), or None;
                coasting boxes grow per second of it (per frame at :data:`NOMINAL_FPS`
                when it, or the previous frame's, is unknown or not increasing).

        Returns:
            Rows ``source=SOURCE_DETECTOR``: every detection with ``score >= threshold``
            and every lower-score detection that continued a track, in input order,
            each box containing the raw box. Rows ``source=SOURCE_TRACK``: the grown
            predicted box of every live track not matched on this frame.

        Raises:
            ValueError: when a detection box is not finite.
        """
        if dets is not None and not np.isfinite(dets.xyxy).all():
            raise ValueError(f"frame {frame_index}: detections contain non-finite boxes")
        if not self.config.enabled:
            if dets is None:
                return Detections.empty()
            return dets[dets.score >= self.threshold]

        self._advance(frame_index, time)
        if dets is None:
            return self._coasting_rows()

        high = dets.score >= self.threshold
        low = (dets.score >= self.config.low_threshold) & ~high
        det_track = self._match(dets.xyxy, high, low)
        self._correct(dets, det_track)
        det_track = self._drop_dead(det_track, frame_index)
        det_ids = np.full(len(dets), -1, np.int64)
        det_ids[det_track >= 0] = self._ids[det_track[det_track >= 0]]
        born = np.flatnonzero(high & (det_track < 0))
        det_ids[born] = self._birth(dets.xyxy[born], dets.score[born])
        detector_rows = self._detector_rows(dets, high | (det_track >= 0), det_track, det_ids)
        self._enforce_cap()
        return Detections.concat([detector_rows, self._coasting_rows()])

    # -- internals -------------------------------------------------------------------

    def _correct(self, dets: Detections, det_track: NDArray[np.int64]) -> None:
        """The matched tracks take their detection: motion model, score, misses, size, smoothed box."""
        matched = np.flatnonzero(det_track >= 0)
        rows = det_track[matched]
        self._kf.update(rows, dets.xyxy[matched])
        self._score[rows] = dets.score[matched]
        self._misses += 1
        self._misses[rows] = 0
        self._since_seen[rows] = 0.0
        measured = xyxy_to_cxcywh(dets.xyxy[matched])
        self._last_wh[rows] = measured[:, 2:]
        a = self.config.smoothing
        self._smooth[rows] = a * self._smooth[rows] + (1.0 - a) * measured

    def _drop_dead(self, det_track: NDArray[np.int64], frame_index: int) -> NDArray[np.int64]:
        """Tracks missed by too many detector runs die before anything is reported;
        returns ``det_track`` in the surviving tracks' indices."""
        dead = self._misses > self.config.max_coast
        if not dead.any():
            return det_track
        logger.debug("frame %d: %d tracks ended", frame_index, int(dead.sum()))
        det_track = self._reindex(det_track, ~dead)
        self._keep(~dead)
        return det_track

    def _detector_rows(
        self, dets: Detections, report: NDArray[np.bool_], det_track: NDArray[np.int64], det_ids: NDArray[np.int64]
    ) -> Detections:
        """The ``report``ed detections with their track ids, as ``SOURCE_DETECTOR`` rows."""
        out_det = dets[report]
        xyxy = out_det.xyxy.astype(np.float64)
        if self.config.smoothing > 0.0:
            # Smoothing may only enlarge: report the union of raw and smoothed box.
            still = det_track[report]
            has = still >= 0
            smooth = cxcywh_to_xyxy(self._smooth[still[has]])
            xyxy[has, :2] = np.minimum(xyxy[has, :2], smooth[:, :2])
            xyxy[has, 2:] = np.maximum(xyxy[has, 2:], smooth[:, 2:])
        return Detections(
            xyxy.astype(np.float32),
            out_det.score,
            out_det.landmarks,
            det_ids[report],
            np.full(len(out_det), SOURCE_DETECTOR, np.uint8),
        )

    def _advance(self, frame_index: int, time: float | None) -> None:
        """Predicts all tracks forward to ``frame_index`` (at ``time`` seconds)."""
        if self._last_index is None:
            dt = 1
        else:
            dt = int(frame_index) - self._last_index
            if dt < 1:
                logger.warning("frame_index %d does not follow %d; advancing one frame", frame_index, self._last_index)
                dt = 1
        seconds = dt / NOMINAL_FPS
        if time is not None and self._last_time is not None and np.isfinite(time) and time > self._last_time:
            seconds = float(time) - self._last_time
        self._last_index = int(frame_index)
        self._last_time = float(time) if time is not None and np.isfinite(time) else None
        if len(self._ids):
            # The smoothed box follows the motion model so it does not lag behind.
            self._smooth += self._kf.mean[:, 4:8] * dt
            self._kf.predict(dt)
            self._since_seen += seconds

    def _match(self, xyxy: NDArray[np.float32], high: NDArray[np.bool_], low: NDArray[np.bool_]) -> NDArray[np.intp]:
        """Two-pass ByteTrack association; returns each detection's track row or -1."""
        det_track = np.full(len(xyxy), -1, np.intp)
        if not len(self._ids):
            return det_track
        pred = self._kf.boxes_xyxy()
        high_idx = np.flatnonzero(high)
        d, t = associate(xyxy[high_idx], pred, self.config.iou_match)
        det_track[high_idx[d]] = t
        free = np.setdiff1d(np.arange(len(pred)), t)
        low_idx = np.flatnonzero(low)
        if len(free) and len(low_idx):
            d2, t2 = associate(xyxy[low_idx], pred[free], self.config.iou_match_low)
            det_track[low_idx[d2]] = free[t2]
        return det_track

    def _birth(self, xyxy: NDArray[np.float32], score: NDArray[np.float32]) -> NDArray[np.int64]:
        """Starts one track per box; returns the new ids."""
        n = len(xyxy)
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        if n == 0:
            return ids
        self._next_id += n
        self._kf.initiate(xyxy)
        self._ids = np.concatenate([self._ids, ids])
        self._score = np.concatenate([self._score, score.astype(np.float32)])
        self._misses = np.concatenate([self._misses, np.zeros(n, np.int64)])
        self._since_seen = np.concatenate([self._since_seen, np.zeros(n, np.float64)])
        self._last_wh = np.concatenate([self._last_wh, xyxy_to_cxcywh(xyxy)[:, 2:]])
        self._smooth = np.concatenate([self._smooth, xyxy_to_cxcywh(xyxy)])
        return ids

    def _keep(self, mask: NDArray[np.bool_]) -> None:
        """Keeps the track rows where ``mask`` is true."""
        self._kf.keep(mask)
        self._ids = self._ids[mask]
        self._score = self._score[mask]
        self._misses = self._misses[mask]
        self._since_seen = self._since_seen[mask]
        self._last_wh = self._last_wh[mask]
        self._smooth = self._smooth[mask]

    @staticmethod
    def _reindex(det_track: NDArray[np.intp], keep: NDArray[np.bool_]) -> NDArray[np.intp]:
        """Maps track rows to their rows after ``_keep(keep)``; dropped rows become -1."""
        new_row = np.where(keep, np.cumsum(keep) - 1, -1)
        out = det_track.copy()
        has = out >= 0
        out[has] = new_row[out[has]]
        return out

    def _enforce_cap(self) -> None:
        """Drops the longest-unseen tracks beyond ``MAX_TRACKS``."""
        excess = len(self._ids) - MAX_TRACKS
        if excess <= 0:
            return
        logger.warning("%d live tracks exceed the cap of %d; dropping the oldest-unseen", len(self._ids), MAX_TRACKS)
        order = np.argsort(self._since_seen, kind="stable")
        keep = np.zeros(len(self._ids), bool)
        keep[order[:MAX_TRACKS]] = True
        self._keep(keep)

    def _coasting_rows(self) -> Detections:
        """Grown predicted boxes of the live tracks not matched on this frame."""
        rows = np.flatnonzero(self._since_seen > 0)
        if not len(rows):
            return Detections.empty()
        box = self._kf.mean[rows, :4].copy()
        growth = 1.0 + self.config.coast_growth * NOMINAL_FPS * self._since_seen[rows]
        box[:, 2:] *= growth[:, None]
        # Neither the growth nor the motion model's size velocity takes a box past the cap.
        box[:, 2:] = np.minimum(box[:, 2:], COAST_MAX_GROWTH * self._last_wh[rows])
        return Detections(
            cxcywh_to_xyxy(box).astype(np.float32),
            self._score[rows],
            np.full((len(rows), 5, 2), np.nan, np.float32),
            self._ids[rows],
            np.full(len(rows), SOURCE_TRACK, np.uint8),
        )
