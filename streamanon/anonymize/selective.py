"""Selective anonymisation: regions to leave alone or to limit to, and people who consented.

Why: operators anonymise footage they may keep, and some of it must stay visible (a
burned-in timestamp, a shop's own window, a consenting interviewee). Everything here
fails safe: what is not positively selected for keeping is anonymised.

* ``--only-region`` / ``--ignore-region``: rectangles ``x0,y0,x1,y1`` or polygons
  ``x0,y0,x1,y1,x2,y2,...``, in pixels or, when every value is within [0, 1], relative
  to the frame. Honoured exactly, per pixel: the anonymised image is composited with the
  original so that pixels outside every only-region, or inside an ignore-region, are the
  original's bit for bit, and every other pixel is what the method made of it.
* ``--keep-face PHOTO``: each track's detector rows are embedded with dlib's ResNet
  recogniser and compared with the reference photos. A track is kept visible only after
  ``KEEP_FRAMES`` detector frames at a distance under ``KEEP_MATCH`` with none above
  ``KEEP_REJECT``; until then it is anonymised, and so it is from the first frame above
  ``KEEP_REJECT`` on (that frame included), after ``MAX_TRIES`` frames without the
  repeated match (both looked at again every ``RETRY_EVERY`` detector frames, as a
  tracker may hand a track to another person), on a face too small to recognise, on a
  row without a track, and for good after a recognition error. A kept track is checked
  on every detector frame before that frame is decided. A still image has one frame:
  it needs one match under ``STILL_MATCH``.
  Per-track decisions with their distances go in the run report (``selection``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..geometry import check_region
from ..io import read_image
from ..models.recognizer import shared_recogniser
from ..types import SOURCE_DETECTOR, Detections
from .base import Anonymizer, FaceAnonymizer, FrameInfo, TrackStates

log = logging.getLogger(__name__)

#: Distance under which a frame counts as a confident match (dlib documents 0.6 as the
#: same-person threshold of its model; 0.5 leaves a margin).
KEEP_MATCH = 0.5
#: One frame above this and the track is anonymised for good.
KEEP_REJECT = 0.6
#: Confident frames needed before a track is kept.
KEEP_FRAMES = 3
#: A still image: its one frame must match under this.
STILL_MATCH = 0.45
#: Faces smaller than this (sqrt of the box area, px) are not recognised: anonymised.
MIN_KEEP_SIZE = 40.0
#: Detector frames a track may take to reach the repeated match before it is anonymised
#: for good (bounds the recogniser's cost on people who are not kept).
MAX_TRIES = 12
#: A rejected or ambiguous track is looked at again every this many detector frames (the
#: tracker may hand a track from one person to another, e.g. across a cut).
RETRY_EVERY = 10
#: Tracks whose records the report keeps (the rest are counted).
MAX_REPORTED = 1000


# -- regions ---------------------------------------------------------------------------
def parse_region(text: str) -> tuple[float, ...]:
    """``"x0,y0,x1,y1"`` (rectangle) or ``"x0,y0,x1,y1,x2,y2,..."`` (polygon)."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise ConfigError(
            f"invalid region {text!r}: expected numbers x0,y0,x1,y1 (or a polygon x0,y0,x1,y1,x2,y2,...)"
        ) from None
    check_region(values)
    return values


def region_points(values: Sequence[float], width: int, height: int) -> NDArray[np.float64]:
    """The region's polygon in frame pixels (relative when every value is within [0, 1])."""
    v = np.asarray(values, np.float64)
    if len(v) == 4:
        x0, y0, x1, y1 = v
        v = np.array([x0, y0, x1, y0, x1, y1, x0, y1])
    pts = v.reshape(-1, 2)
    if (v <= 1.0).all():
        pts = pts * np.array([width, height], np.float64)
    return pts


