"""``eval video ORIGINAL ANONYMISED``: frames where a face is still recognisable.

An independent detector (dlib) finds faces in every N-th ORIGINAL frame; each face is
embedded in the original and, at the same box and landmarks, in the anonymised frame
of the same index. A face whose two embeddings are closer than the recogniser's
threshold (0.6) leaked. Face crops are written only to ``save_leaks`` when asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, SinkError
from ..io import VideoSource
from ..models.recognizer import Recogniser

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
    leak_dir: Path | None = None
    if save_leaks is not None:
        leak_dir = Path(save_leaks)
        try:
            leak_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create {leak_dir}: {exc.strerror}") from exc
    leaks: list[dict[str, Any]] = []
    sampled: list[int] = []
    times: dict[int, float | None] = {}
    faces_checked = 0
    distances: list[float] = []
    n_orig = n_anon = 0
    rate = None
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
            n_orig += 1
            fa = next(it_a, None)
            if fa is None:
                continue
            n_anon += 1
            if fo.index % every:
                continue
            sampled.append(fo.index)
            times[fo.index] = fo.time
            faces = rec.detect(fo.image)
            if not faces:
                continue
            faces_checked += len(faces)
            e_o = rec.embed(fo.image, faces)
            e_a = rec.embed(fa.image, faces)
            d = np.sqrt(((e_o - e_a) ** 2).sum(1)) if len(faces) else np.zeros(0)
            distances.extend(float(v) for v in d)
            for k, (face, dist) in enumerate(zip(faces, d, strict=True)):
                if dist < rec.threshold:
                    leaks.append(
                        {
                            "frame": fo.index,
                            "time": None if fo.time is None else round(fo.time, 3),
                            "distance": round(float(dist), 4),
                            **face.to_record(),
                        }
                    )
                    if leak_dir is not None:
                        _save_crop(leak_dir, fa.image, face.box, f"frame{fo.index:06d}_face{k}_d{dist:.2f}.png")
            if progress:
                progress(fo.index)
        n_anon += sum(1 for _ in it_a)
    if n_orig != n_anon:
        log.warning("frame counts differ: original %d, anonymised %d; compared the common frames", n_orig, n_anon)
    leaked_frames = sorted({lk["frame"] for lk in leaks})
    runs = _runs(sampled, set(leaked_frames))
    longest = max(runs, key=lambda r: (r[1] - r[0], -r[0])) if runs else None
    step_s = every / rate if rate else 0.0

    def t(idx: int) -> float | None:
        v = times.get(idx)
        return None if v is None else round(v, 3)

    longest_block: dict[str, Any] | None = None
    if longest is not None:
        a, b = longest
        ta, tb = times.get(a), times.get(b)
        longest_block = {
            "first_frame": a,
            "last_frame": b,
            "samples": sum(1 for i in sampled if a <= i <= b),
            "start_time": t(a),
            "end_time": t(b),
            "seconds": round((tb - ta) + step_s, 3) if ta is not None and tb is not None else None,
        }
    return {
        "original": str(original),
        "anonymised": str(anonymised),
        "every": every,
        "frames_original": n_orig,
        "frames_anonymised": n_anon,
        "frames_compared": len(sampled),
        "faces_checked": faces_checked,
        "leaked_faces": len(leaks),
        "leaked_frames": len(leaked_frames),
        "leak_rate": len(leaks) / faces_checked if faces_checked else 0.0,
        "leak_times": [t(i) for i in leaked_frames],
        "longest_run": longest_block,
        "distance_min": float(min(distances)) if distances else None,
        "distance_mean": float(np.mean(distances)) if distances else None,
        "threshold": rec.threshold,
        "leaks": leaks,
        "saved_crops": str(leak_dir) if leak_dir is not None else None,
    }


__all__ = ["evaluate_video"]
