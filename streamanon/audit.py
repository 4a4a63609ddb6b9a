"""The per-track audit of a run: frames, the method that served them, fallbacks (numbers only).

``TrackAudit.add`` is fed every ``Result`` as it reaches the sink (runner.py); it counts,
per track id, the frames the track covered, how many of them came from the detector and
how many from coasting, and the frames that failed and were fully masked. ``records``
joins these counts with the anonymiser's own per-track records (``served``: faces per
method, e.g. ``generate`` / ``generate-carried`` / ``blur`` for generate's fallback) and,
when ``--verify`` ran, with what the verifier found near each track. No pixels, no
landmarks: counts, frame indices and distances only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .types import SOURCE_DETECTOR, Detections


@dataclass
class _TrackCount:
    first_frame: int
    last_frame: int
    frames: int = 0
    detected: int = 0
    coasted: int = 0


class TrackAudit:
    """Per-track counters of one run.

    Args:
        keep_boxes: also keep each frame's track boxes (``--verify`` maps the faces it
            finds in the output to the track that covered that place).
    """

    def __init__(self, keep_boxes: bool = False) -> None:
        self.keep_boxes = keep_boxes
        self._tracks: dict[int, _TrackCount] = {}
        self._boxes: dict[int, tuple[NDArray[np.int64], NDArray[np.float32]]] = {}
        self.failed_frames: list[int] = []
        self.untracked_faces = 0

    def add(self, index: int, dets: Detections, failed: str | None = None) -> None:
        """Count one output frame (``failed``: it was fully masked)."""
        if failed is not None:
            self.failed_frames.append(index)
        for tid, src in zip(dets.track_id.tolist(), dets.source.tolist(), strict=True):
            if tid < 0:
                self.untracked_faces += 1
                continue
            t = self._tracks.get(tid)
            if t is None:
                t = self._tracks[tid] = _TrackCount(index, index)
            t.last_frame = index
            t.frames += 1
            if src == SOURCE_DETECTOR:
                t.detected += 1
            else:
                t.coasted += 1
        if self.keep_boxes and len(dets):
            self._boxes[index] = (dets.track_id.copy(), dets.xyxy.copy())

    def boxes(self, index: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Track ids and ``xyxy`` boxes masked in frame ``index`` (empty when none or not kept)."""
        return self._boxes.get(index, (np.zeros(0, np.int64), np.zeros((0, 4), np.float32)))

    def records(
        self, method: str, anonymizer: dict[str, Any] | None = None, verify: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One JSON-ready record per track, sorted by track id.

        Args:
            method: the run's ``--method`` (what served a frame when the anonymiser keeps no
                per-track record of its own).
            anonymizer: the anonymiser's report (its ``per_track`` records with ``served``).
            verify: the verdict's ``per_track`` (``{track_id: counts}``), when ``--verify`` ran.
        """
        served_by = {
            int(r["track_id"]): dict(r["served"])
            for r in (anonymizer or {}).get("per_track", [])
            if isinstance(r, dict) and "served" in r and "track_id" in r
        }
        found = {int(k): v for k, v in (verify or {}).items() if str(k).lstrip("-").isdigit()}
        out: list[dict[str, Any]] = []
        for tid in sorted(self._tracks):
            t = self._tracks[tid]
            served = served_by.get(tid, {method: t.frames})
            rec: dict[str, Any] = {
                "track_id": tid,
                "frames": t.frames,
                "first_frame": t.first_frame,
                "last_frame": t.last_frame,
                "detected_frames": t.detected,
                "coasted_frames": t.coasted,
                "served": served,
                "fallback_frames": sum(n for m, n in served.items() if not m.startswith(method)),
            }
            if verify is not None:
                rec["verify"] = found.get(tid, {"faces_found": 0, "faces_matching": 0, "min_distance": None})
            out.append(rec)
        return out

    def summary(self) -> dict[str, Any]:
        """Run-level counts: tracks, frames fully masked after a failure, faces with no track."""
        return {
            "tracks": len(self._tracks),
            "frames_masked_whole": len(self.failed_frames),
            "untracked_faces": self.untracked_faces,
        }
