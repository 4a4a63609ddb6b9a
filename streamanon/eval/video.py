"""``eval video ORIGINAL ANONYMISED``: frames where a face is still recognisable.

An independent detector (dlib) finds faces in every N-th ORIGINAL frame; each face is
embedded in the original and, at the same box and landmarks, in the anonymised frame
of the same index. A face whose two embeddings are closer than the recogniser's
threshold (0.6) leaked. Face crops are written only to ``save_leaks`` when asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, SinkError
from ..io import VideoSource
from ..models.recognizer import Recogniser
from ..types import Frame

log = logging.getLogger(__name__)


def _runs(sampled: list[int], leaked: set[int]) -> list[tuple[int, int]]:
    """Maximal runs (first, last) of consecutive SAMPLED frames that leaked."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    prev: int | None = None
    for idx in sampled:
        if idx in leaked:
            if start is None:
                start = idx
            prev = idx
        elif start is not None and prev is not None:
            runs.append((start, prev))
            start = None
    if start is not None and prev is not None:
        runs.append((start, prev))
    return runs


def _save_crop(folder: Path, image: np.ndarray, box: np.ndarray, name: str) -> None:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * 0.2, (y1 - y0) * 0.2
    a, b = max(0, int(x0 - mx)), max(0, int(y0 - my))
    c, d = min(w, int(x1 + mx)), min(h, int(y1 + my))
    if c <= a or d <= b:
        return
    try:
        Image.fromarray(np.ascontiguousarray(image[b:d, a:c])).save(folder / name)
    except OSError as exc:
        raise SinkError(f"cannot write leak crop to {folder}: {exc}") from exc


def evaluate_video(
    original: str | Path,
    anonymised: str | Path,
    rec: Recogniser,
    *,
    every: int = 10,
    save_leaks: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compare two videos frame by frame (by decode index) on every ``every``-th frame.

    Returns:
        JSON-ready dict: frames compared, faces checked, leaked faces and frames, their
        timestamps, the longest run of consecutive sampled frames that leaked.

    Raises:
        ConfigError: bad ``every`` or the videos differ in frame size.
        SourceOpenError: a video cannot be opened.
        SinkError: ``save_leaks`` cannot be written.
    """
    if every < 1:
        raise ConfigError(f"invalid --every {every!r}: expected an integer >= 1")
    scan = _Scan(rec, _leak_folder(save_leaks))
    with VideoSource(original, audio=False) as src_o, VideoSource(anonymised, audio=False) as src_a:
        io, ia = src_o.info, src_a.info
        if (io.width, io.height) != (ia.width, ia.height):
            raise ConfigError(
                f"the videos differ in frame size ({io.width}x{io.height} vs {ia.width}x{ia.height}); "
                "eval video compares faces at the same place in frames of the same size"
            )
        rate = float(io.average_rate) if io.average_rate else None
        it_a = iter(src_a)
        for fo in src_o:
            scan.n_orig += 1
            fa = next(it_a, None)
            if fa is None:
                continue
            scan.n_anon += 1
            if fo.index % every:
                continue
            if scan.check(fo, fa) and progress:
                progress(fo.index)
        scan.n_anon += sum(1 for _ in it_a)
    if scan.n_orig != scan.n_anon:
        log.warning(
            "frame counts differ: original %d, anonymised %d; compared the common frames", scan.n_orig, scan.n_anon
        )
    return {"original": str(original), "anonymised": str(anonymised), "every": every} | scan.result(every, rate)


def _leak_folder(save_leaks: str | Path | None) -> Path | None:
    if save_leaks is None:
        return None
    leak_dir = Path(save_leaks)
    try:
        leak_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"cannot create {leak_dir}: {exc.strerror}") from exc
    return leak_dir


@dataclass
class _Scan:
    """What ``evaluate_video`` found so far."""

    rec: Recogniser
    leak_dir: Path | None
    leaks: list[dict[str, Any]] = field(default_factory=list)
    sampled: list[int] = field(default_factory=list)
    times: dict[int, float | None] = field(default_factory=dict)
    faces_checked: int = 0
    distances: list[float] = field(default_factory=list)
    n_orig: int = 0
    n_anon: int = 0

    def check(self, fo: Frame, fa: Frame) -> bool:
        """One sampled pair: the original's faces against the same places in the anonymised
        frame. False when the original has no face."""
        self.sampled.append(fo.index)
        self.times[fo.index] = fo.time
        faces = self.rec.detect(fo.image)
        if not faces:
            return False
        self.faces_checked += len(faces)
        e_o = self.rec.embed(fo.image, faces)
        e_a = self.rec.embed(fa.image, faces)
        d = np.sqrt(((e_o - e_a) ** 2).sum(1)) if len(faces) else np.zeros(0)
        self.distances.extend(float(v) for v in d)
        for k, (face, dist) in enumerate(zip(faces, d, strict=True)):
            if dist < self.rec.threshold:
                self.leaks.append(
                    {
                        "frame": fo.index,
                        "time": None if fo.time is None else round(fo.time, 3),
                        "distance": round(float(dist), 4),
                        **face.to_record(),
                    }
                )
                if self.leak_dir is not None:
                    _save_crop(self.leak_dir, fa.image, face.box, f"frame{fo.index:06d}_face{k}_d{dist:.2f}.png")
        return True

    def time_of(self, idx: int) -> float | None:
        v = self.times.get(idx)
        return None if v is None else round(v, 3)

    def longest_block(self, leaked_frames: list[int], step_s: float) -> dict[str, Any] | None:
        """The longest run of consecutive sampled frames that leaked."""
        runs = _runs(self.sampled, set(leaked_frames))
        if not runs:
            return None
        a, b = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
        ta, tb = self.times.get(a), self.times.get(b)
        return {
            "first_frame": a,
            "last_frame": b,
            "samples": sum(1 for i in self.sampled if a <= i <= b),
            "start_time": self.time_of(a),
            "end_time": self.time_of(b),
            "seconds": round((tb - ta) + step_s, 3) if ta is not None and tb is not None else None,
        }

    def result(self, every: int, rate: float | None) -> dict[str, Any]:
        leaked_frames = sorted({lk["frame"] for lk in self.leaks})
        distances = self.distances
        return {
            "frames_original": self.n_orig,
            "frames_anonymised": self.n_anon,
            "frames_compared": len(self.sampled),
            "faces_checked": self.faces_checked,
            "leaked_faces": len(self.leaks),
            "leaked_frames": len(leaked_frames),
            "leak_rate": len(self.leaks) / self.faces_checked if self.faces_checked else 0.0,
            "leak_times": [self.time_of(i) for i in leaked_frames],
            "longest_run": self.longest_block(leaked_frames, every / rate if rate else 0.0),
            "distance_min": float(min(distances)) if distances else None,
            "distance_mean": float(np.mean(distances)) if distances else None,
            "threshold": self.rec.threshold,
            "leaks": self.leaks,
            "saved_crops": str(self.leak_dir) if self.leak_dir is not None else None,
        }


__all__ = ["evaluate_video"]
