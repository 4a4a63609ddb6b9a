"""``adversarial``: faces that look unchanged but that a face recogniser no longer matches.

Each detected face is perturbed by L-infinity PGD (``adversarial_core.pgd``) against dlib's
ResNet recogniser (its torch port, ``streamanon.models.dlib_torch``): the loss is taken on
dlib's own 150x150 chip, cut from the frame by the differentiable
``extract_image_chips_torch`` at dlib's 5-point landmarks (fitted in the detector's box),
so the gradient reaches, and the perturbation lives in, the frame pixels that are written.
The perturbation is confined to the face's mask (``mask.face_region``: the same ellipse or
box every method replaces) and bounded exactly: no written pixel moves by more than
``epsilon`` code values (/255) from the decoded frame.

Over a video each track keeps its last perturbation in face coordinates (a raster aligned
with the dlib chip, so it follows the face as it moves, turns and scales) and the next
frame starts from it: a few refinement steps a frame keep the recogniser fooled, the first
frame of a track (and a still image) takes ``COLD_STEPS``. State is per track and ends
with it.

Objectives: ``untargeted`` (away from this frame's clean embedding), ``targeted`` (towards
a per-track decoy: a face-bank face of another person drawn by the run's secret) and
``k-anonymity`` (at least k - 1 face-bank identities closer than the true one); the last
two need ``--face-bank``. Robustness to the output encoder: expectation over
transformations (a JPEG-like 8x8 quantisation on the codec's 16-pixel grid, small resizes).

Rows the detector did not find in this frame (coasting or look-back rows, rows without
landmarks) have no face evidence to perturb reliably: they get the irreversible ``solid``
mask (counted in the report), never their raw pixels. Any error propagates, and the
pipeline then masks the whole frame (fail closed).

``perturb_replaced`` serves ``generate --adversarial`` (``generate_adversarial.py``): the
same PGD on pixels another method already replaced, relative to the ORIGINAL face's
embedding.

What this is not: irreversible. The face is all there; a recogniser trained or adapted
against such perturbations, or simply another one, may still match it (Radiya-Dixit et
al., "Data poisoning won't save you from facial recognition", ICLR 2022). Numbers measured
against dlib's ResNet are white-box numbers; ``streamanon eval identity --also faceres``
gives the transfer number.

torch is the ``[torch]`` extra; dlib and its models are the ``[align]`` (or ``[eval]``)
extra. Both load once per process, in the factory (``AdversarialModels``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..config import AnonymizeConfig
from ..errors import AnonymizationError, ConfigError, import_extra
from ..models.dlib_torch import (
    ChipDetails,
    chip_plan,
    extract_image_chips,
    extract_image_chips_torch,
    face_chip_details,
    shared_dlib_resnet,
)
from ..models.landmarks import landmarker5
from ..types import SOURCE_DETECTOR, Detections
from . import adversarial_core  # as a module: tests replace pgd
from .adversarial_core import EOTConfig, KAnonymity, PGDConfig, Targeted, Untargeted
from .base import FaceAnonymizer, FrameInfo, TrackStates
from .facebank import face_bank_folder
from .mask import FaceRegion, indexed_regions

if TYPE_CHECKING:
    import torch

    from ..models.dlib_torch import ChipDetails

log = logging.getLogger(__name__)

#: Default L-inf bound in code values (/255) when ``--epsilon`` is not given: the smallest
#: measured bound whose white-box protection survives the default encoder. ``streamanon eval
#: identity --also faceres --encode-crf 18,28`` on the shared identities (104 faces, 18
#: people), dlib leakage as is / after H.264 CRF 18 / CRF 28, face PSNR, SSIM:
#: eps 4: 7.7% / 39% / 90%, 37.9 dB, 0.963; eps 6: 1.0% / 3.8% / 49%, 34.9 dB, 0.933;
#: eps 8: 0% / 0% / 11%, 33.1 dB, 0.905. FaceRes (transfer) leaked 89-100% at all three.
DEFAULT_EPSILON = 6.0
#: Steps on the first frame of a track (or an untracked row): no perturbation to start from.
COLD_STEPS = 20
#: The warm-start raster spans the dlib chip's square grown by this factor (the face
#: mask and the chip's sampling border lie inside it).
STORE_SPAN = 2.0
#: Resampling of the warm-start raster (into face coordinates and back).
STORE_INTERP = cv2.INTER_LINEAR
#: Largest side of a warm-start raster (a close-up face is stored at reduced resolution).
STORE_MAX = 384
#: Crops are aligned to the codec's 16-pixel macroblock grid, so the JPEG-like EOT blocks
#: coincide with the encoder's.
GRID = 16
#: Alignment jitter of the gradient steps (part of EOT): shift and scale by up to this share
#: of the chip, rotation by up to this many radians. A recogniser aligns the face by its
#: own landmark fit: dlib's 5 points fitted in dlib's HOG box and in the product's box
#: differ by ~1% of the face (median; 2% at most) on the shared identities. On 8 of them
#: (eps 4), the mean distance at the HOG box's landmarks went 0.577 -> 0.591 with 1% jitter
#: (20 steps); with 3% and 6% it fell (10 steps: 0.529 -> 0.486, 0.456).
ALIGN_JITTER = 0.01
#: Resolution of the perturbation: cells across the dlib chip's square (the face plus its
#: padding); the delta is optimised at ``side / DELTA_CELLS`` px a cell (at least 1) and
#: enlarged bilinearly (``PGDConfig.scale``). None: every pixel free.
DELTA_CELLS: float | None = None
#: Expectation over transformations (``adversarial_core.EOTConfig`` fields over its defaults).
EOT_SETTINGS: dict[str, Any] = {}
#: dlib's same-person distance (``models.recognizer.THRESHOLD``).
THRESHOLD = 0.6
OBJECTIVES = ("untargeted", "targeted", "k-anonymity")


def _torch() -> Any:
    return import_extra("torch", "torch")


@dataclass(frozen=True)
class Gallery:
    """dlib embeddings of the face bank (targeted decoys, k-anonymity): ``(G, 128)`` and an
    integer identity per row (``names[label]``)."""

    embeddings: NDArray[np.float32]
    labels: NDArray[np.int64]
    names: tuple[str, ...]

    @property
    def identities(self) -> int:
        return len(self.names)


class AdversarialModels:
    """What every run of ``--method adversarial`` shares, read-only: the torch recogniser,
    the 5-point predictor and the face bank's embeddings.

    Raises:
        MissingDependencyError: torch or dlib is not installed.
        ModelError: a model file is missing or malformed.
        ConfigError: ``--device cuda`` without a CUDA GPU visible to torch.
    """

    def __init__(self, config: AnonymizeConfig) -> None:
        torch = _torch()
        self.device = config.device
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "--device cuda: PyTorch sees no CUDA GPU (install a CUDA build of torch, or use --device cpu)"
            )
        self.landmarker = landmarker5()
        self.net = shared_dlib_resnet(self.device)
        self.gallery: Gallery | None = None

    def load_gallery(self, folder: str | Path, detect: Callable[[NDArray[np.uint8]], Detections]) -> None:
        """Embed the largest face of every image of a ``--face-bank`` folder, found by the
        product's ``detect``: one identity per person (``facebank.face_bank_folder``: the
        layout and error behaviour k-same and surrogate share)."""
        if self.gallery is not None:
            return
        bank = face_bank_folder(folder)
        chips: list[NDArray[np.uint8]] = []
        names: list[str] = []
        for person, _, padded, face in bank.largest_faces(detect):
            lm = self.landmarker(padded, face.xyxy)[0]
            if np.isnan(lm).any():
                continue
            chips.append(extract_image_chips(padded, [face_chip_details(lm)])[0])
            names.append(person)
        if not chips:
            raise bank.no_face_error()
        torch = _torch()
        with torch.no_grad():
            x = torch.from_numpy(np.stack(chips).transpose(0, 3, 1, 2).copy()).to(self.device, torch.float32)
            emb = np.concatenate([self.net(x[i : i + 16]).cpu().numpy() for i in range(0, len(x), 16)])
        uniq = tuple(sorted(set(names)))
        labels = np.array([uniq.index(n) for n in names], np.int64)
        self.gallery = Gallery(emb.astype(np.float32), labels, uniq)
        log.info("face bank: %d faces of %d identities from %s", len(chips), len(uniq), bank.root)


# -- face geometry -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Face:
    """One perturbable face of a frame: where it is cut and where it may change."""

    row: int
    details: ChipDetails  # dlib chip, frame coordinates
    region: FaceRegion  # the face mask
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 of the pixels PGD works on


def _rect_side(d: ChipDetails) -> float:
    return float(d.rect[2] - d.rect[0] + 1)


def _chip_extent(d: ChipDetails, width: int, height: int) -> tuple[int, int, int, int]:
    """Frame pixels dlib's chip extraction reads for ``d`` (its rotated rectangle plus the
    pyramid's border, as ``extract_image_chips`` grows it), clipped to the frame."""
    x0, y0, x1, y1 = chip_plan(height, width, [d]).box
    return x0, y0, x1 + 1, y1 + 1


