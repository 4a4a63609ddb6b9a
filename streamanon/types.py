"""The two value types that travel between pipeline stages: ``Frame`` and ``Detections``.

Both are frozen so that hand-offs between threads are safe: a stage that wants to change
something builds a new object (``dataclasses.replace``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Where a row of Detections came from.
SOURCE_DETECTOR = 0
SOURCE_TRACK = 1


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded video frame or still image.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB pixels.
        index: 0-based position in the source (decode order of presented frames).
        pts: presentation timestamp in ``time_base`` units (``None`` for stills).
        time_base: the stream's time base.
        packets: demuxed packets of other streams (audio) that follow this frame in the
            file and are to be remuxed untouched after it.
        wallclock: ``time.monotonic()`` when the frame was read (live latency metrics).
    """

    image: NDArray[np.uint8]
    index: int
    pts: int | None = None
    time_base: Fraction | None = None
    packets: tuple[Any, ...] = ()
    wallclock: float = 0.0

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or ``None`` when unknown."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _f32(a: Any, shape_tail: tuple[int, ...]) -> NDArray[np.float32]:
    arr = np.asarray(a, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, *shape_tail), dtype=np.float32)
    return arr


@dataclass(frozen=True, slots=True, init=False)
class Detections:
    """Faces in one frame as a struct of arrays (N rows).

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes in original-frame pixels.
        score: ``(N,)`` float32 confidences in ``[0, 1]``.
        landmarks: ``(N, 5, 2)`` float32 five-point landmarks (eyes, nose, mouth corners),
            NaN where a row has none (track predictions).
        track_id: ``(N,)`` int64, -1 where no track is assigned.
        source: ``(N,)`` uint8, ``SOURCE_DETECTOR`` or ``SOURCE_TRACK``.

    Every argument but ``xyxy`` may be None: all-ones scores, NaN landmarks, no track
    (-1), ``SOURCE_DETECTOR``.
    """

    xyxy: NDArray[np.float32]
    score: NDArray[np.float32]
    landmarks: NDArray[np.float32]
    track_id: NDArray[np.int64]
    source: NDArray[np.uint8]

    def __init__(
        self,
        xyxy: ArrayLike,
        score: ArrayLike | None = None,
        landmarks: ArrayLike | None = None,
        track_id: ArrayLike | None = None,
        source: ArrayLike | None = None,
    ) -> None:
        boxes = _f32(xyxy, (4,)).reshape(-1, 4) if np.size(xyxy) else _f32([], (4,))
        n = len(boxes)
        scores = np.ones(n, np.float32) if score is None else _f32(score, ()).reshape(-1)
        if landmarks is None:
            lms = np.full((n, 5, 2), np.nan, np.float32)
        else:
            lms = _f32(landmarks, (5, 2)).reshape(-1, 5, 2)
        tid = np.full(n, -1, np.int64) if track_id is None else np.asarray(track_id, np.int64).reshape(-1)
        src = np.full(n, SOURCE_DETECTOR, np.uint8) if source is None else np.asarray(source, np.uint8).reshape(-1)
        for name, arr in (("score", scores), ("landmarks", lms), ("track_id", tid), ("source", src)):
            if len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} rows but xyxy has {n}")
        object.__setattr__(self, "xyxy", boxes)
        object.__setattr__(self, "score", scores)
        object.__setattr__(self, "landmarks", lms)
        object.__setattr__(self, "track_id", tid)
        object.__setattr__(self, "source", src)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32))

    @classmethod
    def concat(cls, parts: list[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
            np.concatenate([p.track_id for p in parts]),
            np.concatenate([p.source for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, idx: Any) -> Detections:
        if isinstance(idx, (int, np.integer)):
            idx = slice(int(idx), int(idx) + 1 if idx != -1 else None)
        return Detections(self.xyxy[idx], self.score[idx], self.landmarks[idx], self.track_id[idx], self.source[idx])

    @property
    def has_landmarks(self) -> NDArray[np.bool_]:
        # np.asarray: numpy's stub types any(axis=...) as "scalar or array"; here it is always (N,)
        return np.asarray(~np.isnan(self.landmarks).any(axis=(1, 2)))

    @property
    def area(self) -> NDArray[np.float32]:
        wh: NDArray[np.float32] = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def scaled(self, sx: float, sy: float) -> Detections:
        s = np.array([sx, sy, sx, sy], np.float32)
        return dataclasses.replace(self, xyxy=self.xyxy * s, landmarks=self.landmarks * np.array([sx, sy], np.float32))

    def dilated(self, factor: float) -> Detections:
        """Boxes grown about their centres by ``factor`` (1.0 = unchanged)."""
        c = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        half = (self.xyxy[:, 2:] - self.xyxy[:, :2]) / 2 * factor
        return dataclasses.replace(self, xyxy=np.concatenate([c - half, c + half], axis=1))

    def clipped(self, width: int, height: int) -> Detections:
        xyxy = self.xyxy.copy()
        xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, width)
        xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, height)
        return dataclasses.replace(self, xyxy=xyxy)

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready rows (report format): box, score, landmarks, track_id, source."""
        out = []
        for i in range(len(self)):
            rec: dict[str, Any] = {
                "box": [round(float(v), 2) for v in self.xyxy[i]],
                "score": round(float(self.score[i]), 4),
            }
            if self.has_landmarks[i]:
                rec["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks[i]]
            else:
                rec["landmarks"] = None
            if self.track_id[i] >= 0:
                rec["track_id"] = int(self.track_id[i])
            rec["source"] = "track" if self.source[i] == SOURCE_TRACK else "detector"
            out.append(rec)
        return out
