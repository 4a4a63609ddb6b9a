"""``surrogate``: every face replaced by a photographic composite of nobody, warped onto it.

Per track (``track_started``) one composite of the surrogate bank (``surrogate_bank``: each
the average of k >= 5 different persons warped onto a common shape, checked to be within
neither dlib's 0.6 nor FaceRes's 1%-false-match threshold of any bank person) is drawn from
the run's secret (``AnonymizeConfig.seed``; None = fresh OS entropy each run), never from
the face's pixels: one surrogate per track, unrelated ones between tracks and runs.

Per frame, for every face:

1. The whole product mask (the same ellipse every method replaces) is blurred first: what
   the surrogate does not cover (hair, ears, the mask's rim) is never left raw.
2. Where the detection is confident (score >= ``PAINT_SCORE``), the face large enough and
   dlib's 68-point fit plausible (it agrees with the detector's five points, as ``generate``
   checks), the fit is smoothed over the track (``generate.LandmarkSmoother``), the inner
   points (brows, eyes, nose, mouth) are pulled ``SHAPE_PULL`` (default: all) of the way
   toward the composite's own shape (the face's geometry carries identity), the mask is refilled from
   its surroundings (so hair and background, not a blurred oval, surround the new face), and
   the composite is warped there piecewise-affinely over the Delaunay triangles of its 78 points (68 +
   forehead).
3. Colour and light: the composite's Lab median and inter-quartile range inside the face
   are set to the original face's (six numbers of the original; no pixel of it is copied),
   or its luma only for greyscale footage (greyscale in, greyscale out).
4. It is blended into the blurred mask through a feathered face-shaped alpha, inside the
   product mask only: nothing outside the mask changes.

Everything else (a small or doubtful face, a coasting row, a fit that fails or a warp that
raises) keeps the blur of step 1 and is counted as a fallback in the report.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..geometry import similarity
from ..types import SOURCE_DETECTOR, Detections
from .base import FaceAnonymizer, FrameInfo
from .chips import masked_rows
from .generate import DEFAULT_FPS, LandmarkSmoother, is_grey, plausible
from .mask import FaceRegion, composite, union_mask
from .methods import BlurAnonymizer
from .surrogate_bank import SurrogateBank, piecewise_affine, with_forehead

log = logging.getLogger(__name__)

#: Detector confidence under which a face is blurred, not painted (no face on a bag).
PAINT_SCORE = 0.5
#: Smallest face (px, the box's shorter side) painted: dlib's 68-point fit is unreliable below.
MIN_FACE = 20
#: Share of the way the inner landmarks move toward the composite's own shape (aligned to the
#: face by a similarity: pose, size and roll stay the face's). Measured with ``eval identity``
#: on 104 faces (docs/faces.md): 0 -> FaceRes leakage 10.6%, rank-1 0.35; 0.5 -> 3.8%, 0.165;
#: 1.0 -> 0%, 0.049 (chance 0.068). The geometry carries identity; expression is the price.
SHAPE_PULL = 1.0
#: Inner points (brows, eyes, nose, mouth) of the 68; the jaw and forehead keep the head's outline.
INNER = np.arange(17, 68)
#: The alpha's soft edge, as a share of the face size (the hull is eroded by as much first).
EDGE = 0.05
#: Clip of the per-channel spread ratio of the colour transfer.
STD_RATIO = (0.5, 2.0)
#: Side (px) the mask's fill from its surroundings is computed at (it is smooth).
FILL_WORK = 64


def fill_from_surroundings(image: NDArray[np.uint8], faces: NDArray[np.bool_], region: FaceRegion) -> NDArray[np.uint8]:
    """Pixels for ``region``'s mask spread in from a ring of ``image`` around it that lies
    outside every face mask (``faces``): Telea inpainting at ~``FILL_WORK`` px, smoothed, so
    hair and background flow in instead of a blurred oval. No pixel inside any face mask is read."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = region.roi
    size = max(x1 - x0, y1 - y0)
    pad = max(2, round(0.2 * size))
    ex0, ey0, ex1, ey1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    f = min(1.0, FILL_WORK / (size + 2 * pad))
    sw, sh = max(2, round((ex1 - ex0) * f)), max(2, round((ey1 - ey0) * f))
    inside = faces[ey0:ey1, ex0:ex1]
    src = image[ey0:ey1, ex0:ex1].copy()
    src[inside] = 0  # no face pixel reaches the fill, even through the downscale
    small = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
    touched = (cv2.resize(inside.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    hole = cv2.dilate(touched, np.ones((3, 3), np.uint8))  # mixed pixels too
    filled = np.full((sh, sw, 3), 128, np.uint8)  # nothing around the face (it fills the frame): mid grey
    if not hole.all():
        filled = np.asarray(cv2.inpaint(small, hole, 3, cv2.INPAINT_TELEA), np.uint8)
    fill = cv2.GaussianBlur(filled.astype(np.float32), (0, 0), max(0.8, 0.04 * sw))
    big = cv2.resize(fill, (ex1 - ex0, ey1 - ey0), interpolation=cv2.INTER_LINEAR)
    out: NDArray[np.uint8] = np.clip(big[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0] + 0.5, 0, 255).astype(np.uint8)
    return out


@dataclass
class _Track:
    index: int
    first: int
    smoother: LandmarkSmoother = field(default_factory=LandmarkSmoother)
    served: Counter[str] = field(default_factory=Counter)


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


def match_colour(
    face: NDArray[np.uint8], inside: NDArray[np.bool_], target: NDArray[np.uint8], grey: bool
) -> NDArray[np.uint8]:
    """``face`` with its Lab median inside ``inside`` set to ``target``'s there, and its
    lightness's inter-quartile range (luma only when grey)."""
    if grey:
        f = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None]
        t = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None]
    else:
        f = cv2.cvtColor(face, cv2.COLOR_RGB2LAB).astype(np.float32)
        t = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    fm, fs = _centre_spread(f[inside])
    tm, ts = _centre_spread(t[inside])
    ratio = np.clip(ts / np.maximum(fs, 1e-3), *STD_RATIO)
    ratio[1:] = 1.0  # chroma is shifted, not stretched: stretching painted lipstick and eye shadow
    new = np.clip((f - fm) * ratio + tm + 0.5, 0, 255).astype(np.uint8)
    if grey:
        return np.repeat(new, 3, axis=2)
    out: NDArray[np.uint8] = np.asarray(cv2.cvtColor(new, cv2.COLOR_LAB2RGB), np.uint8)
    return out


