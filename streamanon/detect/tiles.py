"""Small faces: overlapping tiles of the frame, upscaled, merged with the full-frame pass.

Why: CenterFace misses most faces under ~16 px at any input size that keeps the frame
whole (recall .27 under 16 px on the shared WIDER subset at native size), and a 4K frame
is shrunk to 1920 before the network. Cutting the frame into tiles and upscaling each
(2x by default) makes a 8 px face a 16 px one, where the network finds it.

Cost: tiles multiply the pixels the network sees (about ``tile_scale**2`` times the
frame, plus the overlaps). It is bounded by scheduling: the full frame runs on every
frame; tiles run in rotation, each one every ``tile_every`` detector frames, the tracker
carrying the faces between visits; tiles where small faces were seen recently are
visited more often (``HOT_EVERY``), within a budget of tiles per frame. The first frame
of a run (and a still image) visits every tile.

Scheduling reads only what the detector found on frames at least ``lag`` frames earlier
(``lag`` = batch x max(2, workers)): with concurrent detector workers those frames are
always finished, so the tiles visited on a frame do not depend on thread timing, and the
output is the same with one worker or two.

``--small-faces auto`` turns tiling on for a run when the frame is at least 1080p, or when
one of its first ``AUTO_PROBE_FRAMES`` frames shows a face under ``AUTO_SMALL_FACE`` px;
the decision is logged and reported (``report()``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..track.association import box_iou
from ..types import Detections
from . import merge
from .centerface import network_size

log = logging.getLogger(__name__)

#: Network input side of one tile (a multiple of 32: no resize inside the detector).
TILE_INPUT = 640
#: Faces up to this size (in full-pass network pixels) are the tiles' job; larger ones
#: the full pass finds (recall >= .93 from 32 px up) and tiles would cut.
TILE_FACE_LIMIT = 48.0
#: Tiles per detector call on a GPU (bounds the input blob: 8 x 3 x 640 x 640 floats =
#: 39 MB). On the CPU one tile per call: one thread ran a 640x640 tile in 35 ms at batch
#: 1, 49 ms per tile at 4 and 60 at 8 (OpenVINO bf16), and every new batch size is a new
#: network shape to compile (0.6 s; the tile count varies from frame to frame).
TILE_BATCH = 8
#: ``auto``: frames whose short side is at least this are "large" (1080p and up).
AUTO_LARGE_SIDE = 1080
#: ``auto``: a face under this many pixels on one of the first frames turns tiling on.
AUTO_SMALL_FACE = 32.0
AUTO_PROBE_FRAMES = 25
#: A tile that found a face on one of its last visits is visited every HOT_EVERY frames.
HOT_EVERY = 2
#: ... for this many frames after that face was seen.
HOT_MEMORY = 50


@dataclass(frozen=True)
class TileGrid:
    """Overlapping square tiles covering a ``width`` x ``height`` frame.

    Attributes:
        boxes: ``(N, 4)`` int64 tiles ``x0, y0, x1, y1`` in frame pixels, row-major.
        cols, rows: grid shape.
        scale: upscaling of each tile before the detector.
        overlap: minimum overlap of neighbouring tiles in frame pixels; a face up to
            this size that an edge cuts lies whole in the neighbour.
    """

    width: int
    height: int
    boxes: NDArray[np.int64]
    cols: int
    rows: int
    scale: float
    overlap: int

    def __len__(self) -> int:
        return len(self.boxes)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: first at 0, last flush with the end, evenly spread."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def make_grid(
    width: int, height: int, scale: float = 2.0, full_scale: float = 1.0, tile_input: int = TILE_INPUT
) -> TileGrid:
    """The tile grid of a frame.

    Args:
        width, height: frame size.
        scale: tile upscaling; a tile is ``tile_input / scale`` frame pixels wide.
        full_scale: how the full pass scales the frame (network/frame); the tiles take
            the faces under ``TILE_FACE_LIMIT`` full-pass pixels, so neighbouring tiles
            overlap by that many frame pixels (plus a margin).
    """
    side = max(32, round(tile_input / scale))
    overlap = math.ceil(TILE_FACE_LIMIT / max(full_scale, 1e-6)) + 2 * math.ceil(merge.EDGE_MARGIN) + 4
    overlap = min(overlap, side // 2)
    tw, th = min(side, width), min(side, height)
    xs, ys = _starts(width, tw, overlap), _starts(height, th, overlap)
    boxes = np.array([[x, y, x + tw, y + th] for y in ys for x in xs], np.int64)
    return TileGrid(width, height, boxes, len(xs), len(ys), scale, overlap)


def face_limit(grid: TileGrid, full_scale: float) -> float:
    """Largest face (frame pixels) taken from a tile."""
    return TILE_FACE_LIMIT / max(full_scale, 1e-6)


def crop_tiles(image: NDArray[np.uint8], grid: TileGrid, which: Sequence[int]) -> list[NDArray[np.uint8]]:
    """The tiles ``which`` of ``image``, upscaled by ``grid.scale`` (all the same size)."""
    out: list[NDArray[np.uint8]] = []
    for t in which:
        x0, y0, x1, y1 = (int(v) for v in grid.boxes[t])
        crop = image[y0:y1, x0:x1]
        size = (round((x1 - x0) * grid.scale), round((y1 - y0) * grid.scale))
        up = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR) if size != (x1 - x0, y1 - y0) else crop
        out.append(np.asarray(up, np.uint8))
    return out


def to_frame(dets: Detections, grid: TileGrid, tile: int) -> Detections:
    """Detections of tile ``tile`` (tile-image pixels) in frame pixels."""
    x0, y0 = float(grid.boxes[tile, 0]), float(grid.boxes[tile, 1])
    s = 1.0 / grid.scale
    d = dets.scaled(s, s)
    off = np.array([x0, y0, x0, y0], np.float32)
    return Detections(d.xyxy + off, d.score, d.landmarks + np.array([x0, y0], np.float32))


@dataclass
class TilePass:
    """What the tiles found on one frame, before merging."""

    dets: Detections  # frame pixels, edge-cut boxes seen whole elsewhere removed
    tile_of: NDArray[np.int64]  # per row, the tile it came from
    visited: list[int] = field(default_factory=list)


def tile_detections(per_tile: Sequence[Detections], grid: TileGrid, visited: Sequence[int], limit: float) -> TilePass:
    """Tile results in frame pixels: faces under ``limit`` px, partial faces removed.

    A box touching an inner edge of its tile is dropped when another visited tile holds
    a box overlapping it that lies wholly inside that tile (the same face, seen whole).
    """
    parts: list[Detections] = []
    owner: list[NDArray[np.int64]] = []
    for t, d in zip(visited, per_tile, strict=True):
        f = to_frame(d, grid, t)
        if len(f):
            size = np.sqrt(np.clip(f.area, 0, None))
            f = f[size <= limit]
        parts.append(f)
        owner.append(np.full(len(f), t, np.int64))
    if not parts:
        return TilePass(Detections.empty(), np.zeros(0, np.int64), list(visited))
    dets = Detections.concat(parts)
    tile_of = np.concatenate(owner) if owner else np.zeros(0, np.int64)
    if len(dets) == 0:
        return TilePass(dets, tile_of, list(visited))
    cut = np.zeros(len(dets), np.bool_)
    whole = np.zeros(len(dets), np.bool_)
    for t in set(tile_of.tolist()):
        rows = tile_of == t
        c = merge.cut_by_edge(dets.xyxy[rows], grid.boxes[t], grid.width, grid.height)
        cut[rows] = c
        whole[rows] = ~c
    drop = np.zeros(len(dets), np.bool_)
    cut_rows = np.flatnonzero(cut)
    if len(cut_rows):
        whole_rows = np.flatnonzero(whole)
        iou = box_iou(dets.xyxy[cut_rows], dets.xyxy[whole_rows]) if len(whole_rows) else np.zeros((len(cut_rows), 0))
        for k, r in enumerate(cut_rows):
            others = (
                whole_rows[(iou[k] > 0.1) & (tile_of[whole_rows] != tile_of[r])] if iou.shape[1] else whole_rows[:0]
            )
            drop[r] = len(others) > 0
    keep = ~drop
    return TilePass(dets[keep], tile_of[keep], list(visited))


def _run_inner(
    inner: Any, images: list[NDArray[np.uint8]], det_size: int | None, batch: int = TILE_BATCH
) -> list[Detections]:
    """``inner`` on ``images`` at ``det_size`` when it can be told one (CenterFace), in
    chunks of ``batch``."""
    out: list[Detections] = []
    at = getattr(inner, "detect_at", None)
    for k in range(0, len(images), batch):
        chunk = images[k : k + batch]
        out.extend(at(chunk, det_size) if at is not None else inner(chunk))
    return out


@dataclass
class _Record:
    """What one detected frame left for the scheduling of later frames."""

    tiled: bool
    small: bool  # the full pass saw a face under AUTO_SMALL_FACE (auto's probe)
    visited: frozenset[int]
    found: frozenset[int]  # tiles that found a face


@dataclass
class _Run:
    """Per-run scheduling state (``TiledDetector.start_run`` makes a fresh one)."""

    grid: TileGrid | None = None
    full_scale: float = 1.0
    records: dict[int, _Record] = field(default_factory=dict)
    newest: int = -1
    small_at: int | None = None  # first frame whose full pass showed a small face
    tiled_at: int | None = None  # first tiled frame
    live: bool = False
    reason: str | None = None  # why tiling is on (None: off so far)
    enabled_from: int | None = None
    frames: int = 0
    tiled_frames: int = 0
    full_tilings: int = 0
    tile_visits: int = 0
    tile_only_faces: int = 0


class TiledDetector:
    """Full frame plus scheduled, upscaled tiles, merged (``merge.fuse``).

    Args:
        inner: the detector both passes run on (CenterFace; anything with ``__call__``).
        mode: ``"on"`` or ``"auto"`` (``"off"`` is the plain detector; this class then
            only applies the priors and ``max_face_size``).
        scale: tile upscaling.
        every: each tile is visited at least every ``every`` detector frames.
        max_face_size: drop boxes larger than this (frame pixels, sqrt of the area).
        threshold: the detector's high threshold (auto's probe counts faces above it).
        lag: frames between a result and its use for scheduling (see the module doc).
        detect_every: the pipeline's detect-every-N (rotation counts detector frames).
    """

    def __init__(
        self,
        inner: Any,
        mode: str = "auto",
        scale: float = 2.0,
        every: int = 8,
        max_face_size: float | None = None,
        threshold: float = 0.2,
        lag: int = 2,
        detect_every: int = 1,
    ) -> None:
        self.inner = inner
        self.mode = mode
        self.scale = scale
        self.every = max(1, every)
        self.max_face_size = max_face_size
        self.threshold = threshold
        self.lag = max(1, lag)
        self.detect_every = max(1, detect_every)
        self.score_margin = float(getattr(inner, "score_margin", 1.0))
        self.choice = getattr(inner, "choice", None)
        self.tile_batch = 1 if self.choice is not None and getattr(self.choice, "on_cpu", False) else TILE_BATCH
        self.name = f"{getattr(inner, 'name', 'detector')}+tiles"
        self._lock = threading.Lock()
        self._run = _Run()
        self._warned = False

    # The inner detector's settings and backend, as callers of a plain detector read and
    # set them (live mode fits ``config.det_size`` of the full pass to the frame rate).
    @property
    def config(self) -> Any:
        return getattr(self.inner, "config", None)

    @config.setter
    def config(self, value: Any) -> None:
        self.inner.config = value

    @property
    def backend(self) -> Any:
        return getattr(self.inner, "backend", None)

    # -- run lifecycle -----------------------------------------------------------------
    def start_run(self, live: bool = False) -> None:
        """Forget the previous run's schedule (the pipeline calls this before a run)."""
        with self._lock:
            self._run = _Run(live=live)

    def report(self) -> dict[str, Any]:
        """The run's small-face decision and cost (JSON-ready)."""
        with self._lock:
            r = self._run
            g = r.grid
            return {
                "mode": self.mode,
                "enabled": r.reason is not None,
                "reason": r.reason or self._off_reason(r),
                "from_frame": r.enabled_from,
                "tile_scale": self.scale,
                "tile_every": self.every,
                "grid": None if g is None else f"{g.cols}x{g.rows}",
                "tiles": 0 if g is None else len(g),
                "tile_px": None if g is None else int(g.boxes[0, 2] - g.boxes[0, 0]),
                "frames": r.frames,
                "tiled_frames": r.tiled_frames,
                "full_tilings": r.full_tilings,
                "tile_visits": r.tile_visits,
                "tiles_per_tiled_frame": round(r.tile_visits / r.tiled_frames, 2) if r.tiled_frames else 0.0,
                "faces_found_only_by_tiles": r.tile_only_faces,
                "max_face_size": self.max_face_size,
            }

    def _off_reason(self, r: _Run) -> str:
        if self.mode == "off":
            return "--small-faces off"
        if r.live:
            return "auto is off on live feeds (tiles would exceed the frame budget); --small-faces on forces them"
        return (
            f"auto: frame under {AUTO_LARGE_SIDE}p and no face under {AUTO_SMALL_FACE:g} px "
            f"in the first {AUTO_PROBE_FRAMES} frames"
        )

    # -- detection ---------------------------------------------------------------------
    def __call__(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Independent images (stills, ``eval detect``): every tile of each, when on."""
        return self._detect(images, None)

    def detect_frames(self, images: Sequence[NDArray[np.uint8]], indices: Sequence[int]) -> list[Detections]:
        """Frames ``indices`` of the current run: tiles as scheduled."""
        return self._detect(images, list(indices))

    def _full(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        return list(self.inner(list(images)))

    def _full_scale(self, width: int, height: int) -> float:
        cfg = getattr(self.inner, "config", None)
        if cfg is None:
            return 1.0
        return network_size(width, height, cfg.det_size)[0] / width

    def _detect(self, images: Sequence[NDArray[np.uint8]], indices: list[int] | None) -> list[Detections]:
        if not images:
            return []
        full = self._full(images)
        if len(full) != len(images):
            raise ValueError(f"detector returned {len(full)} results for {len(images)} images")
        plans: list[list[int]] = []
        grids: list[TileGrid | None] = []
        scales: list[float] = []
        for k, (im, dets) in enumerate(zip(images, full, strict=True)):
            h, w = im.shape[:2]
            small = self._has_small(dets)
            if indices is None:
                fs = self._full_scale(w, h)
                on = self.mode == "on" or (self.mode == "auto" and (min(w, h) >= AUTO_LARGE_SIDE or small))
                grid = make_grid(w, h, self.scale, fs) if on else None
                plans.append(list(range(len(grid))) if grid is not None else [])
                grids.append(grid)
                scales.append(fs)
            else:
                grid, plan, fs = self._schedule(indices[k], w, h, small, dets)
                plans.append(plan)
                grids.append(grid)
                scales.append(fs)
        crops: list[NDArray[np.uint8]] = []
        for im, grid, plan in zip(images, grids, plans, strict=True):
            if grid is not None and plan:
                crops.extend(crop_tiles(im, grid, plan))
        tile_out = _run_inner(self.inner, crops, None, self.tile_batch) if crops else []
        if len(tile_out) != len(crops):
            raise ValueError(f"detector returned {len(tile_out)} results for {len(crops)} tiles")
        out: list[Detections] = []
        pos = 0
        for k, (dets, grid, plan) in enumerate(zip(full, grids, plans, strict=True)):
            per_tile = tile_out[pos : pos + len(plan)]
            pos += len(plan)
            if grid is None or not plan:
                merged, only_tiles = self._finish(dets, None)
            else:
                tp = tile_detections(per_tile, grid, plan, face_limit(grid, scales[k]))
                merged, only_tiles = self._finish(dets, tp)
            if indices is not None:
                self._record(indices[k], grid, plan, per_tile, full[k], only_tiles)
            out.append(merged)
        return out

    def _has_small(self, dets: Detections) -> bool:
        if not len(dets):
            return False
        keep = dets.score >= self.threshold * self.score_margin
        size = np.sqrt(np.clip(dets.area[keep], 0, None))
        return bool((size < AUTO_SMALL_FACE).any())

    def _finish(self, full: Detections, tp: TilePass | None) -> tuple[Detections, int]:
        """Merge, then the priors; also how many kept faces only the tiles saw.

        Monotone by construction: the fused score of a face the full pass saw is at
        least its full-pass score (``merge.fuse``), and the priors only judge rows the
        tiles alone saw, so tiling never masks less than the full pass alone would.
        """
        only_tiles = 0
        if tp is None or not len(tp.dets):
            return full[merge.plausible(full, aspect=(0.0, math.inf), max_size=self.max_face_size)], 0
        both = Detections.concat([full, merge.size_prior(tp.dets)])
        passes = np.concatenate([np.zeros(len(full), np.int64), np.ones(len(tp.dets), np.int64)])
        dets, seen = merge.fuse(both, passes, 2)
        keep = merge.plausible(dets, aspect=(0.0, math.inf), max_size=self.max_face_size)
        keep &= (seen != 2) | merge.plausible(dets)  # shape prior: tile-only rows
        dets, seen = dets[keep], seen[keep]
        high = dets.score >= self.threshold * self.score_margin
        only_tiles = int((high & (seen == 2)).sum())
        return dets, only_tiles

    # -- scheduling --------------------------------------------------------------------
    def _schedule(
        self, n: int, w: int, h: int, small: bool, full: Detections
    ) -> tuple[TileGrid | None, list[int], float]:
        with self._lock:
            r = self._run
            if r.grid is None or (r.grid.width, r.grid.height) != (w, h):
                r.full_scale = self._full_scale(w, h)
                r.grid = make_grid(w, h, self.scale, r.full_scale)
                r.records = {}
                r.small_at = r.tiled_at = None
            grid, horizon = r.grid, n - self.lag
            r.frames += 1
            on = self._enabled(r, n, w, h, small, horizon)
            if not on:
                return grid, [], r.full_scale
            if r.tiled_at is None or r.tiled_at > horizon:
                plan = list(range(len(grid)))  # nothing tiled is known yet: every tile
                r.full_tilings += 1
            else:
                plan = self._plan(r, grid, n, horizon, full)
            r.tiled_frames += 1
            r.tile_visits += len(plan)
            return grid, plan, r.full_scale

    def _enabled(self, r: _Run, n: int, w: int, h: int, small: bool, horizon: int) -> bool:
        if self.mode == "off":
            return False
        reason: str | None = None
        if self.mode == "on":
            reason = "--small-faces on"
        elif r.live:
            return False
        elif min(w, h) >= AUTO_LARGE_SIDE:
            reason = f"auto: frame {w}x{h} is {AUTO_LARGE_SIDE}p or larger"
        elif (small and n < AUTO_PROBE_FRAMES) or (r.small_at is not None and r.small_at <= horizon):
            first = n if small and n < AUTO_PROBE_FRAMES else r.small_at
            reason = f"auto: a face under {AUTO_SMALL_FACE:g} px on frame {first}"
        if reason is None:
            return False
        if r.reason is None:
            r.reason, r.enabled_from = reason, n
            level = logging.INFO if self._warned else logging.WARNING
            self._warned = True
            g = r.grid
            log.log(
                level,
                "small faces: tiles on (%s): %s tiles of %d px at %gx, each every %d frames",
                reason,
                f"{g.cols}x{g.rows}" if g else "?",
                int(g.boxes[0, 2] - g.boxes[0, 0]) if g else 0,
                self.scale,
                self.every,
            )
        return True

    def _plan(self, r: _Run, grid: TileGrid, n: int, horizon: int, full: Detections) -> list[int]:
        """Rotation group of this frame, plus hot tiles within the same budget."""
        count = len(grid)
        step = n // self.detect_every
        group = step % self.every
        plan = {t for t in range(count) if t % self.every == group}
        budget = max(1, math.ceil(count / self.every))
        last_visit = np.full(count, -(10**9), np.int64)
        last_found = np.full(count, -(10**9), np.int64)
        for i, rec in r.records.items():
            if i > horizon:
                continue
            for t in rec.visited:
                last_visit[t] = max(last_visit[t], i)
            for t in rec.found:
                last_found[t] = max(last_found[t], i)
        hot = [t for t in range(count) if last_found[t] >= horizon - HOT_MEMORY and t not in plan]
        # Tiles holding a small face the full pass of this very frame half-sees.
        if len(full):
            size = np.sqrt(np.clip(full.area, 0, None))
            cx = (full.xyxy[:, 0] + full.xyxy[:, 2]) / 2
            cy = (full.xyxy[:, 1] + full.xyxy[:, 3]) / 2
            for x, y, s in zip(cx, cy, size, strict=True):
                if s < face_limit(grid, r.full_scale):
                    b = grid.boxes
                    ts = np.flatnonzero((b[:, 0] <= x) & (x < b[:, 2]) & (b[:, 1] <= y) & (y < b[:, 3]))
                    hot.extend(int(t) for t in ts if t not in plan and t not in hot)
        due = [t for t in hot if (step + t) % HOT_EVERY == 0 or last_visit[t] < horizon - HOT_EVERY]
        due.sort(key=lambda t: (int(last_visit[t]), t))
        plan.update(due[:budget])
        return sorted(plan)

    def _record(
        self,
        n: int,
        grid: TileGrid | None,
        plan: list[int],
        per_tile: Sequence[Detections],
        full: Detections,
        only_tiles: int,
    ) -> None:
        floor = self.threshold * self.score_margin
        found = frozenset(t for t, d in zip(plan, per_tile, strict=True) if len(d) and bool((d.score >= floor).any()))
        with self._lock:
            r = self._run
            if grid is None or r.grid is not grid:
                return
            small = self._has_small(full)
            r.records[n] = _Record(bool(plan), small, frozenset(plan), found)
            if small and n < AUTO_PROBE_FRAMES and (r.small_at is None or n < r.small_at):
                r.small_at = n
            if plan and (r.tiled_at is None or n < r.tiled_at):
                r.tiled_at = n
            r.tile_only_faces += only_tiles
            r.newest = max(r.newest, n)
            cutoff = r.newest - 2 * self.lag - HOT_MEMORY - 2 * HOT_EVERY - 8
            if cutoff > 0 and len(r.records) > 4 * (HOT_MEMORY + self.lag):
                for i in [i for i in r.records if i < cutoff]:
                    del r.records[i]


__all__ = [
    "AUTO_LARGE_SIDE",
    "AUTO_PROBE_FRAMES",
    "AUTO_SMALL_FACE",
    "TileGrid",
    "TiledDetector",
    "crop_tiles",
    "make_grid",
    "tile_detections",
]
