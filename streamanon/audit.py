"""What a run did, in numbers only: ``RunStats`` (the counters every report carries) and
the per-track audit (frames, the method that served them, fallbacks).

``RunStats`` is the one stats object behind the file, folder, live and streams reports:
each writes it as ``stats`` in the same JSON layout. A file or live run feeds it every
``Result`` it writes (``add``); a folder's totals and the streams' total are ``RunStats.total``
of the runs they sum.

``TrackAudit.add`` is fed every ``Result`` as it reaches the sink (runner.py); it counts,
per track id, the frames the track covered, how many of them came from the detector and
how many from coasting, and the frames that failed and were fully masked. ``records``
joins these counts with the anonymiser's own per-track records (``served``: faces per
method, e.g. ``generate`` / ``generate-carried`` / ``blur`` for generate's fallback) and,
when ``--verify`` ran, with what the verifier found near each track. No pixels, no
landmarks: counts, frame indices and distances only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .types import SOURCE_DETECTOR, Detections


@dataclass
class RunStats:
    """The counters of one run (or the total of several), as every report writes them.

    ``frames_in`` is what was read from the input, ``frames`` what was processed
    (anonymised, or fully masked after a failure: ``frames_failed``), ``frames_written``
    the processed frames in the output; ``frames_dropped`` were dropped because processing
    fell behind (live). ``faces`` counts every anonymised box, ``detections`` the boxes the
    detector found, ``tracks`` the distinct face tracks (summed over the runs of a total).
    """

    frames_in: int = 0
    frames: int = 0
    frames_written: int = 0
    frames_failed: int = 0
    frames_dropped: int = 0
    faces: int = 0
    detections: int = 0
    tracks: int = 0
    seconds: float = 0.0
    _track_ids: set[int] = field(default_factory=set, repr=False, compare=False)

    def add(self, dets: Detections, failed: str | None = None) -> None:
        """Count one processed frame: its boxes, detector rows and tracks."""
        self.frames += 1
        self.faces += len(dets)
        if failed is not None:
            self.frames_failed += 1
        if len(dets):
            self.detections += int((dets.source == SOURCE_DETECTOR).sum())
            self._track_ids.update(int(t) for t in dets.track_id if t >= 0)
            self.tracks = len(self._track_ids)

    @property
    def fps(self) -> float:
        """Processed frames per second of wall time."""
        return round(self.frames / self.seconds, 2) if self.seconds > 0 else 0.0

    @classmethod
    def total(cls, runs: Iterable[RunStats], seconds: float | None = None) -> RunStats:
        """The sum of ``runs``; ``seconds``: the wall clock of the whole (default: summed)."""
        out = cls()
        for r in runs:
            for name in _COUNTERS:
                setattr(out, name, getattr(out, name) + getattr(r, name))
        if seconds is not None:
            out.seconds = seconds
        return out

    def to_dict(self) -> dict[str, Any]:
        """The ``stats`` block of every report (the same keys everywhere)."""
        counts = {name: getattr(self, name) for name in _COUNTERS}
        return counts | {"seconds": round(self.seconds, 3), "fps": self.fps}


#: The counters of ``RunStats`` (its public fields; a subclass's own fields are not counters).
_COUNTERS = tuple(f.name for f in fields(RunStats) if not f.name.startswith("_"))


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
