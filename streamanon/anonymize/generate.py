"""``generate``: every face replaced by a synthetic one that keeps the pose and expression and
stays the same synthetic person for the whole track.

Per track (``track_started``): one latent code z drawn from the run's secret
(``AnonymizeConfig.seed``; None = fresh OS entropy each run), never from the face's pixels, so
one person in two videos gets unrelated codes unless a seed is given. Per frame, dlib's 68
points are fitted on the detector rows, checked against CenterFace's five points (the same
filter the training faces passed) and smoothed over the track by a One-Euro filter in
face-normalised coordinates (``LandmarkSmoother``) so the face does not jitter. All the faces
of a frame go through the generator as one batch, on chips cut exactly as the model was
trained (``anonymize.generator_chip.generator_alignments`` and ``chip_masks``).

Compositing (``paste_generated``): the chip's pixels outside its mask (real context the model
was shown) are replaced by their nearest generated pixel before the inverse warp, so every
pixel written inside the product's ellipse comes from the generator; colour and light are
then matched to the surroundings by a smooth offset field computed from a ring of pixels
outside every face mask (a membrane / normalised-convolution approximation of Poisson
blending). Nothing of the original face is read inside the mask: the chip's masked pixels are
blanked before the model sees them.

Faces the generator cannot serve get the per-face fallback (``generate_fallback``: blur or
solid, counted in the report): boxes under ``generate_min_size`` px, rows without a detection
this frame (coasting, look-back) and detector rows whose 68-point fit is missing or
implausible, unless the track has landmarks from at most ``CARRY_FRAMES`` frames ago, which are
then carried along with the box's motion. Any error raises: the pipeline masks the frame.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig, EngineConfig
from ..errors import AnonymizationError, MissingDependencyError
from ..models.generator import shared_generator
from ..models.landmarks import landmarker68
from ..types import SOURCE_DETECTOR, Detections
from .align import Alignment, five_from_68, warp_chip
from .base import FaceAnonymizer, FrameInfo, TrackStates
from .chips import masked_rows
from .generator_chip import chip_masks, generator_alignments
from .mask import FaceRegion, composite
from .methods import BlurAnonymizer, RegionAnonymizer, SolidAnonymizer

log = logging.getLogger(__name__)

#: Frames a track's last good landmarks are carried with its box when the detector did not
#: see it (or dlib's fit was rejected): ~0.4 s at 25 fps, long enough to bridge a missed
#: detection, short enough that a turning head does not keep a stale frontal face for long.
CARRY_FRAMES = 10
#: dlib's five points vs CenterFace's, in eye distances, above which a fit is rejected (the
#: filter the training faces passed, ``generate.data.ChipSettings.max_landmark_error``).
MAX_LANDMARK_ERROR = 0.35
#: Frame rate assumed for the One-Euro filter where frames carry no time stamp.
DEFAULT_FPS = 25.0
#: One-Euro parameters (Casiez et al. 2012) of the pose (centroid, scale, roll) and of the
#: pose-free shape: cutoff in Hz at rest, speed gain (per face-normalised unit per second),
#: derivative cutoff. Chosen on a noisy synthetic track (``tests/anonymize/
#: test_anonymize_generate.py``, dlib-like noise of 1.5 px on a 100 px face): at rest the
#: frame-to-frame jitter drops to ~1/4; a head moving 1-3 face widths per second stays
#: ~half as far from the true points as the raw fit.
POSE_EURO = (1.0, 12.0, 1.0)
SHAPE_EURO = (1.0, 3.0, 1.0)
#: A raw fit whose centroid is this many RMS face radii (~0.4 face widths each) from the
#: smoothed one, or whose size differs by more than a factor e^0.5, restarts the filter (an
#: identity switch or a long gap, not motion to smooth).
RESET_JUMP = 2.0
#: Colour matching at the edge, as fractions of the face size: the ring of surroundings it
#: reads, the blur spreading the ring's offset along the edge, and how far inward it fades
#: (1/e). Offsets are clipped to ``MAX_OFFSET`` code values (hair against a bright wall).
RING = 0.06
EDGE_SIGMA = 0.05
FADE = 0.06
MAX_OFFSET = 48.0
#: Face size (px) the edge correction is computed at.
WORK = 64.0
#: Mean channel spread (code values) under which a frame is treated as greyscale: the shipped
#: model paints skin colour into grey footage.
GREY_SPREAD = 3.0


class Generator(Protocol):
    """What the anonymiser needs of a generator (``models.generator.GeneratorRunner``)."""

    size: int
    z_dim: int

    def latents(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]: ...

    def __call__(
        self, chips: NDArray[np.uint8], masks: NDArray[Any], landmarks: NDArray[np.float32], z: NDArray[np.float32]
    ) -> NDArray[np.uint8]: ...


class Landmarks68(Protocol):
    def __call__(self, image: NDArray[np.uint8], boxes: NDArray[np.float32]) -> NDArray[np.float32]: ...


#: The exact requirement (exit 9): the generator places its face by dlib's 68 points; a
#: default install runs every other method (``adversarial`` needs the ``torch`` extra).
NEEDS_ALIGN = (
    "--method generate requires 'pip install streamanon[align]' "
    "(dlib and its 68-point landmark model place the generated face)"
)


def check_align_extra() -> None:
    """``MissingDependencyError`` (:data:`NEEDS_ALIGN`) unless dlib and its model package import."""
    for module in ("dlib", "face_recognition_models"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingDependencyError(f"{NEEDS_ALIGN}; {module} is not installed")


class GenerateModels:
    """The generator and dlib's 68-point predictor, loaded once per process and shared
    read-only by every run's anonymiser (``AnonymizerFactory``).

    Raises:
        ModelError: the generator file is missing or is not a generator.
        MissingDependencyError: dlib is not installed (the ``align`` extra).
    """

    def __init__(
        self,
        config: AnonymizeConfig,
        generator: Generator | None = None,
        landmarker: Landmarks68 | None = None,
        engine: EngineConfig | None = None,
    ) -> None:
        if generator is None:
            generator = shared_generator(config.generator, engine)
        if landmarker is None:
            check_align_extra()
            landmarker = landmarker68()
        self.generator = generator
        self.landmarker = landmarker
        path = getattr(generator, "path", None)
        choice = getattr(generator, "choice", None)
        self.describe: dict[str, Any] = {
            "generator": str(path) if isinstance(path, Path) else type(generator).__name__,
            "generator_backend": f"{choice.config.backend} {choice.config.precision}" if choice is not None else None,
        }


# -- landmark smoothing -----------------------------------------------------------------
def _alpha(dt: float, cutoff: NDArray[np.float64] | float) -> NDArray[np.float64]:
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, np.float64))
    out: NDArray[np.float64] = 1.0 / (1.0 + tau / dt)
    return out


@dataclass
class OneEuro:
    """One-Euro filter on a vector (per-element adaptive cutoff): smooth at rest, responsive
    when the value moves fast (Casiez, Roussel & Vogel, CHI 2012)."""

    min_cutoff: float
    beta: float
    d_cutoff: float
    x: NDArray[np.float64] | None = None
    dx: NDArray[np.float64] | None = None
    t: float = 0.0

    def reset(self) -> None:
        self.x = self.dx = None

    def __call__(self, value: NDArray[np.float64], t: float) -> NDArray[np.float64]:
        if self.x is None or self.dx is None:
            self.x, self.dx, self.t = value.copy(), np.zeros_like(value), t
            return value.copy()
        dt = max(t - self.t, 1e-3)
        a_d = _alpha(dt, self.d_cutoff)
        self.dx = a_d * (value - self.x) / dt + (1 - a_d) * self.dx
        a = _alpha(dt, self.min_cutoff + self.beta * np.abs(self.dx))
        self.x = a * value + (1 - a) * self.x
        self.t = t
        return self.x.copy()


def _eye_angle(points: NDArray[np.float64]) -> float:
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    return math.atan2(float(right[1] - left[1]), float(right[0] - left[0]))


def normalise68(points: NDArray[np.float32]) -> tuple[NDArray[np.float64], float, float, NDArray[np.float64]]:
    """``(centroid, scale, angle, shape)``: the 68 points as a similarity pose (centroid in
    pixels, RMS radius, eye-line angle) and a pose-free shape (``(68, 2)``, unit RMS radius)."""
    p = np.asarray(points, np.float64)
    c = p.mean(0)
    s = float(np.sqrt(((p - c) ** 2).sum(1).mean())) or 1.0
    a = _eye_angle(p)
    ca, sa = math.cos(-a), math.sin(-a)
    rot = np.array([[ca, -sa], [sa, ca]])
    return c, s, a, ((p - c) / s) @ rot.T


def denormalise68(
    centroid: NDArray[np.float64], scale: float, angle: float, shape: NDArray[np.float64]
) -> NDArray[np.float32]:
    """The inverse of ``normalise68``."""
    ca, sa = math.cos(angle), math.sin(angle)
    rot = np.array([[ca, -sa], [sa, ca]])
    out: NDArray[np.float32] = ((shape @ rot.T) * scale + centroid).astype(np.float32)
    return out


class LandmarkSmoother:
    """One track's 68 points over time, filtered in face-normalised coordinates.

    The state is the pose (centroid in units of the track's first face size, log scale, eye
    angle) and the pose-free shape; every element is One-Euro filtered, so the jitter of
    dlib's fit is removed at rest and a moving head is followed without lag. ``carry`` moves
    the last smoothed face with the box when a frame has no fit.
    """

    def __init__(
        self, pose: tuple[float, float, float] = POSE_EURO, shape: tuple[float, float, float] = SHAPE_EURO
    ) -> None:
        self._pose = OneEuro(*pose)
        self._shape = OneEuro(*shape)
        self._unit = 0.0  # the first face's scale: translation is filtered in face sizes
        self.last: NDArray[np.float32] | None = None
        self.last_centre: NDArray[np.float64] | None = None  # box centre at the last fit
        self.since = 0  # frames since the last accepted fit

    def update(self, points: NDArray[np.float32], box: NDArray[np.float32], t: float) -> NDArray[np.float32]:
        c, s, a, shape = normalise68(points)
        if self._unit == 0.0:
            self._unit = s
        if self.last is not None:
            lc, ls, _, _ = normalise68(self.last)
            if float(np.linalg.norm(c - lc)) > RESET_JUMP * ls or abs(math.log(s / ls)) > 0.5:
                self._pose.reset()
                self._shape.reset()
            elif self._pose.x is not None:  # keep the angle continuous for the filter
                prev = float(self._pose.x[3])
                a = prev + (a - prev + math.pi) % (2 * math.pi) - math.pi
        f = self._pose(np.concatenate([c / self._unit, [math.log(s), a]]), t)
        q = self._shape(shape.ravel(), t).reshape(68, 2)
        out = denormalise68(f[:2] * self._unit, math.exp(f[2]), float(f[3]), q)
        self.last, self.last_centre, self.since = out, _centre(box), 0
        return out

    def carry(self, box: NDArray[np.float32]) -> NDArray[np.float32] | None:
        """The last smoothed points moved with the box's centre, or None when there are none
        or they are more than ``CARRY_FRAMES`` frames old."""
        if self.last is None or self.last_centre is None or self.since >= CARRY_FRAMES:
            return None
        self.since += 1
        shift = (_centre(box) - self.last_centre).astype(np.float32)
        return (self.last + shift).astype(np.float32)


def _centre(box: NDArray[np.float32]) -> NDArray[np.float64]:
    b = np.asarray(box, np.float64)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])


def plausible(points: NDArray[np.float32], five: NDArray[np.float32]) -> bool:
    """dlib's fit agrees with the detector's five points (where the row has them): profiles,
    occlusions and false faces make the two disagree."""
    if not np.isfinite(points).all():
        return False
    if not np.isfinite(five).all():
        return True  # nothing to check against
    eye = float(np.linalg.norm(five[1] - five[0]))
    err = float(np.linalg.norm(five_from_68(points) - five, axis=1).mean())
    return eye >= 1.0 and err <= MAX_LANDMARK_ERROR * eye


# -- compositing ------------------------------------------------------------------------
def extend_outside(chip: NDArray[np.uint8], mask: NDArray[Any]) -> NDArray[np.uint8]:
    """``chip`` with every pixel outside ``mask`` replaced by its nearest pixel inside: what
    is warped back then holds generated pixels only (no real context at the mask's edge)."""
    inside = mask > 0
    if not inside.any():
        raise AnonymizationError("the generator chip's mask is empty")
    if inside.all():
        return chip.copy()
    outside = (~inside).astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(inside)
    lut = np.zeros(int(labels.max()) + 1, np.intp)
    lut[labels[ys, xs]] = np.arange(len(ys))
    idx = lut[labels]
    out: NDArray[np.uint8] = np.ascontiguousarray(chip[ys[idx], xs[idx]])
    return out


def _grown(roi: tuple[int, int, int, int], pad: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = roi
    return max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)


def _warp_back(chip: NDArray[np.uint8], alignment: Alignment, roi: tuple[int, int, int, int]) -> NDArray[np.float32]:
    x0, y0, x1, y1 = roi
    inv = alignment.inverse.copy()
    inv[:, 2] -= (x0, y0)
    out = cv2.warpAffine(chip, inv, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.float32)


def _edge_offset(
    real: NDArray[np.uint8], gen: NDArray[np.float32], mask: NDArray[np.uint8], faces: NDArray[np.bool_], size: float
) -> NDArray[np.float32]:
    """The edge correction of ``paste_generated`` (ROI-sized, float), computed at a working
    size of ~``WORK`` px across the face (it is smooth; full size cost ~0.2 s a large face).

    Ring pixels are those whose whole footprint at the working size lies outside every
    face mask, so no original face pixel enters the offset even through the downscaling.
    """
    h, w = mask.shape
    f = min(1.0, WORK / size)
    sw, sh = max(1, round(w * f)), max(1, round(h * f))

    def small(a: NDArray[Any]) -> NDArray[Any]:
        return a if f == 1.0 else cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA)

    touch = small(mask) > 0
    # grown by a pixel: INTER_AREA rounds a sliver of overlap to 0
    others = (
        cv2.dilate((small((faces | (mask > 0)).astype(np.uint8) * 255) > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        > 0
    )
    r = max(1, round(RING * size * f))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    ring = (cv2.dilate(touch.astype(np.uint8), k) > 0) & ~others
    if not ring.any():
        return np.zeros((h, w, 3), np.float32)
    wgt = ring.astype(np.float32)
    diff = np.clip(small(real).astype(np.float32) - small(gen), -MAX_OFFSET, MAX_OFFSET) * wgt[:, :, None]
    sigma = max(0.8, EDGE_SIGMA * size * f)
    num = cv2.GaussianBlur(diff, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    den = cv2.GaussianBlur(wgt, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    depth = cv2.distanceTransform((small(mask) >= 128).astype(np.uint8), cv2.DIST_L2, 3) / f
    fade = np.exp(-depth / max(1.0, FADE * size)) * (den > 1e-3)
    field = num / np.maximum(den, 1e-3)[:, :, None] * fade[:, :, None]
    if f < 1.0:
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    out: NDArray[np.float32] = np.asarray(field, np.float32)
    return out


def paste_generated(
    out: NDArray[np.uint8],
    surround: NDArray[np.uint8],
    faces: NDArray[np.bool_],
    region: FaceRegion,
    alignment: Alignment,
    chip: NDArray[np.uint8],
    chip_mask: NDArray[Any],
    feather: float = 0.0,
    grey: bool = False,
) -> None:
    """Warp a generated chip back into ``region`` of ``out``, colour-matched at its edge.

    The model already matches skin tone and light to the context it was shown; what is left
    is a seam (a blurry 64 px face next to sharp surroundings). The offset between the
    surroundings (``surround`` on a ring just outside the mask, excluding every face's mask
    ``faces``) and the generated pixels warped onto that ring is spread along the edge by
    normalised convolution and faded out inward, so the edge meets its surroundings and the
    inside stays generated. The offset is computed outside the masks only: it carries no
    face detail. A whole-face offset toward the surroundings was tried first and tinted
    faces with the background (a flag's red and blue).
    """
    h, w = out.shape[:2]
    x0, y0, x1, y1 = region.roi
    size = float(max(x1 - x0, y1 - y0))
    ex = _grown(region.roi, max(2, round(RING * size)) + 2, w, h)
    gen = _warp_back(extend_outside(chip, chip_mask), alignment, ex)
    ey0, ex0 = y0 - ex[1], x0 - ex[0]
    mask = np.zeros(gen.shape[:2], np.uint8)
    mask[ey0 : ey0 + (y1 - y0), ex0 : ex0 + (x1 - x0)] = region.mask
    if grey:
        luma = gen @ np.array([0.299, 0.587, 0.114], np.float32)
        gen = np.repeat(luma[:, :, None], 3, axis=2)
    gen += _edge_offset(surround[ex[1] : ex[3], ex[0] : ex[2]], gen, mask, faces[ex[1] : ex[3], ex[0] : ex[2]], size)
    pixels = np.clip(gen[ey0 : ey0 + (y1 - y0), ex0 : ex0 + (x1 - x0)] + 0.5, 0, 255).astype(np.uint8)
    composite(out, region, pixels, feather)


def is_grey(image: NDArray[np.uint8]) -> bool:
    """Greyscale footage (in an RGB container): the generated faces are painted grey too."""
    s = image[::8, ::8].astype(np.int16)
    return float((s.max(-1) - s.min(-1)).mean()) < GREY_SPREAD


# -- the anonymiser ---------------------------------------------------------------------
@dataclass
class _Track:
    z: NDArray[np.float32]
    first: int
    smoother: LandmarkSmoother = field(default_factory=LandmarkSmoother)
    served: Counter[str] = field(default_factory=Counter)

    def record(self) -> dict[str, Any]:
        return {"first_frame": self.first, "frames": sum(self.served.values()), "served": dict(self.served)}


class GenerateAnonymizer(FaceAnonymizer):
    """A synthetic face per track (module doc); ``fallback`` (blur/solid) where it cannot serve."""

    name = "generate"

    def __init__(self, config: AnonymizeConfig, models: GenerateModels) -> None:
        self.config = config
        self.generator = models.generator
        self.landmarker = models.landmarker
        self._describe = models.describe
        self.min_size = config.generate_min_size
        self.fallback_name = config.generate_fallback
        self._fallback: RegionAnonymizer = (
            SolidAnonymizer(config) if config.generate_fallback == "solid" else BlurAnonymizer(config)
        )
        # z must be unpredictable: a per-run secret from the OS unless --seed is given.
        self._rng = np.random.default_rng(config.seed)
        self._tracks: TrackStates[_Track] = TrackStates(_Track.record)
        self.served: Counter[str] = Counter()  # faces per method
        self.reasons: Counter[str] = Counter()  # fallbacks per reason
        self._untracked = 0

    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.start(track_id, _Track(self.generator.latents(1, self._rng)[0], info.index))

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.end(track_id)

    def track_latent(self, track_id: int) -> NDArray[np.float32] | None:
        """The latent code of a live track (tests, debugging)."""
        t = self._tracks.get(track_id)
        return None if t is None else t.z.copy()

    def _landmarks(self, image: NDArray[np.uint8], rows: Detections, want: NDArray[np.bool_]) -> NDArray[np.float32]:
        out = np.full((len(rows), 68, 2), np.nan, np.float32)
        idx = np.flatnonzero(want)
        if len(idx):
            out[idx] = self.landmarker(image, rows.xyxy[idx])
        return out

    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = image.copy()
        regions, rows = masked_rows(image, dets, self.config)
        if not regions:
            return out
        c = self.config
        info = info or FrameInfo(0)
        t = info.time if info.time is not None else info.index / DEFAULT_FPS
        side = np.minimum(rows.xyxy[:, 2] - rows.xyxy[:, 0], rows.xyxy[:, 3] - rows.xyxy[:, 1])
        big = side >= self.min_size
        fit = self._landmarks(image, rows, big & (rows.source == SOURCE_DETECTOR))
        serve: list[int] = []
        points: list[NDArray[np.float32]] = []
        latents: list[NDArray[np.float32]] = []
        fallback: list[tuple[int, str]] = []
        for j in range(len(rows)):
            tid = int(rows.track_id[j])
            track = self._tracks.get(tid)
            if not big[j]:
                fallback.append((j, "small"))
                continue
            detected = rows.source[j] == SOURCE_DETECTOR
            p: NDArray[np.float32] | None = None
            how = "generate"
            if detected and plausible(fit[j], rows.landmarks[j]):
                p = track.smoother.update(fit[j], rows.xyxy[j], t) if track is not None else fit[j]
            elif track is not None:
                p, how = track.smoother.carry(rows.xyxy[j]), "generate-carried"
            if p is None:
                why = (
                    ("no-landmarks" if np.isnan(fit[j]).any() else "implausible-landmarks")
                    if detected
                    else "no-detection"
                )
                fallback.append((j, why))
                continue
            serve.append(j)
            points.append(p)
            if track is None:
                self._untracked += 1
                latents.append(self.generator.latents(1, self._rng)[0])
            else:
                latents.append(track.z)
                track.served[how] += 1
            self.served[how] += 1
        for j, why in fallback:  # first, so that generated faces match already-covered surroundings
            _, region = regions[j]
            x0, y0, x1, y1 = region.roi
            composite(out, region, self._fallback.replace(out[y0:y1, x0:x1], region), c.feather)
            self.served[self.fallback_name] += 1
            self.reasons[why] += 1
            track = self._tracks.get(int(rows.track_id[j]))
            if track is not None:
                track.served[self.fallback_name] += 1
        if serve:
            self._generate(out, image, rows, regions, serve, np.stack(points), np.stack(latents))
        return out

    def _generate(
        self,
        out: NDArray[np.uint8],
        image: NDArray[np.uint8],
        rows: Detections,
        regions: list[tuple[int, FaceRegion]],
        serve: list[int],
        points: NDArray[np.float32],
        latents: NDArray[np.float32],
    ) -> None:
        h, w = image.shape[:2]
        c = self.config
        sub = rows[np.array(serve, np.intp)]
        aligns = generator_alignments(sub, self.generator.size, points)
        masks = chip_masks(sub, aligns, w, h, c.mask_scale, c.mask_margin)
        faces = np.zeros((h, w), np.bool_)
        for _, reg in regions:
            x0, y0, x1, y1 = reg.roi
            faces[y0:y1, x0:x1] |= reg.mask > 0
        # The face is never shown to the model, whatever model it is: the chips are cut from
        # the frame with every face mask blanked (bilinear sampling at the chip mask's edge
        # would otherwise mix the face's outer pixels into the context), then blanked again
        # inside the chip mask.
        src = image.copy()
        src[faces] = 128
        chips = np.stack([warp_chip(src, a) for a in aligns])
        chips[masks > 0] = 128
        lms = np.stack([a.landmarks68 for a in aligns if a.landmarks68 is not None]).astype(np.float32)
        gen = self.generator(chips, masks, lms, latents)
        grey = is_grey(image)
        for k, j in enumerate(serve):
            paste_generated(out, image, faces, regions[j][1], aligns[k], gen[k], masks[k], c.feather, grey)

    def report(self) -> dict[str, Any]:
        return {
            **self._describe,
            "chip_size": self.generator.size,
            "z_dim": self.generator.z_dim,
            # the shape k-same reports its fallback in (None: every face was generated)
            "fallback": {
                "method": self.fallback_name,
                "faces": sum(self.reasons.values()),
                "why": ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())),
            }
            if self.reasons
            else None,
            "min_face_px": self.min_size,
            "carry_frames": CARRY_FRAMES,
            "faces": dict(self.served),
            "fallback_reasons": dict(self.reasons),
            "untracked_faces": self._untracked,
            "per_track": self._tracks.records(),
        }