def _work_crop(d: ChipDetails, region: FaceRegion, width: int, height: int) -> tuple[int, int, int, int]:
    """The chip's source pixels and the mask together, widened to the 16-pixel grid."""
    cx0, cy0, cx1, cy1 = _chip_extent(d, width, height)
    rx0, ry0, rx1, ry1 = region.roi
    x0, y0 = min(cx0, rx0) // GRID * GRID, min(cy0, ry0) // GRID * GRID
    x1, y1 = min(width, max(cx1, rx1)), min(height, max(cy1, ry1))
    return x0, y0, x1, y1


def _jittered(d: ChipDetails, amount: float, rng: np.random.Generator) -> ChipDetails:
    """``d`` moved by up to ``amount`` of its side, scaled by up to ``1 +- amount`` and turned
    by up to ``amount`` radians (uniform draws); ``amount`` 0 returns ``d``."""
    if amount <= 0:
        return d
    side = _rect_side(d)
    dx, dy, ds, da = rng.uniform(-amount, amount, 4)
    cx, cy = (d.rect[0] + d.rect[2]) / 2.0 + dx * side, (d.rect[1] + d.rect[3]) / 2.0 + dy * side
    half = (side * (1 + ds) - 1) / 2.0
    return ChipDetails((cx - half, cy - half, cx + half, cy + half), d.angle + da, d.rows, d.cols)


