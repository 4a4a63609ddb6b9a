"""The surrogate bank: composite faces of nobody (k-Same-M style), built once, shipped small.

Each composite is made of ``k`` different persons' faces, every face first warped onto the
bank's common mean shape by piecewise-affine warps over its landmarks (dlib's 68 points plus
``FOREHEAD`` points above the brows), so an average stays sharp instead of a ghost of
misaligned features. The shipped bank's and a ``--face-bank`` folder's composites are
whole-face averages of ``k`` persons; ``build --per-part 3`` builds *parts composites*
(``parts_composite``): the skin and outline of an average of 3 persons, the eyes with brows,
the nose and the mouth each of another such average, the forehead the average of all (12
persons in all, of one FaceRes gender). They look more real to ``eval natural``'s classifier
but leaked more under FaceRes (docs/faces.md, *Diagnosis*): not the default. A composite is
kept only if it is nobody in the bank: its dlib distance to every photo of every bank person is
at least dlib's same-person 0.6 (plus ``dlib_margin``), and its FaceRes distance at least
FaceRes's 1%-false-match threshold (``models.faceres.THRESHOLD``).

The file (``.npz``) holds composites only (never a raw face): ``faces`` (N, S, S, 3) uint8,
``shape`` (P, 2) the mean shape in composite pixels, ``triangles`` (T, 3) the Delaunay
triangulation of ``shape``, ``gender`` and ``age_band`` per composite (FaceRes of the
composite alone on its tile) and ``min_dlib`` / ``min_faceres``, the distance to the nearest bank
photo. A relabelled bank (``engines/build_surrogate_bank.py relabel``) also holds
``painted_gender`` and ``painted_consistency``: the gender FaceRes reads of the composite painted
into photos through the product, and the share of those paintings read so (``painted_labels``);
``--keep gender`` then draws only composites consistent to ``KEEP_CONSISTENCY``
(``SurrogateBank.keeps_gender``).

Build the default bank: ``python -m streamanon.anonymize.surrogate_bank build`` (see
``engines/SURROGATE_BANK_CARD.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from ..backends.registry import resolve_model
from ..errors import ConfigError, ModelError
from ..geometry import similarity
from ..models.faceres import MALE_AT, FaceResRecogniser
from ..models.faceres import THRESHOLD as FACERES_THRESHOLD
from ..models.landmarks import Landmarker68
from ..models.recognizer import THRESHOLD as DLIB_THRESHOLD
from ..models.recognizer import DlibRecogniser, distance
from ..models.store import shared
from .facebank import FaceBankFolder, face_bank_folder
from .generate import extend_outside

log = logging.getLogger(__name__)

#: Side of a composite (px): sharp enough for portrait-size faces after the warp.
SIZE = 160
#: Persons averaged into one composite (k of k-Same-M).
K = 12
#: Composites in the shipped bank.
COUNT = 32
#: A composite's texture is pushed away from the bank's mean face by this factor
#: (``mean + CONTRAST x (average - mean)``): an average of k faces drifts toward the
#: bland mean face, which both recognisers put near many people; 1.5 keeps it a distinct,
#: plausible face (2.5 showed artefacts), chosen by eye on 8 composites.
CONTRAST = 1.5
#: Persons averaged into each of a composite's ``PARTS`` (0: the whole face one average of ``k``
#: persons). A parts composite takes the skin and outline of one average of ``PER_PART``
#: persons, its eyes and brows, nose and mouth each from another such average and its forehead
#: from the mean of all: ``4 x PER_PART`` = 12 different persons, none of whom it shows whole. An average of 12 whole
#: faces is a bland face that a classifier on FaceRes features tells from real ones (0.99 in
#: ``eval natural``); parts of 3 persons each keep more of a single face (0.91), but leaked
#: more (FaceRes 3 of 104 faces with a secret per photo; docs/faces.md, *Diagnosis*): the
#: shipped bank stays whole faces (``build --per-part 0``, the default).
PER_PART = 3
#: The parts taken from other persons than the base (skin, outline): point indices
#: of the 78-point shape, each part the hull of its points (the eyes: one hull per eye and brow).
PARTS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (tuple(range(17, 22)) + tuple(range(36, 42)), tuple(range(22, 27)) + tuple(range(42, 48))),
    (tuple(range(27, 36)),),
    (tuple(range(48, 68)),),
)
#: The forehead: the brows and the points above them (taken from all the persons' mean).
FOREHEAD_PART: tuple[tuple[int, ...], ...] = (tuple(range(17, 27)) + tuple(range(68, 78)),)
#: A part's hull is grown by this share of the composite's side, then feathered by half of it.
PART_GROW = 0.025
#: A parts bank keeps a composite only this far beyond dlib's threshold (``build_bank``'s
#: ``dlib_margin``; whole-face banks: 0, the shipped bank's setting): the distance the builder
#: measures (bank photos scaled to the composite's size) is not the distance another measurement
#: gets (the full photo: a parts composite recorded at 0.611 measured 0.599 from its nearest bank
#: person in ``tests/anonymize/test_surrogate.py``). (The same margin on FaceRes's threshold let
#: 0 of 300 draws pass.)
DLIB_MARGIN = 0.03
#: Age bands (FaceRes age, years) a composite is filed under (``--keep age``).
AGE_BANDS: tuple[tuple[str, float], ...] = (("child", 16.0), ("young", 35.0), ("middle", 55.0), ("older", 200.0))
#: Points added above the brows (the forehead, which dlib's 68 points leave out): each brow
#: point moved up by this share of the brow-to-chin height.
FOREHEAD_LIFT = 0.28
#: ``--keep gender`` draws a composite for a gender only where at least this share of its
#: paintings (``painted_consistency``) were read as that gender: a composite FaceRes reads both
#: ways once painted gives the original's gender only part of the time (SURROGATE_BANK_CARD.md).
KEEP_CONSISTENCY = 0.9
#: Registry name of the shipped bank.
REGISTRY_NAME = "surrogate-bank"
#: The default bank's sources (``identities_extra`` folders; terms in the card).
DEFAULT_SOURCES = (
    "identities_extra/clovaai__stargan-v2",
    "identities_extra/ZPdesu__SEAN",
    "identities_extra/yuval-alaluf__SAM",
)


def painted_labels(male: NDArray[Any]) -> tuple[NDArray[np.str_], NDArray[np.float32]]:
    """Each composite's painted gender and its consistency from ``male`` (composites x
    paintings: FaceRes's probability of male of each painting; NaN where no face was read):
    the gender most of its paintings are read as (``MALE_AT``; a tie: female) and the share of
    its read paintings read so (0 where none was read).

    Raises:
        ValueError: ``male`` is not 2-D.
    """
    m = np.asarray(male, np.float64)
    if m.ndim != 2:
        raise ValueError(f"painted_labels: expected (composites, paintings), got shape {m.shape}")
    read = np.isfinite(m)
    n = read.sum(1)
    males = (np.where(read, m, 0.0) >= MALE_AT).sum(1)
    is_male = males * 2 > n
    share = np.where(is_male, males, n - males) / np.maximum(n, 1)
    return np.where(is_male, "male", "female"), np.where(n > 0, share, 0.0).astype(np.float32)


def age_band(age: float) -> str:
    """The ``AGE_BANDS`` name of an age in years."""
    for name, hi in AGE_BANDS:
        if age < hi:
            return name
    return AGE_BANDS[-1][0]


# -- geometry ---------------------------------------------------------------------------
def with_forehead(points68: NDArray[Any], lift: float = FOREHEAD_LIFT) -> NDArray[np.float32]:
    """``(78, 2)``: the 68 points and 10 forehead points (brows lifted by ``lift`` of the
    brow-to-chin height along the face's up axis)."""
    p = np.asarray(points68, np.float32)
    brows = p[17:27]
    up = brows.mean(0) - p[8]  # chin -> brow centre
    out: NDArray[np.float32] = np.vstack([p, brows + lift * up]).astype(np.float32)
    return out


#: ``clean_forehead``: the forehead band starts this far above the brows' line and the skin
#: it is refilled from lies between this and ``CLEAN_SEED_TOP`` (fractions of brow-to-chin).
CLEAN_FROM = 0.08
CLEAN_SEED_TOP = 0.12
#: The refill's reach (Gaussian sigma, fraction of brow-to-chin): how far skin is carried.
CLEAN_SIGMA = 0.10
#: Fewer skin pixels than this to refill from: the composite is left as it is.
CLEAN_MIN_SEED = 12
#: Weight of the seed's median colour in the fill: what pixels far from any skin take.
CLEAN_PRIOR = 0.02


def hull_mask(hw: tuple[int, int], points: NDArray[Any]) -> NDArray[np.bool_]:
    """Where the convex hull of ``points`` (rounded to whole px) covers an ``hw`` image."""
    m = np.zeros(hw, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return m > 0


def clean_forehead(face: NDArray[np.uint8], shape: NDArray[Any], reach: float) -> NDArray[np.uint8]:
    """``face`` (a composite on ``shape``) with its forehead and temples refilled with its own skin.

    A composite averages the fringes, hairlines and temples of its persons: hair strands as
    faint streaks over the forehead and brown-red smudges at the temples, which the colour
    match turned into red patches beside the eyes of a painted face. Above ``CLEAN_FROM`` over
    the brows' line, and beside the brows above the eyes, inside the hull of ``shape``'s 68
    points with the brows lifted by ``reach`` (``paint``'s lift on the face: higher than the
    bank's own forehead points, so the refill is whole up to the top of what is warped), the
    pixels are replaced by the composite's own skin
    carried outward from the skin just above the brows and on the cheeks (a normalised
    Gaussian fill: a smooth skin field, lit as those parts are). Brows and eyes are kept. The
    refill is the composite's only: nothing of any face being painted is read.
    """
    p = np.asarray(shape[:68], np.float64)
    hw = face.shape[:2]
    base = p[17:27].mean(0)
    up = base - p[8]  # chin -> brows
    height = float(np.linalg.norm(up))
    if height < 1.0:
        return face
    u = up / height
    ys, xs = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    above = ((xs - base[0]) * u[0] + (ys - base[1]) * u[1]) / height
    r = max(1, round(0.03 * height))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    brows = cv2.dilate((hull_mask(hw, p[17:22]) | hull_mask(hw, p[22:27])).astype(np.uint8), disk) > 0
    eyes = cv2.dilate((hull_mask(hw, p[36:42]) | hull_mask(hw, p[42:48])).astype(np.uint8), disk) > 0
    eye_line = float(p[36:48, 1].mean())
    temples = ((xs < p[17, 0]) | (xs > p[26, 0])) & (ys < eye_line)
    region = hull_mask(hw, with_forehead(p, reach)) & ~brows & ((above > CLEAN_FROM) | temples)
    lo, hi = sorted((p[19, 0], p[24, 0]))
    seed = (above > CLEAN_FROM / 2) & (above < CLEAN_SEED_TOP) & (xs > lo) & (xs < hi) & ~brows
    if int(seed.sum()) < CLEAN_MIN_SEED:
        return face
    cheeks = hull_mask(hw, p[1:16]) & (ys > eye_line) & ~eyes & ~region
    known = (seed | cheeks).astype(np.float32)
    sigma = CLEAN_SIGMA * height
    num = cv2.GaussianBlur(face.astype(np.float32) * known[:, :, None], (0, 0), sigma)
    den = cv2.GaussianBlur(known, (0, 0), sigma)[:, :, None]
    # far from any skin (the top of a high forehead) the fill tends to the seed's median
    # colour instead of dividing next to nothing by next to nothing
    fill = (num + CLEAN_PRIOR * np.median(face[seed], axis=0)) / (den + CLEAN_PRIOR)
    weight = cv2.GaussianBlur(region.astype(np.float32), (0, 0), max(1.0, 0.02 * height))[:, :, None]
    out = face.astype(np.float32) * (1 - weight) + fill * weight
    cleaned: NDArray[np.uint8] = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return cleaned


def triangulate(points: NDArray[Any]) -> NDArray[np.int32]:
    """Delaunay triangles (T, 3) of ``points`` (indices)."""
    from scipy.spatial import Delaunay

    tri: NDArray[np.int32] = np.asarray(Delaunay(np.asarray(points, np.float64)).simplices, np.int32)
    return tri


def piecewise_affine(
    src: NDArray[np.uint8],
    src_pts: NDArray[Any],
    dst_pts: NDArray[Any],
    triangles: NDArray[np.int32],
    out_size: tuple[int, int],
    origin: tuple[float, float] = (0.0, 0.0),
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Warp ``src`` so that ``src_pts`` land on ``dst_pts`` (one affine per triangle).

    The output is ``out_size`` (w, h) with ``origin`` the output's top-left in ``dst_pts``'
    coordinates; returns the image and where a triangle covered it. Each output pixel takes
    its triangle's inverse affine in one ``cv2.remap``.
    """
    w, h = out_size
    d = np.asarray(dst_pts, np.float64) - np.asarray(origin, np.float64)
    s = np.asarray(src_pts, np.float64)
    tri_d, tri_s = d[triangles], s[triangles]  # (T, 3, 2)
    # every triangle's output -> source affine in one batched solve: [x y 1] @ M = source
    dm = np.concatenate([tri_d, np.ones((len(triangles), 3, 1))], axis=2)
    det = np.linalg.det(dm)
    ok = np.abs(det) > 1e-6  # degenerate in the output: covers nothing
    mats = np.zeros((len(triangles) + 1, 2, 3), np.float64)
    mats[1:][ok] = np.linalg.solve(dm[ok], tri_s[ok]).transpose(0, 2, 1)
    ids = np.zeros((h, w), np.int32)
    fixed = np.round(tri_d * 16).astype(np.int32)
    for t in np.flatnonzero(ok):
        cv2.fillConvexPoly(ids, fixed[t], int(t) + 1, lineType=cv2.LINE_8, shift=4)
    covered = ids > 0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    m = mats[ids].astype(np.float32)
    map_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
    map_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
    map_x[~covered] = -1
    map_y[~covered] = -1
    out = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.uint8), covered


# -- the bank ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SurrogateBank:
    """Composites of nobody, their common shape and what FaceRes says they look like."""

    faces: NDArray[np.uint8]
    shape: NDArray[np.float32]
    triangles: NDArray[np.int32]
    gender: NDArray[np.str_]
    age_band: NDArray[np.str_]
    min_dlib: NDArray[np.float32]
    min_faceres: NDArray[np.float32]
    k: int
    source: str = ""
    #: dlib's 128-d vector of each composite (``describe``; None in a bank built before them):
    #: what keeps two tracks from drawing composites that look like one person.
    dlib: NDArray[np.float32] | None = None
    #: FaceRes's gender of the composite painted into photos, and the share of its paintings
    #: read so (``painted_labels``); None in a bank not relabelled (a ``--face-bank`` folder's).
    painted_gender: NDArray[np.str_] | None = None
    painted_consistency: NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.faces)

    def keeps_gender(self, gender: str) -> NDArray[np.bool_]:
        """The composites ``--keep gender`` draws for a face of ``gender``: of that painted
        gender at a consistency of at least ``KEEP_CONSISTENCY`` where the bank was relabelled,
        else of that gender on the tile (``gender``). May be all False (the caller relaxes)."""
        if self.painted_gender is None or self.painted_consistency is None:
            out: NDArray[np.bool_] = self.gender == gender
            return out
        keep: NDArray[np.bool_] = (self.painted_gender == gender) & (self.painted_consistency >= KEEP_CONSISTENCY)
        return keep

    def relabelled(self, gender: NDArray[Any], consistency: NDArray[Any]) -> SurrogateBank:
        """This bank with painted labels (one per composite; the composites untouched).

        Raises:
            ValueError: not one label per composite, a gender not male/female, or a
                consistency outside [0, 1].
        """
        g, c = np.asarray(gender).astype(str), np.asarray(consistency, np.float32)
        if g.shape != (len(self),) or c.shape != (len(self),):
            raise ValueError(f"painted labels: expected {len(self)} of each, got {g.shape} and {c.shape}")
        if not np.isin(g, ("male", "female")).all() or not ((c >= 0) & (c <= 1)).all():
            raise ValueError("painted labels: gender must be male/female and consistency in [0, 1]")
        return dataclasses.replace(self, painted_gender=g, painted_consistency=c)

    def only(self, index: int) -> SurrogateBank:
        """A bank of composite ``index`` alone (its draw is that composite: the relabel paints each)."""
        s = slice(index, index + 1)
        pg, pc = self.painted_gender, self.painted_consistency
        return dataclasses.replace(
            self,
            faces=self.faces[s],
            dlib=None if self.dlib is None else self.dlib[s],
            gender=self.gender[s],
            age_band=self.age_band[s],
            min_dlib=self.min_dlib[s],
            min_faceres=self.min_faceres[s],
            painted_gender=None if pg is None else pg[s],
            painted_consistency=None if pc is None else pc[s],
        )

    def save(self, path: str | Path) -> None:
        extra: dict[str, Any] = {} if self.dlib is None else {"dlib": self.dlib}
        if self.painted_gender is not None and self.painted_consistency is not None:
            extra |= {"painted_gender": self.painted_gender, "painted_consistency": self.painted_consistency}
        np.savez_compressed(
            path,
            faces=self.faces,
            shape=self.shape,
            triangles=self.triangles,
            gender=self.gender,
            age_band=self.age_band,
            min_dlib=self.min_dlib,
            min_faceres=self.min_faceres,
            k=np.int32(self.k),
            **extra,
        )

    @classmethod
    def load(cls, path: str | Path) -> SurrogateBank:
        """Read a bank file; ModelError if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as z:
                bank = cls(
                    np.asarray(z["faces"], np.uint8),
                    np.asarray(z["shape"], np.float32),
                    np.asarray(z["triangles"], np.int32),
                    np.asarray(z["gender"]),
                    np.asarray(z["age_band"]),
                    np.asarray(z["min_dlib"], np.float32),
                    np.asarray(z["min_faceres"], np.float32),
                    int(z["k"]),
                    str(path),
                    np.asarray(z["dlib"], np.float32) if "dlib" in z.files else None,
                )
                if "painted_gender" in z.files or "painted_consistency" in z.files:
                    bank = bank.relabelled(z["painted_gender"], z["painted_consistency"])
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:  # TypeError: a bare .npy
            raise ModelError(f"not a surrogate bank: {path}: {exc}") from exc
        if bank.faces.ndim != 4 or not len(bank.faces) or bank.shape.shape != (78, 2):
            raise ModelError(f"not a surrogate bank: {path}: unexpected array shapes")
        if bank.dlib is not None and bank.dlib.shape != (len(bank.faces), 128):
            raise ModelError(f"not a surrogate bank: {path}: dlib vectors of shape {bank.dlib.shape}")
        return bank


def default_bank() -> SurrogateBank:
    """The shipped bank (``engines/surrogate-bank.npz``, checksum from the registry)."""
    return SurrogateBank.load(resolve_model(REGISTRY_NAME))


def surrogate_bank(face_bank: str | None, k: int = K) -> SurrogateBank:
    """The bank of a run: the shipped one, a bank file (``.npz``), or composites of ``k``
    persons each built from a ``--face-bank`` folder of consenting people
    (``facebank.face_bank_folder``: ``<person>/<photo>``).

    Loaded (or built) once per process and shared read-only, like the other models: streams
    makes one factory per feed, eval one per method.

    Raises:
        ConfigError: the path is neither a file nor a folder, the folder holds no face, or
            fewer than ``k`` persons with a face (``k`` is never lowered to fit the folder).
        ModelError: the file is not a bank.
    """
    return shared(REGISTRY_NAME, (face_bank, k), lambda: _load_bank(face_bank, k))


def _load_bank(face_bank: str | None, k: int) -> SurrogateBank:
    if face_bank is None:
        return default_bank()
    path = Path(face_bank)
    if path.is_file():
        return SurrogateBank.load(path)
    if not path.is_dir():
        raise ConfigError(f"--face-bank {path}: neither a bank file nor a folder")
    log.info("surrogate: building composites of k=%d persons from %s", k, path)
    return build_bank([path], count=COUNT, k=k)


@dataclass
class _Photo:
    person: str
    aligned: NDArray[np.uint8]  # warped onto the mean shape
    dlib: NDArray[np.float32]
    faceres: NDArray[np.float32]
    male: float
    age: float


def _read_faces(folders: Sequence[FaceBankFolder], size: int) -> tuple[list[tuple[str, Any, Any, Any]], Any, Any]:
    """(person, image, face, 68 points) of one photo per person: the first of the person's
    photos where dlib finds a face and fits its 68 points (its largest face)."""
    rec = DlibRecogniser("hog", 1, max_side=600)
    lm = Landmarker68()
    out: list[tuple[str, Any, Any, Any]] = []
    for bank in folders:
        for person, paths in bank.persons.items():
            for path in paths:
                img = bank.read(path)
                got = None if img is None else _one_face(rec, lm, img, size)
                if got is not None:
                    out.append((f"{bank.root.name}/{person}", *got))
                    break
    return out, rec, FaceResRecogniser(locator=rec)


def _one_face(rec: Any, lm: Any, img: NDArray[np.uint8], size: int) -> tuple[Any, Any, Any] | None:
    """(image scaled for the warp, its largest dlib face, 68 points) or None."""
    faces = rec.detect(img)
    if not faces:
        return None
    scale = min(1.0, 1.2 * size / max(faces[0].size, 1.0))  # no aliasing in the warp down
    if scale < 1.0:
        img = np.ascontiguousarray(
            cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        )
    f = rec.locate(img, faces[0].box * scale)
    p68 = lm(img, f.box[None])[0]
    if not np.isfinite(p68).all():
        return None
    return img, f, p68


def mean_shape(shapes: Sequence[NDArray[np.float32]], size: int) -> NDArray[np.float32]:
    """The mean of ``shapes`` (78 points each) after a similarity onto a fitted template,
    placed in a ``size`` square with margins."""
    ref = shapes[0]
    for _ in range(3):  # generalised Procrustes: align to the running mean
        aligned = [_apply(similarity(s, ref), s) for s in shapes]
        ref = np.mean(aligned, axis=0).astype(np.float32)
    lo, hi = ref.min(0), ref.max(0)
    scale = 0.84 * size / float((hi - lo).max())
    centred: NDArray[np.float32] = ((ref - (lo + hi) / 2) * scale + size / 2).astype(np.float32)
    return centred


def _apply(m: NDArray[np.float64], p: NDArray[Any]) -> NDArray[np.float32]:
    out: NDArray[np.float32] = (np.asarray(p, np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return out


def composite_face(dlib_rec: Any, image: NDArray[np.uint8], shape: NDArray[np.float32]) -> Any:
    """A dlib ``Face`` of a composite (box from its known shape, 5 points fitted in it)."""
    lo, hi = shape[:68].min(0), shape[:68].max(0)
    return dlib_rec.locate(image, np.array([lo[0], lo[1], hi[0], hi[1]], np.float32))


@dataclass
class BankPhotos:
    """The bank persons' faces on the common shape, with their recogniser vectors."""

    photos: list[_Photo]
    shape: NDArray[np.float32]
    triangles: NDArray[np.int32]
    dlib_rec: Any
    faceres: Any


def load_photos(folders: Sequence[str | Path], size: int = SIZE) -> BankPhotos:
    """One photo of every person of the folders (``facebank.face_bank_folder``; the first
    photo with a dlib face, its largest), warped onto the mean shape.

    Raises:
        ConfigError: a folder does not exist or holds no image, or no face is found.
    """
    banks = [face_bank_folder(folder) for folder in folders]
    found, dlib_rec, faceres = _read_faces(banks, size)
    log.info("bank: faces of %d persons of %d", len(found), sum(len(b.persons) for b in banks))
    if not found:
        raise banks[0].no_face_error()
    shapes = [with_forehead(p68) for _, _, _, p68 in found]
    mshape = mean_shape(shapes, size)
    tri = triangulate(mshape)
    photos: list[_Photo] = []
    for (name, img, face, _), pts in zip(found, shapes, strict=True):
        aligned, _ = piecewise_affine(img, pts, mshape, tri, (size, size))
        attrs = faceres.analyse(img, [face])[0]
        photos.append(_Photo(name, aligned, dlib_rec.embed(img, [face])[0], attrs.embedding, attrs.male, attrs.age))
    return BankPhotos(photos, mshape, tri, dlib_rec, faceres)


def build_bank(
    folders: Sequence[str | Path] | BankPhotos,
    count: int = COUNT,
    k: int = K,
    size: int = SIZE,
    seed: int = 0,
    tries: int = 60,
    per_part: int = 0,
    dlib_margin: float = 0.0,
) -> SurrogateBank:
    """Composites of ``k`` persons each from ``DIR/<person>/<photo>`` folders (see module doc).

    Each composite draws ``k`` persons (one photo each) from the whole bank; with ``per_part``
    (>= 2) it is a parts composite (``parts_composite``) of ``k = per_part x (len(PARTS) + 1)``
    persons, ``per_part`` averaged into each part. Its gender and age band are what FaceRes
    says of the composite. A composite within dlib's 0.6 (plus ``dlib_margin``) or FaceRes's
    threshold of any bank photo is refused and redrawn (at most ``tries`` x ``count`` draws).

    Raises:
        ConfigError: fewer than ``k`` persons, ``per_part`` 1 (a part would be one person's
            face) or negative, or no composite passes the check.
    """
    if per_part == 1 or per_part < 0:
        raise ConfigError(f"invalid per_part={per_part}: 0 (whole faces) or at least 2 persons per part")
    if per_part:
        k = per_part * (len(PARTS) + 1)
    bp = folders if isinstance(folders, BankPhotos) else load_photos(folders, size)
    photos = bp.photos
    size = photos[0].aligned.shape[0]
    if len({p.person for p in photos}) < k:
        raise ConfigError(f"face bank: {len({p.person for p in photos})} persons with a face, fewer than k={k}")
    vet = _Vetting(bp, dlib_margin)
    # Members are drawn from the whole bank, not from one gender/age group: composites of
    # similar persons stay near each of them (0 of 200 draws within FaceRes gender and age
    # band passed the check on the default sources; ~1 in 8 across the bank).
    mean_face = np.mean([p.aligned.astype(np.float32) for p in photos], axis=0)
    rng = np.random.default_rng(seed)
    _, cover = piecewise_affine(np.zeros((size, size, 3), np.uint8), bp.shape, bp.shape, bp.triangles, (size, size))
    kept: list[_Composite] = []
    for attempt in range(tries * count):
        if len(kept) >= count:
            break
        if attempt and attempt % 100 == 0:
            log.info("bank: %d composites after %d draws", len(kept), attempt)
        comp_u8 = _draw_composite(rng, bp, mean_face, k, per_part)
        got = vet(np.where(cover[..., None], comp_u8, _edge_fill(comp_u8, cover)))
        if got is not None:
            kept.append(got)
    if not kept:
        raise ConfigError(f"face bank: every composite was within a threshold of a bank person ({vet.refused} refused)")
    log.info("bank: %d composites kept, %d refused", len(kept), vet.refused)
    bank = SurrogateBank(
        np.stack([c.face for c in kept]),
        bp.shape,
        bp.triangles,
        np.array([c.gender for c in kept]),
        np.array([c.band for c in kept]),
        np.array([c.min_dlib for c in kept], np.float32),
        np.array([c.min_faceres for c in kept], np.float32),
        k,
    )
    return describe(bank, bp.dlib_rec)


def describe(bank: SurrogateBank, dlib_rec: Any) -> SurrogateBank:
    """``bank`` with dlib's vector of each composite (composites unchanged)."""
    vecs = [dlib_rec.embed(face, [composite_face(dlib_rec, face, bank.shape)])[0] for face in bank.faces]
    return dataclasses.replace(bank, dlib=np.stack(vecs).astype(np.float32))


def parts_composite(bases: Sequence[NDArray[np.uint8]], shape: NDArray[np.float32]) -> NDArray[np.uint8]:
    """``bases[0]`` (aligned on ``shape``) with each of ``PARTS`` taken from ``bases[1:]`` in
    turn, over the forehead (``FOREHEAD_PART``, first: the brows go over it) from the mean of all:
    each part's Lab mean shifted to ``bases[0]``'s there (one skin tone) and blended in through
    its feathered hull. (A forehead of 3 persons showed a member's fringe as dark streaks; of
    all 12 it is skin.)"""
    size = bases[0].shape[0]
    grow = max(1, round(PART_GROW * size))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    out = cv2.cvtColor(bases[0], cv2.COLOR_RGB2LAB).astype(np.float32)
    everyone = np.clip(np.mean([b.astype(np.float32) for b in bases], axis=0) + 0.5, 0, 255).astype(np.uint8)
    for part, hulls in zip([everyone, *bases[1:]], [FOREHEAD_PART, *PARTS], strict=True):  # brows over forehead
        hull = np.logical_or.reduce([hull_mask((size, size), shape[list(idx)]) for idx in hulls])
        mask = np.asarray(cv2.dilate(hull.view(np.uint8), kernel), np.uint8)
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), grow / 2)[..., None]
        lab = cv2.cvtColor(part, cv2.COLOR_RGB2LAB).astype(np.float32)
        inside = mask > 0
        lab += out[inside].mean(0) - lab[inside].mean(0)
        out = out * (1 - alpha) + lab * alpha
    res: NDArray[np.uint8] = np.asarray(cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB))
    return res


def _draw_composite(
    rng: np.random.Generator, bp: BankPhotos, mean_face: NDArray[np.float32], k: int, per_part: int
) -> NDArray[np.uint8]:
    """One composite of ``k`` persons drawn by ``rng`` (``per_part`` > 0: ``PARTS`` of
    ``per_part`` persons each, ``k`` = ``per_part`` x (len(PARTS) + 1)), its texture pushed
    ``CONTRAST`` away from ``mean_face``. A parts composite's persons are of one FaceRes gender
    (each gender drawn with equal chance where it has ``k`` persons): a woman's face with a
    man's stubble ghosted into the skin read as a fake."""
    pool = np.arange(len(bp.photos))
    if per_part:
        male = np.array([p.male >= MALE_AT for p in bp.photos])
        sides = [s for s in (male, ~male) if s.sum() >= k]
        if sides:
            pool = pool[sides[int(rng.integers(len(sides)))]]
    groups = rng.choice(pool, size=k, replace=False).reshape(-1, per_part if per_part else k)
    avgs = []
    for grp in groups:
        avg = np.mean([bp.photos[m].aligned.astype(np.float32) for m in grp], axis=0)
        avgs.append(np.clip(mean_face + CONTRAST * (avg - mean_face) + 0.5, 0, 255).astype(np.uint8))
    return avgs[0] if len(avgs) == 1 else parts_composite(avgs, bp.shape)


@dataclass
class _Composite:
    """A composite that passed the check: what FaceRes says of it, and its distances to the
    nearest bank photo."""

    face: NDArray[np.uint8]
    gender: str
    band: str
    min_dlib: float
    min_faceres: float


class _Vetting:
    """The privacy check of a composite: refused (None) within dlib's threshold plus
    ``dlib_margin`` or FaceRes's threshold of any bank photo; counts the refusals."""

    def __init__(self, bp: BankPhotos, dlib_margin: float = 0.0) -> None:
        self.bp = bp
        self.dlib_at = DLIB_THRESHOLD + dlib_margin
        self.all_dlib = np.stack([p.dlib for p in bp.photos])
        self.all_fr = np.stack([p.faceres for p in bp.photos])
        self.refused = 0

    def __call__(self, comp: NDArray[np.uint8]) -> _Composite | None:
        face = composite_face(self.bp.dlib_rec, comp, self.bp.shape)
        d = float(distance(self.bp.dlib_rec.embed(comp, [face]), self.all_dlib).min())
        if d < self.dlib_at:  # dlib first: cheaper than FaceRes
            self.refused += 1
            log.debug("composite refused: dlib %.3f to the nearest bank photo", d)
            return None
        attrs = self.bp.faceres.analyse(comp, [face])[0]
        f = float(distance(attrs.embedding[None], self.all_fr).min())
        if f < FACERES_THRESHOLD:
            self.refused += 1
            log.debug("composite refused: FaceRes %.3f to the nearest bank photo", f)
            return None
        return _Composite(comp, attrs.gender, age_band(attrs.age), d, f)


def _edge_fill(image: NDArray[np.uint8], covered: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """Pixels outside the triangulated face take the nearest covered pixel (no black corners)."""
    return extend_outside(image, covered.astype(np.uint8))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamanon.anonymize.surrogate_bank build [--data DIR] [-o FILE]``."""
    p = argparse.ArgumentParser(prog="python -m streamanon.anonymize.surrogate_bank")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a surrogate bank from person folders")
    b.add_argument("folders", nargs="*", type=Path, help="DIR/<person>/<photo> folders (default: the shared sources)")
    b.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="shared data root (default ../shared/data)"
    )
    b.add_argument("-o", "--output", type=Path, default=Path("engines/surrogate-bank.npz"))
    b.add_argument("--count", type=int, default=COUNT)
    b.add_argument("-k", type=int, default=K, help=f"persons per whole-face composite (--per-part 0; default {K})")
    b.add_argument(
        "--per-part",
        type=int,
        default=0,
        help=f"persons per part of {len(PARTS) + 1} (default 0: whole faces of -k; {PER_PART}: the parts bank)",
    )
    b.add_argument(
        "--dlib-margin",
        type=float,
        default=0.0,
        help=f"keep composites this far beyond dlib's 0.6 (default 0; {DLIB_MARGIN} for the parts bank)",
    )
    b.add_argument("--size", type=int, default=SIZE)
    b.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("describe", help="add dlib's vector of each composite to a bank (composites unchanged)")
    d.add_argument("bank", type=Path)
    d.add_argument("-o", "--output", type=Path, help="default: the bank file itself")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if ns.command == "describe":
        out = ns.output or ns.bank
        described = describe(SurrogateBank.load(ns.bank), DlibRecogniser("hog", 1, max_side=600))
        dataclasses.replace(described, source="").save(out)
        log.info("wrote %s: dlib vectors of %d composites", out, len(described))
        return 0
    folders = ns.folders or [ns.data / s for s in DEFAULT_SOURCES]
    bank = build_bank(folders, ns.count, ns.k, ns.size, ns.seed, per_part=ns.per_part, dlib_margin=ns.dlib_margin)
    bank.save(ns.output)
    log.info(
        "wrote %s: %d composites of k=%d; nearest bank photo: dlib >= %.3f, FaceRes >= %.3f",
        ns.output,
        len(bank),
        bank.k,
        float(bank.min_dlib.min()),
        float(bank.min_faceres.min()),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
