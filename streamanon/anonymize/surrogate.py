"""``surrogate``: every face replaced by a photographic composite of nobody, warped onto it.

Per track (``track_started``) one composite of the surrogate bank (``surrogate_bank``: each
the average of k >= 5 different persons warped onto a common shape, checked to be within
neither dlib's 0.6 nor FaceRes's 1%-false-match threshold of any bank person) is drawn from
the run's secret (``AnonymizeConfig.seed``; None = fresh OS entropy each run), never from
the face's pixels: one surrogate per track, unrelated ones between tracks and runs.

Per frame, for every face:

1. The whole product mask (the same ellipse every method replaces) is blurred first: nothing
   raw is left whatever follows.
2. Where the detection is confident (score >= ``PAINT_SCORE``), the face large enough and
   dlib's 68-point fit plausible (it agrees with the detector's five points, as ``generate``
   checks), the fit is smoothed over the track (``generate.LandmarkSmoother``), the inner
   points (brows, eyes, nose, mouth) are pulled ``SHAPE_PULL`` (default: all) of the way
   toward the composite's own shape (the face's geometry carries identity), and the
   composite is warped there piecewise-affinely over the Delaunay triangles of its 78 points
   (68 + forehead, the forehead stretched up to ``FOREHEAD_REACH``, the jaw grown by ``GROW``).
   The composite's forehead and temples are first refilled with its own skin
   (``composite_tile``, ``surrogate_bank.clean_forehead``): its persons' averaged fringes and
   temple hair otherwise show as streaks and as red patches beside the eyes.
3. The rest of the mask (hair, ears, neck, background around the face) is the surroundings
   mirrored in across the mask's edge (``mirror_surroundings``): their own texture continues
   inward, the edge is seamless, and no pixel inside any face mask is read. Under the jaw a
   neck in the painted composite's own (shaded) colour is laid over it (``neck_under``), so
   the collar is not mirrored up to the chin.
4. Focus, colour and light: the composite is blurred to the focus of the surroundings
   (``scene_around``: read outside every face mask only; never sharpened; smoothed along the
   track). Its lightness
   plane (level and light direction) and spread and its chroma median are set to the original
   inner face's (nine numbers of the original; no pixel of it); in dim light its contrast and
   its chroma around that median (eyes, lips) fall with the light, and in surroundings with a
   colour cast its chroma spread is bounded by theirs. The lips' and the eyes' chroma against
   the skin is scaled to the original's (``FEATURES``: three numbers more; the composites'
   own lipstick and blue eyes are not painted on everyone). Luma only for greyscale footage
   (greyscale in, greyscale out).
5. It is blended over the mirrored surroundings per Laplacian-pyramid band through an alpha
   of its eroded hull, inside the product mask only: nothing outside the mask changes.

Steps 2-5 read the original frame only, so the faces of a frame are painted in parallel
threads (``PAINT_THREADS``; OpenCV and numpy release the GIL) and copied into the output in
the rows' order: the output is the one-by-one output.

A coasting row (no detection this frame) of a painted track keeps its surrogate for up to
``COAST_FRAMES`` frames (the last smoothed face moved with the box). Everything else (a small
face, a doubtful detection, a long coast, a fit that fails or disagrees with the detector's
five points, a warp that raises) keeps the blur of step 1 and is counted as a fallback in the
report: no face is painted onto a bag or a shelf that a low-score detection or a stale track
box lands on.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..errors import ConfigError
from ..geometry import similarity
from ..models.faceres import FaceResRecogniser
from ..models.landmarks import landmarker5
from ..models.recognizer import Face
from ..models.store import shared
from ..types import SOURCE_DETECTOR, Detections
from .base import FaceAnonymizer, FrameInfo, TrackStates
from .chips import masked_rows
from .generate import DEFAULT_FPS, LandmarkSmoother, is_grey, plausible
from .mask import FaceRegion, composite, union_mask
from .methods import BlurAnonymizer
from .surrogate_bank import SurrogateBank, age_band, clean_forehead, hull_mask, piecewise_affine, with_forehead

log = logging.getLogger(__name__)

#: Detector confidence under which a face is blurred, not painted (no face on a bag).
PAINT_SCORE = 0.5
#: A coasting row (the tracker's prediction, no detection this frame) is painted with the
#: track's last face moved with the box for this many frames after its last confident
#: detection (a missed frame does not flash a blur); longer coasts get the blur.
COAST_FRAMES = 3
#: Smallest face (px, the box's shorter side) painted: dlib's 68-point fit is unreliable below.
MIN_FACE = 20
#: Share of the way the inner landmarks move toward the composite's own shape (aligned to the
#: face by a similarity: pose, size and roll stay the face's). Measured with ``eval identity``
#: on 104 faces (docs/faces.md, mirrored ring): FaceRes leakage and rank-1: 0 -> 8.7%, 0.359;
#: 0.5 -> 2.9%, 0.165; 0.75 -> 1.0% (the limit), 0.078; 1.0 -> 0%, 0.049 (chance 0.068). The
#: geometry carries identity; expression is the price.
SHAPE_PULL = 1.0
#: A new track's composite is drawn from those at least dlib's same-person distance (0.6, on
#: the bank's tiles) from the composites of the last ``DISTINCT_RECENT`` tracks drawn (live or
#: ended), so that two people in view do not get one face; where none is that far (a crowd, a
#: narrow ``--keep`` pool), from the quarter farthest from them (counted: ``distinct-unmet``).
#: Banks without dlib vectors (``surrogate_bank describe``) draw from the whole pool.
DISTINCT_RECENT = 8
DISTINCT_AT = 0.6
#: With ``--keep`` (composites of the face's own gender and age band: measured closer to the
#: person, docs/faces.md) a track's first painted face is checked against its original with
#: dlib's recogniser (the same 5 points, fitted on the original, align both, as ``eval
#: identity`` does): painted within this distance (dlib's same-person 0.6 plus a margin) it is
#: blurred and the track draws another composite, up to ``VET_TRIES`` composites; then the
#: track is blurred (counted: ``too-close``). dlib is the recogniser the check uses, so dlib's
#: leakage is 0 by construction; FaceRes (``eval identity --also faceres``) is the independent
#: measure. Not without ``--keep``: there leakage measured 0 under both, and on dim, defocused
#: 640x360 footage dlib puts most painted faces within 0.65 of their originals (18 of 23
#: tracks on the Hamilton clip) as it does any two such faces: the check would blur them.
VET_DISTANCE = 0.65
VET_TRIES = 3
#: Inner points (brows, eyes, nose, mouth) of the 68; the jaw and forehead keep the head's outline.
INNER = np.arange(17, 68)
#: The alpha's soft edge, as a share of the face size (the hull is eroded by as much first).
EDGE = 0.06
#: The outline (jaw, forehead) is warped this share of the face size outward first: the
#: composite's own outline is an average of k outlines (soft), and the erosion cuts it off.
GROW = 0.04
#: The composite's forehead (``FOREHEAD_LIFT`` of the brow-to-chin height above the brows in
#: the bank) is stretched up to this share on the face: up to a typical hairline, so the skin
#: reaches the hair that the ring mirrors in from above the mask (0.28: a bare band between).
FOREHEAD_REACH = 0.45
#: The outline points grown: the jaw (the forehead's top is the hairline: growing it painted
#: skin over hair).
OUTLINE = np.arange(0, 17)
#: Clip of the lightness spread ratio of the colour transfer (the original's spread holds
#: shadows and hair the composite lacks: a wider clip blew the composite's highlights out;
#: a lower lower clip, 0.4, flattened a portrait's features: docs/faces.md, *Forehead and
#: temples*).
STD_RATIO = (0.67, 1.33)
#: The focus match (``scene_around``, ``match_focus``) compares the surroundings' and the
#: composite's ``_sharpest`` (gradient energy after Gaussian blurs of 1 and 2 px) at the work
#: scale 1 / ``a``, ``a`` = this share of the face size rounded to whole px (at least 1): finer
#: than that, compression blocks and the 8-bit steps of dark footage read as sharp edges.
FOCUS_SCALE = 0.02
#: Largest blur (work px) the focus match adds, and its bisection's steps.
FOCUS_MAX = 4.0
FOCUS_STEPS = 4
#: Surroundings whose step-edge blur (``_edge_sigma``, work px) is under this are sharp: the
#: composite is left as it is (matched to them, its eyes and mouth, finer than edges, were
#: blurred in sharp photos).
FOCUS_MIN = 0.5
#: Share of the way a track's blur moves toward each frame's measure (the measure alone varied
#: 2.2-3.2 px from frame to frame on a Hamilton audience face).
FOCUS_SMOOTH = 0.3
#: Tile side (work px) of the surroundings' sharpness, and the percentile of the tiles' ratios
#: taken (the sharpest content near the face: a face in focus before a blurred background).
FOCUS_TILE = 8
FOCUS_SHARPEST = 90
#: Smallest mean squared gradient (Sobel units, after the 1 px blur) of the surroundings'
#: strongest tile that says anything about their focus (a flat wall does not: the composite
#: keeps its own).
FOCUS_FLAT = 1.0
#: Lightness level (Lab L, 0-255; luma for greyscale) under which a face is taken to be in dim
#: light (64: L* 25, under the darkest well-lit skin): its lightness spread's lower clip
#: (``STD_RATIO``) and the composite's chroma around its median fall in proportion to the
#: level (a surface's chroma falls with its lightness). On 30 well-lit identity photos the
#: faces' level was >= 84; on the dark Hamilton clip 6-11 (docs/faces.md, *Dark, defocused footage*).
DIM_LEVEL = 64.0
#: In surroundings with a colour cast the composite's chroma spread is kept within this many
#: times theirs (a warm, washed-out scene gets no red lips or blue eyes): on 20 colour identity
#: photos the real face's spread was at most 2.06 times its surroundings'.
SCENE_CHROMA = 2.0
#: A colour cast (Lab a*b* distance of the surroundings' median chroma from grey) from which
#: ``SCENE_CHROMA`` applies in full; under it the limit grows by up to ``CHROMA_FREE`` (on
#: grey: more than any composite's spread, ~12).
CAST = 8.0
CHROMA_FREE = 64.0
#: Share of the pixels that sets a chroma spread: the distance from the median chroma under
#: which this share of the pixels lies (the eyes and lips are ~10-15% of the inner face).
CHROMA_SHARE = 90
#: Windows up to this side (px) get the mirror's geometry at full size, larger ones at half
#: size (the pixels are sampled at full size). Half size is the coarsest that showed no seam;
#: a scale between the two cost up to 4x the geometry of half size for no visible gain
#: (docs/faces.md, Speed) and kept the narrowed window (``_narrow``) from applying.
MIRROR_WORK = 160
#: A mirror point whose lightness (0-255, a little blurred: ``MIRROR_GUIDE``) differs from the
#: edge point's by more than this is pulled back toward the edge: the band just outside the
#: mask (a head's hair) is mirrored in, not what lies beyond it (the wall behind the head).
#: None: the plain mirror. Chosen by ``benchmarks/probe_ring.py`` (docs/faces.md, *The ring*).
MIRROR_SAME: int | None = 24
#: The blur (px, full size; at least 0.03 of the mask's half side) of the colours that test compares.
MIRROR_GUIDE = 2.0
#: Depth (share of half the mask's side) over which the mirrored surroundings give way to
#: the edge's own colour spread inward.
MIRROR_DEPTH = 0.35
#: Laplacian-pyramid levels of the blend: as many as leave the face ~``BLEND_COARSE`` px at the
#: coarsest level, at most ``BLEND_LEVELS`` (more levels spread the face's tone into the ring).
BLEND_LEVELS = 3
BLEND_COARSE = 48.0


def _narrow(
    window: tuple[int, int, int, int], region: FaceRegion, faces: NDArray[np.bool_], f: float, reach: float
) -> tuple[int, int, int, int]:
    """The part of the mirror's ``window`` that its output reads, where that gives the same
    result: pixels deeper than ``reach`` (px) show the edge's colour alone, and a face alone
    in its window has its edge inside the region, so the mirrors of the shallower pixels lie
    within ``reach`` around it. Only where no other face's mask comes that near, and where the
    work grid stays the same (full size, or exactly half with even offsets and sides);
    otherwise ``window`` itself."""
    ex0, ey0, ex1, ey1 = window
    x0, y0, x1, y1 = region.roi
    if f not in (0.5, 1.0) or (f == 0.5 and ((ex1 - ex0) % 2 or (ey1 - ey0) % 2)):
        return window
    near = int(np.ceil(reach)) + 2
    step = round(1 / f)  # the narrowed window keeps the grid: offsets in whole work pixels
    nx0, ny0 = max(ex0, x0 - near), max(ey0, y0 - near)
    nx0, ny0 = nx0 - (nx0 - ex0) % step, ny0 - (ny0 - ey0) % step
    nx1, ny1 = min(ex1, x1 + near), min(ey1, y1 + near)
    nx1, ny1 = nx1 + (ex1 - nx1) % step, ny1 + (ey1 - ny1) % step
    others = faces[ny0:ny1, nx0:nx1].copy()
    others[y0 - ny0 : y1 - ny0, x0 - nx0 : x1 - nx0] &= region.mask == 0
    return window if others.any() else (nx0, ny0, nx1, ny1)


def _even(a: int, b: int, n: int) -> tuple[int, int]:
    """[a, b) grown by a pixel inside [0, n) where its length is odd (and it can grow)."""
    if (b - a) % 2 == 0:
        return a, b
    return (a, b + 1) if b < n else (a - 1, b) if a > 0 else (a, b)


def mirror_surroundings(
    image: NDArray[np.uint8], faces: NDArray[np.bool_], region: FaceRegion, full: bool = False
) -> NDArray[np.uint8]:
    """Pixels for ``region``'s mask mirrored in from around it: each pixel takes the pixel
    as far *outside* the nearest point of the face masks (``faces``) as it lies inside, so
    the hair, ears, collar and background around the mask continue into it with their own
    texture and the mask's edge is seamless (the value at the edge is the edge's). A mirror
    point that falls off the frame or inside a face mask is pulled back toward the edge
    point. Deeper in, the edge's own colour, spread inward and softened, takes over.

    The geometry (nearest edge point, depth) is computed at full size in windows up to
    ``MIRROR_WORK`` px across, at half size in larger ones, and scaled up; the pixels are
    sampled at full size. No pixel inside any face mask is read: they are replaced by the
    nearest outside pixel of a copy in which they were zeroed before any resize, and a small
    pixel that any of them touched counts as inside.

    ``full``: the window spans half the region's side around it whatever the faces (what a
    face alone in its window is computed on a narrower window to equal)."""
    x0, y0, x1, y1 = region.roi
    win = _MirrorWindow.around(image.shape, region, faces, full)
    ex0, ey0, ex1, ey1 = win.box
    inside = faces[ey0:ey1, ex0:ex1]
    if inside.all():  # the faces fill the window: nothing around them to mirror
        return np.full((y1 - y0, x1 - x0, 3), 128, np.uint8)
    wh, ww = inside.shape
    sh, sw = max(2, round(wh * win.f)), max(2, round(ww * win.f))
    outside = (~inside).view(np.uint8)
    pixels = np.zeros((wh, ww, 3), np.uint8)
    cv2.copyTo(image[ey0:ey1, ex0:ex1], outside, pixels)  # no face pixel reaches what follows
    small = cv2.resize(pixels, (sw, sh), interpolation=cv2.INTER_AREA)
    touched = cv2.resize(inside.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    if touched.all():
        return np.full((y1 - y0, x1 - x0, 3), 128, np.uint8)
    geo, edge_small = _mirror_geometry(small, touched, win.reach * win.f, win.guide * win.f)
    return _mirror_compose(pixels, inside, geo, edge_small, win, region)


@dataclass(frozen=True)
class _MirrorWindow:
    """Where ``mirror_surroundings`` works: ``box`` (the region and ``pad`` around it, clipped
    to the frame, narrowed where that gives the same result), ``f`` the geometry's scale (1, or
    0.5 for windows over ``MIRROR_WORK`` px), ``ring`` the depth where the edge's colour
    takes over, ``reach`` how deep (px) a pixel's mirror reaches the output, ``guide`` the blur
    (px) of the colours ``MIRROR_SAME`` compares."""

    box: tuple[int, int, int, int]
    f: float
    pad: int
    ring: float
    reach: float
    guide: float

    @staticmethod
    def around(shape: tuple[int, ...], region: FaceRegion, faces: NDArray[np.bool_], full: bool) -> _MirrorWindow:
        h, w = shape[:2]
        x0, y0, x1, y1 = region.roi
        pad = max(2, max(x1 - x0, y1 - y0) // 2 + 1)
        box = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
        # full or half size: a coarser edge shows a seam
        f = 1.0 if max(box[2] - box[0], box[3] - box[1]) <= MIRROR_WORK else 0.5
        if f == 0.5:  # even sides (a pixel more where the frame allows): the narrowed window keeps the grid
            (bx0, bx1), (by0, by1) = _even(box[0], box[2], w), _even(box[1], box[3], h)
            box = bx0, by0, bx1, by1
        ring = MIRROR_DEPTH * pad
        # ``ring``, the blurs and the map's smoothing below; deeper, the edge's colour alone is shown
        reach = ring + 4 * max(1.0, 0.03 * pad) + 2 + 6 / f
        guide = max(MIRROR_GUIDE, 0.03 * pad)
        if not full:  # the mirror points' colours are compared blurred by ``guide``: its reach too
            box = _narrow(box, region, faces, f, reach + 3 * guide + 2 / f)
        return _MirrorWindow(box, f, pad, ring, reach, guide)


def _mirror_geometry(
    small: NDArray[Any], touched: NDArray[np.bool_], reach: float, guide_sigma: float
) -> tuple[NDArray[Any], NDArray[Any]]:
    """At the work scale: per pixel its mirror point (y, x) and depth, smoothed, as one
    3-channel map; and the nearest outside pixel's colour (outside pixels only). A mirror
    point is pulled back toward the edge where its colour (blurred by ``guide_sigma``) is
    more than ``MIRROR_SAME`` from the edge point's."""
    from scipy.ndimage import distance_transform_edt

    sh, sw = touched.shape
    depth, (ny, nx) = distance_transform_edt(touched, return_indices=True)
    # per small pixel: its nearest outside pixel, and its mirror through it (pulled toward the
    # edge until it is outside), in small coordinates; deeper than ``reach`` the map stays the
    # nearest edge point (never shown)
    sy, sx = ny.astype(np.float32), nx.astype(np.float32)
    py, px = np.nonzero(touched & (depth <= reach))
    qy_, qx_ = ny[py, px], nx[py, px]
    my_, mx_ = qy_.astype(np.float32), qx_.astype(np.float32)
    todo = np.ones(len(py), np.bool_)
    edge_small = cv2.remap(small, nx.astype(np.float32), ny.astype(np.float32), cv2.INTER_NEAREST)
    if MIRROR_SAME is not None:
        # lightness compared a little blurred (a fine texture is no boundary), the faces
        # filled with the nearest outside colour; in uint8 (OpenCV's fixed point: the same
        # values wherever the window starts)
        grey = cv2.cvtColor(edge_small, cv2.COLOR_RGB2GRAY)
        guide = cv2.GaussianBlur(grey, (0, 0), guide_sigma).astype(np.int16)
        at_edge = guide[qy_, qx_]
    for t in (1.0, 0.75, 0.5, 0.25):
        # halves rounded up, not to even: the same point wherever the window starts
        my = np.floor(qy_ + t * (qy_ - py) + 0.5).astype(np.intp)
        mx = np.floor(qx_ + t * (qx_ - px) + 0.5).astype(np.intp)
        ok = todo & (my >= 0) & (my < sh) & (mx >= 0) & (mx < sw)
        ok[ok] = ~touched[my[ok], mx[ok]]
        if MIRROR_SAME is not None:  # not across a boundary beyond the edge (hair, then wall)
            far = np.abs(guide[my[ok], mx[ok]] - at_edge[ok]) > MIRROR_SAME
            ok[np.flatnonzero(ok)[far]] = False
        my_[ok], mx_[ok] = my[ok], mx[ok]
        todo &= ~ok
    sy[py, px], sx[py, px] = my_, mx_
    # the nearest edge point jumps between neighbours: the map is smoothed (no staircase)
    geo = cv2.merge([cv2.GaussianBlur(sy, (0, 0), 1.0), cv2.GaussianBlur(sx, (0, 0), 1.0), depth.astype(np.float32)])
    return geo, edge_small