def paint(
    out: NDArray[np.uint8],
    original: NDArray[np.uint8],
    region: FaceRegion,
    bank: SurrogateBank,
    index: int,
    points68: NDArray[np.float32],
    grey: bool,
    faces: NDArray[np.bool_],
) -> None:
    """Warp composite ``index`` onto ``points68`` and blend it into ``region`` of ``out``
    (already masked); colour statistics from ``original`` inside the face, the rest of the
    mask refilled from ``original`` outside every face mask (``faces``)."""
    x0, y0, x1, y1 = region.roi
    composite(out, region, fill_from_surroundings(original, faces, region))
    dst = with_forehead(points68)
    warped, covered = piecewise_affine(bank.faces[index], bank.shape, dst, bank.triangles, (x1 - x0, y1 - y0), (x0, y0))
    inside = covered & (region.mask > 0)
    span = dst.max(0) - dst.min(0)
    size = float(np.sqrt(max(float(span[0] * span[1]), 1.0)))
    r = max(1, round(EDGE * size))
    core = cv2.erode(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    if not core.any():
        raise ValueError("the warped surrogate covers nothing inside the mask")
    # colour statistics over the face proper (brows to chin), not the forehead's hairline
    face = np.zeros_like(core)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(dst[:68] - (x0, y0)).astype(np.int32)), 1)
    stats = (face > 0) & (core > 0)
    warped = match_colour(warped, stats if stats.sum() >= 16 else core > 0, original[y0:y1, x0:x1], grey)
    alpha = cv2.GaussianBlur(core.astype(np.float32), (0, 0), max(0.6, r / 2)) * inside
    roi = out[y0:y1, x0:x1].astype(np.float32)
    a = alpha[:, :, None]
    out[y0:y1, x0:x1] = np.clip(warped * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)


class SurrogateAnonymizer(FaceAnonymizer):
    """A composite of nobody per track (module doc); blur where it cannot be painted."""

    name = "surrogate"

    def __init__(self, config: AnonymizeConfig, bank: SurrogateBank, landmarker: Any) -> None:
        self.config = config
        self.bank = bank
        self.landmarker = landmarker
        self._blur = BlurAnonymizer(config)
        self._rng = np.random.default_rng(config.seed)  # the per-run secret
        self._tracks: dict[int, _Track] = {}
        self._done: list[dict[str, Any]] = []
        self.served: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self._untracked = 0

    def _draw(self) -> int:
        return int(self._rng.integers(len(self.bank)))

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self._tracks[track_id] = _Track(self._draw(), info.index)

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        t = self._tracks.pop(track_id, None)
        if t is not None:
            self._done.append(
                {"track_id": track_id, "first_frame": t.first, "surrogate": t.index, "served": dict(t.served)}
            )

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
        grey = is_grey(image)
        faces = union_mask(
            rows, image.shape[1], image.shape[0], self.config.shape, self.config.mask_scale, self.config.mask_margin
        )
        for j, (_, region) in enumerate(regions):
            tid = int(rows.track_id[j])
            track = self._tracks.get(tid) if tid >= 0 else None
            why = self._why_not(rows, j, side[j], fit[j])
            if why is None:
                p = track.smoother.update(fit[j], rows.xyxy[j], t) if track is not None else fit[j]
                if track is not None:
                    index = track.index
                else:
                    self._untracked += 1
                    index = self._draw()
                try:
                    paint(out, image, region, self.bank, index, pulled(p, self.bank.shape, SHAPE_PULL), grey, faces)
                except (ValueError, cv2.error) as exc:  # fail closed: the blur of step 1 stays
                    log.debug("surrogate warp failed: %s", exc)
                    why = "warp-failed"
            how = "surrogate" if why is None else "blur"
            self.served[how] += 1
            if why is not None:
                self.reasons[why] += 1
            if track is not None:
                track.served[how] += 1
        return out

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
            "per_track": sorted(self._done, key=lambda r: int(r["track_id"])),
        }