def _fill(mask: NDArray[np.uint8], values: Sequence[float]) -> None:
    h, w = mask.shape
    pts = region_points(values, w, h)
    if len(values) == 4:  # a rectangle covers the pixels whose centres lie inside it
        x0, y0 = np.ceil(pts.min(0) - 0.5).astype(int)
        x1, y1 = np.ceil(pts.max(0) - 0.5).astype(int)
        mask[max(0, y0) : max(0, min(h, y1)), max(0, x0) : max(0, min(w, x1))] = 1
        return
    shift = 4  # sub-pixel vertices
    cv2.fillPoly(mask, [np.round((pts - 0.5) * (1 << shift)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=shift)


def region_in_frame(values: Sequence[float], width: int, height: int) -> dict[str, Any]:
    """The region in frame pixels, clipped to the frame, with the pixels it covers.

    Returns ``{"region": [...], "pixels": [...], "covered_px": N, "clipped": bool}``:
    ``pixels`` is ``[x0, y0, x1, y1]`` for a rectangle (clipped to the frame) or the
    polygon's vertices (``x, y`` pairs; the polygon is cut at the frame's edge when drawn).
    """
    pts = region_points(values, width, height)
    mask = np.zeros((height, width), np.uint8)
    _fill(mask, values)
    inside = bool(((pts >= 0) & (pts <= np.array([width, height]))).all())
    if len(values) == 4:
        lo = np.clip(pts.min(0), 0, [width, height])
        hi = np.clip(pts.max(0), 0, [width, height])
        pixels = [round(float(v), 2) for v in (lo[0], lo[1], hi[0], hi[1])]
    else:
        pixels = [round(float(v), 2) for v in pts.reshape(-1)]
    return {
        "region": [float(v) for v in values],
        "pixels": pixels,
        "covered_px": int(mask.sum()),
        "clipped": not inside,
    }


def check_regions_in_frame(
    only: Sequence[Sequence[float]], ignore: Sequence[Sequence[float]], width: int, height: int
) -> dict[str, Any]:
    """Check the regions against a ``width`` x ``height`` frame (before any frame is written).

    Raises:
        ConfigError: an ``--only-region`` covers no pixel of the frame (every face would
            stay raw), or an ``--ignore-region`` covers none (a typo that protects nothing).

    A region partly outside the frame is clipped with a warning. Returns the regions in
    pixels for the run report (``selection``).
    """
    out: dict[str, Any] = {"frame_size": [width, height], "only_regions_px": [], "ignore_regions_px": []}
    for flag, regions, key in (
        ("--only-region", only, "only_regions_px"),
        ("--ignore-region", ignore, "ignore_regions_px"),
    ):
        for r in regions:
            rec = region_in_frame(r, width, height)
            text = ",".join(f"{v:g}" for v in r)
            if rec["covered_px"] == 0:
                raise ConfigError(
                    f"{flag} {text} is wholly outside the {width}x{height} frame "
                    "(pixels, or relative when every value is in [0, 1])"
                )
            if rec["clipped"]:
                log.warning("%s %s reaches outside the %dx%d frame: clipped to it", flag, text, width, height)
            out[key].append(rec)
    return out


def active_mask(
    only: Sequence[Sequence[float]], ignore: Sequence[Sequence[float]], width: int, height: int
) -> NDArray[np.bool_] | None:
    """Pixels the anonymiser may change: inside an only-region (every pixel when there is
    none) and outside every ignore-region. ``None``: every pixel (no regions)."""
    if not only and not ignore:
        return None
    mask = np.zeros((height, width), np.uint8)
    if only:
        for r in only:
            _fill(mask, r)
    else:
        mask[:] = 1
    if ignore:
        off = np.zeros_like(mask)
        for r in ignore:
            _fill(off, r)
        mask[off > 0] = 0
    return mask > 0


# -- keeping consenting people ---------------------------------------------------------
class _Recogniser(Protocol):
    def detect(self, image: NDArray[np.uint8]) -> list[Any]: ...
    def locate(self, image: NDArray[np.uint8], box: NDArray[np.float32], score: float = 1.0) -> Any: ...
    def embed(self, image: NDArray[np.uint8], faces: Sequence[Any]) -> NDArray[np.float32]: ...


class KeepFaces:
    """Reference embeddings of the people to keep visible, and the recogniser (loaded once
    per process, shared read-only by every run).

    Args:
        photos: one photo per reference, each showing exactly one face.
        recogniser: anything with dlib's ``detect/locate/embed`` (default: dlib's ResNet,
            ``streamanon.models.recognizer.DlibRecogniser``; the ``[eval]`` extra).
    """

    def __init__(self, photos: Sequence[str], recogniser: _Recogniser | None = None) -> None:
        if recogniser is None:
            recogniser = shared_recogniser("hog", upsample=1)
        self.recogniser = recogniser
        self.names = [Path(p).name for p in photos]
        refs = [self._reference(Path(p)) for p in photos]
        self.references = np.stack(refs) if refs else np.zeros((0, 128), np.float32)

    def _reference(self, path: Path) -> NDArray[np.float32]:
        if not path.is_file():
            raise ConfigError(f"--keep-face {path}: no such file")
        image = read_image(path).image
        faces = self.recogniser.detect(image)
        if len(faces) != 1:
            raise ConfigError(f"--keep-face {path}: found {len(faces)} faces; the photo must show exactly one")
        vec: NDArray[np.float32] = self.recogniser.embed(image, faces)[0]
        return vec

    def distances(
        self, image: NDArray[np.uint8], boxes: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Per box, the smallest distance to a reference and which reference it was."""
        faces = [self.recogniser.locate(image, np.asarray(b, np.float32)) for b in boxes]
        emb = np.asarray(self.recogniser.embed(image, faces), np.float32).reshape(len(faces), -1)
        d = np.sqrt(np.maximum(((emb[:, None, :] - self.references[None, :, :]) ** 2).sum(-1), 0.0))
        return d.min(1).astype(np.float32), d.argmin(1).astype(np.int64)


@dataclass
class _Track:
    """The keep decision of one track."""

    first_frame: int
    state: str = "pending"  # pending | kept | anonymised
    why: str = "no confident match yet"
    distances: list[float] = field(default_factory=list)
    reference: str | None = None
    confident: int = 0  # frames under the match distance since the last rejection
    tries: int = 0  # samples since the last rejection
    waited: int = 0  # detector frames since the last sample
    final: bool = False  # no more checks (a recognition error)
    last_frame: int = -1
    visible_frames: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "decision": "kept" if self.state == "kept" else "anonymised",
            "why": self.why,
            "reference": self.reference,
            "distances": [round(d, 3) for d in self.distances[:50]],
            "min_distance": round(min(self.distances), 3) if self.distances else None,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "visible_frames": self.visible_frames,
        }


class SelectiveAnonymizer(FaceAnonymizer):
    """Wraps the configured method: drops the rows to keep, then restores the pixels the
    regions protect. Track hooks and the report pass through to the wrapped method.

    Args:
        inner: the run's anonymiser (any method).
        only_regions, ignore_regions: see the module doc.
        keep: reference faces (``None``: nobody is kept).
        still: the run is one still image (one frame: ``STILL_MATCH`` instead of
            ``KEEP_FRAMES`` frames).
    """

    def __init__(
        self,
        inner: Any,
        only_regions: Sequence[Sequence[float]] = (),
        ignore_regions: Sequence[Sequence[float]] = (),
        keep: KeepFaces | None = None,
        still: bool = False,
    ) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "given")
        self.only = [tuple(r) for r in only_regions]
        self.ignore = [tuple(r) for r in ignore_regions]
        self.keep = keep
        self.still = still
        self._hooks = isinstance(inner, Anonymizer)
        self._masks: dict[tuple[int, int], NDArray[np.bool_] | None] = {}
        self._pixels: dict[str, Any] = {}  # the regions in pixels of the last frame size
        self._tracks: TrackStates[_Track] = TrackStates(_Track.record, limit=MAX_REPORTED)
        self._untracked = 0
        self._errors = 0

    # -- hooks -------------------------------------------------------------------------
    def track_started(self, track_id: int, info: FrameInfo) -> None:
        if self._hooks:
            self.inner.track_started(track_id, info)

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.end(track_id)
        if self._hooks:
            self.inner.track_ended(track_id, info)

    def report(self) -> dict[str, Any]:
        rep: dict[str, Any] = dict(self.inner.report()) if self._hooks else {}
        tracks = self._tracks.records(live=True)
        rep["selection"] = {
            "only_regions": [list(r) for r in self.only],
            "ignore_regions": [list(r) for r in self.ignore],
            **self._pixels,
            "keep_faces": list(self.keep.names) if self.keep else [],
            "rule": (
                f"kept after {1 if self.still else KEEP_FRAMES} detector frame(s) "
                f"under {STILL_MATCH if self.still else KEEP_MATCH} "
                f"and none above {KEEP_REJECT} (rejected tracks re-checked every {RETRY_EVERY} detector frames); "
                f"faces under {MIN_KEEP_SIZE:g} px, untracked rows and recognition errors are anonymised"
            )
            if self.keep
            else None,
            "tracks_kept": sum(1 for t in tracks if t["decision"] == "kept"),
            "tracks_ever_visible": sum(1 for t in tracks if t["visible_frames"]),
            "tracks": tracks,
            "tracks_not_reported": max(0, self._tracks.ended + len(self._tracks) - len(tracks)),
            "untracked_rows_anonymised": self._untracked,
            "recognition_errors": self._errors,
        }
        return rep

    # -- frames ------------------------------------------------------------------------
    def _active(self, width: int, height: int) -> NDArray[np.bool_] | None:
        key = (width, height)
        if key not in self._masks:
            self._masks[key] = active_mask(self.only, self.ignore, width, height)
            self._pixels = {
                "frame_size": [width, height],
                "only_regions_px": [region_in_frame(r, width, height) for r in self.only],
                "ignore_regions_px": [region_in_frame(r, width, height) for r in self.ignore],
            }
        return self._masks[key]

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        h, w = image.shape[:2]
        active = self._active(w, h)
        anonymise = np.ones(len(dets), np.bool_)
        if active is not None and len(dets):
            anonymise &= self._touches(active, dets)
        if self.keep is not None and len(dets):
            anonymise &= ~self._visible(image, dets, anonymise, info)
        rows = dets[anonymise]
        out: NDArray[np.uint8] = self.inner.apply(image, rows, info) if self._hooks else self.inner.apply(image, rows)
        if active is not None and out is not image:
            out = np.where(active[:, :, None], out, image)
        return out

    @staticmethod
    def _touches(active: NDArray[np.bool_], dets: Detections) -> NDArray[np.bool_]:
        """Rows whose (generously grown) box reaches an active pixel."""
        h, w = active.shape
        grown = dets.dilated(2.0).xyxy
        out = np.zeros(len(dets), np.bool_)
        for i, (x0, y0, x1, y1) in enumerate(grown):
            xa, ya = max(0, int(np.floor(x0)) - 4), max(0, int(np.floor(y0)) - 4)
            xb, yb = min(w, int(np.ceil(x1)) + 4), min(h, int(np.ceil(y1)) + 4)
            out[i] = xb > xa and yb > ya and bool(active[ya:yb, xa:xb].any())
        return out

    def _visible(
        self, image: NDArray[np.uint8], dets: Detections, candidates: NDArray[np.bool_], info: FrameInfo | None
    ) -> NDArray[np.bool_]:
        """Rows of kept tracks, decided with this frame's own evidence first."""
        assert self.keep is not None
        index = info.index if info is not None else -1
        size = np.sqrt(np.clip(dets.area, 0, None))
        check: list[int] = []
        for i in range(len(dets)):
            tid = int(dets.track_id[i])
            if not candidates[i]:
                continue
            if tid < 0:
                self._untracked += 1
                continue
            tr = self._tracks.get(tid)
            if tr is None:
                tr = self._tracks.start(tid, _Track(index))
            tr.last_frame = index
            if tr.final or dets.source[i] != SOURCE_DETECTOR:
                continue  # an error, or a coasting box: no new evidence
            if size[i] < MIN_KEEP_SIZE:
                if not tr.distances:
                    tr.why = f"face under {MIN_KEEP_SIZE:g} px: not recognisable"
                if tr.state == "kept":
                    tr.state, tr.confident, tr.why = "pending", 0, f"shrank under {MIN_KEEP_SIZE:g} px: checked again"
                continue
            tr.waited += 1
            if tr.state == "anonymised" and tr.waited < RETRY_EVERY:
                continue  # rejected or ambiguous: looked at again every RETRY_EVERY detector frames
            check.append(i)
        if check:
            try:
                dist, ref = self.keep.distances(image, dets.xyxy[check])
                if len(dist) != len(check):
                    raise ValueError(f"recogniser returned {len(dist)} distances for {len(check)} faces")
            except Exception as exc:  # fail safe: every face checked on this frame is anonymised for good
                log.debug("recognition failed on frame %d: %r", index, exc)
                self._errors += 1
                for i in check:
                    tr = self._track(int(dets.track_id[i]))
                    tr.state, tr.final, tr.why = "anonymised", True, f"recognition error: {exc!r}"[:200]
            else:
                for i, d, r in zip(check, dist.tolist(), ref.tolist(), strict=True):
                    self._update(self._track(int(dets.track_id[i])), float(d), self.keep.names[r])
        visible = np.zeros(len(dets), np.bool_)
        for i in range(len(dets)):
            tid = int(dets.track_id[i])
            tr = self._tracks.get(tid)
            if candidates[i] and tr is not None and tr.state == "kept":
                visible[i] = True
                tr.visible_frames += 1
        return visible

    def _track(self, track_id: int) -> _Track:
        """The state of a track ``_visible`` started on this frame."""
        tr = self._tracks.get(track_id)
        assert tr is not None
        return tr

    def _update(self, tr: _Track, d: float, name: str) -> None:
        """One distance: reject at once above KEEP_REJECT; keep after ``need`` matches in a row
        of frames none of which was above it (frames between KEEP_MATCH and KEEP_REJECT
        neither count nor reset)."""
        tr.distances.append(d)
        tr.waited = 0
        match = STILL_MATCH if self.still else KEEP_MATCH
        need = 1 if self.still else KEEP_FRAMES
        if d > KEEP_REJECT:
            tr.state, tr.confident, tr.tries = "anonymised", 0, 0
            tr.why = f"a frame at distance {d:.3f} > {KEEP_REJECT}"
            return
        if d < match:
            if tr.reference not in (None, name):
                tr.state, tr.final, tr.why = "anonymised", True, "matched two different references"
                return
            tr.reference = name
            tr.confident += 1
            if tr.state == "anonymised":
                tr.state = "pending"  # a match after a rejection: evidence starts over
        tr.tries += 1
        if tr.state == "pending":
            if tr.confident >= need:
                tr.state, tr.why = (
                    "kept",
                    f"{tr.confident} detector frame(s) under {match}, none above {KEEP_REJECT} since the last check",
                )
            elif tr.tries >= MAX_TRIES or self.still:
                tr.state, tr.confident, tr.tries = "anonymised", 0, 0
                tr.why = f"ambiguous: no {need} frames under {match} in {MAX_TRIES if not self.still else 1} tries"


__all__ = [
    "KEEP_FRAMES",
    "KEEP_MATCH",
    "KEEP_REJECT",
    "MAX_TRIES",
    "MIN_KEEP_SIZE",
    "RETRY_EVERY",
    "STILL_MATCH",
    "KeepFaces",
    "SelectiveAnonymizer",
    "active_mask",
    "check_region",
    "check_regions_in_frame",
    "parse_region",
    "region_in_frame",
    "region_points",
]