def _store_matrix(d: ChipDetails, size: int) -> NDArray[np.float64]:
    """``(2, 3)`` affine taking frame pixels to a ``size`` x ``size`` raster aligned with the
    chip (rotation of the eye line removed), spanning ``STORE_SPAN`` x the chip's square."""
    cx, cy = (d.rect[0] + d.rect[2]) / 2.0, (d.rect[1] + d.rect[3]) / 2.0
    k = size / (_rect_side(d) * STORE_SPAN)
    ca, sa = math.cos(d.angle), math.sin(d.angle)
    c = (size - 1) / 2.0
    # q = k * R(-angle) (p - centre) + c
    return np.array(
        [[k * ca, k * sa, c - k * (ca * cx + sa * cy)], [-k * sa, k * ca, c - k * (-sa * cx + ca * cy)]], np.float64
    )


def _shifted(m: NDArray[np.float64], x0: int, y0: int) -> NDArray[np.float64]:
    """``m`` (frame -> raster) as a map from crop pixels (frame minus ``(x0, y0)``)."""
    out = m.copy()
    out[:, 2] += m[:, 0] * x0 + m[:, 1] * y0
    return out


def store_delta(delta: NDArray[np.float32], face: _Face, size: int) -> NDArray[np.float32]:
    """The crop's perturbation ``(h, w, 3)`` resampled into face coordinates ``(size, size, 3)``."""
    x0, y0 = face.crop[:2]
    m = _shifted(_store_matrix(face.details, size), x0, y0)
    out = cv2.warpAffine(delta, m, (size, size), flags=STORE_INTERP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.asarray(out, np.float32)


def recall_delta(store: NDArray[np.float32], face: _Face) -> NDArray[np.float32]:
    """A stored perturbation mapped onto this frame's crop of the same face ``(h, w, 3)``."""
    x0, y0, x1, y1 = face.crop
    m = _shifted(_store_matrix(face.details, store.shape[0]), x0, y0)
    out = cv2.warpAffine(
        store,
        m,
        (x1 - x0, y1 - y0),
        flags=STORE_INTERP | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.asarray(out, np.float32).reshape(y1 - y0, x1 - x0, 3)


def store_size(face: _Face) -> int:
    """Raster side: the face at its own resolution (capped at ``STORE_MAX``)."""
    return int(min(STORE_MAX, max(32, round(_rect_side(face.details) * STORE_SPAN))))


# -- the anonymiser ---------------------------------------------------------------------------


@dataclass
class _Track:
    first: int
    store: NDArray[np.float32] | None = None  # (S, S, 3) last perturbation in face coordinates
    decoy: NDArray[np.float32] | None = None  # (128,) targeted objective
    frames: int = 0
    perturbed: int = 0
    solid: int = 0
    satisfied: int = 0
    distances: list[float] = field(default_factory=list)


class AdversarialAnonymizer(FaceAnonymizer):
    """L-inf PGD against dlib's ResNet on every detected face, warm-started per track (module doc)."""

    name = "adversarial"

    def __init__(self, config: AnonymizeConfig, models: AdversarialModels) -> None:
        self.config = config
        self.models = models
        self.epsilon = float(config.epsilon if config.epsilon is not None else DEFAULT_EPSILON)
        if not 1.0 <= self.epsilon <= 255.0:
            raise ConfigError(
                f"invalid --epsilon {self.epsilon:g} for --method adversarial: "
                "it is in /255 code values, expected 1..255"
            )
        if config.adv_objective not in OBJECTIVES:
            raise ConfigError(f"invalid --objective {config.adv_objective!r}: choose from {', '.join(OBJECTIVES)}")
        if config.adv_objective != "untargeted" and models.gallery is None:
            raise ConfigError(f"--objective {config.adv_objective} needs faces of other people: give --face-bank DIR")
        if config.adv_objective == "k-anonymity":
            g = models.gallery
            assert g is not None
            if config.k > g.identities + 1:
                raise ConfigError(
                    f"--objective k-anonymity with --k {config.k}: the face bank has {g.identities} identities "
                    f"(k can be at most {g.identities + 1})"
                )
        self.steps = config.adv_steps
        self.cold_steps = max(COLD_STEPS, self.steps)
        self.eot = EOTConfig(**EOT_SETTINGS) if config.adv_eot else None
        self.jitter = ALIGN_JITTER if config.adv_eot else 0.0
        # The decoys and the random draws must be unpredictable: a per-run secret from the
        # OS unless --seed is given.
        self._rng = np.random.default_rng(config.seed)
        self._tracks: TrackStates[_Track] = TrackStates(self._record)
        self.faces = 0
        self.solid_rows = 0
        self.kept_rows = 0  # perturb_replaced: rows left as the other method wrote them
        self.unsatisfied = 0

    # -- lifecycle -----------------------------------------------------------------------
    def track_started(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.start(track_id, _Track(info.index))

    def track_ended(self, track_id: int, info: FrameInfo) -> None:
        self._tracks.end(track_id)

    @staticmethod
    def _record(t: _Track) -> dict[str, Any]:
        return {
            "first_frame": t.first,
            "frames": t.frames,
            "perturbed": t.perturbed,
            "solid": t.solid,
            "objective_met": t.satisfied,
            "distance_mean": round(float(np.mean(t.distances)), 4) if t.distances else None,
            "distance_min": round(float(np.min(t.distances)), 4) if t.distances else None,
        }

    def report(self) -> dict[str, Any]:
        return {
            "guarantee": (
                "none: an adversarial perturbation against dlib's ResNet (white-box); the face is all there and other "
                "or adaptive recognisers may still match it"
            ),
            "epsilon": self.epsilon,
            "epsilon_units": "code values (/255)",
            "steps": self.steps,
            "cold_steps": self.cold_steps,
            "objective": self.config.adv_objective,
            "eot": self.eot is not None,
            "device": self.models.device,
            "perturbed_faces": self.faces,
            "objective_not_met": self.unsatisfied,
            "solid_rows": self.solid_rows,
            "kept_rows": self.kept_rows,
            "per_track": self._tracks.records(),
        }

    # -- per frame -----------------------------------------------------------------------
    def apply(self, image: NDArray[np.uint8], dets: Detections, info: FrameInfo | None = None) -> NDArray[np.uint8]:
        out = image.copy()
        h, w = image.shape[:2]
        c = self.config
        faces: list[_Face] = []
        solid: list[tuple[int, FaceRegion]] = []
        perturbable = (dets.source == SOURCE_DETECTOR) & dets.has_landmarks
        rows = [i for i in range(len(dets)) if perturbable[i]]
        lm5 = self.models.landmarker(image, dets.xyxy[rows]) if rows else np.zeros((0, 5, 2), np.float32)
        fitted = dict(zip(rows, lm5, strict=True))
        for i, region in indexed_regions(dets, w, h, c.shape, c.mask_scale, c.mask_margin):
            pts = fitted.get(i)
            if pts is None or np.isnan(pts).any():
                solid.append((i, region))
                continue
            d = face_chip_details(pts)
            faces.append(_Face(i, d, region, _work_crop(d, region, w, h)))
        if faces:
            self._perturb(image, out, dets, faces)
        color = np.array(c.color, np.uint8)
        for i, region in solid:  # after the perturbed faces: an overlapping mask wins
            x0, y0, x1, y1 = region.roi
            out[y0:y1, x0:x1][region.mask > 0] = color
            self.solid_rows += 1
            t = self._tracks.get(int(dets.track_id[i]))
            if t is not None:
                t.frames += 1
                t.solid += 1
        return out

    def _objective(self, ref: torch.Tensor, tracks: Sequence[_Track | None]) -> Any:
        torch = _torch()
        kind = self.config.adv_objective
        if kind == "untargeted":
            return Untargeted(ref)
        if kind == "targeted":
            decoys = []
            for j, t in enumerate(tracks):
                if t is not None and t.decoy is not None:
                    decoys.append(t.decoy)
                    continue
                decoy = self._draw_decoy(ref[j].detach().cpu().numpy())
                if t is not None:
                    t.decoy = decoy
                decoys.append(decoy)
            return Targeted(torch.from_numpy(np.stack(decoys)).to(ref.device, ref.dtype))
        g = self.models.gallery
        assert g is not None  # checked in __init__
        n = len(ref)
        gallery = torch.cat([torch.from_numpy(g.embeddings).to(ref.device, ref.dtype), ref.detach()])
        labels = torch.cat([torch.from_numpy(g.labels), g.identities + torch.arange(n)]).to(ref.device)
        truth = (g.identities + torch.arange(n)).to(ref.device)
        return KAnonymity(gallery, labels, truth, k=self.config.k)

    def _draw_decoy(self, ref: NDArray[np.float32]) -> NDArray[np.float32]:
        """A face-bank face of another person (beyond ``THRESHOLD`` of this one), drawn by the
        run's secret. Synthetic decoys (random points in embedding space) were measured
        unreachable at these epsilons; real faces are reached."""
        g = self.models.gallery
        assert g is not None  # checked in __init__
        far = np.flatnonzero(np.linalg.norm(g.embeddings - ref, axis=1) > THRESHOLD)
        if not len(far):
            raise AnonymizationError(
                "--objective targeted: every face-bank face matches this face; no decoy to move it to"
            )
        return np.asarray(g.embeddings[int(self._rng.choice(far))], np.float32)

    def perturb_replaced(
        self, original: NDArray[np.uint8], replaced: NDArray[np.uint8], dets: Detections, eligible: NDArray[np.bool_]
    ) -> NDArray[np.uint8]:
        """``replaced`` (``original`` with its faces already replaced, e.g. by the generator)
        with every ``eligible`` detector row perturbed inside its mask, by at most epsilon
        around the replaced pixels, so that the recogniser's embedding of the written face
        moves away from (untargeted) the ORIGINAL face's embedding, or towards the track's
        decoy, or below rank k among the face bank and the original.

        The reference is taken on ``original`` at dlib's 5 points fitted there; the
        perturbation is computed on the chip at the points fitted on ``replaced`` (what a
        recogniser would see; the original's points where no fit is found there). Rows that
        are not eligible, not from the detector, or without a 5-point fit on ``original``
        keep their replaced pixels (counted as ``kept_rows``): they are already
        anonymised, the perturbation is an add-on. Any error propagates (fail closed).
        """
        out = replaced.copy()
        h, w = original.shape[:2]
        c = self.config
        ok = (dets.source == SOURCE_DETECTOR) & dets.has_landmarks & np.asarray(eligible, np.bool_)
        rows = [i for i in range(len(dets)) if ok[i]]
        lm_orig: dict[int, NDArray[np.float32]] = {}
        lm_repl: dict[int, NDArray[np.float32]] = {}
        if rows:
            boxes = dets.xyxy[rows]
            lm_orig = dict(zip(rows, self.models.landmarker(original, boxes), strict=True))
            lm_repl = dict(zip(rows, self.models.landmarker(replaced, boxes), strict=True))
        faces: list[_Face] = []
        refs: list[ChipDetails] = []
        for i, region in indexed_regions(dets, w, h, c.shape, c.mask_scale, c.mask_margin):
            p0 = lm_orig.get(i)
            if p0 is None or np.isnan(p0).any():
                self.kept_rows += 1
                continue
            p1 = lm_repl[i]
            d = face_chip_details(p1 if not np.isnan(p1).any() else p0)
            faces.append(_Face(i, d, region, _work_crop(d, region, w, h)))
            refs.append(face_chip_details(p0))
        if faces:
            self._perturb(replaced, out, dets, faces, reference=self._embed_clean(original, refs))
        return out

    def _embed_clean(self, image: NDArray[np.uint8], details: list[ChipDetails]) -> torch.Tensor:
        """The recogniser's embeddings of ``image``'s faces at ``details`` (no gradient)."""
        th = _torch()
        chips = extract_image_chips(image, details)
        x = th.from_numpy(chips.transpose(0, 3, 1, 2).copy()).to(self.models.device, th.float32)
        with th.no_grad():
            emb: torch.Tensor = self.models.net(x)
        return emb

    def _perturb(
        self,
        image: NDArray[np.uint8],
        out: NDArray[np.uint8],
        dets: Detections,
        faces: list[_Face],
        reference: torch.Tensor | None = None,
    ) -> None:
        """PGD on the frame's faces as one batch; writes the perturbed masks into ``out``.
        The objective is relative to ``reference`` (``(F, 128)``, e.g. the original faces'
        embeddings when ``image`` holds replaced faces), or to ``image``'s own faces."""
        th = _torch()
        batch = _Batch.cut(image, faces, [self._track_of(dets, f) for f in faces])
        x = th.from_numpy(batch.crops.transpose(0, 3, 1, 2).copy()).to(self.models.device, th.float32)
        mask = th.from_numpy(batch.masks[:, None]).to(self.models.device, th.float32)
        jitter_rng = np.random.default_rng(int(self._rng.integers(2**62)))
        embed = _ChipEmbedder(self.models.net, batch, self.jitter, jitter_rng)
        if reference is None:
            with th.no_grad():
                reference = embed(x)
        objective = self._objective(reference, batch.tracks)
        cfg = self._pgd_config(faces, batch)
        start = self._warm_start(batch, cfg)
        res = adversarial_core.pgd(x, embed, objective, cfg, warm_start=start, mask=mask)
        self._write(out, batch, res, reference)
        n, met = len(faces), int(res.satisfied.sum())
        log.debug("adversarial: %d faces, %d steps, %d/%d objective met", n, cfg.steps, met, n)

    def _track_of(self, dets: Detections, face: _Face) -> _Track | None:
        return self._tracks.get(int(dets.track_id[face.row]))

    def _pgd_config(self, faces: list[_Face], batch: _Batch) -> PGDConfig:
        """A batch mixes warm tracks and new ones: new faces then start from their random
        start inside the warm batch (pgd takes one start for the batch), with the cold
        step count, so they still get the full budget."""
        steps = self.steps if batch.any_warm and not batch.cold else self.cold_steps
        side = min(_rect_side(f.details) for f in faces)
        return PGDConfig(
            epsilon=self.epsilon,
            steps=steps,
            eot=self.eot,
            seed=int(self._rng.integers(2**62)),
            scale=1 if DELTA_CELLS is None else int(min(16, max(1, side // DELTA_CELLS))),
        )

    def _warm_start(self, batch: _Batch, cfg: PGDConfig) -> torch.Tensor | None:
        """The tracks' stored perturbations as pgd's start (None when no face has one); the
        faces without one get pgd's own random start (amplitude ``PGDConfig.random_start``)."""
        if not batch.any_warm:
            return None
        th = _torch()
        dev = self.models.device
        start: torch.Tensor = th.from_numpy(batch.warm.transpose(0, 3, 1, 2).copy()).to(dev, th.float32)
        if batch.cold:
            gen = th.Generator().manual_seed(int(self._rng.integers(2**62)))
            amp = min(cfg.random_start, self.epsilon)
            noise = (th.rand((len(batch.cold), *start.shape[1:]), generator=gen) * 2 - 1) * amp
            start[batch.cold] = noise.to(dev)
        return start

    def _write(self, out: NDArray[np.uint8], batch: _Batch, res: adversarial_core.PGDResult, ref: torch.Tensor) -> None:
        """The perturbed pixels inside each mask into ``out``; the counts and each track's
        stored perturbation (in face coordinates) updated."""
        th = _torch()
        delta = res.delta.detach().cpu().numpy().transpose(0, 2, 3, 1)
        adv = np.clip(np.rint(batch.crops.astype(np.float32) + delta), 0, 255).astype(np.uint8)
        dist = th.linalg.vector_norm(res.embeddings - ref, dim=1).cpu().numpy()
        ok = res.satisfied.cpu().numpy()
        for j, f in enumerate(batch.faces):
            x0, y0, x1, y1 = f.crop
            hh, ww = y1 - y0, x1 - x0
            sel = batch.masks[j, :hh, :ww] > 0
            out[y0:y1, x0:x1][sel] = adv[j, :hh, :ww][sel]
            self.faces += 1
            self.unsatisfied += int(not ok[j])
            t = batch.tracks[j]
            if t is not None:
                t.store = store_delta(np.ascontiguousarray(delta[j, :hh, :ww]), f, store_size(f))
                t.frames += 1
                t.perturbed += 1
                t.satisfied += int(ok[j])
                t.distances.append(float(dist[j]))


@dataclass(frozen=True)
class _Batch:
    """A frame's perturbable faces as one PGD batch: crops padded to a common size."""

    faces: list[_Face]
    tracks: list[_Track | None]
    crops: NDArray[np.uint8]  # (F, H, W, 3), edge-replicated past each crop
    masks: NDArray[np.float32]  # (F, H, W), 1 where the face mask lets the perturbation go
    warm: NDArray[np.float32]  # (F, H, W, 3), the tracks' stored perturbations (0 where none)
    shifted: list[ChipDetails]  # each face's chip in crop coordinates
    cold: list[int]  # faces whose track has no stored perturbation

    @property
    def any_warm(self) -> bool:
        return len(self.cold) < len(self.faces)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [(f.crop[3] - f.crop[1], f.crop[2] - f.crop[0]) for f in self.faces]

    @classmethod
    def cut(cls, image: NDArray[np.uint8], faces: list[_Face], tracks: list[_Track | None]) -> _Batch:
        hmax = max(f.crop[3] - f.crop[1] for f in faces)
        wmax = max(f.crop[2] - f.crop[0] for f in faces)
        n = len(faces)
        crops = np.zeros((n, hmax, wmax, 3), np.uint8)
        masks = np.zeros((n, hmax, wmax), np.float32)
        warm = np.zeros((n, hmax, wmax, 3), np.float32)
        shifted: list[ChipDetails] = []
        for j, (f, t) in enumerate(zip(faces, tracks, strict=True)):
            x0, y0, x1, y1 = f.crop
            hh, ww = y1 - y0, x1 - x0
            # edge-replicated padding: the EOT's blocks at the crop's edge see plausible pixels
            crops[j] = cv2.copyMakeBorder(image[y0:y1, x0:x1], 0, hmax - hh, 0, wmax - ww, cv2.BORDER_REPLICATE)
            rx0, ry0, rx1, ry1 = f.region.roi
            masks[j, ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0] = f.region.mask > 0
            r, d = f.details.rect, f.details
            shifted.append(ChipDetails((r[0] - x0, r[1] - y0, r[2] - x0, r[3] - y0), d.angle, d.rows, d.cols))
            if t is not None and t.store is not None:
                warm[j, :hh, :ww] = recall_delta(t.store, f)
        cold = [j for j, t in enumerate(tracks) if t is None or t.store is None]
        return cls(faces, tracks, crops, masks, warm, shifted, cold)


class _ChipEmbedder:
    """pgd's ``embed``: each crop's dlib chip (differentiable) through the recogniser.

    Gradient steps (grad mode on) see the chip at a slightly jittered alignment: other
    landmark fits, other recognisers' crops; the result is judged unjittered."""

    def __init__(self, net: Any, batch: _Batch, jitter: float, rng: np.random.Generator) -> None:
        self.net = net
        self.shifted = batch.shifted
        self.sizes = batch.sizes
        self.jitter = jitter
        self.rng = rng

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        th = _torch()
        jit = self.jitter if th.is_grad_enabled() else 0.0
        chips = [
            extract_image_chips_torch(batch[j, :, :hh, :ww], [_jittered(self.shifted[j], jit, self.rng)])
            for j, (hh, ww) in enumerate(self.sizes)
        ]
        emb: torch.Tensor = self.net(th.cat(chips))
        return emb