def _mirror_compose(
    pixels: NDArray[np.uint8],
    inside: NDArray[np.bool_],
    geo: NDArray[Any],
    edge_small: NDArray[Any],
    win: _MirrorWindow,
    region: FaceRegion,
) -> NDArray[np.uint8]:
    """The region's pixels at full size: the window's outside ``pixels`` sampled through the
    mirror map ``geo``, softened with depth, then the edge's colour taking over."""
    x0, y0, x1, y1 = region.roi
    ex0, ey0 = win.box[:2]
    wh, ww = inside.shape
    sh, sw = edge_small.shape[:2]
    fy, fx, f = sh / wh, sw / ww, win.f
    # up to full size over the region (small -> window pixel centres)
    rw, rh = x1 - x0, y1 - y0
    gx0, gy0 = x0 - ex0, y0 - ey0
    qx = ((np.arange(rw, dtype=np.float32) + gx0 + 0.5) * fx - 0.5)[None, :].repeat(rh, 0)
    qy = ((np.arange(rh, dtype=np.float32) + gy0 + 0.5) * fy - 0.5)[:, None].repeat(rw, 1)
    # the edge colour is softened (uint8: rounding only), on the part the region samples
    cx0, cy0 = max(0, int(qx[0, 0])), max(0, int(qy[0, 0]))
    cx1, cy1 = min(sw, int(qx[0, -1]) + 2), min(sh, int(qy[-1, 0]) + 2)
    edge_soft = _blur_part(edge_small, max(0.8, 0.06 * win.pad * f), (cx0, cy0, cx1, cy1))
    geo_up = cv2.remap(geo, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    map_y = (geo_up[:, :, 0] + 0.5) / fy - 0.5
    map_x = (geo_up[:, :, 1] + 0.5) / fx - 0.5
    d = geo_up[:, :, 2] / f
    # face pixels: the nearest outside colour (from the zeroed copy): a smoothed map point can
    # land inside, and bilinear sampling at the edge reads the pixel beyond it
    clean = pixels
    edge_full = cv2.resize(edge_small, (ww, wh), interpolation=cv2.INTER_LINEAR)
    cv2.copyTo(edge_full, inside.view(np.uint8), clean)
    mirrored = cv2.remap(clean, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    edge = cv2.remap(edge_soft, qx - cx0, qy - cy0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    soft = cv2.GaussianBlur(mirrored, (0, 0), max(1.0, 0.03 * win.pad))
    # with a = depth / ring (0 at the edge, 1 from the ring in): the mirrored pixels softened
    # with depth, then the edge's colour taking over
    a = np.clip(d / max(1.0, win.ring), 0.0, 1.0)
    b = np.float32(1) - a
    mixed = cv2.blendLinear(soft, mirrored, a, b)
    out: NDArray[np.uint8] = np.asarray(cv2.blendLinear(mixed, edge, b, a), np.uint8)
    return out


def _blur_part(image: NDArray[Any], sigma: float, part: tuple[int, int, int, int]) -> NDArray[Any]:
    """``cv2.GaussianBlur(image, (0, 0), sigma)`` cut to ``part`` (x0, y0, x1, y1), computed on
    ``part`` and the kernel's reach around it only: the same pixels (the image's own border
    where ``part`` meets it, real pixels elsewhere)."""
    x0, y0, x1, y1 = part
    h, w = image.shape[:2]
    r = int(np.ceil(4 * sigma)) + 2  # OpenCV's kernel: radius 3 sigma (uint8) or 4 sigma
    bx0, by0, bx1, by1 = max(0, x0 - r), max(0, y0 - r), min(w, x1 + r), min(h, y1 + r)
    soft = cv2.GaussianBlur(image[by0:by1, bx0:bx1], (0, 0), sigma)
    return np.asarray(soft[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0])


def pyramid_blend(
    front: NDArray[np.uint8], back: NDArray[np.uint8], alpha: NDArray[Any], levels: int
) -> NDArray[np.uint8]:
    """``front`` over ``back`` through ``alpha`` (0..1), blended per Laplacian-pyramid band
    (Burt & Adelson): low frequencies (light, tone) cross over a wide seam, fine detail over
    a narrow one, so neither a visible edge nor a ghost of the other image remains."""
    # the pyramids are linear: blending front's and back's bands through alpha is back plus
    # the bands of their difference through alpha (one pyramid instead of two)
    b = back.astype(np.float32)
    gd: list[NDArray[Any]] = [front.astype(np.float32) - b]
    ga: list[NDArray[Any]] = [alpha.astype(np.float32)]
    for _ in range(levels):
        if min(gd[-1].shape[:2]) < 4:
            break
        gd.append(cv2.pyrDown(gd[-1]))
        ga.append(cv2.pyrDown(ga[-1]))
    ga = [g[:, :, None] for g in ga]  # one channel, broadcast over the colours
    out = gd[-1] * ga[-1]
    for i in range(len(gd) - 2, -1, -1):
        size = (gd[i].shape[1], gd[i].shape[0])
        out = cv2.pyrUp(out, dstsize=size) + (gd[i] - cv2.pyrUp(gd[i + 1], dstsize=size)) * ga[i]
    out += b
    res: NDArray[np.uint8] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return res


class Attributes(Protocol):
    """Gender (``"male"``/``"female"``) and age band (``surrogate_bank.AGE_BANDS``) of the
    face in ``box`` (``--keep``)."""

    def __call__(self, image: NDArray[np.uint8], box: NDArray[np.float32]) -> tuple[str, str]: ...


class FaceResAttributes:
    """``Attributes`` by FaceRes (``models.faceres``) on dlib's five points fitted in the box."""

    def __init__(self) -> None:
        self._five = landmarker5()
        self._faceres = shared("faceres", (), FaceResRecogniser)

    def __call__(self, image: NDArray[np.uint8], box: NDArray[np.float32]) -> tuple[str, str]:
        b = np.asarray(box, np.float32)
        five = self._five(image, b[None])[0]
        a = self._faceres.analyse(image, [Face(b, five)])[0]
        return a.gender, age_band(a.age)


@dataclass
class Focus:
    """The blur (px, ``match_focus``) a track's composite got last frame; None before its first."""

    blur: float | None = None


@dataclass
class _Track:
    index: int | None  # None until drawn (``--keep``: at the track's first paintable face)
    first: int
    attributes: tuple[str, str] | None = None
    smoother: LandmarkSmoother = field(default_factory=LandmarkSmoother)
    served: Counter[str] = field(default_factory=Counter)
    focus: Focus = field(default_factory=Focus)
    vetted: bool = False  # its composite passed the check against its original
    refused: set[int] = field(default_factory=set)  # composites that came too close to it


def pulled(points68: NDArray[np.float32], shape: NDArray[np.float32], pull: float) -> NDArray[np.float32]:
    """``points68`` with the inner points moved ``pull`` of the way toward ``shape`` (68+ points,
    similarity-aligned onto ``points68`` first)."""
    p = np.asarray(points68, np.float64)
    if pull <= 0:
        return p.astype(np.float32)
    m = similarity(shape[:68].astype(np.float32), p.astype(np.float32))
    s = shape[:68].astype(np.float64) @ m[:, :2].T + m[:, 2]
    out = p.copy()
    out[INNER] = (1 - pull) * p[INNER] + pull * s[INNER]
    return out.astype(np.float32)


def _centre_spread(x: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Median and inter-quartile range per channel: teeth, eye whites and dark nostrils are a
    minority of a face and should not set its tone (mean/std did: dark faces came out light)."""
    q25, q50, q75 = np.percentile(x, (25, 50, 75), axis=0)
    return np.asarray(q50, np.float64), np.asarray(q75 - q25, np.float64)


def _plane(x: NDArray[Any], ys: NDArray[Any], xs: NDArray[Any]) -> NDArray[np.float64]:
    """Least-squares ``a + b*x + c*y`` through the values ``x`` at (``xs``, ``ys``)."""
    design = np.c_[np.ones(len(xs)), xs, ys]
    coef, *_ = np.linalg.lstsq(design, np.asarray(x, np.float64), rcond=None)
    return np.asarray(coef, np.float64)


#: How far (work px) the 2 px blur (OpenCV's kernel: 4 sigma) and the Sobel of the sharpness
#: ratio read around a pixel, and one more.
_REACH = 10


@dataclass(frozen=True)
class Scene:
    """What ``paint`` reads of the surroundings of a face (outside every face mask only):
    ``sharpness`` their ``_sharpest`` ratio at the work scale (None: too flat or too little
    of them to say), ``chroma`` the largest chroma spread of a face in them (``_chroma_limit``;
    None: too little of them)."""

    sharpness: float | None
    chroma: float | None


def _shrink(image: NDArray[Any], a: int) -> NDArray[Any]:
    """``image`` at the work scale 1 / ``a``: means of whole ``a`` x ``a`` blocks (a partial
    block at the right and bottom is dropped)."""
    if a == 1:
        return image
    h, w = image.shape[0] // a, image.shape[1] // a
    return np.asarray(cv2.resize(image[: h * a, : w * a], (max(1, w), max(1, h)), interpolation=cv2.INTER_AREA))


def _blocks(mask: NDArray[np.bool_], a: int, every: bool) -> NDArray[np.bool_]:
    """``mask`` on ``_shrink``'s blocks: a block is set where every (``every``) or any of its
    pixels is."""
    if a == 1:
        return mask
    h, w = mask.shape[0] // a, mask.shape[1] // a
    # a block's min (every) or max (any): erode or dilate by it, anchored at its first pixel
    pool = cv2.erode if every else cv2.dilate
    pooled = pool(np.ascontiguousarray(mask[: h * a, : w * a]).view(np.uint8), np.ones((a, a), np.uint8), anchor=(0, 0))
    return np.asarray(pooled[::a, ::a] > 0)


def _chroma_limit(ab: NDArray[np.float32]) -> float:
    """The largest chroma spread a face gets in surroundings of chroma ``ab`` (n, 2; Lab
    uint8): ``SCENE_CHROMA`` times theirs (their distance from the median under which
    ``CHROMA_SHARE`` % lie) where they have a colour cast (their median at least ``CAST``
    from grey), plus up to ``CHROMA_FREE`` as the cast fades (a grey wall or a flat border
    says nothing of the light: no face is held back by them)."""
    median = np.median(ab, axis=0)
    spread = float(np.percentile(np.linalg.norm(ab - median, axis=1), CHROMA_SHARE))
    cast = float(np.hypot(*(median - 128.0)))
    return SCENE_CHROMA * spread + CHROMA_FREE * max(0.0, 1.0 - cast / CAST)


def _core(inside: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Where the sharpness ratio's blurs read ``inside`` pixels only."""
    k = 2 * _REACH + 1
    return np.asarray(cv2.erode(inside.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))) > 0)


def scene_around(image: NDArray[np.uint8], faces: NDArray[np.bool_], region: FaceRegion, a: int) -> Scene:
    """``Scene`` of the window of half the region's side around it, at the work scale 1 / ``a``
    (``FOCUS_SCALE``). The face masks' pixels are zeroed before anything reads the window (a
    shrunk pixel that any of them touched counts as inside), and the sharpness is measured only
    where the blurs reach no such pixel: no pixel inside any face mask is read."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = region.roi
    pad = max(2, max(x1 - x0, y1 - y0) // 2 + 1)
    bx0, by0, bx1, by1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    inside = faces[by0:by1, bx0:bx1]
    pixels = np.zeros((by1 - by0, bx1 - bx0, 3), np.uint8)
    cv2.copyTo(image[by0:by1, bx0:bx1], (~inside).view(np.uint8), pixels)  # no face pixel reaches what follows
    outside = ~_blocks(inside, a, every=False)
    n = int(np.count_nonzero(outside))
    if n < 64:
        return Scene(None, None)
    small = _shrink(pixels, a)
    step = max(1, int(np.sqrt(n / 1024)))  # a sample of ~1024 pixels sets the chroma
    lab = cv2.cvtColor(np.ascontiguousarray(small[::step, ::step]), cv2.COLOR_RGB2LAB)
    chroma = _chroma_limit(lab[outside[::step, ::step]][:, 1:].astype(np.float32))
    valid = _core(outside)
    if np.count_nonzero(valid) < 64:
        return Scene(None, chroma)
    return Scene(_sharpest(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32), valid), chroma)


def _energy_map(grey: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """Squared Sobel gradient of ``grey`` after a Gaussian blur of ``sigma``."""
    b = cv2.GaussianBlur(grey, (0, 0), sigma)
    gx, gy = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(gx * gx + gy * gy, np.float32)


def _sharpest(grey: NDArray[np.float32], valid: NDArray[np.bool_], s: float = 0.0) -> float | None:
    """How sharp the sharpest content of ``grey`` (blurred by a further ``s``) over ``valid``
    is: per ``FOCUS_TILE`` tile (mostly ``valid``, with at least a quarter of the strongest
    tile's energy after the 1 px blur) the ratio of the gradient energy after a 1 px Gaussian
    to that after 2 px (a step edge blurred by sigma ``t``: sqrt((t^2 + 4) / (t^2 + 1)), 2
    when sharp, more for finer detail, toward 1 when blurred), and of the tiles' ratios the
    ``FOCUS_SHARPEST`` percentile. A face in focus before a blurred background has sharp hair, ears or collar
    beside it; in a scene out of focus all around it every tile is soft. None: too flat to
    say (``FOCUS_FLAT``)."""
    h, w = grey.shape
    t = FOCUS_TILE
    th, tw = h // t, w // t
    if th == 0 or tw == 0:
        return None
    m = valid[: th * t, : tw * t].astype(np.float32)

    def tiles(x: NDArray[np.float32]) -> NDArray[np.float32]:  # per-tile means
        return np.asarray(cv2.resize(x, (tw, th), interpolation=cv2.INTER_AREA), np.float32)

    e1, e2 = (tiles(_energy_map(grey, float(np.hypot(s, b)))[: th * t, : tw * t] * m) for b in (1.0, 2.0))
    share = tiles(m)
    ok = (share >= 0.5) & (e2 > 0)
    if not ok.any() or float((e1[ok] / share[ok]).max()) < FOCUS_FLAT:
        return None
    # chosen by the 1 px energy: a flat tile beside an edge has energy after the 2 px blur only
    ok &= e1 >= 0.25 * e1[ok].max()
    return float(max(1.0, np.percentile(e1[ok] / e2[ok], FOCUS_SHARPEST)))


def _edge_sigma(ratio: float) -> float:
    """The blur (work px) of a step edge whose ``_sharpest`` ratio is ``ratio`` (0 at >= 2)."""
    r2 = ratio * ratio
    return float(np.sqrt((4.0 - r2) / max(r2 - 1.0, 1e-6))) if r2 < 4.0 else 0.0


def focus_sigma(grey: NDArray[np.float32], valid: NDArray[np.bool_], target: float) -> float:
    """The Gaussian sigma (work px, up to ``FOCUS_MAX``) that brings ``grey``'s ``_sharpest``
    over ``valid`` down to ``target``: 0 where it is already as soft (never sharpened). The
    step edges' answer first, then ``FOCUS_STEPS`` bisections of its bracket (the ratio falls
    with the blur; a face's eyes and mouth are finer than edges)."""
    own = _sharpest(grey, valid)
    if own is None or own <= target:
        return 0.0

    def sharper(s: float) -> bool:
        r = _sharpest(grey, valid, s)
        return r is not None and r > target

    guess = float(np.clip(np.sqrt(max(_edge_sigma(target) ** 2 - _edge_sigma(own) ** 2, 0.0)), 0.25, FOCUS_MAX))
    lo, hi = (guess, FOCUS_MAX) if sharper(guess) else (0.0, guess)
    for _ in range(FOCUS_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sharper(mid) else (lo, mid)
    return (lo + hi) / 2


def match_focus(
    face: NDArray[np.uint8], covered: NDArray[np.bool_], scene: Scene, a: int, prior: float | None = None
) -> tuple[NDArray[np.uint8], float]:
    """``face`` (covering ``covered``) blurred to the ``scene``'s focus: by the Gaussian that
    brings its sharpness ratio (over its covered core, at the work scale 1 / ``a``) to the
    scene's; never sharpened. ``prior``: the blur the face's track got last frame; the blur
    moves ``FOCUS_SMOOTH`` of the way from it to this frame's. Blurred within ``covered``
    only (normalised: nothing outside it bleeds in). Returns the face and the sigma (px)."""
    sigma = _focus_blur(face, covered, scene, a)
    if prior is not None:
        sigma = prior + FOCUS_SMOOTH * (sigma - prior)
    if sigma < 0.3:  # under a third of a pixel: the same picture
        return face, sigma
    soft = np.clip(_spread_in(face.astype(np.float32), covered, sigma) + 0.5, 0, 255).astype(np.uint8)
    return np.where(covered[:, :, None], soft, face), sigma


def _focus_blur(face: NDArray[np.uint8], covered: NDArray[np.bool_], scene: Scene, a: int) -> float:
    """The sigma (px) ``match_focus`` measures for this frame alone (0: none)."""
    if scene.sharpness is None or _edge_sigma(scene.sharpness) < FOCUS_MIN:
        return 0.0
    full = _blocks(covered, a, every=True)
    core = _core(full)
    if np.count_nonzero(core) < 64:
        return 0.0
    grey = cv2.cvtColor(_shrink(face, a), cv2.COLOR_RGB2GRAY).astype(np.float32)
    # around the composite its own colours, spread out: the further blurs of the bisection
    # read no step to whatever the warp left outside it
    grey = np.where(full, grey, _spread_in(grey, full, FOCUS_MAX))
    return a * focus_sigma(grey, core, scene.sharpness)


#: The features whose colour against the skin follows the original's, as (polygon, hole) of
#: dlib's 68 points: the lips (the outer lip line less the inner one: an open mouth's teeth
#: are not lip) and the eyes. The composites are averages of made-up CelebA-HQ portraits:
#: their own lips and eyes painted lipstick and blue eyes on every face, a man's included.
FEATURES = ((np.arange(48, 60), np.arange(60, 68)), (np.arange(36, 42), None), (np.arange(42, 48), None))
#: Pixels a feature needs in both faces for its colour to be matched (else left as it is).
FEATURE_MIN = 6
#: The feature's edge is feathered over this share of the face's size.
FEATURE_FEATHER = 0.02
#: The most a feature's chroma against the skin is stretched (an original with stronger
#: lipstick than the composite's); it is lowered without limit.
FEATURE_GAIN = 1.5


def feature_masks(points68: NDArray[Any], origin: tuple[int, int], shape: tuple[int, int]) -> list[NDArray[np.bool_]]:
    """``FEATURES``' regions of ``points68`` (frame coordinates) in a ``shape`` ROI at ``origin``."""
    masks = []
    for outer, hole in FEATURES:
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.round(points68[outer] - origin).astype(np.int32)], 1)
        if hole is not None:
            cv2.fillPoly(m, [np.round(points68[hole] - origin).astype(np.int32)], 0)
        masks.append(m > 0)
    return masks


def _match_features(
    ab: NDArray[np.uint8],
    t: NDArray[Any],
    inside: NDArray[np.bool_],
    features: tuple[list[NDArray[np.bool_]], list[NDArray[np.bool_]]],
    size: float,
) -> NDArray[np.uint8]:
    """``ab`` (the composite's a, b channels, already matched) with each feature's chroma
    against the skin scaled to the original's (``t``, Lab): how far the feature's median lies
    from the skin's median, one number of the original a feature, no pixel of it. The scale
    applies to each pixel's own distance from the skin's colour, feathered at the feature's
    edge, so the skin around a feature keeps its colour. ``features``: the features' masks in
    the composite and in the original (``feature_masks``)."""
    mine, theirs = features
    skin_f = inside & ~np.logical_or.reduce(mine)
    skin_t = inside & ~np.logical_or.reduce(theirs)
    if skin_f.sum() < 16 or skin_t.sum() < 16:
        return ab
    sf = _median_at(ab, skin_f)
    st = _median_at(t, skin_t)[1:]
    out: NDArray[np.uint8] | None = None
    sigma = max(0.5, FEATURE_FEATHER * size)
    pad = int(np.ceil(3 * sigma)) + 1
    h, w = ab.shape[:2]
    for mf, mt in zip(mine, theirs, strict=True):
        if mf.sum() < FEATURE_MIN or mt.sum() < FEATURE_MIN:
            continue
        dc = float(np.linalg.norm(_median_at(ab, mf) - sf))
        dt = float(np.linalg.norm(_median_at(t, mt)[1:] - st))
        gain = min(FEATURE_GAIN, dt / max(dc, 1.0))
        ys, xs = np.nonzero(mf)  # the feature's box and its feather: the work stays small
        y0, y1 = max(0, int(ys.min()) - pad), min(h, int(ys.max()) + pad + 1)
        x0, x1 = max(0, int(xs.min()) - pad), min(w, int(xs.max()) + pad + 1)
        m = mf[y0:y1, x0:x1]
        # the whole feature, feathered outward (a thin lip is narrower than the feather)
        weight = np.maximum(m, np.clip(cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma) * 2.0, 0.0, 1.0))
        if out is None:
            out = ab.copy()
        away = ab[y0:y1, x0:x1].astype(np.float32) - sf  # each pixel's chroma against the skin
        part = out[y0:y1, x0:x1].astype(np.float32) + (weight * np.float32(gain - 1.0))[:, :, None] * away
        out[y0:y1, x0:x1] = np.clip(part + np.float32(0.5), 0, 255).astype(np.uint8)
    return ab if out is None else out


def _median_at(image: NDArray[Any], where: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Per-channel median of ``image`` at ``where``, on at most ~4096 evenly spaced pixels."""
    at = np.flatnonzero(where)
    return np.median(image.reshape(-1, image.shape[-1])[at[:: max(1, len(at) // 4096)]].astype(np.float32), axis=0)


def _spread_in(image: NDArray[np.float32], where: NDArray[np.bool_], sigma: float) -> NDArray[np.float32]:
    """``image``'s pixels at ``where`` blurred by ``sigma`` (a normalised Gaussian: the other
    pixels weigh nothing), everywhere they reach. Wide blurs (sigma >= 4) are computed at
    1 / (sigma // 2) of the size and scaled back (the same picture, at a fraction of the cost)."""
    weight: NDArray[Any] = where.astype(np.float32)
    num: NDArray[Any] = image * (weight[:, :, None] if image.ndim == 3 else weight)
    k = max(1, int(sigma // 2))
    h, w = where.shape
    if k > 1:
        size = (-(-w // k), -(-h // k))
        num = cv2.resize(num, size, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(num, (0, 0), sigma / k)
    den = np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma / k), 1e-3)
    out: NDArray[Any] = num / (den[:, :, None] if image.ndim == 3 else den)
    if k > 1:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, np.float32)


def _match_chroma(
    f: NDArray[Any], t: NDArray[Any], at: tuple[NDArray[Any], NDArray[Any]], dim: float, limit: float | None
) -> NDArray[np.uint8]:
    """The a, b channels of ``f`` (Lab) with their median at ``t``'s over the pixels ``at``,
    and the chroma around it scaled by ``dim`` and down to a spread of ``limit``."""
    ab = f[at[0], at[1], 1:].astype(np.float32)
    fc, _ = _centre_spread(ab)
    tc, _ = _centre_spread(t[at[0], at[1], 1:].astype(np.float32))
    gain = dim
    if limit is not None:
        sample = ab[:: max(1, len(ab) // 4096)] - fc.astype(np.float32)
        spread = float(np.percentile(np.linalg.norm(sample, axis=1), CHROMA_SHARE))
        gain = min(gain, limit / max(spread, 1e-3))
    if gain >= 1.0:
        # chroma is shifted, not stretched (stretching painted lipstick and eye shadow); the
        # shift rounded once: the channels are integers
        shift = np.floor(tc - fc + 0.5).astype(np.int16)
        return np.asarray(np.clip(f[:, :, 1:].astype(np.int16) + shift, 0, 255), np.uint8)
    scaled = (f[:, :, 1:].astype(np.float32) - fc.astype(np.float32)) * np.float32(gain) + tc.astype(np.float32)
    return np.asarray(np.clip(scaled + np.float32(0.5), 0, 255), np.uint8)


def match_colour(
    face: NDArray[np.uint8],
    inside: NDArray[np.bool_],
    target: NDArray[np.uint8],
    grey: bool,
    scene_chroma: float | None = None,
    features: tuple[list[NDArray[np.bool_]], list[NDArray[np.bool_]]] | None = None,
) -> NDArray[np.uint8]:
    """``face`` lit and toned like ``target`` inside ``inside``: its lightness's plane (level
    and the light's direction across the face: three numbers) and the inter-quartile range
    around it set to ``target``'s, its chroma's median shifted to ``target``'s (Lab; luma
    only when grey). Nine numbers of the original in all, no pixel of it.

    In dim light (``target``'s level under ``DIM_LEVEL``) the spread's lower clip falls with
    the level, and the chroma around its median (eyes, lips) is scaled by it: a dimly lit
    surface has less lightness contrast and chroma. The chroma spread is also kept within
    ``scene_chroma`` (the surroundings' limit, ``Scene.chroma``). ``features``: the lips' and
    eyes' masks in ``face`` and in ``target`` (``feature_masks``): each feature's chroma against
    the skin is then scaled to the original's (``_match_features``; one more number a feature)."""
    if grey:
        f = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[:, :, None]
        t = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        f = cv2.cvtColor(face, cv2.COLOR_RGB2LAB)
        t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB)
    h, w = inside.shape
    scale = float(max(h, w))
    ys, xs = np.nonzero(inside)
    ys_n, xs_n = ys / scale - 0.5, xs / scale - 0.5
    fl, tl = f[ys, xs, 0].astype(np.float32), t[ys, xs, 0].astype(np.float32)
    pf = _plane(fl, ys_n, xs_n)
    pt = _plane(tl, ys_n, xs_n)
    rf = fl - (pf[0] + pf[1] * xs_n + pf[2] * ys_n)
    rt = tl - (pt[0] + pt[1] * xs_n + pt[2] * ys_n)
    fm, fs = _centre_spread(rf[:, None].astype(np.float32))
    tm, ts = _centre_spread(rt[:, None].astype(np.float32))
    pf[0] += fm[0]  # the level is the residual's median: teeth and eye whites do not set it
    pt[0] += tm[0]
    dim = float(np.clip(pt[0] / DIM_LEVEL, 0.0, 1.0))
    ratio = float(np.clip(ts[0] / max(float(fs[0]), 1e-3), STD_RATIO[0] * dim, STD_RATIO[1]))
    # (f - plane_f) * ratio + plane_t, the planes not extrapolated past the inner face (a
    # forehead lit white): one plane over the clipped coordinates
    c = pt - ratio * pf
    gx = np.clip(np.arange(w, dtype=np.float32) / scale - 0.5, xs_n.min(), xs_n.max()).astype(np.float32)
    gy = np.clip(np.arange(h, dtype=np.float32) / scale - 0.5, ys_n.min(), ys_n.max()).astype(np.float32)
    base = np.float32(c[0]) + np.float32(c[1]) * gx[None, :] + np.float32(c[2]) * gy[:, None]
    light = np.clip(f[:, :, 0] * np.float32(ratio) + base + np.float32(0.5), 0, 255).astype(np.uint8)
    if grey:
        return np.repeat(light[:, :, None], 3, axis=2)
    chroma = _match_chroma(f, t, (ys, xs), dim, scene_chroma)
    if features is not None:
        chroma = _match_features(chroma, t, inside, features, scale)
    lab = cv2.merge([light, chroma[:, :, 0], chroma[:, :, 1]])
    out: NDArray[np.uint8] = np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), np.uint8)
    return out


#: The neck under the jaw (``neck_under``): the ring below the chin is the collar mirrored up
#: to the jaw (a shirt for a chin) unless something else is painted there. The neck spans this
#: share of the lower jaw's width (dlib points 4-12) and hangs straight down the face's axis.
NECK_WIDTH = 0.75
#: Its colour: the painted cheeks' at this share of their lightness (the chin's shadow). Not
#: the original's tones under the jaw: read from the original, they let a recogniser trained on
#: the outputs link more faces (docs/faces.md, *The neck*).
NECK_SHADE = 0.72
#: Its sides are feathered over this share of the face's size, and it fades out over this
#: share before the mask's edge (the mask's edge stays the surroundings': no seam).
NECK_FEATHER = 0.02
NECK_EDGE = 0.06
#: False: no neck (the ring below the chin is the mirrored surroundings alone).
NECK: bool = True


def neck_polygon(points68: NDArray[np.float32], reach: float) -> NDArray[np.float32] | None:
    """The neck's polygon under the jaw of ``points68``: the lower jaw (points 4-12), then
    ``NECK_WIDTH`` of its width ``reach`` px straight down the face's axis (brow centre to
    chin); None for a degenerate fit."""
    down = points68[8] - points68[17:27].mean(0)
    length = float(np.linalg.norm(down))
    if length < 1.0:
        return None
    down = down / length
    p4, p12 = points68[4], points68[12]
    mid = (p4 + p12) / 2
    bottom = [mid + NECK_WIDTH * (p12 - mid) + reach * down, mid + NECK_WIDTH * (p4 - mid) + reach * down]
    return np.vstack([points68[4:13], bottom]).astype(np.float32)


def neck_under(
    back: NDArray[np.uint8],
    skin: NDArray[np.uint8],
    cheeks: NDArray[np.bool_],
    points68: NDArray[Any],
    region: FaceRegion,
    size: float,
    grey: bool = False,
) -> NDArray[np.uint8]:
    """``back`` (the mirrored surroundings over ``region``'s ROI) with a neck painted under
    the jaw of ``points68`` (frame coordinates), over ``NECK_WIDTH`` of the lower jaw,
    straight down the face's axis, feathered at its sides and faded out before the mask's
    edge, in one colour: the painted composite's (``skin``, already lit and toned like the
    face) median at ``cheeks``, at ``NECK_SHADE`` of its lightness. No pixel of the original
    is read. ``grey``: the colour as grey (greyscale in, greyscale out)."""
    if not NECK or cheeks.sum() < 16:
        return back
    x0, y0 = region.roi[:2]
    outline = neck_polygon(np.asarray(points68, np.float32) - np.array((x0, y0), np.float32), 2 * size)
    if outline is None:
        return back
    poly = np.round(outline).astype(np.int32)
    # the work stays within the polygon's box and the reach of the feather and the fade
    # around it (the jaw and the mask's edge it fades toward lie inside)
    sigma = max(0.6, NECK_FEATHER * size)
    pad = int(np.ceil(4 * sigma + NECK_EDGE * size)) + 2
    h, w = back.shape[:2]
    wx0, wy0 = max(0, int(poly[:, 0].min()) - pad), max(0, int(poly[:, 1].min()) - pad)
    wx1, wy1 = min(w, int(poly[:, 0].max()) + pad + 1), min(h, int(poly[:, 1].max()) + pad + 1)
    if wx0 >= wx1 or wy0 >= wy1:
        return back
    shape = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
    cv2.fillPoly(shape, [poly - np.array((wx0, wy0), np.int32)], 255)
    inside = np.ascontiguousarray(region.mask[wy0:wy1, wx0:wx1] > 0).view(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    alpha = cv2.GaussianBlur(shape, (0, 0), sigma).astype(np.float32) / 255
    alpha *= np.clip((depth - 1.5) / max(1.0, NECK_EDGE * size), 0.0, 1.0)  # 0 on the mask's edge pixels
    at = alpha > 0
    if not at.any():
        return back
    cheek = cv2.cvtColor(skin[cheeks][:, None], cv2.COLOR_RGB2LAB)  # the cheek pixels only, in raster order
    tone = _median_at(cheek, np.ones(cheek.shape[:2], np.bool_))
    tone[0] *= NECK_SHADE
    rgb = cv2.cvtColor(np.clip(tone + 0.5, 0, 255).astype(np.uint8)[None, None], cv2.COLOR_LAB2RGB)[0, 0]
    if grey:  # Lab's grey comes back within a level per channel: made exactly grey
        rgb = np.repeat(cv2.cvtColor(rgb[None, None], cv2.COLOR_RGB2GRAY)[0, 0], 3)
    out = back.copy()
    part = out[wy0:wy1, wx0:wx1]
    was = part[at].astype(np.float32)
    part[at] = np.clip(was + alpha[at][:, None] * (rgb.astype(np.float32) - was) + 0.5, 0, 255)
    return out


#: Paint composites with their forehead and temples refilled with their own skin
#: (``surrogate_bank.clean_forehead``); off only to measure what it changes.
CLEAN: bool = True
_CLEANED: dict[tuple[int, int, float], tuple[NDArray[np.uint8], NDArray[np.uint8]]] = {}


def composite_tile(bank: SurrogateBank, index: int) -> NDArray[np.uint8]:
    """Composite ``index`` of ``bank`` as ``paint`` warps it: cleaned once, on its first paint
    (a few ms), then reused. Keyed by the id of the bank's array, which each entry holds (so
    that id is never another array's while the entry lives)."""
    if not CLEAN:
        raw: NDArray[np.uint8] = bank.faces[index]
        return raw
    key = (id(bank.faces), index, FOREHEAD_REACH)
    hit = _CLEANED.get(key)
    if hit is not None:
        return hit[1]
    tile = clean_forehead(bank.faces[index], bank.shape, FOREHEAD_REACH)
    _CLEANED[key] = (bank.faces, tile)  # two threads may both compute it: the same tile
    return tile


def paint(
    original: NDArray[np.uint8],
    region: FaceRegion,
    bank: SurrogateBank,
    index: int,
    points68: NDArray[np.float32],
    grey: bool,
    faces: NDArray[np.bool_],
    focus: Focus | None = None,
    own: NDArray[np.float32] | None = None,
) -> NDArray[np.uint8]:
    """Composite ``index`` warped onto ``points68`` and blended over ``region``'s ROI: the
    pixels to copy where ``region.mask`` is set. Colour statistics from ``original`` inside
    the face, the rest of the mask refilled from ``original`` outside every face mask
    (``faces``). Reads ``original`` only: the faces of a frame are painted in parallel.
    ``focus``: the track's blur of the last frame, replaced by this frame's (``match_focus``).
    ``own``: the face's own (smoothed, not pulled) 68 points: where its lips and eyes are,
    whose colour against its skin the composite's then takes (``match_colour``'s features)."""
    x0, y0, x1, y1 = region.roi
    back = mirror_surroundings(original, faces, region)
    dst = with_forehead(points68, FOREHEAD_REACH)
    span = dst.max(0) - dst.min(0)
    size = float(np.sqrt(max(float(span[0] * span[1]), 1.0)))
    centre = dst[:68].mean(0)
    out_dir = dst[OUTLINE] - centre
    dst[OUTLINE] += GROW * size * out_dir / np.maximum(np.linalg.norm(out_dir, axis=1, keepdims=True), 1e-3)
    tile = composite_tile(bank, index)
    warped, covered = piecewise_affine(tile, bank.shape, dst, bank.triangles, (x1 - x0, y1 - y0), (x0, y0))
    inside = covered & (region.mask > 0)
    r = max(1, round(EDGE * size))
    core = cv2.erode(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    if not core.any():
        raise ValueError("the warped surrogate covers nothing inside the mask")
    # colour statistics over the inner face (brows, eyes, nose, mouth): the jaw's hull of a
    # loose fit reaches into hair and background, which lit the composite white
    face = hull_mask(core.shape, dst[17:68] - (x0, y0))
    stats = face & (core > 0)
    a = max(1, round(FOCUS_SCALE * size))  # the focus's work scale: 1 / a
    scene = scene_around(original, faces, region, a)
    warped, blur = match_focus(warped, covered, scene, a, None if focus is None else focus.blur)
    if focus is not None:
        focus.blur = blur
    stats_at = stats if stats.sum() >= 16 else core > 0
    features = None
    if own is not None and not grey:
        roi = (y1 - y0, x1 - x0)
        features = (feature_masks(dst, (x0, y0), roi), feature_masks(own, (x0, y0), roi))
    warped = match_colour(warped, stats_at, original[y0:y1, x0:x1], grey, scene.chroma, features)
    cheeks = (core > 0) & ~face
    back = neck_under(back, warped, cheeks, points68, region, size, grey)
    # (blurred in uint8: the alpha in steps of 1/255)
    alpha = cv2.GaussianBlur(core * np.uint8(255), (0, 0), max(0.6, r / 3)).astype(np.float32) / 255 * inside
    levels = int(np.clip(np.log2(max(size, 1.0) / BLEND_COARSE), 1, BLEND_LEVELS))
    # outside the face the front is the back: its pyramid bands then hold the face's edge
    # only, not a step to whatever the warp left there (that step bled in as a light halo)
    front = np.where((alpha > 0)[:, :, None], warped, back)
    return pyramid_blend(front, back, alpha, levels)


#: Threads that paint the faces of one frame (OpenCV and numpy release the GIL); at most 4.
PAINT_THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


#: Why a row is not painted, or its composite, (pulled) 68 points, a copy of its track's focus
#: and its own (smoothed) 68 points.
_Plan = tuple[str | None, tuple[int, NDArray[np.float32], Focus | None, NDArray[np.float32]] | None]


@dataclass(frozen=True)
class _Job:
    """One face to paint: its region, composite, (pulled) 68 points, its own copy of the
    track's ``Focus`` (written back in row order: the output does not depend on the threads)
    and the face's own smoothed 68 points (``paint``'s ``own``)."""

    region: FaceRegion
    index: int
    points: NDArray[np.float32]
    focus: Focus | None
    own: NDArray[np.float32] | None = None


def paint_all(
    original: NDArray[np.uint8], jobs: dict[int, _Job], bank: SurrogateBank, grey: bool, faces: NDArray[np.bool_]
) -> dict[int, NDArray[np.uint8] | Exception]:
    """``paint`` for every job, in parallel threads where there are several (each reads
    ``original`` only; the caller copies the results in order, so the output does not
    depend on which finishes first). A job that raises gets its exception (fail closed)."""

    def one(job: _Job) -> NDArray[np.uint8] | Exception:
        try:
            return paint(original, job.region, bank, job.index, job.points, grey, faces, job.focus, job.own)
        except (ValueError, cv2.error) as exc:
            return exc

    if len(jobs) < 2 or PAINT_THREADS < 2:
        return {j: one(job) for j, job in jobs.items()}
    # The frame's own threads, joined before it returns (~0.1 ms to start against 10+ ms a
    # face): no thread outlives the frame, none is inherited half-alive by a forked child.
    with ThreadPoolExecutor(min(PAINT_THREADS, len(jobs)), thread_name_prefix="streamanon-paint") as pool:
        try:
            futures = {j: pool.submit(one, job) for j, job in jobs.items()}
        except RuntimeError:  # the interpreter is shutting down: no new threads, paint here
            return {j: one(job) for j, job in jobs.items()}
        return {j: f.result() for j, f in futures.items()}


class SurrogateAnonymizer(FaceAnonymizer):
    """A composite of nobody per track (module doc); blur where it cannot be painted."""

    name = "surrogate"

    def __init__(
        self,
        config: AnonymizeConfig,
        bank: SurrogateBank,
        landmarker: Any,
        attributes: Attributes | None = None,
        vetter: Any = None,
    ) -> None:
        """``vetter``: a ``DlibRecogniser`` (``locate``, ``embed``) for the check of ``VET_DISTANCE``
        (None: no check)."""
        self.config = config
        self.vetter = vetter
        self.vetting: Counter[str] = Counter()
        self.bank = bank
        self.landmarker = landmarker
        self.keep = tuple(config.keep)
        if self.keep and attributes is None:
            raise ConfigError("--keep needs an attribute estimator (FaceRes)")
        self.attributes = attributes
        self._blur = BlurAnonymizer(config)
        self._rng = np.random.default_rng(config.seed)  # the per-run secret
        self._tracks: TrackStates[_Track] = TrackStates(self._record)
        self.served: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self._last_attributes: tuple[str, str] | None = None
        self._recent: deque[int] = deque(maxlen=DISTINCT_RECENT)
        self._apart: NDArray[np.float64] | None = None
        if bank.dlib is not None:  # dlib distances between the composites
            self._apart = np.linalg.norm(bank.dlib[:, None].astype(np.float64) - bank.dlib[None], axis=-1)
        self._untracked = 0
        self.coasted = 0

    def _draw(
        self,
        image: NDArray[np.uint8] | None = None,
        box: NDArray[np.float32] | None = None,
        track: bool = True,
        refused: set[int] | None = None,
    ) -> int:
        """A composite from the run's secret: from the whole bank, or (``keep``) from the
        composites of the face's estimated gender and age band; apart from the recent tracks'
        composites (``DISTINCT_RECENT``; a ``track``'s draw becomes one of them)."""
        ok = np.ones(len(self.bank), np.bool_)
        if self.keep and image is not None and box is not None:
            ok = self._keep_pool(image, box)
        if refused:
            allowed = ok.copy()
            allowed[list(refused)] = False
            if allowed.any():
                ok = allowed
        index = int(self._rng.choice(np.flatnonzero(self._apart_from_recent(ok))))
        if track:
            self._recent.append(index)
        return index

    def _apart_from_recent(self, ok: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """``ok`` narrowed to the composites dlib tells apart from the recent tracks' ones."""
        if self._apart is None or not self._recent:
            return ok
        far: NDArray[np.float64] = self._apart[:, list(self._recent)].min(axis=1)
        apart: NDArray[np.bool_] = ok & (far >= DISTINCT_AT)
        if apart.any():
            return apart
        self.kept["distinct-unmet"] += 1
        farthest: NDArray[np.bool_] = ok & (far >= np.quantile(far[ok], 0.75))
        return farthest

    def _keep_pool(self, image: NDArray[np.uint8], box: NDArray[np.float32]) -> NDArray[np.bool_]:
        """The composites of the face's estimated gender and age band (``--keep``)."""
        ok = np.ones(len(self.bank), np.bool_)
        assert self.attributes is not None
        try:
            gender, band = self.attributes(image, box)
        except Exception as exc:  # an estimate that fails costs the kept attribute, not the face
            log.warning("--keep: attribute estimate failed (%s); composite drawn from the whole bank", exc)
            self.kept["estimate-failed"] += 1
            self._last_attributes = None
            return ok
        self._last_attributes = (gender, band)
        if "gender" in self.keep:
            ok &= self.bank.keeps_gender(gender)  # its painted gender, where the bank was relabelled
            if not ok.any():
                self.kept["gender-unmet"] += 1
                ok[:] = True
        if "age" in self.keep:
            near = ok & (self.bank.age_band == band)
            if near.any():
                ok = near
            else:
                self.kept["age-unmet"] += 1
        self.kept["drawn"] += 1
        return ok

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.start(track_id, _Track(None if self.keep else self._draw(), info.index))

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.end(track_id)

    @staticmethod
    def _record(t: _Track) -> dict[str, Any]:
        row: dict[str, Any] = {"first_frame": t.first, "surrogate": t.index, "served": dict(t.served)}
        if t.attributes is not None:
            row["gender"], row["age_band"] = t.attributes
        return row

    def track_surrogate(self, track_id: int) -> int | None:
        """The composite index of a live track (tests, debugging)."""
        t = self._tracks.get(track_id)
        return None if t is None else t.index

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = image.copy()
        regions, rows = masked_rows(image, dets, self.config)
        if not regions:
            return out
        info = info or FrameInfo(0)
        t = info.time if info.time is not None else info.index / DEFAULT_FPS
        for _, region in regions:  # 1. the whole mask blurred: nothing raw, whatever follows
            x0, y0, x1, y1 = region.roi
            composite(out, region, self._blur.replace(out[y0:y1, x0:x1], region), self.config.feather)
        side = np.minimum(rows.xyxy[:, 2] - rows.xyxy[:, 0], rows.xyxy[:, 3] - rows.xyxy[:, 1])
        want = (side >= MIN_FACE) & (rows.source == SOURCE_DETECTOR) & (rows.score >= PAINT_SCORE)
        fit = np.full((len(rows), 68, 2), np.nan, np.float32)
        if want.any():
            fit[want] = self.landmarker(image, rows.xyxy[want])
        faces = union_mask(
            rows, image.shape[1], image.shape[0], self.config.shape, self.config.mask_scale, self.config.mask_margin
        )
        whys: list[str | None] = []
        jobs: dict[int, _Job] = {}
        for j, (_, region) in enumerate(regions):  # in order: the tracks' state and the secret's draws
            why, job = self._plan(image, rows, j, fit[j], t)
            whys.append(why)
            if job is not None:
                jobs[j] = _Job(region, *job)
        painted = paint_all(image, jobs, self.bank, is_grey(image), faces)
        for j, todo in jobs.items():  # in order: each track's focus from its row's paint
            track = self._tracks.get(int(rows.track_id[j]))
            if track is not None and todo.focus is not None and not isinstance(painted.get(j), Exception):
                track.focus.blur = todo.focus.blur
        for j, (_, region) in enumerate(regions):  # in order: where masks overlap the later face wins
            result = painted.get(j)
            if isinstance(result, Exception):  # fail closed: the blur of step 1 stays
                log.debug("surrogate warp failed: %s", result)
                whys[j] = "warp-failed"
            elif result is not None:
                x0, y0, x1, y1 = region.roi
                before = out[y0:y1, x0:x1].copy() if self._checks(int(rows.track_id[j])) else None
                np.copyto(out[y0:y1, x0:x1], result, where=(region.mask > 0)[:, :, None])
                if before is not None and self._too_close(image, out, rows, j):
                    out[y0:y1, x0:x1] = before  # the blur of step 1 again
                    whys[j] = "too-close"
            self._count(int(rows.track_id[j]), whys[j])
        return out

    def _checks(self, tid: int) -> bool:
        """Whether track ``tid``'s painted face is checked against its original this frame
        (once a composite per track; every time for an untracked row)."""
        track = self._tracks.get(tid)
        return self.vetter is not None and (track is None or not track.vetted)

    def _too_close(self, image: NDArray[np.uint8], out: NDArray[np.uint8], rows: Detections, j: int) -> bool:
        """Whether row ``j``, painted into ``out``, is within ``VET_DISTANCE`` of the original
        under dlib. A track whose composite is refused draws another; after ``VET_TRIES`` it
        stays blurred."""
        track = self._tracks.get(int(rows.track_id[j]))
        face = self.vetter.locate(image, rows.xyxy[j])  # 5 points of the original align both
        vecs = self.vetter.embed(image, [face]), self.vetter.embed(out, [face])
        self.vetting["checked"] += 1
        if float(np.linalg.norm(vecs[0][0] - vecs[1][0])) >= VET_DISTANCE:
            if track is not None:
                track.vetted = True
            return False
        self.vetting["too-close"] += 1
        if track is not None and track.index is not None:
            track.refused.add(track.index)
            track.index = None
            if len(track.refused) < VET_TRIES:
                track.index = self._draw(image, rows.xyxy[j], refused=track.refused)
                self.vetting["redrawn"] += 1
        return True

    def _plan(self, image: NDArray[np.uint8], rows: Detections, j: int, fit: NDArray[Any], t: float) -> _Plan:
        """Why row ``j`` is not painted, or its composite (drawn where the track has none yet)
        and points (the track's smoothed or carried face, pulled)."""
        track = self._tracks.get(int(rows.track_id[j]))
        side = float(min(rows.xyxy[j, 2] - rows.xyxy[j, 0], rows.xyxy[j, 3] - rows.xyxy[j, 1]))
        why = self._why_not(rows, j, side, fit)
        p: NDArray[np.float32] | None = None
        if why is None:
            p = track.smoother.update(fit, rows.xyxy[j], t) if track is not None else fit
        elif why == "no-detection" and track is not None and track.smoother.since < COAST_FRAMES:
            p = track.smoother.carry(rows.xyxy[j])  # a short gap: the last face moved with the box
            if p is not None:
                why = None
                self.coasted += 1
        if p is None:
            return why, None
        if track is not None and len(track.refused) >= VET_TRIES:
            return "too-close", None  # every composite it drew came too close to it: blurred
        if track is not None:
            if track.index is None:  # --keep: drawn at the first paintable face
                track.index = self._draw(image, rows.xyxy[j])
                track.attributes = self._last_attributes
            index = track.index
        else:
            self._untracked += 1
            index = self._draw(image, rows.xyxy[j], track=False)
        focus = Focus(track.focus.blur) if track is not None else None
        return None, (index, pulled(p, self.bank.shape, SHAPE_PULL), focus, p)

    def _count(self, tid: int, why: str | None) -> None:
        how = "surrogate" if why is None else "blur"
        self.served[how] += 1
        if why is not None:
            self.reasons[why] += 1
        track = self._tracks.get(tid)
        if track is not None:
            track.served[how] += 1

    @staticmethod
    def _why_not(rows: Detections, j: int, side: float, fit: NDArray[np.float32]) -> str | None:
        if side < MIN_FACE:
            return "small"
        if rows.source[j] != SOURCE_DETECTOR:
            return "no-detection"
        if rows.score[j] < PAINT_SCORE:
            return "low-score"
        if not np.isfinite(fit).all():
            return "no-landmarks"
        if not plausible(fit, rows.landmarks[j]):
            return "implausible-landmarks"
        return None

    def report(self) -> dict[str, Any]:
        return {
            "bank": self.bank.source,
            "bank_composites": len(self.bank),
            "k": self.bank.k,
            "shape_pull": SHAPE_PULL,
            "keep": list(self.keep),
            "keep_draws": dict(self.kept),
            "vetting": {"distance": VET_DISTANCE, **self.vetting} if self.vetter is not None else None,
            "fallback": {
                "method": "blur",
                "faces": sum(self.reasons.values()),
                "why": ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())),
            }
            if self.reasons
            else None,
            "faces": dict(self.served),
            "fallback_reasons": dict(self.reasons),
            "untracked_faces": self._untracked,
            "coasted_faces": self.coasted,
            "per_track": self._tracks.records(),
        }
